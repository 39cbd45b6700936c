//! carp data: images in, batches of augmented views out.
//!
//! # Brief overview
//!
//! - [`Dataset`]: an indexable collection of labelled RGB images. Two readers:
//!   [`SyntheticShapes`], the built-in procedurally generated set of 10 shape classes that
//!   needs no files (the default dataset), and [`ImageFolder`], a `root/<class>/<image>`
//!   tree read with torchvision's `ImageFolder` rules. [`Cifar`] (CIFAR-10/100 binary),
//!   [`Stl10`] (STL-10 binary, including the unlabeled split) and [`FileList`] (a text
//!   file of paths) read the other formats; [`DataSource`] parses `KIND:PATH` strings.
//! - [`augment`]: torchvision-compatible augmentations on a planar `f32` image
//!   ([`FloatImage`]): [`RandomResizedCrop`], flip, [`ColorJitter`], grayscale, Gaussian
//!   blur, solarize and ImageNet [`normalize`](augment::normalize).
//! - [`MultiCropRecipe`]: the list of [`ViewSpec`]s made from each image (spec §2):
//!   two global views, then the local views.
//! - [`Loader`]: deterministic parallel batching. A [`ViewBatch`] holds one [`ViewGroup`]
//!   per run of equal-size views, shaped `[views·B, 3, size, size]`. Every random choice
//!   for a sample comes from [`sample_rng`]`(seed, epoch, index)`, so batches do not depend
//!   on the thread count; [`Loader::prefetch`] computes them ahead on a background thread.
//! - [`EvalTransform`] ([`eval_view`], [`eval_batches`]): the deterministic resize,
//!   centre-crop and normalise transform for evaluation, one policy for every protocol.
//! - [`seed`]: every random stream of a run (epoch order, per-sample augmentation, the
//!   step's partition) derived from the run seed.
//!
//! Evaluation data sets in their published layouts: [`TransferSet`] (Flowers-102, Pets, DTD,
//! Food-101, FGVC-Aircraft, Stanford Cars, GTSRB, Country211 with their official splits, as
//! [`LabelledFiles`]), [`Voc07`] (few-shot), [`Revisited`] (revisited Oxford/Paris ground
//! truth, read from its pickle without running it) and [`open_copydays`].
//!
//! [`download()`] fetches, checks (MD5) and unpacks the CIFAR-10/100 and STL-10 archives.
//!
//! This crate has no feature flags and does not depend on Burn: buffers are plain
//! `Vec<f32>`, ready to become tensors.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use carp_data::{Dataset, Loader, MultiCropRecipe, SyntheticConfig, SyntheticShapes};
//!
//! let data = SyntheticShapes::new(SyntheticConfig { num_images: 64, image_size: 32, seed: 0 });
//! assert_eq!(data.num_classes(), 10);
//! // Two 32 px global views and four 16 px local views per image.
//! let recipe = MultiCropRecipe::carp(32, 16, (0.25, 1.0), (0.05, 0.25), 4);
//! let loader = Loader::new(Arc::new(data), recipe, 16, 7);
//! assert_eq!(loader.steps_per_epoch(), 4);
//!
//! let batch = loader.batch(0, 0)?;
//! assert_eq!(batch.indices.len(), 16);
//! let shapes: Vec<_> = batch.groups.iter().map(|g| g.shape(16)).collect();
//! assert_eq!(shapes, [[32, 3, 32, 32], [64, 3, 16, 16]]);
//! assert_eq!(batch.groups[1].data.len(), 64 * 3 * 16 * 16);
//! // Same (seed, epoch, step), same batch.
//! assert_eq!(batch, loader.batch(0, 0)?);
//! # Ok::<(), carp_data::DataError>(())
//! ```
#![warn(missing_docs)]

pub mod augment;
pub mod cifar;
pub mod copydays;
pub mod dataset;
pub mod download;
pub mod dtd;
pub mod error;
pub mod eval_transform;
pub mod fgvc_aircraft;
pub mod filelist;
pub mod flowers102;
pub mod folder;
pub mod food101;
pub mod gtsrb;
pub mod labelled;
pub mod loader;
pub mod matfile;
pub mod multicrop;
pub mod oxford_pets;
pub mod revisitop;
pub mod seed;
pub mod source;
pub mod stanford_cars;
pub mod stl10;
pub mod synthetic;
pub mod transfer;
pub mod voc07;

pub use augment::{ColorJitter, CropBox, FloatImage, RandomResizedCrop};
pub use cifar::{Cifar, CifarSplit, CifarVariant};
pub use copydays::{list_image_files, open_copydays, CopydaysBlock};
pub use dataset::Dataset;
pub use download::{download, Archive, DownloadOptions, Downloaded};
pub use error::DataError;
pub use eval_transform::{eval_batches, eval_view, EvalTransform};
pub use filelist::FileList;
pub use folder::ImageFolder;
pub use labelled::LabelledFiles;
pub use loader::{epoch_order, sample_rng, Loader, Prefetch, ViewBatch, ViewGroup};
pub use multicrop::{MultiCropRecipe, ViewSpec};
pub use revisitop::{Revisited, RevisitedQuery, REVISITED_SETS};
pub use source::{DataSource, SourceKind};
pub use stl10::{Stl10, Stl10Split};
pub use synthetic::{SyntheticConfig, SyntheticShapes};
pub use transfer::{Split, TransferSet};
pub use voc07::{Voc07, VOC_CLASSES};
