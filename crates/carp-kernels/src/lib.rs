//! # carp-kernels: carp's CPU kernels for ResNets on Burn's flex backend
//!
//! Drop-in replacements for the convolution and BatchNorm layers of carp's ResNets that run
//! carp's own kernels when the tensors live on Burn's flex (CPU) backend, with or without
//! autodiff, and Burn's ops on every other device (GPU backends, ndarray, gradient
//! checkpointing), so a model written with them runs everywhere.
//!
//! - [`conv2d`]: `Conv2d::forward`; NHWC im2col tiles + large GEMMs (the `gemm` crate), or
//!   Winograd F(2x2, 3x3) for 3x3 stride-1 layers ([`winograd`]), with custom input- and
//!   weight-gradient kernels registered in the autodiff graph ([`conv`]).
//! - [`batch_norm`]: `act(BatchNorm(x) + residual)` in one pass forward and two backward
//!   ([`mod@batch_norm`]), for any module implementing [`BatchNormParams`].
//! - [`conv_bn`]: both; in inference the BatchNorm (running statistics), the residual and
//!   the ReLU are applied to each GEMM tile while it is in cache.
//! - [`max_pool2d`]: `MaxPool2d::forward`, NHWC in inference ([`pool`]).
//!
//! Activations stay channels-last in memory (logical shape `[B, C, H, W]`, strides
//! `[H·W·C, 1, W·C, C]`), so consecutive layers pass them on without copies; Burn's ops read
//! them through their strides. Every kernel is deterministic: a pure function of its inputs,
//! independent of the thread count and of rayon's scheduling.
//!
//! ```
//! use burn::nn::conv::Conv2dConfig;
//! use burn::nn::{BatchNormConfig, PaddingConfig2d};
//! use burn::tensor::{Device, Distribution, Tensor};
//!
//! let device = Device::flex().autodiff();
//! let conv = Conv2dConfig::new([3, 8], [3, 3])
//!     .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
//!     .with_bias(false)
//!     .init(&device);
//! let bn = BatchNormConfig::new(8).init(&device);
//! let x = Tensor::<4>::random([2, 3, 8, 8], Distribution::Normal(0.0, 1.0), &device);
//! let y = carp_kernels::conv_bn(x, &conv, &bn, None, true);
//! let grads = y.sum().backward();
//! let reference = bn.forward(conv.forward(Tensor::zeros([1, 3, 8, 8], &device)));
//! assert_eq!(reference.dims(), [1, 8, 8, 8]);
//! assert_eq!(conv.weight.grad(&grads).unwrap().dims(), [8, 3, 3, 3]);
//! ```
//!
//! Set `CARP_KERNELS=burn` in the environment to run Burn's ops instead, or
//! `CARP_KERNELS=im2col` to keep carp's kernels without Winograd (for comparisons).
//!
//! ## Reduced precision (bf16, f16)
//!
//! The layers follow their input's float type, as PyTorch's autocast does, while the
//! modules keep f32 weights: a convolution casts its weight to the input's type at each use
//! (the gradient flows back through the cast), and BatchNorm computes in f32 (statistics,
//! running averages, its f32 γ and β) and casts its output back. On flex the kernels stay
//! f32: a bf16/f16 convolution rounds its input and weight to the reduced type, sums the
//! products in f32 and rounds the output, which is what flex's own bf16 convolution (and a
//! GPU's tensor cores, up to summation order) computes, at the speed of the f32 kernels.
//! Elsewhere Burn's op runs in the reduced type.

#![warn(missing_docs)]

pub mod batch_norm;
pub mod conv;
mod layout;
mod ops;
pub mod pool;
pub mod winograd;

use burn::module::{Param, RunningState};
use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::nn::{BatchNorm, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{DType, FloatDType, Tensor, TensorData};
use conv::ConvShape;
use std::cell::Cell;
use std::sync::OnceLock;

/// The parameters and state of a BatchNorm layer, as carp's fused kernels need them.
///
/// Implemented for Burn's [`BatchNorm`]; a carp-owned BatchNorm (e.g. a synchronised one)
/// implements it to get the same fused kernels.
pub trait BatchNormParams {
    /// Scale γ `[C]`.
    fn gamma(&self) -> Tensor<1>;
    /// Shift β `[C]`.
    fn beta(&self) -> Tensor<1>;
    /// Running mean `[C]`.
    fn running_mean(&self) -> &RunningState<Tensor<1>>;
    /// Running (biased) variance `[C]`.
    fn running_var(&self) -> &RunningState<Tensor<1>>;
    /// Running-statistics momentum (new = (1 - m) · old + m · batch).
    fn momentum(&self) -> f64;
    /// ε added to the variance.
    fn epsilon(&self) -> f64;
    /// Whether the layer uses batch statistics on an autodiff device (training mode).
    fn is_training(&self) -> bool;
    /// The layer's own forward, used where carp's kernels do not apply.
    fn forward_reference(&self, x: Tensor<4>) -> Tensor<4>;
    /// Whether training-mode statistics are shared with other processes (SyncBatchNorm):
    /// the fused kernels then step aside for [`BatchNormParams::forward_reference`].
    fn is_synchronised(&self) -> bool {
        false
    }
}

impl BatchNormParams for BatchNorm {
    fn gamma(&self) -> Tensor<1> {
        self.gamma.val()
    }
    fn beta(&self) -> Tensor<1> {
        self.beta.val()
    }
    fn running_mean(&self) -> &RunningState<Tensor<1>> {
        &self.running_mean
    }
    fn running_var(&self) -> &RunningState<Tensor<1>> {
        &self.running_var
    }
    fn momentum(&self) -> f64 {
        self.momentum
    }
    fn epsilon(&self) -> f64 {
        self.epsilon
    }
    fn is_training(&self) -> bool {
        self.training.is_enabled()
    }
    fn forward_reference(&self, x: Tensor<4>) -> Tensor<4> {
        self.forward(x)
    }
}

thread_local! {
    static DISABLED: Cell<bool> = const { Cell::new(false) };
}

/// Whether carp's kernels are in use on this thread (not `CARP_KERNELS=burn`, not inside
/// [`with_burn_ops`]).
pub fn enabled() -> bool {
    static ENV: OnceLock<bool> = OnceLock::new();
    let env = *ENV.get_or_init(|| std::env::var("CARP_KERNELS").is_ok_and(|v| v == "burn"));
    !env && !DISABLED.with(Cell::get)
}

/// Whether 3x3 stride-1 convolutions use the Winograd kernel ([`winograd`]); off with
/// `CARP_KERNELS=im2col`, for comparisons.
pub(crate) fn winograd_enabled() -> bool {
    static ENV: OnceLock<bool> = OnceLock::new();
    *ENV.get_or_init(|| std::env::var("CARP_KERNELS").map_or(true, |v| v != "im2col"))
}

/// Runs `f` with carp's kernels switched off on this thread: every function of this crate
/// calls Burn's ops, as the reference for tests and benchmarks.
pub fn with_burn_ops<R>(f: impl FnOnce() -> R) -> R {
    let before = DISABLED.with(|d| d.replace(true));
    let out = f();
    DISABLED.with(|d| d.set(before));
    out
}

/// The kernel geometry of `conv` applied to an input of `dims`, if carp's kernel supports it
/// (groups 1, dilation 1, no bias, symmetric explicit or valid padding).
fn conv_shape(dims: [usize; 4], conv: &Conv2d) -> Option<ConvShape> {
    if conv.groups != 1 || conv.dilation != [1, 1] || conv.bias.is_some() {
        return None;
    }
    let [b, c, h, w] = dims;
    let [co, ci, kh, kw] = conv.weight.dims();
    let pad = match conv.padding {
        PaddingConfig2d::Valid => [0, 0],
        PaddingConfig2d::Explicit(top, left, bottom, right) if top == bottom && left == right => {
            [top, left]
        }
        _ => return None,
    };
    let s = ConvShape {
        batch: b,
        c_in: c,
        h,
        w,
        c_out: co,
        kh,
        kw,
        stride: conv.stride,
        pad,
    };
    (ci == c && s.is_valid()).then_some(s)
}

/// The reduced float type (bf16, f16) `x` is in, if any.
fn reduced<const D: usize>(x: &Tensor<D>) -> Option<FloatDType> {
    match x.dtype() {
        DType::BF16 => Some(FloatDType::BF16),
        DType::F16 => Some(FloatDType::F16),
        _ => None,
    }
}

/// `conv.forward(x)`: carp's NHWC kernel on flex (output channels-last), Burn's op elsewhere.
/// A bf16/f16 input runs the convolution in its type (module docs, "Reduced precision").
pub fn conv2d(x: Tensor<4>, conv: &Conv2d) -> Tensor<4> {
    if let Some(dtype) = reduced(&x) {
        return conv2d_reduced(x, conv, dtype);
    }
    if enabled() {
        if let Some(s) = conv_shape(x.dims(), conv) {
            if let Some(y) = ops::conv2d(&x, &conv.weight.val(), s) {
                return y;
            }
        }
    }
    conv.forward(x)
}

/// [`conv2d`] of a bf16/f16 input: the weight (and bias) cast to `dtype`. On flex with
/// carp's kernels, the f32 kernel on the rounded input and weight, its output rounded.
fn conv2d_reduced(x: Tensor<4>, conv: &Conv2d, dtype: FloatDType) -> Tensor<4> {
    let weight = conv.weight.val().cast(dtype);
    if enabled() && ops::is_flex(&x) {
        if let Some(s) = conv_shape(x.dims(), conv) {
            let x32 = x.clone().cast(FloatDType::F32);
            if let Some(y) = ops::conv2d(&x32, &weight.clone().cast(FloatDType::F32), s) {
                return y.cast(dtype);
            }
        }
    }
    let mut cast = conv.clone();
    cast.weight = Param::initialized(conv.weight.id, weight);
    cast.bias = conv
        .bias
        .as_ref()
        .map(|b| Param::initialized(b.id, b.val().cast(dtype)));
    cast.forward(x)
}

/// `act(bn(x) + residual)`, act = ReLU when `relu`: one fused kernel on flex, Burn's ops
/// elsewhere. Training mode (autodiff device and [`BatchNormParams::is_training`]) uses batch
/// statistics and updates the running ones exactly as Burn's `BatchNorm` does. A bf16/f16
/// input is normalised in f32 and the output cast back to its type.
pub fn batch_norm<N: BatchNormParams>(
    x: Tensor<4>,
    bn: &N,
    residual: Option<Tensor<4>>,
    relu_after: bool,
) -> Tensor<4> {
    if let Some(dtype) = reduced(&x) {
        let residual = residual.map(|r| r.cast(FloatDType::F32));
        return batch_norm(x.cast(FloatDType::F32), bn, residual, relu_after).cast(dtype);
    }
    if enabled() {
        let training = x.device().is_autodiff() && bn.is_training();
        // Synchronised statistics (SyncBatchNorm) take the layer's own forward below.
        if training && !bn.is_synchronised() {
            let (gamma, beta) = (bn.gamma(), bn.beta());
            if let Some(out) = ops::batch_norm_train(
                &x,
                &gamma,
                &beta,
                residual.as_ref(),
                bn.epsilon(),
                relu_after,
            ) {
                update_running(bn, &out.mean, &out.var, &x);
                return out.y;
            }
        } else if !training {
            if let Some((scale, shift)) = inference_fold(bn) {
                if let Some(y) = ops::scale_shift(&x, &scale, &shift, residual.as_ref(), relu_after)
                {
                    return y;
                }
            }
        }
    }
    reference(bn.forward_reference(x), residual, relu_after)
}

/// `act(bn(conv(x)) + residual)`. In inference on flex, one kernel: the BatchNorm is folded
/// into a per-channel scale and shift applied, with the residual and the ReLU, to each GEMM
/// output tile. In training, or for a bf16/f16 input, [`conv2d`] then [`batch_norm`].
pub fn conv_bn<N: BatchNormParams>(
    x: Tensor<4>,
    conv: &Conv2d,
    bn: &N,
    residual: Option<Tensor<4>>,
    relu_after: bool,
) -> Tensor<4> {
    if enabled() && !x.device().is_autodiff() && reduced(&x).is_none() {
        let fused = conv_shape(x.dims(), conv).and_then(|s| {
            let (scale, shift) = inference_fold(bn)?;
            let w = conv.weight.val();
            ops::conv2d_scale_shift(&x, &w, s, &scale, &shift, residual.as_ref(), relu_after)
        });
        if let Some(y) = fused {
            return y;
        }
    }
    batch_norm(conv2d(x, conv), bn, residual, relu_after)
}

/// `pool.forward(x)`: carp's NHWC kernel in inference on flex (no autodiff), Burn's op
/// elsewhere (training keeps Burn's max-pool and its backward).
pub fn max_pool2d(x: Tensor<4>, pool: &MaxPool2d) -> Tensor<4> {
    if enabled() && !x.device().is_autodiff() && pool.dilation == [1, 1] && !pool.ceil_mode {
        let pad = match pool.padding {
            PaddingConfig2d::Valid => Some([0, 0]),
            PaddingConfig2d::Explicit(t, l, b, r) if t == b && l == r => Some([t, l]),
            _ => None,
        };
        if let Some(pad) = pad {
            let [batch, c, h, w] = x.dims();
            let s = pool::PoolShape {
                batch,
                c,
                h,
                w,
                kernel: pool.kernel_size,
                stride: pool.stride,
                pad,
            };
            if s.is_valid() {
                if let Some(y) = ops::max_pool(&x, s) {
                    return y;
                }
            }
        }
    }
    pool.forward(x)
}

/// Burn's ops for `act(y + residual)`.
fn reference(y: Tensor<4>, residual: Option<Tensor<4>>, relu_after: bool) -> Tensor<4> {
    let y = match residual {
        Some(r) => y + r,
        None => y,
    };
    if relu_after {
        relu(y)
    } else {
        y
    }
}

/// Inference scale and shift from the running statistics (host values), if on flex.
fn inference_fold<N: BatchNormParams>(bn: &N) -> Option<(Vec<f32>, Vec<f32>)> {
    let gamma = ops::host_values(&bn.gamma())?;
    let beta = ops::host_values(&bn.beta())?;
    let mean = ops::host_values(&bn.running_mean().value())?;
    let var = ops::host_values(&bn.running_var().value())?;
    Some(batch_norm::fold(&gamma, &beta, &mean, &var, bn.epsilon()))
}

/// Running statistics after one training batch, as Burn's `BatchNorm::forward` updates them:
/// `running = (1 - m) · running + m · batch` (biased batch variance).
fn update_running<N: BatchNormParams>(bn: &N, mean: &[f32], var: &[f32], x: &Tensor<4>) {
    let device = x.device();
    let m = bn.momentum();
    let c = mean.len();
    let batch_mean = Tensor::<1>::from_data(TensorData::new(mean.to_vec(), [c]), &device);
    let batch_var = Tensor::<1>::from_data(TensorData::new(var.to_vec(), [c]), &device);
    let running_mean = bn.running_mean().value_sync().to_device(&device);
    let running_var = bn.running_var().value_sync().to_device(&device);
    let running_mean = running_mean
        .mul_scalar(1.0 - m)
        .add(batch_mean.mul_scalar(m));
    let running_var = running_var.mul_scalar(1.0 - m).add(batch_var.mul_scalar(m));
    bn.running_mean().update(running_mean.detach());
    bn.running_var().update(running_var.detach());
}
