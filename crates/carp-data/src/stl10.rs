//! [`Stl10`]: STL-10 in its binary distribution format.
//!
//! `stl10_binary.tar.gz` unpacks to `stl10_binary/` with `train_X.bin` (5 000 images),
//! `train_y.bin`, `test_X.bin` (8 000), `test_y.bin`, `unlabeled_X.bin` (100 000, 2.7 GB)
//! and `class_names.txt`. An image is 3·96·96 bytes: the red plane, then green, then blue,
//! each plane in column-major order, so pixel (row y, column x) of channel c is byte
//! `c·96·96 + x·96 + y` (the official reader's `reshape(-1, 3, 96, 96).transpose(0, 3, 2, 1)`).
//! Label files hold one byte per image in 1..=10, mapped to classes 0..=9.
//!
//! Image files are not loaded: each [`Dataset::get`] reads one image with a positioned
//! read, so the unlabeled split costs no memory and threads read concurrently.

use crate::cifar::{check_dir, locate, read_names};
use crate::{DataError, Dataset};
use image::RgbImage;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

/// Side of an STL-10 image in pixels.
pub const STL10_SIZE: u32 = 96;
/// Bytes per STL-10 image.
pub const STL10_IMAGE_BYTES: usize = 3 * 96 * 96;
/// Number of STL-10 classes.
pub const STL10_CLASSES: usize = 10;

/// Which STL-10 images.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stl10Split {
    /// The 5 000 labelled training images.
    Train,
    /// The 8 000 labelled test images.
    Test,
    /// The 100 000 unlabelled images.
    Unlabeled,
    /// Train then unlabeled (105 000 images, the first 5 000 labelled): for pretraining.
    TrainUnlabeled,
}

/// One image file (`*_X.bin`) read on demand, with its labels if any.
#[derive(Debug)]
struct Part {
    path: PathBuf,
    file: File,
    count: usize,
    labels: Option<Vec<u8>>,
}

/// Reads `buf.len()` bytes at `offset` without moving a shared cursor.
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
    }
    #[cfg(windows)]
    {
        let mut done = 0;
        while done < buf.len() {
            let n = std::os::windows::fs::FileExt::seek_read(
                file,
                &mut buf[done..],
                offset + done as u64,
            )?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            done += n;
        }
        Ok(())
    }
}

impl Part {
    /// Opens `<dir>/<stem>_X.bin` and, if `labelled`, reads `<dir>/<stem>_y.bin`.
    fn open(dir: &Path, stem: &str, labelled: bool) -> Result<Self, DataError> {
        let path = dir.join(format!("{stem}_X.bin"));
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| DataError::Io { path, source }
        };
        let file = File::open(&path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => DataError::MissingFile {
                path: dir.to_path_buf(),
                what: format!("STL-10 {stem} images"),
                looked: format!("{stem}_X.bin"),
            },
            _ => DataError::Io {
                path: path.clone(),
                source,
            },
        })?;
        let len = file.metadata().map_err(io(&path))?.len();
        let record = STL10_IMAGE_BYTES as u64;
        if len == 0 || len % record != 0 {
            return Err(DataError::Truncated { path, len, record });
        }
        let count = (len / record) as usize;
        let labels = if labelled {
            let ypath = dir.join(format!("{stem}_y.bin"));
            let raw = fs::read(&ypath).map_err(io(&ypath))?;
            if raw.len() != count {
                return Err(DataError::CountMismatch {
                    path: ypath,
                    expected: count,
                    found: raw.len(),
                });
            }
            let mut labels = Vec::with_capacity(count);
            for (k, &y) in raw.iter().enumerate() {
                if !(1..=STL10_CLASSES as u8).contains(&y) {
                    return Err(DataError::BadLabel {
                        path: ypath,
                        record: k,
                        label: y.to_string(),
                        expected: "1..=10".into(),
                    });
                }
                labels.push(y - 1);
            }
            Some(labels)
        } else {
            None
        };
        Ok(Self {
            path,
            file,
            count,
            labels,
        })
    }
}

/// An STL-10 split (or train + unlabeled), read image by image from the binary files.
#[derive(Debug)]
pub struct Stl10 {
    dir: PathBuf,
    split: Stl10Split,
    parts: Vec<Part>,
    classes: Vec<String>,
}

impl Stl10 {
    /// Opens `split` under `root`: the `stl10_binary` folder or the folder holding it.
    ///
    /// # Errors
    /// [`DataError::MissingDir`] / [`DataError::MissingFile`] when files are absent,
    /// [`DataError::Truncated`] when an image file is not a whole number of images,
    /// [`DataError::CountMismatch`] / [`DataError::BadLabel`] for bad label files.
    pub fn open(root: &Path, split: Stl10Split) -> Result<Self, DataError> {
        check_dir(root)?;
        let stems: &[(&str, bool)] = match split {
            Stl10Split::Train => &[("train", true)],
            Stl10Split::Test => &[("test", true)],
            Stl10Split::Unlabeled => &[("unlabeled", false)],
            Stl10Split::TrainUnlabeled => &[("train", true), ("unlabeled", false)],
        };
        let probe = format!("{}_X.bin", stems[0].0);
        let dir = locate(root, "stl10_binary", &probe).ok_or_else(|| DataError::MissingFile {
            path: root.to_path_buf(),
            what: format!("STL-10 {split:?} images"),
            looked: format!("{probe} in . and stl10_binary/"),
        })?;
        let parts = stems
            .iter()
            .map(|&(stem, labelled)| Part::open(&dir, stem, labelled))
            .collect::<Result<Vec<_>, _>>()?;
        let classes = read_names(&dir.join("class_names.txt"))?
            .filter(|n| n.len() == STL10_CLASSES)
            .unwrap_or_else(|| (0..STL10_CLASSES).map(|k| k.to_string()).collect());
        Ok(Self {
            dir,
            split,
            parts,
            classes,
        })
    }

    /// Class names, indexed by label (from `class_names.txt`, else "0", "1", ...).
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// The part holding `index` and the index inside it.
    fn locate(&self, mut index: usize) -> Option<(&Part, usize)> {
        for part in &self.parts {
            if index < part.count {
                return Some((part, index));
            }
            index -= part.count;
        }
        None
    }
}

/// Converts one image from the file's planar column-major layout to row-major RGB.
pub fn stl10_to_rgb(raw: &[u8]) -> RgbImage {
    assert_eq!(raw.len(), STL10_IMAGE_BYTES, "one STL-10 image");
    let s = STL10_SIZE as usize;
    let plane = s * s;
    let mut out = vec![0u8; STL10_IMAGE_BYTES];
    for x in 0..s {
        for y in 0..s {
            let o = 3 * (y * s + x);
            let i = x * s + y;
            out[o] = raw[i];
            out[o + 1] = raw[plane + i];
            out[o + 2] = raw[2 * plane + i];
        }
    }
    RgbImage::from_raw(STL10_SIZE, STL10_SIZE, out).expect("96x96x3 bytes")
}

impl Dataset for Stl10 {
    fn len(&self) -> usize {
        self.parts.iter().map(|p| p.count).sum()
    }

    fn get(&self, index: usize) -> Result<RgbImage, DataError> {
        let (part, k) = self
            .locate(index)
            .ok_or_else(|| DataError::IndexOutOfRange {
                dataset: self.describe(),
                index,
                len: self.len(),
            })?;
        let mut raw = vec![0u8; STL10_IMAGE_BYTES];
        read_at(&part.file, &mut raw, (k * STL10_IMAGE_BYTES) as u64).map_err(|source| {
            DataError::Io {
                path: part.path.clone(),
                source,
            }
        })?;
        Ok(stl10_to_rgb(&raw))
    }

    fn label(&self, index: usize) -> Option<usize> {
        let (part, k) = self.locate(index)?;
        part.labels.as_ref().map(|l| usize::from(l[k]))
    }

    fn num_classes(&self) -> usize {
        if self.parts.iter().any(|p| p.labels.is_some()) {
            STL10_CLASSES
        } else {
            0
        }
    }

    fn describe(&self) -> String {
        format!(
            "STL-10 {:?} {} ({} images)",
            self.split,
            self.dir.display(),
            self.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pixel value of (image, channel, row, col), distinct enough to catch a transpose.
    fn px(img: usize, c: usize, y: usize, x: usize) -> u8 {
        (img * 17 + c * 85 + y * 2 + x * 5) as u8
    }

    /// Images in the file layout: channel-major, then column-major (x outer, y inner).
    fn images(range: std::ops::Range<usize>) -> Vec<u8> {
        let mut out = Vec::new();
        for img in range {
            for c in 0..3 {
                for x in 0..96 {
                    for y in 0..96 {
                        out.push(px(img, c, y, x));
                    }
                }
            }
        }
        out
    }

    fn check(ds: &Stl10, index: usize, img: usize) {
        let got = ds.get(index).unwrap();
        assert_eq!(got.dimensions(), (96, 96));
        for (x, y) in [(0, 0), (1, 0), (0, 1), (95, 3), (7, 90), (95, 95)] {
            let want = [0, 1, 2].map(|c| px(img, c, y as usize, x as usize));
            assert_eq!(got.get_pixel(x, y).0, want, "image {img} at x {x} y {y}");
        }
    }

    fn write_set(dir: &Path) {
        fs::write(dir.join("train_X.bin"), images(0..3)).unwrap();
        fs::write(dir.join("train_y.bin"), [1u8, 10, 4]).unwrap();
        fs::write(dir.join("test_X.bin"), images(10..12)).unwrap();
        fs::write(dir.join("test_y.bin"), [2u8, 3]).unwrap();
        fs::write(dir.join("unlabeled_X.bin"), images(20..24)).unwrap();
        let names = "airplane\nbird\ncar\ncat\ndeer\ndog\nhorse\nmonkey\nship\ntruck\n";
        fs::write(dir.join("class_names.txt"), names).unwrap();
    }

    #[test]
    fn splits_read_with_the_official_transpose() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("stl10_binary");
        fs::create_dir(&dir).unwrap();
        write_set(&dir);

        let train = Stl10::open(tmp.path(), Stl10Split::Train).unwrap();
        assert_eq!(train.len(), 3);
        assert_eq!(train.num_classes(), 10);
        assert_eq!(train.classes()[7], "monkey");
        assert_eq!(
            (0..3).map(|i| train.label(i).unwrap()).collect::<Vec<_>>(),
            [0, 9, 3]
        );
        for i in 0..3 {
            check(&train, i, i);
        }

        let test = Stl10::open(&dir, Stl10Split::Test).unwrap();
        assert_eq!(test.len(), 2);
        assert_eq!(test.label(1), Some(2));
        check(&test, 1, 11);

        let unl = Stl10::open(&dir, Stl10Split::Unlabeled).unwrap();
        assert_eq!((unl.len(), unl.num_classes(), unl.label(0)), (4, 0, None));
        check(&unl, 3, 23);

        let both = Stl10::open(&dir, Stl10Split::TrainUnlabeled).unwrap();
        assert_eq!(both.len(), 7);
        assert_eq!(both.label(2), Some(3));
        assert_eq!(both.label(3), None);
        check(&both, 2, 2);
        check(&both, 3, 20);
        check(&both, 6, 23);
        assert!(matches!(
            both.get(7),
            Err(DataError::IndexOutOfRange { index: 7, .. })
        ));
        assert_eq!(both.label(7), None);
    }

    #[test]
    fn bad_files_are_clear_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        write_set(dir);
        // Truncated image file.
        let mut x = images(0..2);
        x.truncate(STL10_IMAGE_BYTES + 5);
        fs::write(dir.join("train_X.bin"), &x).unwrap();
        let err = Stl10::open(dir, Stl10Split::Train).unwrap_err();
        assert!(matches!(err, DataError::Truncated { .. }), "{err}");
        assert!(err.to_string().contains("train_X.bin"), "{err}");
        // Label count mismatch, then a label out of 1..=10.
        fs::write(dir.join("train_X.bin"), images(0..2)).unwrap();
        let err = Stl10::open(dir, Stl10Split::Train).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::CountMismatch {
                    expected: 2,
                    found: 3,
                    ..
                }
            ),
            "{err}"
        );
        fs::write(dir.join("train_y.bin"), [1u8, 0]).unwrap();
        let err = Stl10::open(dir, Stl10Split::Train).unwrap_err();
        assert!(
            matches!(err, DataError::BadLabel { record: 1, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("train_y.bin"), "{err}");
        // Missing unlabeled file for the pretraining split.
        fs::remove_file(dir.join("unlabeled_X.bin")).unwrap();
        fs::write(dir.join("train_y.bin"), [1u8, 2]).unwrap();
        let err = Stl10::open(dir, Stl10Split::TrainUnlabeled).unwrap_err();
        assert!(err.to_string().contains("unlabeled_X.bin"), "{err}");
        // Missing root.
        assert!(matches!(
            Stl10::open(&dir.join("nope"), Stl10Split::Test),
            Err(DataError::MissingDir { .. })
        ));
    }
}
