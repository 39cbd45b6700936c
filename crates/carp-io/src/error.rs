//! Errors of reading and writing weights.

use std::path::PathBuf;

/// What can go wrong with a checkpoint file.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not a valid safetensors file (truncated, torn or another format).
    #[error("{path}: not a readable carp checkpoint ({reason})")]
    Format {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// A tensor the module needs is absent from the file.
    #[error("{path}: missing tensor `{key}`")]
    Missing {
        /// The file.
        path: PathBuf,
        /// The tensor name.
        key: String,
    },
    /// A tensor has another shape than the module's parameter.
    #[error("{path}: tensor `{key}` has shape {found:?}, the model expects {expected:?}")]
    Shape {
        /// The file.
        path: PathBuf,
        /// The tensor name.
        key: String,
        /// Shape in the model.
        expected: Vec<usize>,
        /// Shape in the file.
        found: Vec<usize>,
    },
}
