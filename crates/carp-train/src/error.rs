//! Errors of a training run.

use std::path::PathBuf;

/// What stops a run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Data-parallel training could not start or go on (MPI, process group).
    #[error("data-parallel run: {0}")]
    Distributed(String),
    /// A configuration value is invalid.
    #[error("config `{key}`: {message}")]
    Config {
        /// The key (or file) at fault.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The data could not be read.
    #[error(transparent)]
    Data(#[from] carp_data::DataError),
    /// A checkpoint could not be read or written.
    #[error(transparent)]
    Checkpoint(#[from] carp_io::CheckpointError),
    /// Weights for evaluation (a carp checkpoint, a PyTorch `.pth`, torchvision safetensors)
    /// could not be loaded.
    #[error(transparent)]
    Import(#[from] carp_io::ImportError),
    /// A checkpoint does not fit the configured model.
    #[error("{path}: checkpoint does not match the model: {message}")]
    Resume {
        /// The checkpoint.
        path: PathBuf,
        /// What differs.
        message: String,
    },
    /// The loss or a gradient became NaN or infinite; the last good checkpoint is left untouched.
    #[error("non-finite {term} at step {step} (loss: total {total}, consistency {consistency}, entropy {entropy}); the last good checkpoint was kept. Lower optim.base_lr or raise optim.warmup_epochs; `--nan-policy skip-step` skips such steps instead")]
    NonFiniteLoss {
        /// Global step (micro-batch index).
        step: usize,
        /// What was non-finite: `loss (consistency)`, `gradient of student.backbone.conv1.weight`, ...
        term: String,
        /// Total loss.
        total: f64,
        /// Consistency term.
        consistency: f64,
        /// Entropy term.
        entropy: f64,
    },
    /// The evaluation failed.
    #[error("evaluation: {0}")]
    Eval(#[from] carp_eval::EvalError),
    /// A file of the run directory could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}
