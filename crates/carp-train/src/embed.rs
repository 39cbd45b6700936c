//! `carp embed`: backbone features of a data set with the evaluation transform, written as
//! `.npy` and `.safetensors` files that NumPy and PyTorch users read directly.
//!
//! A split named `S` in directory `D` is four files:
//! - `D/S_features.npy`: float32 `[N, dim]`;
//! - `D/S_labels.npy`: int64 `[N]`, class index or -1 for an unlabelled image;
//! - `D/S_paths.npy`: unicode `[N]`, the image files (`synthetic:<index>` for generated ones);
//! - `D/S.safetensors`: tensors `features` (F32 `[N, dim]`) and `labels` (I64 `[N]`), with
//!   metadata `paths` and `classes` (JSON arrays of strings) and `origin`, `transform`.

use crate::error::TrainError;
use crate::eval::{features, subsample};
use burn::tensor::Device;
use carp_core::resnet::ResNet;
use carp_data::{Dataset, EvalTransform, ImageFolder, SyntheticShapes};
use carp_eval::Features;
use npyz::WriterBuilder;
use safetensors::tensor::{Dtype, TensorView};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A labelled data set for evaluation, with a name per image.
#[derive(Clone)]
pub struct EvalData {
    /// The images.
    pub dataset: Arc<dyn Dataset>,
    /// One name per image: its file, or `synthetic:<index>`.
    pub paths: Vec<String>,
    /// Class names, by class index.
    pub classes: Vec<String>,
}

/// Opens `spec`: `synthetic` / `synthetic:train` / `synthetic:test` (the built-in shapes at the
/// pretraining defaults: seed 0, 4096 train and 1024 test images of 32x32), an image folder as
/// `imagefolder:PATH` or `PATH`. `flag` names the option in errors.
pub fn open_eval_data(spec: &str, flag: &str) -> Result<EvalData, TrainError> {
    if let Some(part) = spec
        .strip_prefix("synthetic")
        .filter(|r| r.is_empty() || r.starts_with(':'))
    {
        let (train, test) = SyntheticShapes::split(0, 4096, 1024, 32);
        let set = match part {
            "" | ":train" => train,
            ":test" => test,
            other => {
                return Err(TrainError::Config {
                    key: flag.into(),
                    message: format!("unknown synthetic split `{}` (train, test)", &other[1..]),
                })
            }
        };
        let n = set.len();
        let classes = (0..set.num_classes())
            .map(|c| format!("shape{c}"))
            .collect();
        return Ok(EvalData {
            dataset: Arc::new(set),
            paths: (0..n).map(|i| format!("synthetic:{i}")).collect(),
            classes,
        });
    }
    let path = spec.strip_prefix("imagefolder:").unwrap_or(spec);
    if !Path::new(path).is_dir() {
        return Err(TrainError::Config {
            key: flag.into(),
            message: format!(
                "`{spec}` is not a directory (expected synthetic[:train|:test], imagefolder:PATH or PATH)"
            ),
        });
    }
    let folder = ImageFolder::open(Path::new(path))?;
    let paths = (0..folder.len())
        .map(|i| folder.path(i).display().to_string())
        .collect();
    let classes = folder.classes().to_vec();
    Ok(EvalData {
        dataset: Arc::new(folder),
        paths,
        classes,
    })
}

/// Features of a split with their labels and image names.
#[derive(Clone, Debug, PartialEq)]
pub struct Embedding {
    /// `[N, dim]` backbone features.
    pub features: Features,
    /// Class index per row, -1 when unlabelled.
    pub labels: Vec<i64>,
    /// Image name per row.
    pub paths: Vec<String>,
    /// Class names.
    pub classes: Vec<String>,
}

impl Embedding {
    /// Labels as class indices; an error naming `what` when an image is unlabelled.
    pub fn class_labels(&self, what: &str) -> Result<Vec<usize>, TrainError> {
        self.labels
            .iter()
            .enumerate()
            .map(|(i, &l)| {
                usize::try_from(l).map_err(|_| TrainError::Config {
                    key: what.into(),
                    message: format!(
                        "image {} ({}) has no label; evaluation needs class sub-folders",
                        i, self.paths[i]
                    ),
                })
            })
            .collect()
    }

    /// Number of classes: the named ones, or one more than the largest label.
    pub fn num_classes(&self) -> usize {
        let from_labels = self
            .labels
            .iter()
            .copied()
            .max()
            .map_or(0, |m| (m + 1).max(0)) as usize;
        self.classes.len().max(from_labels)
    }
}

/// Settings of [`embed`].
#[derive(Clone, Debug, PartialEq)]
pub struct EmbedOptions {
    /// The evaluation transform.
    pub transform: EvalTransform,
    /// Images per forward pass.
    pub batch: usize,
    /// Evenly spaced subset of at most this many images (0: all).
    pub max_images: usize,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

impl Default for EmbedOptions {
    fn default() -> Self {
        Self {
            transform: EvalTransform {
                resize: None,
                crop: None,
            },
            batch: 256,
            max_images: 0,
            progress: false,
        }
    }
}

/// Runs `backbone` (inference mode) over `data` with the evaluation transform.
pub fn embed(
    backbone: &ResNet,
    data: &EvalData,
    opts: &EmbedOptions,
    device: &Device,
) -> Result<Embedding, TrainError> {
    let indices = subsample(data.dataset.len(), opts.max_images);
    let bar = if opts.progress {
        let bar = indicatif::ProgressBar::new(indices.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} {bar:40} {pos}/{len} images [{elapsed_precise}<{eta_precise}, {per_sec}]",
            )
            .expect("valid template"),
        );
        bar.set_message("embed");
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let batch = opts.batch.max(1);
    let mut data_out = Vec::new();
    let mut labels = Vec::with_capacity(indices.len());
    let mut dim = 0;
    for chunk in indices.chunks(batch) {
        let (f, l) = features(
            backbone,
            data.dataset.as_ref(),
            chunk,
            opts.transform,
            device,
            batch,
        )?;
        dim = f.dim;
        data_out.extend(f.data);
        labels.extend(l.into_iter().map(|l| l.map_or(-1, |c| c as i64)));
        bar.inc(chunk.len() as u64);
    }
    bar.finish();
    Ok(Embedding {
        features: Features::new(data_out, indices.len(), dim)?,
        labels,
        paths: indices.iter().map(|&i| data.paths[i].clone()).collect(),
        classes: data.classes.clone(),
    })
}

/// Backbone features of `indices` under train-time augmentation for the faithful linear probe:
/// torchvision's `RandomResizedCrop(crop, scale = (0.08, 1))` and `RandomHorizontalFlip()` then
/// normalisation (DINO's `eval_linear` train transform). The draws come from
/// `sample_rng(seed, epoch, index)`, so an epoch's features do not depend on batching or
/// threads. Returns the features and the class labels (unlabelled images are an error).
#[allow(clippy::too_many_arguments)]
pub fn augmented_features(
    backbone: &ResNet,
    data: &EvalData,
    indices: &[usize],
    crop: u32,
    seed: u64,
    epoch: usize,
    batch: usize,
    device: &Device,
) -> Result<(Features, Vec<usize>), TrainError> {
    let rrc = carp_data::RandomResizedCrop::new(crop, (0.08, 1.0));
    let mut out = Vec::with_capacity(indices.len() * 512);
    let mut labels = Vec::with_capacity(indices.len());
    let mut dim = 0;
    for chunk in indices.chunks(batch.max(1)) {
        let view = |i| {
            let img = data.dataset.get(i)?;
            let mut rng = carp_data::sample_rng(seed, epoch as u64, i);
            let mut view = rrc.apply(&img, &mut rng);
            carp_data::augment::random_horizontal_flip(&mut view, 0.5, &mut rng);
            Ok(carp_data::augment::normalize(view))
        };
        let (batch_out, d) = crate::eval::forward_batch(backbone, chunk, view, device)?;
        dim = d;
        out.extend(batch_out);
        for &i in chunk {
            labels.push(data.dataset.label(i).ok_or_else(|| TrainError::Config {
                key: "--train".into(),
                message: format!(
                    "image {} has no label; the linear probe needs class sub-folders",
                    data.paths[i]
                ),
            })?);
        }
    }
    Ok((Features::new(out, indices.len(), dim)?, labels))
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The four files of split `split` in `dir`: features, labels, paths (`.npy`), safetensors.
pub fn split_files(dir: &Path, split: &str) -> [PathBuf; 4] {
    [
        dir.join(format!("{split}_features.npy")),
        dir.join(format!("{split}_labels.npy")),
        dir.join(format!("{split}_paths.npy")),
        dir.join(format!("{split}.safetensors")),
    ]
}

/// Writes `emb` as split `split` in `dir` (created if needed); `meta` entries (origin,
/// transform, ...) go into the safetensors metadata. Returns the files written.
pub fn write_embedding(
    dir: &Path,
    split: &str,
    emb: &Embedding,
    meta: &[(&str, String)],
) -> Result<[PathBuf; 4], TrainError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let files = split_files(dir, split);
    let [f_path, l_path, p_path, st_path] = &files;
    let (n, d) = (emb.features.rows as u64, emb.features.dim as u64);

    let file = std::fs::File::create(f_path).map_err(io_err(f_path))?;
    let mut w = npyz::WriteOptions::<f32>::new()
        .default_dtype()
        .shape(&[n, d])
        .writer(std::io::BufWriter::new(file))
        .begin_nd()
        .map_err(io_err(f_path))?;
    w.extend(emb.features.data.iter().copied())
        .map_err(io_err(f_path))?;
    w.finish().map_err(io_err(f_path))?;

    let file = std::fs::File::create(l_path).map_err(io_err(l_path))?;
    let mut w = npyz::WriteOptions::<i64>::new()
        .default_dtype()
        .shape(&[n])
        .writer(std::io::BufWriter::new(file))
        .begin_nd()
        .map_err(io_err(l_path))?;
    w.extend(emb.labels.iter().copied())
        .map_err(io_err(l_path))?;
    w.finish().map_err(io_err(l_path))?;

    let width = emb
        .paths
        .iter()
        .map(|p| p.chars().count())
        .max()
        .unwrap_or(0)
        .max(1);
    let dtype = npyz::DType::Plain(
        format!("<U{width}")
            .parse::<npyz::TypeStr>()
            .expect("valid unicode type string"),
    );
    let file = std::fs::File::create(p_path).map_err(io_err(p_path))?;
    let mut w = npyz::WriteOptions::<str>::new()
        .dtype(dtype)
        .shape(&[n])
        .writer(std::io::BufWriter::new(file))
        .begin_nd()
        .map_err(io_err(p_path))?;
    for p in &emb.paths {
        w.push(p.as_str()).map_err(io_err(p_path))?;
    }
    w.finish().map_err(io_err(p_path))?;

    let feat_bytes: Vec<u8> = emb
        .features
        .data
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let label_bytes: Vec<u8> = emb.labels.iter().flat_map(|v| v.to_le_bytes()).collect();
    let views = vec![
        (
            "features",
            TensorView::new(Dtype::F32, vec![n as usize, d as usize], &feat_bytes)
                .expect("shape matches data"),
        ),
        (
            "labels",
            TensorView::new(Dtype::I64, vec![n as usize], &label_bytes).expect("shape matches"),
        ),
    ];
    let mut metadata: HashMap<String, String> = meta
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    metadata.insert(
        "paths".into(),
        serde_json::to_string(&emb.paths).expect("json"),
    );
    metadata.insert(
        "classes".into(),
        serde_json::to_string(&emb.classes).expect("json"),
    );
    let bytes = safetensors::serialize(views, Some(metadata)).map_err(|e| TrainError::Config {
        key: st_path.display().to_string(),
        message: e.to_string(),
    })?;
    std::fs::write(st_path, bytes).map_err(io_err(st_path))?;
    Ok(files)
}

/// Reads split `split` back from `dir/<split>.safetensors` (as [`write_embedding`] wrote it).
pub fn read_embedding(dir: &Path, split: &str) -> Result<Embedding, TrainError> {
    let path = split_files(dir, split)[3].clone();
    let bytes = std::fs::read(&path).map_err(io_err(&path))?;
    let fail = |message: String| TrainError::Config {
        key: path.display().to_string(),
        message,
    };
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| fail(format!("not a safetensors file: {e}")))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| fail(format!("not a safetensors file: {e}")))?;
    let feats = st
        .tensor("features")
        .map_err(|_| fail("no `features` tensor (written by carp embed?)".into()))?;
    let labels = st
        .tensor("labels")
        .map_err(|_| fail("no `labels` tensor (written by carp embed?)".into()))?;
    if feats.dtype() != Dtype::F32 || feats.shape().len() != 2 {
        return Err(fail("`features` must be F32 [N, dim]".into()));
    }
    if labels.dtype() != Dtype::I64 || labels.shape() != [feats.shape()[0]] {
        return Err(fail("`labels` must be I64 [N]".into()));
    }
    let (n, d) = (feats.shape()[0], feats.shape()[1]);
    let data: Vec<f32> = feats
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
        .collect();
    let labels: Vec<i64> = labels
        .data()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
        .collect();
    let meta = header.metadata().clone().unwrap_or_default();
    let list = |key: &str| -> Result<Vec<String>, TrainError> {
        match meta.get(key) {
            Some(text) => serde_json::from_str(text)
                .map_err(|e| fail(format!("metadata `{key}` is not a JSON list: {e}"))),
            None => Ok(Vec::new()),
        }
    };
    let mut paths = list("paths")?;
    if paths.len() != n {
        paths = (0..n).map(|i| format!("row:{i}")).collect();
    }
    Ok(Embedding {
        features: Features::new(data, n, d)?,
        labels,
        paths,
        classes: list("classes")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_and_safetensors_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let emb = Embedding {
            features: Features::new(vec![1.5, -2.0, 0.25, 3.0, 4.0, -0.5], 3, 2).unwrap(),
            labels: vec![2, -1, 0],
            paths: vec!["a/x.jpg".into(), "β/long name.png".into(), "c".into()],
            classes: vec!["a".into(), "b".into(), "c".into()],
        };
        let files =
            write_embedding(dir.path(), "train", &emb, &[("origin", "test".into())]).unwrap();
        assert!(files.iter().all(|f| f.exists()));
        assert_eq!(read_embedding(dir.path(), "train").unwrap(), emb);

        // The .npy files decode to the same values (npyz reader: an independent code path
        // from the writer's header and byte layout).
        let f = npyz::NpyFile::new(std::fs::File::open(&files[0]).unwrap()).unwrap();
        assert_eq!(f.shape(), &[3, 2]);
        assert_eq!(f.into_vec::<f32>().unwrap(), emb.features.data);
        let l = npyz::NpyFile::new(std::fs::File::open(&files[1]).unwrap()).unwrap();
        assert_eq!(l.into_vec::<i64>().unwrap(), emb.labels);
        let p = npyz::NpyFile::new(std::fs::File::open(&files[2]).unwrap()).unwrap();
        assert_eq!(p.into_vec::<String>().unwrap(), emb.paths);
        // The header is NumPy's: magic, version 1.0, the dict with descr/fortran_order/shape.
        let raw = std::fs::read(&files[0]).unwrap();
        assert_eq!(&raw[..8], b"\x93NUMPY\x01\x00");
        let header = String::from_utf8_lossy(&raw[10..80]);
        assert!(
            header.contains("'descr': '<f4'") && header.contains("'shape': (3, 2,"),
            "{header}"
        );

        assert_eq!(emb.num_classes(), 3);
        let err = emb.class_labels("--train").unwrap_err().to_string();
        assert!(
            err.contains("image 1") && err.contains("long name"),
            "{err}"
        );
    }

    /// Augmented features are reproducible per (seed, epoch) and change between epochs.
    #[test]
    fn augmented_features_are_seeded_per_epoch() {
        let data = open_eval_data("synthetic:test", "--train").unwrap();
        let cfg = carp_core::resnet::ResNetConfig {
            arch: carp_core::resnet::Arch::Resnet18,
            base_width: 4,
            small_stem: true,
            zero_init_residual: false,
        };
        let device = Device::flex();
        let backbone = cfg.init(&device, 1);
        let idx = [0, 5, 9];
        let run = |epoch, batch| {
            augmented_features(&backbone, &data, &idx, 24, 7, epoch, batch, &device).unwrap()
        };
        let (a, la) = run(0, 2);
        assert_eq!((a.rows, a.dim), (3, 32));
        assert_eq!(
            la,
            vec![
                data.dataset.label(0).unwrap(),
                data.dataset.label(5).unwrap(),
                data.dataset.label(9).unwrap()
            ]
        );
        let (b, _) = run(0, 3);
        for (x, y) in a.data.iter().zip(&b.data) {
            assert!(
                (x - y).abs() <= 1e-5 * (1.0 + x.abs()),
                "batching changed a feature"
            );
        }
        let (c, _) = run(1, 3);
        assert_ne!(a.data, c.data, "another epoch draws other crops");
    }

    #[test]
    fn open_eval_data_specs() {
        let d = open_eval_data("synthetic:test", "--data").unwrap();
        assert_eq!(d.dataset.len(), 1024);
        assert_eq!(d.paths[3], "synthetic:3");
        assert!(open_eval_data("synthetic:val", "--data")
            .err()
            .unwrap()
            .to_string()
            .contains("unknown synthetic split `val`"));
        let e = open_eval_data("/no/such/dir", "--test")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("--test") && e.contains("/no/such/dir"), "{e}");
    }
}
