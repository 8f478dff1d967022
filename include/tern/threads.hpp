#pragma once
/// @file threads.hpp
/// @brief A small persistent thread pool: `set_num_threads(n)` and `parallel_for`.
///
/// Threads are started once and parked on a condition variable; starting and joining
/// threads per call would cost more than the small products tern runs. Work below a
/// caller-given grain runs on the calling thread alone.

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "error.hpp"

namespace tern {
namespace detail {

class thread_pool {
public:
    static thread_pool& instance() {
        static thread_pool pool;
        return pool;
    }

    thread_pool(const thread_pool&) = delete;
    thread_pool& operator=(const thread_pool&) = delete;
    ~thread_pool() { resize(1); }

    std::size_t size() const { return workers_.size() + 1; }

    /// Restarts the pool with @p n threads in all (the caller counts as one).
    void resize(std::size_t n) {
        n = std::max<std::size_t>(1, n);
        std::lock_guard<std::mutex> no_run(run_mutex_);  // never resize under a running task
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stop_.store(true);
        }
        wake_.notify_all();
        for (auto& t : workers_) t.join();
        workers_.clear();
        stop_.store(false);
        // New workers start at the current generation, so they never replay a finished task.
        const std::size_t generation = generation_.load();
        for (std::size_t i = 1; i < n; ++i)
            workers_.emplace_back([this, i, generation] { worker_loop(i, generation); });
    }

    /// Runs fn(lo, hi) over [0, count) cut into at most size() contiguous chunks.
    void run(std::size_t count, const std::function<void(std::size_t, std::size_t)>& fn) {
        const std::size_t parts = std::min(size(), count);
        if (parts <= 1 || inside_worker()) {
            if (count) fn(0, count);
            return;
        }
        std::unique_lock<std::mutex> lock(run_mutex_, std::try_to_lock);
        if (!lock.owns_lock()) {  // another thread is using the pool: do the work here
            fn(0, count);
            return;
        }
        task_ = &fn;
        task_count_ = count;
        task_parts_ = parts;
        error_ = nullptr;
        pending_.store(parts - 1, std::memory_order_relaxed);
        generation_.fetch_add(1, std::memory_order_release);  // publishes the task to spinning workers
        { std::lock_guard<std::mutex> guard(mutex_); }       // and to sleeping ones (no lost wake-up)
        wake_.notify_all();
        std::exception_ptr mine;
        try {
            run_part(0);
        } catch (...) {
            mine = std::current_exception();
        }
        if (!spin_until([this] { return pending_.load(std::memory_order_acquire) == 0; })) {
            std::unique_lock<std::mutex> guard(mutex_);
            done_.wait(guard, [this] { return pending_.load(std::memory_order_acquire) == 0; });
        }
        task_ = nullptr;
        if (mine) std::rethrow_exception(mine);
        if (error_) std::rethrow_exception(error_);
    }

private:
    thread_pool() {
        unsigned hw = std::thread::hardware_concurrency();
        resize(hw == 0 ? 1 : hw);
    }

    static bool& inside_worker() {
        thread_local bool flag = false;
        return flag;
    }

    /// Polls @p ready for a short while (about 0.1-0.3 ms) before the caller blocks: waking a thread
    /// through a condition variable costs tens of microseconds on the machines tern targets, more
    /// than many of the products it splits, while a training step hands out work every few.
    template <class Ready>
    static bool spin_until(Ready&& ready) {
        for (int i = 0; i < (1 << 14); ++i) {
            if (ready()) return true;
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
        }
        return ready();
    }

    void run_part(std::size_t part) {
        const std::size_t lo = task_count_ * part / task_parts_;
        const std::size_t hi = task_count_ * (part + 1) / task_parts_;
        if (lo < hi) (*task_)(lo, hi);
    }

    void worker_loop(std::size_t index, std::size_t seen) {
        inside_worker() = true;
        for (;;) {
            const auto has_news = [&] {
                return stop_.load(std::memory_order_acquire) || generation_.load(std::memory_order_acquire) != seen;
            };
            if (!spin_until(has_news)) {
                std::unique_lock<std::mutex> lock(mutex_);
                wake_.wait(lock, has_news);
            }
            if (stop_.load(std::memory_order_acquire)) return;
            seen = generation_.load(std::memory_order_acquire);
            if (index >= task_parts_) continue;
            try {
                run_part(index);
            } catch (...) {
                std::lock_guard<std::mutex> lock(mutex_);
                if (!error_) error_ = std::current_exception();
            }
            if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
                { std::lock_guard<std::mutex> lock(mutex_); }
                done_.notify_one();
            }
        }
    }

    std::vector<std::thread> workers_;
    std::mutex mutex_;
    std::mutex run_mutex_;
    std::condition_variable wake_, done_;
    const std::function<void(std::size_t, std::size_t)>* task_ = nullptr;
    std::size_t task_count_ = 0, task_parts_ = 0;
    std::atomic<std::size_t> generation_{0}, pending_{0};
    std::exception_ptr error_;
    std::atomic<bool> stop_{false};
};

}  // namespace detail

/// @brief Sets how many threads tern's kernels use (the calling thread included).
/// @throws tern::error if @p n is 0 or absurdly large.
inline void set_num_threads(std::size_t n) {
    detail::require(n >= 1 && n <= 1024, "set_num_threads: expected 1..1024 threads, got ", n);
    detail::thread_pool::instance().resize(n);
}

/// @brief How many threads tern's kernels use.
inline std::size_t num_threads() { return detail::thread_pool::instance().size(); }

/// @brief Runs fn(lo, hi) over [0, count) split across the pool, or on this thread alone
/// when @p work (an estimate of operations) is below @p grain.
template <class Fn>
void parallel_for(std::size_t count, Fn&& fn, double work = 1e9, double grain = 1e6) {
    if (work < grain || count < 2) {
        if (count) fn(std::size_t{0}, count);
        return;
    }
    const std::function<void(std::size_t, std::size_t)> f = std::forward<Fn>(fn);
    detail::thread_pool::instance().run(count, f);
}

}  // namespace tern
