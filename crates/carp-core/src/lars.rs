//! LARS, spec §5: SGD with momentum, weight decay and a layer-wise trust ratio, the last two
//! only for parameters with more than one dimension.

use crate::path::ParamPath;
use crate::reduce::ordered_sum;
use burn::module::{Module, ModuleMapper, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use std::collections::BTreeMap;

/// One LARS update of tensor `w` with gradient `g`, spec §5.
///
/// ```text
/// d  = g + wd·w                                   (only if w has more than one dimension)
/// r  = η·||w|| / ||d||  if both norms > 0, else 1 (only if w has more than one dimension)
/// mu = momentum·mu + r·d
/// w  = w - lr·mu
/// ```
///
/// `mu` is `None` before the first step (a zero buffer). Works on any backend; call it on
/// tensors without autodiff. Returns `(w, mu)`.
///
/// # Example
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use carp_core::lars::lars_update;
/// let device = Device::flex();
/// // A bias (1-D): plain momentum SGD, no decay, no trust ratio.
/// let w = Tensor::<1>::from_floats([1.0, 2.0], &device);
/// let g = Tensor::<1>::from_floats([0.5, -0.5], &device);
/// let (w, mu) = lars_update(w, g, None, 0.1, 1e-6, 0.9, 0.001);
/// let w: Vec<f32> = w.into_data().try_to_vec::<f32>().unwrap();
/// assert_eq!(w, vec![0.95, 2.05]);
/// ```
pub fn lars_update<const D: usize>(
    w: Tensor<D>,
    g: Tensor<D>,
    mu: Option<Tensor<D>>,
    lr: f64,
    weight_decay: f64,
    momentum: f64,
    eta: f64,
) -> (Tensor<D>, Tensor<D>) {
    let d = if D > 1 {
        let d = g + w.clone().mul_scalar(weight_decay);
        // Not `sum()`: Burn's parallel sum of >= 4 Mi elements rounds by thread timing (issue 15).
        let w_norm = ordered_sum(w.clone().square()).sqrt();
        let d_norm = ordered_sum(d.clone().square()).sqrt();
        let valid = w_norm
            .clone()
            .greater_scalar(0.0)
            .bool_and(d_norm.clone().greater_scalar(0.0));
        // Keep 0/0 out of the computation even though it is masked below.
        let ratio = w_norm.mul_scalar(eta) / d_norm.clamp_min(f32::MIN_POSITIVE);
        let ratio = ratio.ones_like().mask_where(valid, ratio);
        d * ratio.unsqueeze::<D>()
    } else {
        g
    };
    let mu = match mu {
        Some(mu) => mu.mul_scalar(momentum) + d,
        None => d,
    };
    let w = w - mu.clone().mul_scalar(lr);
    (w, mu)
}

/// The LARS optimiser: hyperparameters plus one momentum buffer per parameter, keyed by the
/// parameter's module path (e.g. `backbone.layer1.0.conv1.weight`).
#[derive(Clone, Debug)]
pub struct Lars {
    /// Momentum [0.9].
    pub momentum: f64,
    /// Trust coefficient η [0.001].
    pub eta: f64,
    buffers: BTreeMap<String, Tensor<1>>,
}

impl Default for Lars {
    fn default() -> Self {
        Self::new(0.9, 0.001)
    }
}

impl Lars {
    /// A LARS optimiser with empty momentum buffers.
    pub fn new(momentum: f64, eta: f64) -> Self {
        Self {
            momentum,
            eta,
            buffers: BTreeMap::new(),
        }
    }

    /// Applies one update to every parameter of `module` that has a gradient in `grads`.
    pub fn step<M: Module>(
        &mut self,
        module: M,
        grads: GradientsParams,
        lr: f64,
        weight_decay: f64,
    ) -> M {
        let mut mapper = LarsMapper {
            lars: self,
            grads,
            path: ParamPath::default(),
            lr,
            weight_decay,
        };
        module.map(&mut mapper)
    }

    /// The momentum buffers, flattened, by parameter path (for checkpoints).
    pub fn buffers(&self) -> &BTreeMap<String, Tensor<1>> {
        &self.buffers
    }

    /// Replaces the momentum buffers (from a checkpoint).
    pub fn set_buffers(&mut self, buffers: BTreeMap<String, Tensor<1>>) {
        self.buffers = buffers;
    }
}

struct LarsMapper<'a> {
    lars: &'a mut Lars,
    grads: GradientsParams,
    path: ParamPath,
    lr: f64,
    weight_decay: f64,
}

impl ModuleMapper for LarsMapper<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name);
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(grad) = self.grads.remove::<D>(param.id) else {
            return param;
        };
        let key = self.path.join();
        let (id, tensor, mapper) = param.consume();
        let require_grad = tensor.is_require_grad();
        let autodiff = tensor.is_autodiff();
        let w = tensor.inner();
        let shape = w.shape();
        let mu = self
            .lars
            .buffers
            .remove(&key)
            .map(|mu| mu.reshape(shape.clone()));
        let (w, mu) = lars_update(
            w,
            grad,
            mu,
            self.lr,
            self.weight_decay,
            self.lars.momentum,
            self.lars.eta,
        );
        let n = shape.num_elements();
        self.lars.buffers.insert(key, mu.reshape([n]));
        let mut w = if autodiff { Tensor::from_inner(w) } else { w };
        if autodiff && require_grad {
            w = w.require_grad();
        }
        Param::from_mapped_value(id, w, mapper)
    }
}
