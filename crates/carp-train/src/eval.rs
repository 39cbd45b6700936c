//! Backbone features over a data set and the weighted k-NN of spec §6, during and at the
//! end of a run.

use crate::config::Config;
use crate::data::RunData;
use crate::error::TrainError;
use burn::tensor::{Device, Tensor, TensorData};
use carp_core::resnet::ResNet;
use carp_data::{Dataset, EvalTransform};
use carp_eval::{weighted_knn, Features, KnnConfig, KnnResult};
use rayon::prelude::*;
use serde::Serialize;
use std::path::Path;
use tracing::info;

/// File of the k-NN points taken during training (`run.eval_every_epochs`).
pub const KNN_LOG: &str = "knn.jsonl";

/// Evenly spaced indices, at most `max` of them (all when `max` is 0 or larger than `len`).
pub fn subsample(len: usize, max: usize) -> Vec<usize> {
    if max == 0 || max >= len {
        return (0..len).collect();
    }
    (0..max).map(|i| i * len / max).collect()
}

/// Backbone outputs (inference mode) of one batch: `view(i)` makes the normalised CHW pixels
/// of image `i` (in parallel; every view of a batch has the same square size). Returns the
/// row-major outputs and their width.
pub fn forward_batch<F>(
    backbone: &ResNet,
    chunk: &[usize],
    view: F,
    device: &Device,
) -> Result<(Vec<f32>, usize), TrainError>
where
    F: Fn(usize) -> Result<Vec<f32>, carp_data::DataError> + Sync,
{
    let views: Vec<Result<Vec<f32>, carp_data::DataError>> =
        chunk.par_iter().map(|&i| view(i)).collect();
    let mut pixels = Vec::new();
    for v in views {
        pixels.extend(v?);
    }
    let side = ((pixels.len() / chunk.len().max(1) / 3) as f64).sqrt() as usize;
    let x = Tensor::<4>::from_data(
        TensorData::new(pixels, [chunk.len(), 3, side, side]),
        device,
    );
    let y = backbone.forward(x);
    let dim = y.dims()[1];
    let out = y
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32");
    Ok((out, dim))
}

/// Backbone features (inference mode) of `indices`, with their labels.
pub fn features(
    backbone: &ResNet,
    dataset: &dyn Dataset,
    indices: &[usize],
    transform: EvalTransform,
    device: &Device,
    batch: usize,
) -> Result<(Features, Vec<Option<usize>>), TrainError> {
    let mut data = Vec::new();
    let mut labels = Vec::with_capacity(indices.len());
    let mut dim = 0;
    for chunk in indices.chunks(batch.max(1)) {
        let view = |i| dataset.get(i).map(|img| transform.apply(&img));
        let (out, d) = forward_batch(backbone, chunk, view, device)?;
        dim = d;
        data.extend(out);
        labels.extend(chunk.iter().map(|&i| dataset.label(i)));
    }
    Ok((Features::new(data, indices.len(), dim)?, labels))
}

/// Weighted k-NN top-1/top-5 of `backbone` with `bank` as memory and `test` as queries.
///
/// Unlabelled images are an error; `max_images` caps each split (evenly spaced).
pub fn knn_eval(
    backbone: &ResNet,
    bank: &dyn Dataset,
    test: &dyn Dataset,
    transform: EvalTransform,
    max_images: usize,
    device: &Device,
) -> Result<Vec<KnnResult>, TrainError> {
    let classes = bank.num_classes().max(test.num_classes());
    let bank_idx = subsample(bank.len(), max_images);
    let test_idx = subsample(test.len(), max_images);
    let (bank_f, bank_l) = features(backbone, bank, &bank_idx, transform, device, 256)?;
    let (test_f, test_l) = features(backbone, test, &test_idx, transform, device, 256)?;
    let unlabelled = || TrainError::Config {
        key: "data.eval".into(),
        message: "k-NN evaluation needs labelled images (class sub-folders)".into(),
    };
    let bank_l: Vec<usize> = bank_l
        .into_iter()
        .map(|l| l.ok_or_else(unlabelled))
        .collect::<Result<_, _>>()?;
    let test_l: Vec<usize> = test_l
        .into_iter()
        .map(|l| l.ok_or_else(unlabelled))
        .collect::<Result<_, _>>()?;
    let mut cfg = KnnConfig::default();
    cfg.ks.retain(|&k| k <= bank_idx.len());
    Ok(weighted_knn(
        &bank_f, &bank_l, &test_f, &test_l, classes, &cfg,
    )?)
}

/// The training crop size recorded in one of carp's own checkpoints (`views.global_size` of
/// its run configuration), `None` for other files.
pub fn train_crop(imported: &carp_io::keymap::Imported) -> Option<u32> {
    let meta = carp_io::backbone::carp_metadata(imported)?;
    let cfg = Config::from_toml(meta["config"].as_str()?, "checkpoint config").ok()?;
    Some(cfg.views.global_size)
}

/// k-NN of the trained teacher backbone next to the same architecture at initialisation.
#[derive(Clone, Debug, Serialize)]
pub struct KnnSummary {
    /// Top-1 (%) of the trained teacher at the reported k ([`carp_eval::knn::headline`]).
    pub trained_top1: f64,
    /// Top-1 (%) of the randomly initialised backbone at the same k.
    pub init_top1: f64,
    /// The k of the two numbers above.
    pub k: usize,
    /// All k of the trained teacher.
    pub trained: Vec<KnnResult>,
    /// All k at initialisation.
    pub init: Vec<KnnResult>,
}

/// Weighted k-NN (spec §6) of `backbone` on the run's labelled evaluation data, with the
/// run's evaluation transform; `None` without such data.
pub fn teacher_knn(
    cfg: &Config,
    data: &RunData,
    backbone: &ResNet,
    device: &Device,
) -> Result<Option<Vec<KnnResult>>, TrainError> {
    let (Some(bank), Some(test)) = (&data.eval_train, &data.eval_test) else {
        return Ok(None);
    };
    let transform = crate::data::eval_transform(cfg);
    let results = knn_eval(
        backbone,
        bank.as_ref(),
        test.as_ref(),
        transform,
        cfg.data.eval_max_images,
        device,
    )?;
    Ok(Some(results))
}

/// The end-of-run evaluation: the trained teacher backbone's k-NN next to the same
/// architecture at initialisation; `None` without labelled evaluation data.
pub fn knn_summary(
    cfg: &Config,
    data: &RunData,
    teacher: &ResNet,
    device: &Device,
) -> Result<Option<KnnSummary>, TrainError> {
    let Some(trained) = teacher_knn(cfg, data, teacher, device)? else {
        info!("no labelled evaluation data: k-NN skipped");
        return Ok(None);
    };
    let init_backbone = cfg.model_config().backbone.init(device, cfg.run.seed);
    let init = teacher_knn(cfg, data, &init_backbone, device)?.unwrap_or_default();
    let head = carp_eval::knn::headline;
    let (Some(t), Some(i)) = (head(&trained).copied(), head(&init).copied()) else {
        return Ok(None);
    };
    info!(k = t.k, trained_top1 = t.top1, init_top1 = i.top1, "k-NN");
    Ok(Some(KnnSummary {
        trained_top1: t.top1,
        init_top1: i.top1,
        k: t.k,
        trained,
        init,
    }))
}

/// Appends one line `{epoch, step, k, top1, top5}` (the [`carp_eval::knn::headline`] k)
/// to [`KNN_LOG`] in `out`.
pub fn log_knn_point(
    out: &Path,
    epoch: usize,
    step: usize,
    results: &[KnnResult],
) -> Result<(), TrainError> {
    use std::io::Write;
    let Some(r) = carp_eval::knn::headline(results) else {
        return Ok(());
    };
    info!(epoch, step, k = r.k, top1 = r.top1, "k-NN during training");
    let path = out.join(KNN_LOG);
    let line = serde_json::json!({
        "epoch": epoch, "step": step, "k": r.k, "top1": r.top1, "top5": r.top5,
    });
    let io = |source| TrainError::Io {
        path: path.clone(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io)?;
    writeln!(file, "{line}").map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsample_is_even_and_bounded() {
        assert_eq!(subsample(10, 0), (0..10).collect::<Vec<_>>());
        assert_eq!(subsample(10, 5), vec![0, 2, 4, 6, 8]);
        assert_eq!(subsample(3, 5), vec![0, 1, 2]);
    }
}
