//! One CARP training step, read top to bottom in the method's order.

use crate::ema::ema_update;
use crate::lars::Lars;
use crate::loss::carp_loss;
use crate::model::StudentTeacher;
use crate::partition::Partition;
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

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
    // teacher on the global views only
    let teacher_logits = model
        .teacher
        .forward_views(&views.groups[views.global_group..=views.global_group])
        .detach();
    // student on all views
    let student_logits = model.student.forward_views(&views.groups);
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
    (losses, grads)
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

    /// The release order: the teacher averages the student weights from *before* the LARS
    /// step; the other order uses the updated ones. The teacher's BatchNorm tracks its own
    /// statistics (training mode) and the teacher receives no gradient.
    #[test]
    fn ema_order_and_teacher_mode() {
        let device = Device::flex().autodiff();
        let cfg = tiny();
        let b = 4;
        let views = StepViews {
            groups: vec![
                Tensor::random([2 * b, 3, 8, 8], Distribution::Normal(0.0, 1.0), &device),
                Tensor::random([2 * b, 3, 4, 4], Distribution::Normal(0.0, 1.0), &device),
            ],
            global_group: 0,
            batch: b,
        };
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
}
