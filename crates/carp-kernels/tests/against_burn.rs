//! carp's kernels against Burn's own ops on the flex backend: the convolution (output, input
//! gradient, weight gradient) on every convolution shape ResNet-18/50 use and on odd ones,
//! and the fused BatchNorm (+ residual) (+ ReLU) in training and inference mode, including
//! the running statistics. f32 tolerance: |carp - burn| <= 1e-4 · (1 + max |burn|) per tensor.

// A scalar to differentiate, on tensors far below the 4 Mi elements where Burn's sum turns
// parallel (clippy.toml, issue 15); carp-kernels sits below carp-core's ordered_sum.
#![allow(clippy::disallowed_methods)]

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::{Device, Distribution, Tensor};
use carp_kernels::{batch_norm, conv2d, conv_bn, with_burn_ops};

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

/// Asserts `a ≈ b` within 1e-4 relative to the largest |b| (and absolute 1e-4).
fn close(what: &str, a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let tol = 1e-4 * (1.0 + scale);
    let (i, worst) = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .enumerate()
        .fold(
            (0, 0.0f32),
            |(bi, bv), (i, v)| if v > bv { (i, v) } else { (bi, bv) },
        );
    assert!(
        worst <= tol,
        "{what}: element {i}: carp {} vs burn {} (|diff| {worst} > {tol})",
        a[i],
        b[i]
    );
    assert!(
        scale > 0.0,
        "{what}: reference is all zeros (vacuous comparison)"
    );
}

/// (name, batch, c_in, h, w, c_out, kernel, stride, pad)
type Case = (
    &'static str,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
);

/// Every convolution configuration of ResNet-18 (small and ImageNet stems) and ResNet-50,
/// at small batch and, where the channel count does not change the code path, fewer
/// channels; then odd sizes.
const CASES: &[Case] = &[
    ("r18 small stem", 2, 3, 32, 32, 64, 3, 1, 1),
    ("r18 l1 3x3", 2, 64, 32, 32, 64, 3, 1, 1),
    ("r18 l2 3x3 s2", 2, 64, 32, 32, 128, 3, 2, 1),
    ("r18 l2 downsample 1x1 s2", 2, 64, 32, 32, 128, 1, 2, 0),
    ("r18 l3 3x3 at 8", 2, 256, 8, 8, 256, 3, 1, 1),
    ("r18 l4 3x3 s2 to 2x2", 4, 256, 4, 4, 512, 3, 2, 1),
    ("r18 l4 3x3 at 2x2", 4, 512, 2, 2, 512, 3, 1, 1),
    ("r18 l4 3x3 at 1x1", 4, 512, 1, 1, 64, 3, 1, 1),
    ("r50 stem 7x7 s2", 1, 3, 64, 64, 64, 7, 2, 3),
    ("r50 1x1 reduce", 2, 256, 14, 14, 64, 1, 1, 0),
    ("r50 1x1 expand", 2, 64, 14, 14, 256, 1, 1, 0),
    ("r50 3x3 s2", 2, 128, 14, 14, 128, 3, 2, 1),
    ("r50 downsample 1x1 s2", 2, 256, 14, 14, 512, 1, 2, 0),
    ("r50 l4 1x1 at 7", 2, 512, 7, 7, 2048, 1, 1, 0),
    ("r18 l2 3x3 at 16 (Winograd)", 2, 128, 16, 16, 128, 3, 1, 1),
    ("Winograd odd 7x5, 3 images", 3, 128, 7, 5, 136, 3, 1, 1),
    ("Winograd no pad on 6x9", 2, 144, 6, 9, 128, 3, 1, 0),
    ("Winograd pad 2 on 5x5", 2, 128, 5, 5, 128, 3, 1, 2),
    ("Winograd many blocks on 9x9", 40, 128, 9, 9, 128, 3, 1, 1),
    ("odd 3x3 s2 on 7x5", 3, 5, 7, 5, 13, 3, 2, 1),
    ("odd 3x3 no pad", 2, 7, 9, 6, 5, 3, 1, 0),
    ("odd 5x5 pad 2", 2, 4, 11, 9, 6, 5, 1, 2),
    ("odd 1x1 s2 on 9x7", 2, 6, 9, 7, 10, 1, 2, 0),
    ("odd 7x7 s2 on 13x11", 2, 3, 13, 11, 8, 7, 2, 3),
    ("odd 3x3 s3", 2, 4, 10, 8, 3, 3, 3, 1),
    ("odd 1x1 pad 1", 1, 3, 5, 4, 2, 1, 1, 0),
];

fn conv(c: &Case, device: &Device) -> Conv2d {
    let (_, _, ci, _, _, co, k, s, p) = *c;
    Conv2dConfig::new([ci, co], [k, k])
        .with_stride([s, s])
        .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
        .with_bias(false)
        .init(device)
}

/// Output, input gradient and weight gradient of `sum(conv(x) · r)`.
// Burn's `Tensor::sum` is exact enough and deterministic below 4 Mi elements (issue 15);
// these tensors are far smaller, and carp-kernels cannot depend on carp-core's ordered_sum.
#[allow(clippy::disallowed_methods)]
fn conv_run(layer: &Conv2d, x: &Tensor<4>, r: &Tensor<4>) -> [Vec<f32>; 3] {
    let x = x.clone().require_grad();
    let y = conv2d(x.clone(), layer);
    let grads = (y.clone() * r.clone()).sum().backward();
    [
        values(y),
        values(x.grad(&grads).unwrap()),
        values(layer.weight.grad(&grads).unwrap()),
    ]
}

#[test]
fn convolution_matches_burn_forward_and_both_gradients() {
    let device = Device::flex().autodiff();
    for case in CASES {
        let (name, b, ci, h, w, _, k, s, p) = *case;
        let layer = conv(case, &device);
        let x = Tensor::<4>::random([b, ci, h, w], Distribution::Normal(0.0, 1.0), &device);
        let oh = (h + 2 * p - k) / s + 1;
        let ow = (w + 2 * p - k) / s + 1;
        let r = Tensor::<4>::random([b, case.5, oh, ow], Distribution::Normal(0.0, 1.0), &device);
        let carp = conv_run(&layer, &x, &r);
        let burn = with_burn_ops(|| conv_run(&layer, &x, &r));
        for (what, (a, b)) in ["output", "input grad", "weight grad"]
            .iter()
            .zip(carp.iter().zip(&burn))
        {
            close(&format!("{name}: {what}"), a, b);
        }
        // Inference (no autodiff) takes the plain path.
        let plain = Device::flex();
        let layer_p = conv(case, &plain);
        let xp = Tensor::<4>::random([b, ci, h, w], Distribution::Normal(0.0, 1.0), &plain);
        let a = values(conv2d(xp.clone(), &layer_p));
        let bref = values(layer_p.forward(xp));
        close(&format!("{name}: inference output"), &a, &bref);
    }
}

fn batch_norm_layer(c: usize, device: &Device) -> BatchNorm {
    let mut bn = BatchNormConfig::new(c).init(device);
    bn.gamma = burn::module::Param::from_tensor(Tensor::random(
        [c],
        Distribution::Uniform(0.5, 1.5),
        device,
    ));
    bn.beta = burn::module::Param::from_tensor(Tensor::random(
        [c],
        Distribution::Normal(0.0, 0.5),
        device,
    ));
    bn
}

/// Output; input, γ, β and residual gradients; running mean and variance after the step.
// Burn's `Tensor::sum` is exact enough and deterministic below 4 Mi elements (issue 15);
// these tensors are far smaller, and carp-kernels cannot depend on carp-core's ordered_sum.
#[allow(clippy::disallowed_methods)]
fn bn_run(
    bn: &BatchNorm,
    x: &Tensor<4>,
    residual: Option<&Tensor<4>>,
    relu: bool,
    r: &Tensor<4>,
) -> Vec<Vec<f32>> {
    let x = x.clone().require_grad();
    let res = residual.map(|t| t.clone().require_grad());
    let y = batch_norm(x.clone(), bn, res.clone(), relu);
    let grads = (y.clone() * r.clone()).sum().backward();
    let mut out = vec![
        values(y),
        values(x.grad(&grads).unwrap()),
        values(bn.gamma.grad(&grads).unwrap()),
        values(bn.beta.grad(&grads).unwrap()),
        values(bn.running_mean.value_sync()),
        values(bn.running_var.value_sync()),
    ];
    if let Some(res) = res {
        out.push(values(res.grad(&grads).unwrap()));
    }
    out
}

#[test]
fn training_batch_norm_matches_burn_with_and_without_residual_and_relu() {
    let device = Device::flex().autodiff();
    for (b, c, h, w) in [(4, 16, 8, 8), (3, 5, 7, 3), (8, 64, 2, 2)] {
        for (residual, relu) in [(false, false), (false, true), (true, true), (true, false)] {
            // Mean far from zero, to exercise the variance's cancellation.
            let x = Tensor::<4>::random([b, c, h, w], Distribution::Normal(3.0, 2.0), &device);
            let res = residual.then(|| {
                Tensor::<4>::random([b, c, h, w], Distribution::Normal(0.0, 1.0), &device)
            });
            let r = Tensor::<4>::random([b, c, h, w], Distribution::Normal(0.0, 1.0), &device);
            let bn_carp = batch_norm_layer(c, &device);
            let bn_burn = bn_carp.clone();
            // A cloned module shares its running-state buffers: give the reference its own.
            let bn_burn = BatchNorm {
                running_mean: burn::module::RunningState::new(bn_burn.running_mean.value()),
                running_var: burn::module::RunningState::new(bn_burn.running_var.value()),
                ..bn_burn
            };
            let carp = bn_run(&bn_carp, &x, res.as_ref(), relu, &r);
            let burn = with_burn_ops(|| bn_run(&bn_burn, &x, res.as_ref(), relu, &r));
            let names = [
                "output",
                "input grad",
                "gamma grad",
                "beta grad",
                "running mean",
                "running var",
                "residual grad",
            ];
            for (what, (a, bb)) in names.iter().zip(carp.iter().zip(&burn)) {
                close(
                    &format!("[{b},{c},{h},{w}] res {residual} relu {relu}: {what}"),
                    a,
                    bb,
                );
            }
        }
    }
}

#[test]
fn inference_conv_bn_matches_burn() {
    let device = Device::flex();
    let case: Case = ("fused", 3, 8, 9, 7, 12, 3, 2, 1);
    let layer = conv(&case, &device);
    let mut bn = batch_norm_layer(12, &device);
    bn.running_mean = burn::module::RunningState::new(Tensor::random(
        [12],
        Distribution::Normal(0.0, 1.0),
        &device,
    ));
    bn.running_var = burn::module::RunningState::new(Tensor::random(
        [12],
        Distribution::Uniform(0.5, 2.0),
        &device,
    ));
    let x = Tensor::<4>::random([3, 8, 9, 7], Distribution::Normal(0.0, 1.0), &device);
    let res = Tensor::<4>::random([3, 12, 5, 4], Distribution::Normal(0.0, 1.0), &device);
    for (residual, relu) in [(false, true), (true, true), (false, false)] {
        let r = residual.then(|| res.clone());
        let a = values(conv_bn(x.clone(), &layer, &bn, r.clone(), relu));
        let b = values(with_burn_ops(|| conv_bn(x.clone(), &layer, &bn, r, relu)));
        close(
            &format!("inference conv+bn res {residual} relu {relu}"),
            &a,
            &b,
        );
    }
}

#[test]
fn inference_max_pool_matches_burn() {
    use burn::nn::pool::MaxPool2dConfig;
    let device = Device::flex();
    for (h, w) in [(112, 112), (9, 7), (4, 5)] {
        let pool = MaxPool2dConfig::new([3, 3])
            .with_strides([2, 2])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init();
        let x = Tensor::<4>::random([2, 5, h, w], Distribution::Normal(0.0, 1.0), &device);
        let a = values(carp_kernels::max_pool2d(x.clone(), &pool));
        let b = values(pool.forward(x));
        assert_eq!(a, b, "{h}x{w}: max-pool is exact");
    }
}
