// debian_graph: writes the Debian package graph (from `apt-cache dumpavail`) in the LINQS format
// with a seeded Planetoid split, and the WideMLP text set (same packages, 80/10/10 split); see
// examples/gnn/debian_index.hpp for how nodes, edges, features and labels are made.
//
//   debian_graph --out data/debian            # then: gnn --data data/debian
#include <iostream>
#include <nlohmann/json.hpp>

#include "common/cli.hpp"
#include "gnn/debian_index.hpp"

int main(int argc, char** argv) {
    try {
        tern_examples::cli args(argc, argv, "Writes the Debian package graph and text set in the LINQS format.");
        const std::string out = args.value("out", "debian_graph_data", "output directory");
        const auto words = std::size_t(args.integer("words", 1500, 1, 100000, "bag-of-words vocabulary size"));
        const auto seed = std::uint64_t(args.integer("seed", 0, 0, 1L << 62, "seed of the splits"));
        if (!args.finish()) return 0;
        const auto c = tern_examples::write_debian_data(out, words, seed);
        std::cerr << "debian_graph: " << c.packages << " nodes, " << c.edges << " undirected edges, " << c.features
                  << " features, " << c.classes << " classes (10 largest sections + other) -> " << out << "\n";
        std::cout << nlohmann::json{{"nodes", c.packages}, {"edges", c.edges}, {"features", c.features},
                                    {"classes", c.classes}, {"dir", out}}
                         .dump()
                  << std::endl;
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "debian_graph: " << e.what() << "\n";
        return 1;
    }
}
