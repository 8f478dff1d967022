#pragma once
// The Debian package graph, from the package index every Debian machine has (`apt-cache
// dumpavail`): nodes are packages; edges are Depends, Pre-Depends and Recommends between packages
// that exist (every alternative of "a | b" that exists; virtual packages have no node); features
// are a binary bag of words of each package's description over the most frequent words (the
// package's own name and its '-'-separated parts left out, a few English stop words dropped);
// labels are the Section (archive area prefix "contrib/" etc. removed), the 10 largest sections
// kept and every other section merged into one class "other".
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include "tern/data/linqs.hpp"

namespace tern_examples {

struct debian_package {
    std::string name, section, description;
    std::vector<std::string> relations;  // names in Depends, Pre-Depends, Recommends
};

/// Parses the stanzas of `apt-cache dumpavail` (the first stanza of a name wins).
inline std::vector<debian_package> parse_dumpavail(std::istream& in) {
    std::vector<debian_package> out;
    std::set<std::string> seen;
    debian_package cur;
    const auto flush = [&] {
        if (!cur.name.empty() && seen.insert(cur.name).second) out.push_back(std::move(cur));
        cur = debian_package{};
    };
    const auto add_relations = [&](const std::string& value) {
        std::string item;
        std::istringstream items(value);
        while (std::getline(items, item, ',')) {
            std::istringstream alternatives(item);
            std::string alt;
            while (std::getline(alternatives, alt, '|')) {
                std::istringstream words(alt);
                std::string name;
                words >> name;
                if (const auto colon = name.find(':'); colon != std::string::npos) name.resize(colon);  // "perl:any"
                if (!name.empty()) cur.relations.push_back(name);
            }
        }
    };
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty()) {
            flush();
            continue;
        }
        if (line[0] == ' ' || line[0] == '\t') continue;  // continuation lines (Tag:, long fields)
        const auto colon = line.find(':');
        if (colon == std::string::npos) continue;
        const std::string key = line.substr(0, colon);
        std::string value = line.substr(colon + 1);
        value.erase(0, value.find_first_not_of(' '));
        if (key == "Package") cur.name = value;
        else if (key == "Section") cur.section = value.substr(value.rfind('/') == std::string::npos ? 0 : value.rfind('/') + 1);
        else if (key == "Description") cur.description = value;
        else if (key == "Depends" || key == "Pre-Depends" || key == "Recommends") add_relations(value);
    }
    flush();
    return out;
}

/// Lower-case words of letters and digits (at least two characters, not only digits).
inline std::vector<std::string> description_words(const std::string& text) {
    std::vector<std::string> words;
    std::string w;
    const auto end_word = [&] {
        if (w.size() >= 2 && !std::all_of(w.begin(), w.end(), [](unsigned char c) { return std::isdigit(c); }))
            words.push_back(w);
        w.clear();
    };
    for (unsigned char c : text) {
        if (std::isalnum(c)) w += char(std::tolower(c));
        else end_word();
    }
    end_word();
    return words;
}

struct debian_counts {
    std::size_t packages = 0, edges = 0, features = 0, classes = 0;
};

/// The graph of @p packages with @p vocabulary words and the 10 largest sections + "other".
inline tern::data::graph_data debian_graph(const std::vector<debian_package>& packages, std::size_t vocabulary) {
    static const std::set<std::string> stop = {"and", "the", "for", "of", "to", "in", "with", "on", "from", "an",
                                               "a", "is", "by", "or", "as", "at", "this", "that", "it", "be"};
    std::unordered_map<std::string, std::size_t> index;
    for (std::size_t i = 0; i < packages.size(); ++i) index.emplace(packages[i].name, i);

    std::vector<std::vector<std::string>> bags(packages.size());
    std::map<std::string, std::size_t> frequency;  // documents per word
    for (std::size_t i = 0; i < packages.size(); ++i) {
        std::set<std::string> own;  // the name and its parts, left out
        for (const auto& part : description_words(packages[i].name)) own.insert(part);
        own.insert(packages[i].name);
        std::set<std::string> words;
        for (auto& w : description_words(packages[i].description))
            if (!own.count(w) && !stop.count(w)) words.insert(w);
        bags[i].assign(words.begin(), words.end());
        for (const auto& w : bags[i]) ++frequency[w];
    }
    std::vector<std::pair<std::size_t, std::string>> ranked;
    for (const auto& [w, n] : frequency) ranked.emplace_back(n, w);
    std::sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) {
        return a.first != b.first ? a.first > b.first : a.second < b.second;
    });
    ranked.resize(std::min(ranked.size(), vocabulary));
    std::unordered_map<std::string, std::size_t> column;
    for (std::size_t c = 0; c < ranked.size(); ++c) column.emplace(ranked[c].second, c);

    std::map<std::string, std::size_t> section_size;
    for (const auto& p : packages) ++section_size[p.section.empty() ? "unknown" : p.section];
    std::vector<std::pair<std::size_t, std::string>> sections;
    for (const auto& [s, n] : section_size) sections.emplace_back(n, s);
    std::sort(sections.begin(), sections.end(), [](const auto& a, const auto& b) {
        return a.first != b.first ? a.first > b.first : a.second < b.second;
    });
    tern::data::graph_data g;
    for (std::size_t c = 0; c < std::min<std::size_t>(10, sections.size()); ++c) g.classes.push_back(sections[c].second);
    std::sort(g.classes.begin(), g.classes.end());
    g.classes.push_back("other");

    g.features = tern::zeros({packages.size(), ranked.size()});
    for (std::size_t i = 0; i < packages.size(); ++i) {
        g.node_names.push_back(packages[i].name);
        const std::string section = packages[i].section.empty() ? "unknown" : packages[i].section;
        const auto it = std::find(g.classes.begin(), g.classes.end() - 1, section);
        g.labels.push_back(int(it - g.classes.begin()));  // "other" when not among the 10
        for (const auto& w : bags[i])
            if (auto c = column.find(w); c != column.end()) g.features(i, c->second) = 1.0f;
        std::set<std::size_t> targets;
        for (const auto& r : packages[i].relations)
            if (auto t = index.find(r); t != index.end() && t->second != i) targets.insert(t->second);
        for (std::size_t t : targets) g.edges.emplace_back(i, t);
    }
    return g;
}

/// Runs `apt-cache dumpavail` and parses its output.
inline std::vector<debian_package> read_debian_index() {
    FILE* pipe = ::popen("apt-cache dumpavail", "r");
    tern::detail::require(pipe != nullptr, "cannot run 'apt-cache dumpavail'");
    std::string text;
    char buf[1 << 16];
    for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, pipe)) > 0;) text.append(buf, n);
    const int status = ::pclose(pipe);
    tern::detail::require(status == 0 && !text.empty(), "'apt-cache dumpavail' failed (status ", status,
                          "): is this a Debian system with package lists (apt-get update)?");
    std::istringstream in(text);
    return parse_dumpavail(in);
}

/// Writes DIR/debian.{content,cites,split} (the graph, Planetoid split: 20 per class, 500
/// validation, 1000 test, seed @p seed) and DIR/debian_text.{content,cites,split} (the same
/// packages without edges, a seeded 80/10/10 split: WideMLP's text classification set).
inline debian_counts write_debian_data(const std::filesystem::path& dir, std::size_t vocabulary, std::uint64_t seed) {
    std::filesystem::create_directories(dir);
    tern::data::graph_data g = debian_graph(read_debian_index(), vocabulary);
    g.split = tern::planetoid_split(g.labels, g.classes.size(), 20, 500, 1000, seed);
    tern::data::write_linqs(dir, "debian", g);
    debian_counts counts{g.nodes(), 0, g.features.shape()[1], g.classes.size()};
    counts.edges = g.adjacency().nonzeros() / 2;  // undirected edges (no self-loops are written)
    g.edges.clear();
    g.split = tern::random_split(g.nodes(), 0.8, 0.1, seed);
    // The text set shares the content file: a link, not a second copy.
    std::error_code ec;
    std::filesystem::remove(dir / "debian_text.content", ec);
    std::filesystem::create_symlink("debian.content", dir / "debian_text.content", ec);
    if (ec) std::filesystem::copy_file(dir / "debian.content", dir / "debian_text.content");
    std::ofstream(dir / "debian_text.cites", std::ios::trunc).flush();
    {
        std::ofstream out(dir / "debian_text.split", std::ios::trunc);
        for (const auto& [set, word] : {std::pair{&g.split->train, "train"}, std::pair{&g.split->validation, "validation"},
                                        std::pair{&g.split->test, "test"}})
            for (std::size_t r : *set) out << g.node_names[r] << '\t' << word << '\n';
    }
    return counts;
}

}  // namespace tern_examples
