#!/usr/bin/env bash
# Feature-extraction throughput of `carp embed` against torchvision + PIL, in one run:
# JPEG decode, the evaluation transform and the backbone forward in eval mode, random weights.
#
#   bench/embed.sh [--data ../shared/datasets/cifar10/test] [--threads 2] [--max-r18 0] [--max-r50 320]
#
# Rows: ResNet-18 small stem at 32 px, batch 256; ResNet-50 at 224 px (resize 256, centre
# crop 224), batch 32. PyTorch runs NCHW and channels-last (bench/pytorch_embed.py in .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
data=../shared/datasets/cifar10/test threads=2 max_r18=0 max_r50=320
while [ $# -gt 0 ]; do
  case "$1" in
    --data) data=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --max-r18) max_r18=$2; shift 2 ;;
    --max-r50) max_r50=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -d "$data" ] || { echo "no image folder at $data" >&2; exit 2; }
python=${PYTHON:-.venv/bin/python}
cargo build -q --release -p carp-cli
carp=${CARGO_TARGET_DIR:-target}/release/carp
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
carp_rate() { # args...: runs carp embed, prints img/s
  "$carp" embed --random-init --threads "$threads" --test "$data" --out "$out" "$@" 2>&1 \
    | sed -n 's/.*(\([0-9.]*\) img\/s).*/\1/p' | tail -1
}
torch_rate() {
  OMP_NUM_THREADS=$threads "$python" bench/pytorch_embed.py --data "$data" --threads "$threads" --json "$@" \
    | tail -1 | "$python" -c 'import json,sys; print(json.load(sys.stdin)["img_per_s"])'
}
row() { # name carp torch_nchw torch_cl
  "$python" - "$@" <<'PY'
import sys
name, c, t, tcl = sys.argv[1], *map(float, sys.argv[2:])
best = max(t, tcl)
print(f"{name:<44}{c:>9.1f}{t:>12.1f}{tcl:>12.1f}{c / best:>8.2f}x")
PY
}
printf '%-44s%9s%12s%12s%9s\n' workload carp "torch NCHW" "torch CL" ratio
c=$(carp_rate --arch resnet18 --small-stem --batch 256 --max-test "$max_r18")
t=$(torch_rate --arch resnet18 --small-stem --batch 256 --max "$max_r18")
tcl=$(torch_rate --arch resnet18 --small-stem --batch 256 --max "$max_r18" --channels-last)
row "ResNet-18 small stem, 32 px, batch 256" "$c" "$t" "$tcl"
c=$(carp_rate --arch resnet50 --batch 32 --max-test "$max_r50")
t=$(torch_rate --arch resnet50 --batch 32 --max "$max_r50")
tcl=$(torch_rate --arch resnet50 --batch 32 --max "$max_r50" --channels-last)
row "ResNet-50, 224 px, batch 32" "$c" "$t" "$tcl"
echo "img/s incl. JPEG decode; threads $threads; ratio = carp / the faster PyTorch layout"
