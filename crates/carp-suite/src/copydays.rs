//! Copydays copy detection from images: [`run_copydays`].

use crate::extract::square_view;
use crate::{Extractor, SuiteError};
use carp_data::folder::load_rgb;
use carp_data::{list_image_files, open_copydays};
use carp_eval::{copy_detection_map, BlockMap, CopyBlock, Features, Whitening, COPYDAYS_TOP};
use rayon::prelude::*;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Settings of [`run_copydays`].
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CopydaysConfig {
    /// Square image side (release `--imsize`, 320).
    pub imsize: u32,
    /// Folder of distractor images added to the database.
    pub distractors: Option<PathBuf>,
    /// Folder of images the whitening is learned on (none: no whitening).
    pub whitening: Option<PathBuf>,
}

/// What [`run_copydays`] measured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CopydaysReport {
    /// mAP per block (`strong` is the paper's number).
    pub blocks: Vec<BlockMap>,
    /// Database rows (originals + distractors).
    pub database: usize,
    /// The whitening, if learned.
    pub whitening: Option<Whitening>,
}

fn features(ex: &Extractor<'_>, files: &[PathBuf], side: u32) -> Result<Features, SuiteError> {
    let mut out = Vec::new();
    for chunk in files.chunks(ex.batch.max(1)) {
        let views: Vec<Result<Vec<f32>, SuiteError>> = chunk
            .par_iter()
            .map(|f| Ok(square_view(&load_rgb(f)?, side)))
            .collect();
        let mut pixels = Vec::new();
        for v in views {
            pixels.extend(v?);
        }
        out.extend(ex.forward_batch(pixels, chunk.len(), side as usize, side as usize));
    }
    let dim = out.len() / files.len().max(1);
    Ok(Features::new(out, files.len(), dim)?)
}

/// The release's copy detection: features of every block (queries) and of `original/` plus
/// distractors (database); with whitening data, centre by its mean and apply the learned
/// whitening; L2-normalise; top-20 cosine retrieval; mAP per block.
///
/// # Errors
/// Reading the layout or an image; metric errors.
pub fn run_copydays(
    ex: &Extractor<'_>,
    root: &Path,
    cfg: &CopydaysConfig,
) -> Result<CopydaysReport, SuiteError> {
    let blocks = open_copydays(root)?;
    let queries_files: Vec<PathBuf> = blocks.iter().flat_map(|b| b.files.clone()).collect();
    let mut db_files = blocks[0].files.clone();
    if let Some(d) = &cfg.distractors {
        db_files.extend(list_image_files(d)?);
    }
    let mut queries = features(ex, &queries_files, cfg.imsize)?;
    let mut database = features(ex, &db_files, cfg.imsize)?;
    let whitening = match &cfg.whitening {
        Some(dir) => {
            let w = Whitening::learn(
                &features(ex, &list_image_files(dir)?, cfg.imsize)?,
                0.5,
                None,
            )?;
            queries = w.apply(&queries)?;
            database = w.apply(&database)?;
            Some(w)
        }
        None => None,
    };
    let spec: Vec<CopyBlock> = blocks
        .iter()
        .map(|b| CopyBlock {
            name: b.name.clone(),
            positives: b.positives.clone(),
        })
        .collect();
    let maps = copy_detection_map(
        &database.l2_normalized(),
        &queries.l2_normalized(),
        &spec,
        COPYDAYS_TOP,
    )?;
    Ok(CopydaysReport {
        blocks: maps,
        database: db_files.len(),
        whitening,
    })
}
