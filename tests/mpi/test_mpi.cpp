// test_mpi: data-parallel training over MPI, run by ctest under `mpiexec -n 2` (tests/CMakeLists.txt).
//
//   test_mpi equivalence   N ranks with a shard of each batch end with the parameters of one
//                          process that trained on the whole batches (computed here on rank 0),
//                          in fp32 and in absmedian, after 20 steps
//   test_mpi fail          rank 1 throws at step 3 while rank 0 waits in the allreduce: the job
//                          must end non-zero with rank 1's message (tests/mpi/expect_failure.cmake)
//
// A plain program rather than Catch2: every rank runs it, and the verdict is the sum of the
// failures over ranks. Exit code 0 only if every check on every rank passed.
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "tern/distributed/mpi.hpp"
#include "tern/tern.hpp"

namespace {

namespace dist = tern::distributed;

int failures = 0;

void check(const dist::mpi_context& mpi, bool ok, const std::string& what) {
    if (!ok) {
        ++failures;
        std::fprintf(stderr, "FAILED on rank %d: %s\n", mpi.rank(), what.c_str());
    } else if (mpi.is_root()) {
        std::printf("ok: %s\n", what.c_str());
    }
}

// 24-row global batches over 7 * 24 + 1 rows: every epoch ends with a batch of one row, so with
// two ranks one of them has no rows in that step and must still take part in the allreduce.
constexpr std::size_t features = 16, classes = 4, global_batch = 24, rows = 7 * global_batch + 1, steps = 20;

/// Inputs from a fixed normal stream; labels from a fixed random linear map of them (learnable).
tern::data::dataset synthetic() {
    std::mt19937_64 rng(2024);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    tern::data::dataset d{tern::tensor(tern::shape_t{rows, features}), std::vector<int>(rows)};
    std::vector<float> map(features * classes);
    for (auto& w : map) w = normal(rng);
    for (std::size_t i = 0; i < rows; ++i) {
        float* x = d.inputs.data() + i * features;
        for (std::size_t k = 0; k < features; ++k) x[k] = normal(rng);
        int best = 0;
        float best_score = -1e30f;
        for (std::size_t c = 0; c < classes; ++c) {
            float score = 0;
            for (std::size_t k = 0; k < features; ++k) score += x[k] * map[k * classes + c];
            if (score > best_score) best_score = score, best = int(c);
        }
        d.labels[i] = best;
    }
    return d;
}

template <class P>
auto make_model() {
    return tern::sequential{tern::linear<P>(features, 32, true), tern::relu{}, tern::linear<P>(32, 32, true),
                            tern::relu{}, tern::linear<P>(32, classes, true)};
}

/// Trains @p steps steps (several epochs); returns each epoch's mean loss.
template <class Model, class Optimizer>
std::vector<double> train(Model& model, Optimizer& optimizer, const tern::data::dataset& data,
                          tern::train_options options, float clip = 0.0f, std::size_t fail_at = 0,
                          int fail_rank = -1, int rank = 0) {
    tern::softmax_cross_entropy loss;
    tern::data::batch_iterator batches(data, {.batch_size = global_batch, .seed = 5});
    std::size_t step = 0;
    std::vector<double> losses;
    options.show_progress = false;
    options.clip_norm = clip;
    options.stop_at = steps;
    if (fail_rank >= 0)
        options.before_step = [&](std::size_t at) {
            if (at == fail_at && rank == fail_rank)
                tern::detail::fail("test_mpi: rank ", rank, " fails on purpose at step ", at);
        };
    for (std::uint64_t epoch = 0; step < steps; ++epoch) {
        batches.begin_epoch(epoch);
        losses.push_back(tern::train_classifier_epoch(model, loss, optimizer, batches, step, options).loss);
    }
    return losses;
}

/// ||a - b|| / ||b|| over all values of two models of the same layout.
double relative_difference(const tern::parameter_list& a, const tern::parameter_list& b) {
    double diff = 0, norm = 0;
    for (std::size_t i = 0; i < a.size(); ++i)
        for (std::size_t k = 0; k < a[i].value->size(); ++k) {
            const double x = a[i].value->data()[k], y = b[i].value->data()[k];
            diff += (x - y) * (x - y);
            norm += y * y;
        }
    return std::sqrt(diff) / std::sqrt(norm);
}

/// AdamW with clipping checks that clipping sees the reduced gradient; SGD with momentum (no
/// clipping: it would hide a wrong scale, and so would Adam) checks the weighting by rows.
template <class Optimizer>
Optimizer make_optimizer(const tern::parameter_list& params) {
    if constexpr (std::is_same_v<Optimizer, tern::sgd>) return tern::sgd(params, {.lr = 0.05f, .momentum = 0.9f});
    else return tern::adamw(params, {.lr = 3e-3f, .weight_decay = 0.01f});
}

template <class P, class Optimizer>
void equivalence(const dist::mpi_context& mpi, const tern::data::dataset& data, std::size_t chunk) {
    const bool sgd = std::is_same_v<Optimizer, tern::sgd>;
    const float clip = sgd ? 0.0f : 0.5f;
    const std::string name = std::string(P::name) + (sgd ? " + sgd" : " + adamw, clipped");
    // The reference: one process, whole batches (rank 0 alone, no MPI involved).
    std::vector<double> reference_losses;
    tern::manual_seed(7);
    auto reference = make_model<P>();
    if (mpi.is_root()) {
        auto optimizer = make_optimizer<Optimizer>(reference.parameters());
        reference_losses = train(reference, optimizer, data, {}, clip);
    }

    // Data-parallel: each rank starts from its own seed, so only the broadcast makes them agree.
    tern::manual_seed(7 + 1000 * std::uint64_t(mpi.rank()));
    auto model = make_model<P>();
    auto optimizer = make_optimizer<Optimizer>(model.parameters());
    if (mpi.size() > 1)
        check(mpi, !dist::parameters_identical(model.parameters(), mpi.comm()),
              name + ": ranks start from different parameters (the broadcast has work to do)");
    dist::broadcast_parameters(model.parameters(), mpi.comm());
    check(mpi, dist::parameters_identical(model.parameters(), mpi.comm()),
          name + ": after broadcast_parameters all ranks hold rank 0's parameters");
    tern::train_options options;
    dist::data_parallel(options, mpi, chunk);
    const auto losses = train(model, optimizer, data, options, clip);
    check(mpi, dist::parameters_identical(model.parameters(), mpi.comm()),
          name + ": after " + std::to_string(steps) + " steps all ranks hold bit-identical parameters");
    check(mpi, optimizer.steps() == steps, name + ": every rank took " + std::to_string(steps) + " steps");

    if (mpi.is_root()) {
        const double diff = relative_difference(model.parameters(), reference.parameters());
        char text[160];
        std::snprintf(text, sizeof text, ": %d ranks vs 1 process after %zu steps, relative difference %.3g < 1e-5",
                      mpi.size(), steps, diff);
        check(mpi, diff < 1e-5, name + text);
        bool same_losses = losses.size() == reference_losses.size();
        for (std::size_t e = 0; same_losses && e < losses.size(); ++e)
            same_losses = std::abs(losses[e] - reference_losses[e]) <= 1e-5 * std::abs(reference_losses[e]);
        std::snprintf(text, sizeof text, ": reduced epoch losses match the single process (last %.6f vs %.6f)",
                      losses.back(), reference_losses.back());
        check(mpi, same_losses, name + text);
    }

    // Resume: rank 0's optimizer state reaches the others (here the others forgot theirs).
    if (!mpi.is_root()) optimizer.reset_state();
    dist::broadcast_optimizer_state(optimizer, mpi.comm());
    tern::io::safetensors_data state;
    optimizer.save_state(state);
    tern::parameter_list moments;
    std::vector<tern::tensor> copies;
    copies.reserve(state.tensors.size());
    for (const auto& [key, t] : state.tensors) {
        copies.push_back(state.get_f32(key, t.shape));
        moments.push_back({key, &copies.back()});
    }
    check(mpi, dist::parameters_identical(moments, mpi.comm()) && optimizer.steps() == steps,
          name + ": broadcast_optimizer_state gives every rank rank 0's moments and step count");
}

void chunked_allreduce(const dist::mpi_context& mpi) {
    std::vector<float> v(100);
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = float(i) * float(mpi.rank() + 1);
    dist::allreduce_sum(v.data(), v.size(), mpi.comm(), 7);  // 15 calls, the last one short
    const float factor = float(mpi.size() * (mpi.size() + 1) / 2);
    bool ok = true;
    for (std::size_t i = 0; i < v.size(); ++i) ok = ok && v[i] == float(i) * factor;
    check(mpi, ok, "allreduce_sum in chunks of 7 floats sums every element");
}

}  // namespace

int main(int argc, char** argv) {
    dist::mpi_context mpi(argc, argv);
    return dist::run_or_abort(mpi, [&] {
        const std::string mode = argc > 1 ? argv[1] : "";
        tern::detail::require(mode == "equivalence" || mode == "fail", "usage: test_mpi equivalence|fail");
        tern::set_num_threads(1);
        const auto data = synthetic();
        if (mode == "fail") {
            tern::manual_seed(7);
            auto model = make_model<tern::fp32>();
            tern::adamw optimizer(model.parameters());
            tern::train_options options;
            dist::data_parallel(options, mpi);
            train(model, optimizer, data, options, 0.0f, 3, 1, mpi.rank());
            std::fprintf(stderr, "rank %d: trained %zu steps, but rank 1 should have failed at step 3\n", mpi.rank(), steps);
            return 0;  // exit code 0 here fails the test
        }
        chunked_allreduce(mpi);
        // 100-float chunks: the training's allreduce of ~1.8k floats takes several calls.
        equivalence<tern::fp32, tern::sgd>(mpi, data, 100);
        equivalence<tern::fp32, tern::adamw>(mpi, data, dist::detail::max_count);
        equivalence<tern::absmedian_ternary, tern::sgd>(mpi, data, dist::detail::max_count);
        equivalence<tern::absmedian_ternary, tern::adamw>(mpi, data, 100);
        int total = failures;
        MPI_Allreduce(MPI_IN_PLACE, &total, 1, MPI_INT, MPI_SUM, mpi.comm());
        if (mpi.is_root()) std::printf("%s: %d failed check(s) over %d ranks\n", total ? "FAILED" : "passed", total, mpi.size());
        return total == 0 ? 0 : 1;
    });
}
