#!/usr/bin/env bash
# Train-step throughput of carp against the same CARP step in PyTorch, in one run.
#
#   bench/train_step.sh [--preset cifar] [--steps 10] [--threads 2]
#
# carp: crates/carp-train/benches/train_step.rs (flex backend); PyTorch:
# bench/pytorch_train_step.py in .venv (pip install -r bench/requirements.txt).
# Both time full steps (student + teacher forward, loss, backward, LARS, EMA) on random
# inputs of the preset's shape and report images (not views) per second.
set -euo pipefail
cd "$(dirname "$0")/.."
preset=cifar steps=10 threads=2
while [ $# -gt 0 ]; do
  case "$1" in
    --preset) preset=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$preset" in
  cifar) py_args="--arch resnet18 --batch 64 --k 4096 --partition-size 128 --local-views 4 --global-size 32 --local-size 16" ;;
  tiny) echo "tiny has a narrow ResNet the PyTorch script does not build" >&2; exit 2 ;;
  *) echo "no PyTorch equivalent for preset $preset" >&2; exit 2 ;;
esac
python=${PYTHON:-.venv/bin/python}
carp_json=$(cargo bench -q -p carp-train --bench train_step -- --preset "$preset" --steps "$steps" --threads "$threads" --json 2>/dev/null | tail -1)
torch_json=$(OMP_NUM_THREADS=$threads "$python" bench/pytorch_train_step.py $py_args --steps "$steps" --warmup 2 --threads "$threads" --json | tail -1)
"$python" - "$carp_json" "$torch_json" <<'PY'
import json, sys
c, t = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"{'stack':<10}{'img/s':>10}{'s/step':>10}")
print(f"{'carp':<10}{c['img_per_s']:>10.1f}{c['step_s']:>10.3f}")
print(f"{'pytorch':<10}{t['img_per_s']:>10.1f}{t['step_s']:>10.3f}")
print(f"ratio carp/pytorch: {c['img_per_s'] / t['img_per_s']:.2f}x  (threads {c['threads']}, batch {c['batch']}, torch {t['torch']})")
PY
