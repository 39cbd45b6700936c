//! Loading backbone weights for evaluation: carp's own checkpoints, and PyTorch or safetensors
//! files of other methods through [`carp_io::keymap`], into a [`ResNet`] with torchvision
//! parameter names.
//!
//! A [`BackboneWeights`] holds host tensors named as torchvision does (`conv1.weight`,
//! `bn1.weight`, `bn1.running_mean`, `layer1.0.downsample.1.bias`, ...), with no prefix, and the
//! [`ResNetConfig`] they fit. [`load_backbone`] produces it from a file; [`build_backbone`] turns
//! it into a Burn module.

use crate::config::Config;
use crate::error::TrainError;
use burn::module::Module;
use burn::tensor::Device;
use carp_core::resnet::{Arch, ResNet, ResNetConfig};
use carp_io::keymap::{
    backbone_from_carp_names, backbone_to_carp_names, import_backbone, infer_resnet, Format,
};
use carp_io::params::{self, ApplyIssue, HostTensor};
use std::collections::BTreeMap;
use std::path::Path;

/// Which weights to load and how to read the file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// File format: `"carp-native"` for carp's own run checkpoints, a method layout of
    /// [`carp_io::keymap::Format`] (`carp`, `dino`, `swav`, `mocov3`, `vicreg`, `torchvision`,
    /// ...) for other files; `None` detects it.
    pub format: Option<String>,
    /// Network inside the checkpoint: `"teacher"` (default, spec §8) or `"student"` for carp
    /// and DINO layouts; for other layouts the top-level entry to take (default: the layout's).
    pub key: Option<String>,
    /// Expected architecture (`resnet18`, `resnet34`, `resnet50`); an error when the checkpoint
    /// holds another. Needed by formats that do not record it.
    pub arch: Option<String>,
}

/// Backbone weights with torchvision parameter names (no prefix) and the ResNet they fit.
#[derive(Clone, Debug, PartialEq)]
pub struct BackboneWeights {
    /// The backbone configuration the tensors fit.
    pub resnet: ResNetConfig,
    /// Tensors by torchvision name.
    pub tensors: BTreeMap<String, HostTensor>,
    /// Where they came from, for reports (`carp checkpoint PATH (teacher, step N)`).
    pub origin: String,
}

/// Format tag of carp's own checkpoints for `--format`.
pub const CARP_NATIVE: &str = "carp-native";

fn bad(key: &str, message: String) -> TrainError {
    TrainError::Config {
        key: key.into(),
        message,
    }
}

/// Parses an architecture name, naming the flag in the error.
pub fn parse_arch(name: &str) -> Result<Arch, TrainError> {
    Arch::parse(name).ok_or_else(|| {
        bad(
            "--arch",
            format!("unknown architecture `{name}` (resnet18, resnet34, resnet50)"),
        )
    })
}

/// Reads the backbone of a checkpoint at `path` as torchvision-named tensors.
///
/// Carp run checkpoints (format `None` or `"carp-native"`): the `<key>.backbone.*` tensors (key
/// `teacher` by default), with Burn's BatchNorm `gamma`/`beta` renamed to torchvision's
/// `weight`/`bias`, and the ResNet configuration from the run configuration in the metadata.
/// Anything else (a `.pth` of the CARP release or another method, a torchvision-named
/// `.safetensors` written by `carp convert`) goes through [`carp_io::keymap::import_backbone`]
/// with the layout named by `format` (detected when `None`), and the ResNet is inferred from
/// the tensor shapes.
///
/// # Errors
/// A clear error for an unknown format or key, a file that is neither, a checkpoint without
/// that network, or an `arch` that differs from the checkpoint's.
pub fn load_backbone(path: &Path, opts: &LoadOptions) -> Result<BackboneWeights, TrainError> {
    match opts.format.as_deref() {
        Some(CARP_NATIVE) => load_carp(path, opts),
        None if is_carp_run_checkpoint(path) => load_carp(path, opts),
        other => load_imported(path, other, opts),
    }
}

/// Whether `path` is a safetensors file whose metadata marks a carp run checkpoint (reads
/// only the header).
fn is_carp_run_checkpoint(path: &Path) -> bool {
    use std::io::Read;
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    let mut len = [0u8; 8];
    if file.read_exact(&mut len).is_err() {
        return false;
    }
    let len = u64::from_le_bytes(len);
    if len > 100_000_000 {
        return false;
    }
    let mut header = vec![0u8; len as usize];
    if file.read_exact(&mut header).is_err() {
        return false;
    }
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(&header) else {
        return false;
    };
    json["__metadata__"]["carp"]
        .as_str()
        .and_then(|meta| serde_json::from_str::<serde_json::Value>(meta).ok())
        .is_some_and(|meta| meta["format"] == crate::state::FORMAT)
}

fn load_imported(
    path: &Path,
    format: Option<&str>,
    opts: &LoadOptions,
) -> Result<BackboneWeights, TrainError> {
    let format = format
        .map(|f| {
            f.parse::<Format>().map_err(|e| {
                bad(
                    "--format",
                    format!("{e} (or {CARP_NATIVE} for carp's own run checkpoints)"),
                )
            })
        })
        .transpose()?;
    let key = opts.key.as_deref();
    let imported = import_backbone(path, format, key)?;
    let resnet = infer_resnet(&imported.backbone).map_err(|e| {
        bad(
            "--format",
            format!(
                "{}: the {} layout gives no ResNet backbone ({e}); is it the right --format?",
                path.display(),
                imported.format
            ),
        )
    })?;
    if let Some(arch) = &opts.arch {
        let want = parse_arch(arch)?;
        if want != resnet.arch {
            return Err(bad(
                "--arch",
                format!(
                    "--arch {arch} given, but {} holds a {:?}",
                    path.display(),
                    resnet.arch
                ),
            ));
        }
    }
    let entry = if imported.report.top.is_empty() {
        String::new()
    } else {
        format!(" (entry `{}`)", imported.report.top)
    };
    Ok(BackboneWeights {
        resnet,
        tensors: imported.backbone,
        origin: format!("{} checkpoint {}{entry}", imported.format, path.display()),
    })
}

fn load_carp(path: &Path, opts: &LoadOptions) -> Result<BackboneWeights, TrainError> {
    let key = opts.key.as_deref().unwrap_or("teacher");
    if key != "teacher" && key != "student" {
        return Err(bad(
            "--key",
            format!("unknown network `{key}` (teacher or student)"),
        ));
    }
    let ckpt = carp_io::read_checkpoint(path)?;
    let fail = |message: String| TrainError::Resume {
        path: path.to_path_buf(),
        message,
    };
    if ckpt.meta["format"] != crate::state::FORMAT {
        return Err(fail(format!(
            "not a carp checkpoint (metadata format {}); for PyTorch files pass --format",
            ckpt.meta["format"]
        )));
    }
    let text = ckpt.meta["config"]
        .as_str()
        .ok_or_else(|| fail("no run configuration in the metadata".into()))?;
    let cfg = Config::from_toml(text, &format!("{} metadata", path.display()))?;
    let resnet = cfg.model_config().backbone;
    if let Some(arch) = &opts.arch {
        let want = parse_arch(arch)?;
        if want != resnet.arch {
            return Err(fail(format!(
                "--arch {arch} given, but the checkpoint holds a {:?}",
                resnet.arch
            )));
        }
    }
    let prefix = format!("{key}.backbone.");
    let burn_named: BTreeMap<String, HostTensor> = ckpt
        .tensors
        .into_iter()
        .filter_map(|(k, t)| Some((k.strip_prefix(&prefix)?.to_string(), t)))
        .collect();
    if burn_named.is_empty() {
        return Err(fail(format!("no `{prefix}*` tensors")));
    }
    let step = ckpt.meta["next_step"].as_u64().unwrap_or(0);
    Ok(BackboneWeights {
        resnet,
        tensors: backbone_from_carp_names(&burn_named),
        origin: format!("carp checkpoint {} ({key}, step {step})", path.display()),
    })
}

/// A [`ResNet`] on `device` holding `weights`.
///
/// Tensors the backbone does not have (a torchvision `fc.*` classifier, for instance) are
/// ignored and logged.
///
/// # Errors
/// When a backbone tensor is missing or has another shape, naming it.
pub fn build_backbone(weights: &BackboneWeights, device: &Device) -> Result<ResNet, TrainError> {
    let fresh = weights.resnet.init(device, 0);
    let burn_named = backbone_to_carp_names(&weights.tensors);
    let expected = params::collect(&fresh, "");
    let unused: Vec<&String> = burn_named
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .collect();
    if !unused.is_empty() {
        tracing::warn!(
            "{}: {} tensors not in the backbone ignored (first: {})",
            weights.origin,
            unused.len(),
            unused[0]
        );
    }
    let (backbone, issues) = params::apply(fresh, &burn_named, "");
    if let Some(issue) = issues.first() {
        return Err(bad(
            "--checkpoint",
            match issue {
                ApplyIssue::Missing(key) => format!("{}: missing tensor `{key}`", weights.origin),
                ApplyIssue::Shape {
                    key,
                    expected,
                    found,
                } => format!(
                    "{}: `{key}` has shape {found:?}, the backbone expects {expected:?}",
                    weights.origin
                ),
            },
        ));
    }
    Ok(backbone.valid())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use carp_core::lars::Lars;
    use carp_core::model::StudentTeacher;

    fn tiny_checkpoint(dir: &Path) -> (std::path::PathBuf, StudentTeacher) {
        let mut cfg = Config::preset("tiny").unwrap();
        cfg.run.out = dir.display().to_string();
        let device = Device::flex();
        let model = StudentTeacher::new(&cfg.model_config(), &device, 3);
        let ckpt = crate::state::snapshot(&model, &Lars::default(), 7, 0, &cfg);
        let path = dir.join("checkpoint.safetensors");
        carp_io::write_checkpoint(&path, &ckpt).unwrap();
        (path, model)
    }

    #[test]
    fn carp_checkpoint_round_trips_through_torchvision_names() {
        let dir = tempfile::tempdir().unwrap();
        let (path, model) = tiny_checkpoint(dir.path());
        let w = load_backbone(&path, &LoadOptions::default()).unwrap();
        assert!(w.tensors.contains_key("bn1.weight") && w.tensors.contains_key("bn1.running_var"));
        assert!(w.tensors.contains_key("layer1.0.conv1.weight"));
        assert!(!w
            .tensors
            .keys()
            .any(|k| k.ends_with("gamma") || k.starts_with("head")));
        assert!(w.origin.contains("teacher") && w.origin.contains("step 7"));
        let backbone = build_backbone(&w, &Device::flex()).unwrap();
        assert_eq!(
            params::collect(&backbone, ""),
            params::collect(&model.teacher.backbone, "")
        );
        // The student is another network (same values at init are possible: compare the key).
        let s = load_backbone(
            &path,
            &LoadOptions {
                key: Some("student".into()),
                ..LoadOptions::default()
            },
        )
        .unwrap();
        assert!(s.origin.contains("student"));
    }

    #[test]
    fn bad_options_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = tiny_checkpoint(dir.path());
        let err = |opts: LoadOptions| load_backbone(&path, &opts).unwrap_err().to_string();
        let e = err(LoadOptions {
            format: Some("pytorch".into()),
            ..LoadOptions::default()
        });
        assert!(e.contains("--format") && e.contains("pytorch"), "{e}");
        let e = err(LoadOptions {
            key: Some("head".into()),
            ..LoadOptions::default()
        });
        assert!(e.contains("--key") && e.contains("head"), "{e}");
        let e = err(LoadOptions {
            arch: Some("resnet50".into()),
            ..LoadOptions::default()
        });
        assert!(e.contains("--arch resnet50"), "{e}");
        let e = err(LoadOptions {
            arch: Some("vgg".into()),
            ..LoadOptions::default()
        });
        assert!(e.contains("unknown architecture `vgg`"), "{e}");
        let missing = load_backbone(
            &dir.path().join("nope.safetensors"),
            &LoadOptions::default(),
        );
        assert!(missing
            .unwrap_err()
            .to_string()
            .contains("nope.safetensors"));
    }

    /// The CARP-release-layout `.pth` fixture of carp-io (torchvision ResNet-18 at width 4,
    /// `module.backbone.` prefixes, `args` Namespace, optimiser state) loads through the same
    /// entry point as carp's own checkpoints, detected or named, teacher or student.
    #[test]
    fn pytorch_checkpoints_go_through_the_importer() {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../carp-io/tests/fixtures/pth/carp_zip.pth");
        let teacher = load_backbone(&fixture, &LoadOptions::default()).unwrap();
        assert_eq!(teacher.resnet.arch, Arch::Resnet18);
        assert!(teacher.origin.contains("teacher"), "{}", teacher.origin);
        let named = load_backbone(
            &fixture,
            &LoadOptions {
                format: Some("carp".into()),
                ..LoadOptions::default()
            },
        )
        .unwrap();
        assert_eq!(named.tensors, teacher.tensors);
        let student = load_backbone(
            &fixture,
            &LoadOptions {
                key: Some("student".into()),
                ..LoadOptions::default()
            },
        )
        .unwrap();
        assert_ne!(student.tensors, teacher.tensors);
        let backbone = build_backbone(&teacher, &Device::flex()).unwrap();
        let loaded = params::collect(&backbone, "");
        assert_eq!(
            loaded["conv1.weight"].values,
            teacher.tensors["conv1.weight"].values
        );
        let e = load_backbone(
            &fixture,
            &LoadOptions {
                arch: Some("resnet50".into()),
                ..LoadOptions::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("--arch resnet50"), "{e}");
        let e = load_backbone(
            &fixture,
            &LoadOptions {
                format: Some("mocov3".into()),
                ..LoadOptions::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("carp_zip.pth") && e.contains("state_dict"),
            "{e}"
        );
    }
}
