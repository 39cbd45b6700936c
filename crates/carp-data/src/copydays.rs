//! Copydays (`copydays/`), laid out as the CARP release's `eval_copy_detection.py` (DINO's)
//! reads it: blocks `original/`, `strong/`, `jpegqual/{3,5,8,10,15,20,30,50,75}/` and
//! `crops/{10,15,20,30,40,50,60,70,80}/`, each a folder of `.jpg` files sorted by name. The
//! database is `original/` (plus distractors); every block is a query set. A query of any block
//! but `strong` matches the original at its own index; a `strong` query matches the originals
//! whose file names share its first 4 characters.

use crate::DataError;
use std::path::{Path, PathBuf};

/// One block of query images.
#[derive(Clone, Debug, PartialEq)]
pub struct CopydaysBlock {
    /// `original`, `strong`, `jpegqual/50`, ...
    pub name: String,
    /// Its images, sorted by file name.
    pub files: Vec<PathBuf>,
    /// For each image, the indices of its originals.
    pub positives: Vec<Vec<usize>>,
}

/// The blocks the release evaluates, in its order.
pub fn copydays_block_names() -> Vec<String> {
    let mut names = vec!["original".to_string(), "strong".to_string()];
    names.extend(
        [3, 5, 8, 10, 15, 20, 30, 50, 75]
            .iter()
            .map(|q| format!("jpegqual/{q}")),
    );
    names.extend(
        [10, 15, 20, 30, 40, 50, 60, 70, 80]
            .iter()
            .map(|c| format!("crops/{c}")),
    );
    names
}

fn jpgs(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let io = |source| DataError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".jpg"))
        .collect();
    names.sort();
    Ok(names.into_iter().map(|n| dir.join(n)).collect())
}

/// Image files of a folder with the release's `is_image_file` extensions (jpg, jpeg, png,
/// ppm, bmp, pgm, tif, tiff, webp; case-sensitive), sorted by name (the release keeps
/// `os.listdir` order, which is arbitrary). For distractors and whitening images.
///
/// # Errors
/// [`DataError::Io`] when the folder cannot be read, [`DataError::Empty`] when it holds none.
pub fn list_image_files(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    const EXT: [&str; 9] = [
        "jpg", "jpeg", "png", "ppm", "bmp", "pgm", "tif", "tiff", "webp",
    ];
    let io = |source| DataError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.rsplit('.').next().is_some_and(|e| EXT.contains(&e)))
        .collect();
    if names.is_empty() {
        return Err(DataError::Empty {
            path: dir.to_path_buf(),
        });
    }
    names.sort();
    Ok(names.into_iter().map(|n| dir.join(n)).collect())
}

/// Reads the blocks present under `root` (`original/` is required; absent blocks are skipped).
///
/// # Errors
/// [`DataError::MissingDir`] without `original/`; [`DataError::SplitFile`] naming a block whose
/// image count differs from `original/`'s (index-matched blocks) or a `strong` image without an
/// original.
pub fn open_copydays(root: &Path) -> Result<Vec<CopydaysBlock>, DataError> {
    let original_dir = root.join("original");
    if !original_dir.is_dir() {
        return Err(DataError::MissingDir { path: original_dir });
    }
    let originals = jpgs(&original_dir)?;
    let prefix = |p: &Path| -> String {
        p.file_name()
            .map(|n| n.to_string_lossy().chars().take(4).collect())
            .unwrap_or_default()
    };
    let mut blocks = Vec::new();
    for name in copydays_block_names() {
        let dir = root.join(&name);
        if !dir.is_dir() {
            continue;
        }
        let files = jpgs(&dir)?;
        let positives = if name == "strong" {
            files
                .iter()
                .map(|f| {
                    let p = prefix(f);
                    let m: Vec<usize> = (0..originals.len())
                        .filter(|&j| prefix(&originals[j]) == p)
                        .collect();
                    if m.is_empty() {
                        Err(DataError::SplitFile {
                            path: f.clone(),
                            reason: format!("no original shares the prefix `{p}`"),
                        })
                    } else {
                        Ok(m)
                    }
                })
                .collect::<Result<Vec<_>, _>>()?
        } else {
            if files.len() != originals.len() {
                return Err(DataError::SplitFile {
                    path: dir,
                    reason: format!(
                        "{} images, but queries are matched to originals by index and original/ has {}",
                        files.len(),
                        originals.len()
                    ),
                });
            }
            (0..files.len()).map(|i| vec![i]).collect()
        };
        blocks.push(CopydaysBlock {
            name,
            files,
            positives,
        });
    }
    Ok(blocks)
}
