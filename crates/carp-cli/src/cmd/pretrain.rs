//! `carp pretrain`: resolve the configuration, run `carp_train::pretrain`, print the result.

use crate::progress::Progress;
use anyhow::Context;
use carp_train::config::{Config, NanPolicy};
use carp_train::device::parse_device;
use carp_train::signals::StopFlag;
use std::path::PathBuf;
use std::process::ExitCode;

/// Flags of `carp pretrain`. The official script's names are accepted as aliases.
#[derive(clap::Args, Debug, Default)]
pub struct Args {
    /// Built-in preset the other settings start from: tiny (default), cifar, imagenet.
    #[arg(long, default_value = "tiny")]
    pub preset: String,
    /// TOML file layered over the preset (same keys as the run's config.toml).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Run directory (default runs/run-<unix time>); an existing checkpoint there is resumed.
    #[arg(long, alias = "output_dir")]
    pub out: Option<String>,
    /// Training images: `synthetic`, an image folder (PATH or `imagefolder:PATH`),
    /// `cifar10:PATH`, `cifar100:PATH` (binary train split), `stl10:PATH` (train +
    /// unlabeled) or `filelist:PATH` (one image path per line, optional label).
    #[arg(long, alias = "data_path")]
    pub data: Option<String>,
    /// Labelled held-out images for the k-NN evaluation at the end.
    #[arg(long)]
    pub eval_data: Option<String>,
    /// Labelled images used as the k-NN memory bank (default: the training folder).
    #[arg(long)]
    pub eval_train_data: Option<String>,
    /// Backbone: resnet18, resnet34, resnet50.
    #[arg(long)]
    pub arch: Option<String>,
    /// Width of the first ResNet stage (64 = torchvision); smaller is faster on a CPU.
    #[arg(long)]
    pub base_width: Option<usize>,
    /// Number of prototypes K.
    #[arg(long, alias = "out_dim")]
    pub out_dim: Option<usize>,
    /// Partition (block) size N; K / N blocks per step.
    #[arg(long, alias = "partition_size")]
    pub partition_size: Option<usize>,
    /// Teacher EMA momentum at the start (rises to 1 by a cosine). Raise it for small batches.
    #[arg(long, alias = "momentum_teacher")]
    pub momentum_teacher: Option<f64>,
    /// Number of local crops M (0 disables multi-crop).
    #[arg(long, alias = "local_crops_number")]
    pub local_views: Option<usize>,
    /// Area range of the global crops, e.g. `--global-scale 0.2 1.0`.
    #[arg(long, alias = "global_crops_scale", num_args = 2)]
    pub global_scale: Option<Vec<f32>>,
    /// Area range of the local crops, e.g. `--local-scale 0.05 0.2`.
    #[arg(long, alias = "local_crops_scale", num_args = 2)]
    pub local_scale: Option<Vec<f32>>,
    /// Side of the global crops in pixels.
    #[arg(long)]
    pub global_size: Option<u32>,
    /// Side of the local crops in pixels.
    #[arg(long)]
    pub local_size: Option<u32>,
    /// Base learning rate per 256 images (scaled linearly to the effective batch).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Final learning rate of the cosine schedule.
    #[arg(long, alias = "min_lr")]
    pub min_lr: Option<f64>,
    /// Linear warm-up epochs.
    #[arg(long, alias = "warmup_epochs")]
    pub warmup_epochs: Option<f64>,
    /// Weight decay at the start of the cosine schedule.
    #[arg(long, alias = "weight_decay")]
    pub weight_decay: Option<f64>,
    /// Weight decay at the end of the cosine schedule.
    #[arg(long, alias = "weight_decay_end")]
    pub weight_decay_end: Option<f64>,
    /// Epochs; the schedules span them even when --max-steps stops the run earlier.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Images per step per device.
    #[arg(long, alias = "batch_size_per_gpu")]
    pub batch_size: Option<usize>,
    /// Micro-batches accumulated per optimiser step.
    #[arg(long)]
    pub accumulation_steps: Option<usize>,
    /// Stop after this many steps (smoke runs, budgets).
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Lay the schedules out over this many steps instead of the epochs.
    #[arg(long)]
    pub schedule_steps: Option<usize>,
    /// Seed of every random choice.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Device: cpu, wgpu[:N|:cpu], vulkan[:N|:cpu], cuda[:N] (GPU ones need their cargo
    /// feature; `carp devices` lists them).
    #[arg(long)]
    pub device: Option<String>,
    /// Log every N steps.
    #[arg(long)]
    pub log_every: Option<usize>,
    /// Keep a numbered checkpoint every N epochs.
    #[arg(long, alias = "saveckp_freq")]
    pub keep_every_epochs: Option<usize>,
    /// Also k-NN evaluate the teacher every N epochs during training (`knn.jsonl`, plotted by
    /// `carp report`); needs --eval-data or the synthetic default.
    #[arg(long)]
    pub eval_every_epochs: Option<usize>,
    /// Skip the k-NN evaluation at the end.
    #[arg(long)]
    pub no_eval: bool,
    /// Skip training images that cannot be read or decoded (counted in the log) instead
    /// of stopping; use on large scraped folders with a few broken files.
    #[arg(long)]
    pub skip_bad_images: bool,
    /// CPU threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// On a NaN/inf loss or gradient: `stop` (exit non-zero, last checkpoint kept) or
    /// `skip-step` (drop the step, count it in the log). Skip only to get past rare spikes.
    #[arg(long, value_enum)]
    pub nan_policy: Option<NanPolicyArg>,
    /// Also checkpoint every N steps, besides each epoch end (long epochs, preemptible jobs).
    #[arg(long)]
    pub checkpoint_every: Option<usize>,
    /// Do not write TensorBoard event files.
    #[arg(long)]
    pub no_tensorboard: bool,
}

/// `--nan-policy` values.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum NanPolicyArg {
    /// Stop with an error naming the step and the term.
    Stop,
    /// Skip the step and go on.
    SkipStep,
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

fn pair(flag: &str, v: Option<Vec<f32>>) -> anyhow::Result<Option<[f32; 2]>> {
    v.map(|v| {
        <[f32; 2]>::try_from(v.as_slice()).with_context(|| format!("{flag} takes two numbers"))
    })
    .transpose()
}

/// Preset, then `--config`, then flags.
pub fn resolve(args: Args) -> anyhow::Result<Config> {
    let mut cfg = Config::preset(&args.preset)?;
    if let Some(path) = &args.config {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        cfg = cfg.merge_toml(&text, &path.display().to_string())?;
    }
    set(&mut cfg.run.out, args.out);
    set(&mut cfg.data.train, args.data);
    set(&mut cfg.data.eval, args.eval_data);
    set(&mut cfg.data.eval_train, args.eval_train_data);
    set(&mut cfg.model.arch, args.arch);
    set(&mut cfg.model.base_width, args.base_width);
    set(&mut cfg.model.out_dim, args.out_dim);
    set(&mut cfg.model.partition_size, args.partition_size);
    set(&mut cfg.optim.momentum_teacher, args.momentum_teacher);
    set(&mut cfg.views.local_views, args.local_views);
    set(
        &mut cfg.views.global_scale,
        pair("--global-scale", args.global_scale)?,
    );
    set(
        &mut cfg.views.local_scale,
        pair("--local-scale", args.local_scale)?,
    );
    set(&mut cfg.views.global_size, args.global_size);
    set(&mut cfg.views.local_size, args.local_size);
    set(&mut cfg.optim.base_lr, args.lr);
    set(&mut cfg.optim.min_lr, args.min_lr);
    set(&mut cfg.optim.warmup_epochs, args.warmup_epochs);
    set(&mut cfg.optim.weight_decay, args.weight_decay);
    set(&mut cfg.optim.weight_decay_end, args.weight_decay_end);
    set(&mut cfg.run.epochs, args.epochs);
    set(&mut cfg.optim.batch_size, args.batch_size);
    set(&mut cfg.optim.accumulation_steps, args.accumulation_steps);
    set(&mut cfg.run.max_steps, args.max_steps);
    set(&mut cfg.run.schedule_steps, args.schedule_steps);
    set(&mut cfg.run.seed, args.seed);
    set(&mut cfg.run.device, args.device);
    set(&mut cfg.run.log_every, args.log_every);
    set(&mut cfg.run.keep_every_epochs, args.keep_every_epochs);
    set(&mut cfg.run.eval_every_epochs, args.eval_every_epochs);
    set(&mut cfg.run.checkpoint_every, args.checkpoint_every);
    if let Some(p) = args.nan_policy {
        cfg.monitor.nan_policy = match p {
            NanPolicyArg::Stop => NanPolicy::Stop,
            NanPolicyArg::SkipStep => NanPolicy::SkipStep,
        };
    }
    if args.no_tensorboard {
        cfg.monitor.tensorboard = false;
    }
    if args.no_eval {
        cfg.run.eval = false;
    }
    if args.skip_bad_images {
        cfg.data.skip_bad_images = true;
    }
    if cfg.run.out.is_empty() {
        cfg.run.out = cfg.out_dir().display().to_string();
    }
    cfg.validate()?;
    cfg.check_run_dir()?;
    Ok(cfg)
}

/// Runs `carp pretrain`, reporting through `progress`. SIGINT/SIGTERM stop after the current
/// step with a checkpoint (exit 0); a second signal exits at once.
pub fn run(args: Args, mut progress: Progress) -> anyhow::Result<ExitCode> {
    if let Some(n) = args.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .context("setting the thread count")?;
    }
    let cfg = resolve(args)?;
    let device = parse_device(&cfg.run.device)?;
    let stop = StopFlag::new();
    stop.install_signal_handlers()
        .context("installing the SIGINT/SIGTERM handlers")?;
    let data = carp_train::data::open(&cfg.data, cfg.run.seed)?;
    let summary =
        carp_train::pretrain::pretrain_observed(&cfg, &device, data, &mut progress, &stop)?;
    drop(progress);
    if summary.interrupted {
        println!(
            "interrupted at step {}: checkpoint written; run the same command to resume ({})",
            summary.steps,
            summary.out_dir.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "done: {} steps in {:.1} s ({:.1} img/s); run directory {}",
        summary.steps_this_run,
        summary.wall_s,
        summary.img_per_s,
        summary.out_dir.display()
    );
    if let Some(last) = &summary.last {
        println!(
            "last step: loss {:.4} (consistency {:.4}, entropy {:.4})",
            last.loss, last.consistency, last.entropy
        );
    }
    if summary.skipped_steps > 0 {
        println!("skipped steps (non-finite): {}", summary.skipped_steps);
    }
    if summary.collapse {
        println!("warning: the collapse detector flagged this run (see the log and README, \"Watching a run\")");
    }
    if let Some(knn) = &summary.knn {
        println!(
            "k-NN top-1 (k={}, teacher backbone): trained {:.2}%  vs  random init {:.2}%",
            knn.k, knn.trained_top1, knn.init_top1
        );
    }
    Ok(ExitCode::SUCCESS)
}
