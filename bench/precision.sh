#!/usr/bin/env bash
# Issue 12: the tiny preset trained in each precision (f32, bf16, f16) from the same seed,
# with its wall time, throughput, last loss, f16 overflow steps and final k-NN top-1 of
# the teacher (the issue's check: bf16 within 2 k-NN points of f32).
#
# Usage: bench/precision.sh [PRECISIONS="f32 bf16 f16"] [EXTRA carp pretrain flags...]
#
# Env: CARP (binary; default ${CARGO_TARGET_DIR:-target}/release/carp), THREADS (2),
#      OUT (run directories; default a temporary directory, removed unless KEEP=1).
# Needs a release build: cargo build --release -p carp-cli --bin carp
# Prints one table row per precision; run directories hold summary.json and metrics.jsonl.
set -euo pipefail
PRECISIONS=${1:-"f32 bf16 f16"}
shift || true
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=${CARP:-$TARGET/release/carp}
THREADS=${THREADS:-2}
[ -x "$BIN" ] || { echo "missing $BIN: cargo build --release -p carp-cli --bin carp" >&2; exit 2; }
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
printf '| precision | steps | wall s | img/s | last loss | overflow steps | k-NN top-1 trained | k-NN top-1 init |\n'
printf '|---|---|---|---|---|---|---|---|\n'
for p in $PRECISIONS; do
    dir="$OUT/tiny-$p"
    rm -rf "$dir"
    "$BIN" pretrain --preset tiny --threads "$THREADS" --precision "$p" --out "$dir" \
        --no-tensorboard "$@" >"$dir.log" 2>&1 || { echo "run $p failed: $dir.log" >&2; exit 1; }
    python3 - "$dir/summary.json" "$p" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
k = s.get("knn") or {}
last = s.get("last") or {}
print(f"| {sys.argv[2]} | {s['steps']} | {s['wall_s']:.1f} | {s['img_per_s']:.1f} | "
      f"{last.get('loss', float('nan')):.4f} | {s.get('overflow_steps', 0)} | "
      f"{k.get('trained_top1', float('nan')):.2f} | {k.get('init_top1', float('nan')):.2f} |")
PY
done
if [ "${KEEP:-0}" = 1 ]; then echo "run directories: $OUT"; else rm -rf "$OUT"; fi
