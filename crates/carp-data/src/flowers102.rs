//! Oxford Flowers-102 (`flowers-102/`): `jpg/image_NNNNN.jpg`, labels 1..102 in
//! `imagelabels.mat` (`labels`), splits in `setid.mat` (`trnid`, `valid`, `tstid`), as
//! torchvision's `Flowers102` reads them.

use crate::labelled::LabelledFiles;
use crate::matfile::read_mat;
use crate::transfer::Split;
use crate::DataError;
use std::path::Path;

/// Opens the train (`trnid`) or test (`tstid`) split of `base` (the `flowers-102` folder).
///
/// # Errors
/// [`DataError::SplitFile`] naming `setid.mat` or `imagelabels.mat` when missing or malformed.
pub fn open(base: &Path, split: Split) -> Result<LabelledFiles, DataError> {
    let setid = base.join("setid.mat");
    let labels_file = base.join("imagelabels.mat");
    let key = if split == Split::Train {
        "trnid"
    } else {
        "tstid"
    };
    let sets = read_mat(&setid)?;
    let ids = sets
        .get(key)
        .and_then(|v| v.numbers())
        .ok_or_else(|| DataError::SplitFile {
            path: setid.clone(),
            reason: format!("no numeric variable `{key}`"),
        })?;
    let labels = read_mat(&labels_file)?;
    let labels = labels
        .get("labels")
        .and_then(|v| v.numbers())
        .ok_or_else(|| DataError::SplitFile {
            path: labels_file.clone(),
            reason: "no numeric variable `labels`".into(),
        })?;
    let mut paths = Vec::with_capacity(ids.len());
    let mut out = Vec::with_capacity(ids.len());
    for &id in ids {
        let i = id as usize;
        let label = match labels.get(i.wrapping_sub(1)) {
            Some(&l) if id >= 1.0 && (1.0..=102.0).contains(&l) => l as usize - 1,
            _ => {
                return Err(DataError::SplitFile {
                    path: setid.clone(),
                    reason: format!(
                        "image id {id} has no label 1..102 in {}",
                        labels_file.display()
                    ),
                })
            }
        };
        paths.push(base.join("jpg").join(format!("image_{i:05}.jpg")));
        out.push(label);
    }
    let classes = (1..=102).map(|c| format!("class {c}")).collect();
    Ok(LabelledFiles::new(
        format!("Flowers-102 {key} {}", base.display()),
        paths,
        out,
        classes,
    ))
}
