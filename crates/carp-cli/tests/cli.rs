//! The real `carp` binary on temp directories of generated images.

use std::path::Path;
use std::process::Command;

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

const SMALL: [&str; 22] = [
    "--base-width",
    "4",
    "--out-dim",
    "64",
    "--partition-size",
    "16",
    "--global-size",
    "16",
    "--local-size",
    "8",
    "--local-views",
    "2",
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
];

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
        .args(SMALL)
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
