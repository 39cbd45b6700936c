//! `carp pretrain` under `mpirun -np 2` (issue 11): built only with the `mpi` feature and run
//! by `.ci/run` (`cargo test --workspace --release --features carp-cli/mpi --test mpi`). Needs
//! Open MPI's `mpirun` on the PATH; as root it needs `OMPI_ALLOW_RUN_AS_ROOT=1` and
//! `OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1` in the environment (`.ci/run` sets them).

#![cfg(all(feature = "mpi", target_os = "linux"))]

use carp_io::read_checkpoint;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

const CARP: &str = env!("CARGO_BIN_EXE_carp");

/// A small run: ResNet-18 at width 4 on 16 px synthetic images, one thread per process.
fn small() -> Vec<&'static str> {
    [
        &["pretrain", "--no-eval"][..],
        &common::SMALL_MODEL[..],
        &[
            "--epochs",
            "2",
            "--log-every",
            "1",
            "--threads",
            "1",
            "--seed=3",
        ],
    ]
    .concat()
}

/// `mpirun --oversubscribe -np N carp small() --out OUT ARGS`.
fn mpirun(np: usize, out: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("mpirun");
    c.args(["--oversubscribe", "-np", &np.to_string(), CARP])
        .args(small())
        .arg("--out")
        .arg(out)
        .args(args);
    c
}

fn run_ok(mut c: Command) -> String {
    let out = c.output().expect("mpirun (Open MPI) on the PATH");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    text
}

/// The relative L2 distance `‖a − b‖ / ‖b‖` between the checkpoints of two runs, per group
/// of tensors (student, teacher, LARS buffers), the worst one.
fn distance(a: &Path, b: &Path) -> f64 {
    let a = read_checkpoint(&a.join("checkpoint.safetensors")).unwrap();
    let b = read_checkpoint(&b.join("checkpoint.safetensors")).unwrap();
    assert_eq!(a.meta["next_step"], b.meta["next_step"]);
    let mut groups = std::collections::BTreeMap::<&str, (f64, f64)>::new();
    for (key, ta) in &a.tensors {
        let sums = groups.entry(key.split('.').next().unwrap()).or_default();
        for (&x, &y) in ta.values.iter().zip(&b.tensors[key].values) {
            sums.0 += (x as f64 - y as f64).powi(2);
            sums.1 += (y as f64).powi(2);
        }
    }
    groups
        .values()
        .map(|(d, n)| (d / n).sqrt())
        .fold(0.0, f64::max)
}

/// Two MPI ranks with 4 images each end 4 steps where one process with 8 does, within 1e-5
/// (relative L2 per group). Both sides use Burn's BatchNorm (`CARP_KERNELS=burn`): the
/// synchronised BatchNorm always does, while one process would otherwise use carp's fused
/// kernel, whose different summation order alone moves the LARS buffers by ~6e-5 in 4 steps
/// (measured); the thread-rank test in carp-train covers the default kernels.
#[test]
fn two_mpi_ranks_match_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    let mut single = Command::new(CARP);
    single
        .args(small())
        .arg("--out")
        .arg(&one)
        .args(["--batch-size", "8", "--max-steps", "4"])
        .env("CARP_KERNELS", "burn");
    run_ok(single);
    // -x: mpirun passes CARP_KERNELS on to the ranks.
    let mut pair = Command::new("mpirun");
    pair.args(["--oversubscribe", "-x", "CARP_KERNELS", "-np", "2", CARP])
        .args(small())
        .arg("--out")
        .arg(&two)
        .args(["--batch-size", "4", "--max-steps", "4"])
        .env("CARP_KERNELS", "burn");
    let text = run_ok(pair);
    // Only rank 0 reports.
    assert_eq!(text.matches("done: 4 steps").count(), 1, "{text}");
    let d = distance(&two, &one);
    assert!(d <= 1e-5, "relative L2 distance {d:e}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(two.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["world_size"], 2);
    let metrics = std::fs::read_to_string(two.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 4);
}

/// The pids of `parent`'s children whose environment says they are MPI rank `rank`.
fn rank_pid(parent: u32, rank: usize) -> Option<i32> {
    let want = format!("OMPI_COMM_WORLD_RANK={rank}");
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        // pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
        let ppid: u32 = stat
            .rsplit(')')
            .next()?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        let env = std::fs::read(e.path().join("environ")).ok()?;
        let is_rank = env.split(|&b| b == 0).any(|v| v == want.as_bytes());
        (ppid == parent && is_rank).then_some(pid)
    })
}

/// Spawns a long 2-rank run and waits until rank 0 has logged `steps` steps.
fn long_run(out: &Path, steps: usize) -> Child {
    let child = mpirun(2, out, &["--batch-size", "4", "--checkpoint-every", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mpirun (Open MPI) on the PATH");
    let metrics = out.join("metrics.jsonl");
    let t0 = Instant::now();
    while std::fs::read_to_string(&metrics).map_or(0, |m| m.lines().count()) < steps {
        assert!(t0.elapsed() < Duration::from_secs(120), "no progress");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// Waits for `child` at most `secs` seconds; its exit code, or kills it and fails.
fn wait_bounded(mut child: Child, secs: u64) -> (Option<i32>, String) {
    let t0 = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            let text = format!(
                "{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            return (status.code(), text);
        }
        if t0.elapsed() > Duration::from_secs(secs) {
            child.kill().ok();
            panic!("the job did not end within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// SIGKILL to rank 1 mid-run: the job ends non-zero within a bounded time (no rank hangs in
/// a collective), and the last checkpoint rank 0 wrote still loads.
#[test]
fn a_killed_rank_takes_the_job_down_and_the_checkpoint_survives() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let child = long_run(&out, 5);
    let pid = rank_pid(child.id(), 1).expect("rank 1 is a child of mpirun");
    // SAFETY: signalling a process this test started (through mpirun).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let (code, text) = wait_bounded(child, 60);
    assert_ne!(code, Some(0), "{text}");
    let ck = read_checkpoint(&out.join("checkpoint.safetensors")).unwrap();
    assert!(ck.meta["next_step"].as_u64().unwrap() >= 2);
}

/// SIGTERM to rank 1 only (as when a scheduler signals some processes first): every rank
/// stops at the same step, rank 0 writes that step's checkpoint, and the job exits 0.
#[test]
fn sigterm_to_one_rank_stops_every_rank_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let child = long_run(&out, 3);
    let pid = rank_pid(child.id(), 1).expect("rank 1 is a child of mpirun");
    // SAFETY: signalling a process this test started (through mpirun).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let (code, text) = wait_bounded(child, 60);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("interrupted at step"), "{text}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["interrupted"], true);
    let ck = read_checkpoint(&out.join("checkpoint.safetensors")).unwrap();
    assert_eq!(ck.meta["next_step"], summary["steps"]);
}

/// Ranks that see different run directories would resume from different steps: refused on
/// every rank with a message that names the cause, and the job ends non-zero.
#[test]
fn ranks_that_disagree_on_the_start_step_stop_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let mut c = Command::new(CARP);
    c.args(small())
        .arg("--out")
        .arg(&a)
        .args(["--batch-size", "8", "--max-steps", "2"]);
    run_ok(c);
    // MPMD launch: rank 0 resumes a (step 2), rank 1 starts b afresh (step 0).
    let mut c = Command::new("mpirun");
    c.args(["--oversubscribe", "-np", "1", CARP])
        .args(small())
        .arg("--out")
        .arg(&a)
        .args(["--batch-size", "4", ":", "-np", "1", CARP])
        .args(small())
        .arg("--out")
        .arg(&b)
        .args(["--batch-size", "4"]);
    let child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (code, text) = wait_bounded(child, 60);
    assert_ne!(code, Some(0), "{text}");
    assert!(text.contains("different steps"), "{text}");
}
