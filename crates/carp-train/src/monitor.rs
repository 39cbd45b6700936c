//! What a run records about its steps: `metrics.jsonl`, TensorBoard events, the collapse
//! detector, throughput windows and the per-epoch totals.

use crate::config::{ModelConfig, MonitorConfig};
use crate::diagnostics::{argmax_histogram, diagnose, likely_causes, CollapseDetector, StepProbe};
use crate::error::TrainError;
use crate::metrics::{MetricsWriter, StepRecord};
use crate::progress::{EpochSummary, Observer, RunEvent};
use crate::tensorboard::{EventWriter, Value};
use crate::trainer::{io_err, StepReport};
use std::path::Path;
use std::time::Instant;
use tracing::{debug, info, warn};

/// Running sums of one epoch, for its summary line.
#[derive(Default)]
struct EpochTotals {
    steps: usize,
    loss: f64,
    consistency: f64,
    entropy: f64,
    skipped: usize,
    images: usize,
}

/// The writers and running state behind a run's logs.
pub struct Monitor {
    /// `None` on the ranks of a data-parallel run other than 0: they write no files.
    metrics: Option<MetricsWriter>,
    /// Processes sharing each step: throughput counts all of their images.
    world: usize,
    events: Option<EventWriter>,
    detector: CollapseDetector,
    collapsed: bool,
    last: Option<StepRecord>,
    totals: EpochTotals,
    epoch_start: Instant,
    window_start: Instant,
    window_images: usize,
    data_wait: f64,
}

impl Monitor {
    /// Opens `metrics.jsonl` (appending) and, when enabled, a TensorBoard event file in `out`.
    pub fn open(out: &Path, cfg: &MonitorConfig, world: usize) -> Result<Self, TrainError> {
        let metrics = MetricsWriter::append(&out.join("metrics.jsonl"))?;
        let events = if cfg.tensorboard {
            Some(EventWriter::create(out).map_err(io_err(out))?)
        } else {
            None
        };
        Ok(Self::with_writers(Some(metrics), events, cfg, world))
    }

    /// A monitor that keeps the running state (collapse detector, epoch totals) and writes
    /// no file: the ranks other than 0 of a data-parallel run.
    pub fn without_files(cfg: &MonitorConfig, world: usize) -> Self {
        Self::with_writers(None, None, cfg, world)
    }

    fn with_writers(
        metrics: Option<MetricsWriter>,
        events: Option<EventWriter>,
        cfg: &MonitorConfig,
        world: usize,
    ) -> Self {
        Self {
            metrics,
            world,
            events,
            detector: CollapseDetector::new(cfg),
            collapsed: false,
            last: None,
            totals: EpochTotals::default(),
            epoch_start: Instant::now(),
            window_start: Instant::now(),
            window_images: 0,
            data_wait: 0.0,
        }
    }

    /// Adds `secs` of waiting for the loader to the current window.
    pub fn waited_for_data(&mut self, secs: f64) {
        self.data_wait += secs;
    }

    /// Counts a step in the epoch totals and, when `probe` is given (a logged step), writes
    /// its record with the collapse signals to `metrics.jsonl` and TensorBoard.
    pub fn record(
        &mut self,
        report: &StepReport,
        epoch: usize,
        probe: Option<&StepProbe>,
        skipped_steps: usize,
        model: &ModelConfig,
        observer: &mut dyn Observer,
    ) -> Result<Option<StepRecord>, TrainError> {
        let (l, s) = (&report.losses, &report.schedule);
        if report.skipped.is_some() {
            self.totals.skipped += 1;
        } else {
            self.totals.steps += 1;
            self.totals.loss += l.total;
            self.totals.consistency += l.consistency;
            self.totals.entropy += l.entropy;
        }
        self.window_images += report.batch * self.world;
        self.totals.images += report.batch * self.world;
        let Some(probe) = probe else {
            return Ok(None);
        };
        let step = report.step;
        let diagnostics = diagnose(probe, l.entropy);
        let collapse = self.check_collapse(step, &diagnostics, probe, model, observer);
        let secs = self.window_start.elapsed().as_secs_f64();
        let rec = StepRecord {
            step,
            epoch,
            loss: l.total,
            consistency: l.consistency,
            entropy: l.entropy,
            lr: s.lr,
            wd: s.weight_decay,
            momentum: s.teacher_momentum,
            img_per_s: self.window_images as f64 / secs.max(1e-9),
            data_wait_s: self.data_wait,
            skipped_steps,
            diagnostics: Some(diagnostics),
            collapse,
            scaler: report.scaler,
        };
        debug!(
            step,
            epoch,
            loss = format_args!("{:.4}", rec.loss),
            consistency = format_args!("{:.4}", rec.consistency),
            entropy = format_args!("{:.4}", rec.entropy),
            lr = format_args!("{:.4}", rec.lr),
            momentum = format_args!("{:.5}", rec.momentum),
            img_per_s = format_args!("{:.1}", rec.img_per_s),
            "step"
        );
        if let Some(m) = self.metrics.as_mut() {
            m.write(&rec)?;
        }
        if let Some(w) = self.events.as_mut() {
            let path = w.path().to_path_buf();
            w.add(step, tensorboard_values(&rec, probe))
                .map_err(io_err(&path))?;
        }
        self.last = Some(rec.clone());
        self.window_start = Instant::now();
        self.window_images = 0;
        self.data_wait = 0.0;
        Ok(Some(rec))
    }

    /// Feeds a logged step's signals to the collapse detector; warns (log and event) when
    /// collapse sets in. Returns whether the run counts as collapsed.
    fn check_collapse(
        &mut self,
        step: usize,
        diagnostics: &crate::diagnostics::Diagnostics,
        probe: &StepProbe,
        model: &ModelConfig,
        observer: &mut dyn Observer,
    ) -> bool {
        let status = self.detector.check(step, diagnostics);
        if status.onset {
            let rows = probe.student_views * probe.batch;
            let message = format!(
                "possible collapse at step {step}: {}; {}",
                status.signals.join(", "),
                likely_causes(rows, model.partition_size)
            );
            warn!("{message}");
            observer.event(&RunEvent::Collapse { step, message });
        } else if self.collapsed && !status.collapsed {
            info!(step, "collapse signals cleared");
        }
        self.collapsed = status.collapsed;
        self.collapsed
    }

    /// The summary of epoch `epoch` (ended before step `step`), logged; `None` when this
    /// process ran none of its steps. Resets the totals.
    pub fn end_epoch(&mut self, epoch: usize, step: usize) -> Option<EpochSummary> {
        let t = std::mem::take(&mut self.totals);
        let wall = std::mem::replace(&mut self.epoch_start, Instant::now())
            .elapsed()
            .as_secs_f64();
        if t.steps + t.skipped == 0 {
            return None;
        }
        let denom = t.steps.max(1) as f64;
        let summary = EpochSummary {
            epoch,
            step,
            steps: t.steps + t.skipped,
            mean_loss: t.loss / denom,
            mean_consistency: t.consistency / denom,
            mean_entropy: t.entropy / denom,
            img_per_s: t.images as f64 / wall.max(1e-9),
            wall_s: wall,
            skipped_steps: t.skipped,
            collapse: self.collapsed,
        };
        info!(
            epoch,
            step,
            loss = format_args!("{:.4}", summary.mean_loss),
            consistency = format_args!("{:.4}", summary.mean_consistency),
            entropy = format_args!("{:.4}", summary.mean_entropy),
            img_per_s = format_args!("{:.1}", summary.img_per_s),
            wall_s = format_args!("{:.1}", wall),
            skipped = t.skipped,
            collapse = self.collapsed,
            "epoch done"
        );
        Some(summary)
    }

    /// The last logged record.
    pub fn last(&self) -> Option<&StepRecord> {
        self.last.as_ref()
    }

    /// Whether the collapse detector flagged the run at its last logged step.
    pub fn collapsed(&self) -> bool {
        self.collapsed
    }
}

/// The scalars of a record (same names as `metrics.jsonl`, grouped by prefix) and the
/// argmax histograms of the first block.
fn tensorboard_values(r: &StepRecord, p: &StepProbe) -> Vec<(String, Value)> {
    let mut v: Vec<(String, Value)> = [
        ("loss/total", r.loss),
        ("loss/consistency", r.consistency),
        ("loss/entropy", r.entropy),
        ("schedule/lr", r.lr),
        ("schedule/wd", r.wd),
        ("schedule/momentum", r.momentum),
        ("speed/img_per_s", r.img_per_s),
        ("speed/data_wait_s", r.data_wait_s),
        ("health/skipped_steps", r.skipped_steps as f64),
        ("health/collapse", r.collapse as u8 as f64),
    ]
    .into_iter()
    .map(|(t, x)| (t.to_string(), Value::Scalar(x as f32)))
    .collect();
    if let Some(sc) = &r.scaler {
        v.push((
            "precision/loss_scale".into(),
            Value::Scalar(sc.loss_scale as f32),
        ));
        v.push((
            "precision/overflow_steps".into(),
            Value::Scalar(sc.overflow_steps as f32),
        ));
    }
    if let Some(d) = &r.diagnostics {
        for (t, x) in [
            ("health/entropy_ratio", d.entropy_ratio),
            ("health/prototypes_used", d.prototypes_used),
            ("health/prototypes_used_frac", d.prototypes_used_frac),
            ("health/prototype_coverage", d.prototype_coverage),
            ("health/bottleneck_std", d.bottleneck_std),
            ("health/bottleneck_std_ratio", d.bottleneck_std_ratio),
            ("health/agreement_top1", d.agreement_top1),
            ("health/agreement_top5", d.agreement_top5),
        ] {
            v.push((t.to_string(), Value::Scalar(x as f32)));
        }
    }
    let s_rows = p.student_views * p.batch;
    let t_rows = p.teacher_views * p.batch;
    for (tag, first) in [
        ("assignments/student_block0", &p.student_argmax[..s_rows]),
        ("assignments/teacher_block0", &p.teacher_argmax[..t_rows]),
    ] {
        let counts = argmax_histogram(first, p.block_size);
        v.push((tag.to_string(), Value::integer_histogram(&counts)));
    }
    v
}
