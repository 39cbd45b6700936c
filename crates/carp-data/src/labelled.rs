//! [`LabelledFiles`]: images named by a data set's own split files, with class labels; what
//! the transfer-set readers ([`crate::transfer`]) return.

use crate::folder::load_rgb;
use crate::{DataError, Dataset};
use image::RgbImage;
use std::path::{Path, PathBuf};

/// Image files with a class each, in the order of the data set's split file.
#[derive(Clone, Debug)]
pub struct LabelledFiles {
    name: String,
    paths: Vec<PathBuf>,
    labels: Vec<usize>,
    classes: Vec<String>,
}

impl LabelledFiles {
    /// Wraps `paths` with `labels` (indices into `classes`); `name` describes the split.
    ///
    /// # Panics
    /// If the lengths differ or a label is not below `classes.len()` (reader bugs).
    pub fn new(
        name: String,
        paths: Vec<PathBuf>,
        labels: Vec<usize>,
        classes: Vec<String>,
    ) -> Self {
        assert_eq!(paths.len(), labels.len(), "one label per image");
        assert!(
            labels.iter().all(|&l| l < classes.len()),
            "labels below the class count"
        );
        Self {
            name,
            paths,
            labels,
            classes,
        }
    }

    /// Class names by label.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// Path of image `index`.
    ///
    /// # Panics
    /// If `index >= self.len()`.
    pub fn path(&self, index: usize) -> &Path {
        &self.paths[index]
    }

    /// Labels in image order.
    pub fn labels(&self) -> &[usize] {
        &self.labels
    }
}

impl Dataset for LabelledFiles {
    fn len(&self) -> usize {
        self.paths.len()
    }

    fn get(&self, index: usize) -> Result<RgbImage, DataError> {
        let path = self
            .paths
            .get(index)
            .ok_or_else(|| DataError::IndexOutOfRange {
                dataset: self.describe(),
                index,
                len: self.paths.len(),
            })?;
        load_rgb(path)
    }

    fn label(&self, index: usize) -> Option<usize> {
        self.labels.get(index).copied()
    }

    fn num_classes(&self) -> usize {
        self.classes.len()
    }

    fn describe(&self) -> String {
        format!(
            "{} ({} images, {} classes)",
            self.name,
            self.paths.len(),
            self.classes.len()
        )
    }
}

/// Reads a split file, or [`DataError::SplitFile`] naming it.
pub(crate) fn read_split_file(path: &Path) -> Result<String, DataError> {
    std::fs::read_to_string(path).map_err(|e| DataError::SplitFile {
        path: path.to_path_buf(),
        reason: if e.kind() == std::io::ErrorKind::NotFound {
            "missing split file".into()
        } else {
            format!("cannot read split file: {e}")
        },
    })
}

/// A [`DataError::SplitFile`] for a malformed line (1-based).
pub(crate) fn bad_line(path: &Path, line: usize, reason: impl std::fmt::Display) -> DataError {
    DataError::SplitFile {
        path: path.to_path_buf(),
        reason: format!("line {line}: {reason}"),
    }
}
