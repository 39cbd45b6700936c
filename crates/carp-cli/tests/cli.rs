//! The real `carp` binary on temp directories of generated images.

use std::path::Path;
use std::process::Command;

mod common;

fn carp() -> Command {
    Command::new(env!("CARGO_BIN_EXE_carp"))
}

/// A two-class image folder of 20 PNG images (16x16), like torchvision's ImageFolder.
fn image_folder(root: &Path) {
    for (class, colour) in [("circles", [200u8, 30, 30]), ("squares", [30, 30, 200])] {
        let dir = root.join(class);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..10u32 {
            let img = image::RgbImage::from_fn(16, 16, |x, y| {
                let on = (x + i) % 5 < 3 && (y + 2 * i) % 7 < 4;
                image::Rgb(if on { colour } else { [(i * 20) as u8, 90, 60] })
            });
            img.save(dir.join(format!("{i:03}.png"))).unwrap();
        }
    }
}

/// Flags of a small run: the tests' small model, batch 8, 2 epochs, 2 threads.
fn small() -> Vec<&'static str> {
    [
        &common::SMALL_MODEL[..],
        &[
            "--batch-size",
            "8",
            "--epochs",
            "2",
            "--log-every",
            "1",
            "--threads",
            "2",
            "--seed",
            "3",
        ],
    ]
    .concat()
}

/// `carp pretrain --data DIR --eval-data DIR` trains, writes the run directory and prints
/// the k-NN comparison; `summary.json` carries both numbers.
#[test]
fn pretrain_on_an_image_folder_writes_the_run_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    image_folder(&data);
    let out = dir.path().join("run");
    let output = carp()
        .args(["pretrain", "--data"])
        .arg(&data)
        .arg("--eval-data")
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .args(small())
        .args(["--max-steps", "3"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("k-NN top-1"), "{stdout}");
    for file in [
        "config.toml",
        "metrics.jsonl",
        "summary.json",
        "checkpoint.safetensors",
    ] {
        assert!(out.join(file).exists(), "{file} missing");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["steps"], 3);
    assert!(summary["knn"]["trained_top1"].as_f64().is_some());
    assert!(summary["knn"]["init_top1"].as_f64().is_some());
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(metrics.lines().next().unwrap()).unwrap();
    for key in [
        "step",
        "loss",
        "consistency",
        "entropy",
        "lr",
        "momentum",
        "img_per_s",
    ] {
        assert!(
            first.get(key).is_some(),
            "metrics line lacks {key}: {first}"
        );
    }
    // The resolved config records the flags, under the official names' new spelling.
    let config = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(config.contains("partition_size = 16"), "{config}");
}

/// The official script's flag names are accepted as aliases.
#[test]
fn official_flag_names_are_aliases() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let output = carp()
        .args(["pretrain", "--out"])
        .arg(&out)
        .args([
            "--batch_size_per_gpu",
            "8",
            "--out_dim",
            "64",
            "--partition_size",
            "16",
        ])
        .args([
            "--local_crops_number",
            "0",
            "--global_crops_scale",
            "0.5",
            "1.0",
        ])
        .args([
            "--momentum_teacher",
            "0.95",
            "--base-width",
            "4",
            "--global-size",
            "16",
        ])
        .args(["--max-steps", "1", "--no-eval"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let config = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(config.contains("momentum_teacher = 0.95"), "{config}");
    assert!(config.contains("local_views = 0"), "{config}");
}

/// Bad input gets a clear error naming the flag or path, exit code 2, and no work.
#[test]
fn bad_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 3] = [
        (&["--arch", "vgg11"], "model.arch"),
        (
            &["--partition-size", "5000", "--out-dim", "64"],
            "model.partition_size",
        ),
        (&["--data", "/definitely/not/here"], "/definitely/not/here"),
    ];
    for (args, needle) in cases {
        let out = dir.path().join("run");
        let output = carp()
            .args(["pretrain", "--out"])
            .arg(&out)
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!out.join("checkpoint.safetensors").exists());
    }
}

/// More bad configurations (issue 6): each names its key and exits 2 before any step.
#[test]
fn issue_6_bad_configuration_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let unwritable = file.join("run").display().to_string();
    let cases: [(Vec<&str>, &str); 4] = [
        (vec!["--global-size", "64"], "views.global_size"),
        (vec!["--local-size", "20"], "views.local_size"),
        (vec!["--partition-size", "1"], "model.partition_size"),
        (vec!["--out", &unwritable], "run.out"),
    ];
    for (args, needle) in cases {
        let out = dir.path().join("run");
        let mut cmd = carp();
        cmd.arg("pretrain");
        if !args.contains(&"--out") {
            cmd.arg("--out").arg(&out);
        }
        let output = cmd.args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(
            !out.join("metrics.jsonl").exists(),
            "{args:?}: work started"
        );
    }
}

/// `--log-format json` prints one JSON event per line on stdout (start, logged steps, epoch
/// summaries, checkpoints), and `carp report` turns the run into PNGs and Markdown.
#[test]
fn issue_6_json_progress_and_report() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let output = carp()
        .args(["pretrain", "--log-format", "json", "--no-eval", "--out"])
        .arg(&out)
        .args(small())
        .args(["--max-steps", "4"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events[0]["event"], "start");
    let steps: Vec<_> = events.iter().filter(|e| e["event"] == "step").collect();
    assert_eq!(steps.len(), 4);
    assert!(steps[3]["record"]["agreement_top5"].as_f64().is_some());
    assert!(events.iter().any(|e| e["event"] == "epoch"));
    let report = carp().arg("report").arg(&out).output().unwrap();
    assert!(report.status.success());
    for name in ["loss.png", "health.png", "schedule.png", "report.md"] {
        assert!(out.join("report").join(name).exists(), "{name}");
    }
}

/// SIGTERM finishes the current step, writes a checkpoint mid-epoch and exits 0; running
/// the same command again resumes from it.
#[cfg(unix)]
#[test]
fn issue_6_sigterm_checkpoints_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    // 4096 synthetic images / batch 8 = 512 steps per epoch: SIGTERM lands mid-epoch.
    let child = carp()
        .args(["pretrain", "--no-eval", "--out"])
        .arg(&out)
        .args(small())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let metrics = out.join("metrics.jsonl");
    let t0 = std::time::Instant::now();
    while std::fs::read_to_string(&metrics).map_or(0, |m| m.lines().count()) < 3 {
        assert!(t0.elapsed().as_secs() < 120, "no progress");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("interrupted at step"), "{stdout}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["interrupted"], true);
    let steps = summary["steps"].as_u64().unwrap();
    assert!((3..512).contains(&steps), "{steps}");
    assert!(out.join("checkpoint.safetensors").exists());
    // Resume for two more steps.
    let output = carp()
        .args(["pretrain", "--no-eval", "--out"])
        .arg(&out)
        .args(small())
        .args(["--max-steps", &(steps + 2).to_string()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("resumed"), "{stderr}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["steps_this_run"], 2);
}

/// `carp devices` lists every backend with whether this build has it; cpu always.
#[test]
fn devices_lists_the_backends() {
    let out = carp().args(["devices", "--json"]).output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["backend"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["flex", "ndarray", "wgpu", "vulkan", "cuda"]);
    assert_eq!(v[0]["compiled"], true);
    assert_eq!(
        v[2]["compiled"],
        cfg!(feature = "wgpu") || cfg!(feature = "vulkan")
    );
}

/// A GPU device in a build without its feature, or a misspelt one, is refused before any work
/// (exit status 2) with the feature or the accepted names.
#[test]
fn device_errors_name_the_fix() {
    let missing = if cfg!(feature = "wgpu") || cfg!(feature = "vulkan") {
        None
    } else {
        Some(("wgpu:cpu", "needs carp built with `--features wgpu`"))
    };
    for (device, needle) in missing.into_iter().chain([
        ("gpu", "unknown device `gpu`"),
        ("cpu:1", "not an adapter index"),
    ]) {
        let dir = tempfile::tempdir().unwrap();
        let out = carp()
            .args(["pretrain", "--device", device, "--out"])
            .arg(dir.path().join("run"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{device}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{device}: {err}");
    }
}
