//! `carp eval fewshot|retrieval|copydays|suite` end to end on miniature layouts generated here
//! (VOC07 class files, a revisited Oxford folder with its gnd pickle, Copydays blocks with
//! whitening images, a DTD split), with a random-init narrow backbone.

use carp_data::revisitop::{write_gnd_pickle, Revisited, RevisitedQuery};
use carp_data::VOC_CLASSES;
use std::path::Path;
use std::process::Command;

fn img(path: &Path, seed: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_fn(16, 12, |x, y| {
        let v = (x * (seed % 7 + 1) + y * (seed % 5 + 2) + seed * 37) % 256;
        image::Rgb([v as u8, (255 - v) as u8, ((seed * 53) % 256) as u8])
    })
    .save_with_format(path, image::ImageFormat::Png)
    .unwrap();
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn layout(root: &Path) {
    // VOC07: 8 trainval and 6 test images; image i holds class i % 20 (and class 14, person,
    // every third image), one difficult label.
    for (set, n, first) in [("trainval", 8u32, 0u32), ("test", 6, 100)] {
        for (c, class) in VOC_CLASSES.iter().enumerate() {
            let mut text = String::new();
            for i in 0..n {
                let id = format!("{:06}", first + i);
                let label =
                    if (i as usize + c).is_multiple_of(3) || (c == 14 && i.is_multiple_of(3)) {
                        " 1"
                    } else if c == 5 && i == 1 {
                        " 0"
                    } else {
                        "-1"
                    };
                text += &format!("{id} {label}\n");
            }
            write(
                &root.join(format!(
                    "VOCdevkit/VOC2007/ImageSets/Main/{class}_{set}.txt"
                )),
                &text,
            );
        }
        for i in 0..n {
            img(
                &root.join(format!("VOCdevkit/VOC2007/JPEGImages/{:06}.jpg", first + i)),
                first + i,
            );
        }
    }
    // Revisited Oxford: 6 database images, 2 queries.
    let dir = root.join("roxford5k");
    let data = Revisited {
        name: "roxford5k".into(),
        dir: dir.clone(),
        images: (0..6).map(|i| format!("db_{i}")).collect(),
        queries: vec![
            RevisitedQuery {
                name: "q_0".into(),
                bbx: Some([1.0, 1.0, 13.5, 10.0]),
                easy: vec![0],
                hard: vec![3],
                junk: vec![5],
            },
            RevisitedQuery {
                name: "q_1".into(),
                bbx: None,
                easy: vec![],
                hard: vec![],
                junk: vec![1],
            },
        ],
    };
    write_gnd_pickle(&data).unwrap();
    for i in 0..6 {
        img(&dir.join(format!("jpg/db_{i}.jpg")), 200 + i);
    }
    img(&dir.join("jpg/q_0.jpg"), 200);
    img(&dir.join("jpg/q_1.jpg"), 204);
    // Copydays: 3 originals, 4 strong, one jpegqual block; whitening images beside it.
    for (i, name) in ["200000", "200100", "200200"].iter().enumerate() {
        img(
            &root.join(format!("copydays/original/{name}.jpg")),
            300 + i as u32,
        );
        img(
            &root.join(format!("copydays/jpegqual/50/{name}.jpg")),
            300 + i as u32,
        );
    }
    for (i, name) in ["200001", "200002", "200101", "200201"].iter().enumerate() {
        img(
            &root.join(format!("copydays/strong/{name}.jpg")),
            300 + (i as u32).min(2),
        );
    }
    for i in 0..12 {
        img(&root.join(format!("copydays-whitening/w{i}.jpg")), 400 + i);
    }
    // DTD with 2 classes.
    write(
        &root.join("dtd/dtd/labels/train1.txt"),
        "banded/a.jpg\nbanded/b.jpg\nzigzagged/c.jpg\nzigzagged/d.jpg\n",
    );
    write(
        &root.join("dtd/dtd/labels/test1.txt"),
        "banded/e.jpg\nzigzagged/f.jpg\n",
    );
    for (i, f) in [
        "banded/a",
        "banded/b",
        "zigzagged/c",
        "zigzagged/d",
        "banded/e",
        "zigzagged/f",
    ]
    .iter()
    .enumerate()
    {
        img(
            &root.join(format!("dtd/dtd/images/{f}.jpg")),
            500 + (i as u32 % 2) * 50 + i as u32,
        );
    }
}

fn carp(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_carp"))
        .args(["-q", "eval"])
        .args(args)
        .args([
            "--random-init",
            "--arch",
            "resnet18",
            "--small-stem",
            "--base-width",
            "4",
            "--threads",
            "2",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{args:?}: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn suite_and_protocols_on_miniature_layouts() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    layout(&root);
    let out = dir.path().join("out");
    let o = out.to_str().unwrap();
    let r = root.to_str().unwrap();

    let text = carp(&[
        "suite",
        "--data-root",
        r,
        "--out",
        o,
        "--linear-epochs",
        "2",
        "--kmeans-restarts",
        "1",
        "--runs",
        "2",
        "--imsize",
        "16",
        "--copydays-imsize",
        "24",
    ]);
    assert!(
        text.contains("| retrieval | roxford5k | mAP medium |"),
        "{text}"
    );
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("eval/suite.json")).unwrap())
            .unwrap();
    let rows = doc["results"]["report"]["rows"].as_array().unwrap();
    let has = |p: &str, d: &str| rows.iter().any(|x| x["protocol"] == p && x["dataset"] == d);
    for (p, d) in [
        ("knn", "dtd"),
        ("kmeans", "dtd"),
        ("linear", "dtd"),
        ("fewshot", "voc07"),
        ("retrieval", "roxford5k"),
        ("copydays", "copydays"),
    ] {
        assert!(has(p, d), "no {p} row for {d}: {rows:?}");
    }
    // Few-shot: the full run and k = 1, 2, 4, 8, 16.
    assert_eq!(
        rows.iter().filter(|x| x["protocol"] == "fewshot").count(),
        6
    );
    let skipped = doc["results"]["report"]["skipped"].as_array().unwrap();
    assert!(
        skipped.iter().any(|s| s["dataset"] == "rparis6k"),
        "{skipped:?}"
    );
    assert!(skipped.iter().any(
        |s| s["dataset"] == "flowers102" && s["reason"].as_str().unwrap().contains("not found")
    ));
    // Copydays: the original block finds itself.
    let orig = rows.iter().find(|x| x["metric"] == "mAP original").unwrap();
    assert_eq!(orig["value"].as_f64().unwrap(), 100.0);
    assert!(out.join("eval/suite.md").exists());

    // The single protocols write their own reports.
    let text = carp(&[
        "retrieval",
        "--data",
        r,
        "--dataset",
        "roxford5k",
        "--imsize",
        "16",
        "--multiscale",
        "--out",
        o,
    ]);
    assert!(text.contains("| roxford5k | hard |"), "{text}");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("eval/retrieval.json")).unwrap())
            .unwrap();
    let medium = &doc["results"]["datasets"]["roxford5k"]["medium"];
    assert_eq!(medium["empty_queries"], 1);
    let text = carp(&[
        "copydays",
        "--data",
        root.join("copydays").to_str().unwrap(),
        "--whitening-data",
        root.join("copydays-whitening").to_str().unwrap(),
        "--imsize",
        "24",
        "--out",
        o,
    ]);
    assert!(
        text.contains("| strong | 4 |") && text.contains("whitening learned"),
        "{text}"
    );
    let text = carp(&["fewshot", "--data", r, "--cost", "0.5,1", "--out", o]);
    assert!(
        text.contains("| full | 0.5 |") && text.contains("| full | 1 |"),
        "{text}"
    );
}

#[test]
fn help_texts_describe_the_new_commands() {
    for (cmd, needle) in [
        ("fewshot", "--low-shot"),
        ("retrieval", "--no-query-crop"),
        ("copydays", "--whitening-data"),
        ("suite", "--data-root"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_carp"))
            .args(["eval", cmd, "--help"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains(needle),
            "{cmd}: {text}"
        );
    }
}
