//! # carp-train: a CARP pretraining run
//!
//! Configuration ([`config::Config`], presets `tiny`, `cifar`, `imagenet`), the run directory,
//! the training loop with exact resume ([`pretrain::pretrain`]), metrics and the k-NN
//! evaluation at the end; backbone weights for evaluation ([`weights::load_backbone`]) and
//! feature extraction to `.npy`/`.safetensors` ([`embed`]).
//!
//! Watching a run: [`diagnostics`] (collapse signals and detector), [`tensorboard`] (event
//! files), [`progress`] (events for a progress bar), [`signals`] (graceful stop),
//! [`report`] (plots and a Markdown summary).
//!
//! ```no_run
//! use carp_train::{config::Config, pretrain::pretrain};
//! let mut cfg = Config::preset("tiny").unwrap();
//! cfg.run.out = "runs/example".into();
//! let summary = pretrain(&cfg, &burn::tensor::Device::flex()).unwrap();
//! println!("{:?}", summary.knn);
//! ```
//!
//! ## Feature flags
//!
//! `vulkan`, `cuda`, `ndarray`: the matching Burn backends, selected with `run.device`.

#![warn(missing_docs)]

pub mod config;
pub mod data;
pub mod device;
pub mod diagnostics;
pub mod embed;
pub mod error;
pub mod eval;
pub mod metrics;
pub mod pretrain;
pub mod progress;
pub mod report;
pub mod signals;
pub mod state;
pub mod tensorboard;
pub mod weights;

pub use config::Config;
pub use error::TrainError;
pub use pretrain::{pretrain, Summary};
