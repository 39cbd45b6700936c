//! Copy detection on Copydays (spec §6), as the CARP release's
//! `evaluations/knn/eval_copy_detection.py` (DINO's) scores it: each query retrieves the `top`
//! (20) most cosine-similar database images, and the AP of the positives among them is
//! [`trapezoid_ap`] (the Holidays package's `score_ap_from_ranks_1`) with the total number of
//! positives as denominator; a block's mAP is the mean over its queries.

use crate::retrieval::{rank_by_similarity, trapezoid_ap};
use crate::{EvalError, Features};
use serde::Serialize;

/// The release's retrieval depth (`similarity.topk(20)`).
pub const COPYDAYS_TOP: usize = 20;

/// One block of queries (`strong`, `jpegqual/50`, `crops/30`, ...): the positives (database
/// indices) of each of its queries, in query order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CopyBlock {
    /// Block name.
    pub name: String,
    /// Positive database indices per query.
    pub positives: Vec<Vec<usize>>,
}

/// mAP of one block.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BlockMap {
    /// Block name.
    pub name: String,
    /// Mean AP over the block's queries.
    pub map: f64,
    /// Number of queries.
    pub queries: usize,
}

/// Scores every block: query rows of `queries` are the blocks' queries in order; `database`
/// rows are the database images the positives index. Features are used as given (normalise
/// them first for cosine similarity); ties rank the lower database index first.
///
/// # Errors
/// [`EvalError::RetrievalInput`] when the blocks' query count is not `queries.rows` or a query
/// has no positive; [`EvalError::DimMismatch`] for different widths.
pub fn copy_detection_map(
    database: &Features,
    queries: &Features,
    blocks: &[CopyBlock],
    top: usize,
) -> Result<Vec<BlockMap>, EvalError> {
    let total: usize = blocks.iter().map(|b| b.positives.len()).sum();
    if total != queries.rows {
        return Err(EvalError::RetrievalInput(format!(
            "the blocks hold {total} queries, the features {} rows",
            queries.rows
        )));
    }
    let ranked = rank_by_similarity(database, queries, top)?;
    let mut next = 0;
    let mut out = Vec::with_capacity(blocks.len());
    for block in blocks {
        let mut sum = 0.0;
        for (q, positives) in block.positives.iter().enumerate() {
            if positives.is_empty() {
                return Err(EvalError::RetrievalInput(format!(
                    "block {}: query {q} has no positive",
                    block.name
                )));
            }
            let ranks: Vec<usize> = ranked[next + q]
                .iter()
                .enumerate()
                .filter(|(_, id)| positives.contains(id))
                .map(|(r, _)| r)
                .collect();
            sum += trapezoid_ap(&ranks, positives.len());
        }
        next += block.positives.len();
        out.push(BlockMap {
            name: block.name.clone(),
            map: sum / block.positives.len().max(1) as f64,
            queries: block.positives.len(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positives_outside_the_top_count_as_missed() {
        // Database rows 0..4 along distinct axes; the query matches row 3 best, then row 0.
        let mut db = vec![0.0f32; 16];
        for i in 0..4 {
            db[i * 4 + i] = 1.0;
        }
        let db = Features::new(db, 4, 4).unwrap();
        let q = Features::new(vec![0.5, 0.0, 0.1, 0.9], 1, 4).unwrap();
        let block = |positives: Vec<usize>| CopyBlock {
            name: "b".into(),
            positives: vec![positives],
        };
        let r = copy_detection_map(&db, &q, &[block(vec![3])], 2).unwrap();
        assert_eq!(r[0].map, 1.0);
        // Positive 0 at rank 1: (0/1 + 1/2) / 2.
        let r = copy_detection_map(&db, &q, &[block(vec![0])], 2).unwrap();
        assert_eq!(r[0].map, 0.25);
        // Positive 1 is ranked 4th: outside the top 2, AP 0; with 3 and 1 positive: half.
        let r = copy_detection_map(&db, &q, &[block(vec![1])], 2).unwrap();
        assert_eq!(r[0].map, 0.0);
        let r = copy_detection_map(&db, &q, &[block(vec![3, 1])], 2).unwrap();
        assert_eq!(r[0].map, 0.5);
        assert!(copy_detection_map(&db, &q, &[block(vec![])], 2).is_err());
    }
}
