//! Clustering metrics against scikit-learn.
//!
//! Fixture: `tests/fixtures/cluster_metrics_golden.json`, written by
//! `tools/golden_cluster_metrics.py` (seeded; the file records the sklearn and NumPy versions).
//! Cases: near-independent labels (AMI near 0), noisy and perfect matches, a class absent from the
//! predictions, a single cluster, a single class, both single, all singletons, a symmetric tie,
//! two rows and k = 100 clusters on 10 classes.

use carp_eval::cluster_scores;
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    name: String,
    truth: Vec<usize>,
    pred: Vec<usize>,
    nmi: f64,
    ami: f64,
    ari: f64,
    fmi: f64,
    homogeneity: f64,
    completeness: f64,
    v_measure: f64,
}

#[derive(Deserialize)]
struct Fixture {
    cases: Vec<Case>,
}

#[test]
fn matches_sklearn() {
    let text = include_str!("fixtures/cluster_metrics_golden.json");
    let fixture: Fixture = serde_json::from_str(text).expect("fixture parses");
    assert_eq!(fixture.cases.len(), 11);
    for c in &fixture.cases {
        let s = cluster_scores(&c.truth, &c.pred).unwrap();
        let pairs = [
            ("nmi", s.nmi, c.nmi),
            ("ami", s.ami, c.ami),
            ("ari", s.ari, c.ari),
            ("fmi", s.fmi, c.fmi),
            ("homogeneity", s.homogeneity, c.homogeneity),
            ("completeness", s.completeness, c.completeness),
            ("v_measure", s.v_measure, c.v_measure),
        ];
        for (metric, got, want) in pairs {
            assert!(
                (got - want).abs() <= 1e-9,
                "{} {metric}: carp {got} vs sklearn {want}",
                c.name
            );
        }
        // Swapping the roles of truth and prediction swaps homogeneity and completeness and
        // leaves the symmetric scores alone.
        let r = cluster_scores(&c.pred, &c.truth).unwrap();
        assert!(
            (r.homogeneity - s.completeness).abs() <= 1e-12,
            "{}",
            c.name
        );
        assert!((r.nmi - s.nmi).abs() <= 1e-12 && (r.ari - s.ari).abs() <= 1e-12);
    }
}
