//! Weighted k-nearest-neighbour classification on frozen features (spec §6).

use std::cmp::Ordering;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{EvalError, Features};

/// The neighbour counts spec §6 reports.
pub const SPEC_KS: [usize; 4] = [10, 20, 100, 200];

/// The k whose top-1 a one-number summary reports (the CARP paper's k-NN column).
pub const HEADLINE_K: usize = 20;

/// The result a one-number summary reports: k = [`HEADLINE_K`], or the largest k evaluated
/// when that one is missing (a memory bank smaller than 20 images).
pub fn headline(results: &[KnnResult]) -> Option<&KnnResult> {
    results
        .iter()
        .find(|r| r.k == HEADLINE_K)
        .or_else(|| results.iter().max_by_key(|r| r.k))
}

/// Settings of [`weighted_knn`]; `Default` carries the spec §6 values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KnnConfig {
    /// Neighbour counts to report, in the order results are returned. Default [`SPEC_KS`].
    pub ks: Vec<usize>,
    /// Temperature T of the vote weight exp(sim / T). Default `0.07` (spec §6).
    pub temperature: f32,
    /// Test rows per similarity chunk; memory is `chunk_rows * n_train` f32. Default `1024`.
    pub chunk_rows: usize,
}

impl Default for KnnConfig {
    fn default() -> Self {
        Self {
            ks: SPEC_KS.to_vec(),
            temperature: 0.07,
            chunk_rows: 1024,
        }
    }
}

/// Accuracy of the weighted k-NN classifier for one k, in percent (0..=100).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KnnResult {
    /// Number of neighbours that voted.
    pub k: usize,
    /// Percentage of test rows whose label has the highest class score.
    pub top1: f64,
    /// Percentage of test rows whose label is among the `min(5, k, C)` highest class scores.
    pub top5: f64,
}

/// Weighted k-NN accuracy, spec §6 (DINO's `eval_knn.knn_classifier`), for every k in `cfg.ks`.
///
/// ```text
/// x̂ = x / ||x||₂ (zero rows stay zero), for train rows t_j and test rows q_i
/// s_ij = <q̂_i, t̂_j>                                cosine similarity, f32 (sgemm)
/// N_k(i) = the k train rows j with the largest s_ij
/// score_i(c) = Σ_{j ∈ N_k(i), y_j = c} exp(s_ij / T)  summed in f64
/// top-1: label_i ranks first in score_i
/// top-5: label_i ranks within the first min(5, k, C) of score_i
/// ```
///
/// `T` is `cfg.temperature`, `C` is `num_classes`, `y_j` the train labels. Shapes: `train` is
/// `[N, D]`, `test` is `[M, D]`, labels have lengths `N` and `M`; the result has one entry per
/// `cfg.ks` entry, in that order.
///
/// Ties are resolved deterministically: train rows with equal similarity are ranked by ascending
/// train index (so which of them enter `N_k` never depends on threads or `chunk_rows`), and
/// classes with equal score are ranked by ascending class index, so a zero-score class can only
/// rank above the true label when its index is smaller. The top-5 window is `min(5, k)` as in
/// DINO (`correct.narrow(1, 0, min(5, k))`, since "top5 does not make sense if k < 5"), and never
/// wider than `C`; for the spec's ks (10 to 200) with C ≥ 5 it is plain top-5.
///
/// Similarities are computed one chunk of `cfg.chunk_rows` test rows at a time against all train
/// rows with `matrixmultiply::sgemm`, split over rayon threads; each test row then does one
/// exact top-k selection for the largest k (one pass with a k-element heap, so most train rows
/// cost a single comparison) and reuses its sorted prefix for the smaller ks. Results do not depend on `chunk_rows` or the thread count.
///
/// # Errors
/// - [`EvalError::DimMismatch`] when `train.dim != test.dim`;
/// - [`EvalError::LabelCount`] when a label slice's length is not its feature rows;
/// - [`EvalError::LabelOutOfRange`] when a label is `>= num_classes`;
/// - [`EvalError::NonFiniteFeature`] when a feature is NaN or infinite;
/// - [`EvalError::EmptyTest`] when `test` has no rows;
/// - [`EvalError::ZeroK`] when a k is 0, and [`EvalError::KTooLarge`] (naming k and the train
///   size) when a k exceeds the number of train rows: DINO's `topk` would fail there too, and
///   silently using fewer neighbours would report a different k than asked;
/// - [`EvalError::Temperature`] when T is not finite and positive;
/// - [`EvalError::ZeroChunkRows`] when `cfg.chunk_rows == 0`.
///
/// An empty `cfg.ks` returns an empty vector once the inputs are validated.
pub fn weighted_knn(
    train: &Features,
    train_labels: &[usize],
    test: &Features,
    test_labels: &[usize],
    num_classes: usize,
    cfg: &KnnConfig,
) -> Result<Vec<KnnResult>, EvalError> {
    validate(train, train_labels, test, test_labels, num_classes, cfg)?;
    if cfg.ks.is_empty() {
        return Ok(Vec::new());
    }

    // Distinct ks, ascending: one selection for the largest, prefixes for the rest.
    let mut ks_sorted = cfg.ks.clone();
    ks_sorted.sort_unstable();
    ks_sorted.dedup();
    let train_n = train.l2_normalized();
    let test_n = test.l2_normalized();
    let n_train = train.rows;
    let dim = train.dim;
    let temperature = f64::from(cfg.temperature);
    let chunk_rows = cfg.chunk_rows.min(test.rows);
    let threads = rayon::current_num_threads().max(1);

    let mut sims = vec![0.0f32; chunk_rows * n_train];
    let mut correct = vec![[0u64; 2]; ks_sorted.len()];
    for start in (0..test.rows).step_by(chunk_rows) {
        let rows = chunk_rows.min(test.rows - start);
        let block = &mut sims[..rows * n_train];

        // s = q̂ t̂ᵀ for this chunk, split into one sgemm per thread.
        let rows_per_task = rows.div_ceil(threads);
        block
            .par_chunks_mut(rows_per_task * n_train)
            .enumerate()
            .for_each(|(task, out)| {
                let first = start + task * rows_per_task;
                let m = out.len() / n_train;
                cosine_block(
                    &test_n.data[first * dim..(first + m) * dim],
                    &train_n.data,
                    m,
                    n_train,
                    dim,
                    out,
                );
            });

        let chunk_correct = block
            .par_chunks(n_train)
            .zip(test_labels[start..start + rows].par_iter())
            .fold(
                || RowScratch::new(n_train, num_classes, ks_sorted.len()),
                |mut scratch, (row_sims, &label)| {
                    scratch.vote(row_sims, train_labels, label, &ks_sorted, temperature);
                    scratch
                },
            )
            .map(|scratch| scratch.correct)
            .reduce(
                || vec![[0u64; 2]; ks_sorted.len()],
                |mut a, b| {
                    add_counts(&mut a, &b);
                    a
                },
            );
        add_counts(&mut correct, &chunk_correct);
    }
    let total = test.rows as f64;
    Ok(cfg
        .ks
        .iter()
        .map(|&k| {
            let [top1, top5] = correct[ks_sorted.binary_search(&k).expect("k is in ks_sorted")];
            KnnResult {
                k,
                top1: top1 as f64 * 100.0 / total,
                top5: top5 as f64 * 100.0 / total,
            }
        })
        .collect())
}

/// Checks shapes, labels, finiteness and settings before any work is done.
fn validate(
    train: &Features,
    train_labels: &[usize],
    test: &Features,
    test_labels: &[usize],
    num_classes: usize,
    cfg: &KnnConfig,
) -> Result<(), EvalError> {
    if train.dim != test.dim {
        return Err(EvalError::DimMismatch {
            train_dim: train.dim,
            test_dim: test.dim,
        });
    }
    for (set, features, labels) in [("train", train, train_labels), ("test", test, test_labels)] {
        let expected =
            features
                .rows
                .checked_mul(features.dim)
                .ok_or(EvalError::FeatureShapeOverflow {
                    rows: features.rows,
                    dim: features.dim,
                })?;
        if features.data.len() != expected {
            return Err(EvalError::FeatureLength {
                rows: features.rows,
                dim: features.dim,
                expected,
                found: features.data.len(),
            });
        }
        if labels.len() != features.rows {
            return Err(EvalError::LabelCount {
                set,
                labels: labels.len(),
                rows: features.rows,
            });
        }
        if let Some((row, &label)) = labels.iter().enumerate().find(|(_, &l)| l >= num_classes) {
            return Err(EvalError::LabelOutOfRange {
                set,
                row,
                label,
                num_classes,
            });
        }
        if let Some((at, &value)) = features
            .data
            .iter()
            .enumerate()
            .find(|(_, v)| !v.is_finite())
        {
            return Err(EvalError::NonFiniteFeature {
                set,
                row: at / features.dim,
                col: at % features.dim,
                value,
            });
        }
    }
    if test.rows == 0 {
        return Err(EvalError::EmptyTest);
    }
    for &k in &cfg.ks {
        if k == 0 {
            return Err(EvalError::ZeroK);
        }
        if k > train.rows {
            return Err(EvalError::KTooLarge {
                k,
                train_rows: train.rows,
            });
        }
    }
    if !(cfg.temperature.is_finite() && cfg.temperature > 0.0) {
        return Err(EvalError::Temperature {
            temperature: cfg.temperature,
        });
    }
    if cfg.chunk_rows == 0 {
        return Err(EvalError::ZeroChunkRows);
    }
    Ok(())
}

/// Cosine similarities of `m` unit test rows against `n` unit train rows: `out[i * n + j] = <q_i, t_j>`.
///
/// Shapes: `queries` is `[m, d]`, `train` is `[n, d]`, `out` is `[m, n]`, all row-major.
///
/// # Panics
/// If a slice length does not match its shape.
fn cosine_block(queries: &[f32], train: &[f32], m: usize, n: usize, d: usize, out: &mut [f32]) {
    assert_eq!(queries.len(), m * d, "queries must be [m, d]");
    assert_eq!(train.len(), n * d, "train must be [n, d]");
    assert_eq!(out.len(), m * n, "out must be [m, n]");
    let (d_stride, n_stride) = (d as isize, n as isize);
    // SAFETY: the asserts above guarantee that A = queries ([m, d], strides (d, 1)),
    // B = trainᵀ ([d, n], strides (1, d)) and C = out ([m, n], strides (n, 1)) are in bounds;
    // `out` is exclusively borrowed, so C aliases neither A nor B. With beta = 0, C is only written.
    unsafe {
        matrixmultiply::sgemm(
            m,
            d,
            n,
            1.0,
            queries.as_ptr(),
            d_stride,
            1,
            train.as_ptr(),
            1,
            d_stride,
            0.0,
            out.as_mut_ptr(),
            n_stride,
            1,
        );
    }
}

/// Neighbour order: higher similarity first, equal similarities by ascending train index.
fn neighbour_order(sims: &[f32], a: usize, b: usize) -> Ordering {
    // Inputs are finite, so similarities are never NaN; -0.0 == 0.0 here, as it should.
    sims[b]
        .partial_cmp(&sims[a])
        .unwrap_or(Ordering::Equal)
        .then(a.cmp(&b))
}

/// The `k` best train indices under [`neighbour_order`], best first, in `heap`.
///
/// One pass over `sims` with a heap of the `k` best so far whose root is the worst of them: a
/// row enters only when its similarity is strictly above the root's (an equal similarity comes
/// from a higher index and so ranks lower), so most rows cost one comparison. This is an exact
/// selection, identical to sorting all rows by [`neighbour_order`] and keeping the first `k`.
fn select_nearest(heap: &mut Vec<usize>, sims: &[f32], k: usize) {
    let k = k.min(sims.len());
    heap.clear();
    heap.extend(0..k);
    if k == 0 {
        return;
    }
    for i in (0..k / 2).rev() {
        sift_down(heap, sims, i);
    }
    let mut worst = sims[heap[0]];
    for (j, &s) in sims.iter().enumerate().skip(k) {
        if s > worst {
            heap[0] = j;
            sift_down(heap, sims, 0);
            worst = sims[heap[0]];
        }
    }
    heap.sort_unstable_by(|&a, &b| neighbour_order(sims, a, b));
}

/// Restores the heap property below `i`: every parent ranks after (is worse than) its children.
fn sift_down(heap: &mut [usize], sims: &[f32], mut i: usize) {
    loop {
        let (l, r) = (2 * i + 1, 2 * i + 2);
        let mut worst = i;
        if l < heap.len() && neighbour_order(sims, heap[l], heap[worst]) == Ordering::Greater {
            worst = l;
        }
        if r < heap.len() && neighbour_order(sims, heap[r], heap[worst]) == Ordering::Greater {
            worst = r;
        }
        if worst == i {
            return;
        }
        heap.swap(i, worst);
        i = worst;
    }
}

/// Position of `label` when classes are sorted by descending score, ties by ascending class index.
fn class_rank(scores: &[f64], label: usize) -> usize {
    let own = scores[label];
    scores
        .iter()
        .enumerate()
        .filter(|&(c, &s)| s > own || (s == own && c < label))
        .count()
}

/// Adds per-k `[top1, top5]` hit counts of `b` into `a`.
fn add_counts(a: &mut [[u64; 2]], b: &[[u64; 2]]) {
    for (x, y) in a.iter_mut().zip(b) {
        x[0] += y[0];
        x[1] += y[1];
    }
}

/// Per-thread buffers and hit counts for voting one test row at a time.
struct RowScratch {
    /// The nearest train indices, best first (see [`select_nearest`]).
    order: Vec<usize>,
    /// Class scores `[C]`.
    scores: Vec<f64>,
    /// Per distinct k (ascending): `[top1 hits, top5 hits]`.
    correct: Vec<[u64; 2]>,
}

impl RowScratch {
    fn new(n_train: usize, num_classes: usize, num_ks: usize) -> Self {
        Self {
            order: Vec::with_capacity(n_train.min(1 << 16)),
            scores: vec![0.0; num_classes],
            correct: vec![[0; 2]; num_ks],
        }
    }

    /// Votes for one test row with similarities `sims` `[N]` and records top-1/top-5 hits per k.
    fn vote(
        &mut self,
        sims: &[f32],
        train_labels: &[usize],
        label: usize,
        ks_ascending: &[usize],
        temperature: f64,
    ) {
        let k_max = *ks_ascending.last().expect("ks is not empty");
        select_nearest(&mut self.order, sims, k_max);
        let nearest = &self.order[..k_max];

        self.scores.fill(0.0);
        let mut voted = 0;
        for (hits, &k) in self.correct.iter_mut().zip(ks_ascending) {
            for &j in &nearest[voted..k] {
                self.scores[train_labels[j]] += (f64::from(sims[j]) / temperature).exp();
            }
            voted = k;
            let rank = class_rank(&self.scores, label);
            let window = 5.min(k).min(self.scores.len());
            hits[0] += u64::from(rank == 0);
            hits[1] += u64::from(rank < window);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn features(rows: &[&[f32]]) -> Features {
        let dim = rows.first().map_or(0, |r| r.len());
        Features::new(rows.concat(), rows.len(), dim).unwrap()
    }

    fn cfg(ks: &[usize]) -> KnnConfig {
        KnnConfig {
            ks: ks.to_vec(),
            ..KnnConfig::default()
        }
    }

    #[test]
    fn default_config_is_spec() {
        let c = KnnConfig::default();
        assert_eq!(c.ks, vec![10, 20, 100, 200]);
        assert_eq!(c.temperature, 0.07);
        assert_eq!(c.chunk_rows, 1024);
    }

    /// Hand-computed: query q = (1, 0); train rows at angle 0 (label 0, sim 1) and two at
    /// 90° (label 1, sim 0). Plain majority of k = 3 votes says class 1 (2 votes vs 1).
    /// Weighted: class 0 gets exp(1/0.07) = e^14.2857 ≈ 1.60032e6, class 1 gets 2·exp(0) = 2,
    /// so class 0 wins. With T = 100 the weights are e^0.01 vs 2, and the majority wins again.
    #[test]
    fn headline_is_k20_or_the_largest_k() {
        let r = |k| KnnResult {
            k,
            top1: k as f64,
            top5: 0.0,
        };
        assert_eq!(headline(&[r(10), r(20), r(100)]).unwrap().k, 20);
        assert_eq!(headline(&[r(10), r(5)]).unwrap().k, 10);
        assert!(headline(&[]).is_none());
    }

    #[test]
    fn exp_weighting_overrides_majority() {
        let train = features(&[&[1.0, 0.0], &[0.0, 1.0], &[0.0, -1.0]]);
        let labels = [0, 1, 1];
        let test = features(&[&[1.0, 0.0]]);

        // Check the scores themselves for the hand computation.
        let sims = [1.0f32, 0.0, 0.0];
        let w0 = (1.0f64 / 0.07).exp();
        assert!((w0 - 1_600_320.19).abs() / w0 < 1e-5, "exp(1/0.07) = {w0}");
        let mut s = RowScratch::new(3, 2, 1);
        s.vote(&sims, &labels, 0, &[3], f64::from(0.07f32));
        assert_eq!(s.scores[1], 2.0);
        assert!((s.scores[0] - w0).abs() / w0 < 1e-5);

        let r = weighted_knn(&train, &labels, &test, &[0], 2, &cfg(&[3])).unwrap();
        assert_eq!(r[0].top1, 100.0, "weighted vote must pick the close class");
        let r = weighted_knn(&train, &labels, &test, &[1], 2, &cfg(&[3])).unwrap();
        assert_eq!(r[0].top1, 0.0, "plain majority (class 1) must lose");

        let flat = KnnConfig {
            temperature: 100.0,
            ..cfg(&[3])
        };
        let r = weighted_knn(&train, &labels, &test, &[1], 2, &flat).unwrap();
        assert_eq!(r[0].top1, 100.0, "a hot temperature falls back to majority");
    }

    /// Train rows 0..3 are identical (labels 2, 1, 0); with k = 1 the lowest index wins,
    /// with k = 2 indices 0 and 1 tie on score and the smaller class (1) wins.
    #[test]
    fn similarity_ties_resolved_by_train_index() {
        let train = features(&[&[0.0, 1.0], &[0.0, 1.0], &[0.0, 1.0], &[1.0, 0.0]]);
        let labels = [2, 1, 0, 0];
        let test = features(&[&[0.0, 3.0]]);
        let c = KnnConfig {
            ks: vec![1, 2, 3],
            ..KnnConfig::default()
        };
        let top1_for = |label: usize| -> Vec<f64> {
            weighted_knn(&train, &labels, &test, &[label], 3, &c)
                .unwrap()
                .iter()
                .map(|r| r.top1)
                .collect()
        };
        // k = 1 -> neighbour 0 (label 2); k = 2 -> {2, 1} tie -> class 1;
        // k = 3 -> {2, 1, 0} all tie -> class 0.
        assert_eq!(top1_for(2), vec![100.0, 0.0, 0.0]);
        assert_eq!(top1_for(1), vec![0.0, 100.0, 0.0]);
        assert_eq!(top1_for(0), vec![0.0, 0.0, 100.0]);

        // Same ties reached through a permuted train set: the order follows the index, not the data.
        let order = [2usize, 0, 1, 3];
        let train_p = features(&order.map(|i| train.row(i)));
        let labels_p = order.map(|i| labels[i]);
        let r = weighted_knn(&train_p, &labels_p, &test, &[0], 3, &c).unwrap();
        assert_eq!(r[0].top1, 100.0, "neighbour 0 is now the label-0 row");
    }

    /// The heap selection equals a full sort by (similarity desc, index asc), ties included.
    #[test]
    fn select_nearest_equals_full_sort() {
        let sims: Vec<f32> = (0..500u32)
            .map(|i| ((i * 37 + 11) % 23) as f32 / 23.0 - 0.5)
            .chain([0.0, -0.0, 0.5, 0.5])
            .collect();
        let mut all: Vec<usize> = (0..sims.len()).collect();
        all.sort_by(|&a, &b| neighbour_order(&sims, a, b));
        let mut heap = Vec::new();
        for k in [1, 2, 7, 100, 503, 504] {
            select_nearest(&mut heap, &sims, k);
            assert_eq!(heap, all[..k], "k = {k}");
        }
    }

    #[test]
    fn class_rank_breaks_ties_by_class_index() {
        assert_eq!(class_rank(&[1.0, 3.0, 3.0, 0.0], 1), 0);
        assert_eq!(class_rank(&[1.0, 3.0, 3.0, 0.0], 2), 1);
        assert_eq!(class_rank(&[0.0, 0.0, 0.0], 2), 2);
        assert_eq!(class_rank(&[0.0, 0.0, 5.0], 0), 1);
    }

    /// Class 3 never appears in the train labels: test rows of class 3 can never be top-1, and
    /// with 4 classes and k ≥ 5 the top-5 window is all 4 classes (100 %).
    #[test]
    fn class_absent_from_train() {
        let train = features(&[
            &[1.0, 0.0],
            &[0.9, 0.1],
            &[0.0, 1.0],
            &[0.1, 0.9],
            &[-1.0, 0.0],
            &[-0.9, -0.1],
        ]);
        let labels = [0, 0, 1, 1, 2, 2];
        let test = features(&[&[1.0, 0.05], &[0.05, 1.0]]);
        let r = weighted_knn(&train, &labels, &test, &[3, 3], 4, &cfg(&[1, 2, 6])).unwrap();
        for res in &r {
            assert_eq!(res.top1, 0.0, "k = {}", res.k);
        }
        // k = 1, 2: window min(5, k) = k; class 3 scores 0 and ranks last-but-ties -> miss.
        assert_eq!(r[0].top5, 0.0);
        assert_eq!(r[1].top5, 0.0);
        // k = 6: window min(5, 6, C = 4) = 4 covers every class.
        assert_eq!(r[2].top5, 100.0);

        // Same features, labels present: top-1 is perfect.
        let r = weighted_knn(&train, &labels, &test, &[0, 1], 4, &cfg(&[1, 2])).unwrap();
        assert!(r.iter().all(|x| x.top1 == 100.0));
    }

    #[test]
    fn k_larger_than_train_is_an_error() {
        let train = features(&[&[1.0, 0.0], &[0.0, 1.0]]);
        let test = features(&[&[1.0, 0.0]]);
        let err = weighted_knn(&train, &[0, 1], &test, &[0], 2, &cfg(&[1, 3])).unwrap_err();
        assert_eq!(
            err,
            EvalError::KTooLarge {
                k: 3,
                train_rows: 2
            }
        );
        assert!(err.to_string().contains("k = 3") && err.to_string().contains("2 train rows"));
        assert!(weighted_knn(&train, &[0, 1], &test, &[0], 2, &cfg(&[2])).is_ok());
    }

    #[test]
    fn invalid_inputs_are_errors_with_numbers() {
        let train = features(&[&[1.0, 0.0], &[0.0, 1.0]]);
        let test = features(&[&[1.0, 0.0]]);
        let c = cfg(&[1]);
        let test3 = features(&[&[1.0, 0.0, 0.0]]);
        assert_eq!(
            weighted_knn(&train, &[0, 1], &test3, &[0], 2, &c),
            Err(EvalError::DimMismatch {
                train_dim: 2,
                test_dim: 3
            })
        );
        assert_eq!(
            weighted_knn(&train, &[0], &test, &[0], 2, &c),
            Err(EvalError::LabelCount {
                set: "train",
                labels: 1,
                rows: 2
            })
        );
        assert_eq!(
            weighted_knn(&train, &[0, 1], &test, &[0, 1], 2, &c),
            Err(EvalError::LabelCount {
                set: "test",
                labels: 2,
                rows: 1
            })
        );
        assert_eq!(
            weighted_knn(&train, &[0, 2], &test, &[0], 2, &c),
            Err(EvalError::LabelOutOfRange {
                set: "train",
                row: 1,
                label: 2,
                num_classes: 2
            })
        );
        assert_eq!(
            weighted_knn(&train, &[0, 1], &test, &[7], 2, &c),
            Err(EvalError::LabelOutOfRange {
                set: "test",
                row: 0,
                label: 7,
                num_classes: 2
            })
        );
        let nan = features(&[&[1.0, 0.0], &[0.0, f32::NAN]]);
        assert!(matches!(
            weighted_knn(&nan, &[0, 1], &test, &[0], 2, &c),
            Err(EvalError::NonFiniteFeature {
                set: "train",
                row: 1,
                col: 1,
                ..
            })
        ));
        let empty = Features::new(vec![], 0, 2).unwrap();
        assert_eq!(
            weighted_knn(&train, &[0, 1], &empty, &[], 2, &c),
            Err(EvalError::EmptyTest)
        );
        assert_eq!(
            weighted_knn(&train, &[0, 1], &test, &[0], 2, &cfg(&[0])),
            Err(EvalError::ZeroK)
        );
        let bad_t = KnnConfig {
            temperature: 0.0,
            ..cfg(&[1])
        };
        assert_eq!(
            weighted_knn(&train, &[0, 1], &test, &[0], 2, &bad_t),
            Err(EvalError::Temperature { temperature: 0.0 })
        );
        let bad_chunk = KnnConfig {
            chunk_rows: 0,
            ..cfg(&[1])
        };
        assert_eq!(
            weighted_knn(&train, &[0, 1], &test, &[0], 2, &bad_chunk),
            Err(EvalError::ZeroChunkRows)
        );
        assert_eq!(
            weighted_knn(&train, &[0, 1], &test, &[0], 2, &cfg(&[])),
            Ok(vec![])
        );
    }

    /// A deterministic pseudo-random feature set (xorshift), clustered by label so accuracy is
    /// neither 0 nor 100, with duplicated rows to exercise ties.
    fn synthetic(rows: usize, dim: usize, classes: usize, seed: u64) -> (Features, Vec<usize>) {
        let mut state = seed | 1;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        let labels: Vec<usize> = (0..rows).map(|i| (i * 7 + i / 3) % classes).collect();
        let mut data = Vec::with_capacity(rows * dim);
        for (i, &l) in labels.iter().enumerate() {
            if i % 11 == 10 {
                let prev = data[(i - 1) * dim..i * dim].to_vec();
                data.extend(prev);
                continue;
            }
            for d in 0..dim {
                let centre = if d % classes == l { 1.0 } else { 0.0 };
                data.push(centre + 1.5 * next());
            }
        }
        (Features::new(data, rows, dim).unwrap(), labels)
    }

    #[test]
    fn chunk_rows_do_not_change_results() {
        let (train, train_labels) = synthetic(300, 16, 7, 1);
        let (test, test_labels) = synthetic(130, 16, 7, 2);
        let run = |chunk_rows| {
            let c = KnnConfig {
                ks: vec![200, 1, 5, 20, 10, 100, 20],
                chunk_rows,
                ..KnnConfig::default()
            };
            weighted_knn(&train, &train_labels, &test, &test_labels, 7, &c).unwrap()
        };
        let one = run(1);
        assert_eq!(one, run(1000));
        assert_eq!(one, run(7));
        assert_eq!(one, run(130));
        let ks: Vec<usize> = one.iter().map(|r| r.k).collect();
        assert_eq!(
            ks,
            vec![200, 1, 5, 20, 10, 100, 20],
            "results follow cfg.ks order"
        );
        let top1_20 = one[3].top1;
        assert!(
            top1_20 > 20.0 && top1_20 < 100.0,
            "not a degenerate set: {top1_20}"
        );
        assert!(one.iter().all(|r| r.top5 >= r.top1));
        // Threads change nothing either.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        assert_eq!(pool.install(|| run(64)), one);
    }

    /// Zero vectors stay zero after normalisation, so they have similarity 0 with everything:
    /// a zero test row sees all train rows tied and takes the lowest indices; a zero train row
    /// competes with sim 0.
    #[test]
    fn zero_vectors() {
        let train = features(&[&[0.0, 0.0], &[1.0, 0.0], &[0.0, 1.0], &[-1.0, 0.0]]);
        let labels = [2, 0, 1, 1];
        let test = features(&[&[0.0, 0.0]]);
        // All four sims are 0: k = 1 -> row 0 (label 2); k = 2 -> rows 0, 1 tie -> class 0.
        let r = weighted_knn(&train, &labels, &test, &[2], 3, &cfg(&[1, 2])).unwrap();
        assert_eq!((r[0].top1, r[1].top1), (100.0, 0.0));
        let r = weighted_knn(&train, &labels, &test, &[0], 3, &cfg(&[1, 2])).unwrap();
        assert_eq!((r[0].top1, r[1].top1), (0.0, 100.0));

        // A test row orthogonal to rows 1 and 3: sims (0, 0, 1, 0); k = 2 -> rows 2 and 0.
        let test = features(&[&[0.0, 5.0]]);
        let r = weighted_knn(&train, &labels, &test, &[1], 3, &cfg(&[1, 2])).unwrap();
        assert_eq!((r[0].top1, r[1].top1), (100.0, 100.0));
        let r = weighted_knn(&train, &labels, &test, &[2], 3, &cfg(&[2])).unwrap();
        assert_eq!(
            (r[0].top1, r[0].top5),
            (0.0, 100.0),
            "zero row 0 is the 2nd neighbour"
        );

        // Zero dimensions: every row is a zero vector.
        let empty_dim = Features::new(vec![], 3, 0).unwrap();
        let r = weighted_knn(
            &empty_dim,
            &[1, 0, 0],
            &empty_dim,
            &[1, 0, 0],
            2,
            &cfg(&[1, 3]),
        )
        .unwrap();
        assert_eq!(r[0].top1, 100.0 / 3.0);
        assert_eq!(r[1].top1, 200.0 / 3.0);
    }
}
