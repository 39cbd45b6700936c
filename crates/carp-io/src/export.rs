//! Imported weights written back out: torchvision names for PyTorch users, or carp's own.

use crate::checkpoint::WEIGHTS_FORMAT;
use crate::checkpoint::{write_checkpoint, Checkpoint};
use crate::error::{ImportError, UnknownName};
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
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        match s.to_ascii_lowercase().as_str() {
            "torchvision" | "pytorch" => Ok(Names::Torchvision),
            "carp" => Ok(Names::Carp),
            _ => Err(UnknownName {
                what: "export naming",
                name: s.to_string(),
                known: vec!["torchvision", "carp"],
            }),
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
) -> Result<usize, ImportError> {
    let cfg = imported.resnet()?;
    let head = match (with_head, &imported.head) {
        (false, _) => None,
        (true, Some(h)) => Some(h),
        (true, None) => {
            return Err(ImportError::layout(
                &imported.path,
                format!("the {} checkpoint has no CARP head", imported.format),
            ))
        }
    };
    let layout = |reason: String| ImportError::layout(out, reason);
    let mut meta = serde_json::json!({
        "format": WEIGHTS_FORMAT,
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
            if head.is_some() {
                meta["head"] = serde_json::to_value(imported.head_config()?).expect("plain data");
            }
            if let Some(h) = head {
                let carp = keymap::head_to_carp_names(h).map_err(|source| ImportError::Layout {
                    path: imported.path.clone(),
                    source,
                })?;
                for (k, t) in carp {
                    tensors.insert(format!("head.{k}"), t);
                }
            }
            let n = tensors.len();
            write_checkpoint(out, &Checkpoint { tensors, meta })?;
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
            std::fs::write(out, data).map_err(|source| ImportError::io(out, source))?;
            Ok(n)
        }
    }
}
