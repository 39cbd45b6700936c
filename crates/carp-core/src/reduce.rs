//! Full reductions whose result does not depend on thread timing (issue 15).
//!
//! Burn 0.22.1's CPU backend (flex) sums a contiguous f32 tensor of 4 Mi elements or more as
//! `data.par_chunks(64 Ki).map(simd_sum).sum()` (`burn-flex` `ops/reduce.rs`,
//! `sum_f32_parallel`; `Tensor::sum` and `Tensor::mean` both go there). Rayon splits that
//! iterator adaptively: a half that another worker steals is split further, one that its
//! owner runs itself is not. So the grouping of the chunk sums, and the last bits of the
//! result, follow the timing of the other threads, and training runs with the same seed
//! drift apart once one such sum rounds differently (LARS's trust ratio of the 2048 x 2048
//! head layer was the one that did). Smaller tensors are summed by one serial SIMD pass,
//! and `sum_dim` has no parallel path at all.
//!
//! carp makes every full reduction through [`ordered_sum`] / [`ordered_mean`]; the
//! workspace's `clippy.toml` rejects `Tensor::sum` and `Tensor::mean` elsewhere.

use burn::tensor::Tensor;

/// Largest element count Burn flex sums on one thread; [`ordered_sum`] leaves these to
/// `Tensor::sum`, so results below it are unchanged.
pub const SERIAL_MAX: usize = (4 << 20) - 1;

/// Row length of [`ordered_sum`]'s two-level sum above [`SERIAL_MAX`] (Burn flex's chunk).
pub const ROW: usize = 1 << 16;

/// Sum of all elements, added in an order fixed by the element count alone.
///
/// Up to [`SERIAL_MAX`] elements this is `Tensor::sum`. Beyond, the flattened tensor is cut
/// into rows of [`ROW`] elements (plus a shorter tail), the rows are summed with `sum_dim`,
/// and the row sums are summed in turn. Differentiable.
///
/// # Example
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use carp_core::reduce::ordered_sum;
/// let t = Tensor::<2>::ones([3, 100_000], &Device::flex());
/// let s: f32 = ordered_sum(t).into_scalar();
/// assert_eq!(s, 300_000.0);
/// ```
#[allow(clippy::disallowed_methods)] // the one place `Tensor::sum` is safe: below 4 Mi elements
pub fn ordered_sum<const D: usize>(tensor: Tensor<D>) -> Tensor<1> {
    let n = tensor.shape().num_elements();
    let flat = tensor.reshape([n]);
    if n <= SERIAL_MAX {
        return flat.sum();
    }
    let rows = n / ROW;
    let body = flat.clone().slice(0..rows * ROW).reshape([rows, ROW]);
    let sum = ordered_sum(body.sum_dim(1));
    if rows * ROW == n {
        sum
    } else {
        sum + flat.slice(rows * ROW..n).sum()
    }
}

/// Mean of all elements: [`ordered_sum`] divided by the element count.
///
/// # Example
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use carp_core::reduce::ordered_mean;
/// let t = Tensor::<1>::from_floats([1.0, 2.0, 6.0], &Device::flex());
/// let m: f32 = ordered_mean(t).into_scalar();
/// assert_eq!(m, 3.0);
/// ```
pub fn ordered_mean<const D: usize>(tensor: Tensor<D>) -> Tensor<1> {
    let n = tensor.shape().num_elements();
    ordered_sum(tensor).div_scalar(n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    fn host(n: usize) -> Vec<f32> {
        // Values of mixed sign and size whose f32 sum depends on the grouping.
        (0..n)
            .map(|i| ((i as f32 * 0.618).sin() * 1e3) + ((i % 7) as f32) * 1e-3)
            .collect()
    }

    /// Sizes on both sides of Burn's 4 Mi parallel threshold, with and without a tail: the
    /// value is the f64 sum to f32 accuracy.
    #[test]
    fn matches_f64() {
        let device = Device::flex();
        for n in [1, ROW + 3, SERIAL_MAX, SERIAL_MAX + 1, SERIAL_MAX + ROW + 7] {
            let v = host(n);
            let t = Tensor::<1>::from_data(TensorData::new(v.clone(), [n]), &device);
            let got: f32 = ordered_sum(t).into_scalar();
            let reference: f64 = v.iter().map(|&x| x as f64).sum();
            let scale: f64 = v.iter().map(|&x| (x as f64).abs()).sum();
            assert!(
                (got as f64 - reference).abs() <= 1e-6 * scale,
                "n = {n}: {got} vs {reference}"
            );
        }
    }

    /// Shape does not matter, only the element order; the gradient is all ones.
    #[test]
    fn any_rank_and_differentiable() {
        let device = Device::flex().autodiff();
        let n = SERIAL_MAX + 2 * ROW + 5;
        let v = host(n);
        let flat = Tensor::<1>::from_data(TensorData::new(v.clone(), [n]), &device);
        let t = Tensor::<3>::from_data(TensorData::new(v, [1, 5, n / 5]), &device).require_grad();
        let a: f32 = ordered_sum(flat).into_scalar();
        let s = ordered_sum(t.clone());
        assert_eq!(s.clone().into_scalar::<f32>().to_bits(), a.to_bits());
        let grads = s.backward();
        let g: Vec<f32> = t.grad(&grads).unwrap().into_data().try_to_vec().unwrap();
        assert!(g.iter().all(|&x| x == 1.0));
        let m: f32 = ordered_mean(t.detach()).into_scalar();
        assert_eq!(m, a / n as f32);
    }
}
