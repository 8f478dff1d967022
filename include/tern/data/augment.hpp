#pragma once
/// @file data/augment.hpp
/// @brief Seeded image augmentation for NCHW batches: random crop with zero padding, horizontal flip.
///
/// Random numbers come from std::mt19937_64 through tern's own bounded draw (no
/// std::uniform_int_distribution, whose output differs between standard libraries), so the same
/// seed gives the same augmented images everywhere.

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "../tensor.hpp"
#include "batches.hpp"

namespace tern::data {

namespace detail {

/// Checks that @p images is [B, C, H, W] and returns it as a shape vector.
inline shape_t image_batch_shape(const tensor& images, const char* where) {
    require(images.dimension() == 4, where, ": expected images [B, C, H, W] (NCHW), got shape ",
            shape_string(images.shape()));
    return to_shape(images.shape());
}

/// Shifts every plane of one image by (dy, dx) in place: out[y][x] = in[y + dy][x + dx], 0 outside.
inline void shift_image(float* img, std::size_t C, std::size_t H, std::size_t W, long dy, long dx,
                        std::vector<float>& scratch) {
    scratch.assign(img, img + C * H * W);
    for (std::size_t c = 0; c < C; ++c) {
        const float* in = scratch.data() + c * H * W;
        float* out = img + c * H * W;
        for (std::size_t y = 0; y < H; ++y) {
            const long sy = long(y) + dy;
            float* row = out + y * W;
            if (sy < 0 || sy >= long(H)) {
                std::fill(row, row + W, 0.0f);
                continue;
            }
            const float* src = in + std::size_t(sy) * W;
            for (std::size_t x = 0; x < W; ++x) {
                const long sx = long(x) + dx;
                row[x] = (sx >= 0 && sx < long(W)) ? src[sx] : 0.0f;
            }
        }
    }
}

/// Mirrors every row of one image in place.
inline void flip_image(float* img, std::size_t C, std::size_t H, std::size_t W) {
    for (std::size_t r = 0; r < C * H; ++r) std::reverse(img + r * W, img + (r + 1) * W);
}

}  // namespace detail

/// @brief Random crop with zero padding, in place: each image is padded by @p padding zeros on
/// every side and an H x W window is cut at a uniformly drawn offset in [0, 2 padding]^2
/// (torchvision's RandomCrop(size, padding)). Draws two numbers per image from @p rng.
/// @throws tern::error if @p images is not [B, C, H, W].
inline void random_crop(tensor& images, std::size_t padding, std::mt19937_64& rng) {
    const shape_t s = detail::image_batch_shape(images, "random_crop");
    if (padding == 0) return;
    std::vector<float> scratch;
    const std::size_t image = s[1] * s[2] * s[3];
    for (std::size_t b = 0; b < s[0]; ++b) {
        const long dy = long(detail::uniform_below(rng, 2 * padding + 1)) - long(padding);
        const long dx = long(detail::uniform_below(rng, 2 * padding + 1)) - long(padding);
        if (dy != 0 || dx != 0) detail::shift_image(images.data() + b * image, s[1], s[2], s[3], dy, dx, scratch);
    }
}

/// @brief Mirrors each image left-right with probability 1/2, in place (one draw per image).
/// @throws tern::error if @p images is not [B, C, H, W].
inline void random_horizontal_flip(tensor& images, std::mt19937_64& rng) {
    const shape_t s = detail::image_batch_shape(images, "random_horizontal_flip");
    const std::size_t image = s[1] * s[2] * s[3];
    for (std::size_t b = 0; b < s[0]; ++b)
        if (detail::uniform_below(rng, 2) == 1) detail::flip_image(images.data() + b * image, s[1], s[2], s[3]);
}

/// @brief What an image_augmenter does to each batch.
struct augment_options {
    std::size_t crop_padding = 0;  ///< random crop with this zero padding (0 = no crop)
    bool horizontal_flip = false;  ///< mirror half of the images
    std::uint64_t seed = 0;        ///< same seed (and epoch) -> same augmentations
};

/// @brief Applies random crop and flip to training batches, reproducibly.
///
/// The stream restarts at begin_epoch(e) from a pure function of (seed, e), so an epoch
/// replays identically (e.g. after resuming from a checkpoint) when its batches come in the same order.
/// @code
///   data::image_augmenter aug({.crop_padding = 4, .horizontal_flip = true, .seed = 1});
///   aug.begin_epoch(epoch);
///   while (batches.next(b)) { aug.apply(b.inputs); ... }
/// @endcode
class image_augmenter {
public:
    explicit image_augmenter(augment_options options) : options_(options) { begin_epoch(0); }

    /// Restarts the random stream for epoch @p epoch.
    void begin_epoch(std::uint64_t epoch) { rng_.seed(detail::mix_seed(options_.seed ^ 0x617567ULL, epoch)); }

    /// Augments a batch [B, C, H, W] in place: crop first, then flip.
    /// @throws tern::error if @p images is not [B, C, H, W].
    void apply(tensor& images) {
        detail::image_batch_shape(images, "image_augmenter");
        if (options_.crop_padding) random_crop(images, options_.crop_padding, rng_);
        if (options_.horizontal_flip) random_horizontal_flip(images, rng_);
    }

    /// Whether apply() changes anything.
    bool active() const { return options_.crop_padding > 0 || options_.horizontal_flip; }
    const augment_options& options() const { return options_; }

private:
    augment_options options_;
    std::mt19937_64 rng_;
};

}  // namespace tern::data
