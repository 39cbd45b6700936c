//! Sums across the processes of a data-parallel run, as the method needs them (spec §4's
//! entropy over all workers, synchronised BatchNorm): a [`ProcessGroup`] says how to sum host
//! buffers over the processes (MPI in `carp-train`, threads here), and [`all_reduce_sum`] is
//! the differentiable tensor op built on it.
//!
//! The op is host-staged: the tensor is read back, summed over the group, and uploaded again;
//! its backward does the same with the gradient (`∂L/∂x_r = Σ_r' ∂L_r'/∂y`), which is the
//! release's `AllGather` backward and PyTorch's SyncBatchNorm reduction.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{unary, Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, TensorMetadata};
use burn::tensor::{DType, Tensor, TensorData};
use std::fmt::Debug;
use std::sync::{Arc, Barrier, Mutex};

/// The processes of a data-parallel run: how many, and an element-wise sum over all of them.
///
/// Every process must call [`ProcessGroup::all_reduce_sum`] the same number of times, in the
/// same order, with buffers of the same length (a collective, as in MPI).
pub trait ProcessGroup: Send + Sync + Debug {
    /// This process's index, `0..size`.
    fn rank(&self) -> usize;
    /// Number of processes W.
    fn size(&self) -> usize;
    /// Replaces `buf` on every process by the element-wise sum of all processes' `buf`.
    fn all_reduce_sum(&self, buf: &mut [f32]);
}

/// A shared handle to a process group.
pub type Group = Arc<dyn ProcessGroup>;

/// The group of one process: sums are the identity.
#[derive(Clone, Copy, Debug, Default)]
pub struct Solo;

impl ProcessGroup for Solo {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn all_reduce_sum(&self, _: &mut [f32]) {}
}

/// W ranks as W threads of one process, for tests and single-machine experiments: each
/// thread holds one [`ThreadGroup`] from [`ThreadGroup::members`]. Sums are taken in rank order,
/// so every rank gets the same bits.
#[derive(Debug)]
pub struct ThreadGroup {
    rank: usize,
    shared: Arc<ThreadShared>,
}

#[derive(Debug)]
struct ThreadShared {
    size: usize,
    barrier: Barrier,
    slots: Mutex<Vec<Vec<f32>>>,
}

impl ThreadGroup {
    /// The `size` members of a new group, rank 0 first; hand one to each thread.
    ///
    /// # Panics
    ///
    /// Panics if `size` is zero.
    pub fn members(size: usize) -> Vec<Group> {
        assert!(size > 0, "a process group has at least one member");
        let shared = Arc::new(ThreadShared {
            size,
            barrier: Barrier::new(size),
            slots: Mutex::new(vec![Vec::new(); size]),
        });
        (0..size)
            .map(|rank| {
                Arc::new(ThreadGroup {
                    rank,
                    shared: Arc::clone(&shared),
                }) as Group
            })
            .collect()
    }
}

impl ProcessGroup for ThreadGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.shared.size
    }

    fn all_reduce_sum(&self, buf: &mut [f32]) {
        let s = &self.shared;
        s.slots.lock().expect("slots")[self.rank] = buf.to_vec();
        s.barrier.wait();
        {
            let slots = s.slots.lock().expect("slots");
            assert!(
                slots.iter().all(|v| v.len() == buf.len()),
                "all_reduce_sum: ranks passed buffers of different lengths"
            );
            buf.fill(0.0);
            for v in slots.iter() {
                for (b, x) in buf.iter_mut().zip(v) {
                    *b += x;
                }
            }
        }
        // Nobody refills its slot before everyone has read the others.
        s.barrier.wait();
    }
}

/// Element-wise sum of `x` over the processes of `group` (every process gets the sum);
/// differentiable: the gradient of each process's input is the sum over processes of the
/// gradients of the output.
///
/// With one process this is `x` itself. Supported on the flex and cubecl backends, with or
/// without autodiff (gradient checkpointing is not).
///
/// # Panics
///
/// Panics on another backend when the group has more than one process.
pub fn all_reduce_sum<const D: usize>(x: Tensor<D>, group: &Group) -> Tensor<D> {
    if group.size() == 1 {
        return x;
    }
    macro_rules! route {
        ($b:ty) => {
            if let Ok(p) = x.clone().try_into_primitive::<Autodiff<$b>>() {
                return Tensor::from_primitive::<Autodiff<$b>>(tracked::<$b>(p, group));
            }
            if let Ok(p) = x.clone().try_into_primitive::<$b>() {
                return Tensor::from_primitive::<$b>(host_sum::<$b>(p, group));
            }
        };
    }
    route!(burn::backend::Flex);
    #[cfg(any(feature = "vulkan", feature = "wgpu", feature = "cuda"))]
    route!(burn::backend::Cube);
    panic!(
        "all_reduce_sum: the {:?} backend is not supported for data-parallel training",
        x.device()
    );
}

/// The host-staged sum of a backend tensor over the group, in its own dtype.
fn host_sum<B: Backend>(t: FloatTensor<B>, group: &Group) -> FloatTensor<B> {
    let device = t.device();
    let dtype = t.dtype();
    let data = burn::tensor::try_read_sync(B::float_into_data(t))
        .expect("synchronous read-back")
        .expect("tensor read-back");
    let shape = data.shape().clone();
    let mut values: Vec<f32> = data
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("converted to f32");
    group.all_reduce_sum(&mut values);
    let mut out = TensorData::new(values, shape);
    if dtype != DType::F32 {
        out = out.convert_dtype(dtype);
    }
    B::float_from_data(out, &device)
}

#[derive(Debug)]
struct AllReduceBackward;

impl<B: Backend> Backward<B, 1> for AllReduceBackward {
    type State = Group;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let group = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| {
            host_sum::<B>(grad, &group)
        });
    }
}

/// [`host_sum`] recorded in the autodiff graph with [`AllReduceBackward`].
fn tracked<B: Backend>(x: FloatTensor<Autodiff<B>>, group: &Group) -> FloatTensor<Autodiff<B>> {
    match AllReduceBackward
        .prepare::<NoCheckpointing>([x.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let out = host_sum::<B>(x.primitive().clone(), group);
            prep.finish(Arc::clone(group), out)
        }
        OpsKind::UnTracked(prep) => prep.finish(host_sum::<B>(x.primitive().clone(), group)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    fn values(t: Tensor<1>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    /// Two ranks as threads: the forward sums the ranks' tensors; the backward sums the
    /// ranks' upstream gradients, so rank r's input gradient is Σ_r' ∂L_r'/∂y.
    #[test]
    fn sum_and_its_gradient_over_two_threads() {
        let groups = ThreadGroup::members(2);
        let handles: Vec<_> = groups
            .into_iter()
            .map(|group| {
                std::thread::spawn(move || {
                    let device = Device::flex().autodiff();
                    let r = group.rank() as f32;
                    let x = Tensor::<1>::from_floats([1.0 + r, 10.0 * (r + 1.0)], &device)
                        .require_grad();
                    let y = all_reduce_sum(x.clone(), &group);
                    // L_r = (r + 1) · Σ_i y_i · w_i with w = (1, 2).
                    let w = Tensor::<1>::from_floats([1.0, 2.0], &device);
                    let loss = crate::reduce::ordered_sum(y.clone() * w).mul_scalar(r + 1.0);
                    let grads = loss.backward();
                    (values(y), values(x.grad(&grads).unwrap()))
                })
            })
            .collect();
        for h in handles {
            let (y, g) = h.join().unwrap();
            assert_eq!(y, vec![3.0, 30.0]);
            // ∂(L_0 + L_1)/∂y = (1 + 2) · w
            assert_eq!(g, vec![3.0, 6.0]);
        }
    }

    #[test]
    fn solo_is_the_identity() {
        let device = Device::flex();
        let x = Tensor::<1>::from_floats([1.5, -2.0], &device);
        let group: Group = Arc::new(Solo);
        assert_eq!(values(all_reduce_sum(x, &group)), vec![1.5, -2.0]);
    }
}
