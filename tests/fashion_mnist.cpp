// The real Fashion-MNIST files (Debian package dataset-fashion-mnist, installed by
// tools/install_deps.sh): counts, balance and pixel range. A separate program from test_idx so that
// a machine without the data reports the test as skipped (exit code 77, ctest's SKIP_RETURN_CODE)
// instead of passing it.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <vector>

#include "tern/data/idx.hpp"

namespace fs = std::filesystem;

namespace {
// TERN_FASHION_MNIST_DIR overrides the Debian location (and lets one check the skip).
const fs::path fashion_mnist_dir = std::getenv("TERN_FASHION_MNIST_DIR") ? std::getenv("TERN_FASHION_MNIST_DIR")
                                                                         : "/usr/share/datasets/fashion-mnist";
}  // namespace

int main(int argc, char** argv) {
    std::error_code ec;
    if (!fs::is_directory(fashion_mnist_dir, ec)) {
        std::printf("SKIP: %s not found (install dataset-fashion-mnist: tools/install_deps.sh)\n",
                    fashion_mnist_dir.string().c_str());
        return 77;
    }
    return Catch::Session().run(argc, argv);
}

TEST_CASE("Fashion-MNIST loads", "[idx][dataset]") {
    const fs::path dir = fashion_mnist_dir;
    for (bool train : {true, false}) {
        const auto data = tern::data::load_mnist_dir(dir, train);
        const std::size_t n = train ? 60000 : 10000;
        REQUIRE(data.inputs.shape() == tern::shape_t{n, 784});
        REQUIRE(data.labels.size() == n);
        std::vector<std::size_t> per_class(10, 0);
        std::size_t out_of_range = 0;
        for (int l : data.labels) {
            if (l < 0 || l > 9) ++out_of_range;
            else per_class[std::size_t(l)]++;
        }
        REQUIRE(out_of_range == 0);
        for (std::size_t c : per_class) REQUIRE(c == n / 10);  // Fashion-MNIST is balanced
        float lo = 1, hi = 0;
        const float* px = data.inputs.data();
        for (std::size_t i = 0, size = data.inputs.size(); i < size; ++i) {
            lo = px[i] < lo ? px[i] : lo;
            hi = px[i] > hi ? px[i] : hi;
        }
        REQUIRE(lo == 0.0f);
        REQUIRE(hi == 1.0f);
    }
}
