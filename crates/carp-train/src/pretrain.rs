//! The pretraining run: run directory, loop, checkpoints, evaluation, summary.

use crate::config::{Config, NanPolicy};
use crate::data::{self, RunData};
use crate::diagnostics::{argmax_histogram, diagnose, likely_causes, CollapseDetector};
use crate::error::TrainError;
use crate::eval::knn_eval;
use crate::metrics::{MetricsWriter, StepRecord};
use crate::progress::{EpochSummary, Observer, RunEvent, Silent};
use crate::signals::StopFlag;
use crate::state;
use crate::tensorboard::{EventWriter, Value};
use burn::module::Module;
use burn::optim::GradientsAccumulator;
use burn::tensor::{Device, Tensor, TensorData};
use carp_core::lars::Lars;
use carp_core::model::StudentTeacher;
use carp_core::partition::Partition;
use carp_core::schedule::{scaled_lr, Schedule};
use carp_core::step::{
    apply_update, first_non_finite_gradient, forward_backward_probed, StepLosses, StepProbe,
    StepSchedule, StepViews,
};
use carp_data::{Loader, ViewBatch};
use carp_eval::KnnResult;
use carp_io::write_checkpoint;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tracing::{debug, error, info, warn};

/// Name of the latest checkpoint in a run directory.
pub const CHECKPOINT: &str = "checkpoint.safetensors";

/// k-NN of the trained teacher backbone next to the same architecture at initialisation.
#[derive(Clone, Debug, Serialize)]
pub struct KnnSummary {
    /// Top-1 (%) of the trained teacher at the reported k (20, or the largest k available).
    pub trained_top1: f64,
    /// Top-1 (%) of the randomly initialised backbone at the same k.
    pub init_top1: f64,
    /// The k of the two numbers above.
    pub k: usize,
    /// All k of the trained teacher.
    pub trained: Vec<KnnResult>,
    /// All k at initialisation.
    pub init: Vec<KnnResult>,
}

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
    /// Training images per second in this process.
    pub img_per_s: f64,
    /// Whether the run stopped early on a signal (a checkpoint was written to resume from).
    pub interrupted: bool,
    /// Steps skipped by `--nan-policy skip-step` in this process.
    pub skipped_steps: usize,
    /// Whether the collapse detector flagged the run at its last logged step.
    pub collapse: bool,
    /// Loss terms of the last logged step.
    pub last: Option<StepRecord>,
    /// k-NN evaluation, when the run evaluated.
    pub knn: Option<KnnSummary>,
    /// The resolved configuration.
    pub config: Config,
}

/// Per-iteration schedules of a run (spec §5), laid out over the configured length.
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
    /// Schedules of `cfg` for `steps_per_epoch` micro-batches per epoch.
    pub fn new(cfg: &Config, steps_per_epoch: usize) -> Self {
        let total = if cfg.run.schedule_steps > 0 {
            cfg.run.schedule_steps
        } else {
            cfg.run.epochs * steps_per_epoch
        };
        let o = &cfg.optim;
        let lr = scaled_lr(o.base_lr, o.batch_size * o.accumulation_steps);
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

/// The generator of step `step`'s random partition: a pure function of (seed, step).
pub fn partition_rng(seed: u64, step: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5ca1_ab1e_0000_0000);
    rng.set_stream(step as u64);
    rng
}

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
        global_group: 0,
        batch: b,
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Runs (or resumes) CARP pretraining as `cfg` says, on `device`.
///
/// The run directory gets `config.toml`, `metrics.jsonl`, TensorBoard event files,
/// `checkpoint.safetensors` (every epoch, every `run.checkpoint_every` steps and at the end,
/// atomically) and `summary.json`. If the directory already holds a checkpoint, training
/// continues exactly from the newest one that reads back.
pub fn pretrain(cfg: &Config, device: &Device) -> Result<Summary, TrainError> {
    cfg.validate()?;
    cfg.check_run_dir()?;
    let data = data::open(&cfg.data, cfg.run.seed)?;
    pretrain_with(cfg, device, data)
}

/// [`pretrain`] on data opened by the caller.
pub fn pretrain_with(cfg: &Config, device: &Device, data: RunData) -> Result<Summary, TrainError> {
    pretrain_observed(cfg, device, data, &mut Silent, &StopFlag::new())
}

/// Running sums of one epoch, for its summary line.
#[derive(Default)]
struct EpochTotals {
    steps: usize,
    loss: f64,
    consistency: f64,
    entropy: f64,
    skipped: usize,
    images: usize,
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
    cfg.validate()?;
    cfg.check_run_dir()?;
    let out = cfg.out_dir();
    std::fs::create_dir_all(&out).map_err(io_err(&out))?;
    let config_path = out.join("config.toml");
    std::fs::write(&config_path, cfg.to_toml()).map_err(io_err(&config_path))?;
    let batch = cfg.optim.batch_size;
    let accum = cfg.optim.accumulation_steps;
    let loader = Loader::new(
        data.train.clone(),
        data::recipe(&cfg.views),
        batch,
        cfg.run.seed,
    )
    .skip_bad_images(cfg.data.skip_bad_images);
    let spe = loader.steps_per_epoch();
    if spe == 0 {
        return Err(TrainError::Config {
            key: "optim.batch_size".into(),
            message: format!(
                "batch size {batch} is larger than the {} training images",
                data.train.len()
            ),
        });
    }
    let schedules = Schedules::new(cfg, spe);
    let total = schedules.lr.total_iters;
    let end = if cfg.run.max_steps > 0 {
        cfg.run.max_steps.min(total)
    } else {
        total
    };
    info!(
        version = env!("CARGO_PKG_VERSION"),
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

    let ad = device.clone().autodiff();
    let optim_device = device.clone();
    let model_cfg = cfg.model_config();
    let mut model = StudentTeacher::new(&model_cfg, &ad, cfg.run.seed);
    let mut lars = Lars::new(cfg.optim.momentum, cfg.optim.eta);
    let ckpt_path = out.join(CHECKPOINT);
    let mut start = 0;
    if let Some((path, ckpt)) = state::latest_checkpoint(&out) {
        let (restored, next) = state::restore(&ckpt, &path, model, &mut lars, cfg, &optim_device)?;
        model = restored;
        start = next;
        info!(step = start, path = %path.display(), "resumed");
    }

    let mut metrics = MetricsWriter::append(&out.join("metrics.jsonl"))?;
    let mut events = if cfg.monitor.tensorboard {
        Some(EventWriter::create(&out).map_err(io_err(&out))?)
    } else {
        None
    };
    let mut detector = CollapseDetector::new(&cfg.monitor);
    let mut collapsed = false;
    observer.event(&RunEvent::Start {
        start,
        end,
        steps_per_epoch: spe,
        batch,
    });
    let mut accumulator = GradientsAccumulator::new();
    let mut pending = 0usize; // micro-batches in the accumulator
    let loop_start = Instant::now();
    let mut window_start = Instant::now();
    let mut window_images = 0usize;
    let mut data_wait = 0.0f64;
    let mut last = None;
    let mut skipped = 0usize;
    let mut skip_streak = 0usize;
    let mut interrupted = false;
    let mut it = start;
    'epochs: while it < end {
        let epoch = it / spe;
        let epoch_start = Instant::now();
        let mut totals = EpochTotals::default();
        let mut batches = loader.prefetch(epoch as u64, it % spe);
        while it < end && it / spe == epoch {
            if stop.requested() && it.is_multiple_of(accum) {
                interrupted = true;
                break 'epochs;
            }
            let wait = Instant::now();
            let views = batches
                .next()
                .expect("prefetch yields every step of the epoch")?;
            data_wait += wait.elapsed().as_secs_f64();
            let views = views_on_device(views, &ad);
            let partition = Partition::random(
                cfg.model.out_dim,
                cfg.model.partition_size,
                &mut partition_rng(cfg.run.seed, it),
            );
            let scale = 1.0 / accum as f64;
            let log_now = (it + 1).is_multiple_of(cfg.run.log_every) || it + 1 == end;
            let (losses, grads, probe) =
                forward_backward_probed(&model, &views, &partition, scale, log_now);
            let sched = schedules.at(it);
            let boundary = (it + 1).is_multiple_of(accum);
            // NaN/inf guard: the loss terms, then every gradient.
            let non_finite = non_finite_term(&losses).or_else(|| {
                first_non_finite_gradient(&model.student, &grads)
                    .map(|p| format!("gradient of student.{p}"))
            });
            if let Some(term) = non_finite {
                let stop_err = |term: String| TrainError::NonFiniteLoss {
                    step: it,
                    term,
                    total: losses.total,
                    consistency: losses.consistency,
                    entropy: losses.entropy,
                };
                match cfg.monitor.nan_policy {
                    NanPolicy::Stop => {
                        error!(step = it, %term, "non-finite value: stopping");
                        return Err(stop_err(term));
                    }
                    NanPolicy::SkipStep => {
                        skipped += 1;
                        skip_streak += 1;
                        totals.skipped += 1;
                        warn!(step = it, %term, skipped, "non-finite value: step skipped");
                        observer.event(&RunEvent::Skipped {
                            step: it,
                            term: term.clone(),
                        });
                        if skip_streak > cfg.monitor.max_consecutive_skips {
                            return Err(stop_err(format!(
                                "{term} ({skip_streak} steps skipped in a row, more than \
                                 monitor.max_consecutive_skips)"
                            )));
                        }
                    }
                }
            } else {
                skip_streak = 0;
                totals.steps += 1;
                totals.loss += losses.total;
                totals.consistency += losses.consistency;
                totals.entropy += losses.entropy;
                if accum == 1 {
                    model = apply_update(model, &mut lars, grads, sched, cfg.optim.ema_order);
                } else {
                    accumulator.accumulate(&model.student, grads);
                    pending += 1;
                }
            }
            if accum > 1 && boundary && pending > 0 {
                let grads = accumulator.grads();
                pending = 0;
                model = apply_update(model, &mut lars, grads, sched, cfg.optim.ema_order);
            }
            window_images += batch;
            totals.images += batch;
            it += 1;
            let mut record = None;
            if log_now {
                let secs = window_start.elapsed().as_secs_f64();
                let diagnostics = probe.as_ref().map(|p| diagnose(p, losses.entropy));
                let mut collapse = false;
                if let Some(d) = &diagnostics {
                    let status = detector.check(it - 1, d);
                    collapse = status.collapsed;
                    if status.onset {
                        let rows = probe.as_ref().map_or(0, |p| p.student_views * p.batch);
                        let message = format!(
                            "possible collapse at step {}: {}; {}",
                            it - 1,
                            status.signals.join(", "),
                            likely_causes(rows, cfg.model.partition_size)
                        );
                        warn!("{message}");
                        observer.event(&RunEvent::Collapse {
                            step: it - 1,
                            message,
                        });
                    } else if collapsed && !collapse {
                        info!(step = it - 1, "collapse signals cleared");
                    }
                    collapsed = collapse;
                }
                let rec = StepRecord {
                    step: it - 1,
                    epoch,
                    loss: losses.total,
                    consistency: losses.consistency,
                    entropy: losses.entropy,
                    lr: sched.lr,
                    wd: sched.weight_decay,
                    momentum: sched.teacher_momentum,
                    img_per_s: window_images as f64 / secs.max(1e-9),
                    data_wait_s: data_wait,
                    skipped_steps: skipped,
                    diagnostics,
                    collapse,
                };
                debug!(
                    step = rec.step,
                    epoch,
                    loss = format_args!("{:.4}", rec.loss),
                    consistency = format_args!("{:.4}", rec.consistency),
                    entropy = format_args!("{:.4}", rec.entropy),
                    lr = format_args!("{:.4}", rec.lr),
                    momentum = format_args!("{:.5}", rec.momentum),
                    img_per_s = format_args!("{:.1}", rec.img_per_s),
                    "step"
                );
                metrics.write(&rec)?;
                if let Some(w) = events.as_mut() {
                    let path = w.path().to_path_buf();
                    w.add(rec.step, tensorboard_values(&rec, probe.as_ref()))
                        .map_err(io_err(&path))?;
                }
                record = Some(rec.clone());
                last = Some(rec);
                window_start = Instant::now();
                window_images = 0;
                data_wait = 0.0;
            }
            observer.event(&RunEvent::Step { done: it, record });
            let epoch_done = it.is_multiple_of(spe);
            let every = cfg.run.checkpoint_every;
            let periodic = every > 0 && it.is_multiple_of(every);
            if (epoch_done || periodic || it == end) && it.is_multiple_of(accum) {
                let ckpt = state::snapshot(&model, &lars, it, it / spe, cfg);
                write_checkpoint(&ckpt_path, &ckpt)?;
                let keep = cfg.run.keep_every_epochs;
                if epoch_done && keep > 0 && (it / spe).is_multiple_of(keep) {
                    let kept = out.join(format!("checkpoint-ep{:04}.safetensors", it / spe));
                    write_checkpoint(&kept, &ckpt)?;
                }
                debug!(step = it, epoch = it / spe, "checkpoint written");
                observer.event(&RunEvent::Checkpoint {
                    step: it,
                    interrupted: false,
                });
            } else if it == end {
                warn!(
                    step = it,
                    "run ended inside an accumulation window: no checkpoint written"
                );
            }
            let eval_every = cfg.run.eval_every_epochs;
            if cfg.run.eval
                && eval_every > 0
                && epoch_done
                && it != end
                && it.is_multiple_of(accum)
                && (it / spe).is_multiple_of(eval_every)
            {
                if let Some(results) = knn_teacher(cfg, &data, &model, device)? {
                    log_knn_point(&out, it / spe, it, &results)?;
                }
            }
        }
        if totals.steps + totals.skipped > 0 {
            let wall = epoch_start.elapsed().as_secs_f64();
            let denom = totals.steps.max(1) as f64;
            let summary = EpochSummary {
                epoch,
                step: it,
                steps: totals.steps + totals.skipped,
                mean_loss: totals.loss / denom,
                mean_consistency: totals.consistency / denom,
                mean_entropy: totals.entropy / denom,
                img_per_s: totals.images as f64 / wall.max(1e-9),
                wall_s: wall,
                skipped_steps: totals.skipped,
                collapse: collapsed,
            };
            info!(
                epoch,
                step = it,
                loss = format_args!("{:.4}", summary.mean_loss),
                consistency = format_args!("{:.4}", summary.mean_consistency),
                entropy = format_args!("{:.4}", summary.mean_entropy),
                img_per_s = format_args!("{:.1}", summary.img_per_s),
                wall_s = format_args!("{:.1}", wall),
                skipped = totals.skipped,
                collapse = collapsed,
                "epoch done"
            );
            observer.event(&RunEvent::Epoch(summary));
        }
    }
    let wall = loop_start.elapsed().as_secs_f64();
    let steps = it;
    let steps_this_run = steps.saturating_sub(start);
    if interrupted {
        let ckpt = state::snapshot(&model, &lars, it, it / spe, cfg);
        write_checkpoint(&ckpt_path, &ckpt)?;
        warn!(step = it, path = %ckpt_path.display(), "stop requested: checkpoint written; run the same command again to resume");
        observer.event(&RunEvent::Checkpoint {
            step: it,
            interrupted: true,
        });
    }
    info!(
        skipped_bad_images = loader.skipped_images(),
        "training data read"
    );

    let knn = if cfg.run.eval && !interrupted {
        evaluate(cfg, &data, &model, device)?
    } else {
        None
    };
    if let Some(knn) = knn.as_ref().filter(|_| cfg.run.eval_every_epochs > 0) {
        log_knn_point(&out, steps / spe, steps, &knn.trained)?;
    }
    let summary = Summary {
        out_dir: out.clone(),
        steps,
        steps_this_run,
        steps_per_epoch: spe,
        wall_s: wall,
        img_per_s: (steps_this_run * batch) as f64 / wall.max(1e-9),
        interrupted,
        skipped_steps: skipped,
        collapse: collapsed,
        last,
        knn,
        config: cfg.clone(),
    };
    let summary_path = out.join("summary.json");
    let text = serde_json::to_string_pretty(&summary).expect("summary serialises");
    std::fs::write(&summary_path, text).map_err(io_err(&summary_path))?;
    Ok(summary)
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

/// The scalars of a record (same names as `metrics.jsonl`, grouped by prefix) and the
/// argmax histograms of the first block.
fn tensorboard_values(r: &StepRecord, probe: Option<&StepProbe>) -> Vec<(String, Value)> {
    let mut v: Vec<(String, Value)> = [
        ("loss/total", r.loss),
        ("loss/consistency", r.consistency),
        ("loss/entropy", r.entropy),
        ("schedule/lr", r.lr),
        ("schedule/wd", r.wd),
        ("schedule/momentum", r.momentum),
        ("speed/img_per_s", r.img_per_s),
        ("speed/data_wait_s", r.data_wait_s),
        ("health/skipped_steps", r.skipped_steps as f64),
        ("health/collapse", r.collapse as u8 as f64),
    ]
    .into_iter()
    .map(|(t, x)| (t.to_string(), Value::Scalar(x as f32)))
    .collect();
    if let Some(d) = &r.diagnostics {
        for (t, x) in [
            ("health/entropy_ratio", d.entropy_ratio),
            ("health/prototypes_used", d.prototypes_used),
            ("health/prototypes_used_frac", d.prototypes_used_frac),
            ("health/prototype_coverage", d.prototype_coverage),
            ("health/bottleneck_std", d.bottleneck_std),
            ("health/bottleneck_std_ratio", d.bottleneck_std_ratio),
            ("health/agreement_top1", d.agreement_top1),
            ("health/agreement_top5", d.agreement_top5),
        ] {
            v.push((t.to_string(), Value::Scalar(x as f32)));
        }
    }
    if let Some(p) = probe {
        let s_rows = p.student_views * p.batch;
        let t_rows = p.teacher_views * p.batch;
        for (tag, first) in [
            ("assignments/student_block0", &p.student_argmax[..s_rows]),
            ("assignments/teacher_block0", &p.teacher_argmax[..t_rows]),
        ] {
            let counts = argmax_histogram(first, p.block_size);
            v.push((tag.to_string(), Value::integer_histogram(&counts)));
        }
    }
    v
}

/// k-NN of the trained teacher backbone and of the initial backbone (spec §6).
/// File of the k-NN points taken during training (`run.eval_every_epochs`).
pub const KNN_LOG: &str = "knn.jsonl";

/// Weighted k-NN of the teacher backbone alone (no random-init baseline), for the points
/// taken during training; `None` without labelled evaluation data.
fn knn_teacher(
    cfg: &Config,
    data: &RunData,
    model: &StudentTeacher,
    device: &Device,
) -> Result<Option<Vec<KnnResult>>, TrainError> {
    let (Some(bank), Some(test)) = (&data.eval_train, &data.eval_test) else {
        return Ok(None);
    };
    let sizes = data::eval_sizes(cfg);
    let backbone = model.teacher.backbone.valid();
    let results = knn_eval(
        &backbone,
        bank.as_ref(),
        test.as_ref(),
        sizes,
        cfg.data.eval_max_images,
        device,
    )?;
    Ok(Some(results))
}

/// Appends one line `{epoch, step, k, top1, top5}` (k = 20, or the largest k) to
/// [`KNN_LOG`] in `out`.
fn log_knn_point(
    out: &Path,
    epoch: usize,
    step: usize,
    results: &[KnnResult],
) -> Result<(), TrainError> {
    use std::io::Write;
    let Some(r) = results
        .iter()
        .find(|x| x.k == 20)
        .or_else(|| results.last())
    else {
        return Ok(());
    };
    info!(epoch, step, k = r.k, top1 = r.top1, "k-NN during training");
    let path = out.join(KNN_LOG);
    let line = serde_json::json!({
        "epoch": epoch, "step": step, "k": r.k, "top1": r.top1, "top5": r.top5,
    });
    let io = |source| TrainError::Io {
        path: path.clone(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io)?;
    writeln!(file, "{line}").map_err(io)
}

fn evaluate(
    cfg: &Config,
    data: &RunData,
    model: &StudentTeacher,
    device: &Device,
) -> Result<Option<KnnSummary>, TrainError> {
    let (Some(bank), Some(test)) = (&data.eval_train, &data.eval_test) else {
        info!("no labelled evaluation data: k-NN skipped");
        return Ok(None);
    };
    let sizes = data::eval_sizes(cfg);
    let max = cfg.data.eval_max_images;
    let knn = |backbone: &carp_core::resnet::ResNet| {
        knn_eval(backbone, bank.as_ref(), test.as_ref(), sizes, max, device)
    };
    let trained = knn(&model.teacher.backbone.valid())?;
    let init = knn(&cfg
        .model_config()
        .backbone
        .init(device, cfg.run.seed)
        .valid())?;
    let pick = |r: &[KnnResult]| r.iter().find(|x| x.k == 20).or_else(|| r.last()).cloned();
    let (Some(t), Some(i)) = (pick(&trained), pick(&init)) else {
        return Ok(None);
    };
    info!(k = t.k, trained_top1 = t.top1, init_top1 = i.top1, "k-NN");
    Ok(Some(KnnSummary {
        trained_top1: t.top1,
        init_top1: i.top1,
        k: t.k,
        trained,
        init,
    }))
}
