//! The few-shot Pascal VOC07 protocol of spec §6, as the CARP release's
//! `evaluations/few-shot/eval_svm_voc.py` runs it: features L2-normalised with `norm + 1e-5`,
//! one [`train_linear_svc`] per class (one-vs-rest; VOC "difficult" labels count as
//! negatives), AP per class by [`voc_average_precision`], mAP over the classes in percent;
//! low-shot: k training images per class, several seeded runs, mean and (population) std.

use crate::svm::{train_linear_svc, SvcConfig};
use crate::{voc_average_precision, EvalError, Features};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rayon::prelude::*;
use serde::Serialize;

/// Settings of [`voc_fewshot`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FewShotConfig {
    /// SVM costs C tried (release `--cost`, default 0.5).
    pub costs: Vec<f64>,
    /// Images per class for low-shot runs; empty: one run on the full train set.
    pub shots: Vec<usize>,
    /// Seeded runs per k (release: 5).
    pub runs: usize,
    /// Seed of the low-shot draws (run r of k draws from seed, k, r).
    pub seed: u64,
    /// The SVM's other settings (the cost is replaced by each of `costs`).
    pub svm: SvcConfig,
}

impl Default for FewShotConfig {
    fn default() -> Self {
        Self {
            costs: vec![0.5],
            shots: vec![1, 2, 4, 8, 16],
            runs: 5,
            seed: 0,
            svm: SvcConfig::default(),
        }
    }
}

/// mAP of one (k, cost) setting over its runs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FewShotRow {
    /// Images per class, `None` for the full train set.
    pub shots: Option<usize>,
    /// SVM cost.
    pub cost: f64,
    /// Mean of the runs' mAP, percent.
    pub mean_map: f64,
    /// Population standard deviation of the runs' mAP (numpy's `std`).
    pub std_map: f64,
    /// mAP of each run, percent.
    pub runs: Vec<f64>,
    /// AP per class of the first run, percent.
    pub class_ap: Vec<f64>,
    /// Training rows per run (low-shot draws may repeat an image under two classes).
    pub train_rows: usize,
    /// SVMs that stopped at `max_iter` before the tolerance (over all runs and classes).
    pub not_converged: usize,
}

/// Rows of the release's low-shot draw: for each class in order, its positive images
/// (`label > 0`) shuffled, the first `k` taken; the classes' picks concatenated, repeats kept.
pub fn low_shot_sample(targets: &[Vec<i8>], classes: usize, k: usize, seed: u64) -> Vec<usize> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::new();
    for c in 0..classes {
        let mut list: Vec<usize> = (0..targets.len()).filter(|&i| targets[i][c] > 0).collect();
        list.shuffle(&mut rng);
        out.extend(list.into_iter().take(k));
    }
    out
}

/// `x / (||x|| + 1e-5)` per row (the release's normalisation, not [`Features::l2_normalized`]).
pub fn release_normalized(x: &Features) -> Features {
    let mut data = x.data.clone();
    if x.dim > 0 {
        for row in data.chunks_exact_mut(x.dim) {
            let n = row
                .iter()
                .map(|&v| f64::from(v) * f64::from(v))
                .sum::<f64>()
                .sqrt();
            for v in row.iter_mut() {
                *v = (f64::from(*v) / (n + 1e-5)) as f32;
            }
        }
    }
    Features {
        data,
        rows: x.rows,
        dim: x.dim,
    }
}

/// Runs the protocol. `*_targets[i][c]`: 1 present, -1 absent, 0 difficult (negative).
///
/// # Errors
/// [`EvalError::LabelCount`] / [`EvalError::DimMismatch`] for inputs that do not fit,
/// [`EvalError::SvmSettings`] for bad settings or a class with one label value in a draw.
pub fn voc_fewshot(
    train: &Features,
    train_targets: &[Vec<i8>],
    test: &Features,
    test_targets: &[Vec<i8>],
    cfg: &FewShotConfig,
) -> Result<Vec<FewShotRow>, EvalError> {
    if train_targets.len() != train.rows {
        return Err(EvalError::LabelCount {
            set: "train",
            labels: train_targets.len(),
            rows: train.rows,
        });
    }
    if test_targets.len() != test.rows {
        return Err(EvalError::LabelCount {
            set: "test",
            labels: test_targets.len(),
            rows: test.rows,
        });
    }
    if train.dim != test.dim {
        return Err(EvalError::DimMismatch {
            train_dim: train.dim,
            test_dim: test.dim,
        });
    }
    if cfg.costs.is_empty() || cfg.runs == 0 {
        return Err(EvalError::SvmSettings(
            "give at least one cost and one run".into(),
        ));
    }
    let classes = test_targets.first().map_or(0, Vec::len);
    let train = release_normalized(train);
    let test = release_normalized(test);
    let settings: Vec<Option<usize>> = if cfg.shots.is_empty() {
        vec![None]
    } else {
        cfg.shots.iter().map(|&k| Some(k)).collect()
    };
    let mut rows = Vec::new();
    for shots in settings {
        let runs = if shots.is_some() { cfg.runs } else { 1 };
        let draws: Vec<Vec<usize>> = (0..runs)
            .map(|r| match shots {
                Some(k) => low_shot_sample(
                    train_targets,
                    classes,
                    k,
                    cfg.seed ^ ((k as u64) << 32) ^ r as u64,
                ),
                None => (0..train.rows).collect(),
            })
            .collect();
        for &cost in &cfg.costs {
            let svm = SvcConfig {
                cost,
                ..cfg.svm.clone()
            };
            let mut maps = Vec::with_capacity(runs);
            let mut first_aps = Vec::new();
            let mut not_converged = 0;
            for rows_idx in &draws {
                let x = Features::new(
                    rows_idx
                        .iter()
                        .flat_map(|&i| train.row(i).iter().copied())
                        .collect(),
                    rows_idx.len(),
                    train.dim,
                )?;
                let per_class: Vec<Result<(f64, bool), EvalError>> = (0..classes)
                    .into_par_iter()
                    .map(|c| {
                        let y: Vec<bool> =
                            rows_idx.iter().map(|&i| train_targets[i][c] > 0).collect();
                        let model = train_linear_svc(&x, &y, &svm)?;
                        let scores = model.decision_function(&test);
                        let truth: Vec<f64> =
                            test_targets.iter().map(|t| f64::from(t[c])).collect();
                        Ok((
                            voc_average_precision(&truth, &scores) * 100.0,
                            model.converged,
                        ))
                    })
                    .collect();
                let mut aps = Vec::with_capacity(classes);
                for r in per_class {
                    let (ap, ok) = r?;
                    aps.push(ap);
                    not_converged += usize::from(!ok);
                }
                maps.push(aps.iter().sum::<f64>() / classes.max(1) as f64);
                if first_aps.is_empty() {
                    first_aps = aps;
                }
            }
            let mean = maps.iter().sum::<f64>() / maps.len() as f64;
            let var = maps.iter().map(|m| (m - mean) * (m - mean)).sum::<f64>() / maps.len() as f64;
            rows.push(FewShotRow {
                shots,
                cost,
                mean_map: mean,
                std_map: var.sqrt(),
                runs: maps,
                class_ap: first_aps,
                train_rows: draws[0].len(),
                not_converged,
            });
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_shot_takes_k_positives_per_class_with_repeats() {
        let targets = vec![vec![1, -1], vec![1, 1], vec![0, 1], vec![-1, 1]];
        let pick = low_shot_sample(&targets, 2, 1, 3);
        assert_eq!(pick.len(), 2);
        assert!(targets[pick[0]][0] > 0 && targets[pick[1]][1] > 0);
        let all = low_shot_sample(&targets, 2, 10, 3);
        assert_eq!(all.len(), 2 + 3, "every positive, image 1 twice");
        assert_eq!(low_shot_sample(&targets, 2, 1, 3), pick, "seeded");
    }

    /// Separable classes give mAP 100 at every k; the std over runs is then 0.
    #[test]
    fn separable_data_scores_100() {
        let mut data = Vec::new();
        let mut targets = Vec::new();
        for i in 0..12 {
            let c = i % 3;
            let mut row = vec![0.05f32; 3];
            row[c] = 1.0 + i as f32 * 0.01;
            data.extend(row);
            let mut t = vec![-1i8; 3];
            t[c] = 1;
            targets.push(t);
        }
        let f = Features::new(data, 12, 3).unwrap();
        let cfg = FewShotConfig {
            shots: vec![1, 2],
            runs: 3,
            ..FewShotConfig::default()
        };
        let rows = voc_fewshot(&f, &targets, &f, &targets, &cfg).unwrap();
        assert_eq!(rows.len(), 2);
        for r in rows {
            assert_eq!(
                (r.mean_map, r.std_map, r.runs.len()),
                (100.0, 0.0, 3),
                "{r:?}"
            );
        }
    }
}
