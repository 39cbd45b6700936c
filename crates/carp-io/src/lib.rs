//! # carp-io: weights in and out
//!
//! - [`params`]: read a module's tensors by torchvision-style path
//!   (`backbone.layer1.0.conv1.weight`) and write them back ([`params::collect`],
//!   [`params::apply`]).
//! - [`checkpoint`]: carp's own files, one safetensors file holding named tensors plus JSON
//!   metadata, written atomically (temp file, fsync, rename) so a crash never leaves a torn
//!   checkpoint behind; [`checkpoint::CarpFile`] tells a run checkpoint or converted weights.
//! - [`pytorch`]: PyTorch `.pth` files (zip and legacy containers) read without executing
//!   their pickles.
//! - [`keymap`]: the checkpoint layouts of CARP's release and other methods (DINO, SwAV,
//!   MoCo v3, VICReg, ...) mapped to torchvision names, and loaded into carp's modules.
//! - [`backbone`]: the one entry point for evaluation weights, [`backbone::load_backbone`],
//!   for carp's own files and every imported layout alike.
//! - [`export`]: imported weights written back as safetensors (torchvision or carp names).
//!
//! Errors: [`CheckpointError`] for carp's own files, [`ImportError`] for everything read
//! from or written for other tools.
//!
//! ```
//! use burn::tensor::Device;
//! use carp_core::resnet::{Arch, ResNetConfig};
//! let device = Device::flex();
//! let mut cfg = ResNetConfig::new(Arch::Resnet18);
//! cfg.base_width = 4;
//! let net = cfg.init(&device, 0);
//! let tensors = carp_io::params::collect(&net, "backbone.");
//! assert_eq!(tensors["backbone.conv1.weight"].shape, vec![4, 3, 7, 7]);
//! ```

#![warn(missing_docs)]

pub mod backbone;
pub mod checkpoint;
pub mod error;
pub mod export;
pub mod keymap;
pub mod params;
mod pickle_meta;
pub mod pytorch;

pub use checkpoint::{read_checkpoint, write_checkpoint, Checkpoint};
pub use error::{CheckpointError, ImportError, LayoutError};
pub use params::HostTensor;
