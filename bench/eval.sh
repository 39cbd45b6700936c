#!/usr/bin/env bash
# Evaluation protocols of carp against PyTorch (weighted k-NN) and faiss-cpu (spherical k-means),
# in one run on the same features.
#
#   bench/eval.sh [--threads 2] [--n-train 50000] [--n-test 10000] [--dim 512] [--kmeans-ks 10,100]
#
# bench/eval_reference.py writes clustered Gaussian features to a temporary directory; carp
# (crates/carp-eval/benches/eval.rs) and the references (same script, `run`) read the same files.
# k-NN: k in {10, 20, 100, 200}, top-1/top-5, T = 0.07. k-means: 10 restarts, 100 iterations,
# random init on both sides, train standardisation + L2 normalisation, test assignment. carp
# stops a restart once its assignment repeats (same result, fewer iterations); the "all iters"
# rows time carp running all 100 iterations per restart; faiss-cpu (1.15) also stops a converged
# restart early, so those rows are not like for like (see bench/runs/2026-11-27-eval).
set -euo pipefail
cd "$(dirname "$0")/.."
threads=2 n_train=50000 n_test=10000 dim=512 kmeans_ks=10,100
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads=$2; shift 2 ;;
    --n-train) n_train=$2; shift 2 ;;
    --n-test) n_test=$2; shift 2 ;;
    --dim) dim=$2; shift 2 ;;
    --kmeans-ks) kmeans_ks=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
python=${PYTHON:-.venv/bin/python}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$python" bench/eval_reference.py gen "$dir" --n-train "$n_train" --n-test "$n_test" --dim "$dim"
cargo bench -q -p carp-eval --bench eval --no-run 2>/dev/null
carp_json=$(cargo bench -q -p carp-eval --bench eval -- --dir "$dir" --threads "$threads" --kmeans-ks "$kmeans_ks" 2>/dev/null | tail -1)
carp_all_json=$(cargo bench -q -p carp-eval --bench eval -- --dir "$dir" --threads "$threads" --kmeans-ks "$kmeans_ks" --all-iterations --no-knn 2>/dev/null | tail -1)
ref_json=$(OMP_NUM_THREADS=$threads "$python" bench/eval_reference.py run "$dir" --threads "$threads" --kmeans-ks "$kmeans_ks" | tail -1)
"$python" - "$carp_json" "$ref_json" "$n_train" "$n_test" "$dim" "$carp_all_json" <<'PY'
import json, sys
c, r = json.loads(sys.argv[1]), json.loads(sys.argv[2])
n_train, n_test, dim = sys.argv[3:6]
call = json.loads(sys.argv[6])
print(f"features: train {n_train}x{dim}, test {n_test}x{dim}; threads {c['threads']}; torch {r['torch']}, faiss {r['faiss']}")
print(f"{'task':<28}{'carp s':>10}{'ref s':>10}{'speed-up':>10}   notes")
print(f"{'k-NN (4 ks) vs PyTorch':<28}{c['knn_s']:>10.2f}{r['knn_s']:>10.2f}{r['knn_s'] / c['knn_s']:>9.2f}x   "
      f"top-1@20 carp {c['knn']['20'][0]:.2f} / torch {r['knn']['20'][0]:.2f}")
for k, ck in c["kmeans"].items():
    rk = r["kmeans"][k]
    print(f"{'k-means k=' + k + ' vs faiss':<28}{ck['s']:>10.2f}{rk['s']:>10.2f}{rk['s'] / ck['s']:>9.2f}x   "
          f"objective carp {ck['objective']:.1f} / faiss {rk['objective']:.1f}; carp iters (best) {ck['iterations']}; "
          f"test NMI {ck['test_nmi']:.3f} / {rk['test_nmi']:.3f}")
for k, ck in call["kmeans"].items():
    rk = r["kmeans"][k]
    print(f"{'k-means k=' + k + ' all iters':<28}{ck['s']:>10.2f}{rk['s']:>10.2f}{rk['s'] / ck['s']:>9.2f}x   "
          f"carp forced through 100 iterations per restart (faiss stops once converged: not like for like); "
          f"objective {ck['objective']:.1f}")
PY
