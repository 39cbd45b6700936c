//! Weighted k-NN against golden values from a straightforward NumPy implementation.
//!
//! Fixture: `tests/fixtures/knn_golden.json`, written by `tools/golden_knn.py` (seeded; its header
//! records the seed and the NumPy version). The fixture includes duplicated train rows with
//! different labels, a zero train row, a zero test row and a class absent from the train labels;
//! the script checks that flipping the tie rules changes its counts.

use carp_eval::{weighted_knn, Features, KnnConfig};
use serde::Deserialize;

#[derive(Deserialize)]
struct Matrix {
    rows: usize,
    dim: usize,
    /// Values in thousandths; the feature is `milli as f32 / 1000.0`.
    milli: Vec<i32>,
}

#[derive(Deserialize)]
struct Expected {
    k: usize,
    top1_hits: u64,
    top5_hits: u64,
    top1: f64,
    top5: f64,
}

#[derive(Deserialize)]
struct Fixture {
    num_classes: usize,
    temperature: f32,
    ks: Vec<usize>,
    train: Matrix,
    train_labels: Vec<usize>,
    test: Matrix,
    test_labels: Vec<usize>,
    expected: Vec<Expected>,
}

fn features(m: &Matrix) -> Features {
    let data = m.milli.iter().map(|&v| v as f32 / 1000.0).collect();
    Features::new(data, m.rows, m.dim).expect("fixture shape")
}

fn load() -> Fixture {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/knn_golden.json"
    );
    let text = std::fs::read_to_string(path).expect("read knn_golden.json");
    serde_json::from_str(&text).expect("parse knn_golden.json")
}

#[test]
fn weighted_knn_matches_numpy_golden() {
    let fx = load();
    let train = features(&fx.train);
    let test = features(&fx.test);
    let n_test = fx.test.rows as f64;
    for chunk_rows in [1, 4, 1024] {
        let cfg = KnnConfig {
            ks: fx.ks.clone(),
            temperature: fx.temperature,
            chunk_rows,
        };
        let got = weighted_knn(
            &train,
            &fx.train_labels,
            &test,
            &fx.test_labels,
            fx.num_classes,
            &cfg,
        )
        .expect("weighted_knn");
        assert_eq!(got.len(), fx.expected.len());
        for (g, e) in got.iter().zip(&fx.expected) {
            assert_eq!(g.k, e.k);
            // Percentages of counts: equal up to 1e-9, and consistent with the hit counts.
            assert!(
                (g.top1 - e.top1).abs() < 1e-9,
                "k={} top1 {} vs {}",
                e.k,
                g.top1,
                e.top1
            );
            assert!(
                (g.top5 - e.top5).abs() < 1e-9,
                "k={} top5 {} vs {}",
                e.k,
                g.top5,
                e.top5
            );
            assert_eq!((g.top1 * n_test / 100.0).round() as u64, e.top1_hits);
            assert_eq!((g.top5 * n_test / 100.0).round() as u64, e.top5_hits);
        }
    }
}

#[test]
fn knn_result_serializes_with_field_names() {
    let fx = load();
    let cfg = KnnConfig {
        ks: vec![fx.ks[0]],
        ..KnnConfig::default()
    };
    let got = weighted_knn(
        &features(&fx.train),
        &fx.train_labels,
        &features(&fx.test),
        &fx.test_labels,
        fx.num_classes,
        &cfg,
    )
    .unwrap();
    let json = serde_json::to_value(got[0]).unwrap();
    assert_eq!(json["k"], fx.ks[0]);
    assert_eq!(json["top1"], fx.expected[0].top1);
    assert_eq!(json["top5"], fx.expected[0].top5);
}
