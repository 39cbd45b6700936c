//! Mixed precision runs (issue 12) on a tiny model: bf16 and f16 smoke runs, exact resume of
//! an f16 run including its loss scaler, and the overflow path (step skipped, scale halved).
//! The accuracy comparison of bf16 with f32 on the tiny preset is a measurement, not a test:
//! `bench/runs/2026-12-02-precision/README.md`.

use burn::tensor::Device;
use carp_core::precision::Precision;
use carp_io::{read_checkpoint, write_checkpoint};
use carp_train::pretrain::CHECKPOINT;
use carp_train::{pretrain, Config};
use serde_json::Value;
use std::path::Path;

mod common;
use common::{assert_same_tensors, tiny};

fn metrics(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Four steps in each precision from the same seed: finite losses, and the first step's loss
/// (same weights, same views) within 1e-3 relative of f32's but not equal to it; f16 lines
/// carry the loss scale, the others do not; only f16 checkpoints hold a `grad_scaler`.
#[test]
fn issue_12_bf16_and_f16_runs_train_near_f32() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = Vec::new();
    for precision in Precision::ALL {
        let out = dir.path().join(precision.name());
        let mut cfg = tiny(&out);
        cfg.optim.precision = precision;
        cfg.run.max_steps = 4;
        let s = pretrain(&cfg, &Device::flex()).unwrap();
        assert_eq!(s.steps, 4);
        let lines = metrics(&out);
        assert_eq!(lines.len(), 4);
        for l in &lines {
            assert!(l["loss"].as_f64().unwrap().is_finite(), "{precision}: {l}");
            assert_eq!(
                l.get("loss_scale").is_some(),
                precision == Precision::F16,
                "{l}"
            );
        }
        first.push(lines[0]["loss"].as_f64().unwrap());
        let ck = read_checkpoint(&out.join(CHECKPOINT)).unwrap();
        assert_eq!(
            ck.meta.get("grad_scaler").is_some(),
            precision == Precision::F16
        );
        let config = Config::from_toml(ck.meta["config"].as_str().unwrap(), "ck").unwrap();
        assert_eq!(config.optim.precision, precision);
    }
    for (precision, loss) in Precision::ALL.iter().zip(&first).skip(1) {
        assert_ne!(*loss, first[0], "{precision} ran in f32");
        assert!(
            (loss - first[0]).abs() <= 1e-3 * first[0],
            "{precision}: {loss} vs f32 {}",
            first[0]
        );
    }
}

/// f16: 5 steps, stop, resume to 16 equals 16 uninterrupted steps bit for bit (weights,
/// BatchNorm statistics, LARS momentum) and in the loss scaler's state (scale and growth
/// counter, which counts across the resume).
#[test]
fn issue_12_f16_resume_is_exact_with_the_scaler_state() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let mut cfg = tiny(&a);
    cfg.optim.precision = Precision::F16;
    pretrain(&cfg, &Device::flex()).unwrap();
    cfg.run.out = b.display().to_string();
    cfg.run.max_steps = 5;
    pretrain(&cfg, &Device::flex()).unwrap();
    cfg.run.max_steps = 0;
    let s = pretrain(&cfg, &Device::flex()).unwrap();
    assert_eq!(s.steps_this_run, 11);
    assert_same_tensors(&a, &b);
    let scaler =
        |d: &Path| read_checkpoint(&d.join(CHECKPOINT)).unwrap().meta["grad_scaler"].clone();
    let (sa, sb) = (scaler(&a), scaler(&b));
    assert_eq!(sa, sb);
    // The counter holds the clean steps since the last overflow (or since the start).
    let overflows: Vec<u64> = metrics(&a)
        .iter()
        .map(|l| l["overflow_steps"].as_u64().unwrap())
        .collect();
    let clean = match (0..16)
        .rev()
        .find(|&i| overflows[i] > if i == 0 { 0 } else { overflows[i - 1] })
    {
        Some(i) => 15 - i,
        None => 16,
    };
    eprintln!(
        "scaler after 16 steps: {sa}; overflow steps {}",
        overflows[15]
    );
    assert_eq!(sa["_growth_tracker"], clean as u64, "{sa}");
}

/// A loss scale of 2^100 makes every f16 gradient overflow: each step is skipped (the
/// student and the LARS momentum stay bit-identical, the EMA teacher still moves, as in
/// the release), the scale halves per step, and the metrics lines and the summary count the
/// skipped steps.
#[test]
fn issue_12_f16_overflow_skips_the_step_and_backs_off() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut cfg = tiny(&out);
    cfg.optim.precision = Precision::F16;
    cfg.run.max_steps = 2;
    pretrain(&cfg, &Device::flex()).unwrap();
    let path = out.join(CHECKPOINT);
    let mut ck = read_checkpoint(&path).unwrap();
    let huge = 2f64.powi(100);
    ck.meta["grad_scaler"]["scale"] = huge.into();
    write_checkpoint(&path, &ck).unwrap();
    cfg.run.max_steps = 5;
    let s = pretrain(&cfg, &Device::flex()).unwrap();
    assert_eq!((s.steps_this_run, s.overflow_steps), (3, 3));
    let after = read_checkpoint(&path).unwrap();
    assert_eq!(after.meta["grad_scaler"]["scale"], 2f64.powi(97));
    assert_eq!(after.meta["grad_scaler"]["_growth_tracker"], 0);
    let same = |k: &String| ck.tensors[k].values == after.tensors[k].values;
    for key in ck.tensors.keys() {
        let moved = !same(key);
        if key.starts_with("student.") && !key.contains("running_") || key.starts_with("optim.") {
            assert!(!moved, "{key} changed on a skipped step");
        }
    }
    assert!(
        !same(&"teacher.backbone.conv1.weight".to_string()),
        "the EMA teacher update still runs"
    );
    let lines = metrics(&out);
    let tail: Vec<(f64, u64)> = lines[2..]
        .iter()
        .map(|l| {
            (
                l["loss_scale"].as_f64().unwrap(),
                l["overflow_steps"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        tail,
        vec![(2f64.powi(99), 1), (2f64.powi(98), 2), (2f64.powi(97), 3)]
    );
}
