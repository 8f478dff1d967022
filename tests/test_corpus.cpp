// corpus: windows with next-token targets, the validation split, and the unigram entropy.
#include <catch2/catch.hpp>
#include <cmath>
#include <random>

#include "tern/text/corpus.hpp"

TEST_CASE("training windows pair each token with the next one", "[corpus]") {
    std::vector<int> tokens(1000);
    for (std::size_t i = 0; i < tokens.size(); ++i) tokens[i] = int(i % 97);
    tern::text::corpus c(tokens, 16, 0.1);
    CHECK(c.train_tokens().size() == 900);
    CHECK(c.validation_tokens().size() == 100);
    CHECK(c.validation_tokens().front() == 900 % 97);
    std::mt19937_64 rng(1);
    for (int rep = 0; rep < 20; ++rep) {
        const auto b = c.sample(3, rng);
        REQUIRE(b.inputs.shape() == tern::shape_t{3, 16});
        REQUIRE(b.targets.size() == 48);
        for (std::size_t r = 0; r < 3; ++r)
            for (std::size_t t = 0; t < 16; ++t) {
                CHECK(b.targets[r * 16 + t] == (int(b.inputs(r, t)) + 1) % 97);
                // training windows stay inside the training part (ids there are 0..96 in order)
            }
    }
}

TEST_CASE("validation windows tile the held-out tail without overlap", "[corpus]") {
    std::vector<int> tokens(1000);
    for (std::size_t i = 0; i < tokens.size(); ++i) tokens[i] = int(i);
    tern::text::corpus c(tokens, 10, 0.2);
    CHECK(c.validation_windows() == 19);  // (200 - 1) / 10
    const auto b = c.validation_batch(0, 19);
    for (std::size_t w = 0; w < 19; ++w)
        for (std::size_t t = 0; t < 10; ++t) {
            CHECK(b.inputs(w, t) == float(800 + w * 10 + t));
            CHECK(b.targets[w * 10 + t] == int(801 + w * 10 + t));
        }
    const auto one = c.validation_batch(18, 1);
    CHECK(one.inputs(0, 0) == 980.0f);
    REQUIRE_THROWS_WITH(c.validation_batch(18, 2), Catch::Contains("exceed"));
    std::mt19937_64 rng(2);
    for (int rep = 0; rep < 50; ++rep) {
        const auto s = c.sample(4, rng);
        for (int v : s.targets) CHECK(v < 800);  // training targets never reach the validation part
    }
}

TEST_CASE("corpus refuses texts too short for a window", "[corpus][errors]") {
    REQUIRE_THROWS_WITH(tern::text::corpus(std::vector<int>(10, 1), 16), Catch::Contains("fewer than one window"));
    REQUIRE_THROWS_WITH(tern::text::corpus(std::vector<int>(100, 1), 16, 0.1),
                        Catch::Contains("validation part has 10"));
    REQUIRE_THROWS_WITH(tern::text::corpus(std::vector<int>(100, 1), 16, 1.0), Catch::Contains("[0, 1)"));
}

TEST_CASE("unigram entropy in bits per token", "[corpus][entropy]") {
    CHECK(tern::text::unigram_entropy_bits({}) == 0.0);
    CHECK(tern::text::unigram_entropy_bits({5, 5, 5}) == 0.0);
    CHECK(std::fabs(tern::text::unigram_entropy_bits({0, 1, 2, 3}) - 2.0) < 1e-12);
    CHECK(std::fabs(tern::text::unigram_entropy_bits({0, 0, 0, 1}) - 0.8112781244591328) < 1e-12);
}
