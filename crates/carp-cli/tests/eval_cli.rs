//! `carp embed` and `carp eval` through the real binary, on generated images and a narrow
//! random-init backbone (fast).

use std::path::Path;
use std::process::Command;

fn carp() -> Command {
    Command::new(env!("CARGO_BIN_EXE_carp"))
}

/// A two-class image folder of 20 PNG images (16x16): `n` per class.
fn image_folder(root: &Path, n: u32, shift: u32) {
    for (class, colour) in [("circles", [200u8, 30, 30]), ("squares", [30, 30, 200])] {
        let dir = root.join(class);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..n {
            let j = i + shift;
            let img = image::RgbImage::from_fn(16, 16, |x, y| {
                let on = (x + j) % 5 < 3 && (y + 2 * j) % 7 < 4;
                image::Rgb(if on { colour } else { [(j * 20) as u8, 90, 60] })
            });
            img.save(dir.join(format!("{i:03}.png"))).unwrap();
        }
    }
}

const RANDOM: [&str; 6] = [
    "--random-init",
    "--arch",
    "resnet18",
    "--small-stem",
    "--base-width",
    "4",
];

fn run_ok(args: &[&str]) -> String {
    let out = carp().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "carp {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn embed_then_all_three_protocols() {
    let tmp = tempfile::tempdir().unwrap();
    let (train, test, emb) = (
        tmp.path().join("train"),
        tmp.path().join("test"),
        tmp.path().join("emb"),
    );
    image_folder(&train, 10, 0);
    image_folder(&test, 4, 3);
    let (train_s, test_s, emb_s) = (
        train.to_str().unwrap(),
        test.to_str().unwrap(),
        emb.to_str().unwrap(),
    );
    let mut args = vec![
        "embed", "--train", train_s, "--test", test_s, "--out", emb_s, "--quiet",
    ];
    args.extend(RANDOM);
    let stdout = run_ok(&args);
    for f in [
        "train_features.npy",
        "train_labels.npy",
        "train_paths.npy",
        "train.safetensors",
        "test.safetensors",
    ] {
        assert!(emb.join(f).exists(), "{f} missing; stdout {stdout}");
    }

    run_ok(&["eval", "knn", "--features", emb_s, "--k", "1,5,20"]);
    let knn = json(&emb.join("eval/knn.json"));
    assert_eq!(knn["train_rows"], 20);
    assert_eq!(knn["test_rows"], 8);
    let res = knn["results"]["knn"].as_array().unwrap();
    assert_eq!(res.len(), 3);
    assert_eq!(res[2]["k"], 20);
    assert!(res[0]["top1"].as_f64().unwrap() <= 100.0);
    assert!(std::fs::read_to_string(emb.join("eval/knn.md"))
        .unwrap()
        .contains("| 20 |"));

    run_ok(&["eval", "kmeans", "--features", emb_s, "--restarts", "2"]);
    let km = json(&emb.join("eval/kmeans.json"));
    assert_eq!(
        km["results"]["kmeans"]["k"], 2,
        "k defaults to the number of classes"
    );
    let nmi = km["results"]["kmeans"]["test"]["nmi"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&nmi));

    run_ok(&[
        "eval",
        "linear",
        "--features",
        emb_s,
        "--epochs",
        "3",
        "--optimizer",
        "sgd",
    ]);
    let lin = json(&emb.join("eval/linear.json"));
    assert_eq!(
        lin["results"]["linear"]["epochs"].as_array().unwrap().len(),
        3
    );

    // k beyond the 20 train rows: a clear error, exit code 2.
    let out = carp()
        .args(["eval", "knn", "--features", emb_s, "--k", "50"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("k = 50 exceeds the 20 train rows"), "{err}");
}

#[test]
fn eval_from_images_and_flag_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    image_folder(&data, 3, 0);
    let (d, out) = (data.to_str().unwrap(), tmp.path().join("run"));
    let mut args = vec![
        "eval", "knn", "--train", d, "--test", d, "--k", "1", "--quiet",
    ];
    args.extend(["--out", out.to_str().unwrap()]);
    args.extend(RANDOM);
    run_ok(&args);
    let knn = json(&out.join("eval/knn-random-init.json"));
    assert_eq!(
        (knn["train_rows"].clone(), knn["test_rows"].clone()),
        (6.into(), 6.into())
    );
    assert!(knn["backbone"]
        .as_str()
        .unwrap()
        .starts_with("random init resnet18"));

    // The faithful linear probe: train features from augmented images every epoch.
    let mut args = vec![
        "eval",
        "linear",
        "--augment",
        "--train",
        d,
        "--test",
        d,
        "--crop",
        "16",
    ];
    args.extend(["--epochs", "2", "--quiet", "--out", out.to_str().unwrap()]);
    args.extend(RANDOM);
    run_ok(&args);
    let lin = json(&out.join("eval/linear-random-init.json"));
    assert!(lin["transform"]
        .as_str()
        .unwrap()
        .contains("RandomResizedCrop 16"));
    assert_eq!(lin["train_rows"], 6);
    assert_eq!(
        lin["results"]["linear"]["epochs"].as_array().unwrap().len(),
        2
    );

    let err = |args: &[&str]| {
        let out = carp().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = err(&[
        "eval",
        "knn",
        "--checkpoint",
        "x.pth",
        "--format",
        "pytorch",
        "--train",
        d,
        "--test",
        d,
    ]);
    assert!(
        e.contains("--format") && e.contains("unknown checkpoint format `pytorch`"),
        "{e}"
    );
    let e = err(&["eval", "knn", "--train", d, "--test", d]);
    assert!(
        e.contains("--checkpoint") && e.contains("--random-init"),
        "{e}"
    );
    let e = err(&["eval", "linear", "--augment", "--features", d]);
    assert!(
        e.contains("--augment recomputes features from images"),
        "{e}"
    );
    let e = err(&["embed", "--random-init", "--train", d]);
    assert!(e.contains("needs --arch"), "{e}");
    let e = err(&[
        "eval",
        "kmeans",
        "--features",
        tmp.path().join("nope").to_str().unwrap(),
    ]);
    assert!(e.contains("train.safetensors"), "{e}");
}

/// A PyTorch checkpoint in the CARP release's layout (carp-io's fixture: ResNet-18 at width
/// 4, `module.backbone.` keys, `args` Namespace, optimiser state) goes through `--format`:
/// detected, named, or refused with the entries it lacks.
#[test]
fn eval_takes_pytorch_checkpoints() {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../carp-io/tests/fixtures/pth/carp_zip.pth");
    let fixture = fixture.to_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    image_folder(&data, 3, 0);
    let (d, out) = (data.to_str().unwrap(), tmp.path().join("run"));
    for format in [None, Some("carp"), Some("dino")] {
        let mut args = vec!["eval", "knn", "--checkpoint", fixture, "--train", d];
        args.extend([
            "--test",
            d,
            "--k",
            "1",
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ]);
        if let Some(f) = format {
            args.extend(["--format", f]);
        }
        run_ok(&args);
        let report = std::fs::read_dir(out.join("eval"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == "json"))
            .unwrap();
        let knn = json(&report);
        assert_eq!(knn["train_rows"], 6);
        let backbone = knn["backbone"].as_str().unwrap();
        assert!(
            backbone.contains("carp_zip.pth") && backbone.contains("teacher"),
            "{backbone}"
        );
        std::fs::remove_dir_all(out.join("eval")).unwrap();
    }
    let out = carp()
        .args(["eval", "knn", "--checkpoint", fixture, "--format", "vicreg"])
        .args(["--train", d, "--test", d])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("carp_zip.pth") && err.contains("layout gives no ResNet backbone"),
        "{err}"
    );
}
