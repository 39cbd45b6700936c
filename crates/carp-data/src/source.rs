//! [`DataSource`]: the `KIND:PATH` strings of `--data`, parsed and opened.
//!
//! | string | dataset |
//! |---|---|
//! | `PATH` or `imagefolder:PATH` | [`ImageFolder`] |
//! | `cifar10:PATH`, `cifar10-test:PATH` | [`Cifar`] CIFAR-10 train / test |
//! | `cifar100:PATH`, `cifar100-test:PATH` | [`Cifar`] CIFAR-100 train / test |
//! | `stl10:PATH` | [`Stl10`] train + unlabeled (for pretraining) |
//! | `stl10-train:PATH`, `stl10-test:PATH`, `stl10-unlabeled:PATH` | [`Stl10`] one split |
//! | `filelist:PATH` | [`FileList`] |

use crate::cifar::{Cifar, CifarSplit, CifarVariant};
use crate::stl10::{Stl10, Stl10Split};
use crate::{DataError, Dataset, FileList, ImageFolder};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The kinds accepted before the colon, for error messages and help.
pub const SOURCE_KINDS: &str = "imagefolder, cifar10, cifar10-test, cifar100, cifar100-test, \
     stl10, stl10-train, stl10-test, stl10-unlabeled, filelist";

/// What a `KIND:PATH` string names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// A class-folder tree.
    ImageFolder,
    /// A CIFAR binary split.
    Cifar(CifarVariant, CifarSplit),
    /// An STL-10 binary split.
    Stl10(Stl10Split),
    /// A text file of image paths.
    FileList,
}

/// A parsed data source: a kind and a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataSource {
    /// The reader.
    pub kind: SourceKind,
    /// The root folder or list file.
    pub path: PathBuf,
}

impl DataSource {
    /// Parses `KIND:PATH` (a bare path, or one with an unknown prefix that exists on
    /// disk, is an image folder).
    ///
    /// # Errors
    /// [`DataError::BadSource`] for an unknown kind or an empty path.
    pub fn parse(spec: &str) -> Result<Self, DataError> {
        let bad = |reason: String| DataError::BadSource {
            spec: spec.into(),
            reason,
        };
        let Some((kind, path)) = spec.split_once(':') else {
            return Ok(Self {
                kind: SourceKind::ImageFolder,
                path: spec.into(),
            });
        };
        let kind = match kind {
            "imagefolder" => SourceKind::ImageFolder,
            "cifar10" => SourceKind::Cifar(CifarVariant::Cifar10, CifarSplit::Train),
            "cifar10-test" => SourceKind::Cifar(CifarVariant::Cifar10, CifarSplit::Test),
            "cifar100" => SourceKind::Cifar(CifarVariant::Cifar100, CifarSplit::Train),
            "cifar100-test" => SourceKind::Cifar(CifarVariant::Cifar100, CifarSplit::Test),
            "stl10" => SourceKind::Stl10(Stl10Split::TrainUnlabeled),
            "stl10-train" => SourceKind::Stl10(Stl10Split::Train),
            "stl10-test" => SourceKind::Stl10(Stl10Split::Test),
            "stl10-unlabeled" => SourceKind::Stl10(Stl10Split::Unlabeled),
            "filelist" => SourceKind::FileList,
            // A path that merely contains a colon (e.g. `C:\data`).
            _ if Path::new(spec).exists() => {
                return Ok(Self {
                    kind: SourceKind::ImageFolder,
                    path: spec.into(),
                })
            }
            other => {
                return Err(bad(format!(
                    "unknown kind `{other}` (supported: {SOURCE_KINDS}, or a bare folder path)"
                )))
            }
        };
        if path.is_empty() {
            return Err(bad("empty path after the colon".into()));
        }
        Ok(Self {
            kind,
            path: path.into(),
        })
    }

    /// Opens the dataset.
    ///
    /// # Errors
    /// Whatever the reader's `open` returns (missing folder or file, bad format).
    pub fn open(&self) -> Result<Arc<dyn Dataset>, DataError> {
        let p = &self.path;
        Ok(match self.kind {
            SourceKind::ImageFolder => Arc::new(ImageFolder::open(p)?),
            SourceKind::Cifar(variant, split) => Arc::new(Cifar::open(p, variant, split)?),
            SourceKind::Stl10(split) => Arc::new(Stl10::open(p, split)?),
            SourceKind::FileList => Arc::new(FileList::open(p)?),
        })
    }

    /// The labelled training split of the same data when this source mixes in unlabelled
    /// images (`stl10` → `stl10-train`), for the k-NN memory bank.
    pub fn labelled_train(&self) -> Option<Self> {
        match self.kind {
            SourceKind::Stl10(Stl10Split::TrainUnlabeled) => Some(Self {
                kind: SourceKind::Stl10(Stl10Split::Train),
                path: self.path.clone(),
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind() {
        let p = |s: &str| DataSource::parse(s).unwrap();
        assert_eq!(p("data/x").kind, SourceKind::ImageFolder);
        assert_eq!(p("data/x").path, PathBuf::from("data/x"));
        assert_eq!(p("imagefolder:a:b").path, PathBuf::from("a:b"));
        assert_eq!(
            p("cifar10:/d").kind,
            SourceKind::Cifar(CifarVariant::Cifar10, CifarSplit::Train)
        );
        assert_eq!(
            p("cifar100-test:/d").kind,
            SourceKind::Cifar(CifarVariant::Cifar100, CifarSplit::Test)
        );
        assert_eq!(
            p("stl10:/d").kind,
            SourceKind::Stl10(Stl10Split::TrainUnlabeled)
        );
        assert_eq!(
            p("stl10:/d").labelled_train().unwrap().kind,
            SourceKind::Stl10(Stl10Split::Train)
        );
        assert_eq!(p("stl10-test:/d").labelled_train(), None);
        assert_eq!(p("filelist:l.txt").kind, SourceKind::FileList);
        let err = DataSource::parse("cifar11:/d").unwrap_err();
        assert!(err.to_string().contains("cifar11") && err.to_string().contains("stl10"));
        assert!(DataSource::parse("cifar10:").is_err());
    }
}
