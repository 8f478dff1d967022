// A user's program, shared by the three consumer projects (find_package, add_subdirectory,
// single_header): it includes tern the way a user would, defines a model once, converts it to a
// ternary policy and runs it. CI builds and runs each project (tools/ci_packaging.sh).
#include <tern/tern.hpp>

#include <cstdio>
#include <string>

#ifndef TERN_CONSUMER_KIND
#error "each consumer project defines TERN_CONSUMER_KIND"
#endif

template <class P>
auto make_model() {
    return tern::sequential{tern::linear<P>(4, 8), tern::relu{}, tern::linear<P>(8, 2)};
}

int main() {
    int failures = 0;
    const auto check = [&](bool ok, const char* what) {
        if (!ok) {
            std::fprintf(stderr, "consumer (%s): FAILED: %s\n", TERN_CONSUMER_KIND, what);
            ++failures;
        }
    };
    const std::string expected = std::to_string(TERN_VERSION_MAJOR) + "." + std::to_string(TERN_VERSION_MINOR) + "." +
                                 std::to_string(TERN_VERSION_PATCH);
    check(expected == tern::version_string, "TERN_VERSION_MAJOR/MINOR/PATCH match tern::version_string");
#ifdef TERN_CONSUMER_EXPECTED_VERSION
    check(std::string(TERN_CONSUMER_EXPECTED_VERSION) == tern::version_string, "the package version is the header's");
#endif
#if defined(TERN_CONSUMER_EXPECT_SINGLE_HEADER)
#if TERN_CONSUMER_EXPECT_SINGLE_HEADER
#ifndef TERN_SINGLE_HEADER
    check(false, "expected the single header, got include/tern/");
#endif
#else
#ifdef TERN_SINGLE_HEADER
    check(false, "expected include/tern/, got the single header");
#endif
#endif
#endif

    tern::manual_seed(1);
    auto model = make_model<tern::fp32>();
    auto ternary = tern::convert<tern::absmean_ternary>(model);
    tern::tensor x(tern::shape_t{3, 4});
    for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] = float(i % 5) - 2.0f;
    const tern::tensor y = model.forward(x), yt = ternary.forward(x);
    check(y.dimension() == 2 && y.shape()[0] == 3 && y.shape()[1] == 2, "fp32 output shape [3, 2]");
    check(yt.dimension() == 2 && yt.shape()[0] == 3 && yt.shape()[1] == 2, "ternary output shape [3, 2]");
    check(tern::policy_name(ternary) == "absmean", "converted policy");

    std::printf("consumer (%s): tern %s, %s -> %s\n", TERN_CONSUMER_KIND, tern::version_string,
                model.describe().c_str(), ternary.describe().c_str());
    return failures == 0 ? 0 : 1;
}
