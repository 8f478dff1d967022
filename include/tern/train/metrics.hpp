#pragma once
/// @file train/metrics.hpp
/// @brief Classification metrics: a confusion matrix with accuracy and per-class recall.

#include <cstddef>
#include <iomanip>
#include <sstream>
#include <string>
#include <vector>

#include "../error.hpp"

namespace tern {

/// @brief counts(truth, predicted) over a set of predictions.
class confusion_matrix {
public:
    explicit confusion_matrix(std::size_t classes) : classes_(classes), counts_(classes * classes, 0) {
        detail::require(classes > 0, "confusion_matrix: expected at least one class");
    }

    /// @throws tern::error for a class index outside [0, classes).
    void add(int truth, int predicted) {
        detail::require(truth >= 0 && std::size_t(truth) < classes_ && predicted >= 0 &&
                            std::size_t(predicted) < classes_,
                        "confusion_matrix: expected classes in [0, ", classes_, "), got truth ", truth,
                        ", prediction ", predicted);
        ++counts_[std::size_t(truth) * classes_ + std::size_t(predicted)];
    }

    void add(const std::vector<int>& truth, const std::vector<int>& predicted) {
        detail::require(truth.size() == predicted.size(), "confusion_matrix: ", truth.size(), " labels but ",
                        predicted.size(), " predictions");
        for (std::size_t i = 0; i < truth.size(); ++i) add(truth[i], predicted[i]);
    }

    std::size_t classes() const { return classes_; }
    std::size_t count(std::size_t truth, std::size_t predicted) const { return counts_[truth * classes_ + predicted]; }

    std::size_t total() const {
        std::size_t n = 0;
        for (auto c : counts_) n += c;
        return n;
    }

    double accuracy() const {
        std::size_t right = 0;
        for (std::size_t c = 0; c < classes_; ++c) right += count(c, c);
        const std::size_t n = total();
        return n ? double(right) / double(n) : 0.0;
    }

    /// Fraction of class @p c's samples predicted as c.
    double recall(std::size_t c) const {
        std::size_t row = 0;
        for (std::size_t p = 0; p < classes_; ++p) row += count(c, p);
        return row ? double(count(c, c)) / double(row) : 0.0;
    }

    /// A table: one row per true class, one column per prediction, then the recall.
    std::string to_string() const {
        std::ostringstream s;
        s << "truth\\pred";
        for (std::size_t p = 0; p < classes_; ++p) s << std::setw(6) << p;
        s << "  recall\n";
        for (std::size_t t = 0; t < classes_; ++t) {
            s << std::setw(10) << t;
            for (std::size_t p = 0; p < classes_; ++p) s << std::setw(6) << count(t, p);
            s << "  " << std::fixed << std::setprecision(3) << recall(t) << '\n';
        }
        return s.str();
    }

private:
    std::size_t classes_;
    std::vector<std::size_t> counts_;
};

}  // namespace tern
