#!/usr/bin/env bash
# Trains the small Fashion-MNIST CNN in tern (bench_cnn_train) and in PyTorch
# (benchmarks/pytorch_baselines.py cnn, the same architecture, Adam, batch 128) for each policy,
# in the same run and at the same thread count, and prints samples/s and the tern/PyTorch ratio.
#
#   benchmarks/cnn_vs_pytorch.sh [BUILD_DIR]       (default BUILD_DIR: build)
#   THREADS=2 STEPS=50 REPEATS=3 POLICIES="fp32 absmean" benchmarks/cnn_vs_pytorch.sh build-cnn
#
# Each side reports the median of REPEATS timed runs (tern does them in one process; PyTorch is
# started REPEATS times), after warm-up steps. Absolute rates drift on a shared machine: the ratio
# measured side by side is the figure to quote.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${1:-build}"
[[ "$BUILD" = /* ]] || BUILD="$ROOT/$BUILD"
THREADS="${THREADS:-2}"
STEPS="${STEPS:-50}"
WARMUP="${WARMUP:-5}"
REPEATS="${REPEATS:-3}"
BATCH="${BATCH:-128}"
POLICIES="${POLICIES:-fp32 fp16 absmean absmedian}"
PYTHON="${PYTHON:-/usr/bin/python3}"
BENCH="$BUILD/benchmarks/bench_cnn_train"

if [[ ! -x "$BENCH" ]]; then
  echo "cnn_vs_pytorch: $BENCH not found; build it with: cmake --build $BUILD --target bench_cnn_train" >&2
  exit 1
fi

# The "samples_per_s" value of a JSON line.
rate() { "$PYTHON" -c 'import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])["samples_per_s"])'; }
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

echo "small CNN on Fashion-MNIST, batch $BATCH, $STEPS steps, $THREADS threads, median of $REPEATS runs"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
rows=()
for policy in $POLICIES; do
  tern_rate=$("$BENCH" --policy "$policy" --threads "$THREADS" --steps "$STEPS" --warmup "$WARMUP" \
                --batch "$BATCH" --repeats "$REPEATS" | rate)
  torch_rates=()
  for ((r = 0; r < REPEATS; r++)); do
    torch_rates+=("$("$PYTHON" "$ROOT/benchmarks/pytorch_baselines.py" cnn --policy "$policy" --threads "$THREADS" \
                     --steps "$STEPS" --warmup "$WARMUP" --batch "$BATCH" | rate)")
  done
  torch_rate=$(median "${torch_rates[@]}")
  ratio=$(awk -v a="$tern_rate" -v b="$torch_rate" 'BEGIN { printf "%.2f", a / b }')
  rows+=("$(printf '%-10s %14.1f %14.1f %8s' "$policy" "$tern_rate" "$torch_rate" "${ratio}x")")
  echo "$policy: tern $tern_rate, pytorch $torch_rate samples/s" >&2
done
printf '%-10s %14s %14s %8s\n' policy tern_samples/s torch_samples/s ratio
printf '%s\n' "${rows[@]}"
