//! carp evaluation: features in, numbers out.
//!
//! This crate turns frozen backbone features into the numbers of spec §6. It knows nothing of
//! models or images (and does not depend on Burn): callers extract features, put them in a
//! [`Features`] matrix and call an evaluation function.
//!
//! - [`Features`]: a row-major `[rows, dim]` matrix of f32 feature vectors, with
//!   [`Features::l2_normalized`].
//! - [`weighted_knn`]: DINO's weighted k-NN classifier (spec §6) — cosine similarity, k nearest
//!   train rows, votes weighted by exp(sim / T) — configured by [`KnnConfig`] and returning one
//!   [`KnnResult`] (top-1 / top-5 in percent) per k.
//! - [`cluster_metrics`]: NMI, adjusted NMI, ARI, Fowlkes–Mallows, homogeneity, completeness and
//!   V-measure of any two label vectors ([`cluster_scores`]), as scikit-learn defines them.
//! - [`kmeans`]: spherical k-means on standardised features ([`spherical_kmeans`]) and the
//!   spec §6 protocol with its clustering report ([`kmeans_eval`]).
//! - [`linear`]: the linear probe on frozen features ([`linear_probe`], LARS or SGD, cosine
//!   schedule, top-1/top-5 per epoch and the best).
//! - [`svm`]: the few-shot VOC07 protocol's linear SVM ([`train_linear_svc`], scikit-learn's
//!   `LinearSVC` by dual coordinate descent) and [`voc_average_precision`] (the release's AP).
//! - [`retrieval`]: revisited Oxford/Paris ranking and [`compute_map`] (mAP, mP@k, junk);
//!   [`copy_detection`]: Copydays block mAP; [`whitening`]: PCA whitening ([`Whitening`]).
//! - [`EvalError`]: every way user-supplied features, labels or settings can be wrong.
//!
//! # Example
//!
//! Two well-separated clusters are classified perfectly:
//!
//! ```
//! use carp_eval::{weighted_knn, Features, KnnConfig};
//!
//! // Class 0 points along +x, class 1 along +y.
//! let train = Features::new(
//!     vec![1.0, 0.1, 0.9, -0.1, 1.1, 0.0, 0.1, 1.0, -0.1, 0.9, 0.0, 1.2],
//!     6,
//!     2,
//! )?;
//! let train_labels = [0, 0, 0, 1, 1, 1];
//! let test = Features::new(vec![2.0, 0.3, 0.2, 3.0], 2, 2)?;
//! let test_labels = [0, 1];
//!
//! let cfg = KnnConfig { ks: vec![1, 3], ..KnnConfig::default() };
//! let results = weighted_knn(&train, &train_labels, &test, &test_labels, 2, &cfg)?;
//! assert_eq!(results.len(), 2);
//! assert_eq!((results[0].k, results[0].top1), (1, 100.0));
//! assert_eq!((results[1].k, results[1].top1), (3, 100.0));
//! # Ok::<(), carp_eval::EvalError>(())
//! ```
//!
//! # Feature flags
//!
//! None. Parallelism uses rayon's global pool; similarities use `matrixmultiply`'s f32 GEMM;
//! the whitening's eigendecomposition is nalgebra's.
#![warn(missing_docs)]

pub mod average_precision;
pub mod cluster_metrics;
pub mod copy_detection;
mod error;
mod features;
pub mod fewshot;
pub mod kmeans;
pub mod knn;
mod linalg;
pub mod linear;
pub mod retrieval;
pub mod svm;
pub mod whitening;

pub use average_precision::voc_average_precision;
pub use cluster_metrics::{cluster_scores, ClusterScores, Contingency};
pub use copy_detection::{copy_detection_map, BlockMap, CopyBlock, COPYDAYS_TOP};
pub use error::EvalError;
pub use features::Features;
pub use fewshot::{voc_fewshot, FewShotConfig, FewShotRow};
pub use kmeans::{kmeans_eval, spherical_kmeans, KmeansConfig, KmeansInit, KmeansReport};
pub use knn::{weighted_knn, KnnConfig, KnnResult};
pub use linear::{linear_probe, linear_probe_with, LinearConfig, LinearReport, ProbeOptimizer};
pub use retrieval::{
    compute_map, rank_by_similarity, revisited_map, trapezoid_ap, MapReport, QueryTruth,
    RevisitedReport, RevisitedTruth,
};
pub use svm::{train_linear_svc, LinearSvc, SvcConfig};
pub use whitening::Whitening;
