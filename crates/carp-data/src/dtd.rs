//! Describable Textures (`dtd/dtd/`): `images/<class>/<name>.jpg`, splits
//! `labels/{train,val,test}{1..10}.txt` with lines `<class>/<name>.jpg`, as torchvision's `DTD`
//! reads them (the release uses partition 1).

use crate::labelled::{bad_line, read_split_file, LabelledFiles};
use crate::transfer::Split;
use crate::DataError;
use std::path::Path;

/// Opens train1 or test1 of `base` (the outer `dtd` folder). Classes: the sorted class names
/// of the split file.
///
/// # Errors
/// [`DataError::SplitFile`] naming the split file when missing or malformed.
pub fn open(base: &Path, split: Split) -> Result<LabelledFiles, DataError> {
    // torchvision's layout is dtd/dtd/ (the archive's dtd/ unpacked into a dtd/ folder);
    // `carp data download dtd` unpacks it once, as dtd/.
    let nested = base.join("dtd");
    let data = if nested.join("labels").is_dir() || !base.join("labels").is_dir() {
        nested
    } else {
        base.to_path_buf()
    };
    let name = if split == Split::Train {
        "train1"
    } else {
        "test1"
    };
    let file = data.join("labels").join(format!("{name}.txt"));
    let text = read_split_file(&file)?;
    let mut entries = Vec::new();
    for (k, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some((class, image)) = line
            .split_once('/')
            .filter(|(c, i)| !c.is_empty() && !i.is_empty() && !i.contains('/'))
        else {
            return Err(bad_line(&file, k + 1, "expected `<class>/<image>.jpg`"));
        };
        entries.push((class.to_string(), image.to_string()));
    }
    let mut classes: Vec<String> = entries.iter().map(|(c, _)| c.clone()).collect();
    classes.sort();
    classes.dedup();
    let labels = entries
        .iter()
        .map(|(c, _)| classes.binary_search(c).expect("class listed"))
        .collect();
    let paths = entries
        .iter()
        .map(|(c, i)| data.join("images").join(c).join(i))
        .collect();
    Ok(LabelledFiles::new(
        format!("DTD {name} {}", base.display()),
        paths,
        labels,
        classes,
    ))
}
