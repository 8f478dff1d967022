#pragma once
/// @file train/progress.hpp
/// @brief A progress display for long runs: a live bar on a terminal, plain lines otherwise.

#include <chrono>
#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>
#include <unistd.h>

namespace tern {

/// @brief Formats seconds as "m:ss" or "h:mm:ss".
inline std::string format_duration(double seconds) {
    if (!(seconds >= 0) || seconds > 1e7) return "--:--";
    const long s = long(seconds + 0.5);
    char buf[32];
    if (s >= 3600) std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
    else std::snprintf(buf, sizeof buf, "%ld:%02ld", s / 60, s % 60);
    return buf;
}

/// @brief Shows "<title> [=====>    ] step/total  loss  acc  samples/s  ETA".
///
/// On a terminal the line is redrawn in place (at most ~10 times a second); when the stream is
/// not a terminal (a log file, CI) a plain line is printed every @p plain_every_percent percent.
class progress_bar {
public:
    /// @param out       where to draw; std::cerr by default so stdout stays clean for results.
    /// @param terminal  -1: detect (isatty), 0: plain lines, 1: live bar.
    progress_bar(std::string title, std::size_t total, std::ostream& out = std::cerr, int terminal = -1,
                 int plain_every_percent = 25)
        : title_(std::move(title)), total_(total), out_(out), plain_every_(plain_every_percent),
          start_(clock::now()), last_draw_(start_) {
        live_ = terminal < 0 ? (&out == &std::cerr ? ::isatty(2) : &out == &std::cout ? ::isatty(1) : 0) != 0
                             : terminal == 1;
    }

    /// Reports that @p done of total steps are finished, with running loss/accuracy
    /// (accuracy < 0 hides it) and @p samples processed so far.
    void update(std::size_t done, double loss, double accuracy, double samples) {
        const auto now = clock::now();
        const double elapsed = std::chrono::duration<double>(now - start_).count();
        if (live_) {
            if (done < total_ && std::chrono::duration<double>(now - last_draw_).count() < 0.1) return;
            last_draw_ = now;
            out_ << '\r' << line(done, loss, accuracy, samples, elapsed, true) << "\033[K" << std::flush;
        } else {
            const int percent = total_ ? int(100.0 * double(done) / double(total_)) : 100;
            if (percent < next_percent_ && done < total_) return;
            while (next_percent_ <= percent) next_percent_ += plain_every_;
            out_ << line(done, loss, accuracy, samples, elapsed, false) << '\n' << std::flush;
        }
    }

    /// Ends the live line (a newline) so later output starts cleanly.
    void finish() {
        if (live_) out_ << '\n' << std::flush;
    }

    double elapsed_seconds() const { return std::chrono::duration<double>(clock::now() - start_).count(); }

private:
    using clock = std::chrono::steady_clock;

    std::string line(std::size_t done, double loss, double accuracy, double samples, double elapsed,
                     bool bar) const {
        std::ostringstream s;
        s << title_ << ' ';
        if (bar) {
            constexpr int width = 24;
            const int filled = total_ ? int(width * double(done) / double(total_)) : width;
            s << '[';
            for (int i = 0; i < width; ++i) s << (i < filled ? '=' : i == filled ? '>' : ' ');
            s << "] ";
        }
        s << done << '/' << total_;
        char buf[160];
        std::snprintf(buf, sizeof buf, "  loss %.4f", loss);
        s << buf;
        if (accuracy >= 0) {
            std::snprintf(buf, sizeof buf, "  acc %.2f%%", 100.0 * accuracy);
            s << buf;
        }
        const double rate = elapsed > 0 ? samples / elapsed : 0.0;
        std::snprintf(buf, sizeof buf, "  %.0f samples/s", rate);
        s << buf;
        const double eta = done ? elapsed * double(total_ - std::min(done, total_)) / double(done) : -1;
        s << "  ETA " << format_duration(eta);
        return s.str();
    }

    std::string title_;
    std::size_t total_;
    std::ostream& out_;
    int plain_every_;
    int next_percent_ = 0;
    bool live_ = false;
    clock::time_point start_, last_draw_;
};

}  // namespace tern
