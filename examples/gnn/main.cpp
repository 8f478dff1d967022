// gnn: node and text classification with 1.58-bit weights: SGC, a 2-layer GCN and WideMLP on a
// graph in the LINQS/Planetoid format (Cora, CiteSeer, PubMed), OGB CSV, or by default the Debian
// package graph (examples/gnn/debian_index.hpp), built on first use from `apt-cache dumpavail`.
//
//   gnn --model sgc --policy absmean --runs 10        # SGC (K = 2), mean +- sd over 10 seeds
//   gnn --model gcn --policy fp32 --hidden 64
//   gnn --model widemlp --policy absmedian            # the Debian text set, 80/10/10
//   gnn --data ~/cora --model sgc                     # a LINQS copy (cora.content, cora.cites)
//   gnn --model sgc --export sgc.tern                 # packed linear on the propagated features
//
// The last line of output is one JSON object with the results.
#include <sys/resource.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>

#include "common/cli.hpp"
#include "gnn/debian_index.hpp"
#include "tern/checkpoint.hpp"
#include "tern/data/linqs.hpp"
#include "tern/data/ogb.hpp"
#include "tern/deploy/packed_model.hpp"
#include "tern/graph/gcn_conv.hpp"
#include "tern/graph/sgc.hpp"
#include "tern/layers/embedding_bag.hpp"
#include "tern/tern.hpp"
#include "tern/train/node_classification.hpp"

namespace fs = std::filesystem;

namespace {

struct settings {
    std::string model, policy, data, name, ogb, save, load, export_path;
    std::size_t epochs = 100, hidden = 64, threads = 2, runs = 1, hops = 2, batch = 64, patience = 0;
    double lr = 0.01, wd = 5e-4;
    std::uint64_t seed = 1;
    bool quiet = false;
};

struct loaded_data {
    tern::data::graph_data g;
    tern::node_split split;
    tern::shared_propagation graph;
    std::string source;
};

// The models, each written once for every policy.
template <class P>
auto make_sgc(const loaded_data& d, const settings& s) {
    return tern::sequential{tern::sgc<P>(d.graph, s.hops, d.g.features.shape()[1], d.g.classes.size())};
}
template <class P>
auto make_gcn(const loaded_data& d, const settings& s) {
    return tern::sequential{tern::gcn_conv<P>(d.graph, d.g.features.shape()[1], s.hidden), tern::relu{},
                            tern::dropout(0.5f), tern::gcn_conv<P>(d.graph, s.hidden, d.g.classes.size())};
}
template <class P>
auto make_widemlp(const loaded_data& d, const settings& s) {
    return tern::sequential{tern::embedding_bag<P>(d.g.features.shape()[1], s.hidden), tern::relu{},
                            tern::dropout(0.5f), tern::linear<P>(s.hidden, d.g.classes.size())};
}

double peak_rss_mib() {
    rusage u{};
    ::getrusage(RUSAGE_SELF, &u);
    return double(u.ru_maxrss) / 1024.0;  // Linux reports KiB
}

loaded_data load(const settings& s) {
    loaded_data d;
    if (!s.ogb.empty()) {
        d.g = tern::data::read_ogb(s.ogb);
        d.source = "ogb:" + s.ogb;
    } else {
        fs::path dir = s.data;
        std::string name = s.name;
        if (dir.empty()) {
            dir = "debian_graph_data";
            if (name.empty()) name = s.model == "widemlp" ? "debian_text" : "debian";
            if (!fs::exists(dir / (name + ".content"))) {
                std::cerr << "gnn: building the Debian package graph into " << dir.string()
                          << " (the same as: debian_graph --out " << dir.string() << ")\n";
                tern_examples::write_debian_data(dir, 1500, 0);
            }
        }
        if (name.empty()) {
            for (const auto& e : fs::directory_iterator(dir))
                if (e.path().extension() == ".content") {
                    tern::detail::require(name.empty(), "--data ", dir.string(),
                                          " holds several .content files: choose one with --name");
                    name = e.path().stem().string();
                }
            tern::detail::require(!name.empty(), "--data ", dir.string(), ": no NAME.content file there");
        }
        std::size_t skipped = 0;
        d.g = tern::data::read_linqs(dir, name, {.skip_unknown_edges = true}, &skipped);
        if (skipped) std::cerr << "gnn: skipped " << skipped << " edges naming nodes missing from " << name << ".content\n";
        d.source = (dir / name).string();
    }
    if (d.g.split) d.split = *d.g.split;
    else if (s.model == "widemlp") d.split = tern::random_split(d.g.nodes(), 0.8, 0.1, 0);
    else d.split = tern::planetoid_split(d.g.labels, d.g.classes.size(), 20, 500, 1000, 0);
    if (s.model != "widemlp") d.graph = tern::make_gcn_propagation(d.g.adjacency());
    return d;
}

tern::tensor gather_rows(const tern::tensor& x, const std::vector<std::size_t>& rows, std::size_t lo, std::size_t hi) {
    const std::size_t F = x.shape()[1];
    tern::tensor out = tern::tensor::from_shape({hi - lo, F});
    for (std::size_t i = lo; i < hi; ++i) std::copy_n(x.data() + rows[i] * F, F, out.data() + (i - lo) * F);
    return out;
}

template <class Model>
double accuracy_in_batches(Model& model, const loaded_data& d, const std::vector<std::size_t>& rows) {
    std::size_t right = 0;
    for (std::size_t lo = 0; lo < rows.size(); lo += 4096) {
        const std::size_t hi = std::min(rows.size(), lo + 4096);
        const auto predicted = tern::argmax_rows(model.forward(gather_rows(d.g.features, rows, lo, hi)));
        for (std::size_t i = lo; i < hi; ++i) right += predicted[i - lo] == d.g.labels[rows[i]];
    }
    return rows.empty() ? 0.0 : double(right) / double(rows.size());
}

/// WideMLP: mini-batches of documents (bags of words), AdamW, the loss on the training set.
template <class Model>
tern::node_training_result train_widemlp(Model& model, const loaded_data& d, const settings& s,
                                         tern::progress_bar* bar) {
    tern::adamw opt(model.parameters(), {.lr = float(s.lr), .weight_decay = float(s.wd)});
    tern::softmax_cross_entropy loss;
    std::vector<std::size_t> order = d.split.train;
    std::mt19937_64 rng(s.seed);
    tern::node_training_result r;
    for (std::size_t epoch = 1; epoch <= s.epochs; ++epoch) {
        model.set_training(true);
        std::shuffle(order.begin(), order.end(), rng);
        double total = 0;
        for (std::size_t lo = 0; lo < order.size(); lo += s.batch) {
            const std::size_t hi = std::min(order.size(), lo + s.batch);
            std::vector<int> labels(hi - lo);
            for (std::size_t i = lo; i < hi; ++i) labels[i - lo] = d.g.labels[order[i]];
            opt.zero_grad();
            total += loss.forward(model.forward(gather_rows(d.g.features, order, lo, hi)), labels) * double(hi - lo);
            tern::backward_parameters(model, loss.backward());
            opt.step();
        }
        r.final_loss = float(total / double(order.size()));
        r.epochs_run = epoch;
        if (bar) bar->update(epoch, r.final_loss, -1, double(epoch));
    }
    model.set_training(false);
    r.train_accuracy = accuracy_in_batches(model, d, d.split.train);
    r.validation_accuracy = accuracy_in_batches(model, d, d.split.validation);
    r.test_accuracy = accuracy_in_batches(model, d, d.split.test);
    return r;
}

template <class P, class Model>
void export_model(Model& model, const loaded_data& d, const settings& s) {
    if constexpr (requires { model.template layer<0>().hops(); }) {
        // SGC: the packed linear layer on S^K X, which the file's test inputs hold a few rows of.
        auto& layer = model.template layer<0>();
        const tern::tensor& propagated = layer.propagate_features(d.g.features);
        // Frozen straight from the trained layer: copying the trained linear would copy its
        // activation buffers for all nodes as well.
        tern::inference_model m = tern::sequential{tern::linear<tern::frozen<P>>(layer.inner())};
        const std::vector<std::size_t> rows = {0, 1, 2, 3};
        tern::save_packed_model(s.export_path, m, {.test_inputs = gather_rows(propagated, rows, 0, 4), .metadata = {}});
    } else if constexpr (requires { model.template layer<0>().vocab_size(); }) {
        tern::inference_model m = tern::freeze(model);
        const std::vector<std::size_t> rows = {0, 1, 2, 3};
        tern::save_packed_model(s.export_path, m, {.test_inputs = gather_rows(d.g.features, rows, 0, 4), .metadata = {}});
    } else {
        tern::detail::fail("--export: a GCN needs its graph at inference time, which a model file does not hold; "
                           "export an sgc or widemlp model");
    }
}

template <class P, class Make>
nlohmann::json run_one(const loaded_data& d, const settings& s, std::uint64_t seed, Make&& make) {
    tern::manual_seed(seed);
    auto model = make();
    if (!s.load.empty()) tern::load_checkpoint(s.load, model);
    std::unique_ptr<tern::progress_bar> bar;
    if (!s.quiet) bar = std::make_unique<tern::progress_bar>(s.model + "<" + s.policy + "> seed " + std::to_string(seed), s.epochs);
    const auto t0 = std::chrono::steady_clock::now();
    tern::node_training_result r;
    if (s.model == "widemlp") {
        settings ss = s;
        ss.seed = seed;
        r = train_widemlp(model, d, ss, bar.get());
    } else {
        tern::node_training_options opt{.epochs = s.epochs, .lr = float(s.lr), .weight_decay = float(s.wd),
                                        .patience = s.patience, .on_epoch = {}};
        if (bar) opt.on_epoch = [&](std::size_t epoch, float loss, double val) { bar->update(epoch, loss, val, double(epoch)); };
        r = tern::train_node_classifier(model, d.g.features, d.g.labels, d.split, opt);
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (bar) bar->finish();
    if (!s.save.empty()) tern::save_checkpoint(s.save, model);
    if (!s.export_path.empty()) export_model<P>(model, d, s);
    std::cerr << "gnn: seed " << seed << ": train " << r.train_accuracy << ", validation " << r.validation_accuracy
              << ", test " << r.test_accuracy << " (" << r.epochs_run << " epochs, " << seconds << " s)\n";
    return {{"seed", seed}, {"train", r.train_accuracy}, {"validation", r.validation_accuracy},
            {"test", r.test_accuracy}, {"epochs", r.epochs_run}, {"best_epoch", r.best_epoch},
            {"seconds", seconds}, {"model", model.describe()}};
}

template <class P>
nlohmann::json run(const loaded_data& d, const settings& s) {
    nlohmann::json runs = nlohmann::json::array();
    for (std::size_t i = 0; i < s.runs; ++i) {
        const std::uint64_t seed = s.seed + i;
        if (s.model == "sgc") runs.push_back(run_one<P>(d, s, seed, [&] { return make_sgc<P>(d, s); }));
        else if (s.model == "gcn") runs.push_back(run_one<P>(d, s, seed, [&] { return make_gcn<P>(d, s); }));
        else runs.push_back(run_one<P>(d, s, seed, [&] { return make_widemlp<P>(d, s); }));
    }
    double mean = 0, sd = 0;
    for (const auto& r : runs) mean += r["test"].get<double>();
    mean /= double(runs.size());
    for (const auto& r : runs) sd += std::pow(r["test"].get<double>() - mean, 2);
    sd = runs.size() > 1 ? std::sqrt(sd / double(runs.size() - 1)) : 0.0;
    std::cerr << "gnn: " << s.model << " " << s.policy << " test accuracy " << 100 * mean << " +- " << 100 * sd
              << " over " << runs.size() << " run(s)\n";
    return {{"model", s.model}, {"policy", s.policy}, {"data", d.source}, {"nodes", d.g.nodes()},
            {"edges", d.g.edges.size()}, {"test_mean", mean}, {"test_sd", sd}, {"runs", runs}};
}

}  // namespace

int main(int argc, char** argv) {
    try {
        tern_examples::cli args(argc, argv, "Graph and bag-of-words classification with 1.58-bit weights.");
        settings s;
        s.model = args.choice("model", "sgc", {"sgc", "gcn", "widemlp"}, "model");
        s.policy = args.choice("policy", "absmean", {"fp32", "fp16", "absmean", "absmedian"}, "weight policy");
        s.data = args.value("data", "", "LINQS directory (NAME.content, NAME.cites); default: the Debian graph");
        s.name = args.value("name", "", "NAME of the LINQS files (default: the only .content file in --data)");
        s.ogb = args.value("ogb", "", "OGB CSV directory (edge.csv, node-feat.csv, node-label.csv, train/valid/test.csv)");
        const bool widemlp = s.model == "widemlp";
        s.epochs = std::size_t(args.integer("epochs", widemlp ? 10 : 100, 0, 1000000, "training epochs"));
        s.lr = args.real("lr", widemlp ? 1e-3 : 0.01, 0.0, 10.0, "AdamW learning rate");
        s.wd = args.real("wd", widemlp ? 0.0 : 5e-4, 0.0, 10.0, "AdamW decoupled weight decay");
        s.hidden = std::size_t(args.integer("hidden", widemlp ? 1024 : 64, 1, 1 << 20, "hidden width (gcn, widemlp)"));
        s.hops = std::size_t(args.integer("hops", 2, 1, 64, "SGC propagation steps K"));
        s.batch = std::size_t(args.integer("batch", 64, 1, 1 << 20, "widemlp batch size"));
        s.patience = std::size_t(args.integer("patience", 0, 0, 1000000, "early stopping on validation accuracy (0: off)"));
        s.threads = std::size_t(args.integer("threads", 2, 1, 1024, "threads"));
        s.runs = std::size_t(args.integer("runs", 1, 1, 1000, "runs (seeds seed .. seed + runs - 1)"));
        s.seed = std::uint64_t(args.integer("seed", 1, 0, 1L << 62, "first random seed"));
        s.save = args.value("save", "", "checkpoint to write after training");
        s.load = args.value("load", "", "checkpoint to start from");
        s.export_path = args.value("export", "", "packed model file to write (sgc: the linear on S^K X; widemlp)");
        s.quiet = args.flag("quiet", "no progress bar");
        if (!args.finish()) return 0;
        tern::set_num_threads(s.threads);
        const loaded_data d = load(s);
        std::cerr << "gnn: " << d.source << ": " << d.g.nodes() << " nodes, " << d.g.edges.size() << " edges, "
                  << d.g.features.shape()[1] << " features, " << d.g.classes.size() << " classes; split "
                  << d.split.train.size() << "/" << d.split.validation.size() << "/" << d.split.test.size() << "\n";
        nlohmann::json result;
        if (s.policy == "fp32") result = run<tern::fp32>(d, s);
        else if (s.policy == "fp16") result = run<tern::fp16>(d, s);
        else if (s.policy == "absmean") result = run<tern::absmean_ternary>(d, s);
        else result = run<tern::absmedian_ternary>(d, s);
        result["peak_rss_mib"] = peak_rss_mib();
        std::cout << result.dump() << std::endl;
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "gnn: " << e.what() << "\n";
        return 1;
    }
}
