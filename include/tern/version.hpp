#pragma once
/// @file version.hpp
/// @brief tern's version macros.

#define TERN_VERSION_MAJOR 0
#define TERN_VERSION_MINOR 1
#define TERN_VERSION_PATCH 0
#define TERN_VERSION_STRING "0.1.0"

namespace tern {
/// @brief The library version as "major.minor.patch".
inline constexpr const char* version_string = TERN_VERSION_STRING;
}  // namespace tern
