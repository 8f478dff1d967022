#pragma once
// A small command-line parser shared by tern's example programs: --flag value pairs and switches,
// with clear errors for unknown flags, missing values and values of the wrong kind or range.

#include <cstdlib>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tern/error.hpp"

namespace tern_examples {

class cli {
public:
    cli(int argc, char** argv, std::string usage) : usage_(std::move(usage)) {
        program_ = argc > 0 ? argv[0] : "program";
        for (int i = 1; i < argc; ++i) args_.emplace_back(argv[i]);
    }

    /// Declares a flag taking a value, with its default and help text.
    std::string value(const std::string& name, const std::string& fallback, const std::string& help) {
        help_ << "  --" << name << " VALUE  " << help << " (default: " << (fallback.empty() ? "none" : fallback)
              << ")\n";
        known_.insert(name);
        std::string found = fallback;  // the last occurrence wins, so wrappers can append overrides
        for (std::size_t i = 0; i < args_.size(); ++i)
            if (args_[i] == "--" + name) {
                if (i + 1 >= args_.size()) tern::detail::fail("--", name, " expects a value");
                found = args_[++i];
            }
        return found;
    }

    /// Declares an on/off switch.
    bool flag(const std::string& name, const std::string& help) {
        help_ << "  --" << name << "  " << help << "\n";
        known_.insert(name);
        switches_.insert(name);
        for (const auto& a : args_)
            if (a == "--" + name) return true;
        return false;
    }

    long integer(const std::string& name, long fallback, long min, long max, const std::string& help) {
        const std::string text = value(name, std::to_string(fallback), help);
        char* end = nullptr;
        const long v = std::strtol(text.c_str(), &end, 10);
        tern::detail::require(!text.empty() && end && *end == '\0', "--", name, " expects a whole number, got '",
                              text, "'");
        tern::detail::require(v >= min && v <= max, "--", name, " expects a value in [", min, ", ", max, "], got ",
                              v);
        return v;
    }

    double real(const std::string& name, double fallback, double min, double max, const std::string& help) {
        std::ostringstream def;
        def << fallback;
        const std::string text = value(name, def.str(), help);
        char* end = nullptr;
        const double v = std::strtod(text.c_str(), &end);
        tern::detail::require(!text.empty() && end && *end == '\0', "--", name, " expects a number, got '", text,
                              "'");
        tern::detail::require(v >= min && v <= max, "--", name, " expects a value in [", min, ", ", max, "], got ",
                              v);
        return v;
    }

    std::string choice(const std::string& name, const std::string& fallback, const std::vector<std::string>& options,
                       const std::string& help) {
        std::string all;
        for (const auto& o : options) all += (all.empty() ? "" : "|") + o;
        const std::string v = value(name, fallback, help + " [" + all + "]");
        for (const auto& o : options)
            if (v == o) return v;
        tern::detail::fail("--", name, " expects one of ", all, ", got '", v, "'");
    }

    /// After all declarations: handles --help and rejects unknown flags. Returns false on --help.
    bool finish() {
        for (std::size_t i = 0; i < args_.size(); ++i) {
            const std::string& a = args_[i];
            if (a == "--help" || a == "-h") {
                std::cout << "usage: " << program_ << " [options]\n" << usage_ << "\n\noptions:\n" << help_.str();
                return false;
            }
            tern::detail::require(a.rfind("--", 0) == 0, "unexpected argument '", a, "' (flags start with --)");
            const std::string name = a.substr(2);
            tern::detail::require(known_.count(name) != 0, "unknown flag '", a, "'; see --help");
            if (!switches_.count(name)) ++i;  // skip the value
        }
        return true;
    }

private:
    std::string program_, usage_;
    std::vector<std::string> args_;
    std::set<std::string> known_, switches_;
    std::ostringstream help_;
};

}  // namespace tern_examples
