//! Opening the run's data: training images, the multi-crop recipe, k-NN evaluation splits.

use crate::config::{Config, DataConfig, ViewsConfig};
use crate::error::TrainError;
use carp_data::{DataError, DataSource, Dataset, EvalTransform, MultiCropRecipe, SyntheticShapes};
use std::sync::Arc;

/// The data sets of a run.
#[derive(Clone)]
pub struct RunData {
    /// Images to pretrain on (labels unused).
    pub train: Arc<dyn Dataset>,
    /// Labelled memory bank for the k-NN evaluation, if any.
    pub eval_train: Option<Arc<dyn Dataset>>,
    /// Labelled held-out images for the k-NN evaluation, if any.
    pub eval_test: Option<Arc<dyn Dataset>>,
}

/// Opens a data source, `KIND:PATH` or a bare image-folder path (see
/// [`carp_data::source`]); `synthetic` is not accepted here. `key` names the config key in
/// errors.
pub fn open_source(spec: &str, key: &str) -> Result<Arc<dyn Dataset>, TrainError> {
    Ok(parse_source(spec, key)?.open()?)
}

/// Parses a `--data` string, naming `key` when it does not parse.
fn parse_source(spec: &str, key: &str) -> Result<DataSource, TrainError> {
    DataSource::parse(spec).map_err(|e| match e {
        DataError::BadSource { reason, .. } => TrainError::Config {
            key: key.into(),
            message: format!("`{spec}`: {reason}"),
        },
        other => other.into(),
    })
}

/// Opens the training and evaluation data that `cfg` names.
pub fn open(cfg: &DataConfig, seed: u64) -> Result<RunData, TrainError> {
    if cfg.train == "synthetic" {
        let (train, test) = SyntheticShapes::split(
            seed,
            cfg.synthetic_train,
            cfg.synthetic_test,
            cfg.image_size,
        );
        let train: Arc<dyn Dataset> = Arc::new(train);
        let test: Arc<dyn Dataset> = Arc::new(test);
        let eval_test = if cfg.eval.is_empty() {
            Some(test)
        } else {
            Some(open_source(&cfg.eval, "data.eval")?)
        };
        let eval_train = if cfg.eval_train.is_empty() {
            Some(train.clone())
        } else {
            Some(open_source(&cfg.eval_train, "data.eval_train")?)
        };
        return Ok(RunData {
            train,
            eval_train,
            eval_test,
        });
    }
    let source = parse_source(&cfg.train, "data.train")?;
    let train = source.open()?;
    let eval_test = if cfg.eval.is_empty() {
        None
    } else {
        Some(open_source(&cfg.eval, "data.eval")?)
    };
    let eval_train = if !cfg.eval_train.is_empty() {
        Some(open_source(&cfg.eval_train, "data.eval_train")?)
    } else if let Some(labelled) = source.labelled_train() {
        // Training mixes in unlabelled images (stl10): the bank is the labelled split.
        Some(labelled.open()?)
    } else if train.num_classes() > 0 {
        Some(train.clone())
    } else {
        None
    };
    Ok(RunData {
        train,
        eval_train,
        eval_test,
    })
}

/// The multi-crop recipe of spec §2 with the configured sizes, scales and number of locals.
pub fn recipe(views: &ViewsConfig) -> MultiCropRecipe {
    let mut recipe = MultiCropRecipe::carp(
        views.global_size,
        views.local_size,
        (views.global_scale[0], views.global_scale[1]),
        (views.local_scale[0], views.local_scale[1]),
        views.local_views,
    );
    if !views.blur {
        for v in &mut recipe.views {
            v.blur_prob = 0.0;
        }
    }
    recipe
}

/// The evaluation transform of the run's backbone (spec §6; the policy of
/// [`EvalTransform::for_backbone`], with the run's global crop size).
pub fn eval_transform(cfg: &Config) -> EvalTransform {
    EvalTransform::for_backbone(cfg.model.small_stem, Some(cfg.views.global_size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stl10_pretrains_on_unlabeled_and_banks_the_labelled_split() {
        let dir = tempfile::tempdir().unwrap();
        let img = |n: usize| vec![7u8; n * 3 * 96 * 96];
        std::fs::write(dir.path().join("train_X.bin"), img(2)).unwrap();
        std::fs::write(dir.path().join("train_y.bin"), [1u8, 5]).unwrap();
        std::fs::write(dir.path().join("unlabeled_X.bin"), img(3)).unwrap();
        let cfg = DataConfig {
            train: format!("stl10:{}", dir.path().display()),
            ..DataConfig::default()
        };
        let data = open(&cfg, 0).unwrap();
        assert_eq!(data.train.len(), 5);
        let bank = data.eval_train.unwrap();
        assert_eq!(bank.len(), 2);
        assert_eq!(bank.label(1), Some(4));
        assert!(data.eval_test.is_none());
    }

    #[test]
    fn unknown_kind_names_the_key() {
        let err = open_source("cifar11:/x", "data.eval").err().unwrap();
        let msg = err.to_string();
        assert!(
            msg.contains("data.eval") && msg.contains("cifar11"),
            "{msg}"
        );
        // A missing folder of a known kind names the path.
        let err = open_source("cifar10:/definitely/absent", "data.train")
            .err()
            .unwrap();
        assert!(err.to_string().contains("/definitely/absent"), "{err}");
    }
}
