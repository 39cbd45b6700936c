//! BatchNorm that can synchronise its batch statistics over the processes of a data-parallel
//! run (PyTorch's `SyncBatchNorm`, which the release converts its networks to).
//!
//! In training mode, with a [`Group`] of W > 1 processes, the mean and variance of each
//! channel are those of the whole global batch, and the running statistics follow them, so
//! W processes holding B/W images each compute what one process holding B images would.
//! Alone (no group, or W = 1) it is Burn's `BatchNorm`, op for op.

use crate::collective::{all_reduce_sum, Group};
use burn::module::{Flag, Module, Param, RunningState};
use burn::tensor::module::{batch_norm, batch_norm_train};
use burn::tensor::{Device, FloatDType, Tensor};

/// A BatchNorm layer, optionally synchronised over a process group.
///
/// ```text
/// y = (x − μ) / sqrt(σ² + ε) · γ + β
/// ```
///
/// μ and σ² (biased) are the per-channel statistics of the batch in training mode (over all
/// processes of `group`), the running averages otherwise; the running averages move by
/// `running = (1 − momentum) · running + momentum · batch`. Parameter names are Burn's
/// (`gamma`, `beta`, `running_mean`, `running_var`), so checkpoints do not change.
#[derive(Module, Debug)]
pub struct BatchNorm {
    /// Scale γ `[C]`.
    pub gamma: Param<Tensor<1>>,
    /// Shift β `[C]`.
    pub beta: Param<Tensor<1>>,
    /// Whether the layer uses batch statistics on an autodiff device (not frozen).
    pub training: Param<Flag>,
    /// Running mean `[C]`.
    pub running_mean: RunningState<Tensor<1>>,
    /// Running (biased) variance `[C]`.
    pub running_var: RunningState<Tensor<1>>,
    /// Weight of the batch statistics in the running averages.
    pub momentum: f64,
    /// ε added to the variance.
    pub epsilon: f64,
    /// The processes whose batches are normalised together (`None`: this process alone).
    #[module(skip)]
    pub group: Option<Group>,
}

impl BatchNorm {
    /// A layer over `channels` channels with PyTorch's (and Burn's) defaults: γ = 1, β = 0,
    /// running mean 0, running variance 1, momentum 0.1, ε = 1e-5.
    pub fn new(channels: usize, device: &Device) -> Self {
        Self {
            gamma: Param::from_tensor(Tensor::ones([channels], device)),
            beta: Param::from_tensor(Tensor::zeros([channels], device)),
            training: Param::from_bool(true),
            running_mean: RunningState::new(Tensor::zeros([channels], device)),
            running_var: RunningState::new(Tensor::ones([channels], device)),
            momentum: 0.1,
            epsilon: 1e-5,
            group: None,
        }
    }

    /// The normalised output: batch statistics in training mode on an autodiff device,
    /// the running ones otherwise. A bf16/f16 input is normalised in f32 (statistics, γ, β
    /// and running averages stay f32) and the output cast back to its type.
    ///
    /// # Shapes
    ///
    /// - `x`: `[B, C, ...]`; output: the same
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        if let Some(dtype) = crate::precision::reduced(x.dtype()) {
            return self.forward(x.cast(FloatDType::F32)).cast(dtype);
        }
        if !(x.device().is_autodiff() && self.training.is_enabled()) {
            let device = x.device();
            return batch_norm(
                x,
                self.gamma.val(),
                self.beta.val(),
                self.running_mean.value().to_device(&device),
                self.running_var.value().to_device(&device),
                self.epsilon,
            );
        }
        match &self.group {
            Some(group) if group.size() > 1 => self.forward_sync(x, group),
            _ => self.forward_local(x),
        }
    }

    /// Training-mode forward with this process's batch statistics.
    fn forward_local<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let out = batch_norm_train(x, self.gamma.val(), self.beta.val(), self.epsilon);
        self.track(out.mean, out.variance);
        out.output
    }

    /// Moves the running averages towards the batch statistics.
    fn track(&self, mean: Tensor<1>, variance: Tensor<1>) {
        let device = mean.device();
        for (state, batch) in [(&self.running_mean, mean), (&self.running_var, variance)] {
            let old = state.value_sync().to_device(&device);
            let new = old
                .mul_scalar(1.0 - self.momentum)
                .add(batch.detach().mul_scalar(self.momentum));
            state.update(new.detach());
        }
    }

    /// Training-mode forward with the statistics of all processes' batches.
    fn forward_sync<const D: usize>(&self, x: Tensor<D>, group: &Group) -> Tensor<D> {
        let bn = self;
        let device = x.device();
        let dims = x.dims();
        let c = dims[1];
        let local = dims.iter().product::<usize>() / c;
        let mut per_channel = [1usize; D];
        per_channel[1] = c;
        // Sums around the running mean (the same on every process): the variance as
        // E[(x − k)²] − E[x − k]² loses no precision when the mean sits far from zero.
        let shift = bn.running_mean.value_sync().to_device(&device).detach();
        let centered = x.clone() - shift.clone().reshape(per_channel);
        let rows = |t: Tensor<D>| {
            t.swap_dims(0, 1)
                .reshape([c, local])
                .sum_dim(1)
                .reshape([c])
        };
        let s1 = rows(centered.clone());
        let s2 = rows(centered.clone() * centered);
        let sums = all_reduce_sum(Tensor::cat(vec![s1, s2], 0), group);
        let total = (local * group.size()) as f64;
        let m1 = sums.clone().narrow(0, 0, c).div_scalar(total);
        let m2 = sums.narrow(0, c, c).div_scalar(total);
        let variance = m2 - m1.clone() * m1.clone();
        let mean = m1 + shift;
        let inv_std = variance.clone().add_scalar(bn.epsilon).sqrt().recip();
        let scale = bn.gamma.val() * inv_std;
        let out = (x - mean.clone().reshape(per_channel)) * scale.reshape(per_channel)
            + bn.beta.val().reshape(per_channel);
        self.track(mean, variance);
        out
    }
}

impl carp_kernels::BatchNormParams for BatchNorm {
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
    fn is_synchronised(&self) -> bool {
        self.group.as_ref().is_some_and(|g| g.size() > 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collective::ThreadGroup;
    use burn::tensor::{Distribution, TensorData};

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    fn close(a: &[f32], b: &[f32], tol: f32, what: &str) {
        assert_eq!(a.len(), b.len(), "{what}");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= tol * (1.0 + y.abs()),
                "{what}[{i}]: {x} vs {y}"
            );
        }
    }

    /// Two processes (threads) with half the batch each give the output, the input and
    /// parameter gradients and the running statistics of one process with the whole batch.
    #[test]
    fn two_halves_equal_the_whole_batch() {
        let device = Device::flex().autodiff();
        let (b, c) = (6, 3);
        let x = Tensor::<4>::random([b, c, 2, 3], Distribution::Normal(2.0, 3.0), &device);
        let xs = values(x.clone());
        // L = Σ y ⊙ u with a fixed u, so every output element has its own gradient.
        let u = Tensor::<4>::random([b, c, 2, 3], Distribution::Default, &device);
        let us = values(u.clone());
        let run = |x: Tensor<4>, u: Tensor<4>, group: Option<Group>| {
            let mut bn = BatchNorm::new(c, &device);
            bn.gamma = Param::from_tensor(Tensor::from_floats([0.5, 1.0, 2.0], &device));
            bn.group = group;
            let x = x.require_grad();
            let y = bn.forward(x.clone());
            let grads = crate::reduce::ordered_sum(y.clone() * u).backward();
            (
                values(y),
                values(x.grad(&grads).unwrap()),
                values(bn.gamma.grad(&grads).unwrap()),
                values(bn.running_var.value_sync()),
            )
        };
        let whole = run(x, u, None);
        let half = b / 2 * c * 6;
        let handles: Vec<_> = ThreadGroup::members(2)
            .into_iter()
            .map(|group| {
                let (xs, us) = (xs.clone(), us.clone());
                std::thread::spawn(move || {
                    let device = Device::flex().autodiff();
                    let r = group.rank();
                    let part = |v: &[f32]| {
                        Tensor::<4>::from_data(
                            TensorData::new(v[r * half..(r + 1) * half].to_vec(), [b / 2, c, 2, 3]),
                            &device,
                        )
                    };
                    let mut bn = BatchNorm::new(c, &device);
                    bn.gamma = Param::from_tensor(Tensor::from_floats([0.5, 1.0, 2.0], &device));
                    bn.group = Some(group);
                    let x = part(&xs).require_grad();
                    let y = bn.forward(x.clone());
                    let grads = crate::reduce::ordered_sum(y.clone() * part(&us)).backward();
                    (
                        values(y),
                        values(x.grad(&grads).unwrap()),
                        values(bn.gamma.grad(&grads).unwrap()),
                        values(bn.running_var.value_sync()),
                    )
                })
            })
            .collect();
        let parts: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        type Outputs = (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>);
        let cat = |f: fn(&Outputs) -> &Vec<f32>| {
            parts
                .iter()
                .flat_map(|p| f(p).clone())
                .collect::<Vec<f32>>()
        };
        close(&cat(|p| &p.0), &whole.0, 1e-5, "output");
        close(&cat(|p| &p.1), &whole.1, 1e-4, "input gradient");
        // Each process holds the gradient of its own loss; their sum is the whole batch's.
        let g: Vec<f32> = (0..c).map(|i| parts[0].2[i] + parts[1].2[i]).collect();
        close(&g, &whole.2, 1e-4, "gamma gradient");
        close(&parts[0].3, &whole.3, 1e-5, "running variance");
        close(&parts[1].3, &whole.3, 1e-5, "running variance");
    }

    /// Alone, the layer is Burn's BatchNorm bit for bit: outputs in training and inference
    /// mode, and the running statistics.
    #[test]
    fn alone_it_is_burns_batchnorm() {
        let device = Device::flex().autodiff();
        let x = Tensor::<4>::random([4, 2, 3, 3], Distribution::Normal(1.0, 2.0), &device);
        let ours = BatchNorm::new(2, &device);
        let burns = burn::nn::BatchNormConfig::new(2).init(&device);
        assert_eq!(
            values(ours.forward(x.clone())),
            values(burns.forward(x.clone()))
        );
        assert_eq!(
            values(ours.running_var.value_sync()),
            values(burns.running_var.value_sync())
        );
        let x = Tensor::<4>::from_data(x.into_data(), &Device::flex());
        assert_eq!(
            values(ours.valid().forward(x.clone())),
            values(burns.valid().forward(x))
        );
    }
}
