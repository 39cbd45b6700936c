#!/usr/bin/env bash
# Training throughput of carp against the same CARP step in PyTorch, in one run.
#
#   bench/train_step.sh [--preset cifar] [--steps 10] [--threads 2]
#                       [--data ../shared/datasets/cifar10/train] [--pretrain-steps 60]
#
# Rows:
# 1. the model step (student + teacher forward, loss, backward, LARS, EMA) on random inputs
#    of the preset's shape: carp's crates/carp-train/benches/train_step.rs (flex backend)
#    against bench/pytorch_train_step.py in .venv (pip install -r bench/requirements.txt),
#    NCHW and channels-last;
# 2. CIFAR-10 pretraining including data loading, ResNet-18 at width 16 with the preset's
#    views: `carp pretrain --max-steps N` against the PyTorch step fed by a DataLoader
#    (2 workers), when --data names an image folder; plus the CPU cores each kept busy
#    (user + system time / wall time).
# img/s counts images (not views) per second of full steps.
set -euo pipefail
cd "$(dirname "$0")/.."
preset=cifar steps=10 threads=2 data=../shared/datasets/cifar10/train pretrain_steps=60
while [ $# -gt 0 ]; do
  case "$1" in
    --preset) preset=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --pretrain-steps) pretrain_steps=$2; shift 2 ;;
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
torch_cl_json=$(OMP_NUM_THREADS=$threads "$python" bench/pytorch_train_step.py $py_args --steps "$steps" --warmup 2 --threads "$threads" --channels-last --json | tail -1)
pre_carp='{}' pre_torch='{}'
if [ -d "$data" ]; then
  cargo build -q --release -p carp-cli
  carp=${CARGO_TARGET_DIR:-target}/release/carp
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
  # CPU seconds (user + system) / wall seconds of the whole run, from /proc of the child.
  start=$(date +%s.%N)
  "$carp" --quiet pretrain --preset "$preset" --base-width 16 --data "$data" --max-steps "$pretrain_steps" \
    --no-eval --threads "$threads" --out "$out/run" >/dev/null 2>"$out/log" &
  pid=$!
  cpu=0
  while kill -0 "$pid" 2>/dev/null; do
    cpu=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo "$cpu")
    sleep 0.5
  done
  wait "$pid"
  end=$(date +%s.%N)
  pre_carp=$("$python" - "$out/run/summary.json" "$cpu" "$start" "$end" <<'PY'
import json, os, sys
s = json.load(open(sys.argv[1]))
cores = float(sys.argv[2]) / os.sysconf("SC_CLK_TCK") / (float(sys.argv[4]) - float(sys.argv[3]))
print(json.dumps({"img_per_s": s["img_per_s"], "cpu_cores_used": cores}))
PY
)
  pre_torch=$(OMP_NUM_THREADS=$threads "$python" bench/pytorch_train_step.py $py_args --base-width 16 \
    --data "$data" --workers 2 --steps "$pretrain_steps" --warmup 0 --threads "$threads" --json | tail -1)
fi
"$python" - "$carp_json" "$torch_json" "$torch_cl_json" "$pre_carp" "$pre_torch" <<'PY'
import json, sys
c, t, tcl, pc, pt = (json.loads(a) for a in sys.argv[1:])
print(f"{'workload':<58}{'carp':>8}{'torch':>8}{'torch CL':>10}{'ratio':>8}")
best = max(t["img_per_s"], tcl["img_per_s"])
print(f"{'CARP step, ' + c['preset'] + ' preset, batch ' + str(c['batch']) + ' (img/s)':<58}"
      f"{c['img_per_s']:>8.1f}{t['img_per_s']:>8.1f}{tcl['img_per_s']:>10.1f}{c['img_per_s'] / best:>7.2f}x")
print(f"{'  s/step (forward+backward / EMA+LARS for carp)':<58}{c['step_s']:>8.3f}{t['step_s']:>8.3f}{tcl['step_s']:>10.3f}"
      f"   ({c['forward_backward_s']:.3f} / {c['update_s']:.3f})")
if pc and pt:
    print(f"{'pretraining incl. data loading, R18 width 16 (img/s)':<58}{pc['img_per_s']:>8.1f}"
          f"{pt['img_per_s']:>8.1f}{'':>10}{pc['img_per_s'] / pt['img_per_s']:>7.2f}x")
    print(f"{'  CPU cores used (user+sys / wall)':<58}{pc['cpu_cores_used']:>8.2f}{pt['cpu_cores_used']:>8.2f}")
print(f"threads {c['threads']}, torch {t['torch']}")
PY
