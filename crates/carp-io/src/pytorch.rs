//! PyTorch checkpoints (`.pth`, `.pth.tar`, `.pt`) read without Python and without running
//! anything they contain.
//!
//! Parsing is Burn's [`pytorch_reader`] (the reader behind `burn-store`): zip containers
//! (PyTorch 1.6+), the legacy pickle stream (0.1.10-1.5), TAR and plain pickles. Its pickle
//! machine builds dicts, lists, tuples, primitives and tensors only; every other Python
//! callable stays an inert placeholder. On top of that this module refuses a file whose
//! pickle names a callable that a weights file has no reason to name (`os.system`,
//! `builtins.eval`, ...) so a hostile file is reported rather than loaded quietly, turns
//! every tensor into f32 ([`HostTensor`]) and surfaces the plain values next to the weights
//! (`epoch`, scaler state, ...) as metadata.

use crate::error::ImportError;
use crate::params::HostTensor;
use pytorch_reader::{DType, PickleValue, PytorchReader};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every tensor of a checkpoint (flattened, dotted names) plus its plain values.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PthFile {
    /// Tensors as f32, by dotted path from the root (`teacher.module.backbone.conv1.weight`).
    pub tensors: BTreeMap<String, HostTensor>,
    /// The element type each tensor was stored in (`F32`, `F16`, `I64`, ...).
    pub dtypes: BTreeMap<String, String>,
    /// Non-tensor values by dotted path (`epoch` -> `200`); objects the reader does not
    /// interpret appear as `<module.Class>`.
    pub metadata: BTreeMap<String, String>,
    /// The container: `Zip`, `Legacy`, `Tar` or `Pickle`.
    pub container: String,
}

/// Callables a weights file may legitimately name: tensor and storage rebuilding, containers,
/// dtypes and devices, numpy scalars/arrays and plain records such as `argparse.Namespace`.
/// They are never called either way; anything else makes the file suspect.
fn is_allowed_global(name: &str) -> bool {
    const PREFIXES: &[&str] = &["torch.", "numpy.", "collections."];
    const EXACT: &[&str] = &[
        "argparse.Namespace",
        "_codecs.encode",
        "copyreg._reconstructor",
        "builtins.set",
        "builtins.frozenset",
        "builtins.slice",
        "builtins.object",
        "builtins.complex",
        "builtins.bytearray",
        "__builtin__.set",
        "__builtin__.object",
        "pathlib.PosixPath",
        "pathlib.WindowsPath",
    ];
    // Plain value types the reader reports by name (tensors, storages, ints too wide).
    const VALUES: &[&str] = &[
        "int", "float", "str", "bytes", "list", "dict", "tuple", "bool",
    ];
    // Loaders, compilers and process tools under those prefixes are not data either.
    const DENIED: &[&str] = &[
        "torch.hub.",
        "torch.jit.",
        "torch.ops.",
        "torch._C.",
        "torch.load",
        "torch.save",
        "torch.utils.cpp_extension",
        "torch.distributed",
        "torch.package",
        "numpy.load",
        "numpy.testing",
        "numpy.f2py",
        "numpy.distutils",
    ];
    (PREFIXES.iter().any(|p| name.starts_with(p)) && !DENIED.iter().any(|d| name.starts_with(d)))
        || EXACT.contains(&name)
        || VALUES.contains(&name)
}

/// Walks the pickle's plain view: collects metadata and the first disallowed global.
fn walk(
    value: &PickleValue,
    path: &mut Vec<String>,
    meta: &mut BTreeMap<String, String>,
    bad: &mut Option<String>,
) {
    let here = |path: &Vec<String>| path.join(".");
    match value {
        PickleValue::Dict(map) => {
            let mut keys: Vec<_> = map.keys().collect();
            keys.sort();
            for k in keys {
                path.push(k.clone());
                walk(&map[k], path, meta, bad);
                path.pop();
            }
        }
        PickleValue::List(items) => {
            // Lists of plain scalars (betas, milestones) are one entry; others are walked.
            if items.iter().all(is_scalar) {
                if !path.is_empty() {
                    let s: Vec<String> = items.iter().map(scalar_string).collect();
                    meta.insert(here(path), format!("[{}]", s.join(", ")));
                }
            } else {
                for (i, item) in items.iter().enumerate() {
                    path.push(i.to_string());
                    walk(item, path, meta, bad);
                    path.pop();
                }
            }
        }
        PickleValue::Unsupported(name) => {
            if !is_allowed_global(name) && bad.is_none() {
                *bad = Some(name.clone());
            }
            // Tensors are reported separately; other objects by type.
            if !matches!(
                name.as_str(),
                "torch.Tensor" | "torch.TypedStorage" | "torch.UntypedStorage"
            ) && !path.is_empty()
            {
                meta.insert(here(path), format!("<{name}>"));
            }
        }
        PickleValue::Bytes(b) => {
            if !path.is_empty() {
                meta.insert(here(path), format!("<{} bytes>", b.len()));
            }
        }
        scalar => {
            if !path.is_empty() {
                meta.insert(here(path), scalar_string(scalar));
            }
        }
    }
}

fn is_scalar(v: &PickleValue) -> bool {
    matches!(
        v,
        PickleValue::None
            | PickleValue::Bool(_)
            | PickleValue::Int(_)
            | PickleValue::Float(_)
            | PickleValue::String(_)
    )
}

fn scalar_string(v: &PickleValue) -> String {
    match v {
        PickleValue::None => "None".into(),
        PickleValue::Bool(b) => if *b { "True" } else { "False" }.into(),
        PickleValue::Int(i) => i.to_string(),
        PickleValue::Float(f) => f.to_string(),
        PickleValue::String(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

/// Converts stored bytes of `dtype` to f32 (integers and bools by value).
pub(crate) fn to_f32(bytes: &[u8], dtype: DType) -> Vec<f32> {
    fn chunks<const N: usize>(b: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
        b.chunks_exact(N)
            .map(|c| c.try_into().expect("exact chunk"))
    }
    match dtype {
        DType::F32 => chunks::<4>(bytes).map(f32::from_le_bytes).collect(),
        DType::F64 => chunks::<8>(bytes)
            .map(|c| f64::from_le_bytes(c) as f32)
            .collect(),
        DType::F16 => chunks::<2>(bytes)
            .map(|c| half::f16::from_le_bytes(c).to_f32())
            .collect(),
        DType::BF16 => chunks::<2>(bytes)
            .map(|c| half::bf16::from_le_bytes(c).to_f32())
            .collect(),
        DType::I64 => chunks::<8>(bytes)
            .map(|c| i64::from_le_bytes(c) as f32)
            .collect(),
        DType::I32 => chunks::<4>(bytes)
            .map(|c| i32::from_le_bytes(c) as f32)
            .collect(),
        DType::I16 => chunks::<2>(bytes)
            .map(|c| i16::from_le_bytes(c) as f32)
            .collect(),
        DType::I8 => bytes.iter().map(|&b| b as i8 as f32).collect(),
        DType::U64 => chunks::<8>(bytes)
            .map(|c| u64::from_le_bytes(c) as f32)
            .collect(),
        DType::U32 => chunks::<4>(bytes)
            .map(|c| u32::from_le_bytes(c) as f32)
            .collect(),
        DType::U16 => chunks::<2>(bytes)
            .map(|c| u16::from_le_bytes(c) as f32)
            .collect(),
        DType::U8 | DType::Bool => bytes.iter().map(|&b| b as f32).collect(),
    }
}

/// A checkpoint opened and checked (container parsed, globals vetted, metadata read) whose
/// tensor bytes have not been read yet.
pub struct PthIndex {
    path: std::path::PathBuf,
    reader: PytorchReader,
    metadata: BTreeMap<String, String>,
}

impl PthIndex {
    /// Every tensor name (dotted path from the root).
    pub fn keys(&self) -> BTreeSet<String> {
        self.reader.keys().into_iter().collect()
    }

    /// Reads the tensors whose name `keep` accepts, as f32.
    pub fn read(self, keep: impl Fn(&str) -> bool) -> Result<PthFile, ImportError> {
        let format = |reason: String| ImportError::format(&self.path, reason);
        let container = format!("{:?}", self.reader.metadata().format_type);
        let mut tensors = BTreeMap::new();
        let mut dtypes = BTreeMap::new();
        for (name, t) in self.reader.tensors() {
            if !keep(name) {
                continue;
            }
            let bytes = t
                .read()
                .map_err(|e| format(format!("tensor `{name}`: {e}")))?;
            let values = to_f32(&bytes, t.dtype());
            let shape = t.shape().to_vec();
            if values.len() != shape.iter().product::<usize>() {
                return Err(format(format!(
                    "tensor `{name}`: {} values for shape {shape:?}",
                    values.len()
                )));
            }
            dtypes.insert(name.clone(), format!("{:?}", t.dtype()));
            tensors.insert(name.clone(), HostTensor { shape, values });
        }
        Ok(PthFile {
            tensors,
            dtypes,
            metadata: self.metadata,
            container,
        })
    }
}

/// Opens a PyTorch checkpoint without reading tensor bytes.
///
/// Errors: [`CheckpointError::Format`](crate::CheckpointError::Format) for a file that is not a (complete) PyTorch checkpoint,
/// [`ImportError::UnsafeGlobal`] for a pickle naming a callable outside tensor rebuilding and
/// plain data. Nothing in the file is ever executed.
pub fn open_pth(path: &Path) -> Result<PthIndex, ImportError> {
    if let Err(source) = std::fs::metadata(path) {
        return Err(ImportError::io(path, source));
    }
    let format = |reason: String| ImportError::format(path, reason);
    // The plain view first: it names every callable the pickle refers to, so a hostile file
    // is refused before any tensor is touched.
    let plain = PytorchReader::read_pickle_data(path, None).map_err(|e| format(e.to_string()))?;
    let mut metadata = BTreeMap::new();
    let mut bad = None;
    walk(&plain, &mut Vec::new(), &mut metadata, &mut bad);
    if let Some(global) = bad {
        return Err(ImportError::UnsafeGlobal {
            path: path.to_path_buf(),
            global,
        });
    }
    // State dicts carry a `_metadata` attribute of per-module versions: not worth showing.
    metadata.retain(|k, _| !k.starts_with("_metadata") && !k.contains("._metadata."));
    // `argparse.Namespace` values: their fields, read by a separate inert pickle pass.
    metadata.extend(crate::pickle_meta::namespace_fields(path));
    let reader = PytorchReader::new(path).map_err(|e| format(e.to_string()))?;
    Ok(PthIndex {
        path: path.to_path_buf(),
        reader,
        metadata,
    })
}

/// Reads every tensor and plain value of a PyTorch checkpoint (see [`open_pth`]).
pub fn read_pth(path: &Path) -> Result<PthFile, ImportError> {
    open_pth(path)?.read(|_| true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_and_integer_conversions() {
        // 1.5 in f16 is 0x3E00, in bf16 0x3FC0; -2 as i64.
        assert_eq!(to_f32(&0x3E00u16.to_le_bytes(), DType::F16), vec![1.5]);
        assert_eq!(to_f32(&0x3FC0u16.to_le_bytes(), DType::BF16), vec![1.5]);
        assert_eq!(to_f32(&(-2i64).to_le_bytes(), DType::I64), vec![-2.0]);
        assert_eq!(to_f32(&0.25f64.to_le_bytes(), DType::F64), vec![0.25]);
    }

    #[test]
    fn globals_policy() {
        assert!(is_allowed_global("torch._utils._rebuild_tensor_v2"));
        assert!(is_allowed_global("argparse.Namespace"));
        assert!(!is_allowed_global("os.system"));
        assert!(!is_allowed_global("posix.system"));
        assert!(!is_allowed_global("builtins.eval"));
        assert!(!is_allowed_global("subprocess.Popen"));
        assert!(!is_allowed_global("torch.hub.load"));
    }
}
