//! Few-shot VOC07 from images: [`run_fewshot`].

use crate::{Extractor, SuiteError};
use carp_data::{Dataset, Voc07};
use carp_eval::{voc_fewshot, FewShotConfig, FewShotRow};
use std::path::Path;

/// VOC07 `trainval` and `test` features (evaluation transform), then
/// [`carp_eval::voc_fewshot`]. `root` holds `VOCdevkit/`.
///
/// # Errors
/// Reading the class files or images, or the protocol's own errors.
pub fn run_fewshot(
    ex: &Extractor<'_>,
    root: &Path,
    cfg: &FewShotConfig,
) -> Result<Vec<FewShotRow>, SuiteError> {
    let train = Voc07::open(root, "trainval")?;
    let test = Voc07::open(root, "test")?;
    let (ftr, _) = ex.features(&train, &(0..train.len()).collect::<Vec<_>>())?;
    let (fte, _) = ex.features(&test, &(0..test.len()).collect::<Vec<_>>())?;
    let t = |v: &Voc07| v.targets().iter().map(|r| r.to_vec()).collect::<Vec<_>>();
    Ok(voc_fewshot(&ftr, &t(&train), &fte, &t(&test), cfg)?)
}

/// A Markdown table of few-shot rows.
pub fn fewshot_markdown(rows: &[FewShotRow]) -> String {
    let mut md = String::from(
        "| k | cost | mAP % | std | runs | train rows |\n|---|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let k = r.shots.map_or("full".to_string(), |k| k.to_string());
        md += &format!(
            "| {k} | {} | {:.2} | {:.2} | {} | {} |\n",
            r.cost,
            r.mean_map,
            r.std_map,
            r.runs.len(),
            r.train_rows
        );
    }
    md
}
