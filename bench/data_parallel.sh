#!/usr/bin/env bash
# Data-parallel pretraining (issue 11): the CIFAR preset (ResNet-18 small stem, 2x32 + 4x16
# views, K 4096, N 128) at one global batch, as 1 process x T threads and as W MPI ranks x
# T/W threads, on this machine; img/s, the share of the loop spent in all-reduce (transfer
# and waiting), bytes all-reduced per step, and what a ResNet-50 step would move.
#
# Usage: bench/data_parallel.sh [STEPS=12] [RANKS=2] [BATCH=64]
# Needs `carp` built with MPI: cargo build --release --workspace --features carp-cli/mpi
# (CARGO_TARGET_DIR respected, or CARP=path). Data: ../shared/datasets/cifar10/train when
# present, else the built-in synthetic images at 32 px.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-12}
RANKS=${2:-2}
BATCH=${3:-64}
THREADS=$(nproc)
BIN=${CARP:-${CARGO_TARGET_DIR:-target}/release/carp}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

DATA=(--data synthetic)
[ -d ../shared/datasets/cifar10/train ] && DATA=(--data ../shared/datasets/cifar10/train)
COMMON=(pretrain --preset cifar "${DATA[@]}" --no-eval --no-tensorboard --max-steps "$STEPS"
        --log-every 1 --seed 0)

img_per_s() { sed -n 's/.*(\([0-9.]*\) img\/s).*/\1/p' "$1" | tail -1; }

echo "carp $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $STEPS steps, global batch $BATCH, $(nproc) cores, data ${DATA[1]}"
"$BIN" "${COMMON[@]}" --out "$WORK/one" --batch-size "$BATCH" --threads "$THREADS" \
    > "$WORK/one.log" 2> "$WORK/one.err"
one=$(img_per_s "$WORK/one.log")

per_rank=$((BATCH / RANKS))
rank_threads=$(( THREADS / RANKS > 0 ? THREADS / RANKS : 1 ))
mpirun --oversubscribe -np "$RANKS" "$BIN" "${COMMON[@]}" --out "$WORK/many" \
    --batch-size "$per_rank" --threads "$rank_threads" > "$WORK/many.log" 2> "$WORK/many.err"
many=$(img_per_s "$WORK/many.log")
comm=$(grep '^all-reduce' "$WORK/many.log")
mb=$(sed -n 's/.* \([0-9.]*\) MB per step.*/\1/p' <<< "$comm")
share=$(sed -n 's/.*(\([0-9.]*\) % of.*/\1/p' <<< "$comm")
secs=$(sed -n 's/.* MB per step, \([0-9.]*\) s .*/\1/p' <<< "$comm")

printf '\n| setting | img/s | all-reduce share of the loop | MB all-reduced per step |\n|---|---:|---:|---:|\n'
printf '| 1 process x %d threads, batch %d | %s | - | - |\n' "$THREADS" "$BATCH" "$one"
printf '| %d ranks x %d thread(s), %d each | %s | %s %% | %s |\n' "$RANKS" "$rank_threads" "$per_rank" "$many" "$share" "$mb"
echo
echo "$comm"
# ResNet-50 (25.6 M parameters, 4 bytes each) moves ~102 MB of gradients per step, plus the
# head and the BatchNorm/entropy sums; at this run's effective all-reduce rate:
awk -v mb="$mb" -v secs="$secs" -v steps="$STEPS" 'BEGIN {
    rate = (secs > 0) ? mb * steps / secs : 0;
    printf "effective all-reduce rate here: %.0f MB/s (transfer plus waiting for the slower rank)\n", rate;
    if (rate > 0) printf "ResNet-50 gradients (102 MB) at that rate: %.2f s per step\n", 102.4 / rate;
}'
