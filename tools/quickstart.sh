#!/usr/bin/env bash
# One command on a fresh Debian 12 machine: install what is needed, build, and train the MLP
# example on Fashion-MNIST with 1.58-bit (absmean ternary) weights and 8-bit activations.
# Extra arguments go to the mlp program, e.g. tools/quickstart.sh --policy absmedian --epochs 5
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install_deps.sh --minimal
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build --target mlp -j"$(nproc)"
./build/examples/mlp --policy absmean --epochs 5 "$@"
