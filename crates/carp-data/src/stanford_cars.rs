//! Stanford Cars (`stanford_cars/`), the layout torchvision's `StanfordCars` reads: class names
//! in `devkit/cars_meta.mat` (`class_names`), the train annotations in
//! `devkit/cars_train_annos.mat` with images in `cars_train/`, the test annotations in
//! `cars_test_annos_withlabels.mat` with images in `cars_test/`; each annotation is a struct
//! with `fname` and `class` (1-based).

use crate::labelled::LabelledFiles;
use crate::matfile::{read_mat, MatValue};
use crate::transfer::Split;
use crate::DataError;
use std::path::Path;

/// Opens train or test of `base` (the `stanford_cars` folder).
///
/// # Errors
/// [`DataError::SplitFile`] naming the `.mat` file when missing or malformed.
pub fn open(base: &Path, split: Split) -> Result<LabelledFiles, DataError> {
    let devkit = base.join("devkit");
    let (annos, images) = match split {
        Split::Train => (devkit.join("cars_train_annos.mat"), base.join("cars_train")),
        Split::Test => (
            base.join("cars_test_annos_withlabels.mat"),
            base.join("cars_test"),
        ),
    };
    let meta_file = devkit.join("cars_meta.mat");
    let meta = read_mat(&meta_file)?;
    let bad = |path: &Path, reason: String| DataError::SplitFile {
        path: path.to_path_buf(),
        reason,
    };
    let classes: Vec<String> = match meta.get("class_names") {
        Some(MatValue::Cell(items)) => items
            .iter()
            .map(|v| match v {
                MatValue::Char(s) => Ok(s.clone()),
                _ => Err(bad(&meta_file, "class_names holds a non-string".into())),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(bad(&meta_file, "no cell array `class_names`".into())),
    };
    let mat = read_mat(&annos)?;
    let Some(MatValue::Struct(entries)) = mat.get("annotations") else {
        return Err(bad(&annos, "no struct array `annotations`".into()));
    };
    let (mut paths, mut labels) = (Vec::new(), Vec::new());
    for (k, e) in entries.iter().enumerate() {
        let fname = match e.get("fname") {
            Some(MatValue::Char(s)) => s,
            _ => return Err(bad(&annos, format!("annotation {k}: no string `fname`"))),
        };
        let class = e
            .get("class")
            .and_then(MatValue::numbers)
            .and_then(|n| n.first().copied())
            .filter(|&c| c >= 1.0 && (c as usize) <= classes.len())
            .ok_or_else(|| {
                bad(
                    &annos,
                    format!("annotation {k}: `class` is not 1..{}", classes.len()),
                )
            })?;
        paths.push(images.join(fname));
        labels.push(class as usize - 1);
    }
    Ok(LabelledFiles::new(
        format!("Stanford Cars {:?} {}", split, base.display()).to_lowercase(),
        paths,
        labels,
        classes,
    ))
}
