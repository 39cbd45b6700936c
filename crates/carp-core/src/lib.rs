//! # carp-core: the CARP method, written once against Burn's tensors
//!
//! CARP (Consistent Assignment of Views over Random Partitions, Santos Silva & Ramírez Rivera,
//! NeurIPS 2023) learns image representations without labels. This crate holds the method
//! only; it touches no files, no terminal and no global random generator.
//!
//! - [`resnet`]: ResNet-18/34/50 backbones with torchvision parameter names ([`resnet::ResNet`]).
//! - [`head`]: the CARP head, MLP + weight-normalised prototypes ([`head::CarpHead`]).
//! - [`partition`]: random partitions and the block softmax (spec §3).
//! - [`loss`]: consistency and entropy terms (spec §4), [`loss::carp_loss`].
//! - [`lars`], [`schedule`], [`ema`]: optimisation (spec §5).
//! - [`reduce`]: full sums whose rounding does not depend on thread timing (issue 15).
//! - [`model`]: the student/teacher pair and the multi-crop forward; [`step`]: one training step.
//! - [`precision`]: f32 / bf16 / f16 training (issue 12); [`scaler`]: f16 dynamic loss
//!   scaling with PyTorch `GradScaler` semantics.
//!
//! The device picks the backend at run time: `Device::flex()` (CPU, default) or, with the
//! `vulkan` / `cuda` features, a GPU; `.autodiff()` enables training.
//!
//! ```
//! use burn::tensor::{Device, Distribution, Tensor};
//! use carp_core::{loss::carp_loss, partition::Partition};
//! use rand::SeedableRng;
//!
//! let device = Device::flex().autodiff();
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
//! let partition = Partition::random(64, 16, &mut rng); // K = 64, N = 16, P = 4
//! let student = Tensor::<2>::random([4 * 8, 64], Distribution::Normal(0., 1.), &device).require_grad();
//! let teacher = Tensor::<2>::random([2 * 8, 64], Distribution::Normal(0., 1.), &device);
//! let terms = carp_loss(student.clone(), teacher, 8, &partition);
//! let grads = terms.total.backward();
//! assert_eq!(student.grad(&grads).unwrap().dims(), [32, 64]);
//! ```
//!
//! ## Feature flags
//!
//! - `vulkan`: Burn's Vulkan (SPIR-V) GPU backend, `Device::vulkan(..)`.
//! - `cuda`: Burn's CUDA backend (needs an LLVM download at build time).
//! - `ndarray`: Burn's older ndarray CPU backend, for comparison.

#![warn(missing_docs)]

pub mod collective;
pub mod data_parallel;
pub mod ema;
pub mod head;
pub mod init;
pub mod lars;
pub mod loss;
pub mod model;
pub mod norm;
pub mod partition;
pub mod path;
pub mod precision;
pub mod reduce;
pub mod resnet;
pub mod scaler;
pub mod schedule;
pub mod step;

pub use burn;
