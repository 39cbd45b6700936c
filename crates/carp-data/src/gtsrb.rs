//! GTSRB (`gtsrb/`), the layout torchvision's `GTSRB` reads: training images
//! `GTSRB/Training/<class, 5 digits>/*.ppm`, test images `GTSRB/Final_Test/Images/*.ppm` with
//! labels in `GT-final_test.csv` (`;`-separated, header `Filename;...;ClassId`).

use crate::labelled::{bad_line, read_split_file, LabelledFiles};
use crate::transfer::Split;
use crate::{DataError, ImageFolder};
use std::path::Path;

/// Number of GTSRB classes.
pub const GTSRB_CLASSES: usize = 43;

/// Opens train or test of `base` (the `gtsrb` folder).
///
/// # Errors
/// [`DataError::SplitFile`] naming `GT-final_test.csv` when missing or malformed; folder
/// errors for the training tree.
pub fn open(base: &Path, split: Split) -> Result<LabelledFiles, DataError> {
    if split == Split::Train {
        let root = base.join("GTSRB").join("Training");
        let f = ImageFolder::open_with_extensions(&root, &["ppm"])?;
        return crate::transfer::folder_as_labelled(&f, "GTSRB train");
    }
    let csv = base.join("GT-final_test.csv");
    let text = read_split_file(&csv)?;
    let mut lines = text.lines().enumerate();
    let header: Vec<&str> = lines
        .next()
        .map(|(_, h)| h.split(';').map(str::trim).collect())
        .unwrap_or_default();
    let col = |name: &str| header.iter().position(|h| *h == name);
    let (Some(fcol), Some(ccol)) = (col("Filename"), col("ClassId")) else {
        return Err(bad_line(&csv, 1, "header must name Filename and ClassId"));
    };
    let images = base.join("GTSRB").join("Final_Test").join("Images");
    let (mut paths, mut labels) = (Vec::new(), Vec::new());
    for (k, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let cells: Vec<&str> = line.split(';').map(str::trim).collect();
        let (Some(file), Some(class)) = (cells.get(fcol), cells.get(ccol)) else {
            return Err(bad_line(&csv, k + 1, "too few `;`-separated fields"));
        };
        let class: usize = class
            .parse()
            .map_err(|_| bad_line(&csv, k + 1, format!("ClassId `{class}` is not a number")))?;
        paths.push(images.join(file));
        labels.push(class);
    }
    let n = labels.iter().max().map_or(0, |m| m + 1).max(GTSRB_CLASSES);
    let classes = (0..n).map(|c| format!("{c:05}")).collect();
    Ok(LabelledFiles::new(
        format!("GTSRB test {}", base.display()),
        paths,
        labels,
        classes,
    ))
}
