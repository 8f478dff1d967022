#!/usr/bin/env bash
# Builds everything (tests, examples, benchmarks) with warnings as errors and runs the test suite.
# Usage: tools/test.sh [BUILD_DIR] [extra cmake arguments...]
#   tools/test.sh build-asan -DTERN_SANITIZE=ON    # the same suite under ASan + UBSan
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
shift || true
cmake -S . -B "$build" -DTERN_WARNINGS_AS_ERRORS=ON "$@" > /dev/null
cmake --build "$build" -j"$(nproc)"
ctest --test-dir "$build" --output-on-failure -j"$(nproc)"
