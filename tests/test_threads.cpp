// Thread pool: every index visited exactly once, exceptions propagate, nested calls run inline.
#include <atomic>
#include <catch2/catch.hpp>
#include <vector>

#include "tern/threads.hpp"

TEST_CASE("parallel_for covers the range exactly once", "[threads]") {
    for (std::size_t threads : {1u, 2u, 3u}) {
        tern::set_num_threads(threads);
        for (std::size_t count : {0u, 1u, 2u, 7u, 1000u}) {
            std::vector<std::atomic<int>> hits(count);
            tern::parallel_for(count, [&](std::size_t lo, std::size_t hi) {
                for (std::size_t i = lo; i < hi; ++i) hits[i]++;
            });
            for (auto& h : hits) REQUIRE(h.load() == 1);
        }
    }
    tern::set_num_threads(2);
}

TEST_CASE("parallel_for rethrows an exception from a worker", "[threads]") {
    tern::set_num_threads(2);
    REQUIRE_THROWS_AS(tern::parallel_for(10, [](std::size_t lo, std::size_t) {
                          if (lo > 0) throw tern::error("boom");
                      }),
                      tern::error);
    // The pool still works afterwards.
    std::atomic<int> sum{0};
    tern::parallel_for(4, [&](std::size_t lo, std::size_t hi) { sum += int(hi - lo); });
    REQUIRE(sum == 4);
}

TEST_CASE("nested parallel_for runs inline", "[threads]") {
    tern::set_num_threads(2);
    std::atomic<int> total{0};
    tern::parallel_for(4, [&](std::size_t lo, std::size_t hi) {
        for (std::size_t i = lo; i < hi; ++i)
            tern::parallel_for(3, [&](std::size_t a, std::size_t b) { total += int(b - a); });
    });
    REQUIRE(total == 12);
}

TEST_CASE("set_num_threads rejects 0", "[threads]") { REQUIRE_THROWS_AS(tern::set_num_threads(0), tern::error); }

TEST_CASE("resizing the pool after parallel work is safe", "[threads]") {
    // Regression: new workers used to replay the previous (finished) task.
    for (int round = 0; round < 50; ++round) {
        tern::set_num_threads(2 + round % 2);
        std::atomic<int> sum{0};
        tern::parallel_for(8, [&](std::size_t lo, std::size_t hi) { sum += int(hi - lo); });
        REQUIRE(sum == 8);
    }
    tern::set_num_threads(2);
}
