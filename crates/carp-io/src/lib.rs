//! # carp-io: weights in and out
//!
//! - [`params`]: read a module's tensors by torchvision-style path
//!   (`backbone.layer1.0.conv1.weight`) and write them back ([`params::collect`],
//!   [`params::apply`]).
//! - [`checkpoint`]: one safetensors file holding named tensors plus JSON metadata, written
//!   atomically (temp file, fsync, rename) so a crash never leaves a torn checkpoint behind.
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

pub mod checkpoint;
pub mod error;
pub mod export;
pub mod keymap;
pub mod params;
mod pickle_meta;
pub mod pytorch;

pub use checkpoint::{read_checkpoint, write_checkpoint, Checkpoint};
pub use error::{CheckpointError, IoError};
pub use params::HostTensor;
