//! The few-shot SVM, VOC AP, revisitop mAP and whitening against the values written by
//! `tools/golden_eval_protocols.py` (scikit-learn's LinearSVC, the release's
//! get_precision_recall, an independent NumPy compute_map and the release's PCA whitening).

use carp_eval::{
    compute_map, train_linear_svc, voc_average_precision, Features, QueryTruth, SvcConfig,
    Whitening,
};
use serde_json::Value;

fn fixture() -> Value {
    let text = include_str!("fixtures/protocols_golden.json");
    serde_json::from_str(text).expect("valid fixture")
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().unwrap_or(f64::NAN))
        .collect()
}

fn features(v: &Value, dim: usize) -> Features {
    let data: Vec<f32> = f64s(v).into_iter().map(|x| x as f32).collect();
    let rows = data.len() / dim;
    Features::new(data, rows, dim).unwrap()
}

/// Decision values vs LinearSVC. Exact optimum (tol 1e-10 on both sides): within 1e-6, the
/// stopping gap's effect. Release settings (tol 1e-4): both solvers stop at a projected-gradient
/// spread of 1e-4 from different sweep orders; the dual is strongly convex with modulus
/// min_i 1/(2 C_i) >= 1/(2·2·4) = 1/16, so each α is within about 16·1e-4 of the optimum and a
/// decision value (|x·x'| + 1 <= 2) within a few 1e-3 summed over the support vectors; 1e-2 is
/// that bound. The ranking of the test rows, hence the AP, must be identical in both cases.
#[test]
fn svm_matches_scikit_learn_linear_svc() {
    let fx = fixture();
    let svm = &fx["svm"];
    let dim = svm["dim"].as_u64().unwrap() as usize;
    let train = features(&svm["train"], dim);
    let test = features(&svm["test"], dim);
    let ytr: Vec<bool> = f64s(&svm["train_labels"])
        .iter()
        .map(|&y| y > 0.0)
        .collect();
    let yte = f64s(&svm["test_labels"]);
    for (name, tol) in [
        ("exact_c0.5", 1e-6),
        ("exact_c4.0", 1e-6),
        ("release_c0.5", 1e-2),
        ("release_c4.0", 1e-2),
    ] {
        let case = &svm[name];
        let cfg = SvcConfig {
            cost: case["cost"].as_f64().unwrap(),
            tolerance: case["tol"].as_f64().unwrap(),
            max_iter: case["max_iter"].as_u64().unwrap() as usize,
            ..SvcConfig::default()
        };
        let model = train_linear_svc(&train, &ytr, &cfg).unwrap();
        assert!(model.converged, "{name}: {} sweeps", model.iterations);
        let got = model.decision_function(&test);
        let want = f64s(&case["decision"]);
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(worst < tol, "{name}: max |decision - sklearn| = {worst:e}");
        // Same ranking of the test rows, hence the same AP (to serde_json's float parsing,
        // which may be 1 ulp off without its float_roundtrip feature).
        let order = |v: &[f64]| {
            let mut o: Vec<usize> = (0..v.len()).collect();
            o.sort_by(|&a, &b| v[b].total_cmp(&v[a]));
            o
        };
        assert_eq!(order(&got), order(&want), "{name}: ranking");
        let ap = voc_average_precision(&yte, &got);
        let want_ap = case["ap"].as_f64().unwrap();
        assert!((ap - want_ap).abs() < 1e-15, "{name}: AP {ap} vs {want_ap}");
        let icpt = case["intercept"].as_f64().unwrap();
        assert!((model.intercept - icpt).abs() < tol, "{name}: intercept");
    }
}

/// AP vs the release's get_precision_recall, with ties (stable order), VOC difficult labels
/// (0, negatives) and an all-negative class (NaN).
#[test]
fn ap_matches_the_release() {
    let fx = fixture();
    for (k, case) in fx["ap"].as_array().unwrap().iter().enumerate() {
        let targets = f64s(&case["targets"]);
        let scores = f64s(&case["scores"]);
        let got = voc_average_precision(&targets, &scores);
        match case["ap"].as_f64() {
            None => assert!(got.is_nan(), "case {k}: {got}"),
            Some(want) => assert!((got - want).abs() < 1e-12, "case {k}: {got} vs {want}"),
        }
    }
}

#[test]
fn compute_map_matches_the_numpy_reference() {
    let fx = fixture();
    let r = &fx["retrieval"];
    let ranks: Vec<Vec<usize>> = r["ranks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| f64s(q).iter().map(|&v| v as usize).collect())
        .collect();
    let ids = |v: &Value| f64s(v).iter().map(|&x| x as usize).collect::<Vec<_>>();
    let gnd: Vec<QueryTruth> = r["gnd"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| QueryTruth {
            ok: ids(&g["ok"]),
            junk: ids(&g["junk"]),
        })
        .collect();
    let kappas: Vec<usize> = ids(&r["kappas"]);
    let got = compute_map(&ranks, &gnd, &kappas).unwrap();
    assert!((got.map - r["map"].as_f64().unwrap()).abs() < 1e-12);
    for (a, b) in got.aps.iter().zip(f64s(&r["aps"])) {
        assert!(
            (a.is_nan() && b.is_nan()) || (a - b).abs() < 1e-12,
            "{a} {b}"
        );
    }
    for (a, b) in got.mp_at_k.iter().zip(f64s(&r["mp_at_k"])) {
        assert!((a - b).abs() < 1e-12, "{a} {b}");
    }
    let prs: Vec<f64> = got.precisions.concat();
    for (a, b) in prs.iter().zip(f64s(&r["prs"])) {
        assert!(
            (a.is_nan() && b.is_nan()) || (a - b).abs() < 1e-12,
            "{a} {b}"
        );
    }
    assert_eq!(got.empty_queries, 1);
}

/// Whitening vs the release's PCA (NumPy eigh, f64): the sign- and basis-free PᵀP and the Gram
/// matrix of whitened queries, to 1e-6 relative (the inputs are f32, the eigenvalues span the
/// 1e-5 clamp, so the smallest direction scales values by up to ~300).
#[test]
fn whitening_matches_the_release_pca() {
    let fx = fixture();
    let w = &fx["whitening"];
    let dim = w["dim"].as_u64().unwrap() as usize;
    let feats = features(&w["features"], dim);
    let queries = features(&w["queries"], dim);
    let learned = Whitening::learn(&feats, 0.5, None).unwrap();
    assert_eq!(
        learned.clamped, 1,
        "the rank-deficient direction is clamped"
    );
    for (a, b) in learned.mean.iter().zip(f64s(&w["mean"])) {
        assert!((a - b).abs() < 1e-12);
    }
    let p = &learned.projection;
    let want = f64s(&w["pt_p"]);
    for i in 0..dim {
        for j in 0..dim {
            let got: f64 = (0..dim).map(|k| p[k * dim + i] * p[k * dim + j]).sum();
            let b = want[i * dim + j];
            assert!(
                (got - b).abs() <= 1e-6 * b.abs().max(1.0),
                "PtP[{i},{j}] {got} vs {b}"
            );
        }
    }
    let y = learned.apply(&queries).unwrap();
    let gram = f64s(&w["gram"]);
    for i in 0..y.rows {
        for j in 0..y.rows {
            let got: f64 = y
                .row(i)
                .iter()
                .zip(y.row(j))
                .map(|(a, b)| f64::from(*a) * f64::from(*b))
                .sum();
            let b = gram[i * y.rows + j];
            assert!(
                (got - b).abs() <= 1e-5 * b.abs().max(1.0),
                "gram[{i},{j}] {got} vs {b}"
            );
        }
    }
    assert!((learned.energy_kept - w["energy_kept"].as_f64().unwrap()).abs() < 1e-12);
}
