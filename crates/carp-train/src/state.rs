//! The training state saved in a checkpoint and restored on resume.
//!
//! One safetensors file holds `student.*` and `teacher.*` (parameters and BatchNorm running
//! statistics, by module path), `optim.momentum.*` (LARS buffers) and JSON metadata: the
//! next step, the epoch, the seed, the number of processes and the resolved configuration
//! (nothing per process: any rank count resumes it at the same global batch), and in f16 runs
//! the loss scaler (`grad_scaler`, PyTorch's `GradScaler.state_dict()` keys). Randomness needs no saved
//! generator state: every draw derives from (seed, epoch, step or sample index).

use crate::config::Config;
use crate::error::TrainError;
use burn::tensor::{Device, Tensor, TensorData};
use carp_core::lars::Lars;
use carp_core::model::StudentTeacher;
use carp_core::scaler::GradScaler;
use carp_io::checkpoint::{CarpFile, RUN_FORMAT};
use carp_io::params::{self, ApplyIssue, HostTensor};
use carp_io::{Checkpoint, CheckpointError};
use std::collections::BTreeMap;
use std::path::Path;

/// Version of the checkpoint layout.
pub const VERSION: u64 = 1;
const MOMENTUM: &str = "optim.momentum.";

/// Snapshot of the run at an optimiser-step boundary.
pub fn snapshot(
    model: &StudentTeacher,
    lars: &Lars,
    scaler: Option<&GradScaler>,
    next_step: usize,
    epoch: usize,
    cfg: &Config,
    world: usize,
) -> Checkpoint {
    let mut tensors = params::collect(&model.student, "student.");
    tensors.extend(params::collect(&model.teacher, "teacher."));
    for (path, mu) in lars.buffers() {
        tensors.insert(
            format!("{MOMENTUM}{path}"),
            HostTensor::from_tensor(mu.clone()),
        );
    }
    let mut meta = serde_json::json!({
        "format": RUN_FORMAT,
        "version": VERSION,
        "next_step": next_step,
        "epoch": epoch,
        "seed": cfg.run.seed,
        "world_size": world,
        "config": cfg.to_toml(),
    });
    if let Some(scaler) = scaler {
        meta[GRAD_SCALER] = serde_json::to_value(scaler).expect("scaler serialises");
    }
    Checkpoint { tensors, meta }
}

/// Metadata key of the f16 loss scaler's state.
pub const GRAD_SCALER: &str = "grad_scaler";

/// The f16 loss scaler saved in a checkpoint, if any (`None` for f32 and bf16 runs).
pub fn restore_scaler(ckpt: &Checkpoint, path: &Path) -> Result<Option<GradScaler>, TrainError> {
    match ckpt.meta.get(GRAD_SCALER) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|e| TrainError::Resume {
                path: path.to_path_buf(),
                message: format!("unreadable `{GRAD_SCALER}` state: {e}"),
            }),
    }
}

/// Restores `model` and `lars` from a checkpoint; returns the step to continue from.
///
/// Strict: every parameter must be present with the same shape, the checkpoint's model
/// configuration must equal `cfg`'s, and its global batch per step (per-process batch x
/// processes) and accumulation must equal those of `cfg` with `world` processes.
pub fn restore(
    ckpt: &Checkpoint,
    path: &Path,
    model: StudentTeacher,
    lars: &mut Lars,
    cfg: &Config,
    optim_device: &Device,
    world: usize,
) -> Result<(StudentTeacher, usize), TrainError> {
    let fail = |message: String| TrainError::Resume {
        path: path.to_path_buf(),
        message,
    };
    if !is_run_checkpoint(ckpt) {
        return Err(fail(format!(
            "not a {RUN_FORMAT} (format {})",
            ckpt.meta["format"]
        )));
    }
    let saved = ckpt.meta["config"]
        .as_str()
        .ok_or_else(|| fail("no config in metadata".into()))?;
    let saved = Config::from_toml(saved, "checkpoint config")?;
    if saved.model != cfg.model {
        return Err(fail(format!(
            "the model configuration differs from the checkpoint's ({})",
            model_differences(&saved, cfg).join(", ")
        )));
    }
    // Checkpoints from before data parallelism have no world size: one process.
    let saved_world = ckpt.meta["world_size"].as_u64().unwrap_or(1) as usize;
    let (was, now) = (
        (
            saved.optim.batch_size * saved_world,
            saved.optim.accumulation_steps,
        ),
        (cfg.optim.batch_size * world, cfg.optim.accumulation_steps),
    );
    if was != now {
        return Err(fail(format!(
            "the global batch per step differs from the checkpoint's: it was {} images ({} per \
             process x {saved_world} processes, optim.accumulation_steps = {}), now {} ({} x \
             {world}, accumulation {}); {}",
            was.0,
            saved.optim.batch_size,
            was.1,
            now.0,
            cfg.optim.batch_size,
            now.1,
            if was.0 % world == 0 {
                format!(
                    "resume with optim.batch_size = {} and optim.accumulation_steps = {}",
                    was.0 / world,
                    was.1
                )
            } else {
                format!("{world} processes cannot share {} images evenly", was.0)
            }
        )));
    }
    let next_step = ckpt.meta["next_step"]
        .as_u64()
        .ok_or_else(|| fail("no next_step".into()))? as usize;
    let StudentTeacher {
        student,
        teacher,
        group,
    } = model;
    let (student, issues_s) = params::apply(student, &ckpt.tensors, "student.");
    let (teacher, issues_t) = params::apply(teacher, &ckpt.tensors, "teacher.");
    if let Some(issue) = issues_s.into_iter().chain(issues_t).next() {
        let path = path.to_path_buf();
        return Err(match issue {
            ApplyIssue::Missing(key) => CheckpointError::Missing { path, key },
            ApplyIssue::Shape {
                key,
                expected,
                found,
            } => CheckpointError::Shape {
                path,
                key,
                expected,
                found,
            },
        }
        .into());
    }
    let buffers: BTreeMap<String, Tensor<1>> = ckpt
        .tensors
        .iter()
        .filter_map(|(k, t)| {
            let path = k.strip_prefix(MOMENTUM)?;
            let n = t.values.len();
            Some((
                path.to_string(),
                Tensor::from_data(TensorData::new(t.values.clone(), [n]), optim_device),
            ))
        })
        .collect();
    lars.set_buffers(buffers);
    Ok((
        StudentTeacher {
            student,
            teacher,
            group,
        },
        next_step,
    ))
}

/// `model.KEY = saved -> configured` for each model setting that differs.
fn model_differences(saved: &Config, cfg: &Config) -> Vec<String> {
    let table = |c: &Config| toml::Table::try_from(&c.model).expect("model config serialises");
    let (a, b) = (table(saved), table(cfg));
    a.iter()
        .filter(|(k, v)| b.get(*k) != Some(v))
        .map(|(k, v)| {
            let now = b.get(k).map_or("absent".to_string(), |x| x.to_string());
            format!("model.{k} = {v} in the checkpoint, {now} configured")
        })
        .collect()
}

fn is_run_checkpoint(ckpt: &Checkpoint) -> bool {
    CarpFile::detect(&ckpt.meta, ckpt.tensors.keys()) == Some(CarpFile::Run)
}

/// The checkpoints of a run directory, newest first: `checkpoint.safetensors`, then the kept
/// `checkpoint-epNNNN.safetensors` by falling epoch.
pub fn checkpoint_candidates(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut kept: Vec<(usize, std::path::PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let epoch = name
                .strip_prefix("checkpoint-ep")?
                .strip_suffix(".safetensors")?
                .parse()
                .ok()?;
            Some((epoch, e.path()))
        })
        .collect();
    kept.sort_by_key(|k| std::cmp::Reverse(k.0));
    let latest = dir.join(crate::trainer::CHECKPOINT);
    std::iter::once(latest)
        .filter(|p| p.exists())
        .chain(kept.into_iter().map(|(_, p)| p))
        .collect()
}

/// The newest checkpoint of `dir` that reads back (framing, header, metadata), with its
/// path; torn or truncated ones are skipped with a warning. Leftover temporary files of an
/// interrupted write are removed.
pub fn latest_checkpoint(dir: &Path) -> Option<(std::path::PathBuf, Checkpoint)> {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("checkpoint") && name.contains(".safetensors.tmp") {
            tracing::warn!(path = %entry.path().display(), "removing a partly written checkpoint");
            let _ = std::fs::remove_file(entry.path());
        }
    }
    for path in checkpoint_candidates(dir) {
        match carp_io::read_checkpoint(&path) {
            Ok(ckpt) if is_run_checkpoint(&ckpt) => return Some((path, ckpt)),
            Ok(_) => tracing::warn!(path = %path.display(), "not a carp checkpoint: skipped"),
            Err(e) => {
                tracing::warn!(error = %e, "unreadable checkpoint skipped (torn or truncated?)")
            }
        }
    }
    None
}
