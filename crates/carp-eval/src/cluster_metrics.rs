//! Clustering metrics on two label vectors (spec §6's k-means report), as scikit-learn defines them.
//!
//! Every score is computed from a [`Contingency`] table in f64, following
//! `sklearn.metrics.cluster` (1.9): natural logarithms, NMI and AMI with the arithmetic mean of the
//! two entropies as normaliser (sklearn's default), AMI with the exact expected mutual information
//! under the hypergeometric model, and sklearn's conventions for degenerate labelings (a single
//! class and a single cluster agree perfectly; zero entropy makes homogeneity or completeness 1).
//! Label values are arbitrary: only which rows share a value matters.

use serde::{Deserialize, Serialize};

use crate::EvalError;

/// Counts of rows per (true class, predicted cluster) pair; only classes and clusters that occur.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contingency {
    /// Distinct true labels, ascending; row `i` of the table is `classes[i]`.
    pub classes: Vec<usize>,
    /// Distinct predicted labels, ascending; column `j` of the table is `clusters[j]`.
    pub clusters: Vec<usize>,
    /// Row-major `[classes.len(), clusters.len()]` counts.
    pub counts: Vec<u64>,
}

impl Contingency {
    /// Tallies `labels_true` against `labels_pred` (sklearn's `contingency_matrix`).
    ///
    /// # Errors
    /// [`EvalError::LabelLengths`] when the slices differ in length, [`EvalError::EmptyLabels`]
    /// when they are empty.
    pub fn new(labels_true: &[usize], labels_pred: &[usize]) -> Result<Self, EvalError> {
        if labels_true.len() != labels_pred.len() {
            return Err(EvalError::LabelLengths {
                truth: labels_true.len(),
                pred: labels_pred.len(),
            });
        }
        if labels_true.is_empty() {
            return Err(EvalError::EmptyLabels);
        }
        let uniq = |labels: &[usize]| {
            let mut v = labels.to_vec();
            v.sort_unstable();
            v.dedup();
            v
        };
        let classes = uniq(labels_true);
        let clusters = uniq(labels_pred);
        let mut counts = vec![0u64; classes.len() * clusters.len()];
        for (t, p) in labels_true.iter().zip(labels_pred) {
            let i = classes.binary_search(t).expect("t is a class");
            let j = clusters.binary_search(p).expect("p is a cluster");
            counts[i * clusters.len() + j] += 1;
        }
        Ok(Self {
            classes,
            clusters,
            counts,
        })
    }

    /// Count of rows with class index `i` and cluster index `j`.
    pub fn get(&self, i: usize, j: usize) -> u64 {
        self.counts[i * self.clusters.len() + j]
    }

    /// Rows per class (`a_i`).
    pub fn class_sizes(&self) -> Vec<u64> {
        self.counts
            .chunks_exact(self.clusters.len())
            .map(|r| r.iter().sum())
            .collect()
    }

    /// Rows per cluster (`b_j`).
    pub fn cluster_sizes(&self) -> Vec<u64> {
        let mut b = vec![0u64; self.clusters.len()];
        for row in self.counts.chunks_exact(self.clusters.len()) {
            for (s, &c) in b.iter_mut().zip(row) {
                *s += c;
            }
        }
        b
    }

    /// Number of rows `N`.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// The seven clustering scores of spec §6 for one labeling against the truth.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClusterScores {
    /// Normalised mutual information, arithmetic-mean normaliser.
    pub nmi: f64,
    /// Adjusted mutual information (chance-corrected), arithmetic-mean normaliser.
    pub ami: f64,
    /// Adjusted Rand index.
    pub ari: f64,
    /// Fowlkes–Mallows index.
    pub fmi: f64,
    /// Homogeneity: each cluster holds one class.
    pub homogeneity: f64,
    /// Completeness: each class sits in one cluster.
    pub completeness: f64,
    /// V-measure: harmonic mean of homogeneity and completeness (beta = 1).
    pub v_measure: f64,
}

/// All seven scores of `labels_pred` against `labels_true`.
///
/// # Errors
/// As [`Contingency::new`].
pub fn cluster_scores(
    labels_true: &[usize],
    labels_pred: &[usize],
) -> Result<ClusterScores, EvalError> {
    let c = Contingency::new(labels_true, labels_pred)?;
    let (homogeneity, completeness, v_measure) = homogeneity_completeness_v(&c);
    Ok(ClusterScores {
        nmi: normalized_mutual_info(&c),
        ami: adjusted_mutual_info(&c),
        ari: adjusted_rand(&c),
        fmi: fowlkes_mallows(&c),
        homogeneity,
        completeness,
        v_measure,
    })
}

/// Entropy (nats) of a labeling given its group sizes: `-Σ p log p`, 0 for one group.
pub fn entropy(sizes: &[u64]) -> f64 {
    if sizes.len() <= 1 {
        return 0.0;
    }
    let total = sizes.iter().sum::<u64>() as f64;
    let log_total = total.ln();
    -sizes
        .iter()
        .filter(|&&s| s > 0)
        .map(|&s| {
            let s = s as f64;
            (s / total) * (s.ln() - log_total)
        })
        .sum::<f64>()
}

/// Mutual information (nats) between classes and clusters; 0 when either has one group.
///
/// ```text
/// MI = Σ_ij (n_ij / N) · log(N n_ij / (a_i b_j))
/// ```
/// Terms below f64 epsilon in magnitude are dropped and the sum is clipped at 0, as sklearn does.
pub fn mutual_info(c: &Contingency) -> f64 {
    if c.classes.len() == 1 || c.clusters.len() == 1 {
        return 0.0;
    }
    let a = c.class_sizes();
    let b = c.cluster_sizes();
    let n = c.total() as f64;
    let (log_n, log_a_sum, log_b_sum) = (n.ln(), n.ln(), n.ln());
    let mut mi = 0.0;
    for (i, &ai) in a.iter().enumerate() {
        for (j, &bj) in b.iter().enumerate() {
            let nij = c.get(i, j);
            if nij == 0 {
                continue;
            }
            let p = nij as f64 / n;
            let log_outer = -((ai as f64) * (bj as f64)).ln() + log_a_sum + log_b_sum;
            let term = p * ((nij as f64).ln() - log_n) + p * log_outer;
            if term.abs() >= f64::EPSILON {
                mi += term;
            }
        }
    }
    mi.max(0.0)
}

/// Normalised mutual information, `MI / mean(H(true), H(pred))`.
///
/// 1 when both labelings have a single group (a perfect match), 0 when MI is 0 otherwise.
pub fn normalized_mutual_info(c: &Contingency) -> f64 {
    if c.classes.len() == 1 && c.clusters.len() == 1 {
        return 1.0;
    }
    let mi = mutual_info(c);
    if mi == 0.0 {
        return 0.0;
    }
    let h = 0.5 * (entropy(&c.class_sizes()) + entropy(&c.cluster_sizes()));
    mi / h
}

/// Expected mutual information of two labelings with these group sizes under random permutation
/// (the hypergeometric model of Vinh et al. 2010, as sklearn's `expected_mutual_information`).
pub fn expected_mutual_info(c: &Contingency) -> f64 {
    let a = c.class_sizes();
    let b = c.cluster_sizes();
    if a.len() == 1 || b.len() == 1 {
        return 0.0;
    }
    let n = c.total() as i64;
    let nf = n as f64;
    let lg = |x: i64| libm::lgamma(x as f64);
    let gln_n = lg(n + 1);
    let mut emi = 0.0;
    for &ai in &a {
        let ai = ai as i64;
        let (log_a, gln_a, gln_na) = ((ai as f64).ln(), lg(ai + 1), lg(n - ai + 1));
        for &bj in &b {
            let bj = bj as i64;
            let (log_b, gln_b, gln_nb) = ((bj as f64).ln(), lg(bj + 1), lg(n - bj + 1));
            let start = (ai - n + bj).max(1);
            let end = ai.min(bj);
            for nij in start..=end {
                let nijf = nij as f64;
                let term1 = nijf / nf;
                let term2 = nf.ln() + nijf.ln() - log_a - log_b;
                let gln = gln_a + gln_b + gln_na + gln_nb
                    - (lg(nij + 1) + gln_n)
                    - lg(ai - nij + 1)
                    - lg(bj - nij + 1)
                    - lg(n - ai - bj + nij + 1);
                emi += term1 * term2 * gln.exp();
            }
        }
    }
    emi
}

/// Adjusted mutual information, `(MI - E[MI]) / (mean(H(true), H(pred)) - E[MI])`.
///
/// 1 when both labelings have a single group, 0 when exactly one of them does; numerator and
/// denominator are kept at least f64 epsilon away from 0 with their sign, as sklearn does.
pub fn adjusted_mutual_info(c: &Contingency) -> f64 {
    let (nc, nk) = (c.classes.len(), c.clusters.len());
    if nc == 1 && nk == 1 {
        return 1.0;
    }
    if nc == 1 || nk == 1 {
        return 0.0;
    }
    let mi = mutual_info(c);
    let emi = expected_mutual_info(c);
    let h = 0.5 * (entropy(&c.class_sizes()) + entropy(&c.cluster_sizes()));
    let away_from_zero = |x: f64| {
        if x < 0.0 {
            x.min(-f64::EPSILON)
        } else {
            x.max(f64::EPSILON)
        }
    };
    away_from_zero(mi - emi) / away_from_zero(h - emi)
}

/// Pair counts `(tn, fp, fn, tp)` over ordered pairs of distinct rows (sklearn's
/// `pair_confusion_matrix`): tp = same class and same cluster, fp = same cluster only, ...
fn pair_confusion(c: &Contingency) -> (i128, i128, i128, i128) {
    let n = i128::from(c.total());
    let sq = |v: &[u64]| {
        v.iter()
            .map(|&x| i128::from(x) * i128::from(x))
            .sum::<i128>()
    };
    let sum_squares = sq(&c.counts);
    let tp = sum_squares - n;
    let fp = sq(&c.cluster_sizes()) - sum_squares;
    let fn_ = sq(&c.class_sizes()) - sum_squares;
    let tn = n * n - fp - fn_ - sum_squares;
    (tn, fp, fn_, tp)
}

/// Adjusted Rand index; 1 when no pair is split differently by the two labelings.
pub fn adjusted_rand(c: &Contingency) -> f64 {
    let (tn, fp, fn_, tp) = pair_confusion(c);
    if fn_ == 0 && fp == 0 {
        return 1.0;
    }
    2.0 * ((tp * tn - fn_ * fp) as f64) / (((tp + fn_) * (fn_ + tn) + (tp + fp) * (fp + tn)) as f64)
}

/// Fowlkes–Mallows index `TP / sqrt((TP + FP)(TP + FN))`; 0 when no pair shares class and cluster.
pub fn fowlkes_mallows(c: &Contingency) -> f64 {
    let (_, fp, fn_, tp) = pair_confusion(c);
    if tp == 0 {
        return 0.0;
    }
    let (tk, pk, qk) = (tp as f64, (tp + fp) as f64, (tp + fn_) as f64);
    (tk / pk).sqrt() * (tk / qk).sqrt()
}

/// Homogeneity `MI / H(true)`, completeness `MI / H(pred)` (each 1 when its entropy is 0) and
/// their harmonic mean, the V-measure (0 when both are 0).
pub fn homogeneity_completeness_v(c: &Contingency) -> (f64, f64, f64) {
    let h_true = entropy(&c.class_sizes());
    let h_pred = entropy(&c.cluster_sizes());
    let mi = mutual_info(c);
    let homogeneity = if h_true != 0.0 { mi / h_true } else { 1.0 };
    let completeness = if h_pred != 0.0 { mi / h_pred } else { 1.0 };
    let v = if homogeneity + completeness == 0.0 {
        0.0
    } else {
        2.0 * homogeneity * completeness / (homogeneity + completeness)
    };
    (homogeneity, completeness, v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contingency_counts_and_marginals() {
        let c = Contingency::new(&[5, 5, 1, 1, 1, 9], &[0, 2, 2, 2, 0, 7]).unwrap();
        assert_eq!(c.classes, vec![1, 5, 9]);
        assert_eq!(c.clusters, vec![0, 2, 7]);
        assert_eq!(c.counts, vec![1, 2, 0, 1, 1, 0, 0, 0, 1]);
        assert_eq!(c.class_sizes(), vec![3, 2, 1]);
        assert_eq!(c.cluster_sizes(), vec![2, 3, 1]);
        assert_eq!(c.total(), 6);
    }

    #[test]
    fn bad_lengths_are_errors() {
        assert_eq!(
            Contingency::new(&[0, 1], &[0]),
            Err(EvalError::LabelLengths { truth: 2, pred: 1 })
        );
        assert_eq!(Contingency::new(&[], &[]), Err(EvalError::EmptyLabels));
    }

    /// Hand values: truth {0,0,1,1}, pred {0,0,0,1}.
    /// H(true) = ln 2; H(pred) = -(3/4 ln 3/4 + 1/4 ln 1/4);
    /// MI = 1/2 ln(4·2/(2·3)) + 1/4 ln(4/(2·3)) + 1/4 ln(4/(2·1)).
    #[test]
    fn small_case_by_hand() {
        let c = Contingency::new(&[0, 0, 1, 1], &[0, 0, 0, 1]).unwrap();
        let mi = 0.5 * (8.0f64 / 6.0).ln() + 0.25 * (4.0f64 / 6.0).ln() + 0.25 * 2.0f64.ln();
        let h_t = 2.0f64.ln();
        let h_p = -(0.75 * 0.75f64.ln() + 0.25 * 0.25f64.ln());
        assert!((mutual_info(&c) - mi).abs() < 1e-15);
        assert!((normalized_mutual_info(&c) - mi / (0.5 * (h_t + h_p))).abs() < 1e-15);
        let (h, comp, v) = homogeneity_completeness_v(&c);
        assert!((h - mi / h_t).abs() < 1e-15 && (comp - mi / h_p).abs() < 1e-15);
        assert!((v - 2.0 * h * comp / (h + comp)).abs() < 1e-15);
        // Ordered pairs of distinct rows: same cluster 3·2 + 0 = 6, of which 2 also share the
        // class (tp 2, fp 4); same class 2·1 + 2·1 = 4 (fn 4 - 2 = 2); the other 4 are tn.
        let (tn, fp, fn_, tp) = pair_confusion(&c);
        assert_eq!((tp, fp, fn_), (2, 4, 2));
        assert_eq!(
            tn + fp + fn_ + tp,
            12,
            "ordered pairs of distinct rows: 4·3"
        );
        assert!((fowlkes_mallows(&c) - 2.0 / (6.0f64 * 4.0).sqrt()).abs() < 1e-15);
    }
}
