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

/// What can go wrong importing weights from another tool's checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not a readable checkpoint (truncated, corrupt or another kind of file).
    #[error("{path}: not a readable checkpoint ({reason})")]
    Format {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// The pickle names a Python callable that plain weights never need; nothing was run.
    #[error(
        "{path}: refused: the pickle calls `{global}`, which is not tensor or plain data \
         (nothing was executed)"
    )]
    UnsafeGlobal {
        /// The file.
        path: PathBuf,
        /// `module.name` of the callable.
        global: String,
    },
    /// The checkpoint's layout does not fit the requested (or detected) format.
    #[error("{path}: {reason}")]
    Layout {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A tensor has another shape than the model expects.
    #[error("tensor `{key}` has shape {found:?}, the model expects {expected:?}")]
    Shape {
        /// The tensor name.
        key: String,
        /// Shape in the model.
        expected: Vec<usize>,
        /// Shape in the file.
        found: Vec<usize>,
    },
}
