#!/usr/bin/env bash
# Wall time of `carp eval suite` on the data that exists here (CIFAR-10 as JPEG class folders
# in ../shared/datasets/cifar10/{train,test}; STL-10 and the other sets are not present) for a
# checkpoint, with the per-data-set times the suite records. Prints a table.
#
# Usage: bench/eval_suite.sh CHECKPOINT [MAX_IMAGES] [LINEAR_EPOCHS]
set -euo pipefail
ckpt=${1:?checkpoint}
max=${2:-0}
epochs=${3:-10}
carp=${CARP:-${CARGO_TARGET_DIR:-target}/release/carp}
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
ln -s "$(cd ../shared/datasets/cifar10 && pwd)" "$root/cifar10"
out=$(mktemp -d)
start=$(date +%s.%N)
"$carp" -q eval suite --checkpoint "$ckpt" --data-root "$root" --out "$out" \
    --max-images "$max" --linear-epochs "$epochs" > "$out/stdout.md"
end=$(date +%s.%N)
echo "| data | max images | linear epochs | wall s |"
echo "|---|---:|---:|---:|"
echo "| cifar10 | $max | $epochs | $(echo "$end - $start" | bc) |"
grep -E '^- (cifar10|wall)' "$out/eval/suite.md" || true
grep -E '^\| (knn|kmeans|linear)' "$out/eval/suite.md"
