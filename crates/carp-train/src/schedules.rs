//! The run's per-iteration schedules (spec §5), laid out over its configured length.

use crate::config::Config;
use carp_core::schedule::{scaled_lr, Schedule};
use carp_core::step::StepSchedule;

/// Learning rate, weight decay and teacher momentum, indexed by the global micro-batch.
#[derive(Clone, Debug)]
pub struct Schedules {
    /// Learning rate.
    pub lr: Schedule,
    /// Weight decay.
    pub wd: Schedule,
    /// Teacher momentum.
    pub momentum: Schedule,
}

impl Schedules {
    /// Schedules of `cfg` for `steps_per_epoch` micro-batches per epoch, in a run of `world`
    /// processes: the learning rate is scaled to the effective batch, per-process batch x
    /// processes x accumulation, as the release does.
    pub fn new(cfg: &Config, steps_per_epoch: usize, world: usize) -> Self {
        let total = if cfg.run.schedule_steps > 0 {
            cfg.run.schedule_steps
        } else {
            cfg.run.epochs * steps_per_epoch
        };
        let o = &cfg.optim;
        let lr = scaled_lr(o.base_lr, o.batch_size * world * o.accumulation_steps);
        let warmup = (o.warmup_epochs * steps_per_epoch as f64).round() as usize;
        Self {
            lr: Schedule::cosine(lr, o.min_lr, total).with_warmup(warmup, 0.0),
            wd: Schedule::cosine(o.weight_decay, o.weight_decay_end, total),
            momentum: Schedule::cosine(o.momentum_teacher, o.momentum_teacher_end, total),
        }
    }

    /// Values at iteration `i`.
    pub fn at(&self, i: usize) -> StepSchedule {
        StepSchedule {
            lr: self.lr.value(i),
            weight_decay: self.wd.value(i),
            teacher_momentum: self.momentum.value(i),
        }
    }
}
