//! `carp pretrain`: resolve the configuration, run `carp_train::pretrain`, print the result.

use crate::flags;
use crate::progress::Progress;
use anyhow::Context;
use carp_train::config::{Config, ValidConfig};
use carp_train::device::parse_device;
use carp_train::dist::World;
use carp_train::signals::StopFlag;
use std::path::PathBuf;
use std::process::ExitCode;

/// Flags of `carp pretrain`. Each one sets the configuration key [`KEYS`] gives; the official
/// script's names are accepted as aliases.
#[derive(clap::Args, Debug, Default, serde::Serialize)]
pub struct Args {
    /// Built-in preset the other settings start from: tiny (default), cifar, imagenet.
    #[arg(long, default_value = "tiny")]
    #[serde(skip)]
    pub preset: String,
    /// TOML file layered over the preset (same keys as the run's config.toml).
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// CPU threads (default: all cores).
    #[arg(long)]
    #[serde(skip)]
    pub threads: Option<usize>,
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
    /// Under MPI: BatchNorm statistics over all processes (true, the release's
    /// SyncBatchNorm) or per process (false).
    #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set)]
    #[serde(skip)]
    pub sync_bn: Option<bool>,
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
    /// Float type of the forward and backward passes: f32, bf16, or f16 with dynamic loss
    /// scaling; weights, optimiser state and the loss stay f32. bf16/f16 save memory and
    /// time on GPUs with half-precision units; on a CPU they are slower than f32.
    #[arg(long, value_enum)]
    pub precision: Option<PrecisionArg>,
    /// The release's switch: `--use_fp16 true` means `--precision f16`, `false` f32.
    #[arg(long = "use_fp16", hide = true, conflicts_with = "precision", value_parser = bool_flag)]
    #[serde(serialize_with = "use_fp16_precision")]
    pub use_fp16: Option<bool>,
}

/// The configuration key each flag sets: `(field, key)`, the flag being the field in
/// kebab case. `!key` marks a switch that sets a boolean key to false.
pub const KEYS: &[(&str, &str)] = &[
    ("out", "run.out"),
    ("data", "data.train"),
    ("eval_data", "data.eval"),
    ("eval_train_data", "data.eval_train"),
    ("arch", "model.arch"),
    ("base_width", "model.base_width"),
    ("out_dim", "model.out_dim"),
    ("partition_size", "model.partition_size"),
    ("momentum_teacher", "optim.momentum_teacher"),
    ("local_views", "views.local_views"),
    ("global_scale", "views.global_scale"),
    ("local_scale", "views.local_scale"),
    ("global_size", "views.global_size"),
    ("local_size", "views.local_size"),
    ("lr", "optim.base_lr"),
    ("min_lr", "optim.min_lr"),
    ("warmup_epochs", "optim.warmup_epochs"),
    ("weight_decay", "optim.weight_decay"),
    ("weight_decay_end", "optim.weight_decay_end"),
    ("epochs", "run.epochs"),
    ("batch_size", "optim.batch_size"),
    ("accumulation_steps", "optim.accumulation_steps"),
    ("sync_bn", "optim.sync_bn"),
    ("max_steps", "run.max_steps"),
    ("schedule_steps", "run.schedule_steps"),
    ("seed", "run.seed"),
    ("device", "run.device"),
    ("log_every", "run.log_every"),
    ("keep_every_epochs", "run.keep_every_epochs"),
    ("eval_every_epochs", "run.eval_every_epochs"),
    ("no_eval", "!run.eval"),
    ("skip_bad_images", "data.skip_bad_images"),
    ("nan_policy", "monitor.nan_policy"),
    ("checkpoint_every", "run.checkpoint_every"),
    ("no_tensorboard", "!monitor.tensorboard"),
    ("precision", "optim.precision"),
    ("use_fp16", "optim.precision"),
];

/// `--precision` values.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PrecisionArg {
    /// f32 everywhere.
    F32,
    /// bfloat16 forward and backward.
    Bf16,
    /// IEEE half forward and backward, with dynamic loss scaling.
    F16,
}

/// The release's `utils.bool_flag`: on/true/1 or off/false/0.
fn bool_flag(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "on" | "true" | "1" => Ok(true),
        "off" | "false" | "0" => Ok(false),
        _ => Err(format!("expected true/false, on/off or 1/0, got `{s}`")),
    }
}

/// `--use_fp16 true|false` as the `optim.precision` value it stands for.
fn use_fp16_precision<S: serde::Serializer>(v: &Option<bool>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(true) => s.serialize_some("f16"),
        Some(false) => s.serialize_some("f32"),
        None => s.serialize_none(),
    }
}

/// `--nan-policy` values.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NanPolicyArg {
    /// Stop with an error naming the step and the term.
    Stop,
    /// Skip the step and go on.
    SkipStep,
}

impl Args {
    /// The `(key, value)` pairs of the flags given on the command line, through [`KEYS`].
    pub fn overrides(&self) -> Vec<(&'static str, toml::Value)> {
        let given = toml::Table::try_from(self).expect("flags serialise");
        // `--sync-bn false` is a value, not an unset switch: added here, not filtered below.
        let valued = self
            .sync_bn
            .map(|v| ("sync_bn".to_string(), toml::Value::Boolean(v)));
        given
            .into_iter()
            // An absent option serialises to nothing; an unset switch to `false`.
            .filter(|(_, v)| *v != toml::Value::Boolean(false))
            .chain(valued)
            .map(|(field, value)| {
                let (_, key) = KEYS
                    .iter()
                    .find(|(f, _)| *f == field)
                    .unwrap_or_else(|| panic!("flag field `{field}` has no entry in KEYS"));
                match key.strip_prefix('!') {
                    Some(key) => (key, toml::Value::Boolean(false)),
                    None => (*key, value),
                }
            })
            .collect()
    }
}

/// Preset, then `--config`, then flags; validated, with the run directory fixed.
pub fn resolve(args: Args) -> anyhow::Result<ValidConfig> {
    let mut cfg = Config::preset(&args.preset)?;
    if let Some(path) = &args.config {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        cfg = cfg.merge_toml(&text, &path.display().to_string())?;
    }
    let cfg = cfg.with_values(&args.overrides(), "command-line flags")?;
    cfg.resolve().map_err(flags::explain)
}

/// Runs `carp pretrain`, reporting through `progress`. SIGINT/SIGTERM stop after the current
/// step with a checkpoint (exit 0); a second signal exits at once.
pub fn run(args: Args, progress: Progress) -> anyhow::Result<ExitCode> {
    // MPI first: a launcher-started process that cannot join its job must not train alone.
    let world = World::init().map_err(flags::explain)?;
    if world.size() == 1 {
        return train(args, progress, &world);
    }
    let rank = world.rank();
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        eprintln!("rank {rank}: panicked; aborting the MPI job");
        carp_train::dist::abort_job(70)
    }));
    // Rank 0 reports progress; the others print only warnings and errors (main's filter).
    let progress = if rank == 0 {
        progress
    } else {
        Progress::silent()
    };
    match train(args, progress, &world) {
        Ok(code) => Ok(code),
        Err(err) => {
            eprintln!("rank {rank}: error: {err:#}");
            eprintln!("rank {rank}: aborting the MPI job");
            world.abort(2)
        }
    }
}

/// [`run`] as one process of `world`.
fn train(args: Args, mut progress: Progress, world: &World) -> anyhow::Result<ExitCode> {
    if let Some(n) = args.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .context("setting the thread count")?;
    }
    let cfg = resolve(args)?;
    let device = parse_device(&cfg.run.device).map_err(flags::explain)?;
    let stop = StopFlag::new();
    stop.install_signal_handlers()
        .context("installing the SIGINT/SIGTERM handlers")?;
    let data = carp_train::data::open(&cfg.data, cfg.run.seed).map_err(flags::explain)?;
    let summary = carp_train::pretrain::pretrain_resolved(
        &cfg,
        &device,
        data,
        &mut progress,
        &stop,
        world.group(),
    )
    .map_err(flags::explain)?;
    if world.rank() != 0 {
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(stats) = world.comm_stats() {
        let (calls, bytes, secs) = stats.totals();
        let steps = summary.steps_this_run.max(1) as f64;
        println!(
            "all-reduce (rank 0): {calls} calls, {:.2} MB per step, {secs:.2} s ({:.1} % of the \
             training loop)",
            bytes as f64 / steps / 1e6,
            100.0 * secs / summary.wall_s.max(1e-9)
        );
    }
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
    if summary.overflow_steps > 0 {
        println!(
            "f16 overflow steps (optimiser step skipped, loss scale halved): {}",
            summary.overflow_steps
        );
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

#[cfg(test)]
mod tests {
    use super::*;
    use carp_core::precision::Precision;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    /// Every flag has its key in [`KEYS`] (the table is the only mapping), and each key is
    /// one the configuration has.
    #[test]
    fn every_flag_sets_its_key() {
        let cli = Cli::parse_from([
            "carp",
            "--out",
            "o",
            "--data",
            "d",
            "--eval-data",
            "e",
            "--eval-train-data",
            "t",
            "--arch",
            "resnet18",
            "--base-width",
            "8",
            "--out-dim",
            "128",
            "--partition-size",
            "16",
            "--momentum-teacher",
            "0.9",
            "--local-views",
            "2",
            "--global-scale",
            "0.3",
            "1.0",
            "--local-scale",
            "0.1",
            "0.3",
            "--global-size",
            "16",
            "--local-size",
            "8",
            "--lr",
            "0.5",
            "--min-lr",
            "0.001",
            "--warmup-epochs",
            "1",
            "--weight-decay",
            "0.1",
            "--weight-decay-end",
            "0.2",
            "--epochs",
            "3",
            "--batch-size",
            "16",
            "--accumulation-steps",
            "2",
            "--sync-bn",
            "false",
            "--max-steps",
            "5",
            "--schedule-steps",
            "9",
            "--seed",
            "4",
            "--device",
            "cpu",
            "--log-every",
            "2",
            "--keep-every-epochs",
            "1",
            "--eval-every-epochs",
            "1",
            "--no-eval",
            "--skip-bad-images",
            "--nan-policy",
            "skip-step",
            "--checkpoint-every",
            "7",
            "--no-tensorboard",
            "--precision",
            "bf16",
        ]);
        let values = cli.args.overrides();
        // All but `--use_fp16`, which conflicts with `--precision` (tested below).
        assert_eq!(values.len(), KEYS.len() - 1);
        let cfg = Config::default().with_values(&values, "flags").unwrap();
        assert_eq!(cfg.optim.base_lr, 0.5);
        assert_eq!(cfg.views.global_scale, [0.3, 1.0]);
        assert!(!cfg.run.eval && !cfg.monitor.tensorboard && cfg.data.skip_bad_images);
        assert!(!cfg.optim.sync_bn);
        assert_eq!(
            cfg.monitor.nan_policy,
            carp_train::config::NanPolicy::SkipStep
        );
        assert_eq!((cfg.run.out.as_str(), cfg.model.partition_size), ("o", 16));
        assert_eq!(cfg.optim.precision, Precision::Bf16);
        // Nothing given, nothing set.
        assert!(Cli::parse_from(["carp"]).args.overrides().is_empty());
    }

    /// The release's `--use_fp16 true|false` sets `optim.precision` to f16 or f32, and
    /// cannot be combined with `--precision`.
    #[test]
    fn use_fp16_maps_to_the_precision() {
        for (value, want) in [
            ("true", Precision::F16),
            ("False", Precision::F32),
            ("1", Precision::F16),
        ] {
            let cli = Cli::parse_from(["carp", "--use_fp16", value]);
            let cfg = Config::default()
                .with_values(&cli.args.overrides(), "flags")
                .unwrap();
            assert_eq!(cfg.optim.precision, want, "--use_fp16 {value}");
        }
        assert!(Cli::try_parse_from(["carp", "--use_fp16", "maybe"]).is_err());
        assert!(Cli::try_parse_from(["carp", "--use_fp16", "true", "--precision", "f32"]).is_err());
        assert_eq!(
            crate::flags::flag_of("optim.precision").as_deref(),
            Some("--precision")
        );
    }
}
