//! Binary linear SVM with squared hinge loss, L2 penalty and an intercept: scikit-learn's
//! `LinearSVC(loss="squared_hinge", penalty="l2", dual=True)`, i.e. liblinear's dual
//! coordinate descent (`solve_l2r_l1l2_svc`, solver type 1), used by the few-shot VOC07
//! protocol (spec §6).
//!
//! # Problem
//!
//! With `x̃_i = [x_i, s]` (the intercept as an extra feature of constant value `s`, scikit-learn's
//! `intercept_scaling`, penalised like the weights) and `y_i ∈ {-1, +1}`:
//!
//! ```text
//! primal:  min_w  ½ ||w||² + Σ_i C_i · max(0, 1 - y_i w·x̃_i)²        C_i = C · weight(y_i)
//! dual:    min_α  ½ αᵀ Q̄ α - Σ_i α_i,  α_i >= 0,   Q̄_ij = y_i y_j x̃_i·x̃_j + δ_ij D_i,  D_i = 1 / (2 C_i)
//! w = Σ_i α_i y_i x̃_i;   decision(x) = w[..d]·x + s · w[d]   (intercept = s · w[d])
//! ```
//!
//! Coordinate descent on the dual: for `i` in a random order, the gradient is
//! `G = y_i w·x̃_i - 1 + D_i α_i`; the projected gradient `PG` is `min(G, 0)` at `α_i = 0`, else
//! `G`; when `|PG| > 1e-12` the exact one-dimensional minimiser is
//! `α_i <- max(α_i - G / Q̄_ii, 0)` and `w` is updated by `(α_i^new - α_i^old) y_i x̃_i`. An
//! outer iteration sweeps the active set; coordinates at 0 whose gradient exceeds the previous
//! sweep's largest projected gradient are shrunk out. The run stops when
//! `max PG - min PG <= tol` over the active set, after a final check over all coordinates
//! (liblinear's shrinking rule), or after `max_iter` sweeps.
//!
//! The primal is strongly convex, so the optimum is unique and every correct solver converges to
//! the same decision values; solvers differ only in where they stop. liblinear draws its sweep
//! order from its own generator, which is not reproduced here (a seeded ChaCha8 instead), so at
//! the release tolerance the decision values agree with scikit-learn's to about the size of the
//! stopping gap, not bit for bit (see `tests/protocols_golden.rs`).

use crate::{EvalError, Features};
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// Settings of [`train_linear_svc`]; the defaults are the release's `LinearSVC` arguments.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SvcConfig {
    /// Cost C (release: `--cost`, default 0.5).
    pub cost: f64,
    /// Class weight of positives (release: 2).
    pub positive_weight: f64,
    /// Class weight of negatives (release: 1).
    pub negative_weight: f64,
    /// Value `s` of the constant feature that carries the intercept (`intercept_scaling`, 1).
    pub intercept_scaling: f64,
    /// Stopping tolerance on the projected-gradient spread (`tol`, 1e-4).
    pub tolerance: f64,
    /// Largest number of sweeps (`max_iter`, 2000).
    pub max_iter: usize,
    /// Seed of the sweep order.
    pub seed: u64,
}

impl Default for SvcConfig {
    fn default() -> Self {
        Self {
            cost: 0.5,
            positive_weight: 2.0,
            negative_weight: 1.0,
            intercept_scaling: 1.0,
            tolerance: 1e-4,
            max_iter: 2000,
            seed: 0,
        }
    }
}

/// A trained binary linear SVM.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LinearSvc {
    /// Weights, one per feature dimension.
    pub weights: Vec<f64>,
    /// Intercept b (`intercept_scaling` times the weight of the constant feature).
    pub intercept: f64,
    /// Sweeps run.
    pub iterations: usize,
    /// Whether the tolerance was reached before `max_iter`.
    pub converged: bool,
}

impl LinearSvc {
    /// Decision values `w·x + b` of each row of `x` (positive: the positive class).
    ///
    /// # Panics
    /// If `x.dim` differs from the number of weights.
    pub fn decision_function(&self, x: &Features) -> Vec<f64> {
        assert_eq!(x.dim, self.weights.len(), "feature width != SVM width");
        (0..x.rows)
            .map(|i| {
                x.row(i)
                    .iter()
                    .zip(&self.weights)
                    .map(|(&a, &w)| f64::from(a) * w)
                    .sum::<f64>()
                    + self.intercept
            })
            .collect()
    }
}

/// Trains the SVM of the module docs on the rows of `x` with labels `positive[i]`.
///
/// # Errors
/// [`EvalError::LabelCount`] when the label count is not the row count,
/// [`EvalError::SvmSettings`] for a non-positive cost, weight or tolerance, or when all labels
/// are equal (scikit-learn refuses a single class too), [`EvalError::NonFiniteFeature`] for
/// NaN or infinite features.
pub fn train_linear_svc(
    x: &Features,
    positive: &[bool],
    cfg: &SvcConfig,
) -> Result<LinearSvc, EvalError> {
    if positive.len() != x.rows {
        return Err(EvalError::LabelCount {
            set: "train",
            labels: positive.len(),
            rows: x.rows,
        });
    }
    for (name, v) in [
        ("cost", cfg.cost),
        ("positive weight", cfg.positive_weight),
        ("negative weight", cfg.negative_weight),
        ("tolerance", cfg.tolerance),
    ] {
        if !(v.is_finite() && v > 0.0) {
            return Err(EvalError::SvmSettings(format!(
                "{name} must be finite and > 0, found {v}"
            )));
        }
    }
    if positive.iter().all(|&p| p) || positive.iter().all(|&p| !p) {
        return Err(EvalError::SvmSettings(format!(
            "the {} training rows are all {}: an SVM needs both classes",
            x.rows,
            if positive.first() == Some(&true) {
                "positive"
            } else {
                "negative"
            }
        )));
    }
    if let Some(k) = x.data.iter().position(|v| !v.is_finite()) {
        return Err(EvalError::NonFiniteFeature {
            set: "train",
            row: k / x.dim.max(1),
            col: k % x.dim.max(1),
            value: x.data[k],
        });
    }
    let (l, d) = (x.rows, x.dim);
    let s = cfg.intercept_scaling;
    let rows: Vec<f64> = x.data.iter().map(|&v| f64::from(v)).collect();
    let row = |i: usize| &rows[i * d..(i + 1) * d];
    let y: Vec<f64> = positive
        .iter()
        .map(|&p| if p { 1.0 } else { -1.0 })
        .collect();
    let diag: Vec<f64> = positive
        .iter()
        .map(|&p| {
            let c = cfg.cost
                * if p {
                    cfg.positive_weight
                } else {
                    cfg.negative_weight
                };
            0.5 / c
        })
        .collect();
    let qd: Vec<f64> = (0..l)
        .map(|i| diag[i] + row(i).iter().map(|v| v * v).sum::<f64>() + s * s)
        .collect();
    let mut alpha = vec![0.0f64; l];
    let mut w = vec![0.0f64; d];
    let mut wb = 0.0f64; // weight of the constant feature
    let mut index: Vec<usize> = (0..l).collect();
    let mut active = l;
    // liblinear's PGmin_old only matters at an upper bound, which the squared hinge has not.
    let mut pg_max_old = f64::INFINITY;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut iter = 0;
    let mut converged = false;
    while iter < cfg.max_iter {
        let (mut pg_max, mut pg_min) = (f64::NEG_INFINITY, f64::INFINITY);
        for i in 0..active {
            let j = i + rng.random_range(0..active - i);
            index.swap(i, j);
        }
        let mut s_idx = 0;
        while s_idx < active {
            let i = index[s_idx];
            let xi = row(i);
            let yi = y[i];
            let dot = xi.iter().zip(&w).map(|(a, b)| a * b).sum::<f64>() + s * wb;
            let g = yi * dot - 1.0 + alpha[i] * diag[i];
            let mut pg = 0.0;
            if alpha[i] == 0.0 {
                if g > pg_max_old {
                    // Shrink: this coordinate is likely to stay at 0.
                    active -= 1;
                    index.swap(s_idx, active);
                    continue;
                } else if g < 0.0 {
                    pg = g;
                }
            } else {
                pg = g;
            }
            pg_max = pg_max.max(pg);
            pg_min = pg_min.min(pg);
            if pg.abs() > 1e-12 {
                let old = alpha[i];
                alpha[i] = (alpha[i] - g / qd[i]).max(0.0);
                let step = (alpha[i] - old) * yi;
                for (wk, xk) in w.iter_mut().zip(xi) {
                    *wk += step * xk;
                }
                wb += step * s;
            }
            s_idx += 1;
        }
        iter += 1;
        if pg_max - pg_min <= cfg.tolerance {
            if active == l {
                converged = true;
                break;
            }
            // Converged on the active set: check every coordinate once more.
            active = l;
            pg_max_old = f64::INFINITY;
            continue;
        }
        pg_max_old = if pg_max <= 0.0 { f64::INFINITY } else { pg_max };
    }
    Ok(LinearSvc {
        weights: w,
        intercept: wb * s,
        iterations: iter,
        converged,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// KKT conditions of the primal at the solution: w = Σ α_i y_i x̃_i with α_i = 2 C_i ξ_i,
    /// ξ_i = max(0, 1 - y_i f(x_i)): the primal gradient vanishes.
    #[test]
    fn solution_satisfies_the_primal_optimality_condition() {
        let x = Features::new(
            vec![
                1.0, 0.2, 0.9, -0.1, 0.2, 1.0, -0.3, 0.8, 0.5, 0.5, -1.0, 0.1,
            ],
            6,
            2,
        )
        .unwrap();
        let y = [true, true, false, false, true, false];
        let cfg = SvcConfig {
            cost: 1.5,
            tolerance: 1e-10,
            max_iter: 100_000,
            ..SvcConfig::default()
        };
        let m = train_linear_svc(&x, &y, &cfg).unwrap();
        assert!(m.converged);
        let f = m.decision_function(&x);
        let mut grad = [m.weights[0], m.weights[1], m.intercept];
        for i in 0..6 {
            let yi = if y[i] { 1.0 } else { -1.0 };
            let ci = cfg.cost * if y[i] { 2.0 } else { 1.0 };
            let xi = (1.0 - yi * f[i]).max(0.0);
            let r = x.row(i);
            for (g, v) in grad.iter_mut().zip([f64::from(r[0]), f64::from(r[1]), 1.0]) {
                *g -= 2.0 * ci * xi * yi * v;
            }
        }
        for g in grad {
            assert!(g.abs() < 1e-8, "primal gradient {grad:?}");
        }
    }

    #[test]
    fn one_class_is_refused() {
        let x = Features::new(vec![1.0, 2.0], 2, 1).unwrap();
        let err = train_linear_svc(&x, &[false, false], &SvcConfig::default()).unwrap_err();
        assert!(err.to_string().contains("both classes"), "{err}");
        let err = train_linear_svc(&x, &[true], &SvcConfig::default()).unwrap_err();
        assert!(matches!(err, EvalError::LabelCount { .. }));
    }
}
