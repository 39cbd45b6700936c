//! Backbone weights for evaluation, one path for every supported file: carp's own run
//! checkpoints and converted weights, PyTorch `.pth` checkpoints of the CARP release and of
//! other methods, torchvision-named safetensors.
//!
//! [`load_backbone`] reads the file with [`keymap::import_backbone`] and checks the
//! [`LoadOptions`] against it; [`keymap::build_backbone`] turns the result into a
//! [`carp_core::resnet::ResNet`].

use crate::checkpoint::{CarpFile, METADATA_KEY};
use crate::error::ImportError;
use crate::keymap::{self, Format, Imported, LoadReport};
use carp_core::resnet::Arch;
use std::path::Path;

/// `format` value that asks for carp's own files (run checkpoints, converted weights).
pub const CARP_NATIVE: &str = "carp-native";

/// Which weights to load and how to read the file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// File format: [`CARP_NATIVE`] for carp's own files, or a method layout of [`Format`]
    /// (`carp`, `dino`, `swav`, `mocov3`, `vicreg`, `torchvision`, ...); `None` detects it.
    pub format: Option<String>,
    /// Network inside the checkpoint: `teacher` (default, spec §8) or `student` for carp
    /// and DINO layouts; for other layouts the top-level entry to take (default: the layout's).
    pub key: Option<String>,
    /// Expected architecture (`resnet18`, `resnet34`, `resnet50`); an error when the file
    /// holds another.
    pub arch: Option<String>,
}

/// Reads the backbone of `path` as torchvision-named tensors, checking `opts` against it.
///
/// # Errors
/// [`ImportError::Option`] (naming the option: `format`, `key`, `arch`) for an unknown value
/// or one the file contradicts; the import errors of [`keymap::import_backbone`] otherwise.
pub fn load_backbone(path: &Path, opts: &LoadOptions) -> Result<Imported, ImportError> {
    let option = |key: &'static str, message: String| ImportError::Option {
        path: path.to_path_buf(),
        key,
        message,
    };
    let native = opts.format.as_deref() == Some(CARP_NATIVE);
    let format = match opts.format.as_deref() {
        None | Some(CARP_NATIVE) => None,
        Some(name) => Some(name.parse::<Format>().map_err(|e| {
            option(
                "format",
                format!("{e}, or {CARP_NATIVE} for carp's own checkpoints"),
            )
        })?),
    };
    let want_arch = opts
        .arch
        .as_deref()
        .map(|a| {
            Arch::parse(a).ok_or_else(|| {
                option(
                    "arch",
                    format!("unknown architecture `{a}` (resnet18, resnet34, resnet50)"),
                )
            })
        })
        .transpose()?;
    let imported = keymap::import_backbone(path, format, opts.key.as_deref())?;
    let is_carp = imported.carp_file.is_some();
    if native && !is_carp {
        return Err(option(
            "format",
            format!(
                "not one of carp's own checkpoints (this is the {} layout); give its format",
                imported.format
            ),
        ));
    }
    if let Some(want) = want_arch {
        let found = imported.resnet()?.arch;
        if want != found {
            return Err(option(
                "arch",
                format!("{want:?} asked for, but the file holds a {found:?}"),
            ));
        }
    }
    Ok(imported)
}

/// The JSON document carp writes into its own files, when `imported` is one.
pub fn carp_metadata(imported: &Imported) -> Option<serde_json::Value> {
    let meta = imported.metadata.get(METADATA_KEY)?;
    serde_json::from_str(meta).ok()
}

impl Imported {
    /// Where the weights came from, for reports: `carp checkpoint PATH (teacher, step N)` or
    /// `dino checkpoint PATH (entry `teacher`)`.
    pub fn origin(&self) -> String {
        let path = self.path.display();
        let net = if self.report.top.is_empty() {
            "root".to_string()
        } else {
            self.report.top.clone()
        };
        match (self.carp_file, carp_metadata(self)) {
            (Some(CarpFile::Run), Some(meta)) => {
                let step = meta["next_step"].as_u64().unwrap_or(0);
                format!("carp checkpoint {path} ({net}, step {step})")
            }
            (Some(CarpFile::Weights), _) => format!("carp weights {path}"),
            _ if self.report.top.is_empty() => format!("{} checkpoint {path}", self.format),
            _ => format!("{} checkpoint {path} (entry `{net}`)", self.format),
        }
    }
}

impl LoadReport {
    /// An error naming the first parameter the file did not provide
    /// ([`CheckpointError::Missing`](crate::CheckpointError::Missing));
    /// unexpected tensors are logged and ignored.
    pub fn require_complete(&self, path: &Path) -> Result<(), ImportError> {
        if let Some(key) = self.missing.first() {
            return Err(crate::CheckpointError::Missing {
                path: path.to_path_buf(),
                key: key.clone(),
            }
            .into());
        }
        if let Some(first) = self.unexpected.first() {
            tracing::warn!(
                "{}: {} tensors not in the backbone ignored (first: {first})",
                path.display(),
                self.unexpected.len()
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{write_checkpoint, Checkpoint, RUN_FORMAT};
    use crate::params;
    use burn::tensor::Device;
    use carp_core::resnet::{ResNet, ResNetConfig};

    /// A carp run checkpoint (teacher and student backbones, Burn names) at step 7.
    fn run_checkpoint(dir: &Path) -> (std::path::PathBuf, ResNet, ResNet) {
        let mut cfg = ResNetConfig::new(Arch::Resnet18);
        cfg.base_width = 4;
        cfg.small_stem = true;
        let device = Device::flex();
        let (teacher, student) = (cfg.init(&device, 1), cfg.init(&device, 2));
        let mut tensors = params::collect(&teacher, "teacher.backbone.");
        tensors.extend(params::collect(&student, "student.backbone."));
        let meta = serde_json::json!({"format": RUN_FORMAT, "next_step": 7});
        let path = dir.join("checkpoint.safetensors");
        write_checkpoint(&path, &Checkpoint { tensors, meta }).unwrap();
        (path, teacher, student)
    }

    fn with(format: Option<&str>, key: Option<&str>, arch: Option<&str>) -> LoadOptions {
        LoadOptions {
            format: format.map(String::from),
            key: key.map(String::from),
            arch: arch.map(String::from),
        }
    }

    fn load(path: &Path, opts: LoadOptions) -> Result<ResNet, ImportError> {
        let imported = load_backbone(path, &opts)?;
        let (net, _, report) = keymap::build_backbone(&imported, &Device::flex())?;
        report.require_complete(path)?;
        Ok(net)
    }

    #[test]
    fn carp_run_checkpoint_round_trips_through_torchvision_names() {
        let dir = tempfile::tempdir().unwrap();
        let (path, teacher, student) = run_checkpoint(dir.path());
        let imported = load_backbone(&path, &LoadOptions::default()).unwrap();
        assert!(imported.backbone.contains_key("bn1.weight"));
        assert!(imported.backbone.contains_key("bn1.running_var"));
        assert!(!imported.backbone.keys().any(|k| k.ends_with("gamma")));
        assert_eq!(
            imported.origin(),
            format!("carp checkpoint {} (teacher, step 7)", path.display())
        );
        let net = load(&path, LoadOptions::default()).unwrap();
        assert_eq!(params::collect(&net, ""), params::collect(&teacher, ""));
        let net = load(&path, with(Some(CARP_NATIVE), Some("student"), None)).unwrap();
        assert_eq!(params::collect(&net, ""), params::collect(&student, ""));
    }

    /// Each bad option is an error naming the option and the file.
    #[test]
    fn bad_options_name_the_option() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _, _) = run_checkpoint(dir.path());
        let err = |opts: LoadOptions| load(&path, opts).err().unwrap();
        let option_of = |e: &ImportError| match e {
            ImportError::Option { key, path: p, .. } => {
                assert_eq!(p, &path);
                *key
            }
            other => panic!("{other}"),
        };
        for (opts, key, words) in [
            (with(Some("pytorch"), None, None), "format", "pytorch"),
            (with(None, Some("head"), None), "key", "`head`"),
            (with(None, None, Some("resnet50")), "arch", "Resnet18"),
            (
                with(None, None, Some("vgg")),
                "arch",
                "unknown architecture `vgg`",
            ),
        ] {
            let e = err(opts);
            assert_eq!(option_of(&e), key, "{e}");
            assert!(e.to_string().contains(words), "{e}");
        }
        let missing = load(&dir.path().join("nope.safetensors"), LoadOptions::default());
        let e = missing.err().unwrap();
        assert!(
            matches!(e, ImportError::File(crate::CheckpointError::Io { .. })),
            "{e}"
        );
        assert!(e.to_string().contains("nope.safetensors"), "{e}");
    }

    /// The CARP-release-layout `.pth` fixture (torchvision ResNet-18 at width 4,
    /// `module.backbone.` prefixes, `args` Namespace, optimiser state) goes through the same
    /// entry point, detected or named, teacher or student; `carp-native` refuses it.
    #[test]
    fn pytorch_checkpoints_take_the_same_path() {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pth/carp_zip.pth");
        let teacher = load_backbone(&fixture, &LoadOptions::default()).unwrap();
        assert_eq!(teacher.resnet().unwrap().arch, Arch::Resnet18);
        assert!(
            teacher.origin().contains("(entry `teacher`)"),
            "{}",
            teacher.origin()
        );
        let named = with(Some("carp"), None, None);
        assert_eq!(
            load_backbone(&fixture, &named).unwrap().backbone,
            teacher.backbone
        );
        let student = with(None, Some("student"), None);
        assert_ne!(
            load_backbone(&fixture, &student).unwrap().backbone,
            teacher.backbone
        );
        let native = with(Some(CARP_NATIVE), None, None);
        let e = load_backbone(&fixture, &native).unwrap_err();
        assert!(
            matches!(e, ImportError::Option { key: "format", .. }),
            "{e}"
        );
        let wrong = with(Some("mocov3"), None, None);
        let e = load_backbone(&fixture, &wrong).unwrap_err().to_string();
        assert!(
            e.contains("carp_zip.pth") && e.contains("state_dict"),
            "{e}"
        );
    }
}
