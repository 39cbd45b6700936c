//! Collapse and health diagnostics of a logged step, and the collapse detector.
//!
//! [`StepProbe::read`] copies what the signals need from a step's detached outputs to the
//! host (on logged steps only); every signal is then a pure function of those host buffers,
//! so it can be checked by hand. What each one means and what to do about it is in the README ("Watching a run").
//!
//! | signal | healthy | collapsed |
//! |---|---|---|
//! | `entropy_ratio` = entropy term / log N | near 0 | 1 (every row picks one prototype) |
//! | `prototypes_used` per block (student argmax, distinct) | many | 1 |
//! | `prototype_coverage` = used / min(rows, N) | large | 1 / min(rows, N) |
//! | `bottleneck_std_ratio` = mean per-dim std of the L2-normalised bottleneck × sqrt(D) | about 1 | 0 |
//! | `agreement_top1` / `top5` (student vs teacher, block 0) | rises with training | 1 while collapsed |

use crate::config::MonitorConfig;
use burn::tensor::Tensor;
use carp_core::partition::{block_softmax, Partition};
use carp_core::step::StepOutput;
use serde::Serialize;

/// Host copies of what the health diagnostics need (collapse signals, argmax histograms),
/// read back from a step's detached outputs.
///
/// All buffers are row-major. Rows are view-major like the logits: S student views
/// (the T global views first), T teacher views, B images each.
#[derive(Clone, Debug, PartialEq)]
pub struct StepProbe {
    /// Number of blocks P of the step's partition.
    pub blocks: usize,
    /// Block size N.
    pub block_size: usize,
    /// Images per view, B.
    pub batch: usize,
    /// Student views S.
    pub student_views: usize,
    /// Teacher (global) views T.
    pub teacher_views: usize,
    /// Index (0..N) of the largest probability of each block for each student row, `[P, S * B]`.
    pub student_argmax: Vec<u32>,
    /// The same for the teacher rows, `[P, T * B]`.
    pub teacher_argmax: Vec<u32>,
    /// Student probabilities on block 0 (the first N prototypes of the permutation), `[S * B, N]`.
    pub student_block0: Vec<f32>,
    /// The teacher's bottleneck vectors (not normalised) on the global views, `[T * B, D]`.
    pub teacher_bottleneck: Vec<f32>,
    /// Bottleneck width D.
    pub bottleneck_dim: usize,
}

impl StepProbe {
    /// Reads the probe of a step (`batch` images per view) from its outputs and partition.
    pub fn read(out: &StepOutput, partition: &Partition, batch: usize) -> Self {
        let [s_rows, _] = out.student_logits.dims();
        let [t_rows, d] = out.teacher_bottleneck.dims();
        let n = partition.block_size;
        let block0 = Partition {
            indices: partition.indices[..n].to_vec(),
            block_size: n,
            num_prototypes: partition.num_prototypes,
        };
        let student_block0 =
            block_softmax(out.student_logits.clone(), &block0).reshape([s_rows, n]);
        Self {
            blocks: partition.num_blocks(),
            block_size: n,
            batch,
            student_views: s_rows / batch,
            teacher_views: t_rows / batch,
            student_argmax: block_argmax(out.student_logits.clone(), partition),
            teacher_argmax: block_argmax(out.teacher_logits.clone(), partition),
            student_block0: host(student_block0),
            teacher_bottleneck: host(out.teacher_bottleneck.clone()),
            bottleneck_dim: d,
        }
    }
}

/// Index of the largest logit within each block, `[P, rows]` row-major.
fn block_argmax(logits: Tensor<2>, partition: &Partition) -> Vec<u32> {
    let [rows, _] = logits.dims();
    let (p, n) = (partition.num_blocks(), partition.block_size);
    let index = partition.index_tensor(&logits.device());
    // [rows, P, N] -> argmax over N -> [P, rows]
    let arg = logits
        .select(1, index)
        .reshape([rows, p, n])
        .argmax(2)
        .reshape([rows, p])
        .transpose();
    arg.into_data()
        .convert::<i64>()
        .try_to_vec::<i64>()
        .expect("argmax is an integer tensor")
        .into_iter()
        .map(|i| i as u32)
        .collect()
}

fn host(t: Tensor<2>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("float tensor")
}

/// The health signals of one logged step.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Diagnostics {
    /// Entropy term divided by its maximum log N: 0 uniform use of each block, 1 collapse.
    pub entropy_ratio: f64,
    /// Distinct argmax prototypes over the student rows, averaged over the blocks.
    pub prototypes_used: f64,
    /// `prototypes_used / N`.
    pub prototypes_used_frac: f64,
    /// `prototypes_used / min(rows, N)`: 1 when every row could have its own prototype.
    pub prototype_coverage: f64,
    /// Mean over dimensions of the std over the batch of the L2-normalised teacher bottleneck.
    pub bottleneck_std: f64,
    /// `bottleneck_std · sqrt(D)`: about 1 for directions spread over the sphere, 0 when
    /// every image maps to the same direction.
    pub bottleneck_std_ratio: f64,
    /// Fraction of (student view i, teacher view j != i, image) whose student argmax on
    /// block 0 equals the teacher's.
    pub agreement_top1: f64,
    /// The same with the teacher's argmax among the student's 5 most likely prototypes.
    pub agreement_top5: f64,
}

/// `entropy / log N`: the entropy term (KL of the mean block assignment from uniform) as a
/// fraction of its largest value, reached when one prototype takes all the mass.
pub fn entropy_ratio(entropy: f64, block_size: usize) -> f64 {
    if block_size < 2 {
        return 0.0;
    }
    entropy / (block_size as f64).ln()
}

/// Distinct values in each of `blocks` equal slices of `argmax` (`[P, rows]`, row-major).
pub fn distinct_per_block(argmax: &[u32], blocks: usize) -> Vec<usize> {
    if blocks == 0 {
        return Vec::new();
    }
    let rows = argmax.len() / blocks;
    argmax
        .chunks(rows.max(1))
        .take(blocks)
        .map(|block| {
            let mut v = block.to_vec();
            v.sort_unstable();
            v.dedup();
            v.len()
        })
        .collect()
}

/// Per-dimension population standard deviation over the rows of `x` (`[rows, dim]`) after
/// scaling each row to unit L2 norm (norm clamped at 1e-12, as PyTorch's `F.normalize`).
pub fn normalised_dim_std(x: &[f32], dim: usize) -> Vec<f64> {
    if dim == 0 || x.len() < dim {
        return Vec::new();
    }
    let rows = x.len() / dim;
    let mut sum = vec![0.0f64; dim];
    let mut sum_sq = vec![0.0f64; dim];
    for row in x.chunks_exact(dim) {
        let norm = row
            .iter()
            .map(|&v| (v as f64) * (v as f64))
            .sum::<f64>()
            .sqrt()
            .max(1e-12);
        for (c, &v) in row.iter().enumerate() {
            let u = v as f64 / norm;
            sum[c] += u;
            sum_sq[c] += u * u;
        }
    }
    let n = rows as f64;
    sum.iter()
        .zip(&sum_sq)
        .map(|(s, q)| {
            let mean = s / n;
            (q / n - mean * mean).max(0.0).sqrt()
        })
        .collect()
}

/// Student–teacher agreement on block 0: over student views i, teacher views j != i and
/// images b, the fraction where the teacher's argmax for (j, b) is the student's most likely
/// prototype for (i, b) (top-1), or among its `k5` most likely (top-5; k5 = min(5, N)).
///
/// A prototype is within the top k when fewer than k prototypes have a strictly larger
/// probability (ties count in the student's favour).
pub fn top_k_agreement(probe: &StepProbe) -> (f64, f64) {
    let (n, b) = (probe.block_size, probe.batch);
    let (s, t) = (probe.student_views, probe.teacher_views);
    let k5 = 5.min(n);
    let (mut hits1, mut hits5, mut total) = (0usize, 0usize, 0usize);
    for i in 0..s {
        for j in (0..t).filter(|&j| j != i) {
            for img in 0..b {
                let target = probe.teacher_argmax[j * b + img] as usize;
                let row = &probe.student_block0[(i * b + img) * n..(i * b + img + 1) * n];
                let p = row[target];
                let rank = row.iter().filter(|&&q| q > p).count();
                hits1 += (rank < 1) as usize;
                hits5 += (rank < k5) as usize;
                total += 1;
            }
        }
    }
    if total == 0 {
        return (0.0, 0.0);
    }
    (hits1 as f64 / total as f64, hits5 as f64 / total as f64)
}

/// All signals of a step from its probe and its entropy term.
pub fn diagnose(probe: &StepProbe, entropy: f64) -> Diagnostics {
    let n = probe.block_size;
    let rows = probe.student_views * probe.batch;
    let used = distinct_per_block(&probe.student_argmax, probe.blocks);
    let prototypes_used = used.iter().sum::<usize>() as f64 / used.len().max(1) as f64;
    let std = normalised_dim_std(&probe.teacher_bottleneck, probe.bottleneck_dim);
    let bottleneck_std = std.iter().sum::<f64>() / std.len().max(1) as f64;
    let (agreement_top1, agreement_top5) = top_k_agreement(probe);
    Diagnostics {
        entropy_ratio: entropy_ratio(entropy, n),
        prototypes_used,
        prototypes_used_frac: prototypes_used / n as f64,
        prototype_coverage: prototypes_used / rows.min(n).max(1) as f64,
        bottleneck_std,
        bottleneck_std_ratio: bottleneck_std * (probe.bottleneck_dim as f64).sqrt(),
        agreement_top1,
        agreement_top5,
    }
}

/// Histogram of argmax indices (`0..n`) into `n` unit-wide bins.
pub fn argmax_histogram(argmax: &[u32], n: usize) -> Vec<f64> {
    let mut counts = vec![0.0; n];
    for &a in argmax {
        if let Some(c) = counts.get_mut(a as usize) {
            *c += 1.0;
        }
    }
    counts
}

/// What the collapse detector says about a logged step.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CollapseStatus {
    /// The signals past their threshold on this step, e.g. `entropy_ratio 0.93 > 0.5`.
    pub signals: Vec<String>,
    /// Whether the signals have persisted for `collapse_patience` logged steps.
    pub collapsed: bool,
    /// Whether this step is the first collapsed one (the moment to warn).
    pub onset: bool,
}

/// Flags collapse when any signal passes its threshold ([`MonitorConfig`]) on
/// `collapse_patience` consecutive logged steps, after `collapse_after_step`.
#[derive(Clone, Debug)]
pub struct CollapseDetector {
    cfg: MonitorConfig,
    streak: usize,
}

impl CollapseDetector {
    /// A detector with the thresholds of `cfg`.
    pub fn new(cfg: &MonitorConfig) -> Self {
        Self {
            cfg: cfg.clone(),
            streak: 0,
        }
    }

    /// Updates the detector with the signals of logged step `step`.
    pub fn check(&mut self, step: usize, d: &Diagnostics) -> CollapseStatus {
        let c = &self.cfg;
        let mut signals = Vec::new();
        if d.entropy_ratio > c.collapse_entropy_ratio {
            signals.push(format!(
                "entropy_ratio {:.3} > {}",
                d.entropy_ratio, c.collapse_entropy_ratio
            ));
        }
        if d.prototype_coverage < c.collapse_prototype_coverage {
            signals.push(format!(
                "prototype_coverage {:.3} < {} ({:.1} prototypes used per block)",
                d.prototype_coverage, c.collapse_prototype_coverage, d.prototypes_used
            ));
        }
        if d.bottleneck_std_ratio < c.collapse_bottleneck_std_ratio {
            signals.push(format!(
                "bottleneck_std_ratio {:.3} < {}",
                d.bottleneck_std_ratio, c.collapse_bottleneck_std_ratio
            ));
        }
        let counted = !signals.is_empty() && step >= c.collapse_after_step;
        self.streak = if counted { self.streak + 1 } else { 0 };
        let collapsed = c.collapse_patience > 0 && self.streak >= c.collapse_patience;
        CollapseStatus {
            signals,
            collapsed,
            onset: collapsed && self.streak == c.collapse_patience,
        }
    }
}

/// The likely causes of a collapse, for the warning, with the keys to change.
pub fn likely_causes(batch_rows: usize, block_size: usize) -> String {
    let mut causes = vec![
        "learning rate too high or warm-up too short (optim.base_lr, optim.warmup_epochs)"
            .to_string(),
        "teacher momentum too low for this batch size (optim.momentum_teacher)".to_string(),
    ];
    if block_size > batch_rows {
        causes.insert(
            0,
            format!(
                "partition size N = {block_size} exceeds the {batch_rows} student rows per step: \
                 the entropy term cannot spread them (lower model.partition_size or raise \
                 optim.batch_size)"
            ),
        );
    } else {
        causes.push(format!(
            "partition size N = {block_size} large for {batch_rows} rows per step \
             (model.partition_size)"
        ));
    }
    format!("likely causes: {}", causes.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe() -> StepProbe {
        // P = 2 blocks of N = 3, B = 2 images, S = 2 student views, T = 2 teacher views.
        StepProbe {
            blocks: 2,
            block_size: 3,
            batch: 2,
            student_views: 2,
            teacher_views: 2,
            // block 0: rows pick 0,1,1,2 -> 3 distinct; block 1: 2,2,2,2 -> 1 distinct
            student_argmax: vec![0, 1, 1, 2, 2, 2, 2, 2],
            // teacher rows (view j, image b) on block 0: j0 -> [1, 2], j1 -> [0, 0]
            teacher_argmax: vec![1, 2, 0, 0, 0, 0, 0, 0],
            // student rows (view i, image b) on block 0
            student_block0: vec![
                0.5, 0.3, 0.2, // i0 b0
                0.1, 0.6, 0.3, // i0 b1
                0.2, 0.7, 0.1, // i1 b0
                0.3, 0.3, 0.4, // i1 b1
            ],
            // two rows in D = 2: (3, 4) -> (0.6, 0.8); (0, 2) -> (0, 1)
            teacher_bottleneck: vec![3.0, 4.0, 0.0, 2.0],
            bottleneck_dim: 2,
        }
    }

    #[test]
    fn entropy_ratio_is_entropy_over_log_n() {
        assert!((entropy_ratio(4f64.ln(), 4) - 1.0).abs() < 1e-12);
        assert!((entropy_ratio(0.5, 64) - 0.5 / 64f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn distinct_prototypes_per_block() {
        assert_eq!(distinct_per_block(&probe().student_argmax, 2), vec![3, 1]);
    }

    #[test]
    fn normalised_std_by_hand() {
        // Normalised rows (0.6, 0.8) and (0, 1): dim 0 values 0.6, 0 -> std 0.3;
        // dim 1 values 0.8, 1 -> std 0.1 (population std = |a - b| / 2).
        let s = normalised_dim_std(&probe().teacher_bottleneck, 2);
        assert!(
            (s[0] - 0.3).abs() < 1e-7 && (s[1] - 0.1).abs() < 1e-7,
            "{s:?}"
        );
        // Identical directions (any scale) have zero spread.
        let s = normalised_dim_std(&[1.0, 1.0, 5.0, 5.0, 0.5, 0.5], 2);
        assert!(s.iter().all(|v| *v < 1e-7), "{s:?}");
    }

    #[test]
    fn agreement_by_hand() {
        // Pairs i != j: (i0, j1) and (i1, j0).
        // (i0, j1): targets [0, 0]; i0b0 argmax 0 (hit1, hit5); i0b1 p[0]=0.1 is rank 2:
        //   miss1, hit5 (k5 = min(5, 3) = 3).
        // (i1, j0): targets [1, 2]; i1b0 argmax 1: hit1; i1b1 p[2]=0.4 is largest: hit1.
        let (t1, t5) = top_k_agreement(&probe());
        assert!((t1 - 0.75).abs() < 1e-12, "{t1}");
        assert!((t5 - 1.0).abs() < 1e-12, "{t5}");
    }

    #[test]
    fn diagnose_combines_the_signals() {
        let d = diagnose(&probe(), 0.3);
        assert!((d.prototypes_used - 2.0).abs() < 1e-12);
        assert!((d.prototypes_used_frac - 2.0 / 3.0).abs() < 1e-12);
        // rows = S * B = 4, N = 3 -> coverage over min(4, 3) = 3
        assert!((d.prototype_coverage - 2.0 / 3.0).abs() < 1e-12);
        assert!((d.bottleneck_std - 0.2).abs() < 1e-7);
        assert!((d.bottleneck_std_ratio - 0.2 * 2f64.sqrt()).abs() < 1e-7);
        assert!((d.entropy_ratio - 0.3 / 3f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn histogram_counts_indices() {
        assert_eq!(argmax_histogram(&[0, 2, 2, 1, 2], 3), vec![1.0, 1.0, 3.0]);
    }

    fn collapsed_probe() -> StepProbe {
        // Every row of every block picks prototype 0; all bottlenecks point the same way.
        StepProbe {
            blocks: 4,
            block_size: 32,
            batch: 8,
            student_views: 4,
            teacher_views: 2,
            student_argmax: vec![0; 4 * 32],
            teacher_argmax: vec![0; 4 * 16],
            student_block0: (0..32)
                .flat_map(|_| std::iter::once(0.9).chain(std::iter::repeat_n(0.1 / 31.0, 31)))
                .collect(),
            teacher_bottleneck: (0..16).flat_map(|i| [1.0 + i as f32, 0.0, 0.0]).collect(),
            bottleneck_dim: 3,
        }
    }

    /// Synthetic collapsed outputs are flagged after `patience` steps; a healthy step resets.
    #[test]
    fn detector_flags_collapse_after_patience() {
        let cfg = MonitorConfig::default();
        let mut det = CollapseDetector::new(&cfg);
        let bad = diagnose(&collapsed_probe(), 32f64.ln() * 0.99);
        // one prototype of min(S * B, N) = 32 possible
        assert!((bad.prototype_coverage - 1.0 / 32.0).abs() < 1e-12);
        assert!(bad.entropy_ratio > 0.9 && bad.agreement_top1 == 1.0);
        assert!(bad.bottleneck_std_ratio < 1e-6);
        let mut onsets = 0;
        for step in 0..cfg.collapse_patience {
            let s = det.check(step, &bad);
            assert_eq!(s.signals.len(), 3, "{:?}", s.signals);
            assert_eq!(s.collapsed, step + 1 == cfg.collapse_patience);
            onsets += s.onset as usize;
        }
        assert_eq!(onsets, 1);
        // A healthy step clears the streak.
        let good = diagnose(&probe(), 0.01);
        let s = det.check(10, &good);
        assert!(!s.collapsed && s.signals.is_empty(), "{:?}", s.signals);
    }

    /// The probe agrees with the logits it was read from: argmax per block, block-0 softmax
    /// rows that sum to 1 and pick the same prototype, and the documented shapes.
    #[test]
    fn probe_reads_the_step_outputs() {
        use burn::optim::GradientsParams;
        use burn::tensor::{Device, Distribution};
        use carp_core::step::StepLosses;
        use rand::SeedableRng;
        let device = Device::flex();
        let (b, k, d) = (4, 16, 3);
        let normal = Distribution::Normal(0.0, 1.0);
        let out = StepOutput {
            losses: StepLosses {
                total: 0.0,
                consistency: 0.0,
                entropy: 0.0,
            },
            grads: GradientsParams::new(),
            student_logits: Tensor::random([4 * b, k], normal, &device),
            teacher_logits: Tensor::random([2 * b, k], normal, &device),
            teacher_bottleneck: Tensor::random([2 * b, d], normal, &device),
        };
        let part = Partition::random(k, 4, &mut rand_chacha::ChaCha8Rng::seed_from_u64(1));
        let probe = StepProbe::read(&out, &part, b);
        assert_eq!((probe.blocks, probe.block_size, probe.batch), (4, 4, b));
        assert_eq!((probe.student_views, probe.teacher_views), (4, 2));
        assert_eq!(probe.student_argmax.len(), 4 * 4 * b);
        assert_eq!(probe.teacher_argmax.len(), 4 * 2 * b);
        assert_eq!(probe.teacher_bottleneck.len(), 2 * b * d);
        let logits = host(out.student_logits.clone());
        for (r, row) in probe.student_block0.chunks(4).enumerate() {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            let best = (0..4)
                .max_by(|&i, &j| row[i].partial_cmp(&row[j]).unwrap())
                .unwrap();
            assert_eq!(probe.student_argmax[r] as usize, best, "row {r}");
            // ... and that prototype has the largest logit of block 0 on the host too.
            let z = |c: usize| logits[r * k + part.indices[c]];
            assert!((0..4).all(|c| z(c) <= z(best)), "row {r}");
        }
    }

    #[test]
    fn causes_name_the_keys() {
        let c = likely_causes(16, 64);
        assert!(c.contains("model.partition_size") && c.contains("optim.base_lr"));
        assert!(c.starts_with("likely causes: partition size N = 64 exceeds"));
    }
}
