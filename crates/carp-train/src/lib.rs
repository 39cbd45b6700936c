//! # carp-train: a CARP pretraining run
//!
//! - [`config`]: the run's configuration ([`config::Config`], presets `tiny`, `cifar`,
//!   `imagenet`), validated once by [`config::Config::resolve`].
//! - [`pretrain`]: a run from start (or resume) to summary ([`pretrain::pretrain`]);
//!   [`trainer::Trainer`] holds its parts: [`trainer::Trainer::step`] reads like the
//!   release's `train_one_epoch` (partition, forward/backward, finite check, accumulate or
//!   update), and logging, checkpoints, evaluation and epoch ends are one method each.
//! - [`schedules`] (spec §5), [`state`] (what a checkpoint holds, exact resume), [`data`]
//!   (the run's data sets and views), [`eval`] (k-NN during and after a run), [`embed`]
//!   (features to `.npy` / `.safetensors`).
//!
//! Watching a run: [`monitor`] (metrics lines, TensorBoard, the collapse detector),
//! [`diagnostics`] (collapse signals), [`tensorboard`] (event files), [`progress`] (events
//! for a progress bar), [`signals`] (graceful stop), [`report`] (plots and a Markdown
//! summary). Weights for evaluation are loaded by `carp_io::backbone`.
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

pub mod alloc;
pub mod config;
pub mod data;
pub mod device;
pub mod diagnostics;
pub mod dist;
pub mod embed;
pub mod error;
pub mod eval;
pub mod metrics;
pub mod monitor;
pub mod pretrain;
pub mod progress;
pub mod report;
pub mod schedules;
pub mod signals;
pub mod state;
pub mod tensorboard;
pub mod trainer;

pub use config::Config;
pub use error::TrainError;
pub use pretrain::{pretrain, Summary};
