//! FGVC-Aircraft (`fgvc-aircraft-2013b/data/`): `images/<id>.jpg`, classes in `variants.txt`,
//! splits `images_variant_{trainval,test}.txt` with lines `<id> <variant name>`, as
//! torchvision's `FGVCAircraft` (annotation level `variant`) reads them.

use crate::labelled::{bad_line, read_split_file, LabelledFiles};
use crate::transfer::Split;
use crate::DataError;
use std::path::Path;

/// Opens trainval (train) or test of `base` (the `fgvc-aircraft-2013b` folder).
///
/// # Errors
/// [`DataError::SplitFile`] naming `variants.txt` or the split file when missing or
/// malformed (a variant not in `variants.txt`).
pub fn open(base: &Path, split: Split) -> Result<LabelledFiles, DataError> {
    let data = base.join("data");
    let variants = data.join("variants.txt");
    let classes: Vec<String> = read_split_file(&variants)?
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    let name = if split == Split::Train {
        "trainval"
    } else {
        "test"
    };
    let file = data.join(format!("images_variant_{name}.txt"));
    let text = read_split_file(&file)?;
    let (mut paths, mut labels) = (Vec::new(), Vec::new());
    for (k, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some((id, variant)) = line.split_once(' ') else {
            return Err(bad_line(&file, k + 1, "expected `<image id> <variant>`"));
        };
        let Some(label) = classes.iter().position(|c| c == variant) else {
            return Err(bad_line(
                &file,
                k + 1,
                format!("variant `{variant}` is not in {}", variants.display()),
            ));
        };
        paths.push(data.join("images").join(format!("{id}.jpg")));
        labels.push(label);
    }
    Ok(LabelledFiles::new(
        format!("FGVC-Aircraft {name} {}", base.display()),
        paths,
        labels,
        classes,
    ))
}
