#pragma once
/// @file io/checked.hpp
/// @brief What every file reader shares to survive hostile input (docs/file-formats.md): fixed
/// caps, overflow-checked arithmetic on values read from a file, short quotes of bad values in
/// messages and a JSON parse with a nesting limit.

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <new>
#include <optional>
#include <string>
#include <string_view>

#include "../error.hpp"

namespace tern::io {

/// @brief Fixed caps on what any file may declare, checked before anything is allocated.
namespace limits {
/// Most dimensions of one tensor or IDX array.
inline constexpr std::size_t max_rank = 8;
/// Most elements of one tensor, counting only the non-zero dimensions: a shape with a zero
/// dimension holds no data, but its strides are still products of the other dimensions. The cap
/// keeps every stride and byte count far from overflow (2^48 x 8 bytes < 2^63); what is actually
/// allocated is bounded by the bytes of the file, checked separately.
inline constexpr std::uint64_t max_elements = std::uint64_t{1} << 48;
/// Deepest nesting of arrays and objects in a JSON header.
inline constexpr std::size_t max_json_depth = 64;
/// Characters of a bad value quoted in an error message.
inline constexpr std::size_t max_quote = 80;
}  // namespace limits

namespace detail {

/// @brief a * b, or nothing if it does not fit in std::uint64_t.
constexpr std::optional<std::uint64_t> checked_mul(std::uint64_t a, std::uint64_t b) {
    std::uint64_t r = 0;
    if (__builtin_mul_overflow(a, b, &r)) return std::nullopt;
    return r;
}

/// @brief a + b, or nothing if it does not fit in std::uint64_t.
constexpr std::optional<std::uint64_t> checked_add(std::uint64_t a, std::uint64_t b) {
    std::uint64_t r = 0;
    if (__builtin_add_overflow(a, b, &r)) return std::nullopt;
    return r;
}

/// @brief Product of the non-zero entries of @p shape (what a tensor's strides grow to), or
/// nothing if the rank exceeds limits::max_rank or the product exceeds limits::max_elements.
template <class Shape>
std::optional<std::uint64_t> checked_extent(const Shape& shape) {
    if (shape.size() > limits::max_rank) return std::nullopt;
    std::uint64_t n = 1;
    for (auto d : shape) {
        if (d == 0) continue;
        const auto m = checked_mul(n, static_cast<std::uint64_t>(d));
        if (!m || *m > limits::max_elements) return std::nullopt;
        n = *m;
    }
    return n;
}

/// @brief Bytes of a tensor of @p shape with @p elem-byte elements (zero if a dimension is zero),
/// or nothing if the shape breaks a cap (see checked_extent).
template <class Shape>
std::optional<std::uint64_t> checked_bytes(const Shape& shape, std::size_t elem) {
    const auto extent = checked_extent(shape);
    if (!extent) return std::nullopt;
    for (auto d : shape)
        if (d == 0) return 0;
    return checked_mul(*extent, elem);
}

/// @brief @p s quoted with single quotes, cut to limits::max_quote bytes ("...(N bytes)" after a cut).
inline std::string quote(std::string_view s, std::size_t max = limits::max_quote) {
    // Built with append (GCC 12 warns falsely, -Wrestrict, about "'" + std::string).
    std::string out(1, '\'');
    out.append(s.substr(0, max));
    out.append(s.size() <= max ? "'" : "...'");
    if (s.size() > max) out.append(" (").append(std::to_string(s.size())).append(" bytes)");
    return out;
}

/// Appends at most @p budget characters of @p j to @p out; the recursion is bounded by the budget
/// (every level of nesting writes at least one character), not by the depth of @p j.
inline void dump_prefix(const nlohmann::json& j, std::string& out, std::size_t budget) {
    if (out.size() >= budget) return;
    if (j.is_array() || j.is_object()) {
        out += j.is_array() ? '[' : '{';
        bool first = true;
        for (auto it = j.begin(); it != j.end() && out.size() < budget; ++it) {
            if (!first) out += ',';
            first = false;
            if (j.is_object()) {
                std::string key;
                try {
                    key = nlohmann::json(it.key()).dump();
                } catch (const nlohmann::json::exception&) {
                    key = "\"?\"";  // not valid UTF-8
                }
                out += key.substr(0, budget > out.size() ? budget - out.size() : 0);
                out += ':';
            }
            dump_prefix(it.value(), out, budget);
        }
        if (out.size() < budget) out += j.is_array() ? ']' : '}';
        return;
    }
    std::string text;
    try {
        text = j.dump();
    } catch (const nlohmann::json::exception&) {
        text = "\"?\"";  // a string that is not valid UTF-8
    }
    out += text.substr(0, budget - out.size());
}

/// @brief At most limits::max_quote characters of @p j as JSON text, "..." appended after a cut.
/// Never dumps the whole document, so it is safe on any value, however large or deep.
inline std::string dump_short(const nlohmann::json& j, std::size_t max = limits::max_quote) {
    std::string out;
    dump_prefix(j, out, max + 1);
    if (out.size() > max) {
        out.resize(max);
        out += "...";
    }
    return out;
}

/// @brief Parses @p text as JSON, refusing nesting deeper than limits::max_json_depth.
/// @throws tern::error starting with @p where ("<where> is not valid JSON: ...") for invalid JSON or
///         too deep nesting; the message
///         quotes the parser's short description, never the document.
inline nlohmann::json parse_json_limited(std::string_view text, const std::string& where,
                                         std::size_t max_depth = limits::max_json_depth) {
    const nlohmann::json::parser_callback_t limit = [&](int depth, nlohmann::json::parse_event_t event,
                                                        nlohmann::json&) {
        if ((event == nlohmann::json::parse_event_t::object_start ||
             event == nlohmann::json::parse_event_t::array_start) &&
            static_cast<std::size_t>(depth) >= max_depth) {
            throw tern::error(where + " nests JSON arrays and objects deeper than " + std::to_string(max_depth) +
                              " levels");
        }
        return true;
    };
    try {
        return nlohmann::json::parse(text.begin(), text.end(), limit);
    } catch (const nlohmann::json::exception& e) {
        tern::detail::fail(where, " is not valid JSON: ", quote(e.what(), 160));
    } catch (const std::bad_alloc&) {
        tern::detail::fail(where, " is too large to hold in memory");
    }
}

}  // namespace detail
}  // namespace tern::io
