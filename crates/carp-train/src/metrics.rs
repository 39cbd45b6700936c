//! Per-step records: one JSON object per line in `metrics.jsonl`.

use crate::diagnostics::Diagnostics;
use crate::error::TrainError;
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// What is logged for one step (stable keys, spec §5 list).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StepRecord {
    /// Global step (micro-batch index, 0-based).
    pub step: usize,
    /// Epoch (0-based).
    pub epoch: usize,
    /// consistency + entropy.
    pub loss: f64,
    /// Consistency term.
    pub consistency: f64,
    /// Entropy term.
    pub entropy: f64,
    /// Learning rate.
    pub lr: f64,
    /// Weight decay.
    pub wd: f64,
    /// Teacher momentum.
    pub momentum: f64,
    /// Images per second since the previous record.
    pub img_per_s: f64,
    /// Seconds spent waiting for data since the previous record.
    pub data_wait_s: f64,
    /// Steps skipped by `--nan-policy skip-step` in this process so far.
    pub skipped_steps: usize,
    /// Collapse and health signals of this step (flattened into the line).
    #[serde(flatten)]
    pub diagnostics: Option<Diagnostics>,
    /// Whether the collapse detector flags the run at this step.
    pub collapse: bool,
    /// f16 loss scaling (absent in f32 and bf16 runs), flattened into the line.
    #[serde(flatten)]
    pub scaler: Option<ScalerRecord>,
}

/// The f16 loss scaler's state in a metrics line.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ScalerRecord {
    /// The loss scale after this step.
    pub loss_scale: f64,
    /// Optimiser steps skipped on a gradient overflow (inf/NaN) by this process so far.
    pub overflow_steps: usize,
}

/// Appends [`StepRecord`]s to a JSON-lines file.
pub struct MetricsWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl MetricsWriter {
    /// Opens `path` for appending (a resumed run continues the same file).
    pub fn append(path: &Path) -> Result<Self, TrainError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| TrainError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Self {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
        })
    }

    /// Writes one record and flushes it, so the file is current if the run dies.
    pub fn write(&mut self, record: &StepRecord) -> Result<(), TrainError> {
        let line = serde_json::to_string(record).expect("record serialises");
        writeln!(self.out, "{line}")
            .and_then(|_| self.out.flush())
            .map_err(|source| TrainError::Io {
                path: self.path.clone(),
                source,
            })
    }
}
