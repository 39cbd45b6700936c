//! Image retrieval metrics of the revisited Oxford and Paris benchmarks (spec §6): ranking by
//! cosine similarity, revisitop's `compute_map` (mAP and mean precision at k, junk images
//! ignored) and the Medium / Hard protocols.
//!
//! Reference: Radenović et al., "Revisiting Oxford and Paris", CVPR 2018;
//! `revisitop/python/evaluate.py`, used verbatim by the CARP release
//! (`evaluations/knn/eval_image_retrieval.py`, via DINO's `utils.compute_map`).

use crate::linalg::matmul_nt;
use crate::{EvalError, Features};
use serde::Serialize;

/// Ground truth of one query: the database images that count as positive and those ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct QueryTruth {
    /// Positive database indices.
    pub ok: Vec<usize>,
    /// Database indices removed from the ranking before scoring (the query itself, ...).
    pub junk: Vec<usize>,
}

/// revisitop's per-query labels: `easy`, `hard` and `junk` database indices.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RevisitedTruth {
    /// Easy positives.
    pub easy: Vec<usize>,
    /// Hard positives.
    pub hard: Vec<usize>,
    /// Junk (neither positive nor negative).
    pub junk: Vec<usize>,
}

/// The result of [`compute_map`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MapReport {
    /// Mean AP over the queries with at least one positive (`NaN` when there is none).
    pub map: f64,
    /// AP per query; `NaN` for a query without positives.
    pub aps: Vec<f64>,
    /// The k of the precisions.
    pub kappas: Vec<usize>,
    /// Mean precision at each k over the queries with positives.
    pub mp_at_k: Vec<f64>,
    /// Precision at each k per query (`NaN` rows for queries without positives).
    pub precisions: Vec<Vec<f64>>,
    /// Queries without positives (left out of the means).
    pub empty_queries: usize,
}

/// Medium and Hard protocol results of a revisited data set.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RevisitedReport {
    /// Medium: positives easy + hard, junk ignored.
    pub medium: MapReport,
    /// Hard: positives hard, junk and easy ignored.
    pub hard: MapReport,
}

/// AP of one query from the 0-based ranks of its positives (ascending), by trapezoids under
/// the precision-recall curve (revisitop's `compute_ap`; also the Holidays / Copydays
/// `score_ap_from_ranks_1`):
///
/// ```text
/// AP = Σ_j (p0_j + p1_j) / 2 · 1/n,   p0_j = 1 if r_j = 0 else j / r_j,   p1_j = (j+1) / (r_j+1)
/// ```
///
/// with `r_j` the rank of the j-th retrieved positive and `n` the number of positives
/// (positives never retrieved add nothing).
pub fn trapezoid_ap(ranks: &[usize], positives: usize) -> f64 {
    let step = 1.0 / positives as f64;
    ranks
        .iter()
        .enumerate()
        .map(|(j, &r)| {
            let p0 = if r == 0 { 1.0 } else { j as f64 / r as f64 };
            let p1 = (j + 1) as f64 / (r + 1) as f64;
            (p0 + p1) * step / 2.0
        })
        .sum()
}

/// revisitop's `compute_map`: AP and precision at each k of every query, and their means over
/// the queries that have positives. `ranks[q]` lists database indices from most to least
/// similar (a full ranking, or a prefix).
///
/// Per query: the positions of positives and of junk images in the ranking; each positive
/// moves up by the number of junk images strictly before it; AP by [`trapezoid_ap`] with
/// `n = ok.len()`; precision at k counts, with 1-based adjusted positions `p`, the positives
/// with `p <= min(max p, k)` over `min(max p, k)`. A query without positives gets `NaN` and is
/// left out of the means.
///
/// # Errors
/// [`EvalError::RetrievalInput`] when `ranks` and `gnd` differ in length, or a query has
/// positives none of which appears in its ranking (revisitop fails there too).
pub fn compute_map(
    ranks: &[Vec<usize>],
    gnd: &[QueryTruth],
    kappas: &[usize],
) -> Result<MapReport, EvalError> {
    if ranks.len() != gnd.len() {
        return Err(EvalError::RetrievalInput(format!(
            "{} rankings for {} queries",
            ranks.len(),
            gnd.len()
        )));
    }
    let mut aps = Vec::with_capacity(gnd.len());
    let mut precisions = Vec::with_capacity(gnd.len());
    let mut sums = vec![0.0; kappas.len()];
    let (mut ap_sum, mut empty) = (0.0, 0);
    for (q, (order, truth)) in ranks.iter().zip(gnd).enumerate() {
        if truth.ok.is_empty() {
            aps.push(f64::NAN);
            precisions.push(vec![f64::NAN; kappas.len()]);
            empty += 1;
            continue;
        }
        let mut pos = Vec::new();
        let mut junk = Vec::new();
        for (p, id) in order.iter().enumerate() {
            if truth.ok.contains(id) {
                pos.push(p);
            }
            if truth.junk.contains(id) {
                junk.push(p);
            }
        }
        if pos.is_empty() {
            return Err(EvalError::RetrievalInput(format!(
                "query {q}: none of its {} positives is in its ranking",
                truth.ok.len()
            )));
        }
        let mut skipped = 0;
        let mut ij = 0;
        for p in pos.iter_mut() {
            while ij < junk.len() && *p > junk[ij] {
                skipped += 1;
                ij += 1;
            }
            *p -= skipped;
        }
        let ap = trapezoid_ap(&pos, truth.ok.len());
        ap_sum += ap;
        aps.push(ap);
        let last = pos.iter().max().expect("non-empty") + 1;
        let row: Vec<f64> = kappas
            .iter()
            .map(|&k| {
                let kq = last.min(k);
                pos.iter().filter(|&&p| p < kq).count() as f64 / kq as f64
            })
            .collect();
        for (s, v) in sums.iter_mut().zip(&row) {
            *s += v;
        }
        precisions.push(row);
    }
    let counted = (gnd.len() - empty) as f64;
    Ok(MapReport {
        map: ap_sum / counted,
        aps,
        kappas: kappas.to_vec(),
        mp_at_k: sums.iter().map(|s| s / counted).collect(),
        precisions,
        empty_queries: empty,
    })
}

/// Medium and Hard protocols of revisitop (`ok = easy ∪ hard`, `junk = junk`; then
/// `ok = hard`, `junk = junk ∪ easy`), each scored by [`compute_map`].
///
/// # Errors
/// As [`compute_map`].
pub fn revisited_map(
    ranks: &[Vec<usize>],
    gnd: &[RevisitedTruth],
    kappas: &[usize],
) -> Result<RevisitedReport, EvalError> {
    let medium: Vec<QueryTruth> = gnd
        .iter()
        .map(|g| QueryTruth {
            ok: [g.easy.as_slice(), &g.hard].concat(),
            junk: g.junk.clone(),
        })
        .collect();
    let hard: Vec<QueryTruth> = gnd
        .iter()
        .map(|g| QueryTruth {
            ok: g.hard.clone(),
            junk: [g.junk.as_slice(), &g.easy].concat(),
        })
        .collect();
    Ok(RevisitedReport {
        medium: compute_map(ranks, &medium, kappas)?,
        hard: compute_map(ranks, &hard, kappas)?,
    })
}

/// Database indices of each query, most similar first: similarity `q·d` (pass L2-normalised
/// rows for cosine), equal similarities by ascending database index; at most `top` per query
/// (`usize::MAX`: all).
///
/// # Errors
/// [`EvalError::DimMismatch`] when the widths differ.
pub fn rank_by_similarity(
    database: &Features,
    queries: &Features,
    top: usize,
) -> Result<Vec<Vec<usize>>, EvalError> {
    if database.dim != queries.dim {
        return Err(EvalError::DimMismatch {
            train_dim: database.dim,
            test_dim: queries.dim,
        });
    }
    let (n, m, d) = (database.rows, queries.rows, database.dim);
    let mut sim = vec![0.0f32; m * n];
    matmul_nt(&queries.data, &database.data, m, n, d, &mut sim);
    Ok(sim
        .chunks(n.max(1))
        .take(m)
        .map(|row| {
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
            order.truncate(top);
            order
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn junk_before_a_positive_moves_it_up() {
        // Ranking: junk, neg, pos  -> the positive sits at adjusted rank 1: (0/1 + 1/2) / 2.
        let gnd = [QueryTruth {
            ok: vec![7],
            junk: vec![3],
        }];
        let r = compute_map(&[vec![3, 5, 7]], &gnd, &[1, 5]).unwrap();
        assert!((r.map - trapezoid_ap(&[1], 1)).abs() < 1e-15);
        assert!((r.map - 0.25).abs() < 1e-15);
        // min(max p, k): k = 1 looks at the first entry (a negative); k = 5 -> min(2, 5) = 2.
        assert_eq!(r.mp_at_k, vec![0.0, 0.5]);
    }

    #[test]
    fn empty_queries_are_left_out() {
        let gnd = [
            QueryTruth::default(),
            QueryTruth {
                ok: vec![0],
                junk: vec![],
            },
        ];
        let r = compute_map(&[vec![1, 0], vec![0, 1]], &gnd, &[1]).unwrap();
        assert_eq!(r.empty_queries, 1);
        assert!(r.aps[0].is_nan());
        assert_eq!((r.map, r.mp_at_k[0]), (1.0, 1.0));
    }

    #[test]
    fn ranking_is_by_descending_similarity_then_index() {
        let db = Features::new(vec![1.0, 0.0, 0.0, 1.0, 1.0, 0.0], 3, 2).unwrap();
        let q = Features::new(vec![0.0, 1.0, 1.0, 0.0], 2, 2).unwrap();
        let r = rank_by_similarity(&db, &q, usize::MAX).unwrap();
        assert_eq!(r, vec![vec![1, 0, 2], vec![0, 2, 1]]);
        assert_eq!(rank_by_similarity(&db, &q, 1).unwrap()[1], vec![0]);
    }
}
