// A small pool of threads for work that comes as a list of tasks in phases (one frame of the
// student engine: conv1 rows and rings, conv2 ..., FC1 chunks, FC2 per patch).
//
// Task i of phase k starts only when every task of phase k - 1 has finished. Threads grab tasks
// from one atomic cursor, so a thread the OS deschedules (a shared, busy CPU) delays only the task
// it holds; the others take the rest. No barrier waits for a thread that has not started. The
// calling thread is one of the pool's threads; the others are started once, in the constructor.
// Between runs the workers spin for 0.5 ms (frames usually come back to back), then sleep on a
// condition variable until the next run.
//
// Header-only; include it only from translation units compiled for the baseline ISA (its inline
// functions must not be emitted with -mavx2: the linker keeps one copy of each for the module).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <immintrin.h>
#endif

namespace pyinspect {

class ThreadPool {
public:
    static constexpr int kMaxPhases = 8;
    using Task = std::function<void(int task, int tid)>;
    using Clock = std::chrono::steady_clock;

    // threads: 1.. (1 = the calling thread only, no workers).
    explicit ThreadPool(int threads) : n_(threads) {
        for (auto& d : done_) d.store(0, std::memory_order_relaxed);
        for (int t = 1; t < threads; ++t) workers_.emplace_back([this, t] { loop(t); });
    }
    ~ThreadPool() {
        {
            std::lock_guard<std::mutex> lk(m_);
            stop_.store(true);
            gen_.fetch_add(1);
        }
        cv_.notify_all();
        for (auto& w : workers_) w.join();
    }
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const { return n_; }

    // Runs every task, fn(task, tid) with tid in [0, size()); `ends` are the cumulative task
    // counts of the phases (at most kMaxPhases). phase_ms (optional, `ends.size()` entries) gets
    // each phase's duration as seen by the thread that finished it. One run at a time.
    void run(const std::vector<int>& ends, const Task& fn, double* phase_ms) {
        const int phases = static_cast<int>(ends.size());
        if (phases == 0 || phases > kMaxPhases) {
            throw std::invalid_argument("ThreadPool::run: 1 to 8 phases");
        }
        for (int k = 0; k < phases; ++k) {
            ends_[k].store(ends[k], std::memory_order_relaxed);
            done_[k].store(0, std::memory_order_relaxed);
        }
        phases_.store(phases, std::memory_order_relaxed);
        fn_.store(&fn, std::memory_order_relaxed);
        start_ = Clock::now();
        for (auto& f : finished_ns_) f.store(0, std::memory_order_relaxed);
        const std::uint64_t frame = ++frame_;
        cursor_.store(frame << 32, std::memory_order_release);  // publishes the fields above
        if (n_ > 1) {
            {
                std::lock_guard<std::mutex> lk(m_);
                gen_.fetch_add(1, std::memory_order_release);
            }
            cv_.notify_all();
        }
        work(0, frame);
        const int last = phases - 1;
        const int want = ends[last] - (last ? ends[last - 1] : 0);
        wait_until([&] { return done_[last].load(std::memory_order_acquire) == want; });
        if (phase_ms) {  // a phase whose finisher has not yet stored its time reads as 0
            std::int64_t begin = 0;
            for (int k = 0; k < phases; ++k) {
                const std::int64_t end = finished_ns_[k].load(std::memory_order_acquire);
                phase_ms[k] = end && end >= begin ? (end - begin) * 1e-6 : 0.0;
                if (end) begin = end;
            }
        }
    }

private:
    static void cpu_relax() {
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
        _mm_pause();
#endif
    }

    static double ms_since(Clock::time_point t) {
        return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
    }

    template <typename Pred>
    static void wait_until(Pred ready) {
        for (int spins = 0; !ready(); ++spins) {
            if (spins < 2000) {
                cpu_relax();
            } else {
                std::this_thread::yield();  // the holder of the task was descheduled: give way
            }
        }
    }

    void work(int tid, std::uint64_t frame) {
        for (;;) {
            std::uint64_t c = cursor_.load(std::memory_order_acquire);
            if ((c >> 32) != frame) return;  // a newer frame: its owner will wake us again
            const int i = static_cast<int>(c & 0xffffffffu);
            const int phases = phases_.load(std::memory_order_relaxed);
            if (i >= ends_[phases - 1].load(std::memory_order_relaxed)) return;
            if (!cursor_.compare_exchange_weak(c, c + 1, std::memory_order_acq_rel)) continue;
            int k = 0;
            while (i >= ends_[k].load(std::memory_order_relaxed)) ++k;
            if (k > 0) {
                const int prev = ends_[k - 1].load(std::memory_order_relaxed) -
                                 (k > 1 ? ends_[k - 2].load(std::memory_order_relaxed) : 0);
                wait_until([&] { return done_[k - 1].load(std::memory_order_acquire) == prev; });
            }
            (*fn_.load(std::memory_order_relaxed))(i, tid);
            const int count = ends_[k].load(std::memory_order_relaxed) -
                              (k > 0 ? ends_[k - 1].load(std::memory_order_relaxed) : 0);
            const auto now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                 Clock::now() - start_).count();
            if (done_[k].fetch_add(1, std::memory_order_acq_rel) + 1 == count) {
                finished_ns_[k].store(std::max<std::int64_t>(now, 1), std::memory_order_release);
            }
        }
    }

    void loop(int tid) {
        unsigned seen = 0;
        for (;;) {
            // Spin briefly (frames usually come back to back), then sleep.
            const auto start = Clock::now();
            int spins = 0;
            while (gen_.load(std::memory_order_acquire) == seen) {
                cpu_relax();
                if (++spins % 256 == 0 && ms_since(start) > 0.5) {
                    std::unique_lock<std::mutex> lk(m_);
                    cv_.wait(lk, [&] { return gen_.load() != seen; });
                    break;
                }
            }
            seen = gen_.load(std::memory_order_acquire);
            if (stop_.load()) return;
            work(tid, cursor_.load(std::memory_order_acquire) >> 32);
        }
    }

    int n_;
    std::vector<std::thread> workers_;
    std::mutex m_;
    std::condition_variable cv_;
    std::atomic<unsigned> gen_{0};
    std::atomic<bool> stop_{false};
    std::atomic<std::uint64_t> cursor_{0};  // (frame << 32) | next task
    std::uint64_t frame_ = 0;
    std::atomic<int> phases_{0};
    std::atomic<int> ends_[kMaxPhases] = {};
    std::atomic<int> done_[kMaxPhases];
    std::atomic<const Task*> fn_{nullptr};
    Clock::time_point start_;  // written before the cursor is published
    std::atomic<std::int64_t> finished_ns_[kMaxPhases] = {};  // ns after start_, 0 = not yet
};

}  // namespace pyinspect
