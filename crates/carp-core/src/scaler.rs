//! Dynamic loss scaling for f16 training, with the semantics of PyTorch's `GradScaler`
//! (`torch.amp.GradScaler`, which the release uses; its state is the checkpoint's
//! `fp16_scaler`).
//!
//! f16 gradients below 2⁻²⁴ flush to zero. The loss is multiplied by the scale S before the
//! backward pass, so the f16 gradients are S times larger, and the f32 gradients of the
//! master weights are multiplied by 1/S before the optimiser sees them. S starts high
//! (65536); when a step's scaled gradients hold an inf or NaN (overflow), the optimiser step
//! is skipped and S halves; after 2000 steps in a row without overflow S doubles.
//!
//! Order in a step (PyTorch's, and the one a data-parallel run must keep):
//!
//! ```text
//! backward of S·loss → [accumulate micro-batches] → [all-reduce the *scaled* gradients]
//!   → unscale (×1/S, overflow = any non-finite scaled gradient) → skip or optimiser step
//!   → update S
//! ```
//!
//! The all-reduce comes before the overflow check: an inf on one process then reaches every
//! process's gradients, so all of them skip the same steps and their scales stay equal.

use crate::step::first_non_finite_gradient;
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

/// A dynamic loss scale and its growth counter (PyTorch `GradScaler`, same state names).
///
/// The scale is an f32 (PyTorch keeps it in an f32 tensor); the factors are f64 and each
/// update multiplies in f64 and rounds to f32, as PyTorch's `_amp_update_scale_` kernels do
/// (the factors are `double` arguments there).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GradScaler {
    /// Current scale S [65536].
    pub scale: f32,
    /// Factor S grows by after `growth_interval` clean steps [2].
    pub growth_factor: f64,
    /// Factor S shrinks by on an overflow [0.5].
    pub backoff_factor: f64,
    /// Clean steps in a row before S grows [2000].
    pub growth_interval: u32,
    /// Clean steps in a row so far.
    #[serde(rename = "_growth_tracker")]
    pub growth_tracker: u32,
}

impl Default for GradScaler {
    fn default() -> Self {
        Self::new(65536.0, 2.0, 0.5, 2000)
    }
}

/// The gradients after [`GradScaler::unscale`].
#[derive(Debug)]
pub struct Unscaled {
    /// The gradients times 1/S.
    pub grads: GradientsParams,
    /// Module path of the first parameter whose scaled gradient held an inf or NaN; the
    /// optimiser step must then be skipped.
    pub overflow: Option<String>,
}

impl GradScaler {
    /// A scaler starting at `scale` (PyTorch's `init_scale`).
    ///
    /// # Panics
    ///
    /// Panics if `scale` is not finite and positive, `growth_factor` is not above 1,
    /// `backoff_factor` is not in (0, 1), or `growth_interval` is 0 (PyTorch's checks).
    pub fn new(scale: f32, growth_factor: f64, backoff_factor: f64, growth_interval: u32) -> Self {
        assert!(
            scale.is_finite() && scale > 0.0,
            "loss scale must be finite and > 0, got {scale}"
        );
        assert!(
            growth_factor > 1.0,
            "growth factor must be > 1, got {growth_factor}"
        );
        assert!(
            backoff_factor > 0.0 && backoff_factor < 1.0,
            "backoff factor must lie in (0, 1), got {backoff_factor}"
        );
        assert!(growth_interval > 0, "growth interval must be > 0");
        Self {
            scale,
            growth_factor,
            backoff_factor,
            growth_interval,
            growth_tracker: 0,
        }
    }

    /// The factor to multiply the loss by before the backward pass.
    pub fn scale(&self) -> f64 {
        self.scale as f64
    }

    /// 1/S rounded to f32 once, as PyTorch computes it (`scale.double().reciprocal().float()`).
    pub fn inv_scale(&self) -> f32 {
        (1.0 / self.scale as f64) as f32
    }

    /// Multiplies every gradient of `module`'s parameters by 1/S (in the gradients' f32) and
    /// reports an overflow: a non-finite value among the gradients *before* unscaling, as
    /// PyTorch's `_amp_foreach_non_finite_check_and_unscale_` checks (a finite gradient that
    /// only overflows when multiplied by 1/S > 1 does not count).
    pub fn unscale<M: Module>(&self, module: &M, grads: GradientsParams) -> Unscaled {
        let overflow = first_non_finite_gradient(module, &grads);
        let mut visitor = Unscale {
            grads,
            inv_scale: self.inv_scale() as f64,
        };
        module.visit(&mut visitor);
        Unscaled {
            grads: visitor.grads,
            overflow,
        }
    }

    /// Moves the scale after an optimiser step (PyTorch's `_amp_update_scale_`): on an
    /// overflow S ·= backoff and the counter restarts; otherwise the counter advances and,
    /// when it reaches the growth interval, S ·= growth (kept only if finite) and the
    /// counter restarts.
    pub fn update(&mut self, overflow: bool) {
        if overflow {
            self.scale = (self.scale as f64 * self.backoff_factor) as f32;
            self.growth_tracker = 0;
            return;
        }
        let successful = self.growth_tracker + 1;
        if successful == self.growth_interval {
            let grown = (self.scale as f64 * self.growth_factor) as f32;
            if grown.is_finite() {
                self.scale = grown;
            }
            self.growth_tracker = 0;
        } else {
            self.growth_tracker = successful;
        }
    }
}

struct Unscale {
    grads: GradientsParams,
    inv_scale: f64,
}

impl ModuleVisitor for Unscale {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            self.grads.register(param.id, g.mul_scalar(self.inv_scale));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::head::CarpHeadConfig;
    use burn::tensor::Device;

    /// Gradients of a small head are multiplied by exactly 1/S; an inf in one names it.
    #[test]
    fn unscale_divides_every_gradient_and_names_the_overflow() {
        let device = Device::flex().autodiff();
        let head = CarpHeadConfig {
            in_dim: 3,
            hidden_dim: 4,
            bottleneck_dim: 2,
            out_dim: 5,
            nlayers: 2,
            use_bn: true,
        }
        .init(&device, 1);
        let x = Tensor::<2>::random([4, 3], burn::tensor::Distribution::Default, &device);
        let loss = || crate::reduce::ordered_sum(head.forward(x.clone()).square());
        let scaler = GradScaler::default();
        // A graph is consumed by its backward pass: one forward each.
        let plain = GradientsParams::from_grads(loss().backward(), &head);
        let scaled =
            GradientsParams::from_grads(loss().mul_scalar(scaler.scale()).backward(), &head);
        let out = scaler.unscale(&head, scaled);
        assert_eq!(out.overflow, None);
        let id = head.mlp[0].weight.id;
        let a: Vec<f32> = plain
            .get::<2>(id)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let b: Vec<f32> = out
            .grads
            .get::<2>(id)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        // S is a power of two: scaling and unscaling are exact.
        assert_eq!(a, b);
        let mut grads = out.grads;
        let id = head.last_layer.weight_v.id;
        let g: Tensor<2> = grads.remove(id).unwrap();
        grads.register(id, g.add_scalar(f32::INFINITY));
        let out = scaler.unscale(&head, grads);
        assert_eq!(out.overflow.as_deref(), Some("last_layer.weight_v"));
    }

    #[test]
    fn state_uses_pytorch_names() {
        let s = GradScaler::default();
        let json = serde_json::to_value(s).unwrap();
        assert_eq!(json["scale"], 65536.0);
        assert_eq!(json["_growth_tracker"], 0);
        assert_eq!(json["growth_interval"], 2000);
        let back: GradScaler = serde_json::from_value(json).unwrap();
        assert_eq!(back, s);
    }
}
