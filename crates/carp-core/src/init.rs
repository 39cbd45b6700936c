//! Seeded parameter initialisers that match PyTorch's distributions.
//!
//! Weights are drawn on the host from a [`ChaCha8Rng`] so that the same seed gives the same
//! network on every backend and thread count (Burn's device RNG is backend-specific).

use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, StandardNormal};

/// Draws `n` values from N(0, std^2) truncated to the absolute bounds `[lo, hi]`.
///
/// Matches `torch.nn.init.trunc_normal_(t, std=std, a=lo, b=hi)` in distribution
/// (rejection sampling instead of the inverse-CDF method).
pub fn trunc_normal(rng: &mut ChaCha8Rng, n: usize, std: f64, lo: f64, hi: f64) -> Vec<f32> {
    assert!(
        lo < hi && std > 0.0,
        "trunc_normal needs lo < hi and std > 0"
    );
    let normal = Normal::new(0.0, std).expect("finite std");
    (0..n)
        .map(|_| loop {
            let x: f64 = normal.sample(rng);
            if (lo..=hi).contains(&x) {
                break x as f32;
            }
        })
        .collect()
}

/// Draws `n` values from N(0, std^2).
pub fn normal(rng: &mut ChaCha8Rng, n: usize, std: f64) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let z: f64 = StandardNormal.sample(rng);
            (z * std) as f32
        })
        .collect()
}

/// Draws `n` values uniformly from `[-bound, bound)`.
pub fn uniform(rng: &mut ChaCha8Rng, n: usize, bound: f64) -> Vec<f32> {
    (0..n)
        .map(|_| rng.random_range(-bound..bound) as f32)
        .collect()
}

/// Wraps host values as a trainable parameter of the given shape on `device`.
///
/// # Panics
///
/// Panics if `values.len()` is not the product of `shape`.
pub fn param<const D: usize>(
    values: Vec<f32>,
    shape: [usize; D],
    device: &Device,
) -> Param<Tensor<D>> {
    assert_eq!(
        values.len(),
        shape.iter().product::<usize>(),
        "parameter values do not fill shape {shape:?}"
    );
    Param::from_data(TensorData::new(values, shape), device)
}
