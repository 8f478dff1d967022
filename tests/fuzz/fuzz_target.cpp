// One libFuzzer target: TERN_FUZZ_TARGET names the harness function (tests/fuzz/CMakeLists.txt
// builds this file once per target, e.g. fuzz_idx with -DTERN_FUZZ_TARGET=run_idx).
#include <cstddef>
#include <cstdint>

#include "harness.hpp"

#ifndef TERN_FUZZ_TARGET
#error "define TERN_FUZZ_TARGET as one of the run_* functions of harness.hpp"
#endif

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    tern_fuzz::TERN_FUZZ_TARGET(data, size);
    return 0;
}
