// Batch iteration: every sample exactly once per epoch, rows travel with their labels,
// seeded shuffles are reproducible, partial and dropped last batches, validation splits.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <set>
#include <vector>

#include "tern/data/batches.hpp"

using tern::data::batch;
using tern::data::batch_iterator;
using tern::data::dataset;

namespace {

/// n samples of shape [2, 3]; sample i holds values 100*i + k and has label i.
dataset numbered(std::size_t n) {
    dataset d{tern::tensor::from_shape({n, 2, 3}), std::vector<int>(n)};
    for (std::size_t i = 0; i < n; ++i) {
        d.labels[i] = int(i);
        for (std::size_t k = 0; k < 6; ++k) d.inputs.data()[i * 6 + k] = float(100 * i + k);
    }
    return d;
}

/// Labels of all batches of one epoch, checking each row matches its label.
std::vector<int> run_epoch(batch_iterator& it, std::uint64_t epoch, std::vector<std::size_t>* sizes = nullptr) {
    it.begin_epoch(epoch);
    std::vector<int> seen;
    batch b;
    while (it.next(b)) {
        REQUIRE(b.inputs.dimension() == 3);
        REQUIRE(b.inputs.shape()[0] == b.labels.size());
        REQUIRE(b.inputs.shape()[1] == 2);
        REQUIRE(b.inputs.shape()[2] == 3);
        for (std::size_t r = 0; r < b.labels.size(); ++r)
            for (std::size_t k = 0; k < 6; ++k)
                REQUIRE(b.inputs.data()[r * 6 + k] == float(100 * b.labels[r] + int(k)));
        if (sizes) sizes->push_back(b.labels.size());
        seen.insert(seen.end(), b.labels.begin(), b.labels.end());
    }
    REQUIRE_FALSE(it.next(b));  // stays exhausted
    return seen;
}

}  // namespace

TEST_CASE("every sample appears once per epoch, last batch partial", "[batches]") {
    const dataset d = numbered(10);
    batch_iterator it(d, {.batch_size = 3, .shuffle = true, .seed = 5});
    REQUIRE(it.batches_per_epoch() == 4);
    for (std::uint64_t epoch = 0; epoch < 4; ++epoch) {
        std::vector<std::size_t> sizes;
        auto seen = run_epoch(it, epoch, &sizes);
        REQUIRE(sizes == std::vector<std::size_t>{3, 3, 3, 1});
        std::sort(seen.begin(), seen.end());
        for (int i = 0; i < 10; ++i) REQUIRE(seen[std::size_t(i)] == i);
    }
}

TEST_CASE("drop_last skips the partial batch", "[batches]") {
    const dataset d = numbered(10);
    batch_iterator it(d.inputs, d.labels, {.batch_size = 4, .shuffle = true, .seed = 1, .drop_last = true});
    REQUIRE(it.batches_per_epoch() == 2);
    std::vector<std::size_t> sizes;
    const auto seen = run_epoch(it, 0, &sizes);
    REQUIRE(sizes == std::vector<std::size_t>{4, 4});
    REQUIRE(std::set<int>(seen.begin(), seen.end()).size() == 8);
    // Exact multiples keep every batch.
    batch_iterator exact(d, {.batch_size = 5, .drop_last = true});
    REQUIRE(exact.batches_per_epoch() == 2);
    REQUIRE(run_epoch(exact, 0).size() == 10);
}

TEST_CASE("without shuffle the order is the data order", "[batches]") {
    const dataset d = numbered(7);
    batch_iterator it(d, {.batch_size = 2, .shuffle = false});
    for (std::uint64_t epoch : {0u, 3u}) REQUIRE(run_epoch(it, epoch) == std::vector<int>{0, 1, 2, 3, 4, 5, 6});
}

TEST_CASE("same seed gives the same order, different seeds and epochs differ", "[batches]") {
    const dataset d = numbered(50);
    batch_iterator a(d, {.batch_size = 8, .seed = 42});
    batch_iterator b(d, {.batch_size = 8, .seed = 42});
    batch_iterator c(d, {.batch_size = 8, .seed = 43});
    const auto a0 = run_epoch(a, 0), a1 = run_epoch(a, 1);
    REQUIRE(a0 == run_epoch(b, 0));
    REQUIRE(a1 == run_epoch(b, 1));
    REQUIRE(a0 != run_epoch(c, 0));
    REQUIRE(a0 != a1);
    // An epoch's order depends only on (seed, epoch): replaying epoch 0 after epoch 1 matches.
    REQUIRE(run_epoch(a, 0) == a0);
    std::vector<int> identity(50);
    for (int i = 0; i < 50; ++i) identity[std::size_t(i)] = i;
    REQUIRE(a0 != identity);
}

TEST_CASE("shuffle order is pinned across platforms", "[batches]") {
    // mt19937_64 and tern's own Fisher-Yates are fully specified, so this order must never change.
    const dataset d = numbered(10);
    batch_iterator it(d, {.batch_size = 10, .seed = 2024});
    const std::vector<std::size_t> order = it.order();
    it.begin_epoch(0);
    REQUIRE(it.order() == order);
    REQUIRE(order == std::vector<std::size_t>{9, 8, 6, 4, 7, 1, 3, 0, 2, 5});
}

TEST_CASE("batch iterator edge cases", "[batches]") {
    const dataset empty = numbered(0);
    batch_iterator it(empty, {.batch_size = 4});
    REQUIRE(it.batches_per_epoch() == 0);
    REQUIRE(run_epoch(it, 0).empty());

    const dataset d = numbered(3);
    REQUIRE_THROWS_WITH(batch_iterator(d, {.batch_size = 0}), Catch::Contains("batch_size must be at least 1"));
    const std::vector<int> two_labels = {0, 1};
    REQUIRE_THROWS_WITH(batch_iterator(d.inputs, two_labels, {}),
                        Catch::Contains("inputs have 3 rows (shape [3, 2, 3]) but there are 2 labels"));
    // Larger batch than data: one partial batch, or none with drop_last.
    batch_iterator big(d, {.batch_size = 100});
    REQUIRE(run_epoch(big, 0).size() == 3);
    batch_iterator big_drop(d, {.batch_size = 100, .drop_last = true});
    REQUIRE(run_epoch(big_drop, 0).empty());
    // 1-D inputs (one value per sample) work too.
    tern::tensor flat = tern::tensor::from_shape({4});
    for (std::size_t i = 0; i < 4; ++i) flat(i) = float(i);
    const std::vector<int> labels = {0, 1, 2, 3};
    batch_iterator it1(flat, labels, {.batch_size = 3, .shuffle = false});
    batch b;
    REQUIRE(it1.next(b));
    REQUIRE(b.inputs.shape() == tern::shape_t{3});
    REQUIRE(b.inputs(2) == 2.0f);
}

TEST_CASE("split_validation is deterministic and disjoint", "[batches]") {
    const dataset d = numbered(20);
    const auto s = tern::data::split_validation(d, 5, 9);
    REQUIRE(s.train.size() == 15);
    REQUIRE(s.validation.size() == 5);
    REQUIRE(s.train.inputs.shape() == tern::shape_t{15, 2, 3});
    REQUIRE(s.validation.inputs.shape() == tern::shape_t{5, 2, 3});
    std::set<int> all(s.train.labels.begin(), s.train.labels.end());
    for (int l : s.validation.labels) REQUIRE(all.insert(l).second);
    REQUIRE(all.size() == 20);
    // Rows moved with their labels; each part keeps the original relative order.
    for (const auto* part : {&s.train, &s.validation}) {
        REQUIRE(std::is_sorted(part->labels.begin(), part->labels.end()));
        for (std::size_t r = 0; r < part->size(); ++r)
            REQUIRE(part->inputs.data()[r * 6 + 5] == float(100 * part->labels[r] + 5));
    }
    REQUIRE(tern::data::split_validation(d, 5, 9).validation.labels == s.validation.labels);
    REQUIRE(tern::data::split_validation(d, 5, 10).validation.labels != s.validation.labels);
    REQUIRE(tern::data::split_validation(d, 0, 1).train.size() == 20);
    REQUIRE(tern::data::split_validation(d, 20, 1).validation.size() == 20);
    REQUIRE_THROWS_WITH(tern::data::split_validation(d, 21, 1),
                        Catch::Contains("asked for 21 validation samples but the data set has only 20"));

    const auto g = tern::data::gather_rows(d.inputs, d.labels, {3, 3, 0});
    REQUIRE(g.labels == std::vector<int>{3, 3, 0});
    REQUIRE(g.inputs.data()[6] == 300.0f);
    REQUIRE_THROWS_WITH(tern::data::gather_rows(d.inputs, d.labels, {20}), Catch::Contains("index 20 out of range"));
}

TEST_CASE("shard_bounds tiles a batch in order, parts differ by at most one row", "[batches]") {
    for (std::size_t rows : {0, 1, 5, 24, 25, 127}) {
        for (std::size_t count : {1, 2, 3, 8}) {
            std::size_t next = 0, smallest = rows, largest = 0;
            for (std::size_t r = 0; r < count; ++r) {
                const auto [begin, end] = tern::data::shard_bounds(rows, r, count);
                CHECK(begin == next);
                next = end;
                smallest = std::min(smallest, end - begin);
                largest = std::max(largest, end - begin);
            }
            CHECK(next == rows);
            CHECK(largest - smallest <= 1);
        }
    }
    CHECK(tern::data::shard_bounds(1, 0, 2) == std::pair<std::size_t, std::size_t>{0, 0});  // an empty part
    CHECK(tern::data::shard_bounds(1, 1, 2) == std::pair<std::size_t, std::size_t>{0, 1});
    REQUIRE_THROWS_WITH(tern::data::shard_bounds(4, 2, 2), Catch::Contains("part 2 of 2"));
}

TEST_CASE("slice_rows copies a range of rows with their labels", "[batches]") {
    const dataset d = numbered(5);
    const batch all{d.inputs, d.labels};
    const batch middle = tern::data::slice_rows(all, 1, 4);
    REQUIRE(middle.inputs.shape() == std::vector<std::size_t>{3, 2, 3});
    CHECK(middle.labels == std::vector<int>{1, 2, 3});
    for (std::size_t r = 0; r < 3; ++r)
        for (std::size_t k = 0; k < 6; ++k) CHECK(middle.inputs.data()[r * 6 + k] == float(100 * (r + 1) + k));
    CHECK(tern::data::slice_rows(all, 5, 5).size() == 0);
    REQUIRE_THROWS_WITH(tern::data::slice_rows(all, 3, 6), Catch::Contains("rows [3, 6)"));
}
