//! Errors of reading and writing weights.

use std::path::PathBuf;

/// What can go wrong reading or writing a checkpoint file (carp's own or another tool's).
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
    #[error("{path}: not a readable checkpoint ({reason})")]
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

/// What can go wrong importing weights: carp's own files, PyTorch `.pth` checkpoints of the
/// CARP release and other methods, torchvision-named safetensors.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file could not be read or written, is not a readable checkpoint, or lacks a
    /// tensor of the right shape.
    #[error(transparent)]
    File(#[from] CheckpointError),
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
    #[error("{path}: {source}")]
    Layout {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: LayoutError,
    },
    /// A loading option has a value that does not fit the file.
    #[error("{path}: option `{key}`: {message}")]
    Option {
        /// The file.
        path: PathBuf,
        /// The option (`format`, `key`, `arch`).
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// Why a set of named tensors does not describe a network carp can build.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LayoutError(pub String);

impl ImportError {
    /// A [`CheckpointError::Io`] on the file `path`.
    pub fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::File(CheckpointError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// A [`CheckpointError::Format`]: `path` is not a (complete) checkpoint.
    pub fn format(path: &std::path::Path, reason: impl Into<String>) -> Self {
        Self::File(CheckpointError::Format {
            path: path.to_path_buf(),
            reason: reason.into(),
        })
    }

    /// A [`ImportError::Layout`] of the file `path`.
    pub fn layout(path: &std::path::Path, reason: impl Into<String>) -> Self {
        Self::Layout {
            path: path.to_path_buf(),
            source: LayoutError(reason.into()),
        }
    }
}

/// A name (format, export naming) that is not one of the known ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{name}` (one of: {})", known.join(", "))]
pub struct UnknownName {
    /// What kind of name (`checkpoint format`, ...).
    pub what: &'static str,
    /// The name given.
    pub name: String,
    /// The accepted names.
    pub known: Vec<&'static str>,
}
