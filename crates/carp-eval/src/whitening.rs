//! PCA whitening learned on a separate image set, as the CARP release's copy-detection script
//! (`eval_copy_detection.py` with DINO's `utils.PCA(dim, whit=0.5)`) learns and applies it.

use crate::{EvalError, Features};
use serde::Serialize;

/// A learned whitening: `y = P (x - μ)`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Whitening {
    /// μ, the mean of the whitening features, `[dim]`.
    pub mean: Vec<f64>,
    /// P, row-major `[out_dim, dim]`: `diag(λ^-power) Vᵀ` over the kept eigenpairs.
    #[serde(skip)]
    pub projection: Vec<f64>,
    /// Input width.
    pub dim: usize,
    /// Output width (eigenpairs kept).
    pub out_dim: usize,
    /// Share of the eigenvalue sum (after clamping) the kept eigenpairs hold.
    pub energy_kept: f64,
    /// Eigenvalues clamped up to 1e-5 of the largest.
    pub clamped: usize,
}

impl Whitening {
    /// Learns the whitening from the rows of `features` (`N x D`), as the release does:
    ///
    /// ```text
    /// μ = mean of the rows;   C = XᵀX / N   (the second moment of the *uncentred* rows, as the
    ///                                        release computes it before subtracting μ elsewhere)
    /// C = V diag(λ) Vᵀ;  λ_i <- max(λ_i, 1e-5 · max λ);  keep the out_dim largest
    /// P = diag(λ^-power) Vᵀ
    /// ```
    ///
    /// `power` is the release's `whit` (0.5: full whitening); `out_dim` defaults to `D`.
    /// Eigenvectors are defined up to sign (and, for repeated eigenvalues, up to a rotation);
    /// cosine similarities of whitened rows do not depend on that choice. The eigensolver is
    /// nalgebra's symmetric QR in f64.
    ///
    /// # Errors
    /// [`EvalError::RetrievalInput`] for no rows, a zero width, `out_dim` of 0 or above `D`, or
    /// a non-finite value.
    pub fn learn(
        features: &Features,
        power: f64,
        out_dim: Option<usize>,
    ) -> Result<Self, EvalError> {
        let (n, d) = (features.rows, features.dim);
        let out_dim = out_dim.unwrap_or(d);
        if n == 0 || d == 0 || out_dim == 0 || out_dim > d {
            return Err(EvalError::RetrievalInput(format!(
                "whitening: {n} rows of width {d} cannot give {out_dim} output dimensions"
            )));
        }
        if let Some(k) = features.data.iter().position(|v| !v.is_finite()) {
            return Err(EvalError::NonFiniteFeature {
                set: "whitening",
                row: k / d,
                col: k % d,
                value: features.data[k],
            });
        }
        let x =
            nalgebra::DMatrix::from_row_iterator(n, d, features.data.iter().map(|&v| f64::from(v)));
        let mean: Vec<f64> = (0..d).map(|j| x.column(j).sum() / n as f64).collect();
        let cov = (x.transpose() * &x) / n as f64;
        let eig = nalgebra::SymmetricEigen::new(cov);
        let mut values: Vec<f64> = eig.eigenvalues.iter().copied().collect();
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let eps = max * 1e-5;
        let mut clamped = 0;
        for v in values.iter_mut() {
            if *v < eps {
                *v = eps;
                clamped += 1;
            }
        }
        let total: f64 = values.iter().sum();
        let mut order: Vec<usize> = (0..d).collect();
        order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
        order.truncate(out_dim);
        let mut projection = Vec::with_capacity(out_dim * d);
        for &k in &order {
            let scale = values[k].powf(-power);
            projection.extend(eig.eigenvectors.column(k).iter().map(|v| v * scale));
        }
        let kept: f64 = order.iter().map(|&k| values[k]).sum();
        Ok(Self {
            mean,
            projection,
            dim: d,
            out_dim,
            energy_kept: kept / total,
            clamped,
        })
    }

    /// `P (x - μ)` for each row of `x`.
    ///
    /// # Errors
    /// [`EvalError::DimMismatch`] when `x` is not `D` wide.
    pub fn apply(&self, x: &Features) -> Result<Features, EvalError> {
        if x.dim != self.dim {
            return Err(EvalError::DimMismatch {
                train_dim: self.dim,
                test_dim: x.dim,
            });
        }
        let mut out = Vec::with_capacity(x.rows * self.out_dim);
        let mut centred = vec![0.0f64; self.dim];
        for i in 0..x.rows {
            for ((c, &v), m) in centred.iter_mut().zip(x.row(i)).zip(&self.mean) {
                *c = f64::from(v) - m;
            }
            for p in self.projection.chunks_exact(self.dim) {
                out.push(p.iter().zip(&centred).map(|(a, b)| a * b).sum::<f64>() as f32);
            }
        }
        Features::new(out, x.rows, self.out_dim)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With centred whitening data the whitened data has identity covariance.
    #[test]
    fn whitened_centred_data_has_identity_second_moment() {
        let raw = [3.0f32, 1.0, -1.0, 2.0, 0.5, -0.5, -2.5, -2.5, 1.0, 0.0];
        let mean = [
            raw.iter().step_by(2).sum::<f32>() / 5.0,
            raw.iter().skip(1).step_by(2).sum::<f32>() / 5.0,
        ];
        let centred: Vec<f32> = raw
            .iter()
            .enumerate()
            .map(|(k, v)| v - mean[k % 2])
            .collect();
        let f = Features::new(centred, 5, 2).unwrap();
        let w = Whitening::learn(&f, 0.5, None).unwrap();
        let y = w.apply(&f).unwrap();
        for a in 0..2 {
            for b in 0..2 {
                let m: f64 = (0..5)
                    .map(|i| f64::from(y.row(i)[a]) * f64::from(y.row(i)[b]))
                    .sum::<f64>()
                    / 5.0;
                let want = if a == b { 1.0 } else { 0.0 };
                assert!((m - want).abs() < 1e-5, "[{a},{b}] = {m}");
            }
        }
        assert_eq!((w.clamped, w.out_dim), (0, 2));
        assert!(Whitening::learn(&f, 0.5, Some(3)).is_err());
    }
}
