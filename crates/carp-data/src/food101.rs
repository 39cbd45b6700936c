//! Food-101 (`food-101/`): `images/<class>/<id>.jpg`, splits `meta/{train,test}.json` mapping
//! each class to its `"<class>/<id>"` entries, as torchvision's `Food101` reads them.

use crate::labelled::{read_split_file, LabelledFiles};
use crate::transfer::Split;
use crate::DataError;
use std::collections::BTreeMap;
use std::path::Path;

/// Opens train or test of `base` (the `food-101` folder). Classes are the sorted keys; images
/// come class by class in that order (the official files list classes sorted, which is also
/// torchvision's order).
///
/// # Errors
/// [`DataError::SplitFile`] naming the JSON file when missing or not a map of string lists.
pub fn open(base: &Path, split: Split) -> Result<LabelledFiles, DataError> {
    let name = if split == Split::Train {
        "train"
    } else {
        "test"
    };
    let file = base.join("meta").join(format!("{name}.json"));
    let text = read_split_file(&file)?;
    let meta: BTreeMap<String, Vec<String>> =
        serde_json::from_str(&text).map_err(|e| DataError::SplitFile {
            path: file.clone(),
            reason: format!("expected a JSON object of class -> [\"class/id\", ...]: {e}"),
        })?;
    let classes: Vec<String> = meta.keys().cloned().collect();
    let (mut paths, mut labels) = (Vec::new(), Vec::new());
    for (label, images) in meta.values().enumerate() {
        for rel in images {
            let mut p = base.join("images");
            p.extend(format!("{rel}.jpg").split('/'));
            paths.push(p);
            labels.push(label);
        }
    }
    Ok(LabelledFiles::new(
        format!("Food-101 {name} {}", base.display()),
        paths,
        labels,
        classes,
    ))
}
