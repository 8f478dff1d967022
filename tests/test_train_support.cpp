// Training support: confusion matrix, CSV log, progress display (plain mode), evaluation loop.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "tern/tern.hpp"

TEST_CASE("confusion matrix counts, accuracy and recall", "[metrics]") {
    tern::confusion_matrix cm(3);
    cm.add({0, 0, 1, 2, 2, 2}, {0, 1, 1, 2, 2, 0});
    CHECK(cm.total() == 6);
    CHECK(cm.count(0, 1) == 1);
    CHECK(cm.accuracy() == Approx(4.0 / 6.0));
    CHECK(cm.recall(2) == Approx(2.0 / 3.0));
    CHECK(cm.to_string().find("recall") != std::string::npos);
    REQUIRE_THROWS_WITH(cm.add(3, 0), Catch::Contains("[0, 3)"));
    REQUIRE_THROWS_AS(cm.add({0}, {0, 1}), tern::error);
}

TEST_CASE("CSV log writes a header and one flushed row per record", "[csv]") {
    const auto path = std::filesystem::temp_directory_path() / "tern_test_log.csv";
    {
        tern::csv_log log(path, {"step", "loss"});
        log.row({1, 0.5});
        log.row({2, 0.25});
        REQUIRE_THROWS_WITH(log.row({3}), Catch::Contains("expected 2 values, got 1"));
    }
    std::ifstream in(path);
    std::string all((std::istreambuf_iterator<char>(in)), {});
    CHECK(all == "step,loss\n1,0.5\n2,0.25\n");
    REQUIRE_THROWS_AS(tern::csv_log("/nonexistent_dir/x.csv", {"a"}), tern::error);
}

TEST_CASE("progress display prints plain lines with rate and ETA off a terminal", "[progress]") {
    std::ostringstream out;
    tern::progress_bar bar("epoch 1/2", 8, out, 0, 50);
    for (std::size_t i = 1; i <= 8; ++i) bar.update(i, 1.0 / double(i), 0.5, double(i * 10));
    bar.finish();
    const std::string text = out.str();
    CHECK(text.find("epoch 1/2 4/8  loss 0.2500  acc 50.00%") != std::string::npos);
    CHECK(text.find("8/8") != std::string::npos);
    CHECK(text.find("samples/s") != std::string::npos);
    CHECK(text.find("ETA") != std::string::npos);
    CHECK(std::count(text.begin(), text.end(), '\n') <= 4);  // every 50%, not every step
    CHECK(tern::format_duration(3725) == "1:02:05");
    CHECK(tern::format_duration(65) == "1:05");
}

TEST_CASE("a diverging run stops with the step where the loss became non-finite", "[train]") {
    tern::manual_seed(1);
    auto model = tern::sequential{tern::linear<tern::fp32>(2, 2)};
    tern::data::dataset d{tern::tensor({{1.0f, 2.0f}, {3.0f, std::nanf("")}}), {0, 1}};
    tern::adam opt(model.parameters());
    tern::softmax_cross_entropy loss;
    tern::data::batch_iterator it(d, {.batch_size = 2, .shuffle = false});
    std::size_t step = 0;
    REQUIRE_THROWS_WITH(tern::train_classifier_epoch(model, loss, opt, it, step, {.show_progress = false}),
                        Catch::Contains("step 0") && Catch::Contains("not finite"));
}

TEST_CASE("prepare_batch sees every batch before the forward pass", "[train]") {
    tern::manual_seed(2);
    auto model = tern::sequential{tern::linear<tern::fp32>(2, 2)};
    tern::data::dataset d{tern::tensor({{1.0f, 2.0f}, {3.0f, 4.0f}, {5.0f, 6.0f}}), {0, 1, 0}};
    tern::adam opt(model.parameters());
    tern::softmax_cross_entropy loss;
    tern::data::batch_iterator it(d, {.batch_size = 2, .shuffle = false});
    std::size_t step = 0, calls = 0, rows = 0;
    tern::train_classifier_epoch(model, loss, opt, it, step,
                                 {.show_progress = false, .prepare_batch = [&](tern::data::batch& b) {
                                      ++calls;
                                      rows += b.size();
                                  }});
    CHECK(calls == 2);
    CHECK(rows == 3);
    // What prepare_batch writes is what the model sees: a NaN batch stops training.
    it.begin_epoch(1);
    REQUIRE_THROWS_WITH(tern::train_classifier_epoch(model, loss, opt, it, step,
                                                     {.show_progress = false,
                                                      .prepare_batch = [](tern::data::batch& b) {
                                                          b.inputs.fill(std::nanf(""));
                                                      }}),
                        Catch::Contains("not finite"));
}

TEST_CASE("a sharded epoch trains on its rows and hands every step's share to reduce_gradients", "[train]") {
    tern::manual_seed(3);
    auto model = tern::sequential{tern::linear<tern::fp32>(2, 2)};
    // 5 rows in batches of 4: the last batch has one row, so part 0 of 2 has none in that step.
    tern::data::dataset d{tern::tensor({{1.0f, 2.0f}, {3.0f, 4.0f}, {5.0f, 6.0f}, {7.0f, 8.0f}, {9.0f, 1.0f}}),
                          {0, 1, 0, 1, 1}};
    tern::sgd opt(model.parameters());
    tern::softmax_cross_entropy loss;
    for (std::size_t part : {0, 1}) {
        tern::data::batch_iterator it(d, {.batch_size = 4, .shuffle = false});
        std::size_t step = 0;
        std::vector<std::pair<std::size_t, std::size_t>> rows;
        std::vector<double> gradient_sums;
        tern::train_options options{.show_progress = false, .shard_index = part, .shard_count = 2};
        options.reduce_gradients = [&](const tern::parameter_list& params, tern::step_share& share) {
            rows.emplace_back(share.rows, share.global_rows);
            double sum = 0;
            for (const auto& p : params)
                for (float g : *p.grad) sum += std::abs(g);
            gradient_sums.push_back(sum);
            if (share.rows == 0) CHECK(share.loss_sum == 0);
            share.loss_sum = 2.0 * double(share.global_rows);  // as if the other part had reported
            share.correct = double(share.global_rows);
        };
        const auto stats = tern::train_classifier_epoch(model, loss, opt, it, step, options);
        CHECK(step == 2);  // both parts take both steps, rows or not
        if (part == 0) {
            CHECK(rows == std::vector<std::pair<std::size_t, std::size_t>>{{2, 4}, {0, 1}});
            CHECK(gradient_sums[0] > 0);
            CHECK(gradient_sums[1] == 0);  // no rows: zero gradients into the reduction
        } else {
            CHECK(rows == std::vector<std::pair<std::size_t, std::size_t>>{{2, 4}, {1, 1}});
            CHECK(gradient_sums[1] > 0);
        }
        CHECK(stats.loss == Approx(2.0));  // the statistics are the reduced ones
        CHECK(stats.accuracy == 1.0);
    }
    tern::data::batch_iterator it(d, {.batch_size = 4, .shuffle = false});
    std::size_t step = 0;
    REQUIRE_THROWS_WITH(tern::train_classifier_epoch(model, loss, opt, it, step,
                                                     {.show_progress = false, .shard_count = 2}),
                        Catch::Contains("needs a reduce_gradients hook"));
}
