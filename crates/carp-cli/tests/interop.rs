//! `carp inspect` and `carp convert` on carp-io's PyTorch fixtures (tools/make_pth_fixtures.py).

use std::path::PathBuf;
use std::process::Command;

fn carp() -> Command {
    Command::new(env!("CARGO_BIN_EXE_carp"))
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../carp-io/tests/fixtures/pth")
        .join(name)
}

#[test]
fn inspect_lists_tensors_metadata_and_layout() {
    let out = carp()
        .arg("inspect")
        .arg(fixture("carp_zip.pth"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("Zip container, 287 tensors"), "{stdout}");
    assert!(
        stdout.contains("  teacher.module.backbone.conv1.weight  F32  [4, 3, 3, 3]"),
        "{stdout}"
    );
    assert!(stdout.contains("  args.arch = resnet18"), "{stdout}");
    assert!(stdout.contains("  epoch = 200"), "{stdout}");
    assert!(stdout.contains("layout: carp"), "{stdout}");
    assert!(
        stdout.contains("Resnet18, base width 4, small stem"),
        "{stdout}"
    );
}

#[test]
fn convert_writes_torchvision_and_carp_names_and_rejects_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let tv = dir.path().join("tv.safetensors");
    let status = carp()
        .arg("convert")
        .arg(fixture("carp_legacy.pth"))
        .args(["--out", tv.to_str().unwrap(), "--with-head"])
        .status()
        .unwrap();
    assert!(status.success());
    let native = dir.path().join("native.safetensors");
    let status = carp()
        .arg("convert")
        .arg(&tv)
        .args([
            "--out",
            native.to_str().unwrap(),
            "--to",
            "carp",
            "--with-head",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let out = carp().arg("inspect").arg(&native).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Safetensors container"), "{stdout}");
    assert!(
        stdout.contains("  backbone.bn1.gamma  F32  [4]"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  head.mlp.0.weight  F32  [32, 16]"),
        "{stdout}"
    );

    // Hostile input: exit code 2, the global and the file named.
    let out = carp()
        .arg("convert")
        .arg(fixture("evil_reduce.pth"))
        .args(["--out", dir.path().join("x.safetensors").to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("evil_reduce.pth") && stderr.contains("os.system"),
        "{stderr}"
    );
    // A layout without a head cannot give one.
    let out = carp()
        .arg("convert")
        .arg(fixture("vicreg.pth"))
        .args([
            "--with-head",
            "--out",
            dir.path().join("y.safetensors").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no CARP head"), "{stderr}");
    let out = carp()
        .arg("convert")
        .arg(fixture("vicreg.pth"))
        .args(["--format", "simclr", "--out", "z.safetensors"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("simclr"),
        "{stderr}"
    );
}
