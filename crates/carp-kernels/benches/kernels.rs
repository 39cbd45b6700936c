//! Per-layer timings of carp's convolution kernels against Burn's flex ops on the shapes of
//! ResNet-18 (small stem) at 32x32 and 16x16 and of ResNet-50 at 224x224: forward, and
//! forward + backward (input and weight gradients) under autodiff.
//!
//! ```text
//! cargo bench -p carp-kernels --bench kernels -- [--threads 2] [--reps 3] [--only NAME]
//!     [--no-burn] [--cpu]
//! ```
//!
//! `--no-burn` skips Burn's columns (prints 0); `--cpu` reports process CPU milliseconds
//! (user + system, Linux) instead of wall milliseconds, steadier on a loaded machine;
//! `CARP_KERNELS=im2col` times carp's kernels without Winograd.
//!
//! Prints one row per layer shape: ms per call for each stack and the GFLOP/s of carp's.

// A scalar to differentiate, on tensors far below the 4 Mi elements where Burn's sum turns
// parallel (clippy.toml, issue 15); carp-kernels sits below carp-core's ordered_sum.
#![allow(clippy::disallowed_methods)]

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::PaddingConfig2d;
use burn::tensor::{Device, Distribution, Tensor};
use std::time::Instant;

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// (name, batch, c_in, size, c_out, kernel, stride, pad)
type Case = (
    &'static str,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
);

const CASES: &[Case] = &[
    ("r18s stem 32", 128, 3, 32, 64, 3, 1, 1),
    ("r18 l1 3x3 32", 128, 64, 32, 64, 3, 1, 1),
    ("r18 l2 3x3 s2", 128, 64, 32, 128, 3, 2, 1),
    ("r18 l2 ds 1x1 s2", 128, 64, 32, 128, 1, 2, 0),
    ("r18 l2 3x3 16", 128, 128, 16, 128, 3, 1, 1),
    ("r18 l3 3x3 8", 128, 256, 8, 256, 3, 1, 1),
    ("r18 l4 3x3 4", 128, 512, 4, 512, 3, 1, 1),
    ("r18 l1 3x3 16 (local)", 256, 64, 16, 64, 3, 1, 1),
    ("r18 l4 3x3 2 (local)", 256, 512, 2, 512, 3, 1, 1),
    ("r50 stem 7x7 s2", 32, 3, 224, 64, 7, 2, 3),
    ("r50 l1 1x1", 32, 256, 56, 64, 1, 1, 0),
    ("r50 l1 3x3", 32, 64, 56, 64, 3, 1, 1),
    ("r50 l3 3x3", 32, 256, 14, 256, 3, 1, 1),
    ("r50 l4 1x1", 32, 512, 7, 2048, 1, 1, 0),
];

fn conv(c: &Case, device: &Device) -> Conv2d {
    let (_, _, ci, _, co, k, s, p) = *c;
    Conv2dConfig::new([ci, co], [k, k])
        .with_stride([s, s])
        .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
        .with_bias(false)
        .init(device)
}

/// CPU milliseconds (user + system) this process has used so far, from /proc (Linux; 10 ms
/// ticks): steadier than wall time on a shared machine.
fn cpu_ms() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat (Linux)");
    // Fields after the command name (which ends with ')'): utime and stime are fields 14, 15.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks * 10.0
}

/// Milliseconds per call of `f`: wall clock, or process CPU time with `cpu`.
fn time(reps: usize, cpu: bool, mut f: impl FnMut()) -> f64 {
    f();
    let (t, c) = (Instant::now(), cpu_ms());
    for _ in 0..reps {
        f();
    }
    if cpu {
        (cpu_ms() - c) / reps as f64
    } else {
        t.elapsed().as_secs_f64() * 1e3 / reps as f64
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let threads: usize = arg(&args, "--threads", 2);
    let reps: usize = arg(&args, "--reps", 3);
    let only: String = arg(&args, "--only", String::new());
    let no_burn = args.iter().any(|a| a == "--no-burn");
    let cpu = args.iter().any(|a| a == "--cpu");
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .expect("thread pool");
    println!(
        "{:<24}{:>10}{:>10}{:>8}{:>12}{:>12}{:>8}{:>10}",
        "layer", "fwd burn", "fwd carp", "x", "f+b burn", "f+b carp", "x", "GFLOP/s"
    );
    for c in CASES {
        if !only.is_empty() && !c.0.contains(&only) {
            continue;
        }
        let (name, b, ci, hw, co, k, s, p) = *c;
        let plain = Device::flex();
        let layer = conv(c, &plain);
        // Each stack gets its input in the layout its model passes along: NCHW for Burn,
        // channels-last (NHWC memory, [B, C, H, W] view) for carp. Flex is eager, so the
        // output exists when the call returns.
        let x = Tensor::<4>::random([b, ci, hw, hw], Distribution::Normal(0.0, 1.0), &plain);
        let x_cl = Tensor::<4>::random([b, hw, hw, ci], Distribution::Normal(0.0, 1.0), &plain)
            .permute([0, 3, 1, 2]);
        let fwd = |use_burn: bool| {
            let input = if use_burn { &x } else { &x_cl };
            let run = || {
                let y = carp_kernels::conv2d(input.clone(), &layer);
                assert_eq!(y.dims()[0], b);
            };
            if use_burn && no_burn {
                0.0
            } else if use_burn {
                carp_kernels::with_burn_ops(|| time(reps, cpu, run))
            } else {
                time(reps, cpu, run)
            }
        };
        let (fb, fc) = (fwd(true), fwd(false));
        let ad = plain.clone().autodiff();
        let layer_ad = conv(c, &ad);
        let xa = Tensor::<4>::random([b, ci, hw, hw], Distribution::Normal(0.0, 1.0), &ad)
            .require_grad();
        let xa_cl = Tensor::<4>::random([b, hw, hw, ci], Distribution::Normal(0.0, 1.0), &ad)
            .permute([0, 3, 1, 2])
            .require_grad();
        let both = |use_burn: bool| {
            let input = if use_burn { &xa } else { &xa_cl };
            let run = || {
                let y = carp_kernels::conv2d(input.clone(), &layer_ad);
                // Only the gradient's timing matters here, not the rounding of the sum.
                #[allow(clippy::disallowed_methods)]
                let grads = y.sum().backward();
                let _ = layer_ad.weight.grad(&grads).unwrap().into_data();
            };
            if use_burn && no_burn {
                0.0
            } else if use_burn {
                carp_kernels::with_burn_ops(|| time(reps, cpu, run))
            } else {
                time(reps, cpu, run)
            }
        };
        let (bb, bc) = (both(true), both(false));
        let oh = (hw + 2 * p - k) / s + 1;
        let flop = 2.0 * (b * oh * oh * co * ci * k * k) as f64;
        println!(
            "{:<24}{:>10.2}{:>10.2}{:>8.2}{:>12.2}{:>12.2}{:>8.2}{:>10.1}",
            name,
            fb,
            fc,
            fb / fc,
            bb,
            bc,
            bb / bc,
            3.0 * flop / (bc * 1e6)
        );
    }
}
