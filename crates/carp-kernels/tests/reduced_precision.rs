//! bf16 / f16 inputs (issue 12): carp's path on flex (f32 kernels on rounded inputs and
//! weights, output rounded) against Burn's own reduced-precision ops (`with_burn_ops`,
//! weights cast to the input's type), and both against f32.
//!
//! Tolerances are in units of the reduced type's unit roundoff ε (bf16 2⁻⁸, f16 2⁻¹¹),
//! relative to the largest magnitude. In bf16 both paths sum the rounded operands in f32
//! (flex converts bf16 to f32), so they agree to 4ε. Flex's f16 convolution runs the gemm
//! crate's native f16 kernels, which differ from an f32 sum by several f16 steps (measured
//! 4 ulp at |g| ≈ 45 on a weight gradient), so f16 gets 32ε against Burn. Against f32 the
//! rounding of the inputs adds up over the reduction: 32ε.

// A scalar to differentiate, on tensors far below the 4 Mi elements where Burn's sum turns
// parallel (clippy.toml, issue 15); carp-kernels sits below carp-core's ordered_sum.
#![allow(clippy::disallowed_methods)]

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNormConfig, PaddingConfig2d};
use burn::tensor::{DType, Device, Distribution, FloatDType, Tensor};
use carp_kernels::{batch_norm, conv2d, with_burn_ops};

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

fn eps(dtype: FloatDType) -> f32 {
    match dtype {
        FloatDType::BF16 => 2f32.powi(-8),
        FloatDType::F16 => 2f32.powi(-11),
        _ => unreachable!(),
    }
}

/// Asserts `|a - b| <= tol · (1 + max |b|)` element-wise, and that `b` is not all zeros.
fn close(what: &str, a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(scale > 0.0, "{what}: reference is all zeros");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * (1.0 + scale),
            "{what}: element {i}: {x} vs {y} (tol {tol} x {scale})"
        );
    }
}

fn layer(ci: usize, co: usize, k: usize, s: usize, p: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([ci, co], [k, k])
        .with_stride([s, s])
        .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
        .with_bias(false)
        .init(device)
}

/// Output (as f32), input gradient and f32 weight gradient of `sum(conv(x) · r)`, with `x`
/// and `r` in `dtype`; asserts the types on the way.
fn conv_run(conv: &Conv2d, x: &Tensor<4>, r: &Tensor<4>, dtype: FloatDType) -> [Vec<f32>; 3] {
    let x = x.clone().cast(dtype).detach().require_grad();
    let y = conv2d(x.clone(), conv);
    assert_eq!(y.dtype(), DType::from(dtype), "output in the input's type");
    let loss = (y.clone() * r.clone().cast(dtype))
        .cast(FloatDType::F32)
        .sum();
    let grads = loss.backward();
    let gw = conv.weight.grad(&grads).unwrap();
    assert_eq!(
        gw.dtype(),
        DType::F32,
        "the master weight's gradient is f32"
    );
    [values(y), values(x.grad(&grads).unwrap()), values(gw)]
}

#[test]
fn reduced_convolution_matches_burns_and_f32() {
    let device = Device::flex().autodiff();
    for dtype in [FloatDType::BF16, FloatDType::F16] {
        for (b, ci, h, w, co, k, s, p) in [
            (2, 3, 12, 12, 8, 3, 1, 1),
            (2, 16, 9, 7, 24, 3, 2, 1),
            (3, 32, 5, 5, 16, 1, 1, 0),
        ] {
            let conv = layer(ci, co, k, s, p, &device);
            let x = Tensor::<4>::random([b, ci, h, w], Distribution::Normal(0.0, 1.0), &device);
            let (oh, ow) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
            let r = Tensor::<4>::random([b, co, oh, ow], Distribution::Normal(0.0, 1.0), &device);
            let carp = conv_run(&conv, &x, &r, dtype);
            let burn = with_burn_ops(|| conv_run(&conv, &x, &r, dtype));
            let f32_ref = conv_run(&conv, &x, &r, FloatDType::F32);
            let e = eps(dtype);
            for (i, what) in ["output", "input grad", "weight grad"].iter().enumerate() {
                let name = format!("{dtype:?} [{b},{ci},{h},{w}]->{co} k{k} s{s}: {what}");
                let vs_burn = if dtype == FloatDType::BF16 { 4.0 } else { 32.0 };
                close(&format!("{name} vs burn"), &carp[i], &burn[i], vs_burn * e);
                close(&format!("{name} vs f32"), &carp[i], &f32_ref[i], 32.0 * e);
            }
        }
    }
}

/// A bf16/f16 BatchNorm (training, residual, ReLU) computes in f32: its output is the f32
/// layer's on the rounded inputs, rounded; the running statistics stay f32 and equal the
/// f32 layer's.
#[test]
fn reduced_batch_norm_computes_in_f32() {
    let device = Device::flex().autodiff();
    for dtype in [FloatDType::BF16, FloatDType::F16] {
        let (b, c, h, w) = (4, 6, 5, 5);
        let x =
            Tensor::<4>::random([b, c, h, w], Distribution::Normal(2.0, 1.5), &device).cast(dtype);
        let res =
            Tensor::<4>::random([b, c, h, w], Distribution::Normal(0.0, 1.0), &device).cast(dtype);
        let bn_low = BatchNormConfig::new(c).init(&device);
        let bn_f32 = BatchNormConfig::new(c).init(&device);
        let y = batch_norm(x.clone(), &bn_low, Some(res.clone()), true);
        assert_eq!(y.dtype(), DType::from(dtype));
        let want = batch_norm(
            x.cast(FloatDType::F32),
            &bn_f32,
            Some(res.cast(FloatDType::F32)),
            true,
        )
        .cast(dtype);
        assert_eq!(values(y), values(want), "{dtype:?}: output");
        let rv = bn_low.running_var.value_sync();
        assert_eq!(rv.dtype(), DType::F32);
        assert_eq!(values(rv), values(bn_f32.running_var.value_sync()));
        assert_eq!(
            values(bn_low.running_mean.value_sync()),
            values(bn_f32.running_mean.value_sync())
        );
    }
}
