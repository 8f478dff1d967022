#pragma once
/// @file random.hpp
/// @brief tern's random generator: one seedable stream used for parameter initialization.

#include <cstdint>
#include <random>

namespace tern {

/// @brief The generator behind parameter initialization and dropout seeds (per thread).
inline std::mt19937_64& global_rng() {
    thread_local std::mt19937_64 rng(0x7465726eULL);  // "tern"
    return rng;
}

/// @brief Reseeds the initialization stream, so that a model built after it is reproducible.
inline void manual_seed(std::uint64_t seed) { global_rng().seed(seed); }

namespace detail {

/// Fills [first, first + n) with U(-bound, bound) from the global stream.
inline void fill_uniform(float* first, std::size_t n, float bound) {
    std::uniform_real_distribution<float> dist(-bound, bound);
    auto& rng = global_rng();
    for (std::size_t i = 0; i < n; ++i) first[i] = dist(rng);
}

}  // namespace detail
}  // namespace tern
