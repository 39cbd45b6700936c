//! The training loop's parts: one CARP step ([`Trainer::step`], read in the order of the
//! release's `train_one_epoch`), and the bookkeeping around it, one job per method:
//! [`Trainer::log`], [`Trainer::checkpoint`], [`Trainer::evaluate`], [`Trainer::end_epoch`].
//!
//! Data parallel: with a process group of W > 1, each process runs the same steps on its
//! share of the world's batch ([`Loader::shard`]), BatchNorm statistics and the entropy
//! term's mean assignment are shared through the group, and the gradients are averaged
//! after backward (with the loss terms and the stop flag in the same all-reduce), so every
//! process applies the same update. Rank 0 alone writes files and evaluates.

use crate::config::{NanPolicy, ValidConfig};
use crate::data::RunData;
use crate::diagnostics::StepProbe;
use crate::error::TrainError;
use crate::eval::{log_knn_point, teacher_knn};
use crate::metrics::ScalerRecord;
use crate::monitor::Monitor;
use crate::progress::{Observer, RunEvent};
use crate::schedules::Schedules;
use crate::signals::StopFlag;
use crate::state;
use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData};
use carp_core::collective::Group;
use carp_core::data_parallel::average_gradients;
use carp_core::lars::Lars;
use carp_core::model::{CarpModel, StudentTeacher};
use carp_core::partition::Partition;
use carp_core::precision::Precision;
use carp_core::scaler::GradScaler;
use carp_core::step::{
    apply_update, first_non_finite_gradient, forward_backward, StepLosses, StepOutput,
    StepSchedule, StepViews,
};
use carp_data::seed::partition_rng;
use carp_data::{Loader, ViewBatch};
use carp_io::write_checkpoint;
use std::path::{Path, PathBuf};
use tracing::{debug, error, info, warn};

/// Name of the latest checkpoint in a run directory.
pub const CHECKPOINT: &str = "checkpoint.safetensors";

/// What one step did, for logging.
pub struct StepReport {
    /// Global step (micro-batch index).
    pub step: usize,
    /// The loss terms.
    pub losses: StepLosses,
    /// The schedule values the step used.
    pub schedule: StepSchedule,
    /// The forward pass's detached outputs (gradients already consumed).
    pub outputs: StepOutput,
    /// The step's random partition.
    pub partition: Partition,
    /// Images per view, B.
    pub batch: usize,
    /// What was non-finite, when the NaN policy or the f16 loss scaler skipped the step.
    pub skipped: Option<String>,
    /// The f16 loss scaler after the step (`None` in f32 and bf16).
    pub scaler: Option<ScalerRecord>,
}

/// A pretraining run in progress: the student/teacher pair, LARS, the schedules, the
/// gradient accumulator and the run directory's writers.
pub struct Trainer<'a> {
    cfg: &'a ValidConfig,
    out: PathBuf,
    /// The evaluation device (no autodiff).
    device: Device,
    /// The training device (autodiff).
    train_device: Device,
    data: RunData,
    loader: Loader,
    schedules: Schedules,
    /// Taken out only while an update rebuilds it.
    model: Option<StudentTeacher>,
    lars: Lars,
    accumulator: GradientsAccumulator<CarpModel>,
    /// Micro-batches in the accumulator.
    pending: usize,
    /// Next step (micro-batch) to run.
    next: usize,
    /// Step this process started from.
    start: usize,
    /// Step the run ends at (exclusive).
    end: usize,
    /// Non-finite steps skipped by this process, and in a row.
    skipped: usize,
    skip_streak: usize,
    /// f16 dynamic loss scaling (`None` in f32 and bf16).
    scaler: Option<GradScaler>,
    /// Optimiser steps the scaler skipped on a gradient overflow, in this process.
    overflow_steps: usize,
    monitor: Monitor,
    observer: &'a mut dyn Observer,
    /// The processes sharing each step (one: a single-process run).
    group: Group,
    /// Set by a signal or the caller; in a data-parallel run read through `stop_agreed`.
    stop: StopFlag,
    /// Whether any process had asked to stop at the last all-reduce.
    stop_agreed: bool,
}

impl<'a> Trainer<'a> {
    /// Opens the run directory `run.out` (rank 0 writes `config.toml`), resumes from the
    /// newest readable checkpoint; `group` is the run's processes, `stop` its stop request.
    pub fn new(
        cfg: &'a ValidConfig,
        device: &Device,
        data: RunData,
        observer: &'a mut dyn Observer,
        group: Group,
        stop: &StopFlag,
    ) -> Result<Self, TrainError> {
        let out = PathBuf::from(&cfg.run.out);
        let (rank, world) = (group.rank(), group.size());
        if rank == 0 {
            std::fs::create_dir_all(&out).map_err(io_err(&out))?;
            let config_path = out.join("config.toml");
            std::fs::write(&config_path, cfg.to_toml()).map_err(io_err(&config_path))?;
        }
        let loader = open_loader(cfg, &data, rank, world)?;
        let spe = loader.steps_per_epoch();
        let schedules = Schedules::new(cfg, spe, world);
        let total = schedules.lr.total_iters;
        let end = match cfg.run.max_steps {
            0 => total,
            max => max.min(total),
        };
        check_precision(cfg, device)?;
        log_start(cfg, &data, &out, spe, total, world);
        let train_device = device.clone().autodiff();
        let (mut model, lars, start, scaler) =
            init_or_resume(cfg, &out, &train_device, device, world)?;
        agree_on_start(&group, start, &out)?;
        if world > 1 {
            model.set_groups(Some(group.clone()), cfg.optim.sync_bn);
        }
        let monitor = if rank == 0 {
            Monitor::open(&out, &cfg.monitor, world)?
        } else {
            Monitor::without_files(&cfg.monitor, world)
        };
        observer.event(&RunEvent::Start {
            start,
            end,
            steps_per_epoch: spe,
            batch: cfg.optim.batch_size,
        });
        Ok(Self {
            cfg,
            out,
            device: device.clone(),
            train_device,
            data,
            loader,
            schedules,
            model: Some(model),
            lars,
            accumulator: GradientsAccumulator::new(),
            pending: 0,
            next: start,
            start,
            end,
            skipped: 0,
            skip_streak: 0,
            scaler,
            overflow_steps: 0,
            monitor,
            observer,
            group,
            stop: stop.clone(),
            stop_agreed: false,
        })
    }

    /// One micro-batch, in the release's order: the step's random partition, forward and
    /// backward, the finite check, then accumulate the gradients or update the networks
    /// (EMA teacher, then LARS, by default).
    pub fn step(&mut self, batch: ViewBatch) -> Result<StepReport, TrainError> {
        let (it, accum) = (self.next, self.cfg.optim.accumulation_steps);
        let b = batch.batch_size();
        // the networks run in the views' float type (optim.precision)
        let views = views_on_device(batch, &self.train_device).cast(self.cfg.optim.precision);
        // random partition: a pure function of (seed, step)
        let partition = Partition::random(
            self.cfg.model.out_dim,
            self.cfg.model.partition_size,
            &mut partition_rng(self.cfg.run.seed, it),
        );
        // forward (teacher on the global views, student on all) and backward; in f16 of the
        // loss times the loss scale (the gradients are unscaled in `update`)
        let loss_scale = self.scaler.as_ref().map_or(1.0, GradScaler::scale);
        let mut out = forward_backward(self.model(), &views, &partition, loss_scale / accum as f64);
        let mut grads = std::mem::replace(&mut out.grads, GradientsParams::new());
        // data parallel: the mean (still scaled) gradient and loss terms over the processes,
        // so an overflow on any rank is seen, and the step skipped, on every rank
        if self.group.size() > 1 {
            grads = self.all_reduce(grads, &mut out.losses);
        }
        let schedule = self.schedules.at(it);
        // finite check: loss terms, then every gradient
        let skipped = self.finite_check(it, &out.losses, &grads)?;
        // accumulate, or update: EMA teacher and LARS
        let mut overflow = None;
        if skipped.is_none() {
            if accum == 1 {
                overflow = self.update(grads, schedule);
            } else {
                let student = &self.model.as_ref().expect("model present").student;
                self.accumulator.accumulate(student, grads);
                self.pending += 1;
            }
        }
        if accum > 1 && (it + 1).is_multiple_of(accum) && self.pending > 0 {
            let grads = self.accumulator.grads();
            self.pending = 0;
            overflow = self.update(grads, schedule);
        }
        self.next += 1;
        Ok(StepReport {
            step: it,
            losses: out.losses,
            schedule,
            outputs: out,
            partition,
            batch: b,
            skipped: skipped.or(overflow),
            scaler: self.scaler.map(|s| ScalerRecord {
                loss_scale: s.scale(),
                overflow_steps: self.overflow_steps,
            }),
        })
    }

    /// Averages the gradients and the loss terms over the processes, and shares the stop
    /// request, in one all-reduce.
    fn all_reduce(&mut self, grads: GradientsParams, losses: &mut StepLosses) -> GradientsParams {
        let l = *losses;
        let stop = if self.stop.requested() { 1.0 } else { 0.0 };
        let mut extra = [l.total as f32, l.consistency as f32, l.entropy as f32, stop];
        let student = &self.model_ref().student;
        let grads = average_gradients(student, grads, &self.group, &mut extra);
        let w = self.group.size() as f64;
        *losses = StepLosses {
            total: extra[0] as f64 / w,
            consistency: extra[1] as f64 / w,
            entropy: extra[2] as f64 / w,
        };
        self.stop_agreed |= extra[3] > 0.0;
        grads
    }

    /// Whether the run should stop at the next optimiser-step boundary: the stop request,
    /// or in a data-parallel run any process's request as of the last all-reduce (so that
    /// every process stops at the same step).
    pub fn stop_requested(&self) -> bool {
        if self.group.size() > 1 {
            self.stop_agreed
        } else {
            self.stop.requested()
        }
    }

    /// Whether this process writes the run's files and evaluates (rank 0).
    pub fn is_leader(&self) -> bool {
        self.group.rank() == 0
    }

    /// Processes sharing each step.
    pub fn world_size(&self) -> usize {
        self.group.size()
    }

    /// Applies the NaN policy: `None` when every loss term and gradient is finite, the name
    /// of the first non-finite one when the step is skipped, an error when the run stops.
    fn finite_check(
        &mut self,
        it: usize,
        losses: &StepLosses,
        grads: &GradientsParams,
    ) -> Result<Option<String>, TrainError> {
        // With f16 loss scaling an inf/NaN gradient is an overflow that the scaler handles
        // at the optimiser step (`update`), not an error.
        let non_finite = non_finite_term(losses).or_else(|| {
            if self.scaler.is_some() {
                return None;
            }
            first_non_finite_gradient(&self.model().student, grads)
                .map(|p| format!("gradient of student.{p}"))
        });
        let Some(term) = non_finite else {
            self.skip_streak = 0;
            return Ok(None);
        };
        let stop = |term: String| TrainError::NonFiniteLoss {
            step: it,
            term,
            total: losses.total,
            consistency: losses.consistency,
            entropy: losses.entropy,
        };
        match self.cfg.monitor.nan_policy {
            NanPolicy::Stop => {
                error!(step = it, %term, "non-finite value: stopping");
                Err(stop(term))
            }
            NanPolicy::SkipStep => {
                self.skipped += 1;
                self.skip_streak += 1;
                warn!(step = it, %term, skipped = self.skipped, "non-finite value: step skipped");
                self.observer.event(&RunEvent::Skipped {
                    step: it,
                    term: term.clone(),
                });
                if self.skip_streak > self.cfg.monitor.max_consecutive_skips {
                    return Err(stop(format!(
                        "{term} ({} steps skipped in a row, more than \
                         monitor.max_consecutive_skips)",
                        self.skip_streak
                    )));
                }
                Ok(Some(term))
            }
        }
    }

    /// The optimiser half of a step (spec §5): EMA teacher update and LARS step. In f16 the
    /// gradients are unscaled first; on an overflow the LARS step is skipped (the EMA still
    /// runs, as in the release), the loss scale backs off, and the reason is returned.
    ///
    /// Data parallelism: all-reduce `grads` before this function, i.e. before unscaling, so
    /// that an overflow on any process skips the step on all of them (PyTorch's order).
    fn update(&mut self, grads: GradientsParams, schedule: StepSchedule) -> Option<String> {
        let (grads, overflow) = match self.scaler {
            Some(scaler) => self.unscale(scaler, grads),
            None => (grads, None),
        };
        let model = self.model.take().expect("the model is only taken here");
        self.model = Some(apply_update(
            model,
            &mut self.lars,
            grads,
            schedule,
            self.cfg.optim.ema_order,
        ));
        overflow
    }

    /// f16: the gradients times 1/S, or no gradients (the LARS step is skipped) when one held
    /// an inf/NaN; moves the loss scale either way and logs a skipped step.
    fn unscale(
        &mut self,
        scaler: GradScaler,
        grads: GradientsParams,
    ) -> (GradientsParams, Option<String>) {
        let out = scaler.unscale(&self.model().student, grads);
        let mut next = scaler;
        next.update(out.overflow.is_some());
        self.scaler = Some(next);
        let Some(param) = out.overflow else {
            return (out.grads, None);
        };
        self.overflow_steps += 1;
        let step = self.next;
        let term = format!(
            "f16 gradient overflow (student.{param}) at loss scale {}: optimiser step \
             skipped, scale now {}",
            scaler.scale(),
            next.scale()
        );
        warn!(
            step,
            loss_scale = next.scale(),
            overflow_steps = self.overflow_steps,
            "{term}"
        );
        self.observer.event(&RunEvent::Skipped {
            step,
            term: term.clone(),
        });
        (GradientsParams::new(), Some(term))
    }

    /// Records a finished step: epoch totals, and on logged steps the metrics line with the
    /// collapse signals, TensorBoard and the progress event.
    pub fn log(&mut self, report: StepReport) -> Result<(), TrainError> {
        let done = self.next;
        let log_now = done.is_multiple_of(self.cfg.run.log_every) || done == self.end;
        let probe =
            log_now.then(|| StepProbe::read(&report.outputs, &report.partition, report.batch));
        let epoch = report.step / self.steps_per_epoch();
        let record = self.monitor.record(
            &report,
            epoch,
            probe.as_ref(),
            self.skipped,
            &self.cfg.model,
            self.observer,
        )?;
        self.observer.event(&RunEvent::Step { done, record });
        Ok(())
    }

    /// Writes the latest checkpoint when one is due (end of an epoch, every
    /// `run.checkpoint_every` steps, the end of the run), and keeps a numbered copy every
    /// `run.keep_every_epochs` epochs. Only at an optimiser-step boundary.
    pub fn checkpoint(&mut self) -> Result<(), TrainError> {
        if !self.is_leader() {
            return Ok(());
        }
        let (it, spe) = (self.next, self.steps_per_epoch());
        let epoch_done = it.is_multiple_of(spe);
        let every = self.cfg.run.checkpoint_every;
        let periodic = every > 0 && it.is_multiple_of(every);
        if !(epoch_done || periodic || it == self.end) {
            return Ok(());
        }
        if !self.at_update_boundary() {
            if it == self.end {
                warn!(
                    step = it,
                    "run ended inside an accumulation window: no checkpoint written"
                );
            }
            return Ok(());
        }
        let ckpt = self.write_latest()?;
        let keep = self.cfg.run.keep_every_epochs;
        if epoch_done && keep > 0 && (it / spe).is_multiple_of(keep) {
            let kept = self
                .out
                .join(format!("checkpoint-ep{:04}.safetensors", it / spe));
            write_checkpoint(&kept, &ckpt)?;
        }
        debug!(step = it, epoch = it / spe, "checkpoint written");
        self.observer.event(&RunEvent::Checkpoint {
            step: it,
            interrupted: false,
        });
        Ok(())
    }

    /// Writes `checkpoint.safetensors` for the current step and returns what it wrote.
    fn write_latest(&self) -> Result<carp_io::Checkpoint, TrainError> {
        let it = self.next;
        let ckpt = state::snapshot(
            self.model_ref(),
            &self.lars,
            self.scaler.as_ref(),
            it,
            it / self.steps_per_epoch(),
            self.cfg,
            self.group.size(),
        );
        write_checkpoint(&self.out.join(CHECKPOINT), &ckpt)?;
        Ok(ckpt)
    }

    /// The teacher's k-NN every `run.eval_every_epochs` epochs during training, appended to
    /// [`crate::eval::KNN_LOG`] (the end of the run is evaluated by [`Trainer::finish`]).
    pub fn evaluate(&mut self) -> Result<(), TrainError> {
        let (it, spe) = (self.next, self.steps_per_epoch());
        let every = self.cfg.run.eval_every_epochs;
        let due = self.cfg.run.eval
            && self.is_leader()
            && every > 0
            && it.is_multiple_of(spe)
            && it != self.end
            && self.at_update_boundary()
            && (it / spe).is_multiple_of(every);
        if !due {
            return Ok(());
        }
        let backbone = self.model_ref().teacher.backbone.valid();
        if let Some(results) = teacher_knn(self.cfg, &self.data, &backbone, &self.device)? {
            log_knn_point(&self.out, it / spe, it, &results)?;
        }
        Ok(())
    }

    /// Closes an epoch: its summary line and event.
    pub fn end_epoch(&mut self, epoch: usize) {
        if let Some(summary) = self.monitor.end_epoch(epoch, self.next) {
            self.observer.event(&RunEvent::Epoch(summary));
        }
    }

    /// The checkpoint of an interrupted run (mid-epoch if need be).
    pub fn checkpoint_interrupted(&mut self) -> Result<(), TrainError> {
        if !self.is_leader() {
            return Ok(());
        }
        self.write_latest()?;
        warn!(
            step = self.next,
            path = %self.out.join(CHECKPOINT).display(),
            "stop requested: checkpoint written; run the same command again to resume"
        );
        self.observer.event(&RunEvent::Checkpoint {
            step: self.next,
            interrupted: true,
        });
        Ok(())
    }

    /// Whether the next step starts a new optimiser step (no gradients pending).
    pub fn at_update_boundary(&self) -> bool {
        self.next.is_multiple_of(self.cfg.optim.accumulation_steps)
    }

    /// The next step to run, and the step the run ends at (exclusive).
    pub fn position(&self) -> (usize, usize) {
        (self.next, self.end)
    }

    /// The step this process started from.
    pub fn start(&self) -> usize {
        self.start
    }

    /// Steps per epoch.
    pub fn steps_per_epoch(&self) -> usize {
        self.loader.steps_per_epoch()
    }

    /// The run's batch loader.
    pub fn loader(&self) -> &Loader {
        &self.loader
    }

    /// The run directory.
    pub fn out(&self) -> &Path {
        &self.out
    }

    /// The run's data sets.
    pub fn data(&self) -> &RunData {
        &self.data
    }

    /// The evaluation device.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The networks.
    pub fn model_ref(&self) -> &StudentTeacher {
        self.model
            .as_ref()
            .expect("the model is only taken during an update")
    }

    fn model(&self) -> &StudentTeacher {
        self.model_ref()
    }

    /// Accounts for time spent waiting on the loader.
    pub fn waited_for_data(&mut self, secs: f64) {
        self.monitor.waited_for_data(secs);
    }

    /// Optimiser steps the f16 loss scaler skipped on a gradient overflow, in this process.
    pub fn overflow_steps(&self) -> usize {
        self.overflow_steps
    }

    /// Non-finite steps skipped by this process, the last logged record, and whether the
    /// collapse detector flags the run.
    pub fn health(&self) -> (usize, Option<crate::metrics::StepRecord>, bool) {
        (
            self.skipped,
            self.monitor.last().cloned(),
            self.monitor.collapsed(),
        )
    }
}

/// Rank `rank`'s loader of multi-crop batches in a `world`-process run; an error when not
/// one step of the world's batch fits the data.
fn open_loader(
    cfg: &ValidConfig,
    data: &RunData,
    rank: usize,
    world: usize,
) -> Result<Loader, TrainError> {
    let loader = Loader::new(
        data.train.clone(),
        crate::data::recipe(&cfg.views),
        cfg.optim.batch_size,
        cfg.run.seed,
    )
    .shard(rank, world)
    .skip_bad_images(cfg.data.skip_bad_images);
    if loader.steps_per_epoch() == 0 {
        let b = cfg.optim.batch_size;
        let batch = if world > 1 {
            format!(
                "the global batch {} ({b} per process x {world} processes)",
                b * world
            )
        } else {
            format!("batch size {b}")
        };
        return Err(TrainError::Config {
            key: "optim.batch_size".into(),
            message: format!(
                "{batch} is larger than the {} training images",
                data.train.len()
            ),
        });
    }
    Ok(loader)
}

/// Checks that every process starts from the same step: they must all have read the same
/// checkpoint (`run.out` on a file system every node sees).
fn agree_on_start(group: &Group, start: usize, out: &Path) -> Result<(), TrainError> {
    if group.size() == 1 {
        return Ok(());
    }
    // f32 holds every step count below 2^24 exactly; each rank fills its own slot.
    let mut buf = vec![0.0f32; group.size()];
    buf[group.rank()] = start as f32;
    group.all_reduce_sum(&mut buf);
    let starts: Vec<usize> = buf.iter().map(|&s| s as usize).collect();
    if starts.iter().all(|&s| s == start) {
        return Ok(());
    }
    Err(TrainError::Resume {
        path: out.join(CHECKPOINT),
        message: format!(
            "the processes would start from different steps ({}, by rank): every rank must \
             see the same run directory (a file system shared by all nodes)",
            starts
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    })
}

/// The run's opening log lines.
fn log_start(
    cfg: &ValidConfig,
    data: &RunData,
    out: &Path,
    spe: usize,
    total: usize,
    world: usize,
) {
    info!(
        version = env!("CARGO_PKG_VERSION"),
        processes = world,
        data = %data.train.describe(),
        out = %out.display(),
        steps_per_epoch = spe,
        total_steps = total,
        threads = rayon::current_num_threads(),
        "carp pretrain"
    );
    let (k, n) = (cfg.model.out_dim, cfg.model.partition_size);
    if k % n != 0 {
        warn!(
            out_dim = k,
            partition_size = n,
            "partition size does not divide out_dim: {} prototypes sit out each step \
             (a different random set every step)",
            k % n
        );
    }
}

/// Fresh networks, LARS and (f16) loss scaler from the seed, or their state from the newest
/// readable checkpoint in `out`; with the step to start from.
fn init_or_resume(
    cfg: &ValidConfig,
    out: &Path,
    train_device: &Device,
    optim_device: &Device,
    world: usize,
) -> Result<(StudentTeacher, Lars, usize, Option<GradScaler>), TrainError> {
    let model = StudentTeacher::new(&cfg.model_config(), train_device, cfg.run.seed);
    let mut lars = Lars::new(cfg.optim.momentum, cfg.optim.eta);
    let scaler = cfg
        .optim
        .precision
        .needs_loss_scaling()
        .then(GradScaler::default);
    let Some((path, ckpt)) = state::latest_checkpoint(out) else {
        return Ok((model, lars, 0, scaler));
    };
    let (model, start) = state::restore(&ckpt, &path, model, &mut lars, cfg, optim_device, world)?;
    let scaler = match (scaler, state::restore_scaler(&ckpt, &path)?) {
        (Some(_), Some(saved)) => Some(saved),
        (Some(fresh), None) => {
            info!(
                loss_scale = fresh.scale(),
                "the checkpoint has no loss scaler state (not an f16 run): starting a new one"
            );
            Some(fresh)
        }
        (None, _) => None,
    };
    info!(step = start, path = %path.display(), "resumed");
    Ok((model, lars, start, scaler))
}

/// An error naming `optim.precision` when `device` cannot compute in its float type.
fn check_precision(cfg: &ValidConfig, device: &Device) -> Result<(), TrainError> {
    let precision = cfg.optim.precision;
    if precision.is_supported_on(device) {
        return Ok(());
    }
    Err(TrainError::Config {
        key: "optim.precision".into(),
        message: format!(
            "device `{}` has no {precision} arithmetic (Burn reports {:?} as not generally \
             supported there); use f32{}",
            cfg.run.device,
            precision.dtype(),
            if Precision::Bf16.is_supported_on(device) {
                " or bf16"
            } else if Precision::F16.is_supported_on(device) {
                " or f16"
            } else {
                ""
            }
        ),
    })
}

/// The step's view groups as tensors on `device`.
fn views_on_device(batch: ViewBatch, device: &Device) -> StepViews {
    let b = batch.batch_size();
    let groups = batch
        .groups
        .into_iter()
        .map(|g| {
            let shape = g.shape(b);
            Tensor::<4>::from_data(TensorData::new(g.data, shape), device)
        })
        .collect();
    StepViews {
        groups,
        global_groups: batch.global_groups,
        batch: b,
    }
}

/// The first non-finite loss term, named.
fn non_finite_term(l: &StepLosses) -> Option<String> {
    [
        ("consistency", l.consistency),
        ("entropy", l.entropy),
        ("total", l.total),
    ]
    .into_iter()
    .find(|(_, v)| !v.is_finite())
    .map(|(name, v)| format!("loss ({name} = {v})"))
}

/// Maps an I/O error on `path` to a [`TrainError`].
pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}
