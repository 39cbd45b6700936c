//! Imported weights written back out: torchvision names for PyTorch users, or carp's own.

use crate::checkpoint::{write_checkpoint, Checkpoint};
use crate::error::IoError;
use crate::keymap::{self, Imported};
use crate::params::HostTensor;
use safetensors::tensor::{Dtype, TensorView};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Which names an export uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Names {
    /// torchvision ResNet names (`bn1.weight`), loadable by
    /// `torchvision.models.resnet50().load_state_dict(..., strict=False)` (only `fc.*` is
    /// missing); the head, if written, under `head.` in PyTorch's layout.
    Torchvision,
    /// carp's module paths (`backbone.bn1.gamma`, `head.mlp.0.weight` as `[in, out]`) in a
    /// carp checkpoint file with JSON metadata.
    Carp,
}

impl std::str::FromStr for Names {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "torchvision" | "pytorch" => Ok(Names::Torchvision),
            "carp" => Ok(Names::Carp),
            _ => Err(format!("unknown export names `{s}` (torchvision or carp)")),
        }
    }
}

/// Writes the backbone (and with `with_head` the CARP head) of `imported` to a
/// `.safetensors` file; returns the number of tensors written.
pub fn export(
    imported: &Imported,
    out: &Path,
    names: Names,
    with_head: bool,
) -> Result<usize, IoError> {
    let cfg = keymap::infer_resnet(&imported.backbone)?;
    let head = match (with_head, &imported.head) {
        (false, _) => None,
        (true, Some(h)) => Some(h),
        (true, None) => {
            return Err(IoError::Layout {
                path: out.to_path_buf(),
                reason: format!(
                    "--with-head: the {} checkpoint has no CARP head",
                    imported.format
                ),
            })
        }
    };
    let layout = |reason: String| IoError::Layout {
        path: out.to_path_buf(),
        reason,
    };
    let mut meta = serde_json::json!({
        "format": "carp-weights",
        "source_format": imported.format.name(),
        "resnet": cfg,
        "metadata": imported.metadata,
    });
    match names {
        Names::Carp => {
            let mut tensors: BTreeMap<String, HostTensor> =
                keymap::backbone_to_carp_names(&imported.backbone)
                    .into_iter()
                    .map(|(k, t)| (format!("backbone.{k}"), t))
                    .collect();
            if let Some(h) = head {
                meta["head"] = serde_json::to_value(keymap::infer_head(h)?).expect("plain data");
                for (k, t) in keymap::head_to_carp_names(h).map_err(layout)? {
                    tensors.insert(format!("head.{k}"), t);
                }
            }
            let n = tensors.len();
            write_checkpoint(out, &Checkpoint { tensors, meta }).map_err(|e| IoError::Format {
                path: out.to_path_buf(),
                reason: e.to_string(),
            })?;
            Ok(n)
        }
        Names::Torchvision => {
            let mut tensors: BTreeMap<String, &HostTensor> = imported
                .backbone
                .iter()
                .map(|(k, t)| (k.clone(), t))
                .collect();
            if let Some(h) = head {
                for (k, t) in h {
                    tensors.insert(format!("head.{k}"), t);
                }
            }
            // torchvision's BatchNorm2d also holds a step counter; writing it (0) leaves
            // `fc.*` as the only missing keys in `load_state_dict(strict=False)`.
            let counters: Vec<String> = imported
                .backbone
                .keys()
                .filter_map(|k| k.strip_suffix(".running_mean"))
                .map(|m| format!("{m}.num_batches_tracked"))
                .collect();
            let zero = 0i64.to_le_bytes();
            let bytes: BTreeMap<&str, Vec<u8>> = tensors
                .iter()
                .map(|(k, t)| {
                    (
                        k.as_str(),
                        t.values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                    )
                })
                .collect();
            let mut views = Vec::new();
            for (k, t) in &tensors {
                let view = TensorView::new(Dtype::F32, t.shape.clone(), &bytes[k.as_str()])
                    .map_err(|e| layout(format!("tensor `{k}`: {e}")))?;
                views.push((k.clone(), view));
            }
            for k in &counters {
                let view = TensorView::new(Dtype::I64, vec![], &zero)
                    .map_err(|e| layout(format!("tensor `{k}`: {e}")))?;
                views.push((k.clone(), view));
            }
            let n = views.len();
            let mut info = HashMap::new();
            info.insert("format".to_string(), "pt".to_string());
            info.insert(
                crate::checkpoint::METADATA_KEY.to_string(),
                meta.to_string(),
            );
            let data =
                safetensors::serialize(views, Some(info)).map_err(|e| layout(e.to_string()))?;
            std::fs::write(out, data).map_err(|source| IoError::Io {
                path: out.to_path_buf(),
                source,
            })?;
            Ok(n)
        }
    }
}
