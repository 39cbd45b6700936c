//! [`ImageFolder`]: a `root/<class>/<image>` tree, with torchvision's `ImageFolder` semantics.
//!
//! Class folders are the sub-directories of the root sorted by name; class `k` is the
//! `k`-th of them. Inside each class folder the images are found recursively (symbolic
//! links followed) and ordered as torchvision does: directories sorted by path, files in a
//! directory sorted by name. Files ending in `.jpg`, `.jpeg` or `.png` (any case) count;
//! other files are ignored. Images are decoded on [`Dataset::get`] and converted to RGB
//! (grayscale replicated, alpha dropped).

use crate::{DataError, Dataset};
use image::{ImageReader, RgbImage};
use std::fs;
use std::path::{Path, PathBuf};

/// Extensions recognised as images (compared case-insensitively).
pub const IMAGE_EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

/// A dataset read from class sub-folders of a root directory.
#[derive(Clone, Debug)]
pub struct ImageFolder {
    root: PathBuf,
    classes: Vec<String>,
    samples: Vec<(PathBuf, usize)>,
}

/// Byte-wise ordering of paths, as Python's `sorted` on path strings.
fn path_key(p: &Path) -> &[u8] {
    p.as_os_str().as_encoded_bytes()
}

/// Whether `path` has one of `extensions` (any case).
fn is_image(path: &Path, extensions: &[&str]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| extensions.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// Entries of `dir` split into (sub-directories, files), following symbolic links.
fn list_dir(dir: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>), DataError> {
    let io = |source| DataError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let (mut dirs, mut files) = (Vec::new(), Vec::new());
    for entry in fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        // `metadata` follows links; a dangling link is neither and is skipped.
        match fs::metadata(&path) {
            Ok(m) if m.is_dir() => dirs.push(path),
            Ok(m) if m.is_file() => files.push(path),
            _ => {}
        }
    }
    Ok((dirs, files))
}

impl ImageFolder {
    /// Indexes the tree under `root` (reads directories only, no image).
    ///
    /// # Errors
    /// [`DataError::MissingDir`] or [`DataError::NotADirectory`] for a bad root,
    /// [`DataError::NoClasses`] when it has no sub-folder, [`DataError::EmptyClass`] for a
    /// class folder without images, [`DataError::Io`] when a directory cannot be read.
    pub fn open(root: &Path) -> Result<Self, DataError> {
        Self::open_with_extensions(root, &IMAGE_EXTENSIONS)
    }

    /// [`ImageFolder::open`] counting files with other extensions as images (GTSRB's `ppm`).
    ///
    /// # Errors
    /// As [`ImageFolder::open`].
    pub fn open_with_extensions(root: &Path, extensions: &[&str]) -> Result<Self, DataError> {
        match fs::metadata(root) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(DataError::MissingDir {
                    path: root.to_path_buf(),
                })
            }
            Err(source) => {
                return Err(DataError::Io {
                    path: root.to_path_buf(),
                    source,
                })
            }
            Ok(m) if !m.is_dir() => {
                return Err(DataError::NotADirectory {
                    path: root.to_path_buf(),
                })
            }
            Ok(_) => {}
        }
        let (mut class_dirs, _) = list_dir(root)?;
        if class_dirs.is_empty() {
            return Err(DataError::NoClasses {
                path: root.to_path_buf(),
            });
        }
        class_dirs.sort_by(|a, b| path_key(a).cmp(path_key(b)));
        let mut classes = Vec::with_capacity(class_dirs.len());
        let mut samples = Vec::new();
        for (label, class_dir) in class_dirs.iter().enumerate() {
            let name = class_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            classes.push(name);
            let before = samples.len();
            Self::walk_class(class_dir, label, extensions, &mut samples)?;
            if samples.len() == before {
                return Err(DataError::EmptyClass {
                    path: class_dir.clone(),
                });
            }
        }
        Ok(Self {
            root: root.to_path_buf(),
            classes,
            samples,
        })
    }

    /// Appends the images below `class_dir` in `sorted(os.walk(...))` order.
    fn walk_class(
        class_dir: &Path,
        label: usize,
        extensions: &[&str],
        samples: &mut Vec<(PathBuf, usize)>,
    ) -> Result<(), DataError> {
        // Collect every directory with its files, then sort directories by path.
        let mut stack = vec![class_dir.to_path_buf()];
        let mut found = Vec::new();
        while let Some(dir) = stack.pop() {
            let (dirs, files) = list_dir(&dir)?;
            stack.extend(dirs);
            found.push((dir, files));
        }
        found.sort_by(|a, b| path_key(&a.0).cmp(path_key(&b.0)));
        for (_, mut files) in found {
            files.retain(|f| is_image(f, extensions));
            files.sort_by(|a, b| path_key(a).cmp(path_key(b)));
            samples.extend(files.into_iter().map(|f| (f, label)));
        }
        Ok(())
    }

    /// Class names (folder names), indexed by label.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Path of image `index`.
    ///
    /// # Panics
    /// If `index >= self.len()`.
    pub fn path(&self, index: usize) -> &Path {
        &self.samples[index].0
    }
}

/// Decodes the image at `path` (format from its content, else its extension) as RGB.
pub fn load_rgb(path: &Path) -> Result<RgbImage, DataError> {
    let io = |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    let img = ImageReader::open(path)
        .map_err(io)?
        .with_guessed_format()
        .map_err(io)?
        .decode()
        .map_err(|source| DataError::Decode {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(img.into_rgb8())
}

impl Dataset for ImageFolder {
    fn len(&self) -> usize {
        self.samples.len()
    }

    fn get(&self, index: usize) -> Result<RgbImage, DataError> {
        let (path, _) = self
            .samples
            .get(index)
            .ok_or_else(|| DataError::IndexOutOfRange {
                dataset: self.describe(),
                index,
                len: self.samples.len(),
            })?;
        load_rgb(path)
    }

    fn label(&self, index: usize) -> Option<usize> {
        self.samples.get(index).map(|s| s.1)
    }

    fn num_classes(&self) -> usize {
        self.classes.len()
    }

    fn describe(&self) -> String {
        format!(
            "image folder {} ({} images, {} classes)",
            self.root.display(),
            self.samples.len(),
            self.classes.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, ImageFormat, Luma, Rgb, Rgba, RgbaImage};

    fn rgb(w: u32, h: u32, v: u8) -> RgbImage {
        RgbImage::from_pixel(w, h, Rgb([v, v / 2, 255 - v]))
    }

    #[test]
    fn classes_and_files_are_sorted() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for c in ["zebra", "ant", "Bee"] {
            fs::create_dir(root.join(c)).unwrap();
        }
        rgb(4, 3, 10).save(root.join("zebra/b.png")).unwrap();
        rgb(4, 3, 20).save(root.join("zebra/a.jpg")).unwrap();
        rgb(4, 3, 30)
            .save_with_format(root.join("zebra/C.PNG"), ImageFormat::Png)
            .unwrap();
        fs::write(root.join("zebra/notes.txt"), "not an image").unwrap();
        rgb(5, 5, 40).save(root.join("ant/x.jpeg")).unwrap();
        fs::create_dir(root.join("ant/sub")).unwrap();
        rgb(5, 5, 50).save(root.join("ant/sub/a.png")).unwrap();
        rgb(2, 2, 60).save(root.join("Bee/only.png")).unwrap();
        fs::write(root.join("stray.png"), "files at the root are not classes").unwrap();

        let ds = ImageFolder::open(root).unwrap();
        // Byte order: uppercase before lowercase, as Python's sorted().
        assert_eq!(ds.classes(), ["Bee", "ant", "zebra"]);
        assert_eq!(ds.num_classes(), 3);
        let names: Vec<String> = (0..ds.len())
            .map(|i| {
                ds.path(i)
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(
            names,
            [
                "Bee/only.png",
                "ant/x.jpeg",
                "ant/sub/a.png",
                "zebra/C.PNG",
                "zebra/a.jpg",
                "zebra/b.png"
            ]
        );
        let labels: Vec<_> = (0..ds.len()).map(|i| ds.label(i).unwrap()).collect();
        assert_eq!(labels, [0, 1, 1, 2, 2, 2]);
        assert_eq!(ds.label(6), None);
        assert_eq!(ds.get(0).unwrap(), rgb(2, 2, 60));
        assert_eq!(ds.get(2).unwrap(), rgb(5, 5, 50));
        // JPEG is lossy: check size and rough colour.
        let jpg = ds.get(4).unwrap();
        assert_eq!(jpg.dimensions(), (4, 3));
        assert!(jpg.pixels().all(|p| (i32::from(p[2]) - 235).abs() <= 6));
        assert!(ds.describe().contains("6 images"));
    }

    #[test]
    fn grayscale_and_rgba_become_rgb() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir(root.join("c")).unwrap();
        GrayImage::from_pixel(3, 2, Luma([77]))
            .save(root.join("c/g.png"))
            .unwrap();
        RgbaImage::from_pixel(3, 2, Rgba([10, 20, 30, 40]))
            .save(root.join("c/r.png"))
            .unwrap();
        let ds = ImageFolder::open(root).unwrap();
        assert_eq!(
            ds.get(0).unwrap(),
            RgbImage::from_pixel(3, 2, Rgb([77, 77, 77]))
        );
        assert_eq!(
            ds.get(1).unwrap(),
            RgbImage::from_pixel(3, 2, Rgb([10, 20, 30]))
        );
    }

    #[test]
    fn missing_and_bad_roots_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = ImageFolder::open(&missing).unwrap_err();
        assert!(matches!(err, DataError::MissingDir { .. }));
        assert!(
            err.to_string().contains(&*missing.to_string_lossy()),
            "{err}"
        );

        let err = ImageFolder::open(dir.path()).unwrap_err();
        assert!(matches!(err, DataError::NoClasses { .. }), "{err}");
        assert!(err.to_string().contains(&*dir.path().to_string_lossy()));

        let file = dir.path().join("f.png");
        fs::write(&file, b"x").unwrap();
        assert!(matches!(
            ImageFolder::open(&file),
            Err(DataError::NotADirectory { .. })
        ));

        fs::create_dir(dir.path().join("empty")).unwrap();
        fs::write(dir.path().join("empty/readme.md"), b"x").unwrap();
        let err = ImageFolder::open(dir.path()).unwrap_err();
        assert!(matches!(err, DataError::EmptyClass { .. }), "{err}");
        assert!(err.to_string().contains("empty"), "{err}");
    }

    #[test]
    fn corrupt_file_error_names_it() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("c")).unwrap();
        let bad = dir.path().join("c/broken.png");
        fs::write(&bad, b"\x89PNG\r\n\x1a\n this is not really a png").unwrap();
        let ds = ImageFolder::open(dir.path()).unwrap();
        let err = ds.get(0).unwrap_err();
        assert!(matches!(err, DataError::Decode { .. }), "{err}");
        assert!(err.to_string().contains(&*bad.to_string_lossy()), "{err}");
        assert!(matches!(
            ds.get(1),
            Err(DataError::IndexOutOfRange { index: 1, .. })
        ));
    }
}
