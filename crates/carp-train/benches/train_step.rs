//! Train-step throughput of a preset on random inputs (the model step only, no data
//! pipeline), the same measurement as `bench/pytorch_train_step.py`.
//!
//! ```text
//! cargo bench -p carp-train --bench train_step -- [--preset cifar] [--steps 10] [--warmup 2]
//!     [--batch 64] [--local-views 4] [--global-size 32] [--local-size 16] [--base-width 64]
//!     [--device cpu|ndarray|wgpu[:N|:cpu]|vulkan[:N]|cuda[:N]] [--precision f32|bf16|f16]
//!     [--threads 2] [--json]
//! ```
//!
//! img/s counts images (not views) per second of full training steps: student and teacher
//! forward, loss, backward, EMA and LARS. Peak memory is the device allocator's largest
//! reservation seen after a forward/backward or an update (GPU runtimes), or the process's
//! peak resident set (`VmHWM`, CPU backends, which report no allocator). `--precision` runs
//! the networks in bf16 or f16 as `optim.precision` does (f16 with the loss scaler; a step
//! whose gradients overflow skips its update and is counted); exit status 3 when the device
//! has no arithmetic in that type.

use burn::tensor::{Distribution, Tensor};
use carp_core::lars::Lars;
use carp_core::model::StudentTeacher;
use carp_core::partition::Partition;
use carp_core::precision::Precision;
use carp_core::scaler::GradScaler;
use carp_core::step::{apply_update, forward_backward, EmaOrder, StepSchedule, StepViews};
use carp_data::seed::partition_rng;
use carp_train::Config;
use std::time::Instant;

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // As `carp` does (CARP_MALLOC_TUNING=0 to compare without).
    carp_train::alloc::keep_freed_memory();
    let args: Vec<String> = std::env::args().collect();
    let preset: String = arg(&args, "--preset", "cifar".to_string());
    let steps: usize = arg(&args, "--steps", 10);
    let warmup: usize = arg(&args, "--warmup", 2);
    let threads: usize = arg(&args, "--threads", 2);
    let json = args.iter().any(|a| a == "--json");
    let mut cfg = Config::preset(&preset).expect("known preset");
    cfg.optim.batch_size = arg(&args, "--batch", cfg.optim.batch_size);
    cfg.views.local_views = arg(&args, "--local-views", cfg.views.local_views);
    cfg.views.global_size = arg(&args, "--global-size", cfg.views.global_size);
    cfg.views.local_size = arg(&args, "--local-size", cfg.views.local_size);
    cfg.model.base_width = arg(&args, "--base-width", cfg.model.base_width);
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .expect("thread pool");
    let device_name: String = arg(&args, "--device", "cpu".to_string());
    let precision_name: String = arg(&args, "--precision", "f32".to_string());
    let precision = Precision::parse(&precision_name).unwrap_or_else(|| {
        eprintln!("--precision {precision_name}: expected f32, bf16 or f16");
        std::process::exit(2)
    });
    let plain = carp_train::device::parse_device(&device_name).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    if !precision.is_supported_on(&plain) {
        eprintln!("device {device_name} has no {precision} arithmetic");
        std::process::exit(3);
    }
    let device = plain.clone().autodiff();
    let mut peak_device = 0u64;
    let sample = |peak: &mut u64| {
        if let Some(usage) = plain.memory_pool_usage() {
            *peak = (*peak).max(usage.bytes_reserved);
        }
    };
    let b = cfg.optim.batch_size;
    let (g, l, m) = (
        cfg.views.global_size as usize,
        cfg.views.local_size as usize,
        cfg.views.local_views,
    );
    let mut groups = vec![Tensor::<4>::random(
        [2 * b, 3, g, g],
        Distribution::Normal(0.0, 1.0),
        &device,
    )];
    if m > 0 {
        groups.push(Tensor::<4>::random(
            [m * b, 3, l, l],
            Distribution::Normal(0.0, 1.0),
            &device,
        ));
    }
    let views = StepViews {
        groups,
        global_groups: 1,
        batch: b,
    }
    .cast(precision);
    let mut scaler = precision.needs_loss_scaling().then(GradScaler::default);
    let mut skipped = 0usize;
    let mut model = StudentTeacher::new(&cfg.model_config(), &device, 0);
    let mut lars = Lars::new(0.9, 0.001);
    let schedule = StepSchedule {
        lr: 0.45 * b as f64 / 256.0,
        weight_decay: 1e-6,
        teacher_momentum: 0.996,
    };
    let (mut fb, mut upd) = (0.0, 0.0);
    let mut start = Instant::now();
    for it in 0..warmup + steps {
        if it == warmup {
            start = Instant::now();
            fb = 0.0;
            upd = 0.0;
        }
        let part = Partition::random(
            cfg.model.out_dim,
            cfg.model.partition_size,
            &mut partition_rng(0, it),
        );
        let t0 = Instant::now();
        let loss_scale = scaler.as_ref().map_or(1.0, GradScaler::scale);
        let out = forward_backward(&model, &views, &part, loss_scale);
        let t1 = Instant::now();
        sample(&mut peak_device);
        let losses = out.losses;
        let grads = match scaler.as_mut() {
            Some(s) => {
                let unscaled = s.unscale(&model.student, out.grads);
                s.update(unscaled.overflow.is_some());
                unscaled.overflow.is_none().then_some(unscaled.grads)
            }
            None => Some(out.grads),
        };
        match grads {
            Some(grads) => {
                model = apply_update(model, &mut lars, grads, schedule, EmaOrder::BeforeStep)
            }
            None => skipped += 1,
        }
        device.sync().expect("sync");
        sample(&mut peak_device);
        fb += (t1 - t0).as_secs_f64();
        upd += t1.elapsed().as_secs_f64();
        assert!(losses.is_finite());
    }
    let wall = start.elapsed().as_secs_f64();
    let img_per_s = (steps * b) as f64 / wall;
    let (peak, peak_source) = if peak_device > 0 {
        (peak_device, "device allocator")
    } else {
        (peak_rss(), "process VmHWM")
    };
    let peak_gib = peak as f64 / (1u64 << 30) as f64;
    if json {
        println!(
            "{{\"framework\":\"carp\",\"img_per_s\":{img_per_s:.3},\"step_s\":{:.4},\"forward_backward_s\":{:.4},\"update_s\":{:.4},\"threads\":{threads},\"batch\":{b},\"preset\":\"{preset}\",\"device\":\"{device_name}\",\"precision\":\"{precision}\",\"skipped_updates\":{skipped},\"peak_mem_gib\":{peak_gib:.3},\"peak_mem_source\":\"{peak_source}\"}}",
            wall / steps as f64,
            fb / steps as f64,
            upd / steps as f64
        );
    } else {
        println!(
            "carp img/s: {img_per_s:.1} (device {device_name}, {precision}, threads {threads}, batch {b}, steps {steps}, preset {preset}; per step: forward+backward {:.3} s, EMA+LARS {:.3} s; peak memory {peak_gib:.2} GiB, {peak_source}; f16 overflow steps skipped: {skipped})",
            fb / steps as f64,
            upd / steps as f64
        );
    }
}

/// The process's peak resident set in bytes (`VmHWM` of /proc/self/status; 0 where absent).
fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}
