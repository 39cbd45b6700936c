//! The pretraining run: run directory, loop, checkpoints, evaluation, summary.

use crate::config::Config;
use crate::data::{self, RunData};
use crate::error::TrainError;
use crate::eval::knn_eval;
use crate::metrics::{MetricsWriter, StepRecord};
use crate::state;
use burn::module::Module;
use burn::optim::GradientsAccumulator;
use burn::tensor::{Device, Tensor, TensorData};
use carp_core::lars::Lars;
use carp_core::model::StudentTeacher;
use carp_core::partition::Partition;
use carp_core::schedule::{scaled_lr, Schedule};
use carp_core::step::{apply_update, forward_backward, StepSchedule, StepViews};
use carp_data::{Loader, ViewBatch};
use carp_eval::KnnResult;
use carp_io::{read_checkpoint, write_checkpoint};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tracing::{info, warn};

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
    /// Loss terms of the last step.
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
/// The run directory gets `config.toml`, `metrics.jsonl`, `checkpoint.safetensors` (every
/// epoch and at the end, atomically) and `summary.json`. If the directory already holds a
/// checkpoint, training continues from it exactly.
pub fn pretrain(cfg: &Config, device: &Device) -> Result<Summary, TrainError> {
    cfg.validate()?;
    let data = data::open(&cfg.data, cfg.run.seed)?;
    pretrain_with(cfg, device, data)
}

/// [`pretrain`] on data opened by the caller.
pub fn pretrain_with(cfg: &Config, device: &Device, data: RunData) -> Result<Summary, TrainError> {
    cfg.validate()?;
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

    let ad = device.clone().autodiff();
    let optim_device = device.clone();
    let model_cfg = cfg.model_config();
    let mut model = StudentTeacher::new(&model_cfg, &ad, cfg.run.seed);
    let mut lars = Lars::new(cfg.optim.momentum, cfg.optim.eta);
    let ckpt_path = out.join(CHECKPOINT);
    let mut start = 0;
    if ckpt_path.exists() {
        let ckpt = read_checkpoint(&ckpt_path)?;
        let (restored, next) =
            state::restore(&ckpt, &ckpt_path, model, &mut lars, cfg, &optim_device)?;
        model = restored;
        start = next;
        info!(step = start, path = %ckpt_path.display(), "resumed");
    }

    let mut metrics = MetricsWriter::append(&out.join("metrics.jsonl"))?;
    let mut accumulator = GradientsAccumulator::new();
    let loop_start = Instant::now();
    let mut window_start = Instant::now();
    let mut window_images = 0usize;
    let mut data_wait = 0.0f64;
    let mut last = None;
    let mut it = start;
    while it < end {
        let epoch = it / spe;
        let mut batches = loader.prefetch(epoch as u64, it % spe);
        while it < end && it / spe == epoch {
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
            let (losses, grads) = forward_backward(&model, &views, &partition, scale);
            if !losses.is_finite() {
                return Err(TrainError::NonFiniteLoss {
                    step: it,
                    total: losses.total,
                    consistency: losses.consistency,
                    entropy: losses.entropy,
                });
            }
            let sched = schedules.at(it);
            let boundary = (it + 1).is_multiple_of(accum);
            if accum == 1 {
                model = apply_update(model, &mut lars, grads, sched, cfg.optim.ema_order);
            } else {
                accumulator.accumulate(&model.student, grads);
                if boundary {
                    let grads = accumulator.grads();
                    model = apply_update(model, &mut lars, grads, sched, cfg.optim.ema_order);
                }
            }
            window_images += batch;
            it += 1;
            if it.is_multiple_of(cfg.run.log_every) || it == end {
                let secs = window_start.elapsed().as_secs_f64();
                let record = StepRecord {
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
                };
                info!(
                    step = record.step,
                    epoch,
                    loss = format_args!("{:.4}", record.loss),
                    consistency = format_args!("{:.4}", record.consistency),
                    entropy = format_args!("{:.4}", record.entropy),
                    lr = format_args!("{:.4}", record.lr),
                    momentum = format_args!("{:.5}", record.momentum),
                    img_per_s = format_args!("{:.1}", record.img_per_s),
                    "step"
                );
                metrics.write(&record)?;
                last = Some(record);
                window_start = Instant::now();
                window_images = 0;
                data_wait = 0.0;
            }
            let epoch_done = it.is_multiple_of(spe);
            if (epoch_done || it == end) && it.is_multiple_of(accum) {
                let ckpt = state::snapshot(&model, &lars, it, it / spe, cfg);
                write_checkpoint(&ckpt_path, &ckpt)?;
                let keep = cfg.run.keep_every_epochs;
                if epoch_done && keep > 0 && (it / spe).is_multiple_of(keep) {
                    let kept = out.join(format!("checkpoint-ep{:04}.safetensors", it / spe));
                    std::fs::copy(&ckpt_path, &kept).map_err(io_err(&kept))?;
                }
                info!(step = it, epoch = it / spe, "checkpoint written");
            } else if it == end {
                warn!(
                    step = it,
                    "run ended inside an accumulation window: no checkpoint written"
                );
            }
        }
    }
    let wall = loop_start.elapsed().as_secs_f64();
    let steps_this_run = end.saturating_sub(start);
    info!(
        skipped_bad_images = loader.skipped_images(),
        "training data read"
    );

    let knn = if cfg.run.eval {
        evaluate(cfg, &data, &model, device)?
    } else {
        None
    };
    let summary = Summary {
        out_dir: out.clone(),
        steps: end,
        steps_this_run,
        steps_per_epoch: spe,
        wall_s: wall,
        img_per_s: (steps_this_run * batch) as f64 / wall.max(1e-9),
        last,
        knn,
        config: cfg.clone(),
    };
    let summary_path = out.join("summary.json");
    let text = serde_json::to_string_pretty(&summary).expect("summary serialises");
    std::fs::write(&summary_path, text).map_err(io_err(&summary_path))?;
    Ok(summary)
}

/// k-NN of the trained teacher backbone and of the initial backbone (spec §6).
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
