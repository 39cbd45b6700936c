//! The [`Dataset`] trait: an indexable collection of labelled RGB images.

use crate::DataError;
use image::RgbImage;

/// An indexable, thread-safe collection of images with optional labels.
pub trait Dataset: Send + Sync {
    /// Number of images.
    fn len(&self) -> usize;

    /// Whether the dataset holds no image.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Decodes (or generates) image `index` as 8-bit RGB.
    fn get(&self, index: usize) -> Result<RgbImage, DataError>;

    /// Class index of image `index`, if the dataset is labelled.
    fn label(&self, index: usize) -> Option<usize>;

    /// Number of classes (0 for an unlabelled dataset).
    fn num_classes(&self) -> usize;

    /// One-line human-readable description (kind, location, size).
    fn describe(&self) -> String;
}
