//! The CARP loss, spec §4: consistency over (student view, teacher view) pairs plus the
//! entropy (KL to uniform) of the mean block assignment.
//!
//! Paper: Santos Silva & Ramírez Rivera, "Representation Learning via Consistent Assignment of
//! Views over Random Partitions", NeurIPS 2023, <https://arxiv.org/abs/2310.12692>.

use crate::collective::{all_reduce_sum, Group};
use crate::partition::{block_softmax, Partition};
use crate::reduce::{ordered_mean, ordered_sum};
use burn::tensor::{Int, Tensor, TensorData};

/// ε of spec §4: the float32 machine epsilon.
pub const EPS: f64 = f32::EPSILON as f64;

/// Consistency term, spec §4: the mean over (student view, teacher view) pairs of the
/// agreement loss between their block assignments.
///
/// ```text
/// l(i, j)     = - 1/(P·B) Σ_k Σ_n log clamp( Σ_c p_i[k, n, c] · q_j[k, n, c], ε, 1 - ε )
/// consistency = mean over pairs (i, j), i ≠ j, of l(i, j)
/// ```
///
/// - `p_i[k, n, c]`: the student's probability of prototype c (of N) within block k (of P)
///   for image n (of B) seen in student view i (of S); `q_j` the same for teacher view j
///   (of T). Both are block-softmax outputs (spec §3).
/// - Teacher view j is the teacher's copy of student view j (the T global views come
///   first), so the pairs with i = j are skipped: S·T − min(S, T) pairs.
/// - ε = `f32::EPSILON`; the clamp passes no gradient where it clips. The teacher carries no
///   gradient.
///
/// `student` stacks the S student views along the batch axis, view-major (all B images of
/// view 0, then view 1, ...); `teacher` stacks the T teacher views the same way.
///
/// # Shapes
///
/// - `student`: `[P, S * B, N]`, `teacher`: `[P, T * B, N]` (probabilities)
/// - output: `[1]`
///
/// # Panics
///
/// Panics if the batch axes are not multiples of `batch`, the shapes disagree, or there is no pair.
///
/// # Example
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use carp_core::loss::consistency_loss;
/// let device = Device::flex();
/// // One block of N = 2, B = 1, two identical one-hot views: every pair agrees perfectly.
/// let p = Tensor::<3>::from_floats([[[1.0, 0.0], [1.0, 0.0]]], &device);
/// let loss: f32 = consistency_loss(p.clone(), p, 1).into_scalar();
/// assert!(loss.abs() < 1e-6);
/// ```
pub fn consistency_loss(student: Tensor<3>, teacher: Tensor<3>, batch: usize) -> Tensor<1> {
    let [p, sb, n] = student.dims();
    let [pt, tb, nt] = teacher.dims();
    assert!(
        p == pt && n == nt,
        "student [{p}, _, {n}] and teacher [{pt}, _, {nt}] blocks disagree"
    );
    assert!(
        batch > 0 && sb % batch == 0 && tb % batch == 0,
        "batch axes {sb} and {tb} are not multiples of B = {batch}"
    );
    let (s, t) = (sb / batch, tb / batch);
    let pairs = s * t - s.min(t);
    assert!(
        pairs > 0,
        "consistency needs a pair i != j: S = {s}, T = {t}"
    );
    let device = student.device();
    let student = student.reshape([p, s, batch, n]);
    let teacher = teacher.detach().reshape([p, t, batch, n]);
    let mut total: Option<Tensor<1>> = None;
    for j in 0..t {
        let q = teacher.clone().narrow(1, j, 1);
        // [P, S, B, 1] -> -log clamp -> mean over P and B -> [S]
        let agreement = (student.clone() * q).sum_dim(3);
        let per_view = agreement
            .clamp(EPS, 1.0 - EPS)
            .log()
            .neg()
            .mean_dim(2)
            .mean_dim(0)
            .reshape([s]);
        let keep: Vec<i64> = (0..s as i64).filter(|&i| i != j as i64).collect();
        let kept = keep.len();
        let sum = ordered_sum(per_view.select(
            0,
            Tensor::<1, Int>::from_data(TensorData::new(keep, [kept]), &device),
        ));
        total = Some(match total {
            Some(acc) => acc + sum,
            None => sum,
        });
    }
    total.expect("at least one teacher view") / pairs as f64
}

/// Entropy term, spec §4: KL divergence of each block's mean assignment from uniform,
/// averaged over blocks.
///
/// ```text
/// m_k = mean over all student and teacher rows of probs[k]        (length N)
/// entropy = mean_k ( log N + Σ_c m_k[c] log clamp(m_k[c], ε, 1-ε) )
/// ```
///
/// Zero when every block's prototypes are used uniformly. Gradients flow only through
/// the student rows; for several workers, gather all rows before calling.
///
/// # Shapes
///
/// - `student`: `[P, S * B, N]`, `teacher`: `[P, T * B, N]`
/// - output: `[1]`
///
/// # Example
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use carp_core::loss::entropy_loss;
/// let device = Device::flex();
/// // Two rows that use both prototypes equally on average: KL to uniform is 0.
/// let s = Tensor::<3>::from_floats([[[1.0, 0.0]]], &device);
/// let t = Tensor::<3>::from_floats([[[0.0, 1.0]]], &device);
/// let loss: f32 = entropy_loss(s, t).into_scalar();
/// assert!(loss.abs() < 1e-6);
/// ```
pub fn entropy_loss(student: Tensor<3>, teacher: Tensor<3>) -> Tensor<1> {
    entropy_loss_over(student, teacher, None)
}

/// [`entropy_loss`] with the mean assignment taken over the rows of every process of
/// `group` (spec §4: "over all workers"), as the release's `AllGather` does: the row sums
/// are summed over the processes, and so is their gradient, so after the gradients are
/// averaged over processes the update is that of one process holding every row.
///
/// Every process passes the same number of rows.
pub fn entropy_loss_over(
    student: Tensor<3>,
    teacher: Tensor<3>,
    group: Option<&Group>,
) -> Tensor<1> {
    let [_, _, n] = student.dims();
    let all = Tensor::cat(vec![student, teacher.detach()], 1);
    let mean = match group.filter(|g| g.size() > 1) {
        None => all.mean_dim(1), // [P, 1, N]
        Some(g) => {
            let rows = all.dims()[1] * g.size();
            all_reduce_sum(all.sum_dim(1), g).div_scalar(rows as f64)
        }
    };
    let plogp = (mean.clone() * mean.clamp(EPS, 1.0 - EPS).log()).sum_dim(2);
    ordered_mean(plogp).add_scalar((n as f64).ln())
}

/// The three loss values of one step.
#[derive(Clone, Debug)]
pub struct LossTerms {
    /// consistency + entropy (the value to differentiate).
    pub total: Tensor<1>,
    /// Consistency term.
    pub consistency: Tensor<1>,
    /// Entropy (anti-collapse) term.
    pub entropy: Tensor<1>,
}

/// The full CARP loss (spec §3-§4) from student and teacher logits: block softmax with the
/// step's partition, then `total = consistency + entropy` (weighted 1 : 1), returned with
/// both terms.
///
/// # Shapes
///
/// - `student_logits`: `[S * B, K]` (view-major), `teacher_logits`: `[T * B, K]`
///
/// # Example
///
/// ```
/// use burn::tensor::{Device, Distribution, Tensor};
/// use carp_core::{loss::carp_loss, partition::Partition};
/// use rand::SeedableRng;
/// let device = Device::flex();
/// let (b, k) = (4, 12);
/// let part = Partition::random(k, 4, &mut rand_chacha::ChaCha8Rng::seed_from_u64(0));
/// let s = Tensor::<2>::random([4 * b, k], Distribution::Normal(0.0, 1.0), &device);
/// let t = Tensor::<2>::random([2 * b, k], Distribution::Normal(0.0, 1.0), &device);
/// let terms = carp_loss(s, t, b, &part);
/// let total: f32 = terms.total.into_scalar();
/// assert!(total.is_finite() && total > 0.0);
/// ```
pub fn carp_loss(
    student_logits: Tensor<2>,
    teacher_logits: Tensor<2>,
    batch: usize,
    partition: &Partition,
) -> LossTerms {
    carp_loss_over(student_logits, teacher_logits, batch, partition, None)
}

/// [`carp_loss`] of one process of a data-parallel `group`: the consistency term over this
/// process's images, the entropy term over every process's ([`entropy_loss_over`]).
pub fn carp_loss_over(
    student_logits: Tensor<2>,
    teacher_logits: Tensor<2>,
    batch: usize,
    partition: &Partition,
    group: Option<&Group>,
) -> LossTerms {
    let student = block_softmax(student_logits, partition);
    let teacher = block_softmax(teacher_logits.detach(), partition);
    let consistency = consistency_loss(student.clone(), teacher.clone(), batch);
    let entropy = entropy_loss_over(student, teacher, group);
    LossTerms {
        total: consistency.clone() + entropy.clone(),
        consistency,
        entropy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    #[test]
    fn entropy_is_zero_for_uniform_use_and_log_n_for_collapse() {
        let device = Device::flex();
        // N = 4, every row puts all mass on prototype 0: m = (1,0,0,0), KL = log 4.
        let s = Tensor::<3>::from_floats([[[1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]]], &device);
        let e: f32 = entropy_loss(s.clone(), s).into_scalar();
        assert!((e as f64 - 4f64.ln()).abs() < 1e-5, "{e}");
        let u = Tensor::<3>::full([3, 5, 4], 0.25, &device);
        let e: f32 = entropy_loss(u.clone(), u).into_scalar();
        assert!(e.abs() < 1e-6, "{e}");
    }

    /// The release's `AllGather` semantics over two ranks (threads) holding rows 0..3 and
    /// 3..6 of the student (and of the teacher): every rank gets the one-process entropy, and
    /// rank r's gradient on its rows is W = 2 times the one-process gradient on them, so
    /// that the mean of the ranks' parameter gradients is the one-process gradient.
    #[test]
    fn entropy_over_two_ranks_has_the_release_gradient() {
        use crate::collective::ThreadGroup;
        let device = Device::flex();
        let probs = |seed: u64, rows: usize| {
            burn::tensor::activation::softmax(
                Tensor::<3>::random([2, rows, 5], burn::tensor::Distribution::Default, &device)
                    .mul_scalar(3.0 + seed as f64),
                2,
            )
        };
        let (s, t) = (probs(0, 6), probs(1, 6));
        let host = |x: Tensor<3>| x.into_data().try_to_vec::<f32>().unwrap();
        let (s_host, t_host) = (host(s.clone()), host(t.clone()));
        // one process, all rows
        let ad = Device::flex().autodiff();
        let s1 = Tensor::<3>::from_data(s.clone().into_data(), &ad).require_grad();
        let t1 = Tensor::<3>::from_data(t.clone().into_data(), &ad);
        let e1 = entropy_loss(s1.clone(), t1);
        let e_one: f32 = e1.clone().into_scalar();
        let g_one = host(s1.grad(&e1.backward()).unwrap());
        let handles: Vec<_> = ThreadGroup::members(2)
            .into_iter()
            .map(|group| {
                let (s_host, t_host) = (s_host.clone(), t_host.clone());
                std::thread::spawn(move || {
                    let ad = Device::flex().autodiff();
                    let r = group.rank();
                    // rows 3r..3r+3 of each of the 2 blocks
                    let rows = |v: &[f32]| -> Vec<f32> {
                        (0..2)
                            .flat_map(|p| v[(p * 6 + 3 * r) * 5..(p * 6 + 3 * r + 3) * 5].to_vec())
                            .collect()
                    };
                    let mk =
                        |v: Vec<f32>| Tensor::<3>::from_data(TensorData::new(v, [2, 3, 5]), &ad);
                    let s = mk(rows(&s_host)).require_grad();
                    let e = entropy_loss_over(s.clone(), mk(rows(&t_host)), Some(&group));
                    let value: f32 = e.clone().into_scalar();
                    let g = s.grad(&e.backward()).unwrap();
                    (r, value, g.into_data().try_to_vec::<f32>().unwrap())
                })
            })
            .collect();
        for h in handles {
            let (r, value, g) = h.join().unwrap();
            assert!((value - e_one).abs() < 1e-6, "rank {r}: {value} vs {e_one}");
            for p in 0..2 {
                for i in 0..3 {
                    for k in 0..5 {
                        let one = g_one[(p * 6 + 3 * r + i) * 5 + k];
                        let mine = g[(p * 3 + i) * 5 + k];
                        assert!(
                            (mine - 2.0 * one).abs() <= 1e-6 + 1e-5 * one.abs(),
                            "rank {r} [{p},{i},{k}]: {mine} vs 2 x {one}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn consistency_unchanged_when_blocks_are_permuted() {
        let device = Device::flex();
        let s = burn::tensor::activation::softmax(
            Tensor::<3>::random([3, 8, 5], burn::tensor::Distribution::Default, &device),
            2,
        );
        let t = burn::tensor::activation::softmax(
            Tensor::<3>::random([3, 4, 5], burn::tensor::Distribution::Default, &device),
            2,
        );
        let a: f32 = consistency_loss(s.clone(), t.clone(), 2).into_scalar();
        let order = Tensor::<1, Int>::from_ints([2, 0, 1], &device);
        let b: f32 =
            consistency_loss(s.select(0, order.clone()), t.select(0, order), 2).into_scalar();
        assert!((a - b).abs() < 1e-6);
    }

    #[test]
    fn self_pairs_are_skipped() {
        let device = Device::flex();
        // S = T = 2, B = 1, N = 2. Student view 0 equals teacher view 0 (would give loss 0),
        // student view 1 is orthogonal to teacher view 0 (clamped at eps).
        let s = Tensor::<3>::from_floats([[[1.0, 0.0], [0.0, 1.0]]], &device);
        let t = Tensor::<3>::from_floats([[[1.0, 0.0], [0.0, 1.0]]], &device);
        let l: f32 = consistency_loss(s, t, 1).into_scalar();
        // Pairs (0,1) and (1,0): both agreement 0 -> -log(eps).
        let want = -(EPS.ln());
        assert!((l as f64 - want).abs() < 1e-4, "{l} vs {want}");
    }
}
