//! The one error enum of `carp-eval`.

use thiserror::Error;

/// What can go wrong when evaluating user-supplied features, labels or settings.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum EvalError {
    /// A feature buffer's length is not `rows * dim`.
    #[error("features: {rows} rows x {dim} dims needs {expected} values, found {found}")]
    FeatureLength {
        /// Rows claimed.
        rows: usize,
        /// Dimensions claimed.
        dim: usize,
        /// `rows * dim`.
        expected: usize,
        /// Length of the buffer supplied.
        found: usize,
    },
    /// `rows * dim` does not fit in `usize`.
    #[error("features: {rows} rows x {dim} dims overflows usize")]
    FeatureShapeOverflow {
        /// Rows claimed.
        rows: usize,
        /// Dimensions claimed.
        dim: usize,
    },
    /// A feature value is NaN or infinite.
    #[error("{set} features: row {row}, dim {col} is not finite ({value})")]
    NonFiniteFeature {
        /// `"train"` or `"test"`.
        set: &'static str,
        /// Row of the offending value.
        row: usize,
        /// Column of the offending value.
        col: usize,
        /// The value itself.
        value: f32,
    },
    /// Train and test features have different widths.
    #[error("feature dims differ: train has {train_dim}, test has {test_dim}")]
    DimMismatch {
        /// Width of the train features.
        train_dim: usize,
        /// Width of the test features.
        test_dim: usize,
    },
    /// The number of labels is not the number of feature rows.
    #[error("{set}: {labels} labels for {rows} feature rows")]
    LabelCount {
        /// `"train"` or `"test"`.
        set: &'static str,
        /// Labels supplied.
        labels: usize,
        /// Feature rows supplied.
        rows: usize,
    },
    /// A label is not below `num_classes`.
    #[error("{set} label {label} at row {row} is out of range for {num_classes} classes")]
    LabelOutOfRange {
        /// `"train"` or `"test"`.
        set: &'static str,
        /// Row of the offending label.
        row: usize,
        /// The label found.
        label: usize,
        /// Number of classes expected.
        num_classes: usize,
    },
    /// There are no test rows, so accuracy is undefined.
    #[error("k-NN: the test set is empty")]
    EmptyTest,
    /// A k of zero was requested.
    #[error("k-NN: k must be at least 1, found 0")]
    ZeroK,
    /// A k larger than the number of train rows was requested.
    #[error("k-NN: k = {k} exceeds the {train_rows} train rows")]
    KTooLarge {
        /// The k requested.
        k: usize,
        /// Number of train rows available.
        train_rows: usize,
    },
    /// The temperature is not a finite positive number.
    #[error("k-NN: temperature must be finite and > 0, found {temperature}")]
    Temperature {
        /// The temperature supplied.
        temperature: f32,
    },
    /// `chunk_rows` is zero.
    #[error("k-NN: chunk_rows must be at least 1, found 0")]
    ZeroChunkRows,
    /// Two label vectors to compare have different lengths.
    #[error("clustering metrics: {truth} true labels but {pred} predicted labels")]
    LabelLengths {
        /// Length of the true labels.
        truth: usize,
        /// Length of the predicted labels.
        pred: usize,
    },
    /// Clustering metrics of zero rows were asked for.
    #[error("clustering metrics: the label vectors are empty")]
    EmptyLabels,
    /// The number of k-means clusters is 0 or more than the train rows.
    #[error("k-means: k = {k} clusters needs 1 <= k <= {rows} train rows")]
    KmeansK {
        /// Clusters asked for.
        k: usize,
        /// Train rows available.
        rows: usize,
    },
    /// A k-means setting is out of range.
    #[error("k-means: {0}")]
    KmeansSettings(String),
    /// A linear-probe setting is out of range.
    #[error("linear probe: {0}")]
    ProbeSettings(String),
    /// An SVM setting is out of range, or the labels hold one class only.
    #[error("linear SVM: {0}")]
    SvmSettings(String),
    /// Retrieval, copy-detection or whitening inputs that do not fit together.
    #[error("retrieval: {0}")]
    RetrievalInput(String),
}
