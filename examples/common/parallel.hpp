#pragma once
// Data parallelism for the example programs (mlp, cnn, lm). Built with TERN_WITH_MPI=1 (CMake:
// -DTERN_WITH_MPI=ON) they run under `mpirun -np N` with the same flags: --batch stays the global
// batch, every rank trains on its shard of it (tern/distributed/mpi.hpp), and only rank 0 prints,
// logs and writes files. Without MPI, `world` is the one process and every call below is a no-op.
//
//   int main(int argc, char** argv) {
//       tern_examples::world world(argc, argv);   // MPI_Init_thread; quiets the ranks but 0
//       try { ... world.sync(optimizer); world.attach(options); ... }
//       catch (const std::exception& e) { return world.fail("mlp", e); }  // ends every rank
//   }
#include <cstddef>
#include <exception>
#include <iostream>
#include <string>

#include "tern/tern.hpp"
#if TERN_WITH_MPI
#include <fcntl.h>
#include <unistd.h>

#include "tern/distributed/mpi.hpp"
#endif

namespace tern_examples {

class world {
public:
    world(int& argc, char**& argv)
#if TERN_WITH_MPI
        : mpi_(argc, argv), averager_(mpi_.comm()) {
        // Only rank 0 speaks: the others write to /dev/null and keep their stderr for fail().
        if (!mpi_.is_root()) {
            std::cout.flush();
            saved_stderr_ = ::dup(2);
            const int null = ::open("/dev/null", O_WRONLY);
            if (null >= 0) {
                ::dup2(null, 1);
                ::dup2(null, 2);
                ::close(null);
            }
        }
#else
    {
        (void)argc;
        (void)argv;
#endif
        current_ = this;
    }
    world(const world&) = delete;
    world& operator=(const world&) = delete;

    /// The world of this program (the one main made).
    static world& get() { return *current_; }

#if TERN_WITH_MPI
    std::size_t rank() const { return std::size_t(mpi_.rank()); }
    std::size_t size() const { return std::size_t(mpi_.size()); }
#else
    std::size_t rank() const { return 0; }
    std::size_t size() const { return 1; }
#endif
    bool root() const { return rank() == 0; }

    /// Only rank 0 writes files: on the other ranks these paths (--save, --log, --export) are cleared.
    template <class... Paths>
    void root_only(Paths&... paths) const {
        if (!root()) (paths.clear(), ...);
    }

    /// Gives every rank rank 0's parameters (and buffers) and optimizer state: call it once the
    /// model is built or loaded, before training.
    template <class Optimizer>
    void sync(Optimizer& optimizer) {
#if TERN_WITH_MPI
        tern::distributed::broadcast_parameters(optimizer.parameters(), mpi_.comm());
        tern::distributed::broadcast_optimizer_state(optimizer, mpi_.comm());
#else
        (void)optimizer;
#endif
    }

    /// train_classifier_epoch then trains on this rank's shard of every batch and reduces the gradients.
    void attach(tern::train_options& options) {
#if TERN_WITH_MPI
        tern::distributed::data_parallel(options, mpi_);
#else
        (void)options;
#endif
    }

    /// This rank's windows of a global LM batch (rows [r*G/W, (r+1)*G/W)).
    tern::text::lm_batch shard(tern::text::lm_batch global) const {
        if (size() == 1) return global;
        const std::size_t rows = global.inputs.shape()[0], context = global.inputs.shape()[1];
        tern::detail::require(rows >= size(), "--batch ", rows, " is smaller than the ", size(),
                              " processes: every process needs at least one window per step");
        const auto [begin, end] = tern::data::shard_bounds(rows, rank(), size());
        tern::text::lm_batch local;
        local.inputs = tern::tensor(tern::shape_t{end - begin, context});
        std::copy(global.inputs.begin() + std::ptrdiff_t(begin * context),
                  global.inputs.begin() + std::ptrdiff_t(end * context), local.inputs.begin());
        local.targets.assign(global.targets.begin() + std::ptrdiff_t(begin * context),
                             global.targets.begin() + std::ptrdiff_t(end * context));
        return local;
    }

    /// After backward on @p rows of a global batch of @p global_rows: makes the gradients those of
    /// the whole batch (one allreduce) and returns the mean loss over it (this rank's: @p loss).
    float reduce(const tern::parameter_list& params, std::size_t rows, std::size_t global_rows, float loss) {
#if TERN_WITH_MPI
        tern::step_share share{.rows = rows, .global_rows = global_rows, .loss_sum = double(loss) * double(rows)};
        averager_(params, share);
        return float(share.loss_sum / double(global_rows));
#else
        (void)params, (void)rows, (void)global_rows;
        return loss;
#endif
    }

    /// Reports a top-level error as "<program>: error: <what>" and returns main's exit code; with
    /// MPI, prefixes "rank R: " and ends every rank of the job (no rank is left waiting).
    int fail(const char* program, const std::exception& e) {
#if TERN_WITH_MPI
        if (saved_stderr_ >= 0) ::dup2(saved_stderr_, 2);
        mpi_.abort(std::string(program) + ": error: " + e.what());
#else
        std::cerr << program << ": error: " << e.what() << "\n";
        return 1;
#endif
    }

private:
#if TERN_WITH_MPI
    tern::distributed::mpi_context mpi_;
    tern::distributed::gradient_averager averager_;
    int saved_stderr_ = -1;
#endif
    inline static world* current_ = nullptr;
};

}  // namespace tern_examples
