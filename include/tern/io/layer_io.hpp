#pragma once
/// @file io/layer_io.hpp
/// @brief How a layer writes its tensors to, and reads its configuration and tensors from, a
/// model file (a safetensors file whose metadata holds the architecture as JSON).
///
/// A layer that can be saved has `nlohmann::json config() const` (its kind and sizes: structured
/// data, never text to parse back), `void save(layer_writer&) const` and
/// `static L load(const layer_reader&)`. The reader checks every field and tensor it hands out
/// and names the file, the layer and what was expected versus found.

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "../error.hpp"
#include "../tensor.hpp"
#include "checked.hpp"
#include "safetensors.hpp"

namespace tern {

/// @brief What the shape check knows about a layer's input or output: the last axis and the
/// number of values per sample (0 = unknown).
struct feature_info {
    std::size_t last = 0;   ///< size of the last (feature) axis
    std::size_t total = 0;  ///< values per sample (product of the non-batch axes)
};

namespace detail {
/// Height of an NCHW input described by @p in (last = W, total = C*H*W), 0 when unknown.
inline std::size_t image_height(feature_info in, std::size_t channels, const std::string& where) {
    if (in.last == 0 || in.total == 0) return 0;
    require(in.total % (channels * in.last) == 0, where, ": expects images of ", channels,
            " channels but the previous layers give ", in.total, " values per sample with width ", in.last);
    return in.total / (channels * in.last);
}
}  // namespace detail

/// @brief Writes one layer's tensors under its name prefix ("3.", "2.body.0.").
class layer_writer {
public:
    layer_writer(io::safetensors_data& data, std::string prefix) : data_(data), prefix_(std::move(prefix)) {}
    /// @brief Stores an F32 tensor as prefix + name.
    void put(const std::string& name, const tensor& t) { data_.put(prefix_ + name, t); }
    /// @brief Stores @p n raw bytes as a U8 tensor of shape [n].
    void put_bytes(const std::string& name, const std::uint8_t* p, std::size_t n) {
        data_.put_bytes(prefix_ + name, io::dtype::u8, {n}, std::vector<std::uint8_t>(p, p + n));
    }
    /// @brief A writer for a nested layer list ("<prefix><sub>.").
    layer_writer nested(const std::string& sub) const { return layer_writer(data_, prefix_ + sub + "."); }
    const std::string& prefix() const { return prefix_; }

private:
    io::safetensors_data& data_;
    std::string prefix_;
};

/// @brief Reads one layer's configuration and tensors, with errors naming the file, the layer and
/// what was expected versus found.
class layer_reader {
public:
    /// @param where  "packed model 'f.safetensors'" (the file), @param path  layer path ("3", "2.body.0")
    layer_reader(const io::safetensors_data& data, std::string where, std::string path, const nlohmann::json& config,
                 std::set<std::string>& used)
        : data_(data), where_(std::move(where)), path_(std::move(path)), config_(config), used_(used) {}

    /// @brief Throws tern::error prefixed with the file and layer.
    template <class... Parts>
    [[noreturn]] void fail(Parts&&... parts) const {
        detail::fail(context(), ": ", std::forward<Parts>(parts)...);
    }
    /// @brief "packed model 'f': layer 3 (ternary_linear)".
    std::string context() const {
        std::string kind = config_.is_object() && config_.contains("kind") && config_["kind"].is_string()
                               ? config_["kind"].get<std::string>()
                               : std::string("?");
        return where_ + ": layer " + path_ + " (" + kind + ")";
    }
    const nlohmann::json& config() const { return config_; }
    const std::string& path() const { return path_; }
    const std::string& where() const { return where_; }

    /// @brief An integer field of the configuration in [@p min, @p max] (a positive one by default).
    std::size_t size_field(const char* key, std::size_t min = 1, std::size_t max = std::size_t{1} << 40) const {
        const nlohmann::json& v = field(key);
        if (!v.is_number_unsigned() || v.get<std::uint64_t>() < min || v.get<std::uint64_t>() > max)
            fail("field '", key, "': expected an integer in ", min, "..", max, ", found ", io::detail::dump_short(v));
        return static_cast<std::size_t>(v.get<std::uint64_t>());
    }
    /// @brief A boolean field of the configuration.
    bool bool_field(const char* key) const {
        const nlohmann::json& v = field(key);
        if (!v.is_boolean()) fail("field '", key, "': expected true or false, found ", io::detail::dump_short(v));
        return v.get<bool>();
    }
    /// @brief A finite number field of the configuration.
    double number_field(const char* key) const {
        const nlohmann::json& v = field(key);
        if (!v.is_number() || !std::isfinite(v.get<double>()))
            fail("field '", key, "': expected a finite number, found ", io::detail::dump_short(v));
        return v.get<double>();
    }
    /// @brief A string field of the configuration.
    std::string string_field(const char* key) const {
        const nlohmann::json& v = field(key);
        if (!v.is_string()) fail("field '", key, "': expected a string, found ", io::detail::dump_short(v));
        return v.get<std::string>();
    }
    /// @brief An array field (nested layer lists).
    const nlohmann::json& array_field(const char* key) const {
        const nlohmann::json& v = field(key);
        if (!v.is_array()) fail("field '", key, "': expected an array of layers, found ", v.type_name());
        return v;
    }

    /// @brief The F32 tensor prefix + name with exactly @p shape.
    tensor f32(const std::string& name, const shape_t& shape) const {
        const io::stored_tensor& s = tensor_at(name);
        if (s.type != io::dtype::f32 || s.shape != shape)
            fail("tensor '", full(name), "': expected F32 ", detail::shape_string(shape), ", found ",
                 io::dtype_name(s.type), " ", detail::shape_string(s.shape));
        tensor t = tensor::from_shape(shape);
        io::detail::le_to_floats(s.bytes.data(), t.size(), t.data());
        return t;
    }
    /// @brief The U8 tensor prefix + name, which must hold exactly @p bytes bytes (shape [bytes]).
    const std::vector<std::uint8_t>& u8(const std::string& name, std::size_t bytes) const {
        const io::stored_tensor& s = tensor_at(name);
        if (s.type != io::dtype::u8 || s.shape != shape_t{bytes})
            fail("tensor '", full(name), "': expected U8 [", bytes, "] (", bytes, " packed bytes), found ",
                 io::dtype_name(s.type), " ", detail::shape_string(s.shape));
        return s.bytes;
    }
    /// @brief Whether the tensor prefix + name exists.
    bool has(const std::string& name) const { return data_.contains(full(name)); }

    /// @brief A reader for a layer of a nested list.
    layer_reader nested(const std::string& sub, std::size_t index, const nlohmann::json& config) const {
        return layer_reader(data_, where_, path_ + "." + sub + "." + std::to_string(index), config, used_);
    }
    /// @brief A reader for a part of this layer ("q" of an attention): the same configuration, its
    /// tensors under "<path>.<name>.".
    layer_reader sub(const std::string& name) const {
        return layer_reader(data_, where_, path_ + "." + name, config_, used_);
    }
    /// @brief The tensor name prefix of this layer ("3.").
    std::string prefix() const { return path_ + "."; }

private:
    std::string full(const std::string& name) const { return path_ + "." + name; }
    const nlohmann::json& field(const char* key) const {
        if (!config_.contains(key)) fail("missing field '", key, "' in the architecture entry ", io::detail::dump_short(config_));
        return config_[key];
    }
    const io::stored_tensor& tensor_at(const std::string& name) const {
        auto it = data_.tensors.find(full(name));
        if (it == data_.tensors.end()) fail("missing tensor '", full(name), "'");
        used_.insert(full(name));
        return it->second;
    }

    const io::safetensors_data& data_;
    std::string where_, path_;
    const nlohmann::json& config_;
    std::set<std::string>& used_;
};

}  // namespace tern
