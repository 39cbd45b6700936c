//! Other methods' checkpoint layouts mapped onto torchvision ResNet names, and those weights
//! loaded into carp's [`ResNet`] and [`CarpHead`].
//!
//! Each method is a small declarative [`Rule`]: which top-level entry holds the weights,
//! which prefixes to strip, which sub-module to keep, which keys to drop. [`import_backbone`]
//! applies one (given or detected) to a `.pth` file or a `.safetensors` file (torchvision
//! names as `carp convert` writes them, or carp's own checkpoints) and gives torchvision
//! names; [`apply_backbone`] and [`apply_head`] place them into carp modules, reporting
//! missing and unexpected keys as PyTorch's `load_state_dict(strict=False)` does and failing
//! on a shape mismatch.

use crate::checkpoint::{CarpFile, METADATA_KEY};
use crate::error::{CheckpointError, ImportError, LayoutError, UnknownName};
use crate::params::{self, ApplyIssue, HostTensor};
use crate::pytorch::{self, PthFile};
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};
use carp_core::head::{CarpHead, CarpHeadConfig};
use carp_core::path::ParamPath;
use carp_core::resnet::{Arch, ResNet, ResNetConfig};
use safetensors::tensor::Dtype;
use safetensors::SafeTensors;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Where a checkpoint comes from, which fixes how its keys map to torchvision names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// CARP release (spec §8): `teacher` / `student`, `module.backbone.*`, `module.head.*`;
    /// also carp's own `.safetensors` checkpoints.
    Carp,
    /// DINO (ResNet): the same layout as CARP.
    Dino,
    /// SwAV: `state_dict` or the root, `module.` prefix.
    Swav,
    /// DeepCluster-v2: as SwAV.
    DeepClusterV2,
    /// SeLa-v2: as SwAV.
    SelaV2,
    /// MoCo v3: `state_dict`, `module.base_encoder.*` minus `fc`.
    MocoV3,
    /// Barlow Twins: a plain torchvision state dict.
    Barlow,
    /// VICReg: `model`, `module.backbone.*`.
    Vicreg,
    /// InfoMin: `model`, `encoder.*`.
    InfoMin,
    /// OBoW: `network`, minus `fc`.
    Obow,
    /// PCL v2: `state_dict`, `module.encoder_q.*` minus `fc`.
    PclV2,
    /// Triplet: `state_dict`, `module.` prefix.
    Triplet,
    /// A torchvision ResNet state dict (`fc` dropped).
    Torchvision,
}

impl Format {
    /// Every format, in the order `--help` lists them.
    pub const ALL: [Format; 13] = [
        Format::Carp,
        Format::Dino,
        Format::Swav,
        Format::DeepClusterV2,
        Format::SelaV2,
        Format::MocoV3,
        Format::Barlow,
        Format::Vicreg,
        Format::InfoMin,
        Format::Obow,
        Format::PclV2,
        Format::Triplet,
        Format::Torchvision,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Format::Carp => "carp",
            Format::Dino => "dino",
            Format::Swav => "swav",
            Format::DeepClusterV2 => "deepcluster-v2",
            Format::SelaV2 => "sela-v2",
            Format::MocoV3 => "mocov3",
            Format::Barlow => "barlow",
            Format::Vicreg => "vicreg",
            Format::InfoMin => "infomin",
            Format::Obow => "obow",
            Format::PclV2 => "pcl-v2",
            Format::Triplet => "triplet",
            Format::Torchvision => "torchvision",
        }
    }

    /// The key map of this format.
    pub fn rule(self) -> Rule {
        const STATE_OR_ROOT: &[&str] = &["state_dict", ""];
        match self {
            Format::Carp | Format::Dino => Rule {
                top: &["teacher"],
                strip: &["module."],
                keep: &["backbone."],
                drop: &["fc."],
                head: Some("head."),
            },
            Format::Swav | Format::DeepClusterV2 | Format::SelaV2 => Rule {
                top: STATE_OR_ROOT,
                strip: &["module."],
                keep: &[],
                drop: &["fc.", "projection_head.", "prototypes."],
                head: None,
            },
            Format::MocoV3 => Rule {
                top: &["state_dict"],
                strip: &["module."],
                keep: &["base_encoder."],
                drop: &["fc."],
                head: None,
            },
            // `head.*`: the CARP head `carp convert --with-head` writes beside the backbone.
            Format::Barlow | Format::Torchvision => Rule {
                top: &["state_dict", ""],
                strip: &[],
                keep: &[],
                drop: &["fc.", "head."],
                head: Some("head."),
            },
            Format::Vicreg => Rule {
                top: &["model", ""],
                strip: &["module."],
                keep: &["backbone.", ""],
                drop: &["fc."],
                head: None,
            },
            Format::InfoMin => Rule {
                top: &["model"],
                strip: &["module."],
                keep: &["encoder."],
                drop: &["fc."],
                head: None,
            },
            Format::Obow => Rule {
                top: &["network"],
                strip: &["module."],
                keep: &[],
                drop: &["fc."],
                head: None,
            },
            Format::PclV2 => Rule {
                top: &["state_dict"],
                strip: &["module."],
                keep: &["encoder_q."],
                drop: &["fc."],
                head: None,
            },
            Format::Triplet => Rule {
                top: &["state_dict"],
                strip: &["module."],
                keep: &[],
                drop: &["fc."],
                head: None,
            },
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        let norm: String = s
            .to_ascii_lowercase()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        let found = match norm.as_str() {
            "carp" => Format::Carp,
            "dino" => Format::Dino,
            "swav" => Format::Swav,
            "deepclusterv2" | "dcv2" => Format::DeepClusterV2,
            "selav2" => Format::SelaV2,
            "mocov3" => Format::MocoV3,
            "barlow" | "barlowtwins" => Format::Barlow,
            "vicreg" => Format::Vicreg,
            "infomin" => Format::InfoMin,
            "obow" => Format::Obow,
            "pclv2" | "pcl" => Format::PclV2,
            "triplet" => Format::Triplet,
            "torchvision" | "tv" => Format::Torchvision,
            _ => {
                return Err(UnknownName {
                    what: "checkpoint format",
                    name: s.to_string(),
                    known: Format::ALL.iter().map(|f| f.name()).collect(),
                });
            }
        };
        Ok(found)
    }
}

/// A method's key map, applied in this order: take `top`, strip `strip`, keep `keep`,
/// strip `strip` again, drop `drop`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Top-level entries tried in order; `""` is the root itself.
    pub top: &'static [&'static str],
    /// Prefixes removed from every key (repeatedly: `module.module.` goes too).
    pub strip: &'static [&'static str],
    /// Sub-module prefixes tried in order; the first that some key has is kept (and removed),
    /// the rest dropped. Empty: keep everything; `""` as an entry: fall back to everything.
    pub keep: &'static [&'static str],
    /// Keys (after the steps above) with these prefixes are dropped: classifiers, projectors.
    pub drop: &'static [&'static str],
    /// Prefix (after stripping) of the CARP head, when the layout has one.
    pub head: Option<&'static str>,
}

fn strip_all<'a>(mut key: &'a str, prefixes: &[&str]) -> &'a str {
    while let Some(rest) = prefixes.iter().find_map(|p| key.strip_prefix(p)) {
        key = rest;
    }
    key
}

/// What a key map did to a checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapReport {
    /// The top-level entry the weights came from (`""`: the root).
    pub top: String,
    /// The kept sub-module prefix (`""`: all).
    pub kept_prefix: String,
    /// Keys dropped by the rule (`fc.*`, `num_batches_tracked`, ...), torchvision names.
    pub dropped: Vec<String>,
    /// Tensors outside the selected entry or sub-module (other networks, optimiser state).
    pub ignored: usize,
}

/// Missing and unexpected keys of a load, as PyTorch's `load_state_dict(strict=False)`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Parameters of the module the file did not provide (they keep their initial value).
    pub missing: Vec<String>,
    /// Tensors in the file the module has no place for.
    pub unexpected: Vec<String>,
}

impl LoadReport {
    /// Whether every parameter was loaded and every tensor used.
    pub fn is_exact(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty()
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "missing keys: {:?}, unexpected keys: {:?}",
            self.missing, self.unexpected
        )
    }
}

/// Weights taken from a checkpoint, in torchvision / PyTorch names.
#[derive(Clone, Debug, PartialEq)]
pub struct Imported {
    /// The file they were read from.
    pub path: PathBuf,
    /// Backbone tensors with torchvision ResNet names, no prefix, `fc` and
    /// `num_batches_tracked` dropped (`conv1.weight`, `bn1.running_mean`, ...).
    pub backbone: BTreeMap<String, HostTensor>,
    /// The CARP head in PyTorch names without `head.` (`mlp.0.weight` `[out, in]`,
    /// `last_layer.weight_g`, `last_layer.weight_v`), for layouts that carry one.
    pub head: Option<BTreeMap<String, HostTensor>>,
    /// Plain values saved beside the weights (`epoch`, `args`, scaler state, ...).
    pub metadata: BTreeMap<String, String>,
    /// The format used.
    pub format: Format,
    /// Which of carp's own files this is, if one.
    pub carp_file: Option<CarpFile>,
    /// What the key map kept and dropped.
    pub report: MapReport,
}

/// The tensors of any supported file: PyTorch containers or safetensors.
pub fn read_tensors(path: &Path) -> Result<PthFile, ImportError> {
    if is_safetensors(path)? {
        read_safetensors(path)
    } else {
        pytorch::read_pth(path)
    }
}

fn is_safetensors(path: &Path) -> Result<bool, ImportError> {
    use std::io::Read;
    let io = |source| ImportError::io(path, source);
    let mut head = Vec::new();
    std::fs::File::open(path)
        .map_err(io)?
        .take(9)
        .read_to_end(&mut head)
        .map_err(io)?;
    // An 8-byte little-endian header length, then the JSON header's `{`.
    Ok(head.len() == 9
        && head[8] == b'{'
        && u64::from_le_bytes(head[..8].try_into().expect("8 bytes")) < 100_000_000)
}

fn read_safetensors(path: &Path) -> Result<PthFile, ImportError> {
    let data = std::fs::read(path).map_err(|source| ImportError::io(path, source))?;
    let format = |reason: String| ImportError::format(path, reason);
    let st = SafeTensors::deserialize(&data).map_err(|e| format(e.to_string()))?;
    let (_, header) = SafeTensors::read_metadata(&data).map_err(|e| format(e.to_string()))?;
    let mut out = PthFile {
        container: "Safetensors".into(),
        ..PthFile::default()
    };
    if let Some(meta) = header.metadata() {
        for (k, v) in meta {
            out.metadata.insert(k.clone(), v.clone());
        }
    }
    for (name, view) in st.tensors() {
        use pytorch_reader::DType as D;
        let dtype = match view.dtype() {
            Dtype::F32 => D::F32,
            Dtype::F16 => D::F16,
            Dtype::BF16 => D::BF16,
            Dtype::F64 => D::F64,
            Dtype::I64 => D::I64,
            Dtype::I32 => D::I32,
            Dtype::U8 => D::U8,
            Dtype::BOOL => D::Bool,
            other => return Err(format(format!("tensor `{name}` has unsupported {other:?}"))),
        };
        out.dtypes.insert(name.clone(), format!("{dtype:?}"));
        out.tensors.insert(
            name,
            HostTensor {
                shape: view.shape().to_vec(),
                values: pytorch::to_f32(view.data(), dtype),
            },
        );
    }
    Ok(out)
}

fn has_prefix<V>(keys: &BTreeMap<String, V>, prefix: &str) -> bool {
    keys.range(prefix.to_string()..)
        .next()
        .is_some_and(|(k, _)| k.starts_with(prefix))
}

/// Guesses the format from a checkpoint's keys; `None` where no rule fits unambiguously.
///
/// Layouts with identical rules (CARP/DINO, SwAV/DeepCluster-v2/SeLa-v2/Triplet,
/// Barlow/torchvision) are reported as the first of their group: the result is the same.
pub fn detect<V>(tensors: &BTreeMap<String, V>) -> Option<Format> {
    let p = |prefix: &str| has_prefix(tensors, prefix);
    if p("teacher.") || p("student.") {
        return Some(Format::Carp);
    }
    if p("state_dict.module.base_encoder.") {
        return Some(Format::MocoV3);
    }
    if p("state_dict.module.encoder_q.") {
        return Some(Format::PclV2);
    }
    if p("state_dict.module.conv1.") || p("module.conv1.") {
        return Some(Format::Swav);
    }
    if p("model.module.backbone.") || p("model.backbone.") {
        return Some(Format::Vicreg);
    }
    if p("model.encoder.") || p("model.module.encoder.") {
        return Some(Format::InfoMin);
    }
    if p("network.") {
        return Some(Format::Obow);
    }
    if p("conv1.") || p("state_dict.conv1.") {
        return Some(Format::Torchvision);
    }
    None
}

/// Reads `path` and maps its backbone (and CARP head) to torchvision / PyTorch names.
///
/// `format`: `None` detects it from the keys. `key`: overrides the top-level entry
/// (`student` for CARP/DINO, whose default is `teacher`). `.safetensors` files are read as
/// torchvision names (what `carp convert` writes) or as carp checkpoints (`teacher.backbone.*`
/// or `backbone.*` with Burn names).
pub fn import_backbone(
    path: &Path,
    format: Option<Format>,
    key: Option<&str>,
) -> Result<Imported, ImportError> {
    let layout = |reason: String| ImportError::layout(path, reason);
    // A `.pth` is only indexed here; its bytes are read once the entry to take is known, so
    // the other network and the optimiser state of a release checkpoint stay on disk.
    let (file, index) = if is_safetensors(path)? {
        let file = read_safetensors(path)?;
        if let Some(kind) = carp_file(&file) {
            return import_native(path, file, kind, format, key);
        }
        (Some(file), None)
    } else {
        (None, Some(pytorch::open_pth(path)?))
    };
    let keys: BTreeMap<String, ()> = match (&file, &index) {
        (Some(f), _) => f.tensors.keys().map(|k| (k.clone(), ())).collect(),
        (_, Some(i)) => i.keys().into_iter().map(|k| (k, ())).collect(),
        _ => unreachable!("one of the two is read"),
    };
    let is_safetensors = file.is_some();
    let detected = detect(&keys);
    let format = match format {
        // What `carp convert` writes is torchvision-named whatever the source was.
        Some(Format::Carp | Format::Dino)
            if is_safetensors && detected == Some(Format::Torchvision) =>
        {
            Format::Torchvision
        }
        Some(f) => f,
        None => detected.ok_or_else(|| {
            layout(format!(
                "cannot tell which method's layout this is (top-level keys {:?}); pass --format",
                top_level_keys(&keys)
            ))
        })?,
    };
    let rule = format.rule();
    let tops: Vec<&str> = match key {
        Some(k) => vec![k],
        None => rule.top.to_vec(),
    };
    let top = tops
        .iter()
        .copied()
        .find(|t| t.is_empty() || has_prefix(&keys, &format!("{t}.")))
        .ok_or_else(|| {
            layout(format!(
                "{format} layout: no `{}` entry (top-level keys {:?})",
                tops.join("` or `"),
                top_level_keys(&keys)
            ))
        })?;
    let top_prefix = if top.is_empty() {
        String::new()
    } else {
        format!("{top}.")
    };
    let mut report = MapReport {
        top: top.to_string(),
        ignored: keys.keys().filter(|k| !k.starts_with(&top_prefix)).count(),
        ..MapReport::default()
    };
    let file = match (file, index) {
        (Some(f), _) => f,
        (_, Some(i)) => i.read(|k| k.starts_with(&top_prefix))?,
        _ => unreachable!("one of the two is read"),
    };
    // Step 1: the selected entry, `strip` removed.
    let mut selected: BTreeMap<String, HostTensor> = BTreeMap::new();
    for (k, t) in file.tensors {
        if let Some(rest) = k.strip_prefix(&top_prefix) {
            selected.insert(strip_all(rest, rule.strip).to_string(), t);
        }
    }
    // Step 2: the head, then the kept sub-module.
    let head = rule.head.map(|prefix| {
        selected
            .iter()
            .filter_map(|(k, t)| Some((k.strip_prefix(prefix)?.to_string(), t.clone())))
            .filter(|(k, _)| !k.ends_with("num_batches_tracked"))
            .collect::<BTreeMap<_, _>>()
    });
    let keep = rule
        .keep
        .iter()
        .copied()
        .find(|p| p.is_empty() || has_prefix(&selected, p));
    if !rule.keep.is_empty() && keep.is_none() {
        return Err(layout(format!(
            "{format} layout: no `{}` weights under `{top}`",
            rule.keep.join("` or `")
        )));
    }
    let keep = keep.unwrap_or("");
    report.kept_prefix = keep.to_string();
    let mut backbone = BTreeMap::new();
    for (k, t) in selected {
        let Some(rest) = k.strip_prefix(keep) else {
            report.ignored += 1;
            continue;
        };
        let name = strip_all(rest, rule.strip).to_string();
        if rule.drop.iter().any(|d| name.starts_with(d)) || name.ends_with("num_batches_tracked") {
            report.dropped.push(name);
        } else {
            backbone.insert(name, t);
        }
    }
    if backbone.is_empty() {
        return Err(layout(format!(
            "{format} layout: no backbone tensors found"
        )));
    }
    let metadata = file
        .metadata
        .into_iter()
        .filter(|(k, _)| !k.starts_with("optimizer.") && !k.starts_with(&top_prefix))
        .collect();
    Ok(Imported {
        path: path.to_path_buf(),
        backbone,
        head: head.filter(|h| !h.is_empty()),
        metadata,
        format,
        carp_file: None,
        report,
    })
}

fn top_level_keys<V>(tensors: &BTreeMap<String, V>) -> Vec<String> {
    let set: BTreeSet<String> = tensors
        .keys()
        .map(|k| k.split('.').next().unwrap_or("").to_string())
        .collect();
    set.into_iter().take(12).collect()
}

/// Which of carp's own files a safetensors file is ([`CarpFile::detect`] on its metadata).
fn carp_file(file: &PthFile) -> Option<CarpFile> {
    let meta = file.metadata.get(METADATA_KEY)?;
    let meta: serde_json::Value = serde_json::from_str(meta).ok()?;
    CarpFile::detect(&meta, file.tensors.keys())
}

fn import_native(
    path: &Path,
    file: PthFile,
    kind: CarpFile,
    format: Option<Format>,
    key: Option<&str>,
) -> Result<Imported, ImportError> {
    if let Some(f) = format.filter(|f| *f != Format::Carp) {
        return Err(ImportError::layout(
            path,
            format!("this is a carp checkpoint, not the {f} layout"),
        ));
    }
    if let Some(k) = key.filter(|k| kind == CarpFile::Run && !["teacher", "student"].contains(k)) {
        return Err(ImportError::Option {
            path: path.to_path_buf(),
            key: "key",
            message: format!("unknown network `{k}` (teacher or student)"),
        });
    }
    let tensors = &file.tensors;
    let top = match key {
        Some(k) => format!("{k}."),
        None if has_prefix(tensors, "teacher.") => "teacher.".to_string(),
        None => String::new(),
    };
    let sub = |prefix: &str| -> BTreeMap<String, HostTensor> {
        tensors
            .iter()
            .filter_map(|(k, t)| Some((k.strip_prefix(prefix)?.to_string(), t.clone())))
            .collect()
    };
    let backbone = backbone_from_carp_names(&sub(&format!("{top}backbone.")));
    if backbone.is_empty() {
        return Err(ImportError::layout(
            path,
            format!("no `{top}backbone.*` tensors"),
        ));
    }
    let head = sub(&format!("{top}head."));
    let head = if head.is_empty() {
        None
    } else {
        Some(
            head_from_carp_names(&head).map_err(|source| ImportError::Layout {
                path: path.to_path_buf(),
                source,
            })?,
        )
    };
    Ok(Imported {
        path: path.to_path_buf(),
        backbone,
        head,
        metadata: file.metadata,
        format: Format::Carp,
        carp_file: Some(kind),
        report: MapReport {
            top: top.trim_end_matches('.').to_string(),
            kept_prefix: "backbone.".into(),
            dropped: Vec::new(),
            ignored: 0,
        },
    })
}

/// torchvision names -> carp's Burn names: BatchNorm `weight`/`bias` become `gamma`/`beta`
/// (a BatchNorm is recognised by its `running_mean`).
pub fn backbone_to_carp_names(tv: &BTreeMap<String, HostTensor>) -> BTreeMap<String, HostTensor> {
    tv.iter()
        .map(|(k, t)| {
            let renamed = k.rsplit_once('.').and_then(|(module, leaf)| {
                let is_bn = tv.contains_key(&format!("{module}.running_mean"));
                match leaf {
                    "weight" if is_bn => Some(format!("{module}.gamma")),
                    "bias" if is_bn => Some(format!("{module}.beta")),
                    _ => None,
                }
            });
            (renamed.unwrap_or_else(|| k.clone()), t.clone())
        })
        .collect()
}

/// One of carp's Burn names -> its torchvision name (`gamma`/`beta` back to `weight`/`bias`).
pub fn torchvision_name(carp: &str) -> String {
    if let Some(m) = carp.strip_suffix(".gamma") {
        format!("{m}.weight")
    } else if let Some(m) = carp.strip_suffix(".beta") {
        format!("{m}.bias")
    } else {
        carp.to_string()
    }
}

/// carp's Burn names -> torchvision names (`gamma`/`beta` back to `weight`/`bias`).
pub fn backbone_from_carp_names(
    carp: &BTreeMap<String, HostTensor>,
) -> BTreeMap<String, HostTensor> {
    carp.iter()
        .map(|(k, t)| (torchvision_name(k), t.clone()))
        .collect()
}

fn transpose(t: &HostTensor) -> HostTensor {
    let [r, c] = [t.shape[0], t.shape[1]];
    let mut values = vec![0.0; r * c];
    for i in 0..r {
        for j in 0..c {
            values[j * r + i] = t.values[i * c + j];
        }
    }
    HostTensor {
        shape: vec![c, r],
        values,
    }
}

/// The CARP head in PyTorch names (`mlp.{i}.*` of an `nn.Sequential`, `last_layer.weight_g`,
/// `last_layer.weight_v`) -> carp's names (`mlp.{j}.weight` transposed to Burn's `[in, out]`,
/// `norms.{j}.gamma`, `last_layer.weight_v`).
///
/// Fails where carp's head cannot represent the weights: a prototype scale `weight_g` other
/// than 1 (carp fixes `g = 1`, spec §1) or an MLP with a layer it does not have.
pub fn head_to_carp_names(
    head: &BTreeMap<String, HostTensor>,
) -> Result<BTreeMap<String, HostTensor>, LayoutError> {
    let mut out = BTreeMap::new();
    // nlayers = 1 is a bare Linear (`mlp.weight`), otherwise an nn.Sequential.
    let mut linear_idx = BTreeSet::new();
    let mut bn_idx = BTreeSet::new();
    if head.contains_key("mlp.weight") {
        linear_idx.insert(usize::MAX);
    }
    for (k, t) in head {
        let Some(rest) = k.strip_prefix("mlp.") else {
            continue;
        };
        let Some((idx, leaf)) = rest.split_once('.') else {
            continue;
        };
        let Ok(idx) = idx.parse::<usize>() else {
            continue;
        };
        if leaf == "weight" && t.shape.len() == 2 {
            linear_idx.insert(idx);
        } else if leaf == "running_mean" {
            bn_idx.insert(idx);
        }
    }
    if linear_idx.is_empty() {
        return Err(LayoutError("head: no `mlp` linear layers".into()));
    }
    let get = |k: &str| {
        head.get(k)
            .ok_or_else(|| LayoutError(format!("head: missing tensor `{k}`")))
    };
    for (j, &i) in linear_idx.iter().enumerate() {
        let m = if i == usize::MAX {
            "mlp".to_string()
        } else {
            format!("mlp.{i}")
        };
        out.insert(
            format!("mlp.{j}.weight"),
            transpose(get(&format!("{m}.weight"))?),
        );
        if let Some(b) = head.get(&format!("{m}.bias")) {
            out.insert(format!("mlp.{j}.bias"), b.clone());
        }
    }
    for (j, &i) in bn_idx.iter().enumerate() {
        for (from, to) in [
            ("weight", "gamma"),
            ("bias", "beta"),
            ("running_mean", "running_mean"),
            ("running_var", "running_var"),
        ] {
            out.insert(
                format!("norms.{j}.{to}"),
                get(&format!("mlp.{i}.{from}"))?.clone(),
            );
        }
    }
    // Weight norm: the old hook API (`weight_g`, `weight_v`) or parametrizations
    // (`parametrizations.weight.original0` = g, `original1` = v).
    let (g, v) = if head.contains_key("last_layer.weight_v") {
        (head.get("last_layer.weight_g"), get("last_layer.weight_v")?)
    } else if head.contains_key("last_layer.parametrizations.weight.original1") {
        (
            head.get("last_layer.parametrizations.weight.original0"),
            get("last_layer.parametrizations.weight.original1")?,
        )
    } else {
        return Err(LayoutError(
            "head: no prototype layer `last_layer.weight_v`".into(),
        ));
    };
    if let Some(g) = g {
        if let Some(bad) = g.values.iter().find(|x| (**x - 1.0).abs() > 1e-6) {
            return Err(LayoutError(format!(
                "head: prototype scale weight_g holds {bad}, but carp's prototypes fix g = 1 \
                 (spec §1); this head was trained with a free scale"
            )));
        }
    }
    out.insert("last_layer.weight_v".into(), v.clone());
    Ok(out)
}

/// Inverse of [`head_to_carp_names`] for a head built as carp builds it: PyTorch
/// `nn.Sequential` indices (Linear, BatchNorm, GELU per hidden layer), `weight_g` = 1.
pub fn head_from_carp_names(
    carp: &BTreeMap<String, HostTensor>,
) -> Result<BTreeMap<String, HostTensor>, LayoutError> {
    let nlayers = (0..)
        .take_while(|j| carp.contains_key(&format!("mlp.{j}.weight")))
        .count();
    let use_bn = carp.contains_key("norms.0.gamma");
    let stride = if use_bn { 3 } else { 2 };
    let mut out = BTreeMap::new();
    for j in 0..nlayers {
        let m = if nlayers == 1 {
            "mlp".to_string()
        } else {
            format!("mlp.{}", j * stride)
        };
        out.insert(
            format!("{m}.weight"),
            transpose(&carp[&format!("mlp.{j}.weight")]),
        );
        if let Some(b) = carp.get(&format!("mlp.{j}.bias")) {
            out.insert(format!("{m}.bias"), b.clone());
        }
        if use_bn && j + 1 < nlayers {
            for (from, to) in [
                ("gamma", "weight"),
                ("beta", "bias"),
                ("running_mean", "running_mean"),
                ("running_var", "running_var"),
            ] {
                let t = carp
                    .get(&format!("norms.{j}.{from}"))
                    .ok_or_else(|| LayoutError(format!("head: missing `norms.{j}.{from}`")))?;
                out.insert(format!("mlp.{}.{to}", j * stride + 1), t.clone());
            }
        }
    }
    let v = carp
        .get("last_layer.weight_v")
        .ok_or_else(|| LayoutError("head: missing `last_layer.weight_v`".into()))?;
    out.insert(
        "last_layer.weight_g".into(),
        HostTensor {
            shape: vec![v.shape[0], 1],
            values: vec![1.0; v.shape[0]],
        },
    );
    out.insert("last_layer.weight_v".into(), v.clone());
    Ok(out)
}

/// The ResNet a torchvision-named state dict describes: depth from the block counts and block
/// type, base width from `conv1`, small stem from a 3x3 `conv1` (7x7: ImageNet stem).
pub fn infer_resnet(backbone: &BTreeMap<String, HostTensor>) -> Result<ResNetConfig, LayoutError> {
    let bad = LayoutError;
    let conv1 = backbone
        .get("conv1.weight")
        .ok_or_else(|| bad("not a torchvision ResNet: no `conv1.weight`".into()))?;
    if conv1.shape.len() != 4 || conv1.shape[1] != 3 {
        return Err(bad(format!(
            "conv1.weight has shape {:?}, expected [width, 3, k, k]",
            conv1.shape
        )));
    }
    let small_stem = match conv1.shape[2] {
        3 => true,
        7 => false,
        k => return Err(bad(format!("conv1 is {k}x{k}; carp has 3x3 and 7x7 stems"))),
    };
    let mut blocks = [0usize; 4];
    for (s, count) in blocks.iter_mut().enumerate() {
        let prefix = format!("layer{}.", s + 1);
        let idx: BTreeSet<usize> = backbone
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix)?.split('.').next()?.parse().ok())
            .collect();
        *count = idx.len();
    }
    let bottleneck = backbone.contains_key("layer1.0.conv3.weight");
    let arch = match (bottleneck, blocks) {
        (false, [2, 2, 2, 2]) => Arch::Resnet18,
        (false, [3, 4, 6, 3]) => Arch::Resnet34,
        (true, [3, 4, 6, 3]) => Arch::Resnet50,
        (b, blocks) => {
            return Err(bad(format!(
                "unsupported ResNet: {} blocks {blocks:?} (carp has ResNet-18/34/50)",
                if b { "bottleneck" } else { "basic" }
            )))
        }
    };
    let mut cfg = ResNetConfig::new(arch);
    cfg.base_width = conv1.shape[0];
    cfg.small_stem = small_stem;
    Ok(cfg)
}

/// The head configuration a PyTorch-named CARP head describes.
pub fn infer_head(head: &BTreeMap<String, HostTensor>) -> Result<CarpHeadConfig, LayoutError> {
    let carp = head_to_carp_names(head)?;
    let nlayers = (0..)
        .take_while(|j| carp.contains_key(&format!("mlp.{j}.weight")))
        .count();
    let w = |j: usize| &carp[&format!("mlp.{j}.weight")].shape;
    let v = &carp["last_layer.weight_v"].shape;
    Ok(CarpHeadConfig {
        in_dim: w(0)[0],
        hidden_dim: if nlayers > 1 { w(0)[1] } else { w(0)[0] },
        bottleneck_dim: w(nlayers - 1)[1],
        out_dim: v[0],
        nlayers,
        use_bn: carp.contains_key("norms.0.gamma"),
    })
}

struct Shapes {
    path: ParamPath,
    out: BTreeMap<String, Vec<usize>>,
}

impl ModuleVisitor for Shapes {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name);
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        self.out.insert(self.path.join(), p.lazy_shape().to_vec());
    }
}

/// Loads carp-named tensors of the file `path` into `module`: missing and unexpected keys are
/// reported, a shape mismatch is an error. `rename` maps a carp name back to the file's name.
fn load_into<M: Module>(
    module: M,
    tensors: &BTreeMap<String, HostTensor>,
    path: &Path,
    rename: impl Fn(&str) -> String,
) -> Result<(M, LoadReport), ImportError> {
    let mut shapes = Shapes {
        path: ParamPath::default(),
        out: BTreeMap::new(),
    };
    module.visit(&mut shapes);
    for (k, t) in tensors {
        if let Some(expected) = shapes.out.get(k) {
            if *expected != t.shape {
                return Err(CheckpointError::Shape {
                    path: path.to_path_buf(),
                    key: rename(k),
                    expected: expected.clone(),
                    found: t.shape.clone(),
                }
                .into());
            }
        }
    }
    let (module, issues) = params::apply(module, tensors, "");
    let mut report = LoadReport::default();
    for issue in issues {
        match issue {
            ApplyIssue::Missing(k) => report.missing.push(rename(&k)),
            ApplyIssue::Shape {
                key,
                expected,
                found,
            } => {
                return Err(CheckpointError::Shape {
                    path: path.to_path_buf(),
                    key: rename(&key),
                    expected,
                    found,
                }
                .into())
            }
        }
    }
    report.unexpected = tensors
        .keys()
        .filter(|k| !shapes.out.contains_key(*k))
        .map(|k| rename(k))
        .collect();
    Ok((module, report))
}

/// Loads torchvision-named backbone weights read from `path` into `net` (strict=False
/// semantics: see [`LoadReport`]; a shape mismatch is [`CheckpointError::Shape`]).
pub fn apply_backbone(
    net: ResNet,
    backbone: &BTreeMap<String, HostTensor>,
    path: &Path,
) -> Result<(ResNet, LoadReport), ImportError> {
    let carp = backbone_to_carp_names(backbone);
    load_into(net, &carp, path, torchvision_name)
}

impl Imported {
    /// The ResNet the backbone tensors describe.
    pub fn resnet(&self) -> Result<ResNetConfig, ImportError> {
        infer_resnet(&self.backbone).map_err(|e| {
            ImportError::layout(
                &self.path,
                format!(
                    "the {} layout gives no ResNet backbone ({e}); is it the right format?",
                    self.format
                ),
            )
        })
    }

    /// The CARP head configuration, for layouts that carry a head.
    pub fn head_config(&self) -> Result<Option<CarpHeadConfig>, ImportError> {
        self.head
            .as_ref()
            .map(|h| {
                infer_head(h).map_err(|source| ImportError::Layout {
                    path: self.path.clone(),
                    source,
                })
            })
            .transpose()
    }

    /// Loads the head ([`Imported::head`], PyTorch names) into `head`.
    ///
    /// # Errors
    /// [`ImportError::Layout`] when this layout has no CARP head or carp's head cannot hold it.
    pub fn apply_head(&self, head: CarpHead) -> Result<(CarpHead, LoadReport), ImportError> {
        let layout = |source| ImportError::Layout {
            path: self.path.clone(),
            source,
        };
        let tensors = self.head.as_ref().ok_or_else(|| {
            layout(LayoutError(format!(
                "the {} checkpoint has no CARP head",
                self.format
            )))
        })?;
        let carp = head_to_carp_names(tensors).map_err(layout)?;
        load_into(head, &carp, &self.path, |k| k.to_string())
    }
}

/// Builds the ResNet the imported weights describe and loads them into it.
pub fn build_backbone(
    imported: &Imported,
    device: &Device,
) -> Result<(ResNet, ResNetConfig, LoadReport), ImportError> {
    let cfg = imported.resnet()?;
    let net = cfg.init(device, 0);
    let (net, report) = apply_backbone(net, &imported.backbone, &imported.path)?;
    Ok((net, cfg, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: &[usize]) -> HostTensor {
        let n = shape.iter().product();
        HostTensor {
            shape: shape.to_vec(),
            values: (0..n).map(|i| i as f32).collect(),
        }
    }

    #[test]
    fn format_names_round_trip() {
        for f in Format::ALL {
            assert_eq!(f.name().parse::<Format>().unwrap(), f);
        }
        assert_eq!(
            "DeepCluster_v2".parse::<Format>().unwrap(),
            Format::DeepClusterV2
        );
        let err = "simclr".parse::<Format>().unwrap_err().to_string();
        assert!(err.contains("simclr") && err.contains("vicreg"), "{err}");
    }

    #[test]
    fn batchnorm_rename_only_where_running_stats_exist() {
        let tv = BTreeMap::from([
            ("conv1.weight".to_string(), t(&[2, 3, 3, 3])),
            ("bn1.weight".to_string(), t(&[2])),
            ("bn1.bias".to_string(), t(&[2])),
            ("bn1.running_mean".to_string(), t(&[2])),
        ]);
        let carp = backbone_to_carp_names(&tv);
        let keys: Vec<_> = carp.keys().cloned().collect();
        assert_eq!(
            keys,
            ["bn1.beta", "bn1.gamma", "bn1.running_mean", "conv1.weight"]
        );
        assert_eq!(backbone_from_carp_names(&carp), tv);
    }

    #[test]
    fn head_names_round_trip_and_transpose() {
        let torch = BTreeMap::from([
            ("mlp.0.weight".to_string(), t(&[5, 4])),
            ("mlp.0.bias".to_string(), t(&[5])),
            ("mlp.1.weight".to_string(), t(&[5])),
            ("mlp.1.bias".to_string(), t(&[5])),
            ("mlp.1.running_mean".to_string(), t(&[5])),
            ("mlp.1.running_var".to_string(), t(&[5])),
            ("mlp.3.weight".to_string(), t(&[3, 5])),
            ("mlp.3.bias".to_string(), t(&[3])),
            (
                "last_layer.weight_g".to_string(),
                HostTensor {
                    shape: vec![7, 1],
                    values: vec![1.0; 7],
                },
            ),
            ("last_layer.weight_v".to_string(), t(&[7, 3])),
        ]);
        let carp = head_to_carp_names(&torch).unwrap();
        let w = &carp["mlp.0.weight"];
        assert_eq!(w.shape, vec![4, 5]);
        // torch [o=1, i=2] = 1*4+2 = 6 sits at burn [i=2, o=1] = 2*5+1.
        assert_eq!(w.values[2 * 5 + 1], 6.0);
        assert!(carp.contains_key("norms.0.gamma") && carp.contains_key("mlp.1.weight"));
        assert_eq!(head_from_carp_names(&carp).unwrap(), torch);
        let cfg = infer_head(&torch).unwrap();
        assert_eq!(
            (
                cfg.in_dim,
                cfg.hidden_dim,
                cfg.bottleneck_dim,
                cfg.out_dim,
                cfg.nlayers
            ),
            (4, 5, 3, 7, 2)
        );
        let mut free = torch.clone();
        free.get_mut("last_layer.weight_g").unwrap().values[3] = 0.5;
        let err = head_to_carp_names(&free).unwrap_err().to_string();
        assert!(err.contains("weight_g") && err.contains("0.5"), "{err}");
    }

    #[test]
    fn infers_resnet_configs_from_carp_modules() {
        let device = Device::flex();
        for (arch, width, small) in [
            (Arch::Resnet18, 4, true),
            (Arch::Resnet34, 2, false),
            (Arch::Resnet50, 2, false),
        ] {
            let mut cfg = ResNetConfig::new(arch);
            cfg.base_width = width;
            cfg.small_stem = small;
            let tv = backbone_from_carp_names(&params::collect(&cfg.init(&device, 0), ""));
            assert_eq!(infer_resnet(&tv).unwrap(), cfg);
        }
    }

    #[test]
    fn shape_mismatch_is_an_error_and_extra_keys_are_reported() {
        let device = Device::flex();
        let mut cfg = ResNetConfig::new(Arch::Resnet18);
        cfg.base_width = 2;
        let net = cfg.init(&device, 0);
        let mut tv = backbone_from_carp_names(&params::collect(&net, ""));
        tv.remove("layer4.1.bn2.running_var");
        tv.insert("extra.weight".into(), t(&[1]));
        let file = Path::new("weights.pth");
        let (net, report) = apply_backbone(net, &tv, file).unwrap();
        assert_eq!(report.missing, vec!["layer4.1.bn2.running_var"]);
        assert_eq!(report.unexpected, vec!["extra.weight"]);
        tv.insert("layer1.0.conv1.weight".into(), t(&[2, 2, 1, 1]));
        let err = apply_backbone(net, &tv, file).unwrap_err();
        assert!(
            matches!(
                &err,
                ImportError::File(CheckpointError::Shape { key, .. })
                    if key == "layer1.0.conv1.weight"
            ),
            "{err}"
        );
        // The error names the file and the tensor, and both shapes.
        let msg = err.to_string();
        assert!(
            msg.contains("[2, 2, 3, 3]") && msg.starts_with("weights.pth: "),
            "{msg}"
        );
    }
}
