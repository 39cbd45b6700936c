//! Oxford-IIIT Pets (`oxford-iiit-pet/`): `images/<id>.jpg`, splits
//! `annotations/{trainval,test}.txt` with lines `<id> <class 1..37> <species> <breed>`, as
//! torchvision's `OxfordIIITPet` (category targets) reads them.

use crate::labelled::{bad_line, read_split_file, LabelledFiles};
use crate::transfer::Split;
use crate::DataError;
use std::collections::BTreeMap;
use std::path::Path;

/// Opens trainval (train) or test of `base` (the `oxford-iiit-pet` folder). Class names are
/// the image-id prefixes in title case (`american_bulldog` -> `American Bulldog`).
///
/// # Errors
/// [`DataError::SplitFile`] naming the split file when missing or malformed.
pub fn open(base: &Path, split: Split) -> Result<LabelledFiles, DataError> {
    let name = if split == Split::Train {
        "trainval"
    } else {
        "test"
    };
    let file = base.join("annotations").join(format!("{name}.txt"));
    let text = read_split_file(&file)?;
    let (mut paths, mut labels) = (Vec::new(), Vec::new());
    let mut names = BTreeMap::new();
    for (k, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [id, label, _, _] = parts[..] else {
            return Err(bad_line(
                &file,
                k + 1,
                "expected `<image id> <class> <species> <breed>`",
            ));
        };
        let label: usize = match label.parse::<usize>() {
            Ok(l) if (1..=37).contains(&l) => l - 1,
            _ => {
                return Err(bad_line(
                    &file,
                    k + 1,
                    format!("class `{label}` is not 1..37"),
                ))
            }
        };
        let breed = id.rsplit_once('_').map_or(id, |(b, _)| b);
        let title: Vec<String> = breed
            .split('_')
            .map(|p| {
                let mut c = p.chars();
                c.next().map_or(String::new(), |f| {
                    f.to_uppercase().collect::<String>() + &c.as_str().to_lowercase()
                })
            })
            .collect();
        names.insert(label, title.join(" "));
        paths.push(base.join("images").join(format!("{id}.jpg")));
        labels.push(label);
    }
    let n = names.keys().max().map_or(0, |m| m + 1);
    let classes = (0..n)
        .map(|c| {
            names
                .get(&c)
                .cloned()
                .unwrap_or_else(|| format!("class {}", c + 1))
        })
        .collect();
    Ok(LabelledFiles::new(
        format!("Oxford-IIIT Pets {name} {}", base.display()),
        paths,
        labels,
        classes,
    ))
}
