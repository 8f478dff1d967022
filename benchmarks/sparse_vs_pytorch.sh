#!/usr/bin/env bash
# tern vs PyTorch on the Debian package graph (examples/debian_graph): torch.sparse.mm against
# tern::spmm on the same GCN-normalized matrix, and full-batch SGC (K = 2) and 2-layer GCN
# (hidden 16) training epochs with the spec's BitLinear, same threads. For each policy tern and
# PyTorch alternate REPS times; the table shows medians and the median ratio PyTorch ms / tern ms
# (above 1: tern is faster).
# Usage: [POLICIES="fp32 absmean"] benchmarks/sparse_vs_pytorch.sh [BUILD_DIR] [DATA_DIR] [THREADS] [REPS]
set -euo pipefail
build=${1:-build}
data=${2:-debian_graph_data}
threads=${3:-2}
reps=${4:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
bench="$build/benchmarks/bench_sparse"
[ -x "$bench" ] || { echo "missing $bench: build the target bench_sparse first" >&2; exit 1; }
[ -f "$data/debian.content" ] || { echo "missing $data/debian.content: run $build/examples/debian_graph --out $data" >&2; exit 1; }
dump=$(mktemp -d)
trap 'rm -rf "$dump"' EXIT
"$bench" --data "$data" --threads "$threads" --reps 1 --dump "$dump" > /dev/null
echo "Debian graph, $threads thread(s), $reps alternating repetitions (medians; ratio = PyTorch ms / tern ms)"
printf "%-10s %-14s %10s %12s %8s\n" policy measure tern_ms pytorch_ms ratio
for policy in ${POLICIES:-fp32 fp16 absmean absmedian}; do
  results=""
  for ((r = 0; r < reps; r++)); do
    t=$("$bench" --data "$data" --threads "$threads" --policy "$policy" --reps 5 | tail -n 1)
    p=$(/usr/bin/python3 "$root/benchmarks/sparse_pytorch.py" "$dump" --policy "$policy" --threads "$threads" \
        --reps 5 2>/dev/null | tail -n 1)
    results+="$t"$'\t'"$p"$'\n'
  done
  /usr/bin/python3 - "$policy" "$results" <<'PY'
import json, statistics, sys
policy, rows = sys.argv[1], [r.split("\t") for r in sys.argv[2].strip().split("\n")]
for key in ("spmm_ms_16", "spmm_ms_64", "spmm_ms_256", "sgc_epoch_ms", "gcn_epoch_ms"):
    t = [json.loads(a)[key] for a, _ in rows]
    p = [json.loads(b)[key] for _, b in rows]
    ratio = statistics.median(b / a for a, b in zip(t, p))
    print(f"{policy:<10} {key.replace('_ms', ''):<14} {statistics.median(t):10.1f} {statistics.median(p):12.1f} {ratio:7.2f}x")
PY
done
