#pragma once
/// @file packed/aligned_buffer.hpp
/// @brief A zero-initialized, 64-byte aligned array of trivially copyable values.
///
/// Kernels use unaligned loads anyway; the alignment keeps every 128-byte weight group
/// inside two cache lines.

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <new>
#include <type_traits>

namespace tern::packed {

/// @brief Owning, 64-byte aligned, zero-initialized buffer of @p T (copyable and movable).
template <class T>
class aligned_buffer {
    static_assert(std::is_trivially_copyable_v<T>);

public:
    static constexpr std::size_t alignment = 64;

    aligned_buffer() = default;
    /// @brief @p n zero-initialized elements.
    explicit aligned_buffer(std::size_t n) { resize(n); }
    aligned_buffer(const aligned_buffer& o) : aligned_buffer(o.size_) {
        if (size_) std::memcpy(data_, o.data_, size_ * sizeof(T));
    }
    aligned_buffer(aligned_buffer&& o) noexcept : data_(o.data_), size_(o.size_), capacity_(o.capacity_) {
        o.data_ = nullptr;
        o.size_ = o.capacity_ = 0;
    }
    aligned_buffer& operator=(const aligned_buffer& o) {
        if (this != &o) {
            aligned_buffer tmp(o);
            swap(tmp);
        }
        return *this;
    }
    aligned_buffer& operator=(aligned_buffer&& o) noexcept {
        swap(o);
        return *this;
    }
    ~aligned_buffer() { release(); }

    void swap(aligned_buffer& o) noexcept {
        std::swap(data_, o.data_);
        std::swap(size_, o.size_);
        std::swap(capacity_, o.capacity_);
    }

    /// @brief Sets the size to @p n and zeroes every element (reuses the storage when it fits).
    void resize(std::size_t n) {
        if (n > capacity_) {
            release();
            data_ = static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t{alignment}));
            capacity_ = n;
        }
        size_ = n;
        if (n) std::memset(static_cast<void*>(data_), 0, n * sizeof(T));
    }

    T* data() { return data_; }
    const T* data() const { return data_; }
    std::size_t size() const { return size_; }
    bool empty() const { return size_ == 0; }
    T& operator[](std::size_t i) { return data_[i]; }
    const T& operator[](std::size_t i) const { return data_[i]; }
    T* begin() { return data_; }
    T* end() { return data_ + size_; }
    const T* begin() const { return data_; }
    const T* end() const { return data_ + size_; }

private:
    void release() {
        if (data_) ::operator delete(static_cast<void*>(data_), std::align_val_t{alignment});
        data_ = nullptr;
        size_ = capacity_ = 0;
    }

    T* data_ = nullptr;
    std::size_t size_ = 0, capacity_ = 0;
};

}  // namespace tern::packed
