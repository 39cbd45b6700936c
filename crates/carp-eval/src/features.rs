//! A row-major matrix of feature vectors, one row per image.

use crate::EvalError;

/// Feature vectors stored row-major: row `i` is `data[i * dim..(i + 1) * dim]`, shape `[rows, dim]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    /// The values, row after row; `data.len() == rows * dim`.
    pub data: Vec<f32>,
    /// Number of feature vectors.
    pub rows: usize,
    /// Length of each feature vector.
    pub dim: usize,
}

impl Features {
    /// Wraps `data` as `[rows, dim]`; errors when `data.len() != rows * dim`.
    pub fn new(data: Vec<f32>, rows: usize, dim: usize) -> Result<Self, EvalError> {
        let expected = rows
            .checked_mul(dim)
            .ok_or(EvalError::FeatureShapeOverflow { rows, dim })?;
        if data.len() != expected {
            return Err(EvalError::FeatureLength {
                rows,
                dim,
                expected,
                found: data.len(),
            });
        }
        Ok(Self { data, rows, dim })
    }

    /// Row `i` as a slice of length `dim`.
    ///
    /// # Panics
    /// If `i >= rows`.
    pub fn row(&self, i: usize) -> &[f32] {
        assert!(i < self.rows, "row {i} out of range for {} rows", self.rows);
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// Each row divided by its L2 norm (norm summed in f64); rows with zero norm stay zero.
    ///
    /// ```text
    /// y_i = x_i / ||x_i||_2   if ||x_i||_2 > 0,   else y_i = 0
    /// ```
    ///
    /// This is `torch.nn.functional.normalize(x, dim=1)` as DINO's k-NN uses it, except that DINO
    /// divides by `max(||x||, 1e-12)`; the two agree on every row whose norm is 0 or above 1e-12.
    pub fn l2_normalized(&self) -> Features {
        let mut data = self.data.clone();
        if self.dim > 0 {
            for row in data.chunks_exact_mut(self.dim) {
                let norm = row
                    .iter()
                    .map(|&x| f64::from(x) * f64::from(x))
                    .sum::<f64>()
                    .sqrt();
                if norm > 0.0 {
                    for x in row.iter_mut() {
                        *x = (f64::from(*x) / norm) as f32;
                    }
                }
            }
        }
        Features {
            data,
            rows: self.rows,
            dim: self.dim,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_checks_length() {
        assert!(Features::new(vec![0.0; 6], 2, 3).is_ok());
        let err = Features::new(vec![0.0; 5], 2, 3).unwrap_err();
        assert_eq!(
            err,
            EvalError::FeatureLength {
                rows: 2,
                dim: 3,
                expected: 6,
                found: 5
            }
        );
        assert!(err.to_string().contains("needs 6 values, found 5"));
        assert!(matches!(
            Features::new(vec![], usize::MAX, 2),
            Err(EvalError::FeatureShapeOverflow { .. })
        ));
    }

    #[test]
    fn l2_normalized_unit_rows_and_zero_rows() {
        let f = Features::new(vec![3.0, 4.0, 0.0, 0.0, -2.0, 0.0], 3, 2).unwrap();
        let n = f.l2_normalized();
        assert_eq!(n.row(0), &[0.6, 0.8]);
        assert_eq!(n.row(1), &[0.0, 0.0]);
        assert_eq!(n.row(2), &[-1.0, 0.0]);
        assert_eq!((n.rows, n.dim), (3, 2));
    }

    #[test]
    fn l2_normalized_handles_zero_dim() {
        let f = Features::new(vec![], 4, 0).unwrap();
        assert_eq!(f.l2_normalized(), f);
    }
}
