//! Compares carp checkpoints tensor by tensor against a reference (bench/determinism.sh).
//!
//! `cargo run --release -p carp-io --example ckpt_diff -- REFERENCE OTHER...`
//!
//! Prints one line per OTHER: `identical` when every tensor holds the same bits as the
//! reference's (and the saved step agrees), otherwise the number of differing tensors and the
//! largest absolute difference with its tensor. Exits 1 if any OTHER differs.

use carp_io::read_checkpoint;
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let paths: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    let [reference, others @ ..] = paths.as_slice() else {
        return Err("usage: ckpt_diff REFERENCE OTHER...".into());
    };
    if others.is_empty() {
        return Err("usage: ckpt_diff REFERENCE OTHER...".into());
    }
    let a = read_checkpoint(reference)?;
    let mut all_same = true;
    for path in others {
        let b = read_checkpoint(path)?;
        let mut differing = 0usize;
        let mut worst = (0.0f64, String::new());
        let mut problems = Vec::new();
        if a.meta.get("next_step") != b.meta.get("next_step") {
            problems.push(format!(
                "next_step {} vs {}",
                a.meta["next_step"], b.meta["next_step"]
            ));
        }
        for key in b.tensors.keys().filter(|k| !a.tensors.contains_key(*k)) {
            problems.push(format!("extra tensor {key}"));
        }
        for (key, ta) in &a.tensors {
            let Some(tb) = b.tensors.get(key) else {
                problems.push(format!("missing tensor {key}"));
                continue;
            };
            if ta.shape != tb.shape {
                problems.push(format!("{key}: shape {:?} vs {:?}", ta.shape, tb.shape));
                continue;
            }
            let mut same = true;
            for (x, y) in ta.values.iter().zip(&tb.values) {
                if x.to_bits() != y.to_bits() {
                    same = false;
                    let d = (*x as f64 - *y as f64).abs();
                    if d > worst.0 || worst.1.is_empty() {
                        worst = (d, key.clone());
                    }
                }
            }
            differing += usize::from(!same);
        }
        let total = a.tensors.len();
        if differing == 0 && problems.is_empty() {
            println!("{}: identical ({total} tensors)", path.display());
        } else {
            all_same = false;
            println!(
                "{}: DIFFERS: {differing} of {total} tensors, max |diff| {:.3e} in {}{}",
                path.display(),
                worst.0,
                worst.1,
                problems
                    .iter()
                    .map(|p| format!("; {p}"))
                    .collect::<String>()
            );
        }
    }
    Ok(if all_same {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
