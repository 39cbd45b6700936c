//! Gradient averaging for data-parallel training: after backward, every process holds the
//! mean over the group of the processes' gradients (PyTorch DDP's semantics), summed in one
//! host all-reduce per step rather than one per tensor.

use crate::collective::Group;
use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};

/// Averages `grads` of `module`'s parameters over `group`, and sums `extra` (host values the
/// caller wants reduced in the same call: loss terms, flags) over it.
///
/// Every process must pass the same module structure and `extra` length. The gradients are
/// packed in module order into one buffer (with `extra` at its end), summed by
/// [`crate::collective::ProcessGroup::all_reduce_sum`] and divided by the group size.
pub fn average_gradients<M: Module>(
    module: &M,
    grads: GradientsParams,
    group: &Group,
    extra: &mut [f32],
) -> GradientsParams {
    let world = group.size();
    if world == 1 {
        return grads;
    }
    let mut packer = Packer {
        grads: &grads,
        entries: Vec::new(),
        flat: Vec::new(),
    };
    module.visit(&mut packer);
    let Packer { entries, flat, .. } = packer;
    let mut buf: Vec<f32> = if flat.is_empty() {
        Vec::new()
    } else {
        Tensor::cat(flat, 0)
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("gradients read back as f32")
    };
    let n = buf.len();
    buf.extend_from_slice(extra);
    group.all_reduce_sum(&mut buf);
    extra.copy_from_slice(&buf[n..]);
    buf.truncate(n);
    let inv = 1.0 / world as f32;
    buf.iter_mut().for_each(|g| *g *= inv);
    let mut out = GradientsParams::new();
    let Some(device) = entries.first().map(|e| e.device.clone()) else {
        return out;
    };
    let all = Tensor::<1>::from_data(TensorData::new(buf, [n]), &device);
    let mut offset = 0;
    for e in entries {
        let len: usize = e.shape.iter().product();
        let flat = all.clone().slice(offset..offset + len);
        offset += len;
        register(&mut out, e.id, flat, &e.shape);
    }
    out
}

/// One packed gradient: its parameter, shape and device.
struct Entry {
    id: ParamId,
    shape: Vec<usize>,
    device: Device,
}

struct Packer<'a> {
    grads: &'a GradientsParams,
    entries: Vec<Entry>,
    flat: Vec<Tensor<1>>,
}

impl ModuleVisitor for Packer<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            let shape = g.dims().to_vec();
            let n: usize = shape.iter().product();
            self.entries.push(Entry {
                id: param.id,
                shape,
                device: g.device(),
            });
            self.flat.push(g.reshape([n]));
        }
    }
}

/// Registers the flat gradient `g` under `id` with its parameter's rank.
fn register(out: &mut GradientsParams, id: ParamId, g: Tensor<1>, shape: &[usize]) {
    match *shape {
        [a] => out.register(id, g.reshape([a])),
        [a, b] => out.register(id, g.reshape([a, b])),
        [a, b, c] => out.register(id, g.reshape([a, b, c])),
        [a, b, c, d] => out.register(id, g.reshape([a, b, c, d])),
        _ => panic!(
            "average_gradients: parameters of rank {} are not supported",
            shape.len()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collective::{Solo, ThreadGroup};
    use burn::module::Module;
    use burn::nn::{Linear, LinearConfig};
    use std::sync::Arc;

    #[derive(Module, Debug)]
    struct Net {
        a: Linear,
        b: Linear,
    }

    fn net(device: &Device) -> Net {
        // Same seed on every rank: the parameter ids differ, the values do not matter here.
        Net {
            a: LinearConfig::new(3, 2).init(device),
            b: LinearConfig::new(2, 1).with_bias(false).init(device),
        }
    }

    /// Rank r's gradient of every parameter is (r + 1) · (its index + 1); the mean over two
    /// ranks is 1.5 · (index + 1), and the extras are summed.
    #[test]
    fn two_ranks_get_the_mean_gradient_and_summed_extras() {
        let handles: Vec<_> = ThreadGroup::members(2)
            .into_iter()
            .map(|group| {
                std::thread::spawn(move || {
                    let device = Device::flex();
                    let m = net(&device);
                    let r = group.rank() as f32 + 1.0;
                    let fill = |shape: &[usize]| {
                        let n: usize = shape.iter().product();
                        let v: Vec<f32> = (0..n).map(|i| r * (i as f32 + 1.0)).collect();
                        TensorData::new(v, shape.to_vec())
                    };
                    let mut g = GradientsParams::new();
                    g.register(
                        m.a.weight.id,
                        Tensor::<2>::from_data(fill(&[3, 2]), &device),
                    );
                    let bias = m.a.bias.as_ref().unwrap();
                    g.register(bias.id, Tensor::<1>::from_data(fill(&[2]), &device));
                    g.register(
                        m.b.weight.id,
                        Tensor::<2>::from_data(fill(&[2, 1]), &device),
                    );
                    let mut extra = [r, 10.0 * r];
                    let avg = average_gradients(&m, g, &group, &mut extra);
                    let read = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap();
                    (
                        read(avg.get::<2>(m.a.weight.id).unwrap()),
                        avg.get::<1>(bias.id)
                            .unwrap()
                            .into_data()
                            .try_to_vec::<f32>()
                            .unwrap(),
                        read(avg.get::<2>(m.b.weight.id).unwrap()),
                        extra,
                    )
                })
            })
            .collect();
        let mean = |n: usize| (0..n).map(|i| 1.5 * (i as f32 + 1.0)).collect::<Vec<_>>();
        for h in handles {
            let (wa, ba, wb, extra) = h.join().unwrap();
            assert_eq!(wa, mean(6));
            assert_eq!(ba, mean(2));
            assert_eq!(wb, mean(2));
            assert_eq!(extra, [3.0, 30.0]);
        }
    }

    #[test]
    fn one_process_changes_nothing() {
        let device = Device::flex();
        let m = net(&device);
        let mut g = GradientsParams::new();
        g.register(
            m.b.weight.id,
            Tensor::<2>::from_floats([[1.0], [2.0]], &device),
        );
        let mut extra = [4.0];
        let group: Group = Arc::new(Solo);
        let out = average_gradients(&m, g, &group, &mut extra);
        let w = out.get::<2>(m.b.weight.id).unwrap().into_data();
        assert_eq!(w.try_to_vec::<f32>().unwrap(), vec![1.0, 2.0]);
        assert_eq!(extra, [4.0]);
    }
}
