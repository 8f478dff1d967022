// Image augmentation: random crop with padding and horizontal flip are seeded, shape-preserving
// shifts/mirrors of each image, and reproducible per (seed, epoch).
#include <catch2/catch.hpp>

#include "gradcheck.hpp"
#include "tern/data/augment.hpp"

namespace {

tern::tensor numbered_images(std::size_t B, std::size_t C, std::size_t H, std::size_t W) {
    tern::tensor x(tern::shape_t{B, C, H, W});
    for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] = float(i + 1);  // every pixel distinct and non-zero
    return x;
}

}  // namespace

TEST_CASE("random_crop shifts each image by at most the padding, filling with zeros", "[augment]") {
    const tern::tensor original = numbered_images(32, 2, 6, 5);
    tern::tensor x = original;
    std::mt19937_64 rng(3);
    tern::data::random_crop(x, 2, rng);
    std::size_t shifted = 0;
    for (std::size_t b = 0; b < 32; ++b) {
        // Find the shift from the first non-zero pixel of channel 0 and check the whole image against it.
        bool found = false;
        long dy = 0, dx = 0;
        for (long y = 0; y < 6 && !found; ++y)
            for (long xx = 0; xx < 5 && !found; ++xx) {
                const float v = x(b, 0, std::size_t(y), std::size_t(xx));
                if (v == 0.0f) continue;
                const std::size_t idx = std::size_t(v - 1) - b * 60;
                dy = long(idx / 5) - y;
                dx = long(idx % 5) - xx;
                found = true;
            }
        REQUIRE(found);
        CHECK(std::abs(dy) <= 2);
        CHECK(std::abs(dx) <= 2);
        shifted += (dy != 0 || dx != 0);
        for (std::size_t c = 0; c < 2; ++c)
            for (long y = 0; y < 6; ++y)
                for (long xx = 0; xx < 5; ++xx) {
                    const long sy = y + dy, sx = xx + dx;
                    const float want = (sy >= 0 && sy < 6 && sx >= 0 && sx < 5)
                                           ? original(b, c, std::size_t(sy), std::size_t(sx))
                                           : 0.0f;
                    REQUIRE(x(b, c, std::size_t(y), std::size_t(xx)) == want);
                }
    }
    CHECK(shifted > 16);  // 24 of 25 offsets move the image
}

TEST_CASE("random_horizontal_flip mirrors about half of the images", "[augment]") {
    const tern::tensor original = numbered_images(200, 3, 2, 4);
    tern::tensor x = original;
    std::mt19937_64 rng(5);
    tern::data::random_horizontal_flip(x, rng);
    std::size_t flipped = 0;
    for (std::size_t b = 0; b < 200; ++b) {
        const bool f = x(b, 0, 0, 0) != original(b, 0, 0, 0);
        flipped += f;
        for (std::size_t c = 0; c < 3; ++c)
            for (std::size_t y = 0; y < 2; ++y)
                for (std::size_t xx = 0; xx < 4; ++xx)
                    REQUIRE(x(b, c, y, xx) == original(b, c, y, f ? 3 - xx : xx));
    }
    CHECK(flipped > 70);
    CHECK(flipped < 130);
}

TEST_CASE("image_augmenter is reproducible per seed and epoch", "[augment]") {
    const tern::tensor images = tern_test::random_tensor({16, 3, 8, 8}, 1);
    const auto run = [&](std::uint64_t seed, std::uint64_t epoch) {
        tern::data::image_augmenter aug({.crop_padding = 2, .horizontal_flip = true, .seed = seed});
        aug.begin_epoch(epoch);
        tern::tensor a = images, b = images;
        aug.apply(a);
        aug.apply(b);  // the stream moves on: a second batch gets other draws
        return std::make_pair(a, b);
    };
    const auto r1 = run(7, 0), r2 = run(7, 0), r3 = run(8, 0), r4 = run(7, 1);
    CHECK((r1.first == r2.first));
    CHECK((r1.second == r2.second));
    CHECK((r1.first != r1.second));
    CHECK((r1.first != r3.first));
    CHECK((r1.first != r4.first));
    tern::data::image_augmenter none({});
    CHECK_FALSE(none.active());
    tern::tensor same = images;
    none.apply(same);
    CHECK((same == images));
}

TEST_CASE("augmentation rejects tensors that are not NCHW", "[augment][errors]") {
    tern::tensor flat = tern::zeros({4, 784});
    std::mt19937_64 rng(1);
    REQUIRE_THROWS_WITH(tern::data::random_crop(flat, 2, rng),
                        Catch::Contains("random_crop") && Catch::Contains("[4, 784]"));
    REQUIRE_THROWS_WITH(tern::data::random_horizontal_flip(flat, rng), Catch::Contains("random_horizontal_flip"));
    tern::data::image_augmenter aug({.horizontal_flip = true});
    REQUIRE_THROWS_AS(aug.apply(flat), tern::error);
}
