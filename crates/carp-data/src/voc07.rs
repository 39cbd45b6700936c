//! Pascal VOC 2007 classification, read as the CARP release's `evaluations/few-shot/voc.py`
//! does: `VOCdevkit/VOC2007/ImageSets/Main/<class>_<set>.txt` (lines `<image id> <label>`,
//! label 1 present, -1 absent, 0 "difficult") and `VOCdevkit/VOC2007/JPEGImages/<id>.jpg`.

use crate::folder::load_rgb;
use crate::labelled::{bad_line, read_split_file};
use crate::{DataError, Dataset};
use image::RgbImage;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The 20 VOC classes in the release's order.
pub const VOC_CLASSES: [&str; 20] = [
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
];

/// One VOC07 image set (`trainval` or `test`) with its 20 labels per image.
#[derive(Clone, Debug)]
pub struct Voc07 {
    root: PathBuf,
    set: String,
    ids: Vec<String>,
    targets: Vec<[i8; 20]>,
}

impl Voc07 {
    /// Reads image set `set` from `root` (the folder holding `VOCdevkit/`). Images come in the
    /// order of `aeroplane_<set>.txt`, as the release's dict preserves it.
    ///
    /// # Errors
    /// [`DataError::SplitFile`] naming a class file that is missing, has a line that is not
    /// `<id> <-1|0|1>`, or names an image the first file does not.
    pub fn open(root: &Path, set: &str) -> Result<Self, DataError> {
        let main = root.join("VOCdevkit/VOC2007/ImageSets/Main");
        let mut ids: Vec<String> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut targets: Vec<[i8; 20]> = Vec::new();
        for (c, class) in VOC_CLASSES.iter().enumerate() {
            let file = main.join(format!("{class}_{set}.txt"));
            let text = read_split_file(&file)?;
            for (k, line) in text.lines().enumerate() {
                let parts: Vec<&str> = line.split_whitespace().collect();
                if parts.is_empty() {
                    continue;
                }
                let (id, label) = match parts[..] {
                    [id, label] => (id, label),
                    _ => return Err(bad_line(&file, k + 1, "expected `<image id> <-1|0|1>`")),
                };
                let label: i8 = match label.parse() {
                    Ok(v @ -1..=1) => v,
                    _ => {
                        return Err(bad_line(
                            &file,
                            k + 1,
                            format!("label `{label}` is not -1, 0 or 1"),
                        ))
                    }
                };
                let row = if c == 0 {
                    index.insert(id.to_string(), ids.len());
                    ids.push(id.to_string());
                    targets.push([-1; 20]);
                    ids.len() - 1
                } else {
                    *index.get(id).ok_or_else(|| {
                        bad_line(
                            &file,
                            k + 1,
                            format!(
                                "image {id} is not in {VOC_CLASSES0}_{set}.txt",
                                VOC_CLASSES0 = VOC_CLASSES[0]
                            ),
                        )
                    })?
                };
                targets[row][c] = label;
            }
        }
        Ok(Self {
            root: root.to_path_buf(),
            set: set.to_string(),
            ids,
            targets,
        })
    }

    /// Labels per image and class: 1 present, -1 absent, 0 difficult.
    pub fn targets(&self) -> &[[i8; 20]] {
        &self.targets
    }

    /// Image ids in order.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// Path of image `index`.
    ///
    /// # Panics
    /// If `index >= self.len()`.
    pub fn path(&self, index: usize) -> PathBuf {
        self.root
            .join("VOCdevkit/VOC2007/JPEGImages")
            .join(format!("{}.jpg", self.ids[index]))
    }
}

impl Dataset for Voc07 {
    fn len(&self) -> usize {
        self.ids.len()
    }

    fn get(&self, index: usize) -> Result<RgbImage, DataError> {
        if index >= self.ids.len() {
            return Err(DataError::IndexOutOfRange {
                dataset: self.describe(),
                index,
                len: self.ids.len(),
            });
        }
        load_rgb(&self.path(index))
    }

    /// Multi-label: no single class.
    fn label(&self, _index: usize) -> Option<usize> {
        None
    }

    fn num_classes(&self) -> usize {
        0
    }

    fn describe(&self) -> String {
        format!(
            "VOC2007 {} {} ({} images)",
            self.set,
            self.root.display(),
            self.ids.len()
        )
    }
}
