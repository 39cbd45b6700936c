//! carp's kernels are a pure function of their inputs (issue 15): the convolution's output
//! and both gradients, and the fused BatchNorm's output and gradients, come out bit for bit
//! the same in rayon pools of 1, 2 and 3 threads and while another task keeps one worker
//! busy (so the work is split and stolen differently).

// A scalar to differentiate, on tensors far below the 4 Mi elements where Burn's sum turns
// parallel (clippy.toml, issue 15); carp-kernels sits below carp-core's ordered_sum.
#![allow(clippy::disallowed_methods)]

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNormConfig, PaddingConfig2d};
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn values<const D: usize>(t: Tensor<D>) -> Vec<u32> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap()
        .into_iter()
        .map(f32::to_bits)
        .collect()
}

fn layer(ci: usize, co: usize, k: usize, s: usize, p: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([ci, co], [k, k])
        .with_stride([s, s])
        .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
        .with_bias(false)
        .init(device)
}

/// Bits of every output and gradient of conv -> BN+ReLU -> conv(stride 2) -> BN + residual
/// -> 3x3 conv at 16x16 (Winograd, several blocks) -> 3x3 conv stride 2 -> 3x3 conv at 8x8
/// (Winograd, one block of parallel GEMMs), each with BN+ReLU.
// Burn's `Tensor::sum` is exact enough and deterministic below 4 Mi elements (issue 15);
// these tensors are far smaller, and carp-kernels cannot depend on carp-core's ordered_sum.
#[allow(clippy::disallowed_methods)]
fn run(device: &Device, seed_input: &[f32], convs: &[Conv2d; 6]) -> Vec<Vec<u32>> {
    let data = TensorData::new(seed_input.to_vec(), [16, 32, 32, 32]);
    let x = Tensor::<4>::from_data(data, device).require_grad();
    let bn1 = BatchNormConfig::new(64).init(device);
    let bn2 = BatchNormConfig::new(128).init(device);
    let bn3 = BatchNormConfig::new(128).init(device);
    let a = carp_kernels::conv_bn(x.clone(), &convs[0], &bn1, None, true);
    let identity = carp_kernels::conv_bn(a.clone(), &convs[2], &bn3, None, false);
    let y = carp_kernels::conv_bn(a, &convs[1], &bn2, Some(identity), true);
    let bn = || BatchNormConfig::new(128).init(device);
    let y = carp_kernels::conv_bn(y, &convs[3], &bn(), None, true);
    let y = carp_kernels::conv_bn(y, &convs[4], &bn(), None, true);
    let y = carp_kernels::conv_bn(y, &convs[5], &bn(), None, true);
    let grads = (y.clone() * y.clone()).sum().backward();
    let mut out = vec![values(y), values(x.grad(&grads).unwrap())];
    for c in convs {
        out.push(values(c.weight.grad(&grads).unwrap()));
    }
    out.push(values(bn2.gamma.grad(&grads).unwrap()));
    out.push(values(bn1.running_var.value_sync()));
    out
}

#[test]
fn kernels_give_identical_bits_across_thread_counts_and_busy_workers() {
    let device = Device::flex().autodiff();
    let input: Vec<f32> =
        Tensor::<1>::random([16 * 32 * 32 * 32], Distribution::Normal(0.0, 1.0), &device)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
    let convs = [
        layer(32, 64, 3, 1, 1, &device),
        layer(64, 128, 3, 2, 1, &device),
        layer(64, 128, 1, 2, 0, &device),
        layer(128, 128, 3, 1, 1, &device),
        layer(128, 128, 3, 2, 1, &device),
        layer(128, 128, 3, 1, 1, &device),
    ];
    let mut reference: Option<Vec<Vec<u32>>> = None;
    for (threads, busy) in [(1, false), (2, false), (3, false), (2, true), (3, true)] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        if busy {
            // Occupy one worker for a while so the others take (and steal) more of the work.
            let stop = stop.clone();
            pool.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            });
        }
        let got = pool.install(|| run(&device, &input, &convs));
        stop.store(true, Ordering::Relaxed);
        match &reference {
            None => reference = Some(got),
            Some(r) => {
                for (i, (a, b)) in got.iter().zip(r).enumerate() {
                    assert!(
                        a == b,
                        "tensor {i} differs with {threads} threads (busy {busy})"
                    );
                }
            }
        }
    }
}
