//! PyTorch checkpoints written by `tools/make_pth_fixtures.py` (torch 2.14.1, torchvision
//! 0.29.2): carp must read each layout, load it into its own ResNet and reproduce the
//! eval-mode features PyTorch computed; hostile and broken files must fail clearly.

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use carp_io::export::{self, Names};
use carp_io::keymap::{self, Format, Imported};
use carp_io::{CheckpointError, ImportError};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pth")
        .join(name)
}

fn expected() -> serde_json::Value {
    let text = std::fs::read_to_string(fixture("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// The script's inputs: sin(0.37 i + 0.1) * 1.5 + 0.25 cos(0.011 i) in f64, then f32.
fn inputs(device: &Device) -> Tensor<4> {
    let vals: Vec<f32> = (0..3 * 3 * 32 * 32)
        .map(|i| {
            let i = i as f64;
            ((0.37 * i + 0.1).sin() * 1.5 + 0.25 * (0.011 * i).cos()) as f32
        })
        .collect();
    Tensor::from_data(TensorData::new(vals, [3, 3, 32, 32]), device)
}

/// ||a - b|| / ||b|| in f64.
fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let num: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den).sqrt()
}

/// Loads the backbone, checks the inferred architecture and the load report, and returns
/// the eval-mode features carp computes for the fixed inputs.
fn features(imported: &Imported, case: &serde_json::Value) -> Vec<f32> {
    let device = Device::flex();
    let (net, cfg, report) = keymap::build_backbone(imported, &device).unwrap();
    assert!(report.is_exact(), "{report}");
    assert_eq!(
        format!("{:?}", cfg.arch).to_lowercase(),
        case["arch"].as_str().unwrap()
    );
    assert_eq!(cfg.base_width as u64, case["base_width"].as_u64().unwrap());
    assert_eq!(cfg.small_stem, case["small_stem"].as_bool().unwrap());
    net.valid()
        .forward(inputs(&device))
        .into_data()
        .try_to_vec::<f32>()
        .unwrap()
}

/// Float rounding over a few dozen layers (measured: 1e-7); a mis-mapped tensor gives
/// errors of order 1.
const TOL: f64 = 1e-6;

#[test]
fn carp_release_zip_reproduces_pytorch_features_and_head() {
    let exp = expected();
    let imported = keymap::import_backbone(&fixture("carp_zip.pth"), None, None).unwrap();
    assert_eq!(imported.format, Format::Carp);
    assert_eq!(imported.report.top, "teacher");
    assert_eq!(imported.metadata["epoch"], "200");
    assert_eq!(imported.metadata["args"], "<argparse.Namespace>");
    assert_eq!(imported.metadata["args.arch"], "resnet18");
    assert_eq!(imported.metadata["args.lr"], "0.3");
    assert_eq!(imported.metadata["fp16_scaler.scale"], "65536");
    let feats = features(&imported, &exp["carp"]);
    let err = rel_err(&feats, &floats(&exp["carp"]["features"]));
    eprintln!("carp zip teacher features: relative error {err:.2e}");
    assert!(err < TOL, "relative error {err}");

    // The head: MLP + weight-normalised prototypes, on PyTorch's own features.
    let head = imported
        .head
        .as_ref()
        .expect("CARP checkpoints carry a head");
    let cfg = keymap::infer_head(head).unwrap();
    assert_eq!(
        (
            cfg.in_dim,
            cfg.hidden_dim,
            cfg.bottleneck_dim,
            cfg.out_dim,
            cfg.nlayers,
            cfg.use_bn
        ),
        (32, 16, 8, 20, 3, true)
    );
    let device = Device::flex();
    let (head, report) = imported.apply_head(cfg.init(&device, 9)).unwrap();
    assert!(report.is_exact(), "{report}");
    let x = Tensor::<2>::from_data(
        TensorData::new(floats(&exp["carp"]["features"]), [3, 32]),
        &device,
    );
    let logits = head
        .valid()
        .forward(x)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let err = rel_err(&logits, &floats(&exp["carp"]["head_logits"]));
    eprintln!("carp zip teacher head logits: relative error {err:.2e}");
    assert!(err < TOL, "relative error {err}");
}

#[test]
fn carp_release_legacy_format_and_student_key() {
    let exp = expected();
    let imported = keymap::import_backbone(&fixture("carp_legacy.pth"), None, None).unwrap();
    assert_eq!(imported.format, Format::Carp);
    assert_eq!(imported.metadata["epoch"], "200");
    assert_eq!(imported.metadata["args.data_path"], "/data/imagenet");
    assert_eq!(imported.metadata["args.use_fp16"], "True");
    let err = rel_err(
        &features(&imported, &exp["carp"]),
        &floats(&exp["carp"]["features"]),
    );
    eprintln!("carp legacy teacher features: relative error {err:.2e}");
    assert!(err < TOL, "relative error {err}");

    let student = keymap::import_backbone(
        &fixture("carp_zip.pth"),
        Some(Format::Dino),
        Some("student"),
    )
    .unwrap();
    let err = rel_err(
        &features(&student, &exp["carp"]),
        &floats(&exp["carp_student"]["features"]),
    );
    eprintln!("carp zip student features: relative error {err:.2e}");
    assert!(err < TOL, "relative error {err}");
}

#[test]
fn vicreg_fp16_layout() {
    let exp = expected();
    let imported = keymap::import_backbone(&fixture("vicreg.pth"), None, None).unwrap();
    assert_eq!(imported.format, Format::Vicreg);
    assert_eq!(imported.report.kept_prefix, "backbone.");
    assert!(imported.head.is_none());
    let err = rel_err(
        &features(&imported, &exp["vicreg"]),
        &floats(&exp["vicreg"]["features"]),
    );
    eprintln!("vicreg (fp16 weights) features: relative error {err:.2e}");
    assert!(err < TOL, "relative error {err}");
}

#[test]
fn mocov3_resnet50_layout_drops_fc_and_momentum_encoder() {
    let exp = expected();
    let imported = keymap::import_backbone(&fixture("mocov3.pth.tar"), None, None).unwrap();
    assert_eq!(imported.format, Format::MocoV3);
    assert!(imported.report.dropped.iter().any(|k| k == "fc.0.weight"));
    assert!(
        imported.report.ignored > 0,
        "momentum encoder and predictor are ignored"
    );
    let err = rel_err(
        &features(&imported, &exp["mocov3"]),
        &floats(&exp["mocov3"]["features"]),
    );
    eprintln!("mocov3 resnet50 features: relative error {err:.2e}");
    assert!(err < TOL, "relative error {err}");
}

#[test]
fn wrong_format_is_a_clear_error() {
    let err =
        keymap::import_backbone(&fixture("vicreg.pth"), Some(Format::MocoV3), None).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("vicreg.pth") && msg.contains("state_dict"),
        "{msg}"
    );
    let err = keymap::import_backbone(&fixture("carp_zip.pth"), None, Some("ema")).unwrap_err();
    assert!(err.to_string().contains("`ema`"), "{err}");
}

#[test]
fn hostile_pickles_are_refused_without_running_anything() {
    let marker = Path::new("/tmp/carp-pwned-by-fixture");
    for (file, global) in [
        ("evil_reduce.pth", "os.system"),
        ("evil_zip.pth", "posix.system"),
    ] {
        let err = keymap::import_backbone(&fixture(file), None, None).unwrap_err();
        assert!(
            matches!(&err, ImportError::UnsafeGlobal { global: g, .. } if g == global),
            "{file}: {err}"
        );
        let msg = err.to_string();
        assert!(msg.contains(file) && msg.contains(global), "{msg}");
    }
    assert!(!marker.exists(), "the fixture's command ran");
}

#[test]
fn truncated_and_foreign_files_are_format_errors_naming_the_file() {
    for file in ["truncated.pth", "not_a_checkpoint.pth"] {
        let err = keymap::import_backbone(&fixture(file), None, None).unwrap_err();
        assert!(
            matches!(err, ImportError::File(CheckpointError::Format { .. })),
            "{file}: {err}"
        );
        assert!(err.to_string().contains(file), "{err}");
    }
    let err = keymap::import_backbone(&fixture("absent.pth"), None, None).unwrap_err();
    assert!(
        matches!(err, ImportError::File(CheckpointError::Io { .. })),
        "{err}"
    );
}

#[test]
fn export_round_trips_through_both_name_sets() {
    let imported = keymap::import_backbone(&fixture("carp_zip.pth"), None, None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (names, file) in [
        (Names::Torchvision, "tv.safetensors"),
        (Names::Carp, "carp.safetensors"),
    ] {
        let out = dir.path().join(file);
        export::export(&imported, &out, names, true).unwrap();
        let back = keymap::import_backbone(&out, None, None).unwrap();
        assert_eq!(back.backbone, imported.backbone, "{names:?}");
        assert_eq!(back.head, imported.head, "{names:?}");
    }
    // `--format carp` on a converted file (torchvision names) still reads it.
    let tv_path = dir.path().join("tv.safetensors");
    let back = keymap::import_backbone(&tv_path, Some(Format::Carp), None).unwrap();
    assert_eq!(back.format, Format::Torchvision);
    assert_eq!(back.backbone, imported.backbone);
    // The torchvision file holds exactly torchvision's keys minus `fc`.
    let tv = keymap::read_tensors(&dir.path().join("tv.safetensors")).unwrap();
    assert!(tv.tensors.contains_key("layer1.0.bn1.num_batches_tracked"));
    assert!(tv.tensors.contains_key("bn1.weight") && !tv.tensors.contains_key("bn1.gamma"));
    assert_eq!(tv.dtypes["bn1.num_batches_tracked"], "I64");
}

/// Every layout's key map on synthetic files: a ResNet-18 state dict wrapped the way each
/// method saves it (prefixes from the issue; not checked against the real released files),
/// plus the extras each drops. Stored as safetensors, which the importer reads like a `.pth`.
#[test]
fn every_layout_maps_to_torchvision_names() {
    use carp_core::resnet::{Arch, ResNetConfig};
    let device = Device::flex();
    let mut cfg = ResNetConfig::new(Arch::Resnet18);
    cfg.base_width = 2;
    let tv = keymap::backbone_from_carp_names(&carp_io::params::collect(&cfg.init(&device, 0), ""));
    let extra = |shape: Vec<usize>| carp_io::HostTensor {
        values: vec![0.5; shape.iter().product()],
        shape,
    };
    let cases: [(Format, &str, &[&str], bool); 11] = [
        (
            Format::Swav,
            "state_dict.module.",
            &["projection_head.0.weight", "prototypes.weight"],
            true,
        ),
        (
            Format::DeepClusterV2,
            "module.",
            &["prototypes.weight"],
            false,
        ),
        (
            Format::SelaV2,
            "state_dict.module.",
            &["projection_head.0.weight"],
            false,
        ),
        (
            Format::MocoV3,
            "state_dict.module.base_encoder.",
            &["fc.0.weight"],
            true,
        ),
        (Format::Barlow, "", &["fc.weight"], true),
        (Format::Vicreg, "model.module.backbone.", &[], true),
        (
            Format::InfoMin,
            "model.encoder.module.",
            &["fc.weight"],
            true,
        ),
        (Format::Obow, "network.", &["fc.weight"], true),
        (
            Format::PclV2,
            "state_dict.module.encoder_q.",
            &["fc.0.weight"],
            true,
        ),
        (Format::Triplet, "state_dict.module.", &["fc.weight"], false),
        (
            Format::Torchvision,
            "state_dict.",
            &["fc.weight", "fc.bias"],
            true,
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (format, prefix, extras, detectable) in cases {
        let mut tensors: std::collections::BTreeMap<_, _> = tv
            .iter()
            .map(|(k, t)| (format!("{prefix}{k}"), t.clone()))
            .collect();
        for e in extras {
            tensors.insert(format!("{prefix}{e}"), extra(vec![3, 2]));
        }
        // Optimiser state beside the weights must be ignored (root-level layouts are bare
        // state dicts and have none).
        if !matches!(format, Format::DeepClusterV2 | Format::Barlow) {
            tensors.insert("optimizer.state.0.momentum".into(), extra(vec![4]));
        }
        let path = dir.path().join(format!("{}.safetensors", format.name()));
        let ckpt = carp_io::Checkpoint {
            tensors,
            meta: serde_json::json!({}),
        };
        carp_io::write_checkpoint(&path, &ckpt).unwrap();
        let imported = keymap::import_backbone(&path, Some(format), None)
            .unwrap_or_else(|e| panic!("{format}: {e}"));
        let stray: Vec<_> = imported
            .backbone
            .keys()
            .filter(|k| !tv.contains_key(*k))
            .collect();
        assert!(imported.backbone == tv, "{format}: stray keys {stray:?}");
        for e in extras {
            assert!(
                imported.report.dropped.iter().any(|d| d == e),
                "{format}: {e}"
            );
        }
        if detectable {
            let detected = keymap::import_backbone(&path, None, None).unwrap();
            assert_eq!(
                detected.format.rule(),
                format.rule(),
                "{format} detected as {}",
                detected.format
            );
        }
    }
}

#[test]
fn an_index_reads_only_the_selected_tensors() {
    let index = carp_io::pytorch::open_pth(&fixture("carp_zip.pth")).unwrap();
    let keys = index.keys();
    assert_eq!(keys.len(), 287);
    let teacher = keys.iter().filter(|k| k.starts_with("teacher.")).count();
    let file = index.read(|k| k.starts_with("teacher.")).unwrap();
    assert_eq!(file.tensors.len(), teacher);
    assert!(teacher > 100 && file.tensors.keys().all(|k| k.starts_with("teacher.")));
    assert_eq!(file.metadata["epoch"], "200");
}
