#!/usr/bin/env bash
# Issue 15: repeat the CIFAR-10 configuration of the issue N times under each of several
# background loads and check, tensor by tensor, that every run's checkpoint is
# bit-identical to the first idle run (same build, same thread count, same seed).
#
# Usage: bench/determinism.sh [N=5] [STEPS=100] [LOADS="idle hog memory onecore programs"]
#
#   idle      nothing else started by this script
#   hog       one busy loop per core, at the run's priority
#   memory    a process holding MEM_MB (2048) MiB and writing one byte per page in a loop
#   onecore   the run itself pinned to one core (taskset -c 0) with its THREADS threads
#   programs  short programs started back to back (carp --help, carp inspect on a checkpoint,
#             cargo metadata), as in the run that diverged in the issue
#
# Configuration (the issue's): ResNet-18 small stem at width 16, 2x32 + 4x16 views with blur,
# scales [0.2, 1] and [0.05, 0.2], K 4096, N 128, batch 64, seed 0, schedules laid out over
# 700 steps, THREADS (2) threads; the run stops after STEPS steps. The issue's divergence
# appeared between steps 39 and 49, so keep STEPS >= 60.
#
# Env: DATA (../shared/datasets/cifar10/train, an image folder), THREADS (2), MEM_MB (2048),
#      CARP and CKPT_DIFF (binaries; default under ${CARGO_TARGET_DIR:-target}/release),
#      KEEP=1 keeps the run directories (printed at the end).
# Needs a release build of the binary and of the checkpoint comparison:
#   cargo build --release -p carp-cli --bin carp && cargo build --release -p carp-io --example ckpt_diff
# Prints one line per run (load, repeat, seconds, result, first step whose logged loss
# differs from the reference) and exits 1 if any checkpoint differs.
set -euo pipefail
N=${1:-5}
STEPS=${2:-100}
LOADS=${3:-"idle hog memory onecore programs"}
THREADS=${THREADS:-2}
MEM_MB=${MEM_MB:-2048}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATA=${DATA:-$ROOT/../shared/datasets/cifar10/train}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=${CARP:-$TARGET/release/carp}
DIFF=${CKPT_DIFF:-$TARGET/release/examples/ckpt_diff}
for f in "$BIN" "$DIFF"; do
    [ -x "$f" ] || { echo "missing $f: see the build line at the top of $0" >&2; exit 2; }
done
[ -d "$DATA" ] || { echo "no data at $DATA (set DATA)" >&2; exit 2; }

WORK=$(mktemp -d)
LOAD_PIDS=()
stop_load() {
    for pid in "${LOAD_PIDS[@]}"; do
        kill "$pid" 2> /dev/null || true
        wait "$pid" 2> /dev/null || true
    done
    LOAD_PIDS=()
}
cleanup() {
    stop_load
    if [ "${KEEP:-0}" = 1 ]; then echo "runs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

cat > "$WORK/issue15.toml" << 'EOF'
[model]
base_width = 16
out_dim = 4096
partition_size = 128

[views]
local_views = 4
blur = true
global_scale = [0.2, 1.0]
local_scale = [0.05, 0.2]

[optim]
batch_size = 64

[run]
seed = 0
schedule_steps = 700
EOF

start_load() {
    case "$1" in
        idle | onecore) ;;
        hog)
            for _ in $(seq "$(nproc)"); do
                bash -c 'while :; do :; done' &
                LOAD_PIDS+=($!)
            done
            ;;
        memory)
            python3 - "$MEM_MB" << 'EOF' &
import sys
n = int(sys.argv[1]) << 20
buf = bytearray(n)
while True:
    for i in range(0, n, 4096):
        buf[i] = (buf[i] + 1) & 255
EOF
            LOAD_PIDS+=($!)
            ;;
        programs)
            (
                while :; do
                    "$BIN" --help > /dev/null
                    [ -f "$WORK/ref/checkpoint.safetensors" ] &&
                        "$BIN" inspect "$WORK/ref/checkpoint.safetensors" > /dev/null
                    (cd "$ROOT" && cargo metadata --offline --format-version 1 > /dev/null 2>&1) || true
                done
            ) &
            LOAD_PIDS+=($!)
            ;;
        *) echo "unknown load $1" >&2; exit 2 ;;
    esac
}

run() { # load, out dir
    local pin=()
    [ "$1" = onecore ] && pin=(taskset -c 0)
    "${pin[@]}" "$BIN" pretrain --preset cifar --config "$WORK/issue15.toml" --data "$DATA" \
        --out "$2" --threads "$THREADS" --max-steps "$STEPS" --log-every 1 \
        --no-eval --no-tensorboard --quiet > "$2.log" 2>&1
}

first_diff_step() { # reference metrics, other metrics
    paste -d'\t' <(jq -c '[.step, .loss, .consistency, .entropy]' "$1") \
        <(jq -c '[.step, .loss, .consistency, .entropy]' "$2") |
        awk -F'\t' '$1 != $2 { split($1, a, ","); print substr(a[1], 2); exit }'
}

echo "# $N x {$LOADS}, $STEPS steps, $THREADS threads, data $DATA"
echo "# $(uname -srm); $(nproc) cores; $("$BIN" --version 2> /dev/null || echo carp)"
t0=$(date +%s.%N)
run idle "$WORK/ref"
t1=$(date +%s.%N)
printf '%-9s %6s %8s  %s\n' load repeat seconds result
printf '%-9s %6s %8.1f  %s\n' idle ref "$(echo "$t1 - $t0" | bc)" reference
failed=0
for r in $(seq "$N"); do
    for load in $LOADS; do
        out="$WORK/$load-$r"
        start_load "$load"
        sleep 1
        t0=$(date +%s.%N)
        run "$load" "$out"
        t1=$(date +%s.%N)
        stop_load
        if result=$("$DIFF" "$WORK/ref/checkpoint.safetensors" "$out/checkpoint.safetensors"); then
            result="identical"
        else
            failed=$((failed + 1))
            result="${result#*: }; first differing logged step: $(first_diff_step "$WORK/ref/metrics.jsonl" "$out/metrics.jsonl")"
        fi
        printf '%-9s %6s %8.1f  %s\n' "$load" "$r" "$(echo "$t1 - $t0" | bc)" "$result"
        [ "${KEEP:-0}" = 1 ] || rm -rf "$out" "$out.log"
    done
done
runs=$((N * $(wc -w <<< "$LOADS")))
if [ "$failed" = 0 ]; then
    echo "RESULT: all $runs checkpoints bit-identical to the reference"
else
    echo "RESULT: $failed of $runs checkpoints DIFFER from the reference"
    exit 1
fi
