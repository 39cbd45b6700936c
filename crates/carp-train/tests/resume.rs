//! Resume exactness and the non-finite-loss guard, on a tiny model (CPU, a few seconds).

use burn::tensor::Device;
use carp_io::read_checkpoint;
use carp_train::pretrain::CHECKPOINT;
use carp_train::{pretrain, Config, TrainError};

mod common;
use common::{assert_same_tensors, tiny};

fn run(cfg: &Config) -> Result<carp_train::Summary, TrainError> {
    pretrain(cfg, &Device::flex())
}

/// k steps + stop + resume to n steps gives bit-identical student, teacher, BatchNorm
/// statistics and LARS momentum to n uninterrupted steps (16 steps = 2 epochs; stop at 5).
#[test]
fn issue_2_resume_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let mut cfg = tiny(&a);
    run(&cfg).unwrap();
    cfg = tiny(&b);
    cfg.run.max_steps = 5;
    let s = run(&cfg).unwrap();
    assert_eq!(s.steps, 5);
    cfg.run.max_steps = 0;
    let s = run(&cfg).unwrap();
    assert_eq!(s.steps_this_run, 11);
    assert_same_tensors(&a, &b);
    // The student moved away from its initial weights and the teacher followed it.
    let ck = read_checkpoint(&a.join(CHECKPOINT)).unwrap();
    let s = &ck.tensors["student.backbone.conv1.weight"].values;
    let t = &ck.tensors["teacher.backbone.conv1.weight"].values;
    assert!(s.iter().zip(t).any(|(x, y)| x != y));
    assert!(ck
        .tensors
        .keys()
        .any(|k| k.starts_with("optim.momentum.backbone.")));
    // metrics.jsonl holds one line per step of both processes.
    let lines = std::fs::read_to_string(b.join("metrics.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 16);
}

/// The same with gradient accumulation (2 micro-batches per optimiser step).
#[test]
fn resume_is_exact_with_accumulation() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let mut cfg = tiny(&a);
    cfg.optim.accumulation_steps = 2;
    run(&cfg).unwrap();
    let mut cfg = tiny(&b);
    cfg.optim.accumulation_steps = 2;
    cfg.run.max_steps = 6;
    run(&cfg).unwrap();
    cfg.run.max_steps = 0;
    run(&cfg).unwrap();
    assert_same_tensors(&a, &b);
}

/// A diverging run stops with a typed error naming the step and leaves the last good
/// checkpoint byte-for-byte untouched.
#[test]
fn non_finite_loss_stops_and_keeps_the_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut cfg = tiny(&out);
    cfg.run.max_steps = 8;
    run(&cfg).unwrap();
    let before = std::fs::read(out.join(CHECKPOINT)).unwrap();
    cfg.run.max_steps = 0;
    cfg.optim.base_lr = 1e35;
    let err = run(&cfg).unwrap_err();
    match &err {
        TrainError::NonFiniteLoss { step, .. } => assert!(*step >= 8, "{err}"),
        other => panic!("expected NonFiniteLoss, got {other}"),
    }
    assert!(err.to_string().contains("last good checkpoint"));
    assert_eq!(std::fs::read(out.join(CHECKPOINT)).unwrap(), before);
}

/// A checkpoint of another model is refused with a message naming the file.
#[test]
fn resume_refuses_another_model() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut cfg = tiny(&out);
    cfg.run.max_steps = 2;
    run(&cfg).unwrap();
    cfg.model.out_dim = 128;
    let err = run(&cfg).unwrap_err().to_string();
    assert!(err.contains(CHECKPOINT) && err.contains("model"), "{err}");
}
