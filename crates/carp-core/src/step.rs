//! One CARP training step, read top to bottom in the method's order.

use crate::ema::ema_update;
use crate::lars::Lars;
use crate::loss::{carp_loss_over, LossTerms};
use crate::model::StudentTeacher;
use crate::partition::Partition;
use crate::path::ParamPath;
use crate::precision::Precision;
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Bool, FloatDType, Tensor};

/// Schedule values for one iteration (spec §5), indexed by the global micro-batch counter.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepSchedule {
    /// Learning rate.
    pub lr: f64,
    /// Weight decay.
    pub weight_decay: f64,
    /// Teacher momentum m.
    pub teacher_momentum: f64,
}

/// When the EMA teacher update happens relative to the optimiser step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EmaOrder {
    /// Before the student update, as the release does (the teacher lags one step). Default.
    #[default]
    BeforeStep,
    /// After the student update, as DINO does.
    AfterStep,
}

/// The views of one micro-batch on the training device.
#[derive(Clone, Debug)]
pub struct StepViews {
    /// One tensor per run of equal-size views, in view order: `[V_g * B, 3, H_g, W_g]`,
    /// view-major.
    pub groups: Vec<Tensor<4>>,
    /// Number of leading `groups` that hold the global views, the teacher's input (a group
    /// never mixes global and local views, see `MultiCropRecipe::size_groups`).
    pub global_groups: usize,
    /// Images per view, B.
    pub batch: usize,
}

impl StepViews {
    /// The views in `precision`'s float type: the forward and backward passes run in the
    /// views' type ([`crate::precision`]).
    pub fn cast(self, precision: Precision) -> Self {
        let dtype = precision.dtype();
        Self {
            groups: self.groups.into_iter().map(|g| g.cast(dtype)).collect(),
            ..self
        }
    }
}

/// The scalar loss terms of one micro-batch, read back to the host.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepLosses {
    /// consistency + entropy.
    pub total: f64,
    /// Consistency term.
    pub consistency: f64,
    /// Entropy term.
    pub entropy: f64,
}

impl StepLosses {
    /// Whether every term is finite.
    pub fn is_finite(&self) -> bool {
        self.total.is_finite() && self.consistency.is_finite() && self.entropy.is_finite()
    }
}

/// What the forward and backward pass of one micro-batch produce.
///
/// The three tensors are detached (no autodiff graph) and stay on the device; monitoring
/// reads them back only on the steps it logs.
#[derive(Debug)]
pub struct StepOutput {
    /// The loss terms.
    pub losses: StepLosses,
    /// Student gradients of `loss_scale · total`.
    pub grads: GradientsParams,
    /// Student logits of every view, `[S * B, K]`, view-major (the global views first).
    pub student_logits: Tensor<2>,
    /// Teacher logits of the global views, `[T * B, K]`.
    pub teacher_logits: Tensor<2>,
    /// The teacher's bottleneck vectors (not normalised) on the global views, `[T * B, D]`.
    pub teacher_bottleneck: Tensor<2>,
}

/// Forward and backward of one micro-batch: the loss terms, the student gradients of
/// `loss_scale · total` (use `1 / accumulation_steps` so accumulated gradients are a mean)
/// and the detached outputs of both networks.
///
/// The teacher sees only the global views, in training mode (its BatchNorm uses batch
/// statistics and tracks its own running averages), and carries no gradient.
///
/// Both networks run in the views' float type ([`StepViews::cast`]); their logits are cast to
/// f32 before the loss, which is always computed in f32 (spec §4), as the release does with
/// `student_output.float()`. The returned logits and bottleneck vectors are f32.
///
/// # Panics
///
/// Panics if `views.global_groups` is 0 or more than the number of groups.
pub fn forward_backward(
    model: &StudentTeacher,
    views: &StepViews,
    partition: &Partition,
    loss_scale: f64,
) -> StepOutput {
    assert!(
        (1..=views.groups.len()).contains(&views.global_groups),
        "global_groups {} must be in 1..={} (the groups)",
        views.global_groups,
        views.groups.len()
    );
    // teacher on the global views only
    let teacher = model
        .teacher
        .forward_views(&views.groups[..views.global_groups]);
    let teacher_logits = teacher.logits.detach().cast(FloatDType::F32);
    // student on all views; the loss in f32 whatever the views' type
    let student_logits = model
        .student
        .forward_views(&views.groups)
        .logits
        .cast(FloatDType::F32);
    // loss = consistency + entropy over the step's random partition
    let terms = carp_loss_over(
        student_logits.clone(),
        teacher_logits.clone(),
        views.batch,
        partition,
        model.group.as_ref(),
    );
    let losses = read_losses(&terms);
    // backward
    let grads = if loss_scale == 1.0 {
        terms.total.backward()
    } else {
        terms.total.mul_scalar(loss_scale).backward()
    };
    StepOutput {
        losses,
        grads: GradientsParams::from_grads(grads, &model.student),
        student_logits: student_logits.detach(),
        teacher_logits,
        teacher_bottleneck: teacher.bottleneck.detach().cast(FloatDType::F32),
    }
}

/// The three loss terms in one host transfer.
fn read_losses(terms: &LossTerms) -> StepLosses {
    let scalars = Tensor::cat(
        vec![
            terms.total.clone().detach(),
            terms.consistency.clone().detach(),
            terms.entropy.clone().detach(),
        ],
        0,
    );
    let values: Vec<f32> = scalars
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("loss terms are f32");
    StepLosses {
        total: values[0] as f64,
        consistency: values[1] as f64,
        entropy: values[2] as f64,
    }
}

/// The first parameter (by module path) whose gradient holds a NaN or infinity, if any.
///
/// Reads back one flag per parameter in a single transfer.
pub fn first_non_finite_gradient<M: Module>(module: &M, grads: &GradientsParams) -> Option<String> {
    let mut visitor = FiniteGrads {
        grads,
        path: ParamPath::default(),
        paths: Vec::new(),
        flags: Vec::new(),
    };
    module.visit(&mut visitor);
    if visitor.flags.is_empty() {
        return None;
    }
    let flags: Vec<bool> = Tensor::cat(visitor.flags, 0)
        .into_data()
        .convert::<bool>()
        .try_to_vec::<bool>()
        .expect("bool tensor");
    flags
        .iter()
        .position(|&bad| bad)
        .map(|i| visitor.paths.swap_remove(i))
}

struct FiniteGrads<'a> {
    grads: &'a GradientsParams,
    path: ParamPath,
    paths: Vec<String>,
    flags: Vec<Tensor<1, Bool>>,
}

impl ModuleVisitor for FiniteGrads<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name);
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = self.grads.get::<D>(param.id) {
            let n = grad.shape().num_elements();
            let bad = grad.reshape([n]).is_finite().bool_not().any();
            self.paths.push(self.path.join());
            self.flags.push(bad);
        }
    }
}

/// The optimiser half of a step: EMA teacher update and LARS step, in `order` (spec §5).
pub fn apply_update(
    model: StudentTeacher,
    lars: &mut Lars,
    grads: GradientsParams,
    schedule: StepSchedule,
    order: EmaOrder,
) -> StudentTeacher {
    let StudentTeacher {
        student,
        teacher,
        group,
    } = model;
    match order {
        EmaOrder::BeforeStep => {
            let teacher = ema_update(teacher, &student, schedule.teacher_momentum);
            let student = lars.step(student, grads, schedule.lr, schedule.weight_decay);
            StudentTeacher {
                student,
                teacher,
                group,
            }
        }
        EmaOrder::AfterStep => {
            let student = lars.step(student, grads, schedule.lr, schedule.weight_decay);
            let teacher = ema_update(teacher, &student, schedule.teacher_momentum);
            StudentTeacher {
                student,
                teacher,
                group,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::head::CarpHeadConfig;
    use crate::model::CarpModelConfig;
    use crate::resnet::{Arch, ResNetConfig};
    use burn::tensor::{Device, Distribution};
    use rand::SeedableRng;

    fn tiny() -> CarpModelConfig {
        let mut backbone = ResNetConfig::new(Arch::Resnet18);
        backbone.base_width = 2;
        backbone.small_stem = true;
        CarpModelConfig {
            head: CarpHeadConfig {
                hidden_dim: 8,
                bottleneck_dim: 4,
                out_dim: 16,
                ..CarpHeadConfig::new(backbone.output_dim())
            },
            backbone,
        }
    }

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    /// Two random 8x8 global and two 4x4 local views of `b` images.
    fn random_views(b: usize, device: &Device) -> StepViews {
        StepViews {
            groups: vec![
                Tensor::random([2 * b, 3, 8, 8], Distribution::Normal(0.0, 1.0), device),
                Tensor::random([2 * b, 3, 4, 4], Distribution::Normal(0.0, 1.0), device),
            ],
            global_groups: 1,
            batch: b,
        }
    }

    /// The release order: the teacher averages the student weights from *before* the LARS
    /// step; the other order uses the updated ones. The teacher's BatchNorm tracks its own
    /// statistics (training mode) and the teacher receives no gradient.
    #[test]
    fn ema_order_and_teacher_mode() {
        let device = Device::flex().autodiff();
        let cfg = tiny();
        let b = 4;
        let views = random_views(b, &device);
        let part = Partition::random(16, 4, &mut rand_chacha::ChaCha8Rng::seed_from_u64(0));
        let sched = StepSchedule {
            lr: 0.5,
            weight_decay: 1e-4,
            teacher_momentum: 0.5,
        };
        let mut results = Vec::new();
        for order in [EmaOrder::BeforeStep, EmaOrder::AfterStep] {
            let model = StudentTeacher::new(&cfg, &device, 3);
            let rm0 = values(model.teacher.backbone.bn1.running_mean.value_sync());
            let s0 = values(model.student.head.mlp[0].weight.val());
            let out = forward_backward(&model, &views, &part, 1.0);
            assert!(out.losses.is_finite());
            let grads = out.grads;
            // Teacher BatchNorm ran in training mode: its running mean moved.
            assert_ne!(
                values(model.teacher.backbone.bn1.running_mean.value_sync()),
                rm0
            );
            let mut lars = Lars::default();
            let model = apply_update(model, &mut lars, grads, sched, order);
            let s1 = values(model.student.head.mlp[0].weight.val());
            let t1 = values(model.teacher.head.mlp[0].weight.val());
            assert_ne!(s0, s1, "the student moved");
            let expect_from = if order == EmaOrder::BeforeStep {
                &s0
            } else {
                &s1
            };
            // Teacher started equal to the student (s0), m = 0.5.
            for ((t, a), s) in t1.iter().zip(&s0).zip(expect_from) {
                assert!((t - (0.5 * a + 0.5 * s)).abs() < 1e-6);
            }
            assert!(!model.teacher.head.mlp[0].weight.val().is_require_grad());
            assert!(model.student.head.mlp[0].weight.val().is_require_grad());
            results.push(t1);
        }
        assert_ne!(results[0], results[1]);
    }

    /// The step's detached outputs have the documented shapes and carry no graph, and the
    /// gradient check names a parameter holding NaN.
    #[test]
    fn outputs_and_gradient_check() {
        let device = Device::flex().autodiff();
        let b = 4;
        let views = random_views(b, &device);
        let part = Partition::random(16, 4, &mut rand_chacha::ChaCha8Rng::seed_from_u64(1));
        let model = StudentTeacher::new(&tiny(), &device, 5);
        let out = forward_backward(&model, &views, &part, 1.0);
        assert_eq!(out.student_logits.dims(), [4 * b, 16]);
        assert_eq!(out.teacher_logits.dims(), [2 * b, 16]);
        assert_eq!(out.teacher_bottleneck.dims(), [2 * b, 4]);
        for t in [
            &out.student_logits,
            &out.teacher_logits,
            &out.teacher_bottleneck,
        ] {
            assert!(!t.is_require_grad());
        }
        assert_eq!(first_non_finite_gradient(&model.student, &out.grads), None);
        let mut grads = out.grads;
        let id = model.student.head.last_layer.weight_v.id;
        let g: Tensor<2> = grads.remove(id).unwrap();
        let bad = g.clone().mul_scalar(f32::NAN);
        grads.register(id, bad);
        assert_eq!(
            first_non_finite_gradient(&model.student, &grads).as_deref(),
            Some("head.last_layer.weight_v")
        );
    }

    /// Relative L2 distance `||a - b|| / ||b||`.
    fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
        let d: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
        let n: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
        (d / n).sqrt()
    }

    /// Issue 12: bf16 and f16 steps from the same weights and (seeded) views as an f32 step.
    ///
    /// - carp's path (f32 kernels on rounded operands) equals Burn's own reduced-precision
    ///   ops (`with_burn_ops`): bit for bit in bf16 (flex's bf16 ops also compute in f32),
    ///   within 5 % in f16 (flex multiplies f16 natively);
    /// - the loss moved (the networks did not run in f32) but stays within 1e-5 relative;
    /// - the gradients of the stem, a downsample convolution and the first head layer are
    ///   f32, finite and near f32's: relative L2 error measured [0.261, 0.064, 0.035] in bf16
    ///   and [0.065, 0.029, 0.013] in f16 (this near-uniform tiny model's gradients are sums
    ///   with heavy cancellation), asserted below 0.5 and 0.15;
    /// - the returned outputs and the BatchNorm running statistics are f32.
    #[test]
    fn issue_12_reduced_precision_step_is_close_to_f32() {
        let device = Device::flex().autodiff();
        let b = 8;
        // Seeded views, so the measured errors are the same on every run.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(12);
        let mut normal = |shape: [usize; 4]| {
            let n = shape.iter().product();
            let v: Vec<f32> = (0..n)
                .map(|_| rand_distr::Distribution::sample(&rand_distr::StandardNormal, &mut rng))
                .collect();
            Tensor::<4>::from_data(burn::tensor::TensorData::new(v, shape), &device)
        };
        let views = StepViews {
            groups: vec![normal([2 * b, 3, 8, 8]), normal([2 * b, 3, 4, 4])],
            global_groups: 1,
            batch: b,
        };
        let part = Partition::random(16, 4, &mut rand_chacha::ChaCha8Rng::seed_from_u64(4));
        let model = StudentTeacher::new(&tiny(), &device, 11);
        let reference = forward_backward(&model, &views, &part, 1.0);
        let grad_of = |out: &StepOutput, model: &StudentTeacher| {
            let ids = [
                model.student.backbone.conv1.weight.id,
                model.student.backbone.layer3[0]
                    .downsample
                    .as_ref()
                    .unwrap()
                    .0
                    .weight
                    .id,
            ];
            let mut v: Vec<Vec<f32>> = ids
                .iter()
                .map(|id| {
                    let g = out.grads.get::<4>(*id).unwrap();
                    assert_eq!(g.dtype(), burn::tensor::DType::F32);
                    values(g)
                })
                .collect();
            let g = out
                .grads
                .get::<2>(model.student.head.mlp[0].weight.id)
                .unwrap();
            assert_eq!(g.dtype(), burn::tensor::DType::F32);
            v.push(values(g));
            v
        };
        let want = grad_of(&reference, &model);
        for precision in [Precision::Bf16, Precision::F16] {
            let model = StudentTeacher::new(&tiny(), &device, 11);
            let out = forward_backward(&model, &views.clone().cast(precision), &part, 1.0);
            let (got, f32_loss) = (out.losses.total, reference.losses.total);
            assert_ne!(got, f32_loss, "{precision}: the forward ran in f32");
            assert!(
                (got - f32_loss).abs() <= 1e-5 * f32_loss,
                "{precision}: {got} vs {f32_loss}"
            );
            for t in [
                &out.student_logits,
                &out.teacher_logits,
                &out.teacher_bottleneck,
            ] {
                assert_eq!(t.dtype(), burn::tensor::DType::F32);
            }
            let errors: Vec<f64> = grad_of(&out, &model)
                .iter()
                .zip(&want)
                .map(|(g, w)| rel_l2(g, w))
                .collect();
            let bound = if precision == Precision::Bf16 {
                0.5
            } else {
                0.15
            };
            for (i, err) in errors.iter().enumerate() {
                assert!(
                    *err < bound,
                    "{precision}: gradient {i}: relative L2 error {err}"
                );
            }
            let burn_model = StudentTeacher::new(&tiny(), &device, 11);
            let burn = carp_kernels::with_burn_ops(|| {
                forward_backward(&burn_model, &views.clone().cast(precision), &part, 1.0)
            });
            let (a, b) = (grad_of(&out, &model), grad_of(&burn, &burn_model));
            for (i, (g, w)) in a.iter().zip(&b).enumerate() {
                let err = rel_l2(g, w);
                match precision {
                    Precision::Bf16 => assert_eq!(g, w, "bf16: gradient {i}: carp vs burn"),
                    _ => assert!(err < 0.05, "{precision}: gradient {i}: carp vs burn {err}"),
                }
            }
            assert_eq!(first_non_finite_gradient(&model.student, &out.grads), None);
            let rm = model.teacher.backbone.bn1.running_mean.value_sync();
            assert_eq!(rm.dtype(), burn::tensor::DType::F32);
        }
    }

    /// Block softmax of `logits` rows in f64: `[rows][P][N]`.
    fn block_probs(logits: &Tensor<2>, part: &Partition) -> Vec<Vec<Vec<f64>>> {
        let [rows, k] = logits.dims();
        let z = values(logits.clone());
        (0..rows)
            .map(|r| {
                part.indices
                    .chunks(part.block_size)
                    .map(|block| {
                        let e: Vec<f64> =
                            block.iter().map(|&c| (z[r * k + c] as f64).exp()).collect();
                        let sum: f64 = e.iter().sum();
                        e.iter().map(|x| x / sum).collect()
                    })
                    .collect()
            })
            .collect()
    }

    /// Issue 10: local views as large as the global ones. The teacher gets the two global
    /// views only (its logits equal a fresh teacher's on the global group alone), and the
    /// consistency term averages the S·T − T = 4·2 − 2 = 6 pairs (i ≠ j), recomputed here in
    /// f64 from the step's own logits.
    #[test]
    fn issue_10_equal_view_sizes_keep_the_teacher_on_the_global_views() {
        let device = Device::flex().autodiff();
        let b = 3;
        let views = StepViews {
            groups: vec![
                Tensor::random([2 * b, 3, 8, 8], Distribution::Normal(0.0, 1.0), &device),
                Tensor::random([2 * b, 3, 8, 8], Distribution::Normal(0.0, 1.0), &device),
            ],
            global_groups: 1,
            batch: b,
        };
        let part = Partition::random(16, 4, &mut rand_chacha::ChaCha8Rng::seed_from_u64(2));
        let out = forward_backward(
            &StudentTeacher::new(&tiny(), &device, 7),
            &views,
            &part,
            1.0,
        );
        assert_eq!(out.teacher_logits.dims(), [2 * b, 16]);
        let fresh = StudentTeacher::new(&tiny(), &device, 7);
        let want = values(fresh.teacher.forward_views(&views.groups[..1]).logits);
        for (x, y) in values(out.teacher_logits.clone()).iter().zip(&want) {
            assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "{x} vs {y}");
        }
        let p = block_probs(&out.student_logits, &part);
        let q = block_probs(&out.teacher_logits, &part);
        let eps = f32::EPSILON as f64;
        let (mut sum, mut pairs) = (0.0, 0);
        for i in 0..4 {
            for j in (0..2).filter(|&j| j != i) {
                let mut l = 0.0;
                for blk in 0..part.num_blocks() {
                    for n in 0..b {
                        let dot: f64 = (0..4)
                            .map(|c| p[i * b + n][blk][c] * q[j * b + n][blk][c])
                            .sum();
                        l -= dot.clamp(eps, 1.0 - eps).ln();
                    }
                }
                sum += l / (part.num_blocks() * b) as f64;
                pairs += 1;
            }
        }
        assert_eq!(pairs, 6);
        let want = sum / pairs as f64;
        let got = out.losses.consistency;
        assert!((got - want).abs() <= 1e-5 * want.abs(), "{got} vs {want}");
    }
}
