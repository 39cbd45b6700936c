//! Run health on a tiny model (CPU, seconds): collapse signals in metrics.jsonl and
//! TensorBoard, the NaN policies, torn-checkpoint recovery and the stop flag.

use burn::tensor::Device;
use carp_io::read_checkpoint;
use carp_train::config::NanPolicy;
use carp_train::data;
use carp_train::pretrain::{pretrain_observed, CHECKPOINT};
use carp_train::progress::{Observer, RunEvent};
use carp_train::signals::StopFlag;
use carp_train::tensorboard::{read_events, Value};
use carp_train::{pretrain, Config, TrainError};
use std::path::Path;

mod common;
use common::{assert_same_tensors, tiny};

fn records(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A healthy run logs every diagnostic on every step, stays unflagged, and writes the same
/// scalars plus the block-0 argmax histograms to a TensorBoard file that reads back.
#[test]
fn healthy_run_logs_diagnostics_and_is_not_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let cfg = tiny(&out);
    let s = pretrain(&cfg, &Device::flex()).unwrap();
    assert!(!s.collapse && !s.interrupted && s.skipped_steps == 0);
    let recs = records(&out);
    assert_eq!(recs.len(), 16);
    for r in &recs {
        for key in [
            "loss",
            "consistency",
            "entropy",
            "lr",
            "wd",
            "momentum",
            "img_per_s",
            "data_wait_s",
            "skipped_steps",
            "entropy_ratio",
            "prototypes_used",
            "prototypes_used_frac",
            "prototype_coverage",
            "bottleneck_std",
            "bottleneck_std_ratio",
            "agreement_top1",
            "agreement_top5",
            "collapse",
        ] {
            assert!(r.get(key).is_some(), "{key} missing in {r}");
        }
        assert_eq!(r["collapse"], false, "{r}");
        let ratio = r["entropy_ratio"].as_f64().unwrap();
        let entropy = r["entropy"].as_f64().unwrap();
        assert!((ratio - entropy / 16f64.ln()).abs() < 1e-9);
        let used = r["prototypes_used"].as_f64().unwrap();
        assert!((1.0..=16.0).contains(&used));
        let t1 = r["agreement_top1"].as_f64().unwrap();
        let t5 = r["agreement_top5"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&t1) && t1 <= t5 && t5 <= 1.0);
    }
    let tb: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("events.out.tfevents")
        })
        .collect();
    assert_eq!(tb.len(), 1);
    let events = read_events(&std::fs::read(tb[0].path()).unwrap()).unwrap();
    assert_eq!(events.len(), 17); // version + one per logged step
    let last = &events[16];
    assert_eq!(last.step, 15);
    let scalar = |tag: &str| {
        last.values
            .iter()
            .find_map(|(t, v)| match v {
                Value::Scalar(x) if t == tag => Some(*x as f64),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{tag} missing"))
    };
    let r = &recs[15];
    assert!((scalar("loss/total") - r["loss"].as_f64().unwrap()).abs() < 1e-5);
    assert!((scalar("health/agreement_top1") - r["agreement_top1"].as_f64().unwrap()).abs() < 1e-6);
    // Histograms count every student row (S * B = 4 * 8) and teacher row (2 * 8) of block 0.
    for (tag, rows) in [
        ("assignments/student_block0", 32.0),
        ("assignments/teacher_block0", 16.0),
    ] {
        let h = last.values.iter().find(|(t, _)| t == tag).unwrap();
        match &h.1 {
            Value::Histogram { num, bucket, .. } => {
                assert_eq!(*num, rows);
                assert_eq!(bucket.len(), 16);
                assert_eq!(bucket.iter().sum::<f64>(), rows);
            }
            other => panic!("{other:?}"),
        }
    }
}

#[derive(Default)]
struct Collect(Vec<RunEvent>);

impl Observer for Collect {
    fn event(&mut self, e: &RunEvent) {
        self.0.push(e.clone());
    }
}

/// A deliberately collapsing configuration is flagged with a warning naming likely causes.
#[test]
fn collapsing_run_is_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut cfg = tiny(&out);
    collapse(&mut cfg);
    let data = data::open(&cfg.data, cfg.run.seed).unwrap();
    let mut seen = Collect::default();
    let s = pretrain_observed(&cfg, &Device::flex(), data, &mut seen, &StopFlag::new()).unwrap();
    let recs = records(&out);
    let trace: Vec<_> = recs
        .iter()
        .map(|r| (r["entropy_ratio"].as_f64(), r["collapse"].as_bool()))
        .collect();
    assert!(s.collapse, "{trace:?}");
    let warning = seen
        .0
        .iter()
        .find_map(|e| match e {
            RunEvent::Collapse { message, .. } => Some(message.clone()),
            _ => None,
        })
        .expect("a collapse warning");
    assert!(
        warning.contains("likely causes") && warning.contains("optim.base_lr"),
        "{warning}"
    );
    assert!(records(&out).iter().any(|r| r["collapse"] == true));
}

/// The collapsing configuration: see `collapse` in the README's "Watching a run".
fn collapse(cfg: &mut Config) {
    cfg.optim.base_lr = COLLAPSE_LR;
    cfg.optim.momentum_teacher = 0.0;
    cfg.optim.momentum_teacher_end = 0.0;
}

const COLLAPSE_LR: f64 = 1e5;

/// `skip-step` drops non-finite steps, counts them, and stops after too many in a row;
/// `stop` names the step and the term.
#[test]
fn nan_policies() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut cfg = tiny(&out);
    cfg.optim.base_lr = 1e35;
    cfg.monitor.nan_policy = NanPolicy::SkipStep;
    cfg.monitor.max_consecutive_skips = 3;
    let err = pretrain(&cfg, &Device::flex()).unwrap_err();
    match &err {
        TrainError::NonFiniteLoss { term, .. } => {
            assert!(term.contains("in a row"), "{err}")
        }
        other => panic!("expected NonFiniteLoss, got {other}"),
    }
    let recs = records(&out);
    let skipped = recs.last().unwrap()["skipped_steps"].as_u64().unwrap();
    assert_eq!(skipped, 3, "{:?}", recs.last());
    let out2 = dir.path().join("run2");
    let mut cfg = tiny(&out2);
    cfg.optim.base_lr = 1e35;
    let err = pretrain(&cfg, &Device::flex()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("at step") && msg.contains("last good checkpoint"),
        "{msg}"
    );
    match &err {
        TrainError::NonFiniteLoss { term, .. } => assert!(
            term.starts_with("loss (") || term.starts_with("gradient of student."),
            "{term}"
        ),
        other => panic!("{other}"),
    }
}

/// A truncated latest checkpoint (and a truncated newer kept one) are skipped with a
/// warning in favour of the older good one; the resumed run ends bit-identical to an
/// uninterrupted one.
#[test]
fn torn_checkpoint_is_skipped_for_an_older_good_one() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let mut cfg = tiny(&a);
    cfg.run.epochs = 3;
    cfg.run.keep_every_epochs = 1;
    pretrain(&cfg, &Device::flex()).unwrap();
    let mut cfg = tiny(&b);
    cfg.run.epochs = 3;
    cfg.run.keep_every_epochs = 1;
    cfg.run.max_steps = 16;
    pretrain(&cfg, &Device::flex()).unwrap();
    for name in [CHECKPOINT, "checkpoint-ep0002.safetensors"] {
        let bytes = std::fs::read(b.join(name)).unwrap();
        std::fs::write(b.join(name), &bytes[..bytes.len() / 2]).unwrap();
    }
    // A temp file left by a killed writer is cleaned up.
    std::fs::write(b.join("checkpoint.safetensors.tmp999"), b"partial").unwrap();
    cfg.run.max_steps = 0;
    let s = pretrain(&cfg, &Device::flex()).unwrap();
    assert_eq!(s.steps_this_run, 16, "resumed from epoch 1 (step 8)");
    assert!(!b.join("checkpoint.safetensors.tmp999").exists());
    assert_same_tensors(&a, &b);
}

/// A stop request finishes the step, writes a checkpoint mid-epoch, skips the evaluation,
/// and resuming from it ends where an uninterrupted run does.
#[test]
fn stop_flag_checkpoints_mid_epoch_and_resumes_exactly() {
    struct StopAt(StopFlag, usize);
    impl Observer for StopAt {
        fn event(&mut self, e: &RunEvent) {
            if let RunEvent::Step { done, .. } = e {
                if *done == self.1 {
                    self.0.request();
                }
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    pretrain(&tiny(&a), &Device::flex()).unwrap();
    let cfg = tiny(&b);
    let stop = StopFlag::new();
    let data = data::open(&cfg.data, cfg.run.seed).unwrap();
    let s = pretrain_observed(
        &cfg,
        &Device::flex(),
        data,
        &mut StopAt(stop.clone(), 5),
        &stop,
    )
    .unwrap();
    assert!(s.interrupted);
    assert_eq!(s.steps, 5);
    let ck = read_checkpoint(&b.join(CHECKPOINT)).unwrap();
    assert_eq!(ck.meta["next_step"], 5);
    let s = pretrain(&cfg, &Device::flex()).unwrap();
    assert_eq!(s.steps_this_run, 11);
    assert_same_tensors(&a, &b);
}

/// `run.eval_every_epochs = 1`: a k-NN point per epoch in `knn.jsonl` (the last one equal to
/// the end-of-run evaluation), and `carp report` plots them.
#[test]
fn knn_during_training_is_logged_and_plotted() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut cfg = tiny(&out);
    cfg.run.eval = true;
    cfg.run.eval_every_epochs = 1;
    cfg.run.epochs = 3;
    let summary = pretrain(&cfg, &Device::flex()).unwrap();
    let text = std::fs::read_to_string(out.join(carp_train::pretrain::KNN_LOG)).unwrap();
    let points: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let epochs: Vec<u64> = points
        .iter()
        .map(|p| p["epoch"].as_u64().unwrap())
        .collect();
    assert_eq!(epochs, [1, 2, 3]);
    for p in &points {
        let top1 = p["top1"].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&top1) && p["top5"].as_f64().unwrap() >= top1);
        assert_eq!(p["k"], 20);
    }
    let knn = summary.knn.expect("end-of-run k-NN");
    assert_eq!(points[2]["top1"].as_f64().unwrap(), knn.trained_top1);
    let report = carp_train::report::write_report(&out).unwrap();
    let plot = out.join("report/knn_training.png");
    assert!(report.images.contains(&plot));
    assert_eq!(
        &std::fs::read(&plot).unwrap()[..8],
        b"\x89PNG\r\n\x1a\n".as_slice()
    );
}
