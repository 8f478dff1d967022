#!/usr/bin/env bash
# Installs what tern needs on Debian 12 (build tools, header-only dependencies, the data sets the
# examples use, Open MPI for the optional data-parallel build, PyTorch for the golden-value script
# and the comparison benchmarks).
# Only missing packages are installed. Usage: tools/install_deps.sh [--minimal]
#   --minimal  skip PyTorch (only the golden-value script and the comparison benchmarks need it)
set -euo pipefail
packages=(cmake make g++ pkg-config doxygen clang-14 libclang-rt-14-dev
          libxtensor-dev xtl-dev libxsimd-dev catch2 nlohmann-json3-dev zlib1g-dev libopenblas-dev
          dataset-fashion-mnist bible-kjv libopenmpi-dev openmpi-bin)
if [ "${1:-}" != "--minimal" ]; then
  packages+=(python3-torch python3-numpy)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install_deps: all ${#packages[@]} packages present"
  exit 0
fi
echo "install_deps: installing ${missing[*]}"
sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo_cmd apt-get update -qq
$sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
