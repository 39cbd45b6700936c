//! Backbone features over a data set and the weighted k-NN of spec §6.

use crate::error::TrainError;
use burn::tensor::{Device, Tensor, TensorData};
use carp_core::resnet::ResNet;
use carp_data::{eval_view, Dataset};
use carp_eval::{weighted_knn, Features, KnnConfig, KnnResult};
use rayon::prelude::*;

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
    sizes: (Option<u32>, Option<u32>),
    device: &Device,
    batch: usize,
) -> Result<(Features, Vec<Option<usize>>), TrainError> {
    let mut data = Vec::new();
    let mut labels = Vec::with_capacity(indices.len());
    let mut dim = 0;
    for chunk in indices.chunks(batch.max(1)) {
        let view = |i| dataset.get(i).map(|img| eval_view(&img, sizes.0, sizes.1));
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
    sizes: (Option<u32>, Option<u32>),
    max_images: usize,
    device: &Device,
) -> Result<Vec<KnnResult>, TrainError> {
    let classes = bank.num_classes().max(test.num_classes());
    let bank_idx = subsample(bank.len(), max_images);
    let test_idx = subsample(test.len(), max_images);
    let (bank_f, bank_l) = features(backbone, bank, &bank_idx, sizes, device, 256)?;
    let (test_f, test_l) = features(backbone, test, &test_idx, sizes, device, 256)?;
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
    let ks: Vec<usize> = [10, 20, 100, 200]
        .into_iter()
        .filter(|&k| k <= bank_idx.len())
        .collect();
    let cfg = KnnConfig {
        ks,
        ..KnnConfig::default()
    };
    Ok(weighted_knn(
        &bank_f, &bank_l, &test_f, &test_l, classes, &cfg,
    )?)
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
