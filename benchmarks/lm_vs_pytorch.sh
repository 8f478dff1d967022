#!/bin/bash
# Training speed of the byte-level transformer LM, tern against PyTorch, in the same run.
#
#   benchmarks/lm_vs_pytorch.sh [BUILD_DIR] [STEPS] [THREADS]      (defaults: build 20 2)
#
# For every policy it runs tern's bench_lm_train and then `benchmarks/pytorch_baselines.py lm`
# with the same model (4 layers, d_model 128, 4 heads, context 128, batch 32, AdamW), threads and
# text (the KJV bible), interleaved so that load on a shared machine hits both alike; then prints
# a table of tokens/s and the tern/PyTorch ratio, and one JSON line with all of it.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
STEPS=${2:-20}
THREADS=${3:-2}
BENCH="$BUILD/benchmarks/bench_lm_train"
[ -x "$BENCH" ] || { echo "lm_vs_pytorch.sh: $BENCH not found; build the bench_lm_train target first" >&2; exit 1; }
SHAPE_TERN="--layers 4 --d-model 128 --heads 4 --context 128 --batch 32"
SHAPE_TORCH="--n-layers 4 --d-model 128 --n-heads 4 --context 128 --batch 32"
results=()
for policy in fp32 fp16 absmean absmedian; do
  echo "== $policy: tern" >&2
  t=$("$BENCH" --policy "$policy" --threads "$THREADS" --steps "$STEPS" --warmup 3 $SHAPE_TERN | tail -n 1)
  echo "$t" >&2
  echo "== $policy: pytorch" >&2
  p=$(/usr/bin/python3 benchmarks/pytorch_baselines.py lm --policy "$policy" --threads "$THREADS" --steps "$STEPS" \
        --warmup 3 $SHAPE_TORCH | tail -n 1)
  echo "$p" >&2
  results+=("{\"policy\": \"$policy\", \"tern\": $t, \"pytorch\": $p}")
done
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
printf '%s\n' "${results[@]}" > "$tmp"
/usr/bin/python3 - "$tmp" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
print("%-10s %11s %12s %7s" % ("policy", "tern tok/s", "torch tok/s", "ratio"))
out = {}
for r in rows:
    t, p = r["tern"]["tokens_per_s"], r["pytorch"]["tokens_per_s"]
    print("%-10s %11.0f %12.0f %7.2f" % (r["policy"], t, p, t / p))
    out[r["policy"]] = {"tern_tokens_per_s": round(t, 1), "pytorch_tokens_per_s": round(p, 1), "ratio": round(t / p, 3)}
print(json.dumps({"benchmark": "lm_train", "threads": rows[0]["tern"]["threads"], "results": out}))
PY
