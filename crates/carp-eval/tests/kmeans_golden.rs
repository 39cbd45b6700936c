//! One spherical k-means restart against a float64 NumPy run from the same initial centroids.
//!
//! Fixture: `tests/fixtures/kmeans_golden.json`, written by `tools/golden_kmeans.py` (seeded):
//! standardisation statistics, the Lloyd iterations, final assignments, centroids, objective and
//! test assignments.

use carp_eval::kmeans::{spherical_lloyd, KmeansModel, Standardizer};
use carp_eval::Features;
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    dim: usize,
    train: Vec<f64>,
    test: Vec<f64>,
    init_rows: Vec<usize>,
    mean: Vec<f64>,
    std: Vec<f64>,
    iterations: usize,
    assignments: Vec<usize>,
    objective: f64,
    centroids: Vec<f64>,
    test_assignments: Vec<usize>,
}

fn features(v: &[f64], dim: usize) -> Features {
    Features::new(v.iter().map(|&x| x as f32).collect(), v.len() / dim, dim).unwrap()
}

#[test]
fn one_restart_matches_numpy() {
    let fx: Fixture =
        serde_json::from_str(include_str!("fixtures/kmeans_golden.json")).expect("fixture");
    let train = features(&fx.train, fx.dim);
    let test = features(&fx.test, fx.dim);

    let s = Standardizer::fit(&train);
    for d in 0..fx.dim {
        assert!(
            (f64::from(s.mean[d]) - fx.mean[d]).abs() < 1e-6,
            "mean[{d}]"
        );
        assert!((f64::from(s.std[d]) - fx.std[d]).abs() < 1e-6, "std[{d}]");
    }
    let points = s.apply(&train).l2_normalized();
    let mut init = Vec::new();
    for &r in &fx.init_rows {
        init.extend_from_slice(points.row(r));
    }
    let init = Features::new(init, fx.init_rows.len(), fx.dim).unwrap();

    for chunk_rows in [1000, 16] {
        let run = spherical_lloyd(&points, &init, 100, chunk_rows, true).unwrap();
        assert_eq!(run.iterations, fx.iterations);
        assert_eq!(run.assignments, fx.assignments);
        assert!(
            (run.objective - fx.objective).abs() < 1e-5 * fx.objective,
            "objective {} vs {}",
            run.objective,
            fx.objective
        );
        for (i, (&g, &w)) in run.centroids.data.iter().zip(&fx.centroids).enumerate() {
            assert!(
                (f64::from(g) - w).abs() < 1e-5,
                "centroid value {i}: {g} vs {w}"
            );
        }

        // Test rows go to the nearest centroid after the train standardisation.
        let model = KmeansModel {
            standardizer: Some(s.clone()),
            best: run,
            best_restart: 0,
            objectives: vec![fx.objective],
        };
        assert_eq!(model.assign(&test, 5).unwrap(), fx.test_assignments);
    }

    // Fewer iterations than convergence needs: stops early with a different state.
    let short = spherical_lloyd(&points, &init, 1, 1000, true).unwrap();
    assert_eq!(short.iterations, 1);
    assert!(short.objective >= fx.objective - 1e-9);

    // Running all 100 iterations past convergence changes nothing but the count.
    let full = spherical_lloyd(&points, &init, 100, 1000, false).unwrap();
    assert_eq!(full.iterations, 100);
    assert_eq!(full.assignments, fx.assignments);
    assert!((full.objective - fx.objective).abs() < 1e-5 * fx.objective);
}
