//! Run configuration: one serde struct per concern, presets compiled in, TOML files and flags
//! layered on top, one `validate` before any work starts.
//!
//! Precedence, lowest to highest: built-in preset, `--config` file, command-line flags.

use crate::error::TrainError;
use carp_core::head::CarpHeadConfig;
use carp_core::model::CarpModelConfig;
use carp_core::precision::Precision;
use carp_core::resnet::{Arch, ResNetConfig};
use carp_core::step::EmaOrder;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Network shape (spec §1, §3).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Backbone: `resnet18`, `resnet34` or `resnet50` [resnet50].
    pub arch: String,
    /// Width of the first ResNet stage; 64 is torchvision's [64].
    pub base_width: usize,
    /// 3x3 stride-1 stem without max-pool, for 32x32 images [false].
    pub small_stem: bool,
    /// Hidden width of the head MLP [2048].
    pub hidden_dim: usize,
    /// Bottleneck width of the head [256].
    pub bottleneck_dim: usize,
    /// Number of prototypes K [65536].
    pub out_dim: usize,
    /// Linear layers in the head MLP [3].
    pub nlayers: usize,
    /// Partition (block) size N [512].
    pub partition_size: usize,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            arch: "resnet50".into(),
            base_width: 64,
            small_stem: false,
            hidden_dim: 2048,
            bottleneck_dim: 256,
            out_dim: 65536,
            nlayers: 3,
            partition_size: 512,
        }
    }
}

/// Multi-crop views (spec §2).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ViewsConfig {
    /// Side of the two global crops [224].
    pub global_size: u32,
    /// Side of the local crops [96].
    pub local_size: u32,
    /// Number of local crops M; 0 disables multi-crop [6].
    pub local_views: usize,
    /// Area range of the global crops [0.2, 1.0].
    pub global_scale: [f32; 2],
    /// Area range of the local crops [0.05, 0.2].
    pub local_scale: [f32; 2],
    /// Gaussian blur as in the paper's table; off for 32x32 images [true].
    pub blur: bool,
}

impl Default for ViewsConfig {
    fn default() -> Self {
        Self {
            global_size: 224,
            local_size: 96,
            local_views: 6,
            global_scale: [0.2, 1.0],
            local_scale: [0.05, 0.2],
            blur: true,
        }
    }
}

/// Optimisation and schedules (spec §5).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimConfig {
    /// Images per step per device [32].
    pub batch_size: usize,
    /// Micro-batches accumulated per optimiser step [1].
    pub accumulation_steps: usize,
    /// Learning rate per 256 images, scaled linearly to the effective batch [0.45].
    pub base_lr: f64,
    /// Final learning rate of the cosine [0.0048].
    pub min_lr: f64,
    /// Linear warm-up, in epochs [0].
    pub warmup_epochs: f64,
    /// Weight decay at the start [1e-6].
    pub weight_decay: f64,
    /// Weight decay at the end [1e-6].
    pub weight_decay_end: f64,
    /// LARS momentum [0.9].
    pub momentum: f64,
    /// LARS trust coefficient η [0.001].
    pub eta: f64,
    /// Teacher EMA momentum at the start, rising to `momentum_teacher_end` [0.99].
    pub momentum_teacher: f64,
    /// Teacher EMA momentum at the end [1.0].
    pub momentum_teacher_end: f64,
    /// EMA before the optimiser step (release) or after it (DINO) [before-step].
    pub ema_order: EmaOrder,
    /// In a data-parallel run, BatchNorm statistics over all processes (the release's
    /// SyncBatchNorm) rather than per process [true].
    pub sync_bn: bool,
    /// Float type of the forward and backward passes: `f32`, `bf16`, or `f16` with dynamic
    /// loss scaling (the release trains in f16); weights, LARS and EMA state, BatchNorm
    /// statistics and the loss stay f32 [f32].
    pub precision: Precision,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            batch_size: 32,
            accumulation_steps: 1,
            base_lr: 0.45,
            min_lr: 0.0048,
            warmup_epochs: 0.0,
            weight_decay: 1e-6,
            weight_decay_end: 1e-6,
            momentum: 0.9,
            eta: 0.001,
            momentum_teacher: 0.99,
            momentum_teacher_end: 1.0,
            ema_order: EmaOrder::BeforeStep,
            sync_bn: true,
            precision: Precision::F32,
        }
    }
}

/// Where images come from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// Training images: `synthetic` (built in), an image folder path, or `KIND:PATH` with
    /// KIND one of `imagefolder`, `cifar10`, `cifar100` (binary, train split), `stl10`
    /// (binary, train + unlabeled), `filelist`; see `carp_data::source` [synthetic].
    pub train: String,
    /// Labelled images for the k-NN evaluation at the end; with `synthetic` training the
    /// held-out synthetic split is used when this is empty [""].
    pub eval: String,
    /// Labelled training images used as the k-NN memory bank (defaults to `train` when that
    /// is labelled) [""].
    pub eval_train: String,
    /// Size of the synthetic training set [4096].
    pub synthetic_train: usize,
    /// Size of the held-out synthetic set [1024].
    pub synthetic_test: usize,
    /// Side of the synthetic images [32].
    pub image_size: u32,
    /// At most this many images per split in the k-NN evaluation; 0 = all [10000].
    pub eval_max_images: usize,
    /// Skip (and count in the log) training images that cannot be read or decoded
    /// instead of stopping the run [false].
    pub skip_bad_images: bool,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            train: "synthetic".into(),
            eval: String::new(),
            eval_train: String::new(),
            synthetic_train: 4096,
            synthetic_test: 1024,
            image_size: 32,
            eval_max_images: 10000,
            skip_bad_images: false,
        }
    }
}

/// The run: length, seed, outputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// Epochs the schedules are laid out over [100].
    pub epochs: usize,
    /// Stop after this many steps (micro-batches) even if epochs remain; 0 = no limit [0].
    pub max_steps: usize,
    /// Lay the schedules out over this many steps instead of `epochs`; 0 = use epochs [0].
    pub schedule_steps: usize,
    /// Seed of every random choice (weights, partitions, augmentations) [0].
    pub seed: u64,
    /// Run directory; empty = `runs/<timestamp>` [""].
    pub out: String,
    /// Keep a numbered checkpoint every N epochs besides the latest; 0 = only latest [0].
    pub keep_every_epochs: usize,
    /// Also write the latest checkpoint every N steps (besides each epoch end); 0 = off [0].
    pub checkpoint_every: usize,
    /// Log every N steps [10].
    pub log_every: usize,
    /// Run the k-NN evaluation at the end [true].
    pub eval: bool,
    /// Also k-NN evaluate the teacher every N epochs during training, into `knn.jsonl`
    /// (plotted by `carp report`); 0 = only at the end [0].
    pub eval_every_epochs: usize,
    /// Device: `cpu` (flex), `wgpu[:N|:cpu]`, `vulkan[:N|:cpu]` or `cuda[:N]`; GPU ones need
    /// their cargo feature (see [`crate::device`]) [cpu].
    pub device: String,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            epochs: 100,
            max_steps: 0,
            schedule_steps: 0,
            seed: 0,
            out: String::new(),
            keep_every_epochs: 0,
            checkpoint_every: 0,
            log_every: 10,
            eval: true,
            eval_every_epochs: 0,
            device: "cpu".into(),
        }
    }
}

/// What to do when a step's loss or gradient is NaN or infinite.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NanPolicy {
    /// Stop with an error naming the step and the term; the last checkpoint is kept [default].
    #[default]
    Stop,
    /// Drop the step's gradients and go on; skipped steps are counted in the log.
    SkipStep,
}

/// Run health: the NaN guard, the collapse detector's thresholds, TensorBoard.
///
/// A logged step counts towards collapse when any signal passes its threshold; the warning
/// fires after `collapse_patience` such steps in a row (README, "Watching a run").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MonitorConfig {
    /// On a non-finite loss or gradient: `stop` or `skip-step` [stop].
    pub nan_policy: NanPolicy,
    /// With `skip-step`, stop anyway after this many skipped steps in a row [20].
    pub max_consecutive_skips: usize,
    /// Collapse signal: entropy term / log N above this [0.5].
    pub collapse_entropy_ratio: f64,
    /// Collapse signal: distinct argmax prototypes / min(rows, N) below this [0.05].
    pub collapse_prototype_coverage: f64,
    /// Collapse signal: per-dimension std of the normalised bottleneck x sqrt(D) below this [0.05].
    pub collapse_bottleneck_std_ratio: f64,
    /// Logged steps in a row with a signal before warning; 0 disables the detector [3].
    pub collapse_patience: usize,
    /// Ignore the signals before this step (e.g. during warm-up) [0].
    pub collapse_after_step: usize,
    /// Write TensorBoard event files into the run directory [true].
    pub tensorboard: bool,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            nan_policy: NanPolicy::Stop,
            max_consecutive_skips: 20,
            collapse_entropy_ratio: 0.5,
            collapse_prototype_coverage: 0.05,
            collapse_bottleneck_std_ratio: 0.05,
            collapse_patience: 3,
            collapse_after_step: 0,
            tensorboard: true,
        }
    }
}

/// The whole configuration of a pretraining run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Network shape.
    pub model: ModelConfig,
    /// Multi-crop views.
    pub views: ViewsConfig,
    /// Optimisation.
    pub optim: OptimConfig,
    /// Data sources.
    pub data: DataConfig,
    /// Run length and outputs.
    pub run: RunConfig,
    /// Run health: NaN guard, collapse thresholds, TensorBoard.
    pub monitor: MonitorConfig,
}

/// Names of the built-in presets.
pub const PRESETS: [&str; 3] = ["tiny", "cifar", "imagenet"];

/// The TOML text of a built-in preset.
pub fn preset_text(name: &str) -> Option<&'static str> {
    match name {
        "tiny" => Some(include_str!("../presets/tiny.toml")),
        "cifar" => Some(include_str!("../presets/cifar.toml")),
        "imagenet" => Some(include_str!("../presets/imagenet.toml")),
        _ => None,
    }
}

impl Config {
    /// A built-in preset.
    pub fn preset(name: &str) -> Result<Self, TrainError> {
        let text = preset_text(name).ok_or_else(|| TrainError::Config {
            key: "preset".into(),
            message: format!("unknown preset `{name}` (known: {})", PRESETS.join(", ")),
        })?;
        Self::from_toml(text, &format!("preset {name}"))
    }

    /// Parses a full configuration; unknown keys are errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, TrainError> {
        toml::from_str(text).map_err(|e| TrainError::Config {
            key: origin.to_string(),
            message: e.to_string(),
        })
    }

    /// Layers a TOML file over this configuration: keys present in the file replace ours.
    pub fn merge_toml(&self, text: &str, origin: &str) -> Result<Self, TrainError> {
        let over: toml::Table = toml::from_str(text).map_err(|e| TrainError::Config {
            key: origin.to_string(),
            message: e.to_string(),
        })?;
        self.merge_table(over, origin)
    }

    /// Sets dotted keys (`optim.base_lr`) to values over this configuration; `origin` names
    /// where they came from in errors.
    pub fn with_values(
        &self,
        values: &[(&str, toml::Value)],
        origin: &str,
    ) -> Result<Self, TrainError> {
        let mut over = toml::Table::new();
        for (key, value) in values {
            let (sections, leaf) = key.rsplit_once('.').unwrap_or(("", key));
            let mut table = &mut over;
            for part in sections.split('.').filter(|p| !p.is_empty()) {
                table = table
                    .entry(part)
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                    .as_table_mut()
                    .expect("sections are tables");
            }
            table.insert(leaf.to_string(), value.clone());
        }
        self.merge_table(over, origin)
    }

    /// Layers the keys of `over` on this configuration.
    fn merge_table(&self, over: toml::Table, origin: &str) -> Result<Self, TrainError> {
        let err = |e: String| TrainError::Config {
            key: origin.to_string(),
            message: e,
        };
        let mut base = toml::Table::try_from(self).map_err(|e| err(e.to_string()))?;
        merge(&mut base, over);
        base.try_into()
            .map_err(|e: toml::de::Error| err(e.to_string()))
    }

    /// The resolved configuration as TOML (written to the run directory).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("config serialises")
    }

    /// Checks the resolved configuration; errors name the offending key.
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |key: &str, message: String| {
            Err(TrainError::Config {
                key: key.into(),
                message,
            })
        };
        if let Err(e) = crate::device::DeviceSpec::parse(&self.run.device) {
            return bad("run.device", e.to_string());
        }
        let m = &self.model;
        if Arch::parse(&m.arch).is_none() {
            return bad(
                "model.arch",
                format!(
                    "unknown architecture `{}` (resnet18, resnet34, resnet50)",
                    m.arch
                ),
            );
        }
        if m.base_width == 0 || m.hidden_dim == 0 || m.bottleneck_dim == 0 || m.nlayers == 0 {
            return bad("model", "widths and nlayers must be positive".into());
        }
        // N need not divide K: the last K mod N prototypes of each step's permutation sit
        // out that step (spec §3); the run logs a warning saying how many.
        if m.partition_size < 2 || m.partition_size > m.out_dim {
            return bad(
                "model.partition_size",
                format!(
                    "must be in 2..={} (out_dim; a block of one prototype has nothing to \
                     assign); got {}",
                    m.out_dim, m.partition_size
                ),
            );
        }
        let v = &self.views;
        for (key, s) in [
            ("views.global_scale", v.global_scale),
            ("views.local_scale", v.local_scale),
        ] {
            if !(s[0] > 0.0 && s[0] <= s[1] && s[1] <= 1.0) {
                return bad(key, format!("needs 0 < min <= max <= 1, got {s:?}"));
            }
        }
        if v.global_size == 0 || (v.local_views > 0 && v.local_size == 0) {
            return bad("views", "crop sizes must be positive".into());
        }
        if v.local_views > 0 && v.local_size > v.global_size {
            return bad(
                "views.local_size",
                format!(
                    "local crops ({}) larger than the global crops ({})",
                    v.local_size, v.global_size
                ),
            );
        }
        let d = &self.data;
        let synthetic = d.train == "synthetic";
        if synthetic && v.global_size > d.image_size {
            return bad(
                "views.global_size",
                format!(
                    "global crops of {} px are larger than the {} px synthetic images \
                     (data.image_size)",
                    v.global_size, d.image_size
                ),
            );
        }
        let o = &self.optim;
        if synthetic && d.synthetic_train < o.batch_size {
            return bad(
                "optim.batch_size",
                format!(
                    "batch size {} is larger than the {} synthetic training images \
                     (data.synthetic_train)",
                    o.batch_size, d.synthetic_train
                ),
            );
        }
        for (key, value) in [
            ("optim.min_lr", o.min_lr),
            ("optim.warmup_epochs", o.warmup_epochs),
            ("optim.weight_decay", o.weight_decay),
            ("optim.weight_decay_end", o.weight_decay_end),
            ("optim.eta", o.eta),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return bad(key, format!("must be finite and >= 0, got {value}"));
            }
        }
        if !(0.0..1.0).contains(&o.momentum) {
            return bad(
                "optim.momentum",
                format!("LARS momentum must lie in [0, 1), got {}", o.momentum),
            );
        }
        let mo = &self.monitor;
        for (key, value) in [
            ("monitor.collapse_entropy_ratio", mo.collapse_entropy_ratio),
            (
                "monitor.collapse_prototype_coverage",
                mo.collapse_prototype_coverage,
            ),
            (
                "monitor.collapse_bottleneck_std_ratio",
                mo.collapse_bottleneck_std_ratio,
            ),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return bad(key, format!("must lie in [0, 1], got {value}"));
            }
        }
        if o.batch_size < 2 {
            return bad(
                "optim.batch_size",
                format!(
                    "BatchNorm needs at least 2 images per step, got {}",
                    o.batch_size
                ),
            );
        }
        if o.accumulation_steps == 0 {
            return bad("optim.accumulation_steps", "must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&o.momentum_teacher)
            || !(0.0..=1.0).contains(&o.momentum_teacher_end)
        {
            return bad(
                "optim.momentum_teacher",
                "teacher momentum must lie in [0, 1]".into(),
            );
        }
        if !(o.base_lr.is_finite() && o.base_lr >= 0.0) {
            return bad(
                "optim.base_lr",
                format!("must be finite and >= 0, got {}", o.base_lr),
            );
        }
        if self.run.epochs == 0 && self.run.schedule_steps == 0 {
            return bad("run.epochs", "must be positive".into());
        }
        if self.run.log_every == 0 {
            return bad("run.log_every", "must be at least 1".into());
        }
        Ok(())
    }

    /// This configuration, validated ([`Config::validate`]), with `run.out` fixed (see
    /// [`Config::out_dir`]) and its run directory created and writable: what a run needs
    /// before any work starts.
    pub fn resolve(mut self) -> Result<ValidConfig, TrainError> {
        self.validate()?;
        self.run.out = self.out_dir().display().to_string();
        self.check_run_dir()?;
        Ok(ValidConfig(self))
    }

    /// Checks that the run directory can be created and written, before any work starts.
    pub fn check_run_dir(&self) -> Result<(), TrainError> {
        let dir = self.out_dir();
        let fail = |e: std::io::Error| TrainError::Config {
            key: "run.out".into(),
            message: format!("run directory {} is not writable: {e}", dir.display()),
        };
        std::fs::create_dir_all(&dir).map_err(fail)?;
        let probe = dir.join(format!(".carp-write-test-{}", std::process::id()));
        std::fs::write(&probe, b"").map_err(fail)?;
        let _ = std::fs::remove_file(&probe);
        Ok(())
    }

    /// The network configuration this run trains.
    pub fn model_config(&self) -> CarpModelConfig {
        let arch = Arch::parse(&self.model.arch).expect("validated");
        let backbone = ResNetConfig {
            arch,
            base_width: self.model.base_width,
            small_stem: self.model.small_stem,
            zero_init_residual: true,
        };
        let head = CarpHeadConfig {
            in_dim: backbone.output_dim(),
            hidden_dim: self.model.hidden_dim,
            bottleneck_dim: self.model.bottleneck_dim,
            out_dim: self.model.out_dim,
            nlayers: self.model.nlayers,
            use_bn: true,
        };
        CarpModelConfig { backbone, head }
    }

    /// The run directory: `run.out`, or `runs/<UTC timestamp>`.
    pub fn out_dir(&self) -> PathBuf {
        if self.run.out.is_empty() {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            PathBuf::from("runs").join(format!("run-{secs}"))
        } else {
            PathBuf::from(&self.run.out)
        }
    }
}

/// A [`Config`] that passed [`Config::resolve`]: valid, with its run directory fixed.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidConfig(Config);

impl std::ops::Deref for ValidConfig {
    type Target = Config;

    fn deref(&self) -> &Config {
        &self.0
    }
}

fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_parse_and_validate() {
        for name in PRESETS {
            let mut c = Config::preset(name).unwrap();
            if name == "imagenet" {
                // 224 px crops of the 32 px synthetic default are refused: it needs --data.
                let err = c.validate().unwrap_err().to_string();
                assert!(err.contains("views.global_size"), "{err}");
                c.data.train = "imagefolder:/data/imagenet/train".into();
            }
            c.validate().unwrap();
        }
        let c = Config::preset("imagenet").unwrap();
        assert_eq!(c.model.out_dim, 65536);
        assert_eq!(c.model.partition_size, 512);
        assert_eq!(c.views.local_views, 6);
        assert_eq!(c.optim.momentum_teacher, 0.99);
        assert_eq!(c.model_config().backbone.output_dim(), 2048);
    }

    /// A preset lists only the keys whose value differs from the default (so a default is
    /// changed in one place), and every key it lists exists.
    #[test]
    fn presets_list_only_differences_from_the_defaults() {
        let defaults = toml::Table::try_from(Config::default()).unwrap();
        for name in PRESETS {
            let preset: toml::Table = toml::from_str(preset_text(name).unwrap()).unwrap();
            for (section, keys) in &preset {
                for (key, value) in keys.as_table().unwrap() {
                    let default = &defaults[section][key.as_str()];
                    assert_ne!(
                        value, default,
                        "preset {name}: {section}.{key} repeats the default"
                    );
                }
            }
        }
    }

    #[test]
    fn file_overrides_preset_and_unknown_keys_fail() {
        let c = Config::preset("tiny").unwrap();
        let d = c.merge_toml("[optim]\nbase_lr = 0.3\n", "test").unwrap();
        assert_eq!(d.optim.base_lr, 0.3);
        assert_eq!(d.model, c.model);
        let err = c
            .merge_toml("[optim]\nbase_lrr = 0.3\n", "my.toml")
            .unwrap_err();
        assert!(err.to_string().contains("my.toml"), "{err}");
        assert!(err.to_string().contains("base_lrr"), "{err}");
    }

    #[test]
    fn validation_names_the_key() {
        let mut c = Config::preset("tiny").unwrap();
        c.model.partition_size = c.model.out_dim + 1;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("model.partition_size"));
        let mut c = Config::preset("tiny").unwrap();
        c.model.arch = "vgg".into();
        assert!(c.validate().unwrap_err().to_string().contains("model.arch"));
        let mut c = Config::preset("tiny").unwrap();
        c.optim.batch_size = 1;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("optim.batch_size"));
    }

    /// Each bad value is refused by `validate` with an error naming its key.
    #[test]
    fn each_bad_value_names_its_key() {
        type Edit = fn(&mut Config);
        let cases: [(&str, Edit); 12] = [
            ("model.partition_size", |c| c.model.partition_size = 1),
            ("model.arch", |c| c.model.arch = "resnet9".into()),
            ("views.local_size", |c| {
                c.views.local_size = c.views.global_size + 1
            }),
            ("views.global_size", |c| c.views.global_size = 64),
            ("optim.batch_size", |c| c.data.synthetic_train = 10),
            ("optim.batch_size", |c| c.optim.batch_size = 0),
            ("optim.warmup_epochs", |c| c.optim.warmup_epochs = -1.0),
            ("optim.min_lr", |c| c.optim.min_lr = f64::NAN),
            ("optim.momentum", |c| c.optim.momentum = 1.0),
            ("optim.momentum_teacher", |c| c.optim.momentum_teacher = 1.5),
            ("monitor.collapse_entropy_ratio", |c| {
                c.monitor.collapse_entropy_ratio = 2.0
            }),
            ("run.log_every", |c| c.run.log_every = 0),
        ];
        for (key, edit) in cases {
            let mut c = Config::preset("tiny").unwrap();
            edit(&mut c);
            let err = c.validate().expect_err(key).to_string();
            assert!(err.contains(&format!("`{key}`")), "{key}: {err}");
        }
        // N not dividing K is allowed (the remainder sits out each step).
        let mut c = Config::preset("tiny").unwrap();
        c.model.partition_size = 100;
        c.validate().unwrap();
    }

    #[test]
    fn unwritable_run_dir_names_run_out() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"x").unwrap();
        let mut c = Config::preset("tiny").unwrap();
        c.run.out = file.join("run").display().to_string();
        let err = c.check_run_dir().unwrap_err().to_string();
        assert!(err.contains("`run.out`") && err.contains("a-file"), "{err}");
        c.run.out = dir.path().join("ok").display().to_string();
        c.check_run_dir().unwrap();
    }

    #[test]
    fn resolved_config_round_trips_through_toml() {
        let c = Config::preset("cifar").unwrap();
        assert_eq!(Config::from_toml(&c.to_toml(), "x").unwrap(), c);
    }
}
