//! [`FileList`]: images named in a text file, one per line, with an optional label.
//!
//! ```text
//! # comments and blank lines are ignored
//! images/cat_001.jpg 3
//! /data/other/dog.png 5
//! ```
//!
//! A line is a path, optionally followed by whitespace and a non-negative integer label
//! (the last whitespace-separated token is a label only if it parses as one). Relative
//! paths are resolved against the list file's folder. Either every line has a label or
//! none does; the number of classes is the largest label + 1. Order is the file's order.
//! Files are not checked when the list is opened: a missing or undecodable one is an error
//! naming it when it is read.

use crate::folder::load_rgb;
use crate::{DataError, Dataset};
use image::RgbImage;
use std::fs;
use std::path::{Path, PathBuf};

/// A dataset of the image files listed in a text file.
#[derive(Clone, Debug)]
pub struct FileList {
    list: PathBuf,
    paths: Vec<PathBuf>,
    labels: Option<Vec<usize>>,
    num_classes: usize,
}

impl FileList {
    /// Reads the list at `list`.
    ///
    /// # Errors
    /// [`DataError::Io`] if it cannot be read, [`DataError::Empty`] if it names no file,
    /// [`DataError::BadLabel`] (with the 1-based line) when some lines have a label and
    /// others not.
    pub fn open(list: &Path) -> Result<Self, DataError> {
        let text = fs::read_to_string(list).map_err(|source| DataError::Io {
            path: list.to_path_buf(),
            source,
        })?;
        let base = list.parent().unwrap_or(Path::new("."));
        let mut paths = Vec::new();
        let mut labels = Vec::new();
        let mut first_labelled = None;
        for (k, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (path, label) = match line.rsplit_once(char::is_whitespace) {
                Some((p, l)) => match l.parse::<usize>() {
                    Ok(label) => (p.trim_end(), Some(label)),
                    Err(_) => (line, None),
                },
                None => (line, None),
            };
            let labelled = label.is_some();
            match first_labelled {
                None => first_labelled = Some(labelled),
                Some(f) if f != labelled => {
                    return Err(DataError::BadLabel {
                        path: list.to_path_buf(),
                        record: k + 1,
                        label: if labelled {
                            label.unwrap_or_default().to_string()
                        } else {
                            "none".into()
                        },
                        expected: format!(
                            "{} on every line, as on the first entry",
                            if f { "a label" } else { "no label" }
                        ),
                    });
                }
                Some(_) => {}
            }
            paths.push(base.join(path));
            labels.extend(label);
        }
        if paths.is_empty() {
            return Err(DataError::Empty {
                path: list.to_path_buf(),
            });
        }
        let (labels, num_classes) = if first_labelled == Some(true) {
            let n = labels.iter().max().map_or(0, |&m| m + 1);
            (Some(labels), n)
        } else {
            (None, 0)
        };
        Ok(Self {
            list: list.to_path_buf(),
            paths,
            labels,
            num_classes,
        })
    }

    /// Path of image `index`.
    ///
    /// # Panics
    /// If `index >= self.len()`.
    pub fn path(&self, index: usize) -> &Path {
        &self.paths[index]
    }
}

impl Dataset for FileList {
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
        self.labels.as_ref()?.get(index).copied()
    }

    fn num_classes(&self) -> usize {
        self.num_classes
    }

    fn describe(&self) -> String {
        format!(
            "file list {} ({} images, {} classes)",
            self.list.display(),
            self.paths.len(),
            self.num_classes
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    #[test]
    fn labelled_list_resolves_relative_paths() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir(root.join("imgs")).unwrap();
        RgbImage::from_pixel(3, 2, Rgb([1, 2, 3]))
            .save(root.join("imgs/a b.png"))
            .unwrap();
        let abs = root.join("abs.png");
        RgbImage::from_pixel(2, 2, Rgb([9, 8, 7]))
            .save(&abs)
            .unwrap();
        let text = format!(
            "# header\n\nimgs/a b.png 4\n  {}\t1\nimgs/missing.png 0\n",
            abs.display()
        );
        let list = root.join("list.txt");
        fs::write(&list, text).unwrap();
        let ds = FileList::open(&list).unwrap();
        assert_eq!(ds.len(), 3);
        assert_eq!(ds.num_classes(), 5);
        assert_eq!(
            (0..3).map(|i| ds.label(i).unwrap()).collect::<Vec<_>>(),
            [4, 1, 0]
        );
        assert_eq!(ds.path(0), root.join("imgs/a b.png"));
        assert_eq!(
            ds.get(0).unwrap(),
            RgbImage::from_pixel(3, 2, Rgb([1, 2, 3]))
        );
        assert_eq!(
            ds.get(1).unwrap(),
            RgbImage::from_pixel(2, 2, Rgb([9, 8, 7]))
        );
        let err = ds.get(2).unwrap_err();
        assert!(err.to_string().contains("missing.png"), "{err}");
    }

    #[test]
    fn unlabelled_and_bad_lists() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("l.txt");
        fs::write(&list, "x.png\ny.jpg\n").unwrap();
        let ds = FileList::open(&list).unwrap();
        assert_eq!((ds.len(), ds.num_classes(), ds.label(0)), (2, 0, None));

        fs::write(&list, "x.png 1\ny.jpg\n").unwrap();
        let err = FileList::open(&list).unwrap_err();
        assert!(
            matches!(err, DataError::BadLabel { record: 2, .. }),
            "{err}"
        );

        fs::write(&list, "# only a comment\n\n").unwrap();
        assert!(matches!(
            FileList::open(&list),
            Err(DataError::Empty { .. })
        ));
        let err = FileList::open(&dir.path().join("none.txt")).unwrap_err();
        assert!(err.to_string().contains("none.txt"), "{err}");
    }
}
