//! The `carp` binary on the GPU code path (issue 12): `carp devices`, `carp pretrain` and
//! `carp embed` on the device `CARP_TEST_DEVICE` names (default `wgpu:cpu`, lavapipe).
//!
//! Compiled only with `--features wgpu` (`.ci/run` runs it). Fails, never skips, when the
//! device is missing.

#![cfg(feature = "wgpu")]

use std::path::Path;
use std::process::{Command, Output};

mod common;

fn carp() -> Command {
    Command::new(env!("CARGO_BIN_EXE_carp"))
}

fn device() -> String {
    std::env::var("CARP_TEST_DEVICE").unwrap_or_else(|_| "wgpu:cpu".into())
}

fn ok(output: Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// A two-class image folder of `2 n` PNG images (16x16).
fn image_folder(root: &Path, n: u32) {
    for (class, colour) in [("circles", [200u8, 30, 30]), ("squares", [30, 30, 200])] {
        let dir = root.join(class);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..n {
            let img = image::RgbImage::from_fn(16, 16, |x, y| {
                let on = (x + i) % 5 < 3 && (y + 2 * i) % 7 < 4;
                image::Rgb(if on { colour } else { [(i * 20) as u8, 90, 60] })
            });
            img.save(dir.join(format!("{i:03}.png"))).unwrap();
        }
    }
}

/// The f32 values of a `.npy` file (little-endian f32, C order; header skipped).
fn npy_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY", "{}", path.display());
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
    };
    let header = String::from_utf8_lossy(&bytes[start..start + header_len]);
    assert!(header.contains("<f4"), "{header}");
    bytes[start + header_len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// `carp devices` lists the wgpu backend as built and the software adapter as `wgpu:cpu`, in
/// the table and in JSON.
#[test]
fn devices_lists_the_software_adapter() {
    let table = ok(carp().arg("devices").output().unwrap(), "carp devices");
    assert!(table.contains("wgpu adapters:"), "{table}");
    assert!(table.contains("wgpu:cpu"), "{table}");
    let json = ok(
        carp().args(["devices", "--json"]).output().unwrap(),
        "carp devices --json",
    );
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let wgpu = v
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["backend"] == "wgpu")
        .unwrap();
    assert_eq!(wgpu["compiled"], true);
    let adapters = wgpu["adapters"].as_array().expect("adapters listed");
    assert!(
        adapters
            .iter()
            .any(|a| a["device"] == "wgpu:cpu" && a["kind"] == "cpu"),
        "{json}"
    );
}

/// `carp pretrain --device wgpu:cpu --max-steps 3` trains, checkpoints and k-NN evaluates on
/// the device; `carp embed` of that checkpoint on the device matches `--device cpu` within
/// 1e-4 (absolute, features of order 1; relative above 1).
#[test]
fn pretrain_and_embed_on_the_device() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    image_folder(&data, 8);
    let run = dir.path().join("run");
    let stdout = ok(
        carp()
            .args(["pretrain", "--data"])
            .arg(&data)
            .arg("--eval-data")
            .arg(&data)
            .arg("--out")
            .arg(&run)
            .args(["--device", &device(), "--max-steps", "3"])
            .args(common::SMALL_MODEL)
            .args(["--batch-size", "8", "--log-every", "1", "--seed", "5"])
            .output()
            .unwrap(),
        "carp pretrain on the device",
    );
    assert!(stdout.contains("k-NN top-1"), "{stdout}");
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 3);
    let checkpoint = run.join("checkpoint.safetensors");
    let mut features = Vec::new();
    for dev in [device(), "cpu".to_string()] {
        let out = dir.path().join(format!("emb-{}", dev.replace(':', "-")));
        ok(
            carp()
                .args(["embed", "--checkpoint"])
                .arg(&checkpoint)
                .arg("--train")
                .arg(&data)
                .arg("--out")
                .arg(&out)
                .args(["--device", &dev, "--quiet"])
                .output()
                .unwrap(),
            &format!("carp embed on {dev}"),
        );
        features.push(npy_f32(&out.join("train_features.npy")));
    }
    let (gpu, cpu) = (&features[0], &features[1]);
    assert_eq!(gpu.len(), cpu.len());
    assert!(!cpu.is_empty());
    let worst = gpu
        .iter()
        .zip(cpu)
        .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
        .fold(0.0f32, f32::max);
    eprintln!("embed: largest device-vs-cpu feature difference {worst:e}");
    assert!(worst <= 1e-4, "features differ by up to {worst}");
}

/// `vulkan` in a build without that feature: exit status 2 and a message naming the feature.
#[cfg(not(feature = "vulkan"))]
#[test]
fn vulkan_without_its_feature_is_a_clear_error() {
    let out = carp()
        .args([
            "embed",
            "--random-init",
            "--arch",
            "resnet18",
            "--train",
            "synthetic",
        ])
        .args(["--device", "vulkan:cpu"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--features vulkan"), "{err}");
}
