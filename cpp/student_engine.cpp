// See student_engine.hpp for what this computes and why the shared computation is exact.
// Compiled with -mavx2 -mfma (only this file); callers check student_engine_supported() first.
// Python: pyinspect/fast_student.py; tests: tests/test_fast_student.py.
#include "student_engine.hpp"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace pyinspect {

namespace {

[[noreturn]] void bad(const std::string& msg) { throw std::invalid_argument(msg); }

constexpr int kLayers = 5;
constexpr int kCout[kLayers] = {4, 8, 16, 4, 4};
constexpr int kCin[kLayers] = {1, 4, 8, 16, 4};  // conv1 after summing replicated gray channels
constexpr int kPatch = StudentEngine::kPatch;
constexpr int kAlign = 16;  // offsets must be multiples of 2^4 to share conv1..conv4

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

// ---- kernels: one pooled output row from 4 zero-padded input rows ------------------------------
// rows[t] points at padded column -1 of input row 2i - 1 + t; conv column x reads padded
// columns x .. x + 2. Output: wout pooled pixels, NHWC (cout floats each).
using RowKernel = void (*)(const float* const rows[4], int wout, const float* w, const float* b,
                           float* out);

template <int NQ>
inline void conv1_step(const float* const rows[4], std::ptrdiff_t j, const float* w, __m128 bias,
                       float* out) {
    __m256 acc[NQ][2];
    for (auto& q : acc) q[0] = q[1] = _mm256_setzero_ps();
    for (int ky = 0; ky < 3; ++ky) {
        for (int kx = 0; kx < 3; ++kx) {
            const __m256 wv = _mm256_loadu_ps(w + (ky * 3 + kx) * 8);
            for (int q = 0; q < NQ; ++q) {
                for (int a = 0; a < 2; ++a) {
                    const float* src = rows[a + ky] + 4 * (2 * (j + q) + kx);
                    acc[q][a] = _mm256_fmadd_ps(_mm256_loadu_ps(src), wv, acc[q][a]);
                }
            }
        }
    }
    for (int q = 0; q < NQ; ++q) {
        const __m256 m = _mm256_max_ps(acc[q][0], acc[q][1]);
        const __m128 r = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        _mm_storeu_ps(out + 4 * (j + q), _mm_max_ps(_mm_add_ps(r, bias), _mm_setzero_ps()));
    }
}

// conv1: input rows are "dup4": every pixel value repeated 4 times (one per output channel), so
// one 8-lane load holds two neighbouring pixels for the 4 channels of two conv columns. w: [9][8]
// (each tap's 4 channel weights, twice). Four pooled pixels per step; a ragged end re-does the
// last four (same values) instead of a scalar tail.
void row_conv1(const float* const rows[4], int wout, const float* w, const float* b, float* out) {
    const __m128 bias = _mm_loadu_ps(b);
    if (wout < 4) {
        for (int j = 0; j < wout; ++j) conv1_step<1>(rows, j, w, bias, out);
        return;
    }
    for (std::ptrdiff_t j = 0; j < wout; j += 4) {
        conv1_step<4>(rows, std::min<std::ptrdiff_t>(j, wout - 4), w, bias, out);
    }
}

// 8 output channels (one vector); w: [9][CIN][8]. Two pooled pixels (8 conv pixels) per step.
template <int CIN>
void row_c8(const float* const rows[4], int wout, const float* w, const float* b, float* out) {
    const __m256 bias = _mm256_loadu_ps(b), zero = _mm256_setzero_ps();
    std::ptrdiff_t j = 0;
    for (; j + 2 <= wout; j += 2) {
        __m256 acc[2][4];
        for (auto& q : acc) q[0] = q[1] = q[2] = q[3] = zero;
        for (int ky = 0; ky < 3; ++ky) {
            for (int kx = 0; kx < 3; ++kx) {
                for (int ci = 0; ci < CIN; ++ci) {
                    const __m256 wv = _mm256_loadu_ps(w + ((ky * 3 + kx) * CIN + ci) * 8);
                    for (int q = 0; q < 2; ++q) {
                        for (int a = 0; a < 2; ++a) {
                            const float* src = rows[a + ky] + (2 * (j + q) + kx) * CIN + ci;
                            acc[q][2 * a] =
                                _mm256_fmadd_ps(_mm256_broadcast_ss(src), wv, acc[q][2 * a]);
                            acc[q][2 * a + 1] = _mm256_fmadd_ps(_mm256_broadcast_ss(src + CIN), wv,
                                                                acc[q][2 * a + 1]);
                        }
                    }
                }
            }
        }
        for (int q = 0; q < 2; ++q) {
            const __m256 m = _mm256_max_ps(_mm256_max_ps(acc[q][0], acc[q][1]),
                                           _mm256_max_ps(acc[q][2], acc[q][3]));
            _mm256_storeu_ps(out + 8 * (j + q), _mm256_max_ps(_mm256_add_ps(m, bias), zero));
        }
    }
    for (; j < wout; ++j) {
        __m256 acc[4] = {zero, zero, zero, zero};
        for (int ky = 0; ky < 3; ++ky) {
            for (int kx = 0; kx < 3; ++kx) {
                for (int ci = 0; ci < CIN; ++ci) {
                    const __m256 wv = _mm256_loadu_ps(w + ((ky * 3 + kx) * CIN + ci) * 8);
                    for (int a = 0; a < 2; ++a) {
                        const float* src = rows[a + ky] + (2 * j + kx) * CIN + ci;
                        acc[2 * a] = _mm256_fmadd_ps(_mm256_broadcast_ss(src), wv, acc[2 * a]);
                        acc[2 * a + 1] =
                            _mm256_fmadd_ps(_mm256_broadcast_ss(src + CIN), wv, acc[2 * a + 1]);
                    }
                }
            }
        }
        const __m256 m =
            _mm256_max_ps(_mm256_max_ps(acc[0], acc[1]), _mm256_max_ps(acc[2], acc[3]));
        _mm256_storeu_ps(out + 8 * j, _mm256_max_ps(_mm256_add_ps(m, bias), zero));
    }
}

// 16 output channels (two vectors); w: [9][CIN][16]. One pooled pixel per step.
template <int CIN>
void row_c16(const float* const rows[4], int wout, const float* w, const float* b, float* out) {
    const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8), zero = _mm256_setzero_ps();
    for (std::ptrdiff_t j = 0; j < wout; ++j) {
        __m256 acc[4][2];
        for (auto& p : acc) p[0] = p[1] = zero;
        for (int ky = 0; ky < 3; ++ky) {
            for (int kx = 0; kx < 3; ++kx) {
                for (int ci = 0; ci < CIN; ++ci) {
                    const float* wp = w + ((ky * 3 + kx) * CIN + ci) * 16;
                    const __m256 w0 = _mm256_loadu_ps(wp), w1 = _mm256_loadu_ps(wp + 8);
                    for (int a = 0; a < 2; ++a) {
                        for (int bb = 0; bb < 2; ++bb) {
                            const __m256 x = _mm256_broadcast_ss(
                                rows[a + ky] + (2 * j + bb + kx) * CIN + ci);
                            acc[2 * a + bb][0] = _mm256_fmadd_ps(x, w0, acc[2 * a + bb][0]);
                            acc[2 * a + bb][1] = _mm256_fmadd_ps(x, w1, acc[2 * a + bb][1]);
                        }
                    }
                }
            }
        }
        for (int h = 0; h < 2; ++h) {
            const __m256 m = _mm256_max_ps(_mm256_max_ps(acc[0][h], acc[1][h]),
                                           _mm256_max_ps(acc[2][h], acc[3][h]));
            _mm256_storeu_ps(out + 16 * j + 8 * h,
                             _mm256_max_ps(_mm256_add_ps(m, h ? b1 : b0), zero));
        }
    }
}

// 4 output channels (128-bit vectors); w: [9][CIN][4]. Two pooled pixels per step.
template <int CIN>
void row_c4(const float* const rows[4], int wout, const float* w, const float* b, float* out) {
    const __m128 bias = _mm_loadu_ps(b), zero = _mm_setzero_ps();
    std::ptrdiff_t j = 0;
    for (; j + 2 <= wout; j += 2) {
        __m128 acc[2][4];
        for (auto& q : acc) q[0] = q[1] = q[2] = q[3] = zero;
        for (int ky = 0; ky < 3; ++ky) {
            for (int kx = 0; kx < 3; ++kx) {
                for (int ci = 0; ci < CIN; ++ci) {
                    const __m128 wv = _mm_loadu_ps(w + ((ky * 3 + kx) * CIN + ci) * 4);
                    for (int q = 0; q < 2; ++q) {
                        for (int a = 0; a < 2; ++a) {
                            const float* src = rows[a + ky] + (2 * (j + q) + kx) * CIN + ci;
                            acc[q][2 * a] = _mm_fmadd_ps(_mm_broadcast_ss(src), wv, acc[q][2 * a]);
                            acc[q][2 * a + 1] =
                                _mm_fmadd_ps(_mm_broadcast_ss(src + CIN), wv, acc[q][2 * a + 1]);
                        }
                    }
                }
            }
        }
        for (int q = 0; q < 2; ++q) {
            const __m128 m =
                _mm_max_ps(_mm_max_ps(acc[q][0], acc[q][1]), _mm_max_ps(acc[q][2], acc[q][3]));
            _mm_storeu_ps(out + 4 * (j + q), _mm_max_ps(_mm_add_ps(m, bias), zero));
        }
    }
    for (; j < wout; ++j) {
        __m128 acc[4] = {zero, zero, zero, zero};
        for (int ky = 0; ky < 3; ++ky) {
            for (int kx = 0; kx < 3; ++kx) {
                for (int ci = 0; ci < CIN; ++ci) {
                    const __m128 wv = _mm_loadu_ps(w + ((ky * 3 + kx) * CIN + ci) * 4);
                    for (int a = 0; a < 2; ++a) {
                        const float* src = rows[a + ky] + (2 * j + kx) * CIN + ci;
                        acc[2 * a] = _mm_fmadd_ps(_mm_broadcast_ss(src), wv, acc[2 * a]);
                        acc[2 * a + 1] = _mm_fmadd_ps(_mm_broadcast_ss(src + CIN), wv, acc[2 * a + 1]);
                    }
                }
            }
        }
        const __m128 m = _mm_max_ps(_mm_max_ps(acc[0], acc[1]), _mm_max_ps(acc[2], acc[3]));
        _mm_storeu_ps(out + 4 * j, _mm_max_ps(_mm_add_ps(m, bias), zero));
    }
}

constexpr RowKernel kKernels[kLayers] = {row_conv1, row_c8<4>, row_c16<8>, row_c4<16>, row_c4<4>};

// ---- FC1: Y[q][o] = relu(sum_k X[q][k] W[k][o] + b[o]); W blocked as [H/8][K][8] ---------------
// Only the inputs in `ks` are summed: the caller drops every k where all patches are 0 (a dead
// ReLU channel). Adding 0 * w leaves a float sum unchanged, so this is exact, and it saves
// streaming those rows of the 3 MB weight matrix.
template <int NB>
void fc1_block(const float* x, int k_len, const int* ks, int n_ks, const float* wblk,
               const float* b, int ob0, int ob1, int hidden, float* y) {
    const __m256 zero = _mm256_setzero_ps();
    for (int ob = ob0; ob < ob1; ++ob) {
        const float* wp = wblk + static_cast<std::size_t>(ob) * k_len * 8;
        __m256 acc[NB];
        for (int q = 0; q < NB; ++q) acc[q] = zero;
        for (int i = 0; i < n_ks; ++i) {
            const int k = ks[i];
            const __m256 wv = _mm256_loadu_ps(wp + k * 8);
            for (int q = 0; q < NB; ++q) {
                acc[q] = _mm256_fmadd_ps(_mm256_broadcast_ss(x + q * k_len + k), wv, acc[q]);
            }
        }
        const __m256 bias = _mm256_loadu_ps(b + ob * 8);
        for (int q = 0; q < NB; ++q) {
            _mm256_storeu_ps(y + static_cast<std::size_t>(q) * hidden + ob * 8,
                             _mm256_max_ps(_mm256_add_ps(acc[q], bias), zero));
        }
    }
}

using Fc1Fn = void (*)(const float*, int, const int*, int, const float*, const float*, int, int,
                       int, float*);
constexpr int kFcRows = 12;  // patches per FC1 pass (accumulators in registers)
constexpr Fc1Fn kFc1[kFcRows + 1] = {nullptr,         fc1_block<1>,  fc1_block<2>,  fc1_block<3>,
                                     fc1_block<4>,    fc1_block<5>,  fc1_block<6>,  fc1_block<7>,
                                     fc1_block<8>,    fc1_block<9>,  fc1_block<10>, fc1_block<11>,
                                     fc1_block<12>};

float dot(const float* a, const float* b, int n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    s0 = _mm256_add_ps(s0, s1);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s0), _mm256_extractf128_ps(s0, 1));
    h = _mm_hadd_ps(h, h);
    h = _mm_hadd_ps(h, h);
    float s = _mm_cvtss_f32(h);
    for (; i < n; ++i) s += a[i] * b[i];
    return s;
}

// ---- input conversion: uint8 pixels -> dup4 floats v = x * scale + offset --------------------------
// dst gets n + 2 pixels: a zero, the n converted pixels, a zero (the patch/region padding).
void dup4_row(const std::uint8_t* src, std::int64_t step, int n, float scale, float offset,
              float* dst) {
    std::memset(dst, 0, 4 * sizeof(float));
    std::memset(dst + 4 * (n + 1), 0, 4 * sizeof(float));
    float* d = dst + 4;
    int c = 0;
    if (step == 1) {
        const __m256 vs = _mm256_set1_ps(scale), vo = _mm256_set1_ps(offset);
        const __m256i i0 = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
        const __m256i i1 = _mm256_setr_epi32(2, 2, 2, 2, 3, 3, 3, 3);
        const __m256i i2 = _mm256_setr_epi32(4, 4, 4, 4, 5, 5, 5, 5);
        const __m256i i3 = _mm256_setr_epi32(6, 6, 6, 6, 7, 7, 7, 7);
        for (; c + 8 <= n; c += 8) {
            const __m128i px = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(src + c));
            // product and sum rounded separately, as in the scalar tail below
            const __m256 v = _mm256_add_ps(
                _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(px)), vs), vo);
            _mm256_storeu_ps(d + 4 * c, _mm256_permutevar8x32_ps(v, i0));
            _mm256_storeu_ps(d + 4 * c + 8, _mm256_permutevar8x32_ps(v, i1));
            _mm256_storeu_ps(d + 4 * c + 16, _mm256_permutevar8x32_ps(v, i2));
            _mm256_storeu_ps(d + 4 * c + 24, _mm256_permutevar8x32_ps(v, i3));
        }
    }
    for (; c < n; ++c) {
        const float v = static_cast<float>(src[c * step]) * scale + offset;  // -ffp-contract=off
        d[4 * c] = d[4 * c + 1] = d[4 * c + 2] = d[4 * c + 3] = v;
    }
}

// ---- zero-padded NHWC feature map --------------------------------------------------------------
struct Map {
    int h = 0, w = 0, c = 0;
    std::vector<float> d;
    void init(int h_, int w_, int c_) {
        if (h_ == h && w_ == w && c_ == c) return;  // the zero border is never written
        h = h_;
        w = w_;
        c = c_;
        d.assign(static_cast<std::size_t>(h + 2) * (w + 2) * c, 0.f);
    }
    std::size_t stride() const { return static_cast<std::size_t>(w + 2) * c; }
    float* row(int r) { return d.data() + static_cast<std::size_t>(r + 1) * stride(); }
    const float* row(int r) const { return d.data() + static_cast<std::size_t>(r + 1) * stride(); }
    const float* px(int r, int col) const { return row(r) + static_cast<std::size_t>(col + 1) * c; }
    float* px(int r, int col) { return row(r) + static_cast<std::size_t>(col + 1) * c; }
};

// The outermost ring of one patch's pooled map (S x C each; corners in top/bottom and left/right).
struct Ring {
    std::vector<float> top, bottom, left, right;
    void init(int s, int c) {
        const std::size_t n = static_cast<std::size_t>(s) * c;
        top.resize(n);
        bottom.resize(n);
        left.resize(n);
        right.resize(n);
    }
};

// ---- threads: a frame is a list of tasks in phases; any thread runs any task --------------------
// Task i of phase k starts only when every task of phase k - 1 has finished. Threads grab tasks
// from one atomic cursor, so a thread the OS deschedules (a shared, busy CPU) delays only the task
// it holds; the others take the rest. No barrier waits for a thread that has not started.
constexpr int kMaxPhases = 8;

class Scheduler {
public:
    using Task = std::function<void(int task, int tid)>;

    explicit Scheduler(int n) : n_(n) {
        for (auto& d : done_) d.store(0, std::memory_order_relaxed);
        for (int t = 1; t < n; ++t) workers_.emplace_back([this, t] { loop(t); });
    }
    ~Scheduler() {
        {
            std::lock_guard<std::mutex> lk(m_);
            stop_.store(true);
            gen_.fetch_add(1);
        }
        cv_.notify_all();
        for (auto& w : workers_) w.join();
    }
    int size() const { return n_; }

    // Runs every task; `ends` are the cumulative task counts of the phases. phase_ms (optional)
    // gets each phase's duration as seen by the thread that finished it.
    void run(const std::vector<int>& ends, const Task& fn, double* phase_ms) {
        const int phases = static_cast<int>(ends.size());
        if (phases == 0 || phases > kMaxPhases) bad("bad phase list");
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
    template <typename Pred>
    static void wait_until(Pred ready) {
        for (int spins = 0; !ready(); ++spins) {
            if (spins < 2000) {
                _mm_pause();
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
                _mm_pause();
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
    Clock::time_point start_;                           // written before the cursor is published
    std::atomic<std::int64_t> finished_ns_[kMaxPhases] = {};  // ns after start_, 0 = not yet
};

}  // namespace

// ---- the engine ----------------------------------------------------------------------------------
struct StudentEngine::Impl {
    // weights in kernel layouts
    std::vector<float> w[kLayers], wt[kLayers], b[kLayers];  // wt: spatially transposed taps
    float scale = 1.f, offset = 0.f;                          // v = x * scale + offset
    int hidden = 0, classes = 0, k_fc = 0;
    std::vector<float> fc1, fc1_b, fc2, fc2_b;

    Scheduler team;
    // per-frame state
    FrameView frame{};
    const Box* boxes = nullptr;
    int n = 0;
    bool shared = false;
    int ux0 = 0, uy0 = 0;      // union origin (shared mode)
    Map full[kLayers];         // F_1..F_4 over the union (index = layer, 1..4 used)
    std::vector<Ring> rings;   // [patch * kLayers + layer], layers 1..4
    std::vector<float> x_fc;   // [n][k_fc] conv5 output, NHWC flatten order
    std::vector<float> y_fc;   // [n][hidden]
    float* logits = nullptr;
    // per-thread scratch
    struct Scratch {
        std::vector<float> rows;   // 4 band/rolling rows
        std::vector<int> ks;       // FC1 inputs that are not 0 for every patch
        Map maps[kLayers + 1];     // per-patch maps (index = layer 1..5; 4 is also the conv5 input)
    };
    std::vector<Scratch> scratch;
    StudentTimes times;

    explicit Impl(int threads) : team(threads), scratch(static_cast<std::size_t>(threads)) {}

    // Row `line` (column when transposed) of patch p's map at `level` (>= 1), zero padding
    // included: S + 2 pixels into dst. Pixel (r, c) of the patch map is its ring where r or c is
    // 0 or S - 1 (top/bottom win at the corners), else the shared map at the patch's offset.
    void patch_line(int p, int level, int line, bool transposed, float* dst) const {
        const int s = kPatch >> level, ch = kCout[level - 1];
        const std::size_t px = sizeof(float) * ch;
        const Ring& g = rings[static_cast<std::size_t>(p) * kLayers + level];
        const Map& f = full[level];
        const int oy = (boxes[p].y - uy0) >> level, ox = (boxes[p].x - ux0) >> level;
        std::memset(dst, 0, px);
        std::memset(dst + static_cast<std::size_t>(s + 1) * ch, 0, px);
        float* d = dst + ch;
        const std::size_t at_line = static_cast<std::size_t>(line) * ch;
        const std::size_t last = static_cast<std::size_t>(s - 1) * ch;
        if (!transposed) {
            if (line == 0 || line == s - 1) {
                std::memcpy(d, (line == 0 ? g.top : g.bottom).data(), s * px);
                return;
            }
            std::memcpy(d, g.left.data() + at_line, px);
            std::memcpy(d + ch, f.px(oy + line, ox + 1), (s - 2) * px);
            std::memcpy(d + last, g.right.data() + at_line, px);
            return;
        }
        if (line == 0 || line == s - 1) {
            std::memcpy(d, (line == 0 ? g.left : g.right).data(), s * px);
        } else {
            const float* src = f.px(oy + 1, ox + line);
            const std::size_t stride = f.stride();
            for (int r = 1; r < s - 1; ++r) {
                std::memcpy(d + static_cast<std::size_t>(r) * ch, src + (r - 1) * stride, px);
            }
        }
        std::memcpy(d, g.top.data() + at_line, px);  // corners: top and bottom win
        std::memcpy(d + last, g.bottom.data() + at_line, px);
    }

    // Layer 1 over a frame region (x0, y0, h, w), zero-padded outside it, rows [i0, i1) of out.
    void conv1_rows(int x0, int y0, int height, int width, Map& out, int i0, int i1, Scratch& s) {
        const std::size_t rs = static_cast<std::size_t>(width + 2) * 4;
        s.rows.resize(std::max(s.rows.size(), 4 * rs));
        int held[4] = {-2, -2, -2, -2};
        const float* rows[4];
        for (int i = i0; i < i1; ++i) {
            for (int t = 0; t < 4; ++t) {
                const int r = 2 * i - 1 + t, slot = (r + 1) & 3;
                float* dst = s.rows.data() + slot * rs;
                if (held[slot] != r) {
                    if (r < 0 || r >= height) {
                        std::memset(dst, 0, rs * sizeof(float));
                    } else {
                        const std::uint8_t* src =
                            frame.data + (y0 + r) * frame.stride_y + x0 * frame.stride_x;
                        dup4_row(src, frame.stride_x, width, scale, offset, dst);
                    }
                    held[slot] = r;
                }
                rows[t] = dst;
            }
            row_conv1(rows, width / 2, w[0].data(), b[0].data(), out.px(i, 0));
        }
    }

    // Layers 2..5 over a padded map, rows [i0, i1) of out.
    void conv_rows(int layer, const Map& in, Map& out, int i0, int i1) {
        const float* rows[4];
        for (int i = i0; i < i1; ++i) {
            for (int t = 0; t < 4; ++t) rows[t] = in.row(2 * i - 1 + t);
            kKernels[layer](rows, out.w, w[layer].data(), b[layer].data(), out.px(i, 0));
        }
    }

    // One band (0 top, 1 bottom, 2 left, 3 right) of patch p at layer `layer` (0-based: conv1 =
    // 0): builds the 4 padded input rows (transposed for left/right) and writes the ring side.
    void band(int p, int layer, int side, Scratch& s) {
        const int s_in = kPatch >> layer, cin = layer == 0 ? 4 : kCin[layer];
        const std::size_t rs = static_cast<std::size_t>(s_in + 2) * cin;
        s.rows.resize(std::max(s.rows.size(), 4 * rs));
        const float* rows[4];
        const bool transposed = side >= 2;
        const int first = (side == 0 || side == 2) ? -1 : s_in - 3;  // input rows/cols first..+3
        const Box& bx = boxes[p];
        for (int t = 0; t < 4; ++t) {
            float* dst = s.rows.data() + t * rs;
            const int line = first + t;  // patch row (or column, transposed) of the input
            if (line < 0 || line >= s_in) {
                std::memset(dst, 0, rs * sizeof(float));
            } else if (layer == 0) {
                const std::uint8_t* src =
                    transposed ? frame.data + bx.y * frame.stride_y + (bx.x + line) * frame.stride_x
                               : frame.data + (bx.y + line) * frame.stride_y + bx.x * frame.stride_x;
                dup4_row(src, transposed ? frame.stride_y : frame.stride_x, s_in, scale, offset,
                         dst);
            } else {
                patch_line(p, layer, line, transposed, dst);
            }
            rows[t] = dst;
        }
        Ring& g = rings[static_cast<std::size_t>(p) * kLayers + layer + 1];
        float* out = side == 0 ? g.top.data()
                     : side == 1 ? g.bottom.data()
                     : side == 2 ? g.left.data()
                                 : g.right.data();
        const float* wl = transposed ? wt[layer].data() : w[layer].data();
        kKernels[layer](rows, s_in / 2, wl, b[layer].data(), out);
    }

    // conv5 (+ pool) of patch p from its level-4 map -> x_fc[p].
    void conv5(int p, const Map& m4) {
        const float* rows[4];
        const int s_out = kPatch >> 5;
        for (int i = 0; i < s_out; ++i) {
            for (int t = 0; t < 4; ++t) rows[t] = m4.row(2 * i - 1 + t);
            kKernels[4](rows, s_out, w[4].data(), b[4].data(),
                        x_fc.data() + static_cast<std::size_t>(p) * k_fc + i * s_out * kCout[4]);
        }
    }

    // FC1 for output blocks [ob0, ob1) (all patches), then FC2 for one patch: task bodies.
    void fc1_task(int ob0, int ob1, int tid) {
        std::vector<int>& ks = scratch[tid].ks;
        for (int q0 = 0; q0 < n; q0 += kFcRows) {
            const int nb = std::min(kFcRows, n - q0);
            const float* x = x_fc.data() + static_cast<std::size_t>(q0) * k_fc;
            ks.clear();
            for (int k = 0; k < k_fc; ++k) {
                bool live = false;
                for (int q = 0; q < nb && !live; ++q) live = x[q * k_fc + k] != 0.f;
                if (live) ks.push_back(k);
            }
            kFc1[nb](x, k_fc, ks.data(), static_cast<int>(ks.size()), fc1.data(), fc1_b.data(),
                     ob0, ob1, hidden, y_fc.data() + static_cast<std::size_t>(q0) * hidden);
        }
    }

    void fc2_task(int q) {
        for (int k = 0; k < classes; ++k) {
            logits[q * classes + k] = dot(y_fc.data() + static_cast<std::size_t>(q) * hidden,
                                          fc2.data() + static_cast<std::size_t>(k) * hidden,
                                          hidden) +
                                      fc2_b[k];
        }
    }

    // Task list of one frame. Shared mode: per conv1..conv4, chunks of the shared map's rows and
    // the 4 ring bands of every patch; then conv5 per patch; FC1 in output chunks; FC2 per patch.
    // Per-patch mode: conv1..conv5 of one patch per task; then the FC phases.
    struct Plan {
        std::vector<int> ends;     // cumulative task counts per phase
        int row_chunks[4] = {};    // shared mode: row chunks per conv layer
        int rows_per_chunk[4] = {};
        int fc1_chunks = 0;
    };
    Plan plan_frame() const {
        Plan pl;
        int total = 0;
        if (shared) {
            for (int layer = 0; layer < 4; ++layer) {
                const int h = full[layer + 1].h;
                pl.rows_per_chunk[layer] = std::max(1, h / 16);
                pl.row_chunks[layer] = (h + pl.rows_per_chunk[layer] - 1) / pl.rows_per_chunk[layer];
                total += pl.row_chunks[layer] + 4 * n;
                pl.ends.push_back(total);
            }
        }
        total += n;  // conv5 (shared) or the whole conv stack (per patch)
        pl.ends.push_back(total);
        pl.fc1_chunks = std::min(8, hidden / 8);
        total += pl.fc1_chunks;
        pl.ends.push_back(total);
        total += n;
        pl.ends.push_back(total);
        return pl;
    }

    void run_task(const Plan& pl, int task, int tid) {
        Scratch& s = scratch[static_cast<std::size_t>(tid)];
        int k = 0;
        while (task >= pl.ends[k]) ++k;
        const int i = task - (k ? pl.ends[k - 1] : 0);
        const int conv_phases = shared ? 4 : 0;
        if (k < conv_phases) {
            const int layer = k;
            if (i < pl.row_chunks[layer]) {
                Map& out = full[layer + 1];
                const int r0 = i * pl.rows_per_chunk[layer];
                const int r1 = std::min(out.h, r0 + pl.rows_per_chunk[layer]);
                if (layer == 0) {
                    conv1_rows(ux0, uy0, full[0].h, full[0].w, out, r0, r1, s);
                } else {
                    conv_rows(layer, full[layer], out, r0, r1);
                }
            } else {
                const int b = i - pl.row_chunks[layer];
                band(b / 4, layer, b % 4, s);
            }
        } else if (k == conv_phases) {
            if (shared) {
                Map& m4 = s.maps[4];
                const int s4 = kPatch >> 4;
                m4.init(s4, s4, kCout[3]);
                for (int r = 0; r < s4; ++r) patch_line(i, 4, r, false, m4.row(r));
                conv5(i, m4);
            } else {
                for (int level = 1; level <= 4; ++level) {
                    s.maps[level].init(kPatch >> level, kPatch >> level, kCout[level - 1]);
                }
                conv1_rows(boxes[i].x, boxes[i].y, kPatch, kPatch, s.maps[1], 0, kPatch / 2, s);
                for (int layer = 1; layer < 4; ++layer) {
                    conv_rows(layer, s.maps[layer], s.maps[layer + 1], 0, s.maps[layer + 1].h);
                }
                conv5(i, s.maps[4]);
            }
        } else if (k == conv_phases + 1) {
            const int blocks = hidden / 8;
            fc1_task(blocks * i / pl.fc1_chunks, blocks * (i + 1) / pl.fc1_chunks, tid);
        } else {
            fc2_task(i);
        }
    }

    void run_frame() {
        const Plan pl = plan_frame();
        double phase_ms[kMaxPhases] = {};
        const Scheduler::Task fn = [this, &pl](int task, int tid) { run_task(pl, task, tid); };
        team.run(pl.ends, fn, phase_ms);
        const int conv_phases = shared ? 4 : 0;
        for (int k = 0; k < conv_phases; ++k) times.layers_ms[k] = phase_ms[k];
        times.layers_ms[shared ? 4 : 0] = phase_ms[conv_phases];
        times.fc_ms = phase_ms[conv_phases + 1] + phase_ms[conv_phases + 2];
    }
};

namespace {

// [Cout][Cin][3][3] -> [tap][Cin][Cout] (transposed: tap (ky, kx) takes weight (kx, ky)).
std::vector<float> relayout(const std::vector<float>& src, int cout, int cin, bool transpose) {
    std::vector<float> out(static_cast<std::size_t>(9) * cin * cout);
    for (int co = 0; co < cout; ++co) {
        for (int ci = 0; ci < cin; ++ci) {
            for (int ky = 0; ky < 3; ++ky) {
                for (int kx = 0; kx < 3; ++kx) {
                    const int sy = transpose ? kx : ky, sx = transpose ? ky : kx;
                    out[(static_cast<std::size_t>(ky * 3 + kx) * cin + ci) * cout + co] =
                        src[((static_cast<std::size_t>(co) * cin + ci) * 3 + sy) * 3 + sx];
                }
            }
        }
    }
    return out;
}

}  // namespace

StudentEngine::StudentEngine(const StudentWeights& wt, int threads) {
    if (!student_engine_supported()) bad("the student engine needs a CPU with AVX2 and FMA");
    if (threads < 1) bad("threads must be >= 1, got " + std::to_string(threads));
    if (wt.widths != std::vector<int>(kCout, kCout + kLayers)) {
        bad("the student engine runs the paper's widths (4, 8, 16, 4, 4) only");
    }
    if (wt.in_channels != 1 && wt.in_channels != 3) {
        bad("conv1 must take 1 or 3 input channels, got " + std::to_string(wt.in_channels));
    }
    if (wt.conv_w.size() != kLayers || wt.conv_b.size() != kLayers) bad("need 5 conv layers");
    const int cin_graph[kLayers] = {wt.in_channels, 4, 8, 16, 4};
    for (int l = 0; l < kLayers; ++l) {
        const std::size_t want = static_cast<std::size_t>(kCout[l]) * cin_graph[l] * 9;
        if (wt.conv_w[l].size() != want || wt.conv_b[l].size() != static_cast<std::size_t>(kCout[l])) {
            bad("conv" + std::to_string(l + 1) + " weights have the wrong size");
        }
    }
    const int k_fc = kCout[4] * 7 * 7;
    if (wt.fc1_b.empty() || wt.fc1_b.size() % 8 != 0 ||
        wt.fc1_w.size() != wt.fc1_b.size() * static_cast<std::size_t>(k_fc)) {
        bad("fc1 must be [hidden][196] with hidden a multiple of 8");
    }
    const int hidden = static_cast<int>(wt.fc1_b.size());
    if (wt.fc2_b.empty() || wt.fc2_w.size() != wt.fc2_b.size() * static_cast<std::size_t>(hidden)) {
        bad("fc2 must be [classes][hidden]");
    }
    impl_ = std::make_unique<Impl>(threads);
    Impl& m = *impl_;

    // conv1: sum the replicated gray channels; fold the pad value into the bias (see header).
    std::vector<float> w1(static_cast<std::size_t>(kCout[0]) * 9, 0.f);
    std::vector<float> b1(kCout[0]);
    for (int co = 0; co < kCout[0]; ++co) {
        double total = 0;
        for (int tap = 0; tap < 9; ++tap) {
            double sum = 0;
            for (int ci = 0; ci < wt.in_channels; ++ci) {
                sum += wt.conv_w[0][(static_cast<std::size_t>(co) * wt.in_channels + ci) * 9 + tap];
            }
            w1[static_cast<std::size_t>(co) * 9 + tap] = static_cast<float>(sum);
            total += sum;
        }
        b1[co] = static_cast<float>(wt.conv_b[0][co] + static_cast<double>(wt.pad_value) * total);
    }
    for (int tr = 0; tr < 2; ++tr) {
        const std::vector<float> taps = relayout(w1, kCout[0], 1, tr == 1);  // [tap][4]
        std::vector<float>& dst = tr ? m.wt[0] : m.w[0];
        dst.resize(9 * 8);
        for (int tap = 0; tap < 9; ++tap) {
            for (int k = 0; k < 8; ++k) dst[tap * 8 + k] = taps[tap * 4 + (k % 4)];
        }
    }
    m.b[0] = b1;
    for (int l = 1; l < kLayers; ++l) {
        m.w[l] = relayout(wt.conv_w[l], kCout[l], kCin[l], false);
        m.wt[l] = relayout(wt.conv_w[l], kCout[l], kCin[l], true);
        m.b[l] = wt.conv_b[l];
    }
    m.scale = wt.input_scale;
    m.offset = wt.input_offset - wt.pad_value;  // v = u - pad: zero outside the patch

    // FC1: columns from NCHW flatten order to the engine's NHWC order, blocked by 8 outputs.
    m.hidden = hidden;
    m.k_fc = k_fc;
    m.fc1.assign(static_cast<std::size_t>(hidden) * k_fc, 0.f);
    const int c5 = kCout[4], s5 = 7;
    for (int o = 0; o < hidden; ++o) {
        for (int c = 0; c < c5; ++c) {
            for (int yx = 0; yx < s5 * s5; ++yx) {
                const int k_nhwc = yx * c5 + c, k_nchw = c * s5 * s5 + yx;
                m.fc1[(static_cast<std::size_t>(o / 8) * k_fc + k_nhwc) * 8 + o % 8] =
                    wt.fc1_w[static_cast<std::size_t>(o) * k_fc + k_nchw];
            }
        }
    }
    m.fc1_b = wt.fc1_b;
    m.fc2 = wt.fc2_w;
    m.fc2_b = wt.fc2_b;
    m.classes = static_cast<int>(wt.fc2_b.size());
}

StudentEngine::~StudentEngine() = default;

int StudentEngine::num_classes() const { return impl_->classes; }
int StudentEngine::threads() const { return impl_->team.size(); }
bool StudentEngine::last_shared() const { return impl_->shared; }

void StudentEngine::infer(const FrameView& frame, const Box* boxes, std::size_t n, float* logits,
                          StudentTimes* times) {
    Impl& m = *impl_;
    if (frame.channels != 1) {
        bad("the student engine reads gray frames (1 channel), got " +
            std::to_string(frame.channels) + " channels");
    }
    if (n == 0) return;
    int ux0 = boxes[0].x, uy0 = boxes[0].y, ux1 = 0, uy1 = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const Box& b = boxes[i];
        if (b.w != kPatch || b.h != kPatch || b.x < 0 || b.y < 0 ||
            static_cast<std::int64_t>(b.x) + b.w > frame.width ||
            static_cast<std::int64_t>(b.y) + b.h > frame.height) {
            bad("box " + std::to_string(i) + " is not a 224x224 patch inside the " +
                std::to_string(frame.height) + "x" + std::to_string(frame.width) + " frame");
        }
        ux0 = std::min(ux0, b.x);
        uy0 = std::min(uy0, b.y);
        ux1 = std::max(ux1, b.x + b.w);
        uy1 = std::max(uy1, b.y + b.h);
    }
    bool aligned = n > 1;
    for (std::size_t i = 0; i < n && aligned; ++i) {
        aligned = (boxes[i].x - ux0) % kAlign == 0 && (boxes[i].y - uy0) % kAlign == 0;
    }
    const double union_area = static_cast<double>(ux1 - ux0) * (uy1 - uy0);
    m.shared = aligned && union_area < 0.9 * static_cast<double>(n) * kPatch * kPatch;
    m.frame = frame;
    m.boxes = boxes;
    m.n = static_cast<int>(n);
    m.logits = logits;
    m.x_fc.resize(n * static_cast<std::size_t>(m.k_fc));
    m.y_fc.resize(n * static_cast<std::size_t>(m.hidden));
    m.times = StudentTimes{};
    const auto t0 = Clock::now();
    if (m.shared) {
        m.ux0 = ux0;
        m.uy0 = uy0;
        m.full[0].h = uy1 - uy0;  // level 0 is the frame region itself (not stored)
        m.full[0].w = ux1 - ux0;
        for (int level = 1; level <= 4; ++level) {
            m.full[level].init((uy1 - uy0) >> level, (ux1 - ux0) >> level, kCout[level - 1]);
        }
        m.rings.resize(n * kLayers);
        for (std::size_t p = 0; p < n; ++p) {
            for (int level = 1; level <= 4; ++level) {
                m.rings[p * kLayers + level].init(kPatch >> level, kCout[level - 1]);
            }
        }
    }
    m.run_frame();
    m.times.total_ms = ms_since(t0);
    if (times) *times = m.times;
}

bool student_engine_supported() {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

}  // namespace pyinspect
