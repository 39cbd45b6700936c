//! The CARP projection head, spec §1: MLP + weight-normalised prototypes.

use crate::collective::Group;
use crate::init;
use crate::norm::BatchNorm;
use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Hyperparameters of a [`CarpHead`] (defaults: the released ImageNet recipe, spec §1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CarpHeadConfig {
    /// Input dimension (the backbone's output: 2048 for ResNet-50, 512 for ResNet-18).
    pub in_dim: usize,
    /// Hidden width of the MLP [2048].
    pub hidden_dim: usize,
    /// Bottleneck width, the input of the prototype layer [256].
    pub bottleneck_dim: usize,
    /// Number of prototypes K [65536].
    pub out_dim: usize,
    /// Number of linear layers in the MLP [3].
    pub nlayers: usize,
    /// BatchNorm after each hidden linear layer [true].
    pub use_bn: bool,
}

impl CarpHeadConfig {
    /// The released head on top of a backbone of width `in_dim`.
    pub fn new(in_dim: usize) -> Self {
        Self {
            in_dim,
            hidden_dim: 2048,
            bottleneck_dim: 256,
            out_dim: 65536,
            nlayers: 3,
            use_bn: true,
        }
    }

    /// Builds the head: linear weights from N(0, 0.02^2) truncated to [-2, 2], biases 0;
    /// prototype directions `v` from U(-1/sqrt(d), 1/sqrt(d)) (PyTorch's Linear default).
    ///
    /// # Panics
    ///
    /// Panics if `nlayers` is zero or a dimension is zero.
    pub fn init(&self, device: &Device, seed: u64) -> CarpHead {
        assert!(self.nlayers >= 1, "CARP head needs at least one layer");
        assert!(
            self.in_dim > 0 && self.hidden_dim > 0 && self.bottleneck_dim > 0 && self.out_dim > 0,
            "CARP head dimensions must be positive"
        );
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut dims = vec![self.in_dim];
        dims.extend(std::iter::repeat_n(self.hidden_dim, self.nlayers - 1));
        dims.push(self.bottleneck_dim);
        let mut mlp = Vec::new();
        let mut norms = Vec::new();
        for (i, pair) in dims.windows(2).enumerate() {
            let (d_in, d_out) = (pair[0], pair[1]);
            let mut linear = LinearConfig::new(d_in, d_out).init(device);
            linear.weight = init::param(
                init::trunc_normal(&mut rng, d_in * d_out, 0.02, -2.0, 2.0),
                [d_in, d_out],
                device,
            );
            linear.bias = Some(init::param(vec![0.0; d_out], [d_out], device));
            mlp.push(linear);
            if self.use_bn && i + 1 < self.nlayers {
                norms.push(BatchNorm::new(d_out, device));
            }
        }
        let bound = 1.0 / (self.bottleneck_dim as f64).sqrt();
        let weight_v = init::param(
            init::uniform(&mut rng, self.out_dim * self.bottleneck_dim, bound),
            [self.out_dim, self.bottleneck_dim],
            device,
        );
        CarpHead {
            mlp,
            norms,
            last_layer: Prototypes { weight_v },
        }
    }
}

/// Weight-normalised, bias-free prototype layer with the scale fixed at 1 (spec §1).
///
/// ```text
/// logits[b, k] = <x[b], v_k / ||v_k||>
/// ```
///
/// `g_k` of PyTorch's `weight_norm` is 1 and untrained, so only `weight_v` is stored;
/// its layout is PyTorch's `[K, bottleneck]` (`head.last_layer.weight_v` in the release).
#[derive(Module, Debug)]
pub struct Prototypes {
    /// Prototype directions `v`, `[K, D]`.
    pub weight_v: Param<Tensor<2>>,
}

impl Prototypes {
    /// Logits against unit-norm prototypes; the input is not normalised (CARP differs from DINO).
    ///
    /// # Shapes
    ///
    /// - `x`: `[B, D]`; output: `[B, K]`
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let v = self.weight_v.val();
        let norm = v.clone().square().sum_dim(1).sqrt();
        let w = v / norm;
        x.matmul(w.transpose())
    }

    /// Number of prototypes K.
    pub fn num_prototypes(&self) -> usize {
        self.weight_v.lazy_shape().as_slice()[0]
    }
}

/// GELU in PyTorch's exact form (`nn.GELU()`, the release's): `x · Φ(x) = 0.5 · x · (1 +
/// erf(x / √2))`, with the exact derivative on every backend.
///
/// Burn 0.22.1's `activation::gelu` differentiates through the backend's `gelu_backward`,
/// whose default (used by the cubecl backends: wgpu, vulkan, cuda) is the derivative of the
/// *tanh approximation*: off by up to 8.7e-4 from the exact one, which made the head's
/// gradients on a GPU differ from flex's by ~1e-3 relative (issue 12). Flex overrides it with
/// the exact derivative, so flex keeps Burn's single fused kernel; elsewhere the formula is
/// written with `erf`, whose autodiff backward is exact.
fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if x.device() == Device::flex() {
        return burn::tensor::activation::gelu(x);
    }
    gelu_by_erf(x)
}

/// [`gelu`] from `erf`: three elementwise kernels instead of one, exact derivative.
fn gelu_by_erf<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let cdf = x
        .clone()
        .div_scalar(core::f64::consts::SQRT_2)
        .erf()
        .add_scalar(1.0);
    x.mul(cdf).mul_scalar(0.5)
}

/// MLP (Linear, BatchNorm, GELU, ..., Linear) followed by the prototype layer (spec §1).
#[derive(Module, Debug)]
pub struct CarpHead {
    /// The `nlayers` linear layers (Burn layout: weight `[in, out]`).
    pub mlp: Vec<Linear>,
    /// BatchNorm after each hidden linear layer (empty when disabled).
    pub norms: Vec<BatchNorm>,
    /// Weight-normalised prototypes.
    pub last_layer: Prototypes,
}

impl CarpHead {
    /// The bottleneck vector (MLP output, not normalised).
    ///
    /// # Shapes
    ///
    /// - `x`: `[B, in_dim]`; output: `[B, bottleneck_dim]`
    pub fn bottleneck(&self, x: Tensor<2>) -> Tensor<2> {
        let last = self.mlp.len() - 1;
        let mut x = x;
        for (i, linear) in self.mlp.iter().enumerate() {
            x = linear.forward(x);
            if i < last {
                if let Some(bn) = self.norms.get(i) {
                    x = bn.forward(x);
                }
                x = gelu(x);
            }
        }
        x
    }

    /// Synchronises the MLP's BatchNorms over `group` in training mode (`None`: alone).
    pub fn set_group(&mut self, group: Option<Group>) {
        for bn in &mut self.norms {
            bn.group = group.clone();
        }
    }

    /// K prototype logits per image.
    ///
    /// # Shapes
    ///
    /// - `x`: `[B, in_dim]`; output: `[B, K]`
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.last_layer.forward(self.bottleneck(x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> CarpHeadConfig {
        CarpHeadConfig {
            in_dim: 6,
            hidden_dim: 10,
            bottleneck_dim: 4,
            out_dim: 7,
            nlayers: 3,
            use_bn: true,
        }
    }

    #[test]
    fn shapes_and_layers() {
        let device = Device::flex();
        let head = small().init(&device, 0);
        assert_eq!(head.mlp.len(), 3);
        assert_eq!(head.norms.len(), 2);
        assert_eq!(head.last_layer.num_prototypes(), 7);
        let y = head.forward(Tensor::ones([5, 6], &device));
        assert_eq!(y.dims(), [5, 7]);
    }

    #[test]
    fn prototypes_are_unit_norm_and_input_is_not_normalised() {
        let device = Device::flex();
        let v = Tensor::<2>::from_floats([[3.0, 4.0], [0.0, 2.0]], &device);
        let p = Prototypes {
            weight_v: Param::from_tensor(v),
        };
        let x = Tensor::<2>::from_floats([[10.0, 0.0]], &device);
        let y: Vec<f32> = p.forward(x).into_data().try_to_vec::<f32>().unwrap();
        // <(10,0), (0.6,0.8)> = 6; <(10,0), (0,1)> = 0. Scaling x scales the logits.
        assert!((y[0] - 6.0).abs() < 1e-6 && y[1].abs() < 1e-6, "{y:?}");
    }

    #[test]
    fn init_distributions() {
        let device = Device::flex();
        let mut cfg = small();
        cfg.in_dim = 256;
        cfg.hidden_dim = 256;
        cfg.bottleneck_dim = 64;
        cfg.out_dim = 512;
        let head = cfg.init(&device, 1);
        let w: Vec<f32> = head.mlp[1]
            .weight
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let std = (w.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / w.len() as f64).sqrt();
        assert!((std - 0.02).abs() < 0.001, "std {std}");
        let b: Vec<f32> = head.mlp[0]
            .bias
            .as_ref()
            .unwrap()
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert!(b.iter().all(|&x| x == 0.0));
        let v: Vec<f32> = head
            .last_layer
            .weight_v
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let bound = 1.0 / 8.0;
        assert!(v.iter().all(|&x| x.abs() <= bound));
        assert!(v.iter().any(|&x| x.abs() > 0.9 * bound));
    }

    /// The erf form of GELU and its autodiff derivative match the exact function and
    /// `Φ(x) + x φ(x)` (f64, erf by Simpson's rule) to 1e-6, where the tanh-approximation
    /// derivative Burn uses by default is off by up to 8.7e-4.
    #[test]
    fn gelu_by_erf_has_the_exact_derivative() {
        let device = Device::flex().autodiff();
        let xs: Vec<f32> = (0..161).map(|i| -4.0 + i as f32 * 0.05).collect();
        let n = xs.len();
        let x = Tensor::<1>::from_data(burn::tensor::TensorData::new(xs.clone(), [n]), &device)
            .require_grad();
        let y = gelu_by_erf(x.clone());
        let grads = crate::reduce::ordered_sum(y.clone()).backward();
        let y: Vec<f32> = y.into_data().try_to_vec().unwrap();
        let dy: Vec<f32> = x.grad(&grads).unwrap().into_data().try_to_vec().unwrap();
        let erf = |z: f64| {
            let steps = 2000;
            let h = z / steps as f64;
            let f = |t: f64| (-t * t).exp();
            let inner: f64 = (1..steps)
                .map(|k| f(k as f64 * h) * if k % 2 == 1 { 4.0 } else { 2.0 })
                .sum();
            (f(0.0) + inner + f(z)) * h / 3.0 * 2.0 / core::f64::consts::PI.sqrt()
        };
        for ((&x, &y), &dy) in xs.iter().zip(&y).zip(&dy) {
            let x = x as f64;
            let cdf = 0.5 * (1.0 + erf(x / core::f64::consts::SQRT_2));
            let pdf = (-0.5 * x * x).exp() / (2.0 * core::f64::consts::PI).sqrt();
            assert!((y as f64 - x * cdf).abs() < 1e-6, "gelu({x}) = {y}");
            assert!(
                (dy as f64 - (cdf + x * pdf)).abs() < 1e-6,
                "gelu'({x}) = {dy}"
            );
        }
    }
}
