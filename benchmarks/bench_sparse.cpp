// Sparse x dense products and full-batch graph training epochs on a LINQS graph (by default the
// Debian package graph of examples/debian_graph): tern's spmm over the GCN-normalized adjacency,
// one SGC epoch (K = 2, the propagation cached as in training) and one 2-layer GCN epoch, in one
// policy. --dump DIR also writes the graph as raw arrays for benchmarks/sparse_pytorch.py, so both
// sides time the same matrix. The last line is JSON; benchmarks/sparse_vs_pytorch.sh prints ratios.
#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "tern/data/linqs.hpp"
#include "tern/graph/gcn_conv.hpp"
#include "tern/graph/sgc.hpp"
#include "tern/tern.hpp"

namespace {

using clock_type = std::chrono::steady_clock;

template <class Fn>
double median_ms(int reps, Fn&& fn) {
    std::vector<double> t;
    for (int r = 0; r < reps; ++r) {
        const auto t0 = clock_type::now();
        fn();
        t.push_back(std::chrono::duration<double, std::milli>(clock_type::now() - t0).count());
    }
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

template <class T>
void dump(const std::string& path, const std::vector<T>& v) {
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(v.data()), std::streamsize(v.size() * sizeof(T)));
}

/// One full-batch training step: forward over every node, masked loss on the training nodes.
template <class Model>
double epoch_ms(Model& model, const tern::tensor& x, const std::vector<int>& labels,
                const std::vector<std::size_t>& train, int reps) {
    tern::adamw opt(model.parameters(), {.lr = 0.01f, .weight_decay = 5e-4f});
    tern::masked_cross_entropy loss;
    const auto step = [&] {
        opt.zero_grad();
        loss.forward(model.forward(x), labels, train);
        tern::backward_parameters(model, loss.backward());
        opt.step();
    };
    step();  // warm-up (and SGC's one-time propagation)
    return median_ms(reps, step);
}

template <class P>
nlohmann::json run(const tern::data::graph_data& g, const tern::shared_propagation& s, const tern::node_split& split,
                   std::size_t hidden, int reps) {
    tern::manual_seed(1);
    const std::size_t F = g.features.shape()[1], C = g.classes.size();
    tern::sequential sgc{tern::sgc<P>(s, 2, F, C)};
    tern::sequential gcn{tern::gcn_conv<P>(s, F, hidden), tern::relu{}, tern::dropout(0.5f), tern::gcn_conv<P>(s, hidden, C)};
    return {{"sgc_epoch_ms", epoch_ms(sgc, g.features, g.labels, split.train, reps)},
            {"gcn_epoch_ms", epoch_ms(gcn, g.features, g.labels, split.train, reps)}};
}

}  // namespace

int main(int argc, char** argv) {
    try {
        std::string dir = "debian_graph_data", name = "debian", policy = "fp32", dump_dir;
        std::size_t threads = 2, hidden = 16;
        int reps = 10;
        for (int i = 1; i + 1 < argc; i += 2) {
            const std::string k = argv[i], v = argv[i + 1];
            if (k == "--data") dir = v;
            else if (k == "--name") name = v;
            else if (k == "--policy") policy = v;
            else if (k == "--threads") threads = std::stoul(v);
            else if (k == "--hidden") hidden = std::stoul(v);
            else if (k == "--reps") reps = std::stoi(v);
            else if (k == "--dump") dump_dir = v;
            else tern::detail::fail("bench_sparse: unknown flag ", k);
        }
        tern::set_num_threads(threads);
        const tern::data::graph_data g = tern::data::read_linqs(dir, name);
        const tern::shared_propagation s = tern::make_gcn_propagation(g.adjacency());
        const tern::node_split split = g.split ? *g.split : tern::planetoid_split(g.labels, g.classes.size(), 20, 500, 1000, 0);
        const tern::csr_matrix& m = s->matrix();
        if (!dump_dir.empty()) {
            std::vector<std::int64_t> rows(m.row_start.begin(), m.row_start.end()), train(split.train.begin(), split.train.end());
            dump(dump_dir + "/row_start.i64", rows);
            dump(dump_dir + "/col_index.u32", m.col_index);
            dump(dump_dir + "/values.f32", m.values);
            dump(dump_dir + "/features.f32", std::vector<float>(g.features.begin(), g.features.end()));
            dump(dump_dir + "/labels.i32", g.labels);
            dump(dump_dir + "/train.i64", train);
            std::ofstream(dump_dir + "/meta.json") << nlohmann::json{{"nodes", g.nodes()}, {"features", g.features.shape()[1]},
                                                                     {"classes", g.classes.size()}, {"nonzeros", m.nonzeros()}}
                                                           .dump();
        }
        nlohmann::json out = {{"nodes", g.nodes()}, {"nonzeros", m.nonzeros()}, {"threads", threads}, {"policy", policy}};
        for (std::size_t width : {16, 64, 256}) {
            const tern::tensor x = tern::zeros({g.nodes(), width}) + 0.5f;
            tern::tensor y = tern::tensor::from_shape({g.nodes(), width});
            tern::spmm(m, x.data(), width, y.data());
            out["spmm_ms_" + std::to_string(width)] = median_ms(reps, [&] { tern::spmm(m, x.data(), width, y.data()); });
        }
        if (policy == "fp32") out.update(run<tern::fp32>(g, s, split, hidden, reps));
        else if (policy == "fp16") out.update(run<tern::fp16>(g, s, split, hidden, reps));
        else if (policy == "absmean") out.update(run<tern::absmean_ternary>(g, s, split, hidden, reps));
        else if (policy == "absmedian") out.update(run<tern::absmedian_ternary>(g, s, split, hidden, reps));
        else tern::detail::fail("bench_sparse: unknown policy ", policy);
        std::cout << out.dump() << std::endl;
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "bench_sparse: " << e.what() << "\n";
        return 1;
    }
}
