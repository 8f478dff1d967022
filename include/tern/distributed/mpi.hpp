#pragma once
/// @file distributed/mpi.hpp
/// @brief Data-parallel training across processes (and machines) with MPI.
///
/// Optional: the rest of tern does not include this header and needs no MPI. Link MPI yourself
/// (CMake: `find_package(tern COMPONENTS mpi)` and `tern::mpi`, or `tern::tern` plus MPI::MPI_CXX).
///
/// How a run works: every process builds the same model; rank 0's parameters (and optimizer
/// state, on resume) are broadcast; every process walks the same shuffled global batches and
/// trains on its own rows of each (data::shard_bounds); after backward, ONE allreduce over a
/// flat buffer sums the gradients, each scaled by local rows / global rows, so every process
/// steps with the gradient of the whole batch and the shadow weights stay identical everywhere
/// (and with them the ternary scales). Only rank 0 should print, log and save.
/// @code
///   tern::distributed::mpi_context mpi(argc, argv);
///   return tern::distributed::run_or_abort(mpi, [&] {
///       tern::distributed::broadcast_parameters(model.parameters(), mpi.comm());
///       tern::train_options options{.show_progress = mpi.is_root()};
///       tern::distributed::data_parallel(options, mpi);
///       tern::train_classifier_epoch(model, loss, optimizer, batches, step, options);
///       return 0;
///   });
/// @endcode

#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "../error.hpp"
#include "../io/safetensors.hpp"
#include "../parameter.hpp"
#include "../train/classifier.hpp"

namespace tern::distributed {

namespace detail {
using namespace ::tern::detail;

/// The most elements one MPI call moves: its count argument is an int.
inline constexpr std::size_t max_count = std::size_t(INT_MAX);

inline void check(int code, const char* call) {
    if (code == MPI_SUCCESS) return;
    char text[MPI_MAX_ERROR_STRING];
    int length = 0;
    MPI_Error_string(code, text, &length);
    fail(call, " failed: ", std::string(text, std::size_t(std::max(length, 0))));
}

inline void require_chunk(std::size_t chunk, const char* where) {
    require(chunk > 0 && chunk <= max_count, where, ": the chunk size must be in [1, ", max_count, "], got ", chunk);
}

/// FNV-1a over the bytes of every tensor in @p params.
inline std::uint64_t fingerprint(const parameter_list& params) {
    std::uint64_t h = 0xcbf29ce484222325ULL;
    for (const auto& p : params) {
        const auto* bytes = reinterpret_cast<const unsigned char*>(p.value->data());
        for (std::size_t i = 0, n = p.value->size() * sizeof(float); i < n; ++i) h = (h ^ bytes[i]) * 0x100000001b3ULL;
    }
    return h;
}

}  // namespace detail

/// @brief MPI for the lifetime of the object: MPI_Init_thread in the constructor, MPI_Finalize in
/// the destructor (only if this object initialized MPI), plus the rank and the world size.
///
/// Asks for MPI_THREAD_FUNNELED: only the thread that owns the context calls MPI. tern's thread
/// pool runs kernel loops (parallel_for bodies) on its workers and never MPI, and the reductions
/// below run on the calling thread between kernels, so a stronger level would only cost speed.
/// @throws tern::error if MPI cannot give that level.
class mpi_context {
public:
    /// Initializes MPI from main's arguments (MPI may remove its own from them).
    mpi_context(int& argc, char**& argv) : mpi_context(&argc, &argv) {}
    /// Initializes MPI without arguments.
    mpi_context() : mpi_context(nullptr, nullptr) {}

    mpi_context(const mpi_context&) = delete;
    mpi_context& operator=(const mpi_context&) = delete;

    /// Finalizes MPI if this object initialized it. Leaving by an exception aborts the job
    /// instead: MPI_Finalize would wait for ranks that are still inside a collective.
    ~mpi_context() {
        if (!owns_) return;
        if (std::uncaught_exceptions() > uncaught_) MPI_Abort(MPI_COMM_WORLD, 1);
        int finalized = 0;
        MPI_Finalized(&finalized);
        if (!finalized) MPI_Finalize();
    }

    /// This process's rank in MPI_COMM_WORLD (0 .. size()-1).
    int rank() const { return rank_; }
    /// Number of processes.
    int size() const { return size_; }
    /// Whether this is rank 0, the one that prints, logs and saves.
    bool is_root() const { return rank_ == 0; }
    /// The communicator the training uses (MPI_COMM_WORLD).
    MPI_Comm comm() const { return MPI_COMM_WORLD; }

    /// Prints "rank R: message" to stderr and ends every process of the job with exit code 1
    /// (MPI_Abort), so no rank waits forever in a collective for a rank that failed.
    [[noreturn]] void abort(const std::string& message) const {
        std::fprintf(stderr, "rank %d: %s\n", rank_, message.c_str());
        std::fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, 1);
        std::abort();  // MPI_Abort does not return; this line only tells the compiler so
    }

private:
    mpi_context(int* argc, char*** argv) {
        int initialized = 0;
        detail::check(MPI_Initialized(&initialized), "MPI_Initialized");
        if (!initialized) {
            int provided = MPI_THREAD_SINGLE;
            detail::check(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
            owns_ = true;
            if (provided < MPI_THREAD_FUNNELED) {
                MPI_Finalize();
                owns_ = false;
                detail::fail("mpi_context: the MPI library offers thread level ", provided,
                             ", tern needs MPI_THREAD_FUNNELED (", int(MPI_THREAD_FUNNELED), ")");
            }
        }
        detail::check(MPI_Comm_rank(MPI_COMM_WORLD, &rank_), "MPI_Comm_rank");
        detail::check(MPI_Comm_size(MPI_COMM_WORLD, &size_), "MPI_Comm_size");
        uncaught_ = std::uncaught_exceptions();
    }

    int rank_ = 0;
    int size_ = 1;
    int uncaught_ = 0;
    bool owns_ = false;
};

/// @brief Runs @p body (returning the exit code) and returns its result; if it throws, prints
/// "rank R: message" and aborts every process of the job (mpi_context::abort).
template <class Body>
int run_or_abort(const mpi_context& mpi, Body&& body) {
    try {
        return body();
    } catch (const std::exception& e) {
        mpi.abort(e.what());
    } catch (...) {
        mpi.abort("unknown exception");
    }
}

/// @brief Sums @p n floats in place across the processes of @p comm, in allreduces of at most
/// @p chunk elements each (an MPI count is an int, so a larger buffer takes several calls).
/// @throws tern::error if an MPI call fails or chunk is not in [1, INT_MAX].
inline void allreduce_sum(float* data, std::size_t n, MPI_Comm comm, std::size_t chunk = detail::max_count) {
    detail::require_chunk(chunk, "allreduce_sum");
    for (std::size_t at = 0; at < n; at += chunk) {
        const int count = int(std::min(chunk, n - at));
        detail::check(MPI_Allreduce(MPI_IN_PLACE, data + at, count, MPI_FLOAT, MPI_SUM, comm), "MPI_Allreduce");
    }
}

/// @brief Broadcasts @p n bytes from @p root to every process of @p comm, in chunks of at most
/// @p chunk bytes.
inline void broadcast_bytes(void* data, std::size_t n, int root, MPI_Comm comm, std::size_t chunk = detail::max_count) {
    detail::require_chunk(chunk, "broadcast_bytes");
    auto* bytes = static_cast<unsigned char*>(data);
    for (std::size_t at = 0; at < n; at += chunk) {
        const int count = int(std::min(chunk, n - at));
        detail::check(MPI_Bcast(bytes + at, count, MPI_BYTE, root, comm), "MPI_Bcast");
    }
}

namespace detail {

/// Broadcasts root's value of @p n; every other process checks that it has the same.
inline void require_same_count(std::uint64_t n, int root, MPI_Comm comm, const char* what) {
    std::uint64_t at_root = n;
    broadcast_bytes(&at_root, sizeof at_root, root, comm);
    int rank = 0;
    MPI_Comm_rank(comm, &rank);
    require(at_root == n, what, ": rank ", rank, " has ", n, ", rank ", root, " has ", at_root,
            " (every process must build the same model)");
}

}  // namespace detail

/// @brief Copies the values of every tensor in @p params (trainable ones and buffers such as
/// running statistics) from @p root to every process, in one broadcast of a flat buffer.
/// @throws tern::error on a process whose model has another number of values than root's.
inline void broadcast_parameters(const parameter_list& params, MPI_Comm comm, int root = 0,
                                 std::size_t chunk = detail::max_count) {
    std::size_t total = 0;
    for (const auto& p : params) total += p.value->size();
    detail::require_same_count(total, root, comm, "broadcast_parameters: parameter values");
    std::vector<float> flat(total);
    std::size_t at = 0;
    for (const auto& p : params) {
        std::memcpy(flat.data() + at, p.value->data(), p.value->size() * sizeof(float));
        at += p.value->size();
    }
    broadcast_bytes(flat.data(), flat.size() * sizeof(float), root, comm, chunk);
    at = 0;
    for (const auto& p : params) {
        std::memcpy(p.value->data(), flat.data() + at, p.value->size() * sizeof(float));
        at += p.value->size();
    }
}

/// @brief Copies @p optimizer's state (moments and step count) from @p root to every process,
/// e.g. after rank 0 read a checkpoint to resume from.
/// @tparam Optimizer tern::sgd, tern::adam or tern::adamw (anything with save_state / load_state).
/// @throws tern::error on a process whose optimizer state has another layout than root's.
template <class Optimizer>
void broadcast_optimizer_state(Optimizer& optimizer, MPI_Comm comm, int root = 0) {
    io::safetensors_data state;
    optimizer.save_state(state);
    std::uint64_t bytes = 0;
    for (const auto& [name, t] : state.tensors) bytes += t.bytes.size();
    detail::require_same_count(state.tensors.size(), root, comm, "broadcast_optimizer_state: state tensors");
    detail::require_same_count(bytes, root, comm, "broadcast_optimizer_state: state bytes");
    std::uint64_t step = std::stoull(state.metadata.at("optimizer.step"));
    broadcast_bytes(&step, sizeof step, root, comm);
    for (auto& [name, t] : state.tensors) broadcast_bytes(t.bytes.data(), t.bytes.size(), root, comm);
    state.metadata["optimizer.step"] = std::to_string(step);
    optimizer.load_state(state);
}

/// @brief Whether every process of @p comm holds bit-identical values in @p params (compares a
/// 64-bit fingerprint with two tiny allreduces; meant for checks, not for every step).
inline bool parameters_identical(const parameter_list& params, MPI_Comm comm) {
    const std::uint64_t h = detail::fingerprint(params);
    std::uint64_t lo = h, hi = h;
    detail::check(MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_UINT64_T, MPI_MIN, comm), "MPI_Allreduce");
    detail::check(MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_UINT64_T, MPI_MAX, comm), "MPI_Allreduce");
    return lo == hi;
}

/// @brief The train_options::reduce_gradients hook: one allreduce per step over a flat buffer.
///
/// The buffer holds every gradient times rows / global_rows, every buffer tensor (batch-norm
/// running statistics) with the same weight, then the step's loss sum, correct count and row
/// count. After the sum the gradients are those of the whole global batch (the loss is a mean
/// over rows), the buffers are the row-weighted mean over processes, and the share holds global
/// sums. A process with no rows in a small last batch takes part with zeros.
class gradient_averager {
public:
    /// @param chunk the most floats per MPI_Allreduce call (smaller only to test the chunking).
    explicit gradient_averager(MPI_Comm comm, std::size_t chunk = detail::max_count) : comm_(comm), chunk_(chunk) {
        detail::require_chunk(chunk, "gradient_averager");
    }

    /// Reduces the gradients and buffers of @p params and the sums of @p share across processes.
    /// @throws tern::error if the processes' rows do not add up to share.global_rows.
    void operator()(const parameter_list& params, step_share& share) {
        detail::require(share.global_rows > 0 && share.rows <= share.global_rows,
                        "gradient_averager: expected 0 <= rows <= global_rows and global_rows > 0, got rows ",
                        share.rows, " of ", share.global_rows);
        const float weight = float(double(share.rows) / double(share.global_rows));
        std::size_t total = 3;
        for (const auto& p : params) total += p.value->size();  // a gradient has its value's size
        flat_.resize(total);
        float* out = flat_.data();
        for (const auto& p : params) {
            const float* src = p.trainable() ? p.grad->data() : p.value->data();
            for (std::size_t i = 0, n = p.value->size(); i < n; ++i) out[i] = weight * src[i];
            out += p.value->size();
        }
        out[0] = float(share.loss_sum);
        out[1] = float(share.correct);
        out[2] = float(share.rows);
        allreduce_sum(flat_.data(), flat_.size(), comm_, chunk_);
        const float* in = flat_.data();
        for (const auto& p : params) {
            std::memcpy(p.trainable() ? p.grad->data() : p.value->data(), in, p.value->size() * sizeof(float));
            in += p.value->size();
        }
        detail::require(double(in[2]) == double(share.global_rows), "gradient_averager: the processes trained on ",
                        double(in[2]), " rows of a global batch of ", share.global_rows,
                        " (do all of them walk the same batches and use shard_bounds?)");
        share.loss_sum = in[0];
        share.correct = in[1];
    }

private:
    MPI_Comm comm_;
    std::size_t chunk_;
    std::vector<float> flat_;  // reused from step to step
};

/// @brief Makes train_classifier_epoch data-parallel over the processes of @p mpi: this process
/// takes its shard of every global batch, and a gradient_averager reduces the gradients.
inline void data_parallel(train_options& options, const mpi_context& mpi, std::size_t chunk = detail::max_count) {
    options.shard_index = std::size_t(mpi.rank());
    options.shard_count = std::size_t(mpi.size());
    options.reduce_gradients = gradient_averager(mpi.comm(), chunk);
}

}  // namespace tern::distributed
