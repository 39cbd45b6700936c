//! Average precision of one class over scored images, as the CARP release's few-shot VOC07
//! evaluation computes it (`evaluations/few-shot/eval_svm_voc.py`: `get_precision_recall` and
//! `calculate_ap`).

/// AP of one class: rank images by descending score, then the all-points interpolated area
/// under the precision-recall curve (VOC 2010+ style, no 11-point sampling).
///
/// ```text
/// images sorted by score, descending;  tp_i = 1 if target > 0 else 0,  fp_i = 1 - tp_i
/// P_i = cumsum(tp)_i / (cumsum(tp)_i + cumsum(fp)_i),   R_i = cumsum(tp)_i / #positives
/// mrec = [0, R, 1],  mpre = [0, P, 0],  mpre_i <- max(mpre_i, mpre_{i+1}) from the right
/// AP = sum over i with mrec_i != mrec_{i-1} of (mrec_i - mrec_{i-1}) · mpre_i
/// ```
///
/// - A target counts as positive when it is `> 0`. The release maps VOC's "difficult" label
///   (0) to -1 before this, so difficult images are negatives; pass them as `<= 0`.
/// - Equal scores: ranked by descending index (a stable ascending sort, reversed). The release
///   uses `np.argsort(preds)[::-1]`, whose order among equal scores is whatever numpy's
///   unstable sort produces on the machine; carp fixes one order so results are reproducible.
/// - A class without positives gives `NaN`, as the release's `0 / 0` recall does, and so
///   does any mean that includes it.
///
/// # Panics
/// If `targets` and `scores` differ in length.
pub fn voc_average_precision(targets: &[f64], scores: &[f64]) -> f64 {
    assert_eq!(
        targets.len(),
        scores.len(),
        "one score per target ({} targets, {} scores)",
        targets.len(),
        scores.len()
    );
    let n = scores.len();
    // Stable ascending sort, then reversed: ties end up in descending index order.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    order.reverse();
    let positives = targets.iter().filter(|&&t| t > 0.0).count() as f64;
    let mut mrec = Vec::with_capacity(n + 2);
    let mut mpre = Vec::with_capacity(n + 2);
    mrec.push(0.0);
    mpre.push(0.0);
    let (mut tp, mut fp) = (0.0f64, 0.0f64);
    for &i in &order {
        if targets[i] > 0.0 {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        mpre.push(tp / (tp + fp));
        // 0 / 0 = NaN for a class without positives, as in the release.
        mrec.push(tp / positives);
    }
    mrec.push(1.0);
    mpre.push(0.0);
    for i in (0..mpre.len() - 1).rev() {
        // numpy's max(a, b) of scalars returns a when the comparison b > a is false (NaN too).
        if mpre[i + 1] > mpre[i] {
            mpre[i] = mpre[i + 1];
        }
    }
    let mut ap = 0.0;
    for i in 1..mrec.len() {
        // NaN != anything, as numpy compares.
        #[allow(clippy::float_cmp)]
        if mrec[i] != mrec[i - 1] {
            ap += (mrec[i] - mrec[i - 1]) * mpre[i];
        }
    }
    ap
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_and_reversed_rankings() {
        assert_eq!(
            voc_average_precision(&[1.0, 1.0, -1.0], &[3.0, 2.0, 1.0]),
            1.0
        );
        // One positive ranked last of four: precision 1/4 at recall 1.
        assert_eq!(
            voc_average_precision(&[-1.0, -1.0, -1.0, 1.0], &[4.0, 3.0, 2.0, 1.0]),
            0.25
        );
    }

    #[test]
    fn interpolation_takes_the_best_precision_to_the_right() {
        // Ranks: +, -, +  -> P = 1, 1/2, 2/3; envelope 1, 2/3, 2/3; AP = 0.5·1 + 0.5·2/3.
        let ap = voc_average_precision(&[1.0, -1.0, 1.0], &[3.0, 2.0, 1.0]);
        assert!((ap - (0.5 + 1.0 / 3.0)).abs() < 1e-15, "{ap}");
    }

    #[test]
    fn ties_rank_the_higher_index_first() {
        // Equal scores: index 1 (negative) comes before index 0 (positive).
        assert_eq!(voc_average_precision(&[1.0, -1.0], &[1.0, 1.0]), 0.5);
        assert_eq!(voc_average_precision(&[-1.0, 1.0], &[1.0, 1.0]), 1.0);
    }

    #[test]
    fn no_positive_is_nan_and_zero_counts_as_negative() {
        assert!(voc_average_precision(&[-1.0, 0.0], &[1.0, 2.0]).is_nan());
        assert_eq!(voc_average_precision(&[0.0, 1.0], &[2.0, 1.0]), 0.5);
    }
}
