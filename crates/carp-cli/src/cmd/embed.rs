//! `carp embed`: backbone features of data sets, written as `.npy` and `.safetensors`.
//!
//! Also home of the flags every evaluation command shares: which backbone ([`BackboneArgs`]) and
//! how images become features ([`TransformArgs`]).

use anyhow::Context;
use burn::tensor::Device;
use carp_core::resnet::{Arch, ResNet, ResNetConfig};
use carp_data::EvalTransform;
use carp_io::backbone::{load_backbone, LoadOptions};
use carp_io::keymap::build_backbone;
use carp_train::device::parse_device;
use carp_train::embed::{embed, open_eval_data, write_embedding, EmbedOptions, Embedding};
use carp_train::eval::train_crop;
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
    /// Its evaluation transform ([`EvalTransform::for_backbone`]).
    pub transform: EvalTransform,
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
        let imported = match (&self.checkpoint, self.random_init) {
            (Some(path), _) => Some(load_backbone(path, &opts).map_err(crate::flags::explain)?),
            (None, true) => None,
            (None, false) => anyhow::bail!(
                "give --checkpoint PATH, or --random-init (with --arch) for a baseline"
            ),
        };
        let train_crop = imported.as_ref().and_then(train_crop);
        let (backbone, config, origin) = match &imported {
            Some(imported) if !self.random_init => {
                let (net, config, report) = build_backbone(imported, &device)?;
                report.require_complete(&imported.path)?;
                (net, config, imported.origin())
            }
            _ => {
                let config = match &imported {
                    Some(imported) => imported.resnet()?,
                    None => self.random_init_config()?,
                };
                anyhow::ensure!(config.base_width > 0, "--base-width must be positive");
                let origin = format!(
                    "random init {:?} (width {}, small stem {}, seed {})",
                    config.arch, config.base_width, config.small_stem, self.init_seed
                )
                .to_lowercase();
                (config.init(&device, self.init_seed), config, origin)
            }
        };
        Ok(LoadedBackbone {
            transform: EvalTransform::for_backbone(config.small_stem, train_crop),
            backbone,
            config,
            origin,
            device,
        })
    }

    /// The architecture `--random-init` builds without a checkpoint.
    fn random_init_config(&self) -> anyhow::Result<ResNetConfig> {
        let arch = self
            .arch
            .as_deref()
            .context("--random-init without --checkpoint needs --arch")?;
        let arch = Arch::parse(arch).with_context(|| {
            format!("--arch: unknown architecture `{arch}` (resnet18, resnet34, resnet50)")
        })?;
        Ok(ResNetConfig {
            arch,
            base_width: self.base_width,
            small_stem: self.small_stem,
            zero_init_residual: true,
        })
    }
}

/// How images become features.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TransformArgs {
    /// Resize the short side to this many pixels (default: none for small-stem backbones,
    /// else crop x 256 / 224).
    #[arg(long)]
    pub resize: Option<u32>,
    /// Centre-crop side (default: the global view size a carp checkpoint was trained on,
    /// else 32 for small-stem backbones and 224 for others).
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
    /// Embedding options for `loaded` on a split capped at `max` images: its evaluation
    /// transform with --resize / --crop replacing their side.
    pub fn options(&self, loaded: &LoadedBackbone, max: usize) -> EmbedOptions {
        EmbedOptions {
            transform: loaded.transform.with_overrides(self.resize, self.crop),
            batch: self.batch,
            max_images: max,
            progress: !crate::progress::is_quiet(),
        }
    }
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
        opts.transform
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
        let opts = args.transform.options(&loaded, max);
        let emb = embed_split(&loaded, spec, flag, &opts)?;
        let meta = [
            ("origin", loaded.origin.clone()),
            ("data", spec.to_string()),
            ("transform", opts.transform.to_string()),
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
