//! `carp pretrain --data KIND:PATH` on generated files in the real formats, and
//! `--skip-bad-images`.

use std::path::Path;
use std::process::{Command, Output};

fn carp() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_carp"));
    // Plain log lines, so the test can look for `key=value`.
    c.env("NO_COLOR", "1");
    c
}

/// Flags for a two-step run of a tiny model.
const TINY: [&str; 23] = [
    "--base-width",
    "4",
    "--out-dim",
    "32",
    "--partition-size",
    "16",
    "--global-size",
    "16",
    "--local-size",
    "8",
    "--local-views",
    "1",
    "--batch-size",
    "4",
    "--max-steps",
    "2",
    "--log-every",
    "1",
    "--threads",
    "2",
    "--seed",
    "1",
    "--no-eval",
];

fn pretrain(data: &str, out: &Path, extra: &[&str]) -> Output {
    carp()
        .args(["pretrain", "--data", data, "--out"])
        .arg(out)
        .args(TINY)
        .args(extra)
        .output()
        .unwrap()
}

/// CIFAR-10 binary record k: label k % 10, pixels a function of k.
fn cifar_record(k: usize) -> Vec<u8> {
    let mut r = vec![(k % 10) as u8];
    r.extend((0..3072).map(|i| (i * 7 + k * 13) as u8));
    r
}

#[test]
fn pretrain_reads_cifar10_binary_and_stl10() {
    let dir = tempfile::tempdir().unwrap();
    let cifar = dir.path().join("cifar-10-batches-bin");
    std::fs::create_dir(&cifar).unwrap();
    for b in 1..=5 {
        let bytes: Vec<u8> = (0..4).flat_map(|k| cifar_record(4 * b + k)).collect();
        std::fs::write(cifar.join(format!("data_batch_{b}.bin")), bytes).unwrap();
    }
    let out = dir.path().join("run-cifar");
    let spec = format!("cifar10:{}", dir.path().display());
    let output = pretrain(&spec, &out, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("CIFAR-10 Train"), "{stderr}");
    assert!(stderr.contains("20 images"), "{stderr}");
    assert!(out.join("checkpoint.safetensors").exists());

    // STL-10: 4 labelled + 4 unlabelled images of 96x96.
    let stl = dir.path().join("stl10_binary");
    std::fs::create_dir(&stl).unwrap();
    let images = |n: usize| -> Vec<u8> { (0..n * 27648).map(|i| (i % 251) as u8).collect() };
    std::fs::write(stl.join("train_X.bin"), images(4)).unwrap();
    std::fs::write(stl.join("train_y.bin"), [1u8, 2, 3, 10]).unwrap();
    std::fs::write(stl.join("unlabeled_X.bin"), images(4)).unwrap();
    let out = dir.path().join("run-stl");
    let output = pretrain(&format!("stl10:{}", dir.path().display()), &out, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("STL-10 TrainUnlabeled"), "{stderr}");
    assert!(stderr.contains("8 images"), "{stderr}");

    // An unknown kind names the key and lists the supported ones.
    let output = pretrain("cifar11:/x", &dir.path().join("run-bad"), &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("data.train") && stderr.contains("cifar100"),
        "{stderr}"
    );
}

#[test]
fn skip_bad_images_flag_counts_instead_of_failing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for class in ["a", "b"] {
        std::fs::create_dir_all(data.join(class)).unwrap();
        // 4 + 3 good images and one broken: two batches of 4 read every file.
        let n = if class == "a" { 4 } else { 3 };
        for i in 0..n {
            image::RgbImage::from_fn(20, 20, |x, y| image::Rgb([(x * 9 + i) as u8, y as u8, 7]))
                .save(data.join(format!("{class}/{i}.png")))
                .unwrap();
        }
    }
    let broken = data.join("b/broken.png");
    std::fs::write(&broken, "not a png").unwrap();
    let spec = data.display().to_string();
    let strict = pretrain(&spec, &dir.path().join("strict"), &[]);
    let stderr = String::from_utf8_lossy(&strict.stderr);
    assert_eq!(strict.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("broken.png"), "{stderr}");

    let lenient = pretrain(&spec, &dir.path().join("lenient"), &["--skip-bad-images"]);
    let stderr = String::from_utf8_lossy(&lenient.stderr);
    assert!(lenient.status.success(), "{stderr}");
    assert!(stderr.contains("skipping bad image"), "{stderr}");
    assert!(stderr.contains("skipped_bad_images=1"), "{stderr}");
    let config = std::fs::read_to_string(dir.path().join("lenient/config.toml")).unwrap();
    assert!(config.contains("skip_bad_images = true"), "{config}");
}
