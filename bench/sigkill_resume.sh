#!/usr/bin/env bash
# Kill `carp pretrain` with SIGKILL at random moments (at least KILLS times), resume each
# time, and check that the run ends with a valid checkpoint equal, byte for byte, to an
# uninterrupted run with the same seed (exact resume, issue 6).
#
# Usage: bench/sigkill_resume.sh [KILLS=10] [STEPS=400]
# Needs a release build: cargo build --release -p carp-cli (CARGO_TARGET_DIR respected).
# Both runs use the same run directory path (moved aside in between), so the checkpoint
# metadata (which records the resolved config, run.out included) matches too.
set -euo pipefail
KILLS=${1:-10}
STEPS=${2:-400}
BIN=${CARP:-${CARGO_TARGET_DIR:-target}/release/carp}
WORK=$(mktemp -d)
RUN=$WORK/run
trap 'rm -rf "$WORK"' EXIT
ARGS=(pretrain --out "$RUN" --no-eval --quiet --threads 2 --seed 5
      --base-width 4 --out-dim 64 --partition-size 16 --global-size 16 --local-size 8
      --local-views 2 --batch-size 8 --epochs 2 --log-every 1
      --max-steps "$STEPS" --checkpoint-every 5 --keep-every-epochs 1)

t0=$(date +%s.%N)
"$BIN" "${ARGS[@]}" > /dev/null
t1=$(date +%s.%N)
mv "$RUN" "$WORK/reference"
echo "uninterrupted: $STEPS steps in $(echo "$t1 - $t0" | bc) s"

kills=0
runs=0
while true; do
    runs=$((runs + 1))
    "$BIN" "${ARGS[@]}" > /dev/null 2>> "$WORK/log" &
    pid=$!
    if [ "$kills" -lt "$KILLS" ]; then
        # 0.3 to 2.3 s: lands in start-up, in steps and in checkpoint writes.
        sleep "$(awk -v r="$RANDOM" 'BEGIN { printf "%.2f", 0.3 + 2.0 * r / 32767 }')"
        if kill -9 "$pid" 2> /dev/null; then
            wait "$pid" 2> /dev/null || true
            kills=$((kills + 1))
            step=$(python3 -c "import json,sys; print(json.loads(open(sys.argv[1]).readlines()[-1])['step'])" "$RUN/metrics.jsonl" 2> /dev/null || echo "-")
            echo "kill $kills: SIGKILL at logged step $step"
            continue
        fi
    fi
    wait "$pid"
    break
done
echo "processes started: $runs, SIGKILLs: $kills"
if cmp -s "$WORK/reference/checkpoint.safetensors" "$RUN/checkpoint.safetensors"; then
    echo "RESULT: final checkpoint byte-identical to the uninterrupted run"
else
    echo "RESULT: final checkpoint DIFFERS from the uninterrupted run"
    exit 1
fi
