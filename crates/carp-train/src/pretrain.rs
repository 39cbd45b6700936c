//! The pretraining run: validate, open the run directory, loop over epochs and steps with
//! a [`Trainer`], evaluate, write the summary.

use crate::config::{Config, ValidConfig};
use crate::data::{self, RunData};
use crate::error::TrainError;
use crate::eval::{knn_summary, log_knn_point, KnnSummary};
use crate::metrics::StepRecord;
use crate::progress::{Observer, Silent};
use crate::signals::StopFlag;
use crate::trainer::{io_err, Trainer};
use burn::module::Module;
use burn::tensor::Device;
use carp_core::collective::{Group, Solo};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tracing::info;

pub use crate::eval::KNN_LOG;
pub use crate::trainer::CHECKPOINT;

/// What `summary.json` holds at the end of a run.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// The run directory.
    pub out_dir: PathBuf,
    /// Steps (micro-batches) done in total, including before a resume.
    pub steps: usize,
    /// Steps done by this process.
    pub steps_this_run: usize,
    /// Steps per epoch.
    pub steps_per_epoch: usize,
    /// Wall time of this process's training loop, seconds.
    pub wall_s: f64,
    /// Training images per second, over all processes of the run.
    pub img_per_s: f64,
    /// Processes that shared each step (data parallel; 1 for a single-process run).
    pub world_size: usize,
    /// Whether the run stopped early on a signal (a checkpoint was written to resume from).
    pub interrupted: bool,
    /// Steps skipped by `--nan-policy skip-step` in this process.
    pub skipped_steps: usize,
    /// Optimiser steps the f16 loss scaler skipped on a gradient overflow, in this process.
    pub overflow_steps: usize,
    /// Whether the collapse detector flagged the run at its last logged step.
    pub collapse: bool,
    /// Loss terms of the last logged step.
    pub last: Option<StepRecord>,
    /// k-NN evaluation, when the run evaluated.
    pub knn: Option<KnnSummary>,
    /// The resolved configuration.
    pub config: Config,
}

/// Runs (or resumes) CARP pretraining as `cfg` says, on `device`.
///
/// The run directory gets `config.toml`, `metrics.jsonl`, TensorBoard event files,
/// `checkpoint.safetensors` (every epoch, every `run.checkpoint_every` steps and at the end,
/// atomically) and `summary.json`. If the directory already holds a checkpoint, training
/// continues exactly from the newest one that reads back.
pub fn pretrain(cfg: &Config, device: &Device) -> Result<Summary, TrainError> {
    let cfg = cfg.clone().resolve()?;
    let data = data::open(&cfg.data, cfg.run.seed)?;
    pretrain_resolved(&cfg, device, data, &mut Silent, &StopFlag::new(), &solo())
}

/// [`pretrain`] on data opened by the caller.
pub fn pretrain_with(cfg: &Config, device: &Device, data: RunData) -> Result<Summary, TrainError> {
    pretrain_observed(cfg, device, data, &mut Silent, &StopFlag::new())
}

/// [`pretrain_with`] that reports to `observer` and stops cleanly (after the current step,
/// with a checkpoint) once `stop` is requested.
pub fn pretrain_observed(
    cfg: &Config,
    device: &Device,
    data: RunData,
    observer: &mut dyn Observer,
    stop: &StopFlag,
) -> Result<Summary, TrainError> {
    pretrain_resolved(
        &cfg.clone().resolve()?,
        device,
        data,
        observer,
        stop,
        &solo(),
    )
}

/// The group of a single-process run.
fn solo() -> Group {
    Arc::new(Solo)
}

/// [`pretrain_observed`] for a configuration already checked by [`Config::resolve`] (the
/// CLI resolves before it opens the data, so that mistakes are reported first), as one
/// process of the data-parallel `group` (every process calls it with the same `cfg` and
/// data; rank 0 writes the run directory and evaluates).
pub fn pretrain_resolved(
    cfg: &ValidConfig,
    device: &Device,
    data: RunData,
    observer: &mut dyn Observer,
    stop: &StopFlag,
    group: &Group,
) -> Result<Summary, TrainError> {
    let mut trainer = Trainer::new(cfg, device, data, observer, group.clone(), stop)?;
    let loop_start = Instant::now();
    let interrupted = train(&mut trainer)?;
    let wall = loop_start.elapsed().as_secs_f64();
    if interrupted {
        trainer.checkpoint_interrupted()?;
    }
    info!(
        skipped_bad_images = trainer.loader().skipped_images(),
        "training data read"
    );
    finish(cfg, &trainer, interrupted, wall)
}

/// The epochs and steps of the run, until its end or a stop request (at an optimiser-step
/// boundary); returns whether it was interrupted.
fn train(trainer: &mut Trainer) -> Result<bool, TrainError> {
    let spe = trainer.steps_per_epoch();
    loop {
        let (it, end) = trainer.position();
        if it >= end {
            return Ok(false);
        }
        let epoch = it / spe;
        let mut batches = trainer.loader().prefetch(epoch as u64, it % spe);
        loop {
            let (it, end) = trainer.position();
            if it >= end || it / spe != epoch {
                break;
            }
            if trainer.stop_requested() && trainer.at_update_boundary() {
                return Ok(true);
            }
            let wait = Instant::now();
            let views = batches
                .next()
                .expect("prefetch yields every step of the epoch")?;
            trainer.waited_for_data(wait.elapsed().as_secs_f64());
            let report = trainer.step(views)?;
            trainer.log(report)?;
            trainer.checkpoint()?;
            trainer.evaluate()?;
        }
        trainer.end_epoch(epoch);
    }
}

/// The end-of-run k-NN (unless interrupted) and `summary.json`.
fn finish(
    cfg: &Config,
    trainer: &Trainer,
    interrupted: bool,
    wall: f64,
) -> Result<Summary, TrainError> {
    let (steps, _) = trainer.position();
    let spe = trainer.steps_per_epoch();
    let knn = if cfg.run.eval && !interrupted && trainer.is_leader() {
        let teacher = trainer.model_ref().teacher.backbone.valid();
        knn_summary(cfg, trainer.data(), &teacher, trainer.device())?
    } else {
        None
    };
    if let Some(knn) = knn.as_ref().filter(|_| cfg.run.eval_every_epochs > 0) {
        log_knn_point(trainer.out(), steps / spe, steps, &knn.trained)?;
    }
    let steps_this_run = steps.saturating_sub(trainer.start());
    let (skipped_steps, last, collapse) = trainer.health();
    let world_size = trainer.world_size();
    let summary = Summary {
        out_dir: trainer.out().to_path_buf(),
        steps,
        steps_this_run,
        steps_per_epoch: spe,
        wall_s: wall,
        img_per_s: (steps_this_run * cfg.optim.batch_size * world_size) as f64 / wall.max(1e-9),
        world_size,
        interrupted,
        skipped_steps,
        overflow_steps: trainer.overflow_steps(),
        collapse,
        last,
        knn,
        config: cfg.clone(),
    };
    if !trainer.is_leader() {
        return Ok(summary);
    }
    let summary_path = trainer.out().join("summary.json");
    let text = serde_json::to_string_pretty(&summary).expect("summary serialises");
    std::fs::write(&summary_path, text).map_err(io_err(&summary_path))?;
    Ok(summary)
}
