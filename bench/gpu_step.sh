#!/usr/bin/env bash
# Training-step img/s and peak memory of the imagenet preset (ResNet-50, 2x224 + 6x96 views,
# K = 65536, N = 512) and the cifar preset on one device, per precision.
#
#   bench/gpu_step.sh --device wgpu:0 [--steps 10] [--warmup 2] [--batch B]
#                     [--presets imagenet,cifar] [--precisions f32,bf16,f16] [--threads N]
#
# Each row is one process of crates/carp-train/benches/train_step.rs (random inputs of the
# preset's shape, full steps: student + teacher forward, loss, backward, EMA, LARS), built with
# the cargo feature the device needs (wgpu, vulkan or cuda; none for cpu). Peak memory is the
# device allocator's largest reservation (GPU runtimes) or the process's peak RSS (cpu).
# --batch overrides the presets' batch (imagenet 32, cifar 64 per device), for devices too
# small or too slow for them, and is printed in the table. --precision is passed through to the
# bench (f16 with the loss scaler; steps whose gradients overflow skip the update and are
# counted in the last column); a device without that arithmetic (the bench's exit status 3)
# gives a "not available" row with the bench's reason. --precisions f32 skips those rows.
# On lavapipe (wgpu:cpu) the figures are a functional check only: a software rasteriser on a
# few CPU cores, shader compilation included in the warm-up.
set -euo pipefail
cd "$(dirname "$0")/.."
device="" steps=10 warmup=2 batch="" presets=imagenet,cifar precisions=f32,bf16,f16
threads=$(nproc)
while [ $# -gt 0 ]; do
  case "$1" in
    --device) device=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --presets) presets=$2; shift 2 ;;
    --precisions) precisions=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$device" ] || { echo "usage: $0 --device NAME (cpu, wgpu[:N|:cpu], vulkan[:N], cuda[:N])" >&2; exit 2; }
case "${device%%:*}" in
  cpu|flex) features=() ;;
  wgpu) features=(--features wgpu) ;;
  vulkan) features=(--features vulkan) ;;
  cuda) features=(--features cuda) ;;
  *) echo "unknown device $device" >&2; exit 2 ;;
esac
err=$(mktemp)
trap 'rm -f "$err"' EXIT
# Build once, then run the bench binary directly (one process per row).
cargo bench -q -p carp-train "${features[@]}" --bench train_step --no-run
bin=$(cargo bench -q -p carp-train "${features[@]}" --bench train_step --no-run --message-format=json 2>/dev/null \
  | sed -n 's/.*"executable":"\([^"]*train_step[^"]*\)".*/\1/p' | tail -1)
[ -x "$bin" ] || { echo "could not build the train_step bench" >&2; exit 2; }
views() { case "$1" in imagenet) echo "2x224+6x96" ;; cifar) echo "2x32+4x16" ;; tiny) echo "2x16+2x8" ;; *) echo "?" ;; esac; }
printf '%-9s %-9s %-7s %-11s %9s %9s %12s  %-17s %s\n' preset precision batch views img/s s/step "peak GiB" "memory source" "skipped (f16)"
for preset in ${presets//,/ }; do
  for precision in ${precisions//,/ }; do
    args=(--preset "$preset" --device "$device" --precision "$precision" --steps "$steps" --warmup "$warmup" --threads "$threads" --json)
    [ -n "$batch" ] && args+=(--batch "$batch")
    set +e
    out=$("$bin" "${args[@]}" 2>"$err")
    rc=$?
    set -e
    if [ $rc -eq 3 ]; then
      printf '%-9s %-9s %-7s %-11s %9s\n' "$preset" "$precision" - "$(views "$preset")" "not available: $(tail -1 "$err")"
      continue
    elif [ $rc -ne 0 ]; then
      printf '%-9s %-9s failed (exit %d): %s\n' "$preset" "$precision" $rc "$(tail -1 "$err")"
      continue
    fi
    line=$(echo "$out" | tail -1)
    field() { echo "$line" | sed -n "s/.*\"$1\":\"\{0,1\}\([^,\"}]*\).*/\1/p"; }
    printf '%-9s %-9s %-7s %-11s %9.2f %9.3f %12.2f  %-17s %s\n' "$preset" "$precision" "$(field batch)" \
      "$(views "$preset")" "$(field img_per_s)" "$(field step_s)" "$(field peak_mem_gib)" "$(field peak_mem_source)" \
      "$(field skipped_updates)"
  done
done
echo "device $device, steps $steps (+$warmup warm-up), threads $threads, commit $(git rev-parse --short HEAD 2>/dev/null || echo ?)"
