//! What the training loop reports while it runs, for a progress bar or a JSON-lines stream.
//!
//! The library never draws: it calls an [`Observer`] with [`RunEvent`]s (and emits `tracing`
//! events); `carp-cli` turns them into an indicatif bar, JSON lines or nothing.

use crate::metrics::StepRecord;
use serde::Serialize;

/// One line per epoch: what happened in it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EpochSummary {
    /// Epoch (0-based).
    pub epoch: usize,
    /// Global step after the last step of the epoch in this process.
    pub step: usize,
    /// Steps of this epoch run by this process.
    pub steps: usize,
    /// Mean total loss over those steps.
    pub mean_loss: f64,
    /// Mean consistency term.
    pub mean_consistency: f64,
    /// Mean entropy term.
    pub mean_entropy: f64,
    /// Images per second over the epoch.
    pub img_per_s: f64,
    /// Wall time of the epoch, seconds.
    pub wall_s: f64,
    /// Steps skipped by the NaN policy in the epoch.
    pub skipped_steps: usize,
    /// Whether the collapse detector flagged the run at the epoch's last logged step.
    pub collapse: bool,
}

/// Something the loop reports.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RunEvent {
    /// The loop starts (or resumes) at `start` and will stop at `end`.
    Start {
        /// First global step of this process.
        start: usize,
        /// Step the run ends at (exclusive).
        end: usize,
        /// Steps per epoch.
        steps_per_epoch: usize,
        /// Images per step.
        batch: usize,
    },
    /// A step finished (every step; `record` is present on logged steps).
    Step {
        /// Global steps done (the next step's index).
        done: usize,
        /// The logged record, on logged steps.
        record: Option<StepRecord>,
    },
    /// The collapse detector fired.
    Collapse {
        /// Logged step.
        step: usize,
        /// The warning, with the signals and likely causes.
        message: String,
    },
    /// A step was skipped because of a non-finite loss or gradient.
    Skipped {
        /// The step.
        step: usize,
        /// What was non-finite.
        term: String,
    },
    /// An epoch ended.
    Epoch(EpochSummary),
    /// A checkpoint was written.
    Checkpoint {
        /// Next step stored in it.
        step: usize,
        /// Whether it was written because a stop was requested.
        interrupted: bool,
    },
}

/// Receives the loop's [`RunEvent`]s.
pub trait Observer {
    /// Called for each event, on the training thread (keep it cheap).
    fn event(&mut self, event: &RunEvent);
}

/// An observer that ignores everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct Silent;

impl Observer for Silent {
    fn event(&mut self, _: &RunEvent) {}
}
