//! One CARP training step, read top to bottom in the method's order.

use crate::ema::ema_update;
use crate::lars::Lars;
use crate::loss::carp_loss;
use crate::model::StudentTeacher;
use crate::partition::Partition;
use crate::path::ParamPath;
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Bool, Tensor};

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
    /// One tensor per resolution, view-major: `[V_g * B, 3, H_g, W_g]`.
    pub groups: Vec<Tensor<4>>,
    /// Index into `groups` of the global views (the teacher's input; they come first).
    pub global_group: usize,
    /// Images per view, B.
    pub batch: usize,
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

/// Host copies of what the health diagnostics need (collapse signals, argmax histograms),
/// read back from the step's detached outputs on logged steps only.
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

/// Forward and backward of one micro-batch: returns the loss terms and the student gradients
/// of `loss_scale · total` (use `1 / accumulation_steps` so accumulated gradients are a mean).
///
/// The teacher sees only the global views, in training mode (its BatchNorm uses batch
/// statistics and tracks its own running averages), and carries no gradient.
pub fn forward_backward(
    model: &StudentTeacher,
    views: &StepViews,
    partition: &Partition,
    loss_scale: f64,
) -> (StepLosses, GradientsParams) {
    let (losses, grads, _) = forward_backward_probed(model, views, partition, loss_scale, false);
    (losses, grads)
}

/// [`forward_backward`] that, when `probe` is set, also reads back a [`StepProbe`] from the
/// same forward pass (argmax per block, block-0 probabilities, teacher bottleneck): one
/// extra host transfer, no second forward.
pub fn forward_backward_probed(
    model: &StudentTeacher,
    views: &StepViews,
    partition: &Partition,
    loss_scale: f64,
    probe: bool,
) -> (StepLosses, GradientsParams, Option<StepProbe>) {
    // teacher on the global views only
    let (teacher_bottleneck, teacher_logits) = model
        .teacher
        .forward_views_with_bottleneck(&views.groups[views.global_group..=views.global_group]);
    let teacher_logits = teacher_logits.detach();
    // student on all views
    let student_logits = model.student.forward_views(&views.groups);
    let probe = probe.then(|| {
        read_probe(
            student_logits.clone().detach(),
            teacher_logits.clone(),
            teacher_bottleneck.detach(),
            partition,
            views.batch,
        )
    });
    // loss = consistency + entropy over the step's random partition
    let terms = carp_loss(student_logits, teacher_logits, views.batch, partition);
    let scalars = Tensor::cat(
        vec![
            terms.total.clone().detach(),
            terms.consistency.detach(),
            terms.entropy.detach(),
        ],
        0,
    );
    let values: Vec<f32> = scalars
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("loss terms are f32");
    let losses = StepLosses {
        total: values[0] as f64,
        consistency: values[1] as f64,
        entropy: values[2] as f64,
    };
    // backward
    let grads = if loss_scale == 1.0 {
        terms.total.backward()
    } else {
        terms.total.mul_scalar(loss_scale).backward()
    };
    let grads = GradientsParams::from_grads(grads, &model.student);
    (losses, grads, probe)
}

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

fn read_probe(
    student_logits: Tensor<2>,
    teacher_logits: Tensor<2>,
    teacher_bottleneck: Tensor<2>,
    partition: &Partition,
    batch: usize,
) -> StepProbe {
    let [s_rows, _] = student_logits.dims();
    let [t_rows, d] = teacher_bottleneck.dims();
    let n = partition.block_size;
    let block0 = Partition {
        indices: partition.indices[..n].to_vec(),
        block_size: n,
        num_prototypes: partition.num_prototypes,
    };
    let student_block0 =
        host(crate::partition::block_softmax(student_logits.clone(), &block0).reshape([s_rows, n]));
    StepProbe {
        blocks: partition.num_blocks(),
        block_size: n,
        batch,
        student_views: s_rows / batch,
        teacher_views: t_rows / batch,
        student_argmax: block_argmax(student_logits, partition),
        teacher_argmax: block_argmax(teacher_logits, partition),
        student_block0,
        teacher_bottleneck: host(teacher_bottleneck),
        bottleneck_dim: d,
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
    let StudentTeacher { student, teacher } = model;
    match order {
        EmaOrder::BeforeStep => {
            let teacher = ema_update(teacher, &student, schedule.teacher_momentum);
            let student = lars.step(student, grads, schedule.lr, schedule.weight_decay);
            StudentTeacher { student, teacher }
        }
        EmaOrder::AfterStep => {
            let student = lars.step(student, grads, schedule.lr, schedule.weight_decay);
            let teacher = ema_update(teacher, &student, schedule.teacher_momentum);
            StudentTeacher { student, teacher }
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
            global_group: 0,
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
            let (losses, grads) = forward_backward(&model, &views, &part, 1.0);
            assert!(losses.is_finite());
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

    /// The probe agrees with the logits it was read from (argmax per block, block-0
    /// softmax rows sum to 1, shapes), and the gradient check names a parameter holding NaN.
    #[test]
    fn probe_and_gradient_check() {
        let device = Device::flex().autodiff();
        let b = 4;
        let views = random_views(b, &device);
        let part = Partition::random(16, 4, &mut rand_chacha::ChaCha8Rng::seed_from_u64(1));
        let model = StudentTeacher::new(&tiny(), &device, 5);
        let (_, grads, probe) = forward_backward_probed(&model, &views, &part, 1.0, true);
        let probe = probe.unwrap();
        assert_eq!((probe.blocks, probe.block_size, probe.batch), (4, 4, b));
        assert_eq!((probe.student_views, probe.teacher_views), (4, 2));
        assert_eq!(probe.student_argmax.len(), 4 * 4 * b);
        assert_eq!(probe.teacher_argmax.len(), 4 * 2 * b);
        assert_eq!(probe.teacher_bottleneck.len(), 2 * b * 4);
        // Block 0's argmax of each student row is the argmax of its block-0 probabilities.
        for (r, row) in probe.student_block0.chunks(4).enumerate() {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            let best = (0..4)
                .max_by(|&i, &j| row[i].partial_cmp(&row[j]).unwrap())
                .unwrap();
            assert_eq!(probe.student_argmax[r] as usize, best, "row {r}");
        }
        assert_eq!(first_non_finite_gradient(&model.student, &grads), None);
        let mut grads = grads;
        let id = model.student.head.last_layer.weight_v.id;
        let g: Tensor<2> = grads.remove(id).unwrap();
        let bad = g.clone().mul_scalar(f32::NAN);
        grads.register(id, bad);
        assert_eq!(
            first_non_finite_gradient(&model.student, &grads).as_deref(),
            Some("head.last_layer.weight_v")
        );
    }
}
