#!/usr/bin/env bash
# Fuzzes tern's file readers with libFuzzer + AddressSanitizer + UndefinedBehaviorSanitizer
# (clang-14): builds the targets of tests/fuzz (-DTERN_FUZZ=ON), writes the seed corpus with tern's
# own writers (fuzz_seeds), then runs every target for SECONDS, JOBS targets at a time.
# Usage: tools/fuzz.sh [SECONDS] [TARGET...]     (default: 600 s per target, every target)
#   TERN_FUZZ_BUILD=DIR  build directory (default build/fuzz); the corpus grows in DIR/corpus
#   TERN_FUZZ_JOBS=N     targets run at once (default: the number of cores)
# Exits 1 if any target finds something: the input is saved as DIR/findings/<target>/crash-...;
# once fixed, copy it to tests/fuzz/regressions/<target>/ (test_fuzz_replay replays it).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
shift || true
build=${TERN_FUZZ_BUILD:-build/fuzz}
jobs=${TERN_FUZZ_JOBS:-$(nproc)}
cxx=${CXX_FUZZ:-clang++-14}

t0=$(date +%s)
cmake -S . -B "$build" -DCMAKE_CXX_COMPILER="$cxx" -DTERN_FUZZ=ON -DTERN_BUILD_EXAMPLES=OFF \
  -DTERN_BUILD_BENCHMARKS=OFF -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE=-O1 \
  -DTERN_WARNINGS_AS_ERRORS=ON > /dev/null
cmake --build "$build" --target fuzz_all -j"$jobs"
echo "fuzz.sh: build took $(( $(date +%s) - t0 )) s"

if [ $# -gt 0 ]; then
  targets=("$@")
else
  read -r -a targets <<< "$(sed -n 's/^TERN_FUZZ_TARGETS:INTERNAL=//p' "$build/CMakeCache.txt" | tr ';' ' ')"
fi
rm -rf "$build/seeds"
"$build/tests/fuzz/fuzz_seeds" "$build/seeds"

run_one() {
  local t=$1
  mkdir -p "$build/corpus/$t" "$build/findings/$t" "$build/seeds/$t"
  local extra=()
  [ -d "tests/fuzz/regressions/$t" ] && extra+=("tests/fuzz/regressions/$t")
  if [ ! -x "$build/tests/fuzz/fuzz_$t" ]; then
    echo "fuzz.sh: no fuzz target '$t'" > "$build/findings/$t.log"
    echo "FAILED" > "$build/findings/$t.status"
    return
  fi
  if "$build/tests/fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 \
       -print_final_stats=1 -artifact_prefix="$build/findings/$t/" \
       "$build/corpus/$t" "$build/seeds/$t" "${extra[@]}" > "$build/findings/$t.log" 2>&1; then
    echo "ok" > "$build/findings/$t.status"
  else
    echo "FAILED" > "$build/findings/$t.status"
  fi
}

t1=$(date +%s)
running=0
for t in "${targets[@]}"; do
  run_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n || true
    running=$((running - 1))
  fi
done
wait || true

status=0
printf '%-18s %-7s %12s %8s %8s %8s\n' target result executions exec/s cov corpus
for t in "${targets[@]}"; do
  log="$build/findings/$t.log"
  result=$(cat "$build/findings/$t.status" 2>/dev/null || echo "FAILED")
  touch "$log"
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1 || true)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1 || true)
  cov=$( (grep -Eo 'cov: [0-9]+' "$log" || true) | tail -1 | cut -d' ' -f2)
  corp=$( (grep -Eo 'corp: [0-9]+' "$log" || true) | tail -1 | cut -d' ' -f2)
  printf '%-18s %-7s %12s %8s %8s %8s\n' "$t" "$result" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${corp:-?}"
  if [ "$result" != "ok" ]; then
    status=1
    echo "---- $t: last lines of $log"
    grep -E 'tern fuzz finding|ERROR: |SUMMARY: |runtime error|Test unit written' "$log" | head -20 || true
    tail -5 "$log"
  fi
done
echo "fuzz.sh: ${#targets[@]} targets x ${seconds} s in $(( $(date +%s) - t1 )) s (${jobs} at a time); total $(( $(date +%s) - t0 )) s"
exit $status
