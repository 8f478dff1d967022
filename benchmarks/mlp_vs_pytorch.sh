#!/usr/bin/env bash
# tern vs PyTorch, same MLP (784-256-256-10, batch 128, Adam), same machine, same run.
# Usage: benchmarks/mlp_vs_pytorch.sh [BUILD_DIR] [THREADS] [STEPS]
# Prints a table of samples/s per policy and the ratio tern / PyTorch.
set -euo pipefail
build=${1:-build}
threads=${2:-2}
steps=${3:-468}
root=$(cd "$(dirname "$0")/.." && pwd)
bench="$build/benchmarks/bench_mlp_train"
[ -x "$bench" ] || { echo "missing $bench: build the benchmarks first" >&2; exit 1; }
printf "%-10s %14s %14s %8s\n" policy tern_samples/s torch_samples/s ratio
for policy in fp32 fp16 absmean absmedian; do
  tern_json=$("$bench" --threads "$threads" --steps "$steps" --policy "$policy" | tail -n 1)
  torch_json=$(/usr/bin/python3 "$root/benchmarks/pytorch_baselines.py" mlp --policy "$policy" \
               --threads "$threads" --steps "$steps" | tail -n 1)
  /usr/bin/python3 - "$policy" "$tern_json" "$torch_json" <<'PY'
import json, sys
policy, tern, torch = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
t = tern[f"{policy}_samples_per_s"]
p = torch["samples_per_s"]
print(f"{policy:<10} {t:14.0f} {p:14.0f} {t / p:7.2f}x")
PY
done
