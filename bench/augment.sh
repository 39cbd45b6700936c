#!/usr/bin/env bash
# Data-pipeline throughput of carp against torchvision + PIL, in one run.
#
#   bench/augment.sh [--images 4096] [--big-images 300] [--batch 64] [--threads 2]
#
# (a) CIFAR recipe (2x32 + 6x16) on ../shared/datasets/cifar10/train (a random subset of
#     --images images); (b) ImageNet recipe (2x224 + 6x96) on --big-images generated
#     ~400x350 JPEGs. carp: crates/carp-data/benches/multicrop.rs (rayon pool of
#     --threads); torchvision: bench/torchvision_augment.py (DataLoader with --threads
#     workers). Both decode JPEGs from disk and make all 8 views of each image.
set -euo pipefail
cd "$(dirname "$0")/.."
images=4096 big=300 batch=64 threads=2
while [ $# -gt 0 ]; do
  case "$1" in
    --images) images=$2; shift 2 ;;
    --big-images) big=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
python=${PYTHON:-.venv/bin/python}
cifar=$(realpath ../shared/datasets/cifar10/train)
[ -d "$cifar" ] || { echo "missing $cifar" >&2; exit 2; }
big_dir=$(mktemp -d)
trap 'rm -rf "$big_dir"' EXIT
"$python" bench/torchvision_augment.py --generate "$big_dir" --count "$big"
cargo bench -q -p carp-data --bench multicrop --no-run 2>/dev/null
# run_carp / run_tv BATCH ARGS...
run_carp() { local b=$1; shift; cargo bench -q -p carp-data --bench multicrop -- --json --threads "$threads" --batch "$b" "$@" 2>/dev/null | tail -1; }
run_tv() { local b=$1; shift; "$python" bench/torchvision_augment.py --json --threads "$threads" --batch "$b" "$@" | tail -1; }
c1=$(run_carp "$batch" --data "$cifar" --recipe cifar --images "$images")
t1=$(run_tv "$batch" --data "$cifar" --recipe cifar --images "$images")
c2=$(run_carp 16 --data "$big_dir" --recipe imagenet --images $((big - 16)))
t2=$(run_tv 16 --data "$big_dir" --recipe imagenet --images $((big - 16)))
"$python" - "$c1" "$t1" "$c2" "$t2" <<'PY'
import json, sys
rows = [json.loads(s) for s in sys.argv[1:]]
print(f"{'recipe':<10}{'stack':<13}{'images':>8}{'img/s':>10}{'per core':>10}")
for r in rows:
    print(f"{r['recipe']:<10}{r['stack']:<13}{r['images']:>8}{r['img_per_s']:>10.1f}{r['img_per_s'] / r['threads']:>10.1f}")
for c, t in [(rows[0], rows[1]), (rows[2], rows[3])]:
    print(f"{c['recipe']}: carp / torchvision = {c['img_per_s'] / t['img_per_s']:.2f}x "
          f"(threads {c['threads']}, torchvision {t['torchvision']})")
PY
