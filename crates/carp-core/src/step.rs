//! One CARP training step, read top to bottom in the method's order.

use crate::ema::ema_update;
use crate::lars::Lars;
use crate::loss::carp_loss;
use crate::model::StudentTeacher;
use crate::partition::Partition;
use burn::optim::{GradientsAccumulator, GradientsParams};
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

/// Sums the gradients of several micro-batches into one optimiser step.
pub type Accumulator = GradientsAccumulator<crate::model::CarpModel>;
