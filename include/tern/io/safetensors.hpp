#pragma once
/// @file safetensors.hpp
/// @brief Reading and writing the safetensors file format.
///
/// Layout: an 8-byte little-endian unsigned header length N, N bytes of UTF-8 JSON (optionally
/// padded with trailing spaces), then the raw little-endian tensor bytes. The JSON maps each
/// tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the
/// start of the byte buffer) and may hold "__metadata__": {string: string}.
///
/// Loading trusts nothing in the header (docs/file-formats.md): every length, offset and shape is
/// checked against the real size of the data and against the caps of io::limits (rank, elements,
/// JSON nesting) before a byte is allocated for it, and the tensors must tile the buffer exactly
/// (no overlaps, no gaps, no trailing bytes). Messages quote at most a short prefix of a bad value.

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#if defined(_WIN32)
#include <process.h>
#else
#include <unistd.h>
#endif

#include "../error.hpp"
#include "../tensor.hpp"
#include "checked.hpp"

namespace tern::io {

/// @brief Element types of the safetensors format.
enum class dtype { f32, f16, bf16, f64, i8, u8, i16, i32, i64, u32, boolean };

/// @brief Size in bytes of one element of @p t.
constexpr std::size_t dtype_size(dtype t) {
    switch (t) {
        case dtype::f64:
        case dtype::i64: return 8;
        case dtype::f32:
        case dtype::i32:
        case dtype::u32: return 4;
        case dtype::f16:
        case dtype::bf16:
        case dtype::i16: return 2;
        case dtype::i8:
        case dtype::u8:
        case dtype::boolean: return 1;
    }
    return 0;
}

/// @brief The safetensors spelling of @p t ("F32", "BF16", "BOOL", ...).
constexpr const char* dtype_name(dtype t) {
    switch (t) {
        case dtype::f32: return "F32";
        case dtype::f16: return "F16";
        case dtype::bf16: return "BF16";
        case dtype::f64: return "F64";
        case dtype::i8: return "I8";
        case dtype::u8: return "U8";
        case dtype::i16: return "I16";
        case dtype::i32: return "I32";
        case dtype::i64: return "I64";
        case dtype::u32: return "U32";
        case dtype::boolean: return "BOOL";
    }
    return "?";
}

/// @brief The dtype spelled @p name, or nothing if tern does not know it.
inline std::optional<dtype> parse_dtype(std::string_view name) {
    for (dtype t : {dtype::f32, dtype::f16, dtype::bf16, dtype::f64, dtype::i8, dtype::u8, dtype::i16, dtype::i32,
                    dtype::i64, dtype::u32, dtype::boolean})
        if (name == dtype_name(t)) return t;
    return std::nullopt;
}

/// @brief Largest header tern accepts; a longer one is treated as a corrupt file.
inline constexpr std::uint64_t safetensors_max_header_bytes = 100'000'000;

/// @brief One tensor as stored: element type, shape and little-endian bytes
/// (exactly product(shape) * dtype_size(type) of them).
struct stored_tensor {
    dtype type = dtype::f32;
    shape_t shape;
    std::vector<std::uint8_t> bytes;
};

namespace detail {

/// product(shape) * elem, or nothing if the shape breaks a cap of io::limits (rank, elements).
inline std::optional<std::size_t> checked_byte_count(const shape_t& shape, std::size_t elem) {
    const auto n = checked_bytes(shape, elem);
    if (!n || *n > std::numeric_limits<std::size_t>::max()) return std::nullopt;
    return static_cast<std::size_t>(*n);
}

inline std::string list_names(const std::vector<std::string>& names, std::size_t max_shown = 5) {
    if (names.empty()) return "(none)";
    std::string s;
    for (std::size_t i = 0; i < names.size() && i < max_shown; ++i) s += (i ? ", " : "") + quote(names[i]);
    if (names.size() > max_shown) s += ", ... (" + std::to_string(names.size()) + " in all)";
    return s;
}

/// Copies @p n floats into little-endian bytes (swapping on big-endian hosts).
inline void floats_to_le(const float* src, std::size_t n, std::uint8_t* dst) {
    if (n == 0) return;
    std::memcpy(dst, src, n * sizeof(float));
    if constexpr (std::endian::native == std::endian::big)
        for (std::size_t i = 0; i < n; ++i) std::reverse(dst + 4 * i, dst + 4 * i + 4);
}

/// Reads @p n little-endian floats from @p src.
inline void le_to_floats(const std::uint8_t* src, std::size_t n, float* dst) {
    if (n == 0) return;
    std::memcpy(dst, src, n * sizeof(float));
    if constexpr (std::endian::native == std::endian::big) {
        auto* b = reinterpret_cast<std::uint8_t*>(dst);
        for (std::size_t i = 0; i < n; ++i) std::reverse(b + 4 * i, b + 4 * i + 4);
    }
}

}  // namespace detail

/// @brief The contents of a safetensors file: string metadata and named tensors.
class safetensors_data {
public:
    /// The "__metadata__" map (string to string).
    std::map<std::string, std::string> metadata;
    /// Tensors by name; std::map keeps files deterministic (sorted names).
    std::map<std::string, stored_tensor> tensors;
    /// Where the data came from ("safetensors file 'x'"), used in messages; empty if built in memory.
    std::string source;

    /// @brief Stores @p t as F32 under @p name, replacing any tensor of that name.
    /// @throws tern::error if @p name is the reserved "__metadata__".
    void put(const std::string& name, const tensor& t) {
        check_name(name);
        stored_tensor s{dtype::f32, tern::detail::to_shape(t.shape()), std::vector<std::uint8_t>(t.size() * sizeof(float))};
        // The layout type of tern::tensor is row-major, so data() is the C-order element sequence.
        detail::floats_to_le(t.data(), t.size(), s.bytes.data());
        tensors[name] = std::move(s);
    }

    /// @brief Stores raw little-endian @p bytes of element type @p type and shape @p shape.
    /// @throws tern::error if bytes.size() != product(shape) * dtype_size(type) or the name is reserved.
    void put_bytes(const std::string& name, dtype type, const shape_t& shape, std::vector<std::uint8_t> bytes) {
        check_name(name);
        const auto need = detail::checked_byte_count(shape, dtype_size(type));
        tern::detail::require(need.has_value() && *need == bytes.size(), prefix(), "put_bytes('", name, "'): dtype ",
                              dtype_name(type), " with shape ", tern::detail::shape_string(shape), " needs ",
                              need ? std::to_string(*need) : std::string("more than size_t can hold"),
                              " bytes, got ", bytes.size());
        tensors[name] = stored_tensor{type, shape, std::move(bytes)};
    }

    /// @brief Whether a tensor named @p name is present.
    bool contains(const std::string& name) const { return tensors.count(name) != 0; }

    /// @brief The tensor named @p name.
    /// @throws tern::error naming the missing tensor and listing some of the present ones.
    const stored_tensor& at(const std::string& name) const {
        auto it = tensors.find(name);
        if (it == tensors.end())
            tern::detail::fail(prefix(), "no tensor named '", name, "'; present: ", detail::list_names(names()));
        return it->second;
    }

    /// @brief The F32 tensor @p name, checked to have shape @p expected_shape.
    /// @throws tern::error if it is missing, not F32, or has another shape (both shapes in the message).
    tensor get_f32(const std::string& name, const shape_t& expected_shape) const {
        const stored_tensor& s = at(name);
        tern::detail::require(s.type == dtype::f32 && s.shape == expected_shape, prefix(), "tensor '", name,
                              "': expected F32 with shape ", tern::detail::shape_string(expected_shape), ", found ",
                              dtype_name(s.type), " with shape ", tern::detail::shape_string(s.shape));
        return decode_f32(name, s);
    }

    /// @brief The F32 tensor @p name, whatever its shape.
    /// @throws tern::error if it is missing or not F32.
    tensor get_f32(const std::string& name) const {
        const stored_tensor& s = at(name);
        tern::detail::require(s.type == dtype::f32, prefix(), "tensor '", name, "': expected dtype F32, found ",
                              dtype_name(s.type), " with shape ", tern::detail::shape_string(s.shape));
        return decode_f32(name, s);
    }

    /// @brief All tensor names, sorted.
    std::vector<std::string> names() const {
        std::vector<std::string> out;
        out.reserve(tensors.size());
        for (const auto& kv : tensors) out.push_back(kv.first);
        return out;
    }

    /// @brief Number of tensors.
    std::size_t size() const { return tensors.size(); }

private:
    std::string prefix() const { return source.empty() ? std::string("safetensors: ") : source + ": "; }

    void check_name(const std::string& name) const {
        tern::detail::require(name != "__metadata__", prefix(),
                              "'__metadata__' is reserved for metadata and cannot name a tensor");
    }

    tensor decode_f32(const std::string& name, const stored_tensor& s) const {
        const auto need = detail::checked_byte_count(s.shape, 4);
        tern::detail::require(need && *need == s.bytes.size(), prefix(), "tensor '", name, "': shape ",
                              tern::detail::shape_string(s.shape), " needs ",
                              need ? std::to_string(*need) : std::string("too many"), " bytes of F32, it holds ",
                              s.bytes.size());
        tensor t = tensor::from_shape(s.shape);
        detail::le_to_floats(s.bytes.data(), t.size(), t.data());
        return t;
    }
};

namespace detail {

/// A validated header entry: where a tensor's bytes lie in the buffer.
struct st_entry {
    std::string name;
    dtype type;
    shape_t shape;
    std::size_t begin;
    std::size_t end;
};

inline std::uint64_t load_le64(const std::uint8_t* p) {
    std::uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
    return v;
}

/// Checks the 8-byte length prefix against the total size; returns the header length.
inline std::size_t check_header_length(const std::uint8_t* first8, std::uint64_t total, const std::string& where) {
    tern::detail::require(total >= 8, where, ": too short: ", total,
                          " bytes, expected at least 8 for the header length");
    const std::uint64_t n = load_le64(first8);
    tern::detail::require(n <= safetensors_max_header_bytes, where, ": header length ", n,
                          " exceeds the limit of ", safetensors_max_header_bytes, " bytes (corrupt or not safetensors)");
    tern::detail::require(n <= total - 8, where, ": header length ", n, " exceeds the ", total - 8,
                          " bytes that follow the length field (truncated file?)");
    tern::detail::require(n >= 2, where, ": header length ", n, " is too small for a JSON object");
    return static_cast<std::size_t>(n);
}

inline const char* json_kind(const nlohmann::json& j) { return j.type_name(); }

/// Reads an unsigned JSON integer field, or fails saying what was found.
inline std::uint64_t json_unsigned(const nlohmann::json& j, const std::string& where, const std::string& what) {
    tern::detail::require(j.is_number_unsigned(), where, ": ", what, ": expected a non-negative integer, found ",
                          j.is_number() ? dump_short(j) : std::string(json_kind(j)));
    return j.get<std::uint64_t>();
}

/// Parses and validates the JSON header; fills @p metadata and returns the entries sorted by offset.
inline std::vector<st_entry> parse_header(const std::uint8_t* text, std::size_t n, std::size_t buffer_size,
                                          const std::string& where, std::map<std::string, std::string>& metadata) {
    const nlohmann::json root =
        parse_json_limited(std::string_view(reinterpret_cast<const char*>(text), n), where + ": header");
    tern::detail::require(root.is_object(), where, ": header must be a JSON object, found ", json_kind(root));

    std::vector<st_entry> entries;
    for (auto it = root.begin(); it != root.end(); ++it) {
        const std::string& key = it.key();
        const nlohmann::json& v = it.value();
        if (key == "__metadata__") {
            if (v.is_null()) continue;
            tern::detail::require(v.is_object(), where, ": __metadata__ must be an object of strings, found ",
                                  json_kind(v));
            for (auto m = v.begin(); m != v.end(); ++m) {
                tern::detail::require(m.value().is_string(), where, ": __metadata__ entry ", quote(m.key()),
                                      " must be a string, found ", json_kind(m.value()));
                metadata[m.key()] = m.value().get<std::string>();
            }
            continue;
        }
        const std::string at = where + ": tensor " + quote(key);
        tern::detail::require(v.is_object(), at, ": expected an object with dtype, shape and data_offsets, found ",
                              json_kind(v));
        for (const char* field : {"dtype", "shape", "data_offsets"})
            tern::detail::require(v.contains(field), at, ": missing field '", field, "'");
        const nlohmann::json& jt = v["dtype"];
        const nlohmann::json& js = v["shape"];
        const nlohmann::json& jo = v["data_offsets"];

        tern::detail::require(jt.is_string(), at, ": dtype must be a string, found ", json_kind(jt));
        const auto type = parse_dtype(jt.get<std::string>());
        tern::detail::require(type.has_value(), at, ": unknown dtype ", dump_short(jt),
                              ", expected one of F32 F16 BF16 F64 I8 U8 I16 I32 I64 U32 BOOL");

        tern::detail::require(js.is_array(), at, ": shape must be an array, found ", json_kind(js));
        tern::detail::require(js.size() <= limits::max_rank, at, ": shape has ", js.size(),
                              " dimensions, more than the limit of ", limits::max_rank);
        shape_t shape;
        shape.reserve(js.size());
        for (std::size_t i = 0; i < js.size(); ++i) {
            const std::uint64_t d = json_unsigned(js[i], at, "shape[" + std::to_string(i) + "]");
            tern::detail::require(d <= std::numeric_limits<std::size_t>::max(), at, ": shape[", i, "] = ", d,
                                  " does not fit in size_t");
            shape.push_back(static_cast<std::size_t>(d));
        }

        tern::detail::require(jo.is_array() && jo.size() == 2, at,
                              ": data_offsets must be an array [begin, end], found ", dump_short(jo));
        const std::uint64_t begin = json_unsigned(jo[0], at, "data_offsets[0]");
        const std::uint64_t end = json_unsigned(jo[1], at, "data_offsets[1]");
        tern::detail::require(begin <= end, at, ": data_offsets [", begin, ", ", end, "] have begin > end");
        tern::detail::require(end <= buffer_size, at, ": data_offsets [", begin, ", ", end,
                              "] run past the end of the ", buffer_size, "-byte data buffer");

        const auto need = checked_byte_count(shape, dtype_size(*type));
        tern::detail::require(need.has_value(), at, ": shape ", tern::detail::shape_string(shape), " of ",
                              dtype_name(*type), " describes more bytes than can be addressed (the limit is ",
                              limits::max_elements, " elements, counting non-zero dimensions)");
        tern::detail::require(end - begin == *need, at, ": data_offsets [", begin, ", ", end, "] span ", end - begin,
                              " bytes but ", dtype_name(*type), " with shape ", tern::detail::shape_string(shape),
                              " needs ", *need);
        entries.push_back({key, *type, std::move(shape), static_cast<std::size_t>(begin),
                           static_cast<std::size_t>(end)});
    }

    // The tensors must tile the buffer exactly: sorted by offset, each starts where the last ended.
    std::sort(entries.begin(), entries.end(), [](const st_entry& a, const st_entry& b) {
        return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    std::size_t cursor = 0;
    const st_entry* prev = nullptr;
    for (const st_entry& e : entries) {
        if (e.begin < cursor)
            tern::detail::fail(where, ": tensor ", quote(e.name), " data_offsets [", e.begin, ", ", e.end,
                               "] overlap tensor ", quote(prev->name), " [", prev->begin, ", ", prev->end, "]");
        if (e.begin > cursor)
            tern::detail::fail(where, ": bytes [", cursor, ", ", e.begin, ") of the data buffer belong to no tensor",
                               " (gap before tensor ", quote(e.name), ")");
        cursor = e.end;
        if (e.end > e.begin || !prev) prev = &e;
    }
    tern::detail::require(cursor == buffer_size, where, ": the tensors cover ", cursor, " bytes but the data buffer has ",
                          buffer_size, " (", buffer_size - cursor, " unaccounted bytes at the end)");
    return entries;
}

/// Builds the padded JSON header for @p data (names sorted, offsets in name order).
inline std::string build_header(const safetensors_data& data, const std::string& where) {
    nlohmann::ordered_json root = nlohmann::ordered_json::object();
    if (!data.metadata.empty()) {
        nlohmann::ordered_json meta = nlohmann::ordered_json::object();
        for (const auto& [k, v] : data.metadata) meta[k] = v;
        root["__metadata__"] = std::move(meta);
    }
    std::size_t offset = 0;
    for (const auto& [name, t] : data.tensors) {
        tern::detail::require(name != "__metadata__", where, ": '__metadata__' cannot name a tensor");
        const auto need = checked_byte_count(t.shape, dtype_size(t.type));
        tern::detail::require(need && *need == t.bytes.size(), where, ": tensor '", name, "': dtype ",
                              dtype_name(t.type), " with shape ", tern::detail::shape_string(t.shape), " needs ",
                              need ? std::to_string(*need) : std::string("too many"), " bytes, it holds ",
                              t.bytes.size());
        nlohmann::ordered_json e = nlohmann::ordered_json::object();
        e["dtype"] = dtype_name(t.type);
        e["shape"] = t.shape;
        e["data_offsets"] = {offset, offset + t.bytes.size()};
        root[name] = std::move(e);
        offset += t.bytes.size();
    }
    std::string text;
    try {
        text = root.dump();
    } catch (const nlohmann::json::exception& e) {
        // e.g. a tensor name or metadata string that is not valid UTF-8
        tern::detail::fail(where, ": cannot encode header: ", e.what());
    }
    // Pad with spaces so the data buffer starts 8-byte aligned (the length field is 8 bytes).
    text.append((8 - text.size() % 8) % 8, ' ');
    return text;
}

inline void store_le64(std::uint64_t v, std::uint8_t* p) {
    for (int i = 0; i < 8; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}

/// Removes a temporary file on scope exit unless the write was committed.
struct temp_file_guard {
    std::filesystem::path path;
    std::FILE* file = nullptr;
    bool committed = false;
    ~temp_file_guard() {
        if (file) std::fclose(file);
        if (!committed) {
            std::error_code ec;
            std::filesystem::remove(path, ec);
        }
    }
};

inline std::string errno_text(int err) { return std::error_code(err, std::generic_category()).message(); }

}  // namespace detail

/// @brief Encodes @p data as the bytes of a safetensors file (deterministic: sorted names,
/// offsets in name order, header padded with spaces to a multiple of 8 bytes).
/// @throws tern::error if a tensor's byte count does not match its shape or a string is not UTF-8.
inline std::vector<std::uint8_t> serialize_safetensors(const safetensors_data& data) {
    const std::string header = detail::build_header(data, "serialize_safetensors");
    std::size_t total = 8 + header.size();
    for (const auto& kv : data.tensors) total += kv.second.bytes.size();
    std::vector<std::uint8_t> out(total);
    detail::store_le64(header.size(), out.data());
    std::memcpy(out.data() + 8, header.data(), header.size());
    std::size_t pos = 8 + header.size();
    for (const auto& kv : data.tensors) {
        if (!kv.second.bytes.empty()) std::memcpy(out.data() + pos, kv.second.bytes.data(), kv.second.bytes.size());
        pos += kv.second.bytes.size();
    }
    return out;
}

/// @brief Writes @p data to @p path atomically: the bytes go to a unique temporary file in the same
/// directory, which is flushed, synced and then renamed over @p path. On any failure the temporary
/// file is removed and an existing file at @p path is left as it was.
/// @throws tern::error naming the file and the failing step.
inline void save_safetensors(const std::filesystem::path& path, const safetensors_data& data) {
    const std::string where = "saving safetensors file '" + path.string() + "'";
    const std::string header = detail::build_header(data, where);

#if defined(_WIN32)
    const long pid = static_cast<long>(_getpid());
#else
    const long pid = static_cast<long>(::getpid());
#endif
    static std::atomic<std::uint64_t> counter{0};
    detail::temp_file_guard tmp;
    tmp.path = path;
    tmp.path += ".tmp." + std::to_string(pid) + "." + std::to_string(counter++);

    tmp.file = std::fopen(tmp.path.string().c_str(), "wb");
    tern::detail::require(tmp.file != nullptr, where, ": cannot create temporary file '", tmp.path.string(),
                          "': ", detail::errno_text(errno));
    auto write = [&](const void* p, std::size_t n, const char* what) {
        if (n == 0) return;
        tern::detail::require(std::fwrite(p, 1, n, tmp.file) == n, where, ": writing ", what, " to '",
                              tmp.path.string(), "' failed: ", detail::errno_text(errno));
    };
    std::uint8_t len[8];
    detail::store_le64(header.size(), len);
    write(len, 8, "the header length");
    write(header.data(), header.size(), "the header");
    for (const auto& [name, t] : data.tensors) write(t.bytes.data(), t.bytes.size(), ("tensor '" + name + "'").c_str());
    tern::detail::require(std::fflush(tmp.file) == 0, where, ": flushing '", tmp.path.string(),
                          "' failed: ", detail::errno_text(errno));
#if !defined(_WIN32)
    // Make the data durable before the rename publishes it, so a crash cannot leave an empty file.
    tern::detail::require(::fsync(::fileno(tmp.file)) == 0, where, ": fsync of '", tmp.path.string(),
                          "' failed: ", detail::errno_text(errno));
#endif
    const int closed = std::fclose(tmp.file);
    tmp.file = nullptr;
    tern::detail::require(closed == 0, where, ": closing '", tmp.path.string(), "' failed: ",
                          detail::errno_text(errno));

    std::error_code ec;
    std::filesystem::rename(tmp.path, path, ec);
    tern::detail::require(!ec, where, ": renaming the temporary file over the target failed: ", ec.message());
    tmp.committed = true;
}

/// @brief Decodes safetensors bytes held in memory; @p source_name is used in error messages.
/// @throws tern::error naming the source, the tensor and the expected vs found values for a bad
///         header length, invalid JSON, a malformed entry, unknown dtype, out-of-range, inconsistent
///         or overlapping offsets, or bytes not covered by any tensor.
inline safetensors_data parse_safetensors(const std::uint8_t* data, std::size_t size, const std::string& source_name) {
    const std::string where = "safetensors data '" + source_name + "'";
    tern::detail::require(data != nullptr || size == 0, where, ": null data pointer");
    std::uint8_t first8[8] = {};
    if (size >= 8) std::memcpy(first8, data, 8);
    const std::size_t n = detail::check_header_length(first8, size, where);
    const std::size_t buffer_size = size - 8 - n;
    safetensors_data out;
    const auto entries = detail::parse_header(data + 8, n, buffer_size, where, out.metadata);
    const std::uint8_t* buffer = data + 8 + n;
    for (const auto& e : entries)
        out.tensors[e.name] = stored_tensor{e.type, e.shape,
                                            std::vector<std::uint8_t>(buffer + e.begin, buffer + e.end)};
    out.source = where;
    return out;
}

/// @brief Reads and validates a safetensors file (see parse_safetensors for the checks).
/// Sizes in the header are checked against the real file size before anything is allocated.
/// @throws tern::error naming the file for a missing or unreadable file and every format error.
inline safetensors_data load_safetensors(const std::filesystem::path& path) {
    const std::string where = "safetensors file '" + path.string() + "'";
    std::error_code ec;
    tern::detail::require(std::filesystem::is_regular_file(path, ec), where, ": ",
                          std::filesystem::exists(path, ec) ? "not a regular file" : "no such file");
    const std::uintmax_t size = std::filesystem::file_size(path, ec);
    tern::detail::require(!ec, where, ": cannot get file size: ", ec.message());
    std::ifstream in(path, std::ios::binary);
    tern::detail::require(in.is_open(), where, ": cannot open for reading");

    std::uint8_t first8[8] = {};
    if (size >= 8) in.read(reinterpret_cast<char*>(first8), 8);
    tern::detail::require(size < 8 || in.gcount() == 8, where, ": read error in the header length");
    const std::size_t n = detail::check_header_length(first8, size, where);
    std::vector<std::uint8_t> header(n);
    in.read(reinterpret_cast<char*>(header.data()), static_cast<std::streamsize>(n));
    tern::detail::require(static_cast<std::size_t>(in.gcount()) == n, where, ": read error in the header");
    const auto buffer_size = static_cast<std::size_t>(size - 8 - n);

    safetensors_data out;
    const auto entries = detail::parse_header(header.data(), n, buffer_size, where, out.metadata);
    // Entries are sorted by offset and tile the buffer, so the reads are sequential.
    for (const auto& e : entries) {
        stored_tensor t{e.type, e.shape, std::vector<std::uint8_t>(e.end - e.begin)};
        if (!t.bytes.empty()) {
            in.read(reinterpret_cast<char*>(t.bytes.data()), static_cast<std::streamsize>(t.bytes.size()));
            tern::detail::require(static_cast<std::size_t>(in.gcount()) == t.bytes.size(), where, ": tensor '",
                                  e.name, "': read error (file changed while reading?)");
        }
        out.tensors[e.name] = std::move(t);
    }
    out.source = where;
    return out;
}

}  // namespace tern::io
