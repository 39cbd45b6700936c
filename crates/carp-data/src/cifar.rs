//! [`Cifar`]: CIFAR-10 and CIFAR-100 in their binary distribution format.
//!
//! The archives `cifar-10-binary.tar.gz` and `cifar-100-binary.tar.gz` unpack to
//! `cifar-10-batches-bin/` and `cifar-100-binary/`. Each record is the label byte(s) then
//! 3072 pixel bytes: the 1024 red values of the 32x32 image in row-major order, then the
//! green and blue planes.
//!
//! | variant | train files | test file | record | class names |
//! |---|---|---|---|---|
//! | CIFAR-10 | `data_batch_1.bin` .. `data_batch_5.bin` | `test_batch.bin` | label, pixels | `batches.meta.txt` |
//! | CIFAR-100 | `train.bin` | `test.bin` | coarse label, fine label, pixels | `fine_label_names.txt` |
//!
//! For CIFAR-100 [`Dataset::label`] is the fine label (100 classes); [`Cifar::coarse_label`]
//! gives the superclass (20). A split is read into memory once (150 MB for CIFAR-10 train).

use crate::{DataError, Dataset};
use image::RgbImage;
use std::fs;
use std::path::{Path, PathBuf};

/// Side of a CIFAR image in pixels.
pub const CIFAR_SIZE: u32 = 32;
/// Pixel bytes per CIFAR record (3 planes of 32x32).
pub const CIFAR_PIXELS: usize = 3 * 32 * 32;

/// Which CIFAR distribution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CifarVariant {
    /// CIFAR-10: 10 classes, one label byte per record.
    Cifar10,
    /// CIFAR-100: 100 fine classes in 20 coarse ones, two label bytes per record.
    Cifar100,
}

/// Training or test images.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CifarSplit {
    /// 50 000 training images.
    Train,
    /// 10 000 test images.
    Test,
}

impl CifarVariant {
    /// Label bytes before the pixels of each record.
    fn label_bytes(self) -> usize {
        match self {
            Self::Cifar10 => 1,
            Self::Cifar100 => 2,
        }
    }

    /// Number of (fine) classes.
    pub fn num_classes(self) -> usize {
        match self {
            Self::Cifar10 => 10,
            Self::Cifar100 => 100,
        }
    }

    /// The folder the official archive unpacks to.
    pub fn archive_dir(self) -> &'static str {
        match self {
            Self::Cifar10 => "cifar-10-batches-bin",
            Self::Cifar100 => "cifar-100-binary",
        }
    }

    /// The binary files of `split`, in reading order.
    fn files(self, split: CifarSplit) -> Vec<String> {
        match (self, split) {
            (Self::Cifar10, CifarSplit::Train) => {
                (1..=5).map(|k| format!("data_batch_{k}.bin")).collect()
            }
            (Self::Cifar10, CifarSplit::Test) => vec!["test_batch.bin".into()],
            (Self::Cifar100, CifarSplit::Train) => vec!["train.bin".into()],
            (Self::Cifar100, CifarSplit::Test) => vec!["test.bin".into()],
        }
    }

    /// The text file with one class name per line.
    fn names_file(self) -> &'static str {
        match self {
            Self::Cifar10 => "batches.meta.txt",
            Self::Cifar100 => "fine_label_names.txt",
        }
    }

    /// Display name.
    fn name(self) -> &'static str {
        match self {
            Self::Cifar10 => "CIFAR-10",
            Self::Cifar100 => "CIFAR-100",
        }
    }
}

/// One CIFAR split held in memory.
#[derive(Clone, Debug)]
pub struct Cifar {
    dir: PathBuf,
    variant: CifarVariant,
    split: CifarSplit,
    /// `CIFAR_PIXELS` bytes per image, planar as in the file.
    pixels: Vec<u8>,
    labels: Vec<u8>,
    coarse: Vec<u8>,
    classes: Vec<String>,
}

/// Class names from a text file (one per line, blank lines dropped); `None` if absent.
pub(crate) fn read_names(path: &Path) -> Result<Option<Vec<String>>, DataError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect(),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(DataError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// `root` itself if it holds `probe`, else `root/<sub>` if that does.
pub(crate) fn locate(root: &Path, sub: &str, probe: &str) -> Option<PathBuf> {
    [root.to_path_buf(), root.join(sub)]
        .into_iter()
        .find(|d| d.join(probe).is_file())
}

/// Checks that `root` exists and is a directory.
pub(crate) fn check_dir(root: &Path) -> Result<(), DataError> {
    match fs::metadata(root) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(DataError::MissingDir {
            path: root.to_path_buf(),
        }),
        Err(source) => Err(DataError::Io {
            path: root.to_path_buf(),
            source,
        }),
        Ok(m) if !m.is_dir() => Err(DataError::NotADirectory {
            path: root.to_path_buf(),
        }),
        Ok(_) => Ok(()),
    }
}

impl Cifar {
    /// Reads `split` of `variant` from `root`, which is either the folder holding the
    /// `.bin` files or the folder the archive was extracted into.
    ///
    /// # Errors
    /// [`DataError::MissingDir`] / [`DataError::MissingFile`] when the files are absent,
    /// [`DataError::Truncated`] when a file is not a whole number of records,
    /// [`DataError::BadLabel`] for a label out of range, [`DataError::Io`] on read errors.
    pub fn open(root: &Path, variant: CifarVariant, split: CifarSplit) -> Result<Self, DataError> {
        check_dir(root)?;
        let files = variant.files(split);
        let dir = locate(root, variant.archive_dir(), &files[0]).ok_or_else(|| {
            DataError::MissingFile {
                path: root.to_path_buf(),
                what: format!("{} {split:?} batches", variant.name()),
                looked: format!("{} in . and {}/", files.join(", "), variant.archive_dir()),
            }
        })?;
        let lb = variant.label_bytes();
        let record = lb + CIFAR_PIXELS;
        let (mut pixels, mut labels, mut coarse) = (Vec::new(), Vec::new(), Vec::new());
        for name in &files {
            let path = dir.join(name);
            let bytes = fs::read(&path).map_err(|source| match source.kind() {
                std::io::ErrorKind::NotFound => DataError::MissingFile {
                    path: dir.clone(),
                    what: format!("{} {split:?} batch", variant.name()),
                    looked: name.clone(),
                },
                _ => DataError::Io {
                    path: path.clone(),
                    source,
                },
            })?;
            if bytes.is_empty() || bytes.len() % record != 0 {
                return Err(DataError::Truncated {
                    path,
                    len: bytes.len() as u64,
                    record: record as u64,
                });
            }
            pixels.reserve(bytes.len() / record * CIFAR_PIXELS);
            for (k, rec) in bytes.chunks_exact(record).enumerate() {
                let fine = rec[lb - 1];
                if usize::from(fine) >= variant.num_classes()
                    || (lb == 2 && usize::from(rec[0]) >= 20)
                {
                    let label = if lb == 2 {
                        format!("{} (coarse {})", fine, rec[0])
                    } else {
                        fine.to_string()
                    };
                    return Err(DataError::BadLabel {
                        path,
                        record: k,
                        label,
                        expected: format!(
                            "0..{}{}",
                            variant.num_classes(),
                            if lb == 2 { " (coarse 0..20)" } else { "" }
                        ),
                    });
                }
                labels.push(fine);
                if lb == 2 {
                    coarse.push(rec[0]);
                }
                pixels.extend_from_slice(&rec[lb..]);
            }
        }
        let classes = read_names(&dir.join(variant.names_file()))?
            .filter(|n| n.len() == variant.num_classes())
            .unwrap_or_else(|| (0..variant.num_classes()).map(|k| k.to_string()).collect());
        Ok(Self {
            dir,
            variant,
            split,
            pixels,
            labels,
            coarse,
            classes,
        })
    }

    /// Class names, indexed by label (from the names file, else "0", "1", ...).
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// The CIFAR-100 superclass of image `index` (`None` for CIFAR-10 or out of range).
    pub fn coarse_label(&self, index: usize) -> Option<usize> {
        self.coarse.get(index).map(|&c| usize::from(c))
    }

    /// The folder the `.bin` files were read from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Dataset for Cifar {
    fn len(&self) -> usize {
        self.labels.len()
    }

    fn get(&self, index: usize) -> Result<RgbImage, DataError> {
        if index >= self.len() {
            return Err(DataError::IndexOutOfRange {
                dataset: self.describe(),
                index,
                len: self.len(),
            });
        }
        let planes = &self.pixels[index * CIFAR_PIXELS..(index + 1) * CIFAR_PIXELS];
        let n = CIFAR_PIXELS / 3;
        let mut raw = Vec::with_capacity(CIFAR_PIXELS);
        for k in 0..n {
            raw.extend_from_slice(&[planes[k], planes[n + k], planes[2 * n + k]]);
        }
        Ok(RgbImage::from_raw(CIFAR_SIZE, CIFAR_SIZE, raw).expect("32x32x3 bytes"))
    }

    fn label(&self, index: usize) -> Option<usize> {
        self.labels.get(index).map(|&l| usize::from(l))
    }

    fn num_classes(&self) -> usize {
        self.variant.num_classes()
    }

    fn describe(&self) -> String {
        format!(
            "{} {:?} {} ({} images)",
            self.variant.name(),
            self.split,
            self.dir.display(),
            self.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record's pixels: every byte a function of (image, channel, row, col).
    fn px(img: usize, c: usize, y: usize, x: usize) -> u8 {
        (img * 31 + c * 80 + y * 7 + x * 3) as u8
    }

    fn record(img: usize, labels: &[u8]) -> Vec<u8> {
        let mut r = labels.to_vec();
        for c in 0..3 {
            for y in 0..32 {
                for x in 0..32 {
                    r.push(px(img, c, y, x));
                }
            }
        }
        r
    }

    fn check_pixels(ds: &Cifar, index: usize, img: usize) {
        let got = ds.get(index).unwrap();
        assert_eq!(got.dimensions(), (32, 32));
        for (x, y) in [(0, 0), (31, 0), (0, 31), (5, 17), (31, 31)] {
            let p = got.get_pixel(x, y);
            let want = [0, 1, 2].map(|c| px(img, c, y as usize, x as usize));
            assert_eq!(p.0, want, "image {img} at ({x}, {y})");
        }
    }

    #[test]
    fn cifar10_reads_batches_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("cifar-10-batches-bin");
        fs::create_dir(&sub).unwrap();
        // Batch k holds images 2k, 2k+1 with labels (2k) % 10, (2k+1) % 10.
        for k in 0..5 {
            let mut bytes = record(2 * k, &[(2 * k % 10) as u8]);
            bytes.extend(record(2 * k + 1, &[((2 * k + 1) % 10) as u8]));
            fs::write(sub.join(format!("data_batch_{}.bin", k + 1)), bytes).unwrap();
        }
        fs::write(sub.join("test_batch.bin"), record(99, &[7])).unwrap();
        let names = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n";
        fs::write(sub.join("batches.meta.txt"), names).unwrap();

        // Both the extraction folder and the batches folder are accepted.
        for root in [dir.path(), sub.as_path()] {
            let train = Cifar::open(root, CifarVariant::Cifar10, CifarSplit::Train).unwrap();
            assert_eq!(train.len(), 10);
            assert_eq!(train.num_classes(), 10);
            assert_eq!(train.classes()[0], "airplane");
            assert_eq!(train.classes()[9], "truck");
            for i in 0..10 {
                assert_eq!(train.label(i), Some(i % 10));
                check_pixels(&train, i, i);
            }
            assert_eq!(train.coarse_label(0), None);
        }
        let test = Cifar::open(dir.path(), CifarVariant::Cifar10, CifarSplit::Test).unwrap();
        assert_eq!(test.len(), 1);
        assert_eq!(test.label(0), Some(7));
        check_pixels(&test, 0, 99);
        assert!(matches!(
            test.get(1),
            Err(DataError::IndexOutOfRange { index: 1, .. })
        ));
    }

    #[test]
    fn cifar100_has_fine_and_coarse_labels() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("cifar-100-binary");
        fs::create_dir(&sub).unwrap();
        let mut bytes = record(0, &[3, 42]);
        bytes.extend(record(1, &[19, 99]));
        bytes.extend(record(2, &[0, 0]));
        fs::write(sub.join("train.bin"), bytes).unwrap();
        let names: String = (0..100).map(|k| format!("class{k}\n")).collect();
        fs::write(sub.join("fine_label_names.txt"), names).unwrap();
        let ds = Cifar::open(dir.path(), CifarVariant::Cifar100, CifarSplit::Train).unwrap();
        assert_eq!(ds.len(), 3);
        assert_eq!(ds.num_classes(), 100);
        assert_eq!(
            (0..3).map(|i| ds.label(i).unwrap()).collect::<Vec<_>>(),
            [42, 99, 0]
        );
        assert_eq!(
            (0..3)
                .map(|i| ds.coarse_label(i).unwrap())
                .collect::<Vec<_>>(),
            [3, 19, 0]
        );
        assert_eq!(ds.classes()[42], "class42");
        for i in 0..3 {
            check_pixels(&ds, i, i);
        }
        // The test split is absent: a clear error naming the file.
        let err = Cifar::open(dir.path(), CifarVariant::Cifar100, CifarSplit::Test).unwrap_err();
        assert!(err.to_string().contains("test.bin"), "{err}");
    }

    #[test]
    fn bad_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        assert!(matches!(
            Cifar::open(&missing, CifarVariant::Cifar10, CifarSplit::Test),
            Err(DataError::MissingDir { .. })
        ));
        let err = Cifar::open(dir.path(), CifarVariant::Cifar10, CifarSplit::Test).unwrap_err();
        assert!(matches!(err, DataError::MissingFile { .. }), "{err}");

        let path = dir.path().join("test_batch.bin");
        let mut bytes = record(0, &[1]);
        bytes.truncate(3000);
        fs::write(&path, &bytes).unwrap();
        let err = Cifar::open(dir.path(), CifarVariant::Cifar10, CifarSplit::Test).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::Truncated {
                    len: 3000,
                    record: 3073,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("test_batch.bin"), "{err}");

        let mut bytes = record(0, &[1]);
        bytes.extend(record(1, &[10]));
        fs::write(&path, &bytes).unwrap();
        let err = Cifar::open(dir.path(), CifarVariant::Cifar10, CifarSplit::Test).unwrap_err();
        assert!(
            matches!(err, DataError::BadLabel { record: 1, .. }),
            "{err}"
        );

        // Missing one training batch of five.
        for k in 1..=4 {
            fs::write(
                dir.path().join(format!("data_batch_{k}.bin")),
                record(0, &[0]),
            )
            .unwrap();
        }
        let err = Cifar::open(dir.path(), CifarVariant::Cifar10, CifarSplit::Train).unwrap_err();
        assert!(err.to_string().contains("data_batch_5.bin"), "{err}");
    }
}
