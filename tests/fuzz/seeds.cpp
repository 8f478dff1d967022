// Writes the seed corpus of every fuzz target with tern's own writers:
//   fuzz_seeds DIR    -> DIR/<target>/seed*  (tools/fuzz.sh and .ci/run run it before fuzzing)
#include <cstdio>
#include <exception>

#include "harness.hpp"

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    try {
        const std::size_t n = tern_fuzz::write_seeds(argv[1]);
        std::printf("fuzz_seeds: wrote %zu seed files under %s\n", n, argv[1]);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "fuzz_seeds: %s\n", e.what());
        return 1;
    }
    return 0;
}
