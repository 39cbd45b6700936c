//! carp side of `bench/eval.sh`: weighted k-NN and spherical k-means timings on features written
//! by `bench/eval_reference.py gen`.
//!
//! `cargo bench -p carp-eval --bench eval -- --dir DIR [--threads 2] [--kmeans-ks 10,100]
//! [--init random|kmeans++] [--all-iterations] [--no-knn]` prints one JSON line; `--all-iterations` turns
//! off the stop on a stable assignment so every restart runs all 100 iterations, as faiss does.

use std::time::Instant;

use carp_eval::{kmeans_eval, weighted_knn, Features, KmeansConfig, KmeansInit, KnnConfig};

fn read_f32(path: &str) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
        .collect()
}

fn read_labels(path: &str) -> Vec<usize> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    bytes
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let dir = flag("--dir").expect("--dir DIR (from bench/eval_reference.py gen)");
    let threads: usize = flag("--threads").map_or(2, |t| t.parse().expect("--threads N"));
    let kmeans_ks: Vec<usize> = flag("--kmeans-ks")
        .unwrap_or_else(|| "10,100".into())
        .split(',')
        .filter(|k| !k.is_empty())
        .map(|k| k.parse().expect("--kmeans-ks K,K"))
        .collect();
    let init = match flag("--init").as_deref() {
        None | Some("random") => KmeansInit::Random,
        Some("kmeans++") => KmeansInit::KmeansPlusPlus,
        Some(other) => panic!("--init random|kmeans++, not {other}"),
    };
    let all_iterations = args.iter().any(|a| a == "--all-iterations");
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .expect("rayon pool");

    let shape: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}/shape.json")).unwrap())
            .unwrap();
    let get = |k: &str| shape[k].as_u64().expect("shape field") as usize;
    let (n_train, n_test, dim, classes) =
        (get("n_train"), get("n_test"), get("dim"), get("classes"));
    let train = Features::new(read_f32(&format!("{dir}/train.f32")), n_train, dim).unwrap();
    let test = Features::new(read_f32(&format!("{dir}/test.f32")), n_test, dim).unwrap();
    let ytr = read_labels(&format!("{dir}/train_labels.i64"));
    let yte = read_labels(&format!("{dir}/test_labels.i64"));

    let t0 = Instant::now();
    let knn = if args.iter().any(|a| a == "--no-knn") {
        Vec::new()
    } else {
        weighted_knn(&train, &ytr, &test, &yte, classes, &KnnConfig::default()).unwrap()
    };
    let knn_s = t0.elapsed().as_secs_f64();
    let mut kmeans = serde_json::Map::new();
    for &k in &kmeans_ks {
        let cfg = KmeansConfig {
            k: Some(k),
            init,
            seed: 1234,
            stop_when_stable: !all_iterations,
            ..KmeansConfig::default()
        };
        let t0 = Instant::now();
        let r = kmeans_eval(&train, &ytr, &test, &yte, classes, &cfg).unwrap();
        let s = t0.elapsed().as_secs_f64();
        kmeans.insert(
            k.to_string(),
            serde_json::json!({"s": s, "objective": r.objective, "iterations": r.iterations,
                               "test_nmi": r.test.nmi}),
        );
    }
    let knn: serde_json::Map<String, serde_json::Value> = knn
        .iter()
        .map(|r| (r.k.to_string(), serde_json::json!([r.top1, r.top5])))
        .collect();
    println!(
        "{}",
        serde_json::json!({"threads": threads, "knn_s": knn_s, "knn": knn, "kmeans": kmeans})
    );
}
