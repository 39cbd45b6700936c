//! # carp-suite: the paper's evaluation protocols on one backbone
//!
//! From images to numbers for every protocol of spec §6 that needs more than a train/test
//! split: few-shot VOC07 ([`fewshot::run_fewshot`]), revisited Oxford/Paris retrieval
//! ([`retrieval::run_retrieval`]), Copydays copy detection ([`copydays::run_copydays`]), and
//! [`suite::run_suite`], which finds every data set under a root folder, computes each data
//! set's features once and runs all protocols that apply (k-NN, k-means, linear probe,
//! few-shot, retrieval, copy detection) into one table. The numbers come from `carp-eval`,
//! the images from `carp-data`; [`extract`] is the one place features are computed.
//!
//! ## Feature flags
//!
//! None.
#![warn(missing_docs)]

pub mod copydays;
pub mod extract;
pub mod fewshot;
pub mod retrieval;
pub mod suite;

pub use extract::Extractor;

/// What can stop a protocol.
#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    /// Reading a data set.
    #[error(transparent)]
    Data(#[from] carp_data::DataError),
    /// Computing a metric.
    #[error(transparent)]
    Eval(#[from] carp_eval::EvalError),
    /// Running the backbone.
    #[error(transparent)]
    Train(#[from] carp_train::TrainError),
    /// Writing results.
    #[error("{path}: {source}", path = path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// Row-major features of images computed one at a time by `f`, in parallel over images
/// only when the backbone runs on the CPU pool anyway (kept sequential: the forward itself
/// is parallel).
pub(crate) fn stack(rows: Vec<Vec<f32>>) -> Result<carp_eval::Features, SuiteError> {
    let dim = rows.first().map_or(0, Vec::len);
    let n = rows.len();
    Ok(carp_eval::Features::new(rows.concat(), n, dim)?)
}
