//! `carp embed`: backbone features of data sets, written as `.npy` and `.safetensors`.
//!
//! Also home of the flags every evaluation command shares: which backbone ([`BackboneArgs`]) and
//! how images become features ([`TransformArgs`]).

use anyhow::Context;
use burn::tensor::Device;
use carp_core::resnet::{ResNet, ResNetConfig};
use carp_train::device::parse_device;
use carp_train::embed::{embed, open_eval_data, write_embedding, EmbedOptions, Embedding};
use carp_train::weights::{build_backbone, load_backbone, parse_arch, LoadOptions};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Which backbone to evaluate: a checkpoint's, or a random initialisation as a baseline.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct BackboneArgs {
    /// Checkpoint to read the backbone from (carp's own; PyTorch ones with --format).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Checkpoint format: carp-native (default) or a PyTorch format (needs the importer).
    #[arg(long)]
    pub format: Option<String>,
    /// Network inside the checkpoint: teacher (default) or student.
    #[arg(long)]
    pub key: Option<String>,
    /// Architecture: resnet18, resnet34, resnet50. Checked against the checkpoint; required
    /// with --random-init when there is no checkpoint.
    #[arg(long)]
    pub arch: Option<String>,
    /// Use randomly initialised weights (torchvision's init): the checkpoint's architecture if
    /// one is given, else --arch / --small-stem / --base-width.
    #[arg(long)]
    pub random_init: bool,
    /// With --random-init and no checkpoint: 3x3 stride-1 stem without max-pool (32x32 images).
    #[arg(long)]
    pub small_stem: bool,
    /// With --random-init and no checkpoint: width of the first stage.
    #[arg(long, default_value_t = 64)]
    pub base_width: usize,
    /// Seed of --random-init.
    #[arg(long, default_value_t = 0)]
    pub init_seed: u64,
    /// Device: cpu, wgpu[:N|:cpu], vulkan[:N|:cpu], cuda[:N] (GPU ones need their cargo
    /// feature; `carp devices` lists them).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// CPU threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// A backbone ready to run, with a description of where its weights came from.
pub struct LoadedBackbone {
    /// The module.
    pub backbone: ResNet,
    /// Its configuration.
    pub config: ResNetConfig,
    /// `carp checkpoint PATH (teacher, step N)` or `random init resnet18 (seed 0)`.
    pub origin: String,
    /// The device it lives on.
    pub device: Device,
}

impl BackboneArgs {
    /// Sets the thread count (once per process).
    pub fn init_threads(&self) -> anyhow::Result<()> {
        if let Some(n) = self.threads {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build_global()
                .context("setting the thread count")?;
        }
        Ok(())
    }

    /// Loads (or initialises) the backbone these flags describe.
    pub fn load(&self) -> anyhow::Result<LoadedBackbone> {
        let device = parse_device(&self.device)?;
        let opts = LoadOptions {
            format: self.format.clone(),
            key: self.key.clone(),
            arch: self.arch.clone(),
        };
        if self.random_init {
            let config = match &self.checkpoint {
                Some(path) => load_backbone(path, &opts)?.resnet,
                None => {
                    let arch = self
                        .arch
                        .as_deref()
                        .context("--random-init without --checkpoint needs --arch")?;
                    ResNetConfig {
                        arch: parse_arch(arch)?,
                        base_width: self.base_width,
                        small_stem: self.small_stem,
                        zero_init_residual: true,
                    }
                }
            };
            anyhow::ensure!(config.base_width > 0, "--base-width must be positive");
            let backbone = config.init(&device, self.init_seed);
            let origin = format!(
                "random init {:?} (width {}, small stem {}, seed {})",
                config.arch, config.base_width, config.small_stem, self.init_seed
            )
            .to_lowercase();
            return Ok(LoadedBackbone {
                backbone,
                config,
                origin,
                device,
            });
        }
        let path = self
            .checkpoint
            .as_ref()
            .context("give --checkpoint PATH, or --random-init (with --arch) for a baseline")?;
        let weights = load_backbone(path, &opts)?;
        let backbone = build_backbone(&weights, &device)?;
        Ok(LoadedBackbone {
            backbone,
            config: weights.resnet,
            origin: weights.origin,
            device,
        })
    }
}

/// How images become features.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TransformArgs {
    /// Resize the short side to this many pixels (default: none for small-stem backbones,
    /// 256 otherwise).
    #[arg(long)]
    pub resize: Option<u32>,
    /// Centre-crop side (default: none for small-stem backbones, 224 otherwise).
    #[arg(long)]
    pub crop: Option<u32>,
    /// Images per forward pass.
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    /// Use at most this many train images, evenly spaced (0: all).
    #[arg(long, default_value_t = 0)]
    pub max_train: usize,
    /// Use at most this many test images, evenly spaced (0: all).
    #[arg(long, default_value_t = 0)]
    pub max_test: usize,
}

impl TransformArgs {
    /// Embedding options for a split capped at `max` images.
    pub fn options(&self, config: &ResNetConfig, max: usize) -> EmbedOptions {
        let (resize, crop) = match (self.resize, self.crop, config.small_stem) {
            (None, None, true) => (None, None),
            (None, None, false) => (Some(256), Some(224)),
            (r, c, _) => (r, c),
        };
        EmbedOptions {
            resize,
            crop,
            batch: self.batch,
            max_images: max,
            progress: !crate::progress::is_quiet(),
        }
    }
}

/// Describes a transform for reports.
pub fn transform_text(opts: &EmbedOptions) -> String {
    let side = |v: Option<u32>| v.map_or("none".to_string(), |s| s.to_string());
    format!(
        "resize {} / centre crop {}",
        side(opts.resize),
        side(opts.crop)
    )
}

/// Embeds the data set `spec` (`flag` names it in errors).
pub fn embed_split(
    loaded: &LoadedBackbone,
    spec: &str,
    flag: &str,
    opts: &EmbedOptions,
) -> anyhow::Result<Embedding> {
    let data = open_eval_data(spec, flag)?;
    eprintln!(
        "{flag} {spec}: {} images, {} classes ({})",
        data.dataset.len(),
        data.classes.len(),
        transform_text(opts)
    );
    let start = std::time::Instant::now();
    let emb = embed(&loaded.backbone, &data, opts, &loaded.device)?;
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "{flag}: {} x {} features in {secs:.1} s ({:.1} img/s)",
        emb.features.rows,
        emb.features.dim,
        emb.features.rows as f64 / secs.max(1e-9)
    );
    Ok(emb)
}

/// Flags of `carp embed`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    backbone: BackboneArgs,
    #[command(flatten)]
    transform: TransformArgs,
    /// Train split: synthetic[:train|:test], imagefolder:PATH or PATH; written as `train_*`.
    #[arg(long)]
    train: Option<String>,
    /// Test split, written as `test_*`.
    #[arg(long)]
    test: Option<String>,
    /// Another data set, written under --split's name.
    #[arg(long)]
    data: Option<String>,
    /// Name of the --data split.
    #[arg(long, default_value = "data")]
    split: String,
    /// Output directory (default: `embed/` next to the checkpoint, `embed-random-init/` with
    /// --random-init; `embed` without a checkpoint).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Runs `carp embed`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    args.backbone.init_threads()?;
    let splits: Vec<(&str, &str, &str, usize)> = [
        (
            args.train.as_deref(),
            "train",
            "--train",
            args.transform.max_train,
        ),
        (
            args.test.as_deref(),
            "test",
            "--test",
            args.transform.max_test,
        ),
        (args.data.as_deref(), args.split.as_str(), "--data", 0),
    ]
    .into_iter()
    .filter_map(|(spec, name, flag, max)| spec.map(|s| (s, name, flag, max)))
    .collect();
    anyhow::ensure!(
        !splits.is_empty(),
        "nothing to embed: give --train, --test and/or --data"
    );
    let loaded = args.backbone.load()?;
    let default_name = if args.backbone.random_init {
        "embed-random-init"
    } else {
        "embed"
    };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| default_dir(&args.backbone, default_name));
    eprintln!("backbone: {}", loaded.origin);
    for (spec, name, flag, max) in splits {
        let opts = args.transform.options(&loaded.config, max);
        let emb = embed_split(&loaded, spec, flag, &opts)?;
        let meta = [
            ("origin", loaded.origin.clone()),
            ("data", spec.to_string()),
            ("transform", transform_text(&opts)),
        ];
        let files = write_embedding(&out, name, &emb, &meta)?;
        for f in files {
            println!("wrote {}", f.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `<checkpoint dir>/<name>`, or `<name>` without a checkpoint.
pub fn default_dir(backbone: &BackboneArgs, name: &str) -> PathBuf {
    backbone
        .checkpoint
        .as_deref()
        .and_then(Path::parent)
        .map_or_else(|| PathBuf::from(name), |p| p.join(name))
}
