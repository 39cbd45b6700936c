//! Atomic single-file checkpoints: named f32 tensors + JSON metadata in safetensors.

use crate::error::CheckpointError;
use crate::params::HostTensor;
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The metadata key holding the checkpoint's JSON document.
pub const METADATA_KEY: &str = "carp";

/// `format` of a training run's checkpoint: `student.*`, `teacher.*` and `optim.*` tensors
/// with Burn names, the run state and configuration in the metadata.
pub const RUN_FORMAT: &str = "carp-checkpoint";

/// `format` of weights written by `carp convert` (`backbone.*`, `head.*`).
pub const WEIGHTS_FORMAT: &str = "carp-weights";

/// Which of carp's own files a checkpoint is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CarpFile {
    /// A training run's checkpoint ([`RUN_FORMAT`]).
    Run,
    /// Converted weights in carp's names ([`WEIGHTS_FORMAT`]).
    Weights,
}

impl CarpFile {
    /// What a file with this metadata document and these tensor names is, if one of carp's
    /// own: the one test of "is this a carp checkpoint" every reader uses.
    ///
    /// `carp convert --to torchvision` also tags its files [`WEIGHTS_FORMAT`] but writes
    /// torchvision names, so converted weights count only with carp's `backbone.` prefix.
    pub fn detect<'a>(
        meta: &serde_json::Value,
        mut names: impl Iterator<Item = &'a String>,
    ) -> Option<Self> {
        match meta["format"].as_str()? {
            RUN_FORMAT => Some(Self::Run),
            WEIGHTS_FORMAT if names.any(|k| k.starts_with("backbone.")) => Some(Self::Weights),
            _ => None,
        }
    }
}

/// Named tensors plus a JSON document (step, config, ...).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Checkpoint {
    /// Tensors by name (`student.backbone.conv1.weight`, `optim.momentum.…`).
    pub tensors: BTreeMap<String, HostTensor>,
    /// Free-form metadata; the training loop stores its state here.
    pub meta: serde_json::Value,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `ckpt` to `path` atomically: a temporary file in the same directory is written,
/// flushed to disk and renamed over `path`, so readers see the old file or the new one, never
/// a partial one.
pub fn write_checkpoint(path: &Path, ckpt: &Checkpoint) -> Result<(), CheckpointError> {
    let bytes: BTreeMap<&str, Vec<u8>> = ckpt
        .tensors
        .iter()
        .map(|(k, t)| {
            let mut b = Vec::with_capacity(t.values.len() * 4);
            for v in &t.values {
                b.extend_from_slice(&v.to_le_bytes());
            }
            (k.as_str(), b)
        })
        .collect();
    let views: Vec<(&str, TensorView<'_>)> = ckpt
        .tensors
        .iter()
        .map(|(k, t)| {
            let view = TensorView::new(Dtype::F32, t.shape.clone(), &bytes[k.as_str()])
                .expect("shape matches data");
            (k.as_str(), view)
        })
        .collect();
    let mut meta = HashMap::new();
    meta.insert(METADATA_KEY.to_string(), ckpt.meta.to_string());
    let data = safetensors::serialize(views, Some(meta)).map_err(|e| CheckpointError::Format {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let tmp = temp_path(path);
    {
        let mut f = File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(&data).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io(path))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Make the rename itself durable; not every platform can open a directory.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp{}", std::process::id()));
    path.with_file_name(name)
}

/// Reads a checkpoint written by [`write_checkpoint`]; a truncated or foreign file is a
/// [`CheckpointError::Format`] naming the path.
pub fn read_checkpoint(path: &Path) -> Result<Checkpoint, CheckpointError> {
    let data = fs::read(path).map_err(io(path))?;
    let format = |reason: String| CheckpointError::Format {
        path: path.to_path_buf(),
        reason,
    };
    let st = SafeTensors::deserialize(&data).map_err(|e| format(e.to_string()))?;
    let (_, header) = SafeTensors::read_metadata(&data).map_err(|e| format(e.to_string()))?;
    let meta = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get(METADATA_KEY))
        .ok_or_else(|| format(format!("no `{METADATA_KEY}` metadata")))?;
    let meta: serde_json::Value =
        serde_json::from_str(meta).map_err(|e| format(format!("metadata: {e}")))?;
    let mut tensors = BTreeMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(format(format!(
                "tensor `{name}` is {:?}, expected F32",
                view.dtype()
            )));
        }
        let values = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        tensors.insert(
            name,
            HostTensor {
                shape: view.shape().to_vec(),
                values,
            },
        );
    }
    Ok(Checkpoint { tensors, meta })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        let mut tensors = BTreeMap::new();
        tensors.insert(
            "a.weight".to_string(),
            HostTensor {
                shape: vec![2, 3],
                values: vec![1.0, -2.0, 3.5, 0.0, 1e-7, f32::MAX],
            },
        );
        tensors.insert(
            "b".to_string(),
            HostTensor {
                shape: vec![1],
                values: vec![42.0],
            },
        );
        Checkpoint {
            tensors,
            meta: serde_json::json!({"step": 7, "config": "x = 1"}),
        }
    }

    #[test]
    fn round_trip_is_exact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint.safetensors");
        write_checkpoint(&path, &sample()).unwrap();
        assert_eq!(read_checkpoint(&path).unwrap(), sample());
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn truncated_file_is_a_format_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint.safetensors");
        write_checkpoint(&path, &sample()).unwrap();
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() - 5]).unwrap();
        let err = read_checkpoint(&path).unwrap_err();
        assert!(matches!(err, CheckpointError::Format { .. }), "{err}");
        assert!(err.to_string().contains("checkpoint.safetensors"), "{err}");
    }

    #[test]
    fn carp_files_are_told_by_metadata_and_names() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let run = serde_json::json!({"format": RUN_FORMAT});
        let weights = serde_json::json!({"format": WEIGHTS_FORMAT});
        let carp_named = names(&["backbone.bn1.gamma", "head.mlp.0.weight"]);
        let tv_named = names(&["bn1.weight", "conv1.weight"]);
        assert_eq!(
            CarpFile::detect(&run, names(&["student.x"]).iter()),
            Some(CarpFile::Run)
        );
        assert_eq!(
            CarpFile::detect(&weights, carp_named.iter()),
            Some(CarpFile::Weights)
        );
        assert_eq!(CarpFile::detect(&weights, tv_named.iter()), None);
        assert_eq!(
            CarpFile::detect(&serde_json::json!({"step": 1}), carp_named.iter()),
            None
        );
    }

    #[test]
    fn foreign_file_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.safetensors");
        fs::write(&path, b"not a checkpoint at all").unwrap();
        assert!(matches!(
            read_checkpoint(&path),
            Err(CheckpointError::Format { .. })
        ));
    }
}
