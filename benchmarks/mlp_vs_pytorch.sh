#!/usr/bin/env bash
# tern vs PyTorch on the same MLP (784-256-256-10, batch 128, Adam, Fashion-MNIST), same machine,
# same run: for each policy, tern and PyTorch alternate REPS times; the table shows the medians of
# samples/s and of the per-repetition ratio tern / PyTorch (alternating keeps both under the same load).
# Usage: benchmarks/mlp_vs_pytorch.sh [BUILD_DIR] [THREADS] [STEPS] [REPS]
set -euo pipefail
build=${1:-build}
threads=${2:-2}
steps=${3:-200}
reps=${4:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
bench="$build/benchmarks/bench_mlp_train"
[ -x "$bench" ] || { echo "missing $bench: build the benchmarks first" >&2; exit 1; }
echo "MLP 784-256-256-10, batch 128, Adam, $steps steps, $threads thread(s), $reps alternating repetitions"
printf "%-10s %14s %16s %8s\n" policy tern_samples/s pytorch_samples/s ratio
summary="{\"threads\":$threads,\"steps\":$steps"
for policy in fp32 fp16 absmean absmedian; do
  results=""
  for ((r = 0; r < reps; r++)); do
    tern_json=$("$bench" --threads "$threads" --steps "$steps" --policy "$policy" | tail -n 1)
    torch_json=$(/usr/bin/python3 "$root/benchmarks/pytorch_baselines.py" mlp --policy "$policy" \
                 --threads "$threads" --steps "$steps" | tail -n 1)
    results+="$tern_json"$'\t'"$torch_json"$'\n'
  done
  line=$(/usr/bin/python3 - "$policy" "$results" <<'PY'
import json, statistics, sys
policy, rows = sys.argv[1], [r.split("\t") for r in sys.argv[2].strip().split("\n")]
tern = [json.loads(a)[f"{policy}_samples_per_s"] for a, _ in rows]
torch = [json.loads(b)["samples_per_s"] for _, b in rows]
ratio = statistics.median(t / p for t, p in zip(tern, torch))
print(f"{policy:<10} {statistics.median(tern):14.0f} {statistics.median(torch):16.0f} {ratio:7.2f}x")
print(f'"{policy}_ratio_vs_pytorch":{ratio:.3f}')
PY
)
  echo "$line" | head -n 1
  summary+=",$(echo "$line" | tail -n 1)"
done
echo "$summary}"
