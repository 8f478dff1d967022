#!/usr/bin/env bash
# Packaging checks, run by .ci/run after the test suites (and by hand: tools/ci_packaging.sh).
#
#  1. the single header is up to date (tools/amalgamate.py --check);
#  2. `cmake --install` to two temporary prefixes: the include/ tree, and the single header
#     (TERN_INSTALL_SINGLE_HEADER=ON); the expected files are there;
#  3. pkg-config finds tern in the install (version, --cflags, --libs);
#  4. an empty translation unit that includes tern/tern.hpp compiles in under 20 s (reported; it
#     measured 9.9-14.9 s CPU on the 2-core CI machine on 2026-12-02, after the frozen layers, the
#     layer file protocol and the checked readers joined the single header);
#  5. the consumer projects build and run: tests/consumers/find_package (against both installs),
#     tests/consumers/add_subdirectory, tests/consumers/single_header, test_package/ (Conan's
#     test project, here against the CMake install) and, where MPI is installed,
#     tests/consumers/find_package_mpi (the mpi component);
#  6. the Conan recipes compile (python3 -m py_compile) and the root recipe has the expected
#     shape (checked against stubs of the Conan API: Conan itself is not installed);
#  7. doxygen runs on the Doxyfile without a single warning.
#
# Environment: CXX (compiler), TERN_PKG_WORK (work directory, default build/ci-packaging, wiped at
# the start), TERN_EMPTY_TU_LIMIT_S (default 10), TERN_PKG_JOBS (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
work=${TERN_PKG_WORK:-$root/build/ci-packaging}
limit=${TERN_EMPTY_TU_LIMIT_S:-20}
jobs=${TERN_PKG_JOBS:-2}
cxx=${CXX:-c++}
start=$(date +%s)
stamp() { echo "--- packaging [$(( $(date +%s) - start ))s] $*"; }
fail() { echo "ci_packaging: FAILED: $*" >&2; exit 1; }

rm -rf "$work"
mkdir -p "$work"
prefix=$work/prefix
prefix_single=$work/prefix-single
version=$(sed -n 's/^#define TERN_VERSION_STRING "\(.*\)"/\1/p' include/tern/version.hpp)
[ -n "$version" ] || fail "no TERN_VERSION_STRING in include/tern/version.hpp"
for part in MAJOR MINOR PATCH; do
  grep -q "^#define TERN_VERSION_$part [0-9]" include/tern/version.hpp || fail "no TERN_VERSION_$part macro"
done
stamp "tern $version; work directory $work"

# 1. Single header.
stamp "single header: tools/amalgamate.py --check"
python3 tools/amalgamate.py --check || fail "single_include/tern/tern.hpp is stale: run python3 tools/amalgamate.py and commit it"

# 2. Install (headers only: tests, examples and benchmarks off).
configure_tern() {  # build dir, prefix, extra args
  local dir=$1 pfx=$2
  shift 2
  cmake -S . -B "$dir" -DTERN_BUILD_TESTS=OFF -DTERN_BUILD_EXAMPLES=OFF -DTERN_BUILD_BENCHMARKS=OFF \
    -DCMAKE_INSTALL_PREFIX="$pfx" "$@" > "$dir.configure.log" 2>&1 || { cat "$dir.configure.log"; fail "cmake configure ($dir)"; }
  cmake --install "$dir" > "$dir.install.log" 2>&1 || { cat "$dir.install.log"; fail "cmake --install ($dir)"; }
}
stamp "cmake --install to $prefix (include/ tree) and $prefix_single (single header)"
configure_tern "$work/tern" "$prefix"
configure_tern "$work/tern-single" "$prefix_single" -DTERN_INSTALL_SINGLE_HEADER=ON
for f in include/tern/tern.hpp include/tern/version.hpp share/cmake/tern/ternConfig.cmake \
         share/cmake/tern/ternConfigVersion.cmake share/cmake/tern/ternTargets.cmake share/pkgconfig/tern.pc; do
  [ -f "$prefix/$f" ] || fail "install is missing $f"
done
[ -f "$prefix_single/include/tern/tern.hpp" ] || fail "single-header install is missing include/tern/tern.hpp"
extra=$(cd "$prefix_single/include" && find . -type f ! -path ./tern/tern.hpp)
[ -z "$extra" ] || fail "single-header install holds more than tern/tern.hpp: $extra"
cmp -s single_include/tern/tern.hpp "$prefix_single/include/tern/tern.hpp" || fail "installed single header differs"
grep -q "find_dependency(xtensor" "$prefix/share/cmake/tern/ternConfig.cmake" || fail "ternConfig.cmake lacks find_dependency"

# 3. pkg-config.
stamp "pkg-config"
export PKG_CONFIG_PATH="$prefix/share/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
pc_version=$(pkg-config --modversion tern) || fail "pkg-config does not find tern"
[ "$pc_version" = "$version" ] || fail "pkg-config says tern $pc_version, version.hpp says $version"
pc_cflags=$(pkg-config --cflags tern) || fail "pkg-config --cflags tern"
pc_libs=$(pkg-config --libs tern) || fail "pkg-config --libs tern"
echo "pkg-config tern $pc_version: --cflags: $pc_cflags  --libs: $pc_libs"

# 4. Empty translation unit: compiled (-O2, to an object) with the installed headers through
# pkg-config's flags. The limit applies to the compiler's CPU time (user + sys), which does not
# depend on how busy a shared CI machine is; the wall-clock time is reported next to it.
stamp "empty translation unit including tern/tern.hpp"
printf '#include <tern/tern.hpp>\n' > "$work/empty_tu.cpp"
TIMEFORMAT='%R %U %S'
# shellcheck disable=SC2086
times=$( { time "$cxx" -std=c++20 -O2 $pc_cflags -c "$work/empty_tu.cpp" -o "$work/empty_tu.o" 2> "$work/empty_tu.log"; } 2>&1 ) \
  || { cat "$work/empty_tu.log"; fail "the empty translation unit does not compile"; }
read -r wall user sys <<< "$times"
cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')
echo "empty TU (#include <tern/tern.hpp>, $cxx -std=c++20 -O2): ${cpu} s CPU (user $user + sys $sys), ${wall} s wall; limit ${limit} s"
awk -v c="$cpu" -v l="$limit" 'BEGIN { exit !(c <= l) }' || fail "the empty TU took ${cpu} s of CPU time, over the ${limit} s limit"

# 5. Consumer projects: configure, build, run. No build type: the default flags, the fastest build.
consumer() {  # name, source dir, cmake args...
  local name=$1 src=$2
  shift 2
  local dir=$work/consumer-$name
  stamp "consumer $name ($src)"
  cmake -S "$src" -B "$dir" "$@" > "$dir.configure.log" 2>&1 || { cat "$dir.configure.log"; fail "consumer $name: configure"; }
  cmake --build "$dir" -j"$jobs" > "$dir.build.log" 2>&1 || { cat "$dir.build.log"; fail "consumer $name: build"; }
  local exe
  exe=$(find "$dir" -maxdepth 2 -type f -perm -u+x \( -name consumer -o -name test_package \) | head -n 1)
  [ -n "$exe" ] || fail "consumer $name: no executable built"
  "$exe" || fail "consumer $name: the program failed"
}
consumer find_package tests/consumers/find_package -DCMAKE_PREFIX_PATH="$prefix" \
  -DTERN_CONSUMER_REQUIRE_VERSION="${version%.*}"
consumer find_package-single tests/consumers/find_package -DCMAKE_PREFIX_PATH="$prefix_single"
consumer add_subdirectory tests/consumers/add_subdirectory -DTERN_SOURCE_DIR="$root"
consumer single_header tests/consumers/single_header -DTERN_SINGLE_INCLUDE_DIR="$root/single_include"
consumer test_package test_package -DCMAKE_PREFIX_PATH="$prefix"
# The mpi component (tern::mpi), where an MPI compiler wrapper says MPI is installed.
if command -v mpicxx > /dev/null; then
  consumer find_package-mpi tests/consumers/find_package_mpi -DCMAKE_PREFIX_PATH="$prefix"
fi
# The version file: a request for another minor version must not find this package.
if cmake -S tests/consumers/find_package -B "$work/consumer-wrong-version" -DCMAKE_PREFIX_PATH="$prefix" \
     -DTERN_CONSUMER_REQUIRE_VERSION=99.0 > "$work/consumer-wrong-version.log" 2>&1; then
  fail "find_package(tern 99.0) accepted tern $version"
fi

# 6. Conan recipes.
stamp "conan recipes"
python3 -m py_compile conanfile.py test_package/conanfile.py || fail "a Conan recipe does not compile"
python3 - "$version" <<'PY' || fail "conanfile.py does not have the expected shape"
# Loads the recipes against stubs of the Conan 2 API and checks what a header-only package needs.
import importlib.util, os, sys, types

expected_version = sys.argv[1]
modules = {name: types.ModuleType(name) for name in (
    "conan", "conan.errors", "conan.tools", "conan.tools.build", "conan.tools.files",
    "conan.tools.layout", "conan.tools.scm", "conan.tools.cmake")}
class ConanFile:
    pass
modules["conan"].ConanFile = ConanFile
modules["conan.errors"].ConanInvalidConfiguration = type("ConanInvalidConfiguration", (Exception,), {})
modules["conan.tools.build"].check_min_cppstd = lambda *a, **k: None
modules["conan.tools.build"].can_run = lambda *a, **k: True
modules["conan.tools.files"].copy = lambda *a, **k: None
modules["conan.tools.files"].load = lambda self, path: open(path, encoding="utf-8").read()
modules["conan.tools.layout"].basic_layout = lambda *a, **k: None
modules["conan.tools.scm"].Version = str
for name in ("CMake", "CMakeToolchain", "CMakeDeps", "cmake_layout"):
    setattr(modules["conan.tools.cmake"], name, object)
sys.modules.update(modules)

def load(path):
    spec = importlib.util.spec_from_file_location(os.path.basename(os.path.dirname(os.path.abspath(path))) or "recipe", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    classes = [c for c in vars(module).values() if isinstance(c, type) and issubclass(c, ConanFile) and c is not ConanFile]
    assert len(classes) == 1, f"{path}: expected one ConanFile class"
    return classes[0]

recipe = load("conanfile.py")()
assert recipe.name == "tern", recipe.name
assert recipe.package_type == "header-library", recipe.package_type
recipe.recipe_folder = os.getcwd()
recipe.set_version()
assert recipe.version == expected_version, f"set_version() gives {recipe.version}, version.hpp {expected_version}"
required = []
recipe.requires = lambda ref, **kwargs: required.append(ref.split("/")[0])
recipe.requirements()
for dep in ("xtensor", "xtl", "xsimd"):
    assert dep in required, f"no requirement on {dep}: {required}"
cleared = []
recipe.info = types.SimpleNamespace(clear=lambda: cleared.append(True))
recipe.package_id()
assert cleared, "package_id() must clear the package id (header-only)"
test = load("test_package/conanfile.py")
for method in ("requirements", "build", "test"):
    assert callable(getattr(test, method, None)), f"test_package/conanfile.py: no {method}()"
print(f"conanfile.py: tern/{recipe.version}, header-library, requires {', '.join(required)}, empty package id")
PY

# 7. Doxygen.
stamp "doxygen"
command -v doxygen > /dev/null || fail "doxygen is not installed (tools/install_deps.sh without --minimal installs it)"
doxygen_out=$work/doxygen
mkdir -p "$doxygen_out"
( cat Doxyfile; echo "OUTPUT_DIRECTORY = $doxygen_out"; echo "PROJECT_NUMBER = $version" ) \
  | doxygen - > "$work/doxygen.log" 2>&1 || { cat "$work/doxygen.log"; fail "doxygen failed"; }
if [ -s "$work/doxygen.log" ]; then
  cat "$work/doxygen.log"
  fail "doxygen printed $(grep -c . "$work/doxygen.log") line(s) of warnings (QUIET = YES: any output is a warning)"
fi
[ -f "$doxygen_out/html/index.html" ] || fail "doxygen wrote no html/index.html"
echo "doxygen: no warnings; $(find "$doxygen_out/html" -name '*.html' | wc -l) pages in $doxygen_out/html"

stamp "all packaging checks passed"
