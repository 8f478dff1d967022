#pragma once
/// @file error.hpp
/// @brief tern::error and the always-on checks used at the API edge.

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace tern {

/// @brief The one exception type tern throws for bad input, bad files and misuse.
///
/// Messages name the place (layer, file, flag), what was expected and what was found.
class error : public std::runtime_error {
public:
    explicit error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {

template <class... Parts>
std::string concat(Parts&&... parts) {
    std::ostringstream out;
    (out << ... << std::forward<Parts>(parts));
    return out.str();
}

/// Throws tern::error with the concatenation of @p parts.
template <class... Parts>
[[noreturn]] void fail(Parts&&... parts) {
    throw error(concat(std::forward<Parts>(parts)...));
}

/// Always-on check at the API edge: throws tern::error built from @p parts when @p ok is false.
/// The message parts are only formatted on failure.
template <class... Parts>
inline void require(bool ok, Parts&&... parts) {
    if (!ok) fail(std::forward<Parts>(parts)...);
}

}  // namespace detail
}  // namespace tern

/// Internal invariant check: compiled out unless TERN_DEBUG is defined.
#ifdef TERN_DEBUG
#define TERN_ASSERT(cond) \
    ((cond) ? (void)0 : ::tern::detail::fail(__FILE__, ":", __LINE__, ": internal check failed: ", #cond))
#else
#define TERN_ASSERT(cond) ((void)0)
#endif
