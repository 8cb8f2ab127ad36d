// See student_engine.hpp for what this computes and why the shared computation is exact.
// The orchestration (geometry, task plan, weight layouts) is baseline x86-64 code; the arithmetic
// is in student_kernels_avx2.cpp and, for the layers it covers, student_kernels_avx512.cpp, and in
// bf16 precision student_kernels_bf16.cpp, each called only once the constructor has checked that
// the CPU has its level. Feature maps hold f32 or, in bf16 precision, bf16 values (the templates
// over T = float / std::uint16_t below). Python: pyinspect/runners/student.py; tests:
// tests/test_runner_student.py, tests/test_student_isa.py, tests/test_student_bf16.py.
#include "student_engine.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "student_kernels.hpp"
#include "thread_pool.hpp"

namespace pyinspect {

namespace {

using namespace student;  // kLayers, kMaxWidth, kFcRows, ConvGeom; kernels: student::avx2::
                          // and student::avx512::

bool cpu_has_avx512f() {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");  // libgcc also checks that the OS saves zmm state
}

// What the bf16 level's kernels use: AVX512-BF16 dot products and conversions, at 128, 256 and
// 512 bits (AVX512VL), beside AVX-512F, AVX2 and FMA.
bool cpu_has_bf16() {
    __builtin_cpu_init();
    return cpu_has_avx512f() && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx2") &&
           __builtin_cpu_supports("fma");
}

using u16 = std::uint16_t;  // a bf16 value's bits

[[noreturn]] void bad(const std::string& msg) { throw std::invalid_argument(msg); }

constexpr int kPatch = StudentEngine::kPatch;
constexpr int kAlign = 16;  // offsets must be multiples of 2^4 to share conv1..conv4

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

// ---- zero-padded NHWC feature map --------------------------------------------------------------
// Values are f32 (d) or, in bf16 precision, bf16 bits (d16); T picks one in the accessors.
struct Map {
    int h = 0, w = 0, c = 0;
    bool half = false;
    std::vector<float> d;
    std::vector<u16> d16;
    void init(int h_, int w_, int c_, bool half_) {
        // the zero border is never written, so an unchanged map keeps it
        if (h_ == h && w_ == w && c_ == c && half_ == half) return;
        h = h_;
        w = w_;
        c = c_;
        half = half_;
        const std::size_t n = static_cast<std::size_t>(h + 2) * (w + 2) * c;
        if (half) {
            d16.assign(n, 0);
            std::vector<float>().swap(d);
        } else {
            d.assign(n, 0.f);
            std::vector<u16>().swap(d16);
        }
    }
    std::size_t stride() const { return static_cast<std::size_t>(w + 2) * c; }
    template <class T>
    T* row(int r) {
        T* base;
        if constexpr (std::is_same_v<T, float>) {
            base = d.data();
        } else {
            base = d16.data();
        }
        return base + static_cast<std::size_t>(r + 1) * stride();
    }
    template <class T>
    const T* row(int r) const {
        return const_cast<Map*>(this)->row<T>(r);
    }
    template <class T>
    T* px(int r, int col) {
        return row<T>(r) + static_cast<std::size_t>(col + 1) * c;
    }
    template <class T>
    const T* px(int r, int col) const {
        return row<T>(r) + static_cast<std::size_t>(col + 1) * c;
    }
};

// The outermost ring of one patch's pooled map (S x C each; corners in top/bottom and left/right),
// f32 or bf16 as the maps.
struct Ring {
    std::vector<float> side32[4];  // top, bottom, left, right
    std::vector<u16> side16[4];
    void init(int s, int c, bool half) {
        const std::size_t n = static_cast<std::size_t>(s) * c;
        for (int k = 0; k < 4; ++k) {
            if (half) {
                side16[k].resize(n);
            } else {
                side32[k].resize(n);
            }
        }
    }
    template <class T>
    T* side(int k) {
        if constexpr (std::is_same_v<T, float>) {
            return side32[k].data();
        } else {
            return side16[k].data();
        }
    }
    template <class T>
    const T* side(int k) const {
        return const_cast<Ring*>(this)->side<T>(k);
    }
};
enum RingSide { kTop = 0, kBottom = 1, kLeft = 2, kRight = 3 };

}  // namespace

// ---- the engine --------------------------------------------------------------------------------
struct StudentEngine::Impl {
    // the network: real and stored (padded) widths, each layer's geometry and kernel
    int width[kLayers] = {}, padded[kLayers] = {};
    ConvGeom geom[kLayers];
    RowKernel kernel[kLayers] = {};
    const char* isa = "avx2";  // the kernel level in use
    const Fc1Kernel* fc1_kernel = avx2::kFc1;  // [patches in the pass]
    int conv1_rep = 4;  // floats per pixel in a conv1 input row: 4 (dup4) or 1
    // bf16 precision: conv2..conv5 (kernel16[1..4]) and FC1 on the bf16 level, every map and
    // FC1's input in bf16; conv1 keeps kernel[0] (its output rounded to bf16), FC2 stays f32
    bool bf16 = false;
    bf16::RowKernel16 kernel16[kLayers] = {};
    const bf16::Fc1Kernel16* fc1_kernel16 = bf16::kFc1;
    // weights in kernel layouts
    std::vector<float> w[kLayers], wt[kLayers], b[kLayers];  // wt: spatially transposed taps
    std::vector<u16> w16[kLayers], wt16[kLayers];             // bf16 precision, layers 2..5
    float scale = 1.f, offset = 0.f;                          // v = x * scale + offset
    int hidden = 0, classes = 0, k_fc = 0;  // hidden padded to a multiple of 8
    std::vector<float> fc1, fc1_b, fc2, fc2_b;
    std::vector<u16> fc1_16;     // bf16 precision: [hidden/8][k_fc/2][8][2]
    std::vector<int> fc_inputs;  // the FC1 inputs of real (not padded) conv5 channels, ascending
    std::vector<int> fc_pairs;   // bf16 precision: the input pairs (k / 2) holding a real channel

    ThreadPool team;
    // per-frame state
    FrameView frame{};
    const Box* boxes = nullptr;
    int n = 0;
    bool shared = false;
    int ux0 = 0, uy0 = 0;      // union origin (shared mode)
    Map full[kLayers];         // F_1..F_4 over the union (index = layer, 1..4 used)
    std::vector<Ring> rings;   // [patch * kLayers + layer], layers 1..4
    std::vector<float> x_fc;   // [n][k_fc] conv5 output, NHWC flatten order
    std::vector<u16> x_fc16;   // the same in bf16 precision
    std::vector<float> y_fc;   // [n][hidden]
    float* logits = nullptr;
    // per-thread scratch
    struct Scratch {
        std::vector<float> rows;   // 4 band/rolling rows
        std::vector<u16> rows16;   // the same for bf16 maps
        std::vector<float> out32;  // bf16 precision: one conv1 output row before rounding
        std::vector<int> ks;       // FC1 inputs (bf16: input pairs) not 0 for every patch
        Map maps[kLayers + 1];     // per-patch maps (index = layer 1..5; 4 is also the conv5 input)
        template <class T>
        std::vector<T>& row_buf() {
            if constexpr (std::is_same_v<T, float>) {
                return rows;
            } else {
                return rows16;
            }
        }
    };
    std::vector<Scratch> scratch;
    StudentTimes times;

    explicit Impl(int threads) : team(threads), scratch(static_cast<std::size_t>(threads)) {}

    // Row `line` (column when transposed) of patch p's map at `level` (>= 1), zero padding
    // included: S + 2 pixels into dst. Pixel (r, c) of the patch map is its ring where r or c is
    // 0 or S - 1 (top/bottom win at the corners), else the shared map at the patch's offset.
    template <class T>
    void patch_line(int p, int level, int line, bool transposed, T* dst) const {
        const int s = kPatch >> level, ch = padded[level - 1];
        const std::size_t px = sizeof(T) * ch;
        const Ring& g = rings[static_cast<std::size_t>(p) * kLayers + level];
        const Map& f = full[level];
        const int oy = (boxes[p].y - uy0) >> level, ox = (boxes[p].x - ux0) >> level;
        std::memset(dst, 0, px);
        std::memset(dst + static_cast<std::size_t>(s + 1) * ch, 0, px);
        T* d = dst + ch;
        const std::size_t at_line = static_cast<std::size_t>(line) * ch;
        const std::size_t last = static_cast<std::size_t>(s - 1) * ch;
        if (!transposed) {
            if (line == 0 || line == s - 1) {
                std::memcpy(d, g.side<T>(line == 0 ? kTop : kBottom), s * px);
                return;
            }
            std::memcpy(d, g.side<T>(kLeft) + at_line, px);
            std::memcpy(d + ch, f.px<T>(oy + line, ox + 1), (s - 2) * px);
            std::memcpy(d + last, g.side<T>(kRight) + at_line, px);
            return;
        }
        if (line == 0 || line == s - 1) {
            std::memcpy(d, g.side<T>(line == 0 ? kLeft : kRight), s * px);
        } else {
            const T* src = f.px<T>(oy + 1, ox + line);
            const std::size_t stride = f.stride();
            for (int r = 1; r < s - 1; ++r) {
                std::memcpy(d + static_cast<std::size_t>(r) * ch, src + (r - 1) * stride, px);
            }
        }
        std::memcpy(d, g.side<T>(kTop) + at_line, px);  // corners: top and bottom win
        std::memcpy(d + last, g.side<T>(kBottom) + at_line, px);
    }

    // A conv1 input row from the frame's pixels (uint8, or uint16 gray; step in bytes): dup4
    // (4 channels) or one float per pixel.
    void convert_row(const std::uint8_t* src, std::int64_t step, int n, float* dst) const {
        if (frame.pixel == PixelType::UInt16) {
            if (conv1_rep == 4) {
                avx2::dup4_row_u16(src, step, n, scale, offset, dst);
            } else {
                avx2::plain_row_u16(src, step, n, scale, offset, dst);
            }
            return;
        }
        if (conv1_rep == 4) {
            avx2::dup4_row(src, step, n, scale, offset, dst);
        } else {
            avx2::plain_row(src, step, n, scale, offset, dst);
        }
    }

    // One row of conv1 (f32 input rows): f32 output, or rounded to bf16 through s.out32.
    void conv1_out(const float* const rows[4], int wout, bool transposed, float* out, Scratch&) {
        kernel[0](rows, wout, (transposed ? wt : w)[0].data(), b[0].data(), out, geom[0]);
    }
    void conv1_out(const float* const rows[4], int wout, bool transposed, u16* out, Scratch& s) {
        const std::size_t n = static_cast<std::size_t>(wout) * padded[0];
        s.out32.resize(std::max(s.out32.size(), n));
        conv1_out(rows, wout, transposed, s.out32.data(), s);
        bf16::round_row(s.out32.data(), n, out);
    }
    // One row of conv2..conv5: f32 rows on the f32 levels, bf16 rows on the bf16 level.
    void conv_out(int layer, const float* const rows[4], int wout, bool transposed,
                  float* out) const {
        kernel[layer](rows, wout, (transposed ? wt : w)[layer].data(), b[layer].data(), out,
                      geom[layer]);
    }
    void conv_out(int layer, const u16* const rows[4], int wout, bool transposed, u16* out) const {
        kernel16[layer](rows, wout, (transposed ? wt16 : w16)[layer].data(), b[layer].data(), out,
                        geom[layer]);
    }

    // Layer 1 over a frame region (x0, y0, h, w), zero-padded outside it, rows [i0, i1) of out.
    template <class T>
    void conv1_rows(int x0, int y0, int height, int width, Map& out, int i0, int i1, Scratch& s) {
        const std::size_t rs = static_cast<std::size_t>(width + 2) * conv1_rep;
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
                        convert_row(src, frame.stride_x, width, dst);
                    }
                    held[slot] = r;
                }
                rows[t] = dst;
            }
            conv1_out(rows, width / 2, false, out.px<T>(i, 0), s);
        }
    }

    // Layers 2..5 over a padded map, rows [i0, i1) of out.
    template <class T>
    void conv_rows(int layer, const Map& in, Map& out, int i0, int i1) const {
        const T* rows[4];
        for (int i = i0; i < i1; ++i) {
            for (int t = 0; t < 4; ++t) rows[t] = in.row<T>(2 * i - 1 + t);
            conv_out(layer, rows, out.w, false, out.px<T>(i, 0));
        }
    }

    // One band (0 top, 1 bottom, 2 left, 3 right) of patch p at layer `layer` (0-based: conv1 =
    // 0): builds the 4 padded input rows (transposed for left/right) and writes the ring side.
    template <class T>
    void band(int p, int layer, int side, Scratch& s) {
        const int s_in = kPatch >> layer, cin = layer == 0 ? conv1_rep : padded[layer - 1];
        const std::size_t rs = static_cast<std::size_t>(s_in + 2) * cin;
        const bool transposed = side >= 2;
        const int first = (side == 0 || side == 2) ? -1 : s_in - 3;  // input rows/cols first..+3
        Ring& g = rings[static_cast<std::size_t>(p) * kLayers + layer + 1];
        T* out = g.side<T>(side);
        if (layer == 0) {  // f32 rows from the frame
            s.rows.resize(std::max(s.rows.size(), 4 * rs));
            const float* rows[4];
            const Box& bx = boxes[p];
            for (int t = 0; t < 4; ++t) {
                float* dst = s.rows.data() + t * rs;
                const int line = first + t;  // patch row (or column, transposed) of the input
                if (line < 0 || line >= s_in) {
                    std::memset(dst, 0, rs * sizeof(float));
                } else {
                    const std::uint8_t* src =
                        transposed
                            ? frame.data + bx.y * frame.stride_y + (bx.x + line) * frame.stride_x
                            : frame.data + (bx.y + line) * frame.stride_y + bx.x * frame.stride_x;
                    convert_row(src, transposed ? frame.stride_y : frame.stride_x, s_in, dst);
                }
                rows[t] = dst;
            }
            conv1_out(rows, s_in / 2, transposed, out, s);
            return;
        }
        std::vector<T>& buf = s.row_buf<T>();
        buf.resize(std::max(buf.size(), 4 * rs));
        const T* rows[4];
        for (int t = 0; t < 4; ++t) {
            T* dst = buf.data() + t * rs;
            const int line = first + t;
            if (line < 0 || line >= s_in) {
                std::memset(dst, 0, rs * sizeof(T));
            } else {
                patch_line(p, layer, line, transposed, dst);
            }
            rows[t] = dst;
        }
        conv_out(layer, rows, s_in / 2, transposed, out);
    }

    // conv5 (+ pool) of patch p from its level-4 map -> x_fc[p] (x_fc16 in bf16 precision).
    template <class T>
    void conv5(int p, const Map& m4) {
        const T* rows[4];
        const int s_out = kPatch >> 5;
        T* x;
        if constexpr (std::is_same_v<T, float>) {
            x = x_fc.data();
        } else {
            x = x_fc16.data();
        }
        for (int i = 0; i < s_out; ++i) {
            for (int t = 0; t < 4; ++t) rows[t] = m4.row<T>(2 * i - 1 + t);
            conv_out(4, rows, s_out, false,
                     x + static_cast<std::size_t>(p) * k_fc + i * s_out * padded[4]);
        }
    }

    // FC1 for output blocks [ob0, ob1) (all patches), then FC2 for one patch: task bodies.
    void fc1_task(int ob0, int ob1, int tid) {
        if (bf16) {
            fc1_task16(ob0, ob1, tid);
            return;
        }
        std::vector<int>& ks = scratch[tid].ks;
        for (int q0 = 0; q0 < n; q0 += kFcRows) {
            const int nb = std::min(kFcRows, n - q0);
            const float* x = x_fc.data() + static_cast<std::size_t>(q0) * k_fc;
            ks.clear();
            for (const int k : fc_inputs) {
                bool live = false;
                for (int q = 0; q < nb && !live; ++q) live = x[q * k_fc + k] != 0.f;
                if (live) ks.push_back(k);
            }
            fc1_kernel[nb](x, k_fc, ks.data(), static_cast<int>(ks.size()), fc1.data(),
                           fc1_b.data(), ob0, ob1, hidden,
                           y_fc.data() + static_cast<std::size_t>(q0) * hidden);
        }
    }

    // FC1 in bf16 precision: the input pairs that are not 0 for every patch of the pass.
    void fc1_task16(int ob0, int ob1, int tid) {
        std::vector<int>& kps = scratch[tid].ks;
        for (int q0 = 0; q0 < n; q0 += kFcRows) {
            const int nb = std::min(kFcRows, n - q0);
            const u16* x = x_fc16.data() + static_cast<std::size_t>(q0) * k_fc;
            kps.clear();
            for (const int kp : fc_pairs) {
                bool live = false;
                for (int q = 0; q < nb && !live; ++q) {
                    const u16* v = x + static_cast<std::size_t>(q) * k_fc + 2 * kp;
                    live = ((v[0] | v[1]) & 0x7fff) != 0;  // +-0 adds nothing to a sum
                }
                if (live) kps.push_back(kp);
            }
            fc1_kernel16[nb](x, k_fc, kps.data(), static_cast<int>(kps.size()), fc1_16.data(),
                             fc1_b.data(), ob0, ob1, hidden,
                             y_fc.data() + static_cast<std::size_t>(q0) * hidden);
        }
    }

    void fc2_task(int q) {
        for (int k = 0; k < classes; ++k) {
            const float* yq = y_fc.data() + static_cast<std::size_t>(q) * hidden;
            const float* wk = fc2.data() + static_cast<std::size_t>(k) * hidden;
            logits[q * classes + k] = avx2::dot(yq, wk, hidden) + fc2_b[k];
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
        if (bf16) {
            run_task_as<u16>(pl, task, tid);
        } else {
            run_task_as<float>(pl, task, tid);
        }
    }

    // A task with maps of T (float, or u16 = bf16).
    template <class T>
    void run_task_as(const Plan& pl, int task, int tid) {
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
                    conv1_rows<T>(ux0, uy0, full[0].h, full[0].w, out, r0, r1, s);
                } else {
                    conv_rows<T>(layer, full[layer], out, r0, r1);
                }
            } else {
                const int b = i - pl.row_chunks[layer];
                band<T>(b / 4, layer, b % 4, s);
            }
        } else if (k == conv_phases) {
            if (shared) {
                Map& m4 = s.maps[4];
                const int s4 = kPatch >> 4;
                m4.init(s4, s4, padded[3], bf16);
                for (int r = 0; r < s4; ++r) patch_line(i, 4, r, false, m4.row<T>(r));
                conv5<T>(i, m4);
            } else {
                for (int level = 1; level <= 4; ++level) {
                    s.maps[level].init(kPatch >> level, kPatch >> level, padded[level - 1], bf16);
                }
                conv1_rows<T>(boxes[i].x, boxes[i].y, kPatch, kPatch, s.maps[1], 0, kPatch / 2, s);
                for (int layer = 1; layer < 4; ++layer) {
                    conv_rows<T>(layer, s.maps[layer], s.maps[layer + 1], 0, s.maps[layer + 1].h);
                }
                conv5<T>(i, s.maps[4]);
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
        double phase_ms[ThreadPool::kMaxPhases] = {};
        const ThreadPool::Task fn = [this, &pl](int task, int tid) { run_task(pl, task, tid); };
        team.run(pl.ends, fn, phase_ms);
        const int conv_phases = shared ? 4 : 0;
        for (int k = 0; k < conv_phases; ++k) times.layers_ms[k] = phase_ms[k];
        times.layers_ms[shared ? 4 : 0] = phase_ms[conv_phases];
        times.fc_ms = phase_ms[conv_phases + 1] + phase_ms[conv_phases + 2];
    }
};

namespace {

// [Cout][Cin][3][3] -> [cout_pad / block][tap][Cin][block], channels >= Cout zero (transposed:
// tap (ky, kx) takes weight (kx, ky)).
std::vector<float> relayout(const std::vector<float>& src, int cout, int cin, int cout_pad,
                            int block, bool transpose) {
    std::vector<float> out(static_cast<std::size_t>(9) * cin * cout_pad, 0.f);
    for (int co = 0; co < cout; ++co) {
        const std::size_t base = static_cast<std::size_t>(co / block) * 9 * cin * block;
        for (int ci = 0; ci < cin; ++ci) {
            for (int ky = 0; ky < 3; ++ky) {
                for (int kx = 0; kx < 3; ++kx) {
                    const int sy = transpose ? kx : ky, sx = transpose ? ky : kx;
                    out[base + (static_cast<std::size_t>(ky * 3 + kx) * cin + ci) * block +
                        co % block] = src[((static_cast<std::size_t>(co) * cin + ci) * 3 + sy) * 3 + sx];
                }
            }
        }
    }
    return out;
}

std::vector<float> zero_padded(const std::vector<float>& v, int n) {
    std::vector<float> out(static_cast<std::size_t>(n), 0.f);
    std::copy(v.begin(), v.end(), out.begin());
    return out;
}

// f32 -> bf16 bits, round to nearest even (a NaN stays a quiet NaN).
u16 to_bf16(float f) {
    std::uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<u16>((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return static_cast<u16>(u >> 16);
}

// The bf16 level's weight layout (student_kernels.hpp): input channels per group, and lane l,
// element e -> (output channel within the block, input channel within the group).
int group_channels(const ConvGeom& g) {
    return g.block == 16 ? 2 : g.block == 8 ? 4 : g.in_stride == 4 ? 4 : 8;
}
void bf16_lane(const ConvGeom& g, int l, int e, int& co, int& ch) {
    if (g.block == 16) {
        co = l;
        ch = e;
    } else if (g.block == 8 || g.in_stride == 4) {
        co = g.block == 8 ? l / 2 : l / 4;
        ch = 2 * (l % 2) + e;
    } else {
        co = l / 4;
        ch = 2 * (l % 4) + e;
    }
}

// [Cout][Cin][3][3] -> [out_stride / block][tap][group][16][2] bf16, zero where the output or
// input channel does not exist (transposed: tap (ky, kx) takes weight (kx, ky)).
std::vector<u16> relayout_bf16(const std::vector<float>& src, int cout, int cin,
                               const ConvGeom& g, bool transpose) {
    const int gc = group_channels(g), groups = (cin + gc - 1) / gc, blocks = g.out_stride / g.block;
    std::vector<u16> out(static_cast<std::size_t>(blocks) * 9 * groups * 32, 0);
    std::size_t at = 0;
    for (int blk = 0; blk < blocks; ++blk) {
        for (int ky = 0; ky < 3; ++ky) {
            for (int kx = 0; kx < 3; ++kx) {
                const int sy = transpose ? kx : ky, sx = transpose ? ky : kx;
                for (int grp = 0; grp < groups; ++grp) {
                    for (int l = 0; l < 16; ++l) {
                        for (int e = 0; e < 2; ++e, ++at) {
                            int co_in = 0, ch = 0;
                            bf16_lane(g, l, e, co_in, ch);
                            const int co = blk * g.block + co_in, ci = grp * gc + ch;
                            if (co >= cout || ci >= cin) continue;
                            out[at] = to_bf16(
                                src[((static_cast<std::size_t>(co) * cin + ci) * 3 + sy) * 3 + sx]);
                        }
                    }
                }
            }
        }
    }
    return out;
}

}  // namespace

StudentEngine::StudentEngine(const StudentWeights& wt, int threads, KernelIsa isa,
                             KernelPrecision precision) {
    if (!student_engine_supported()) bad("the student engine needs a CPU with AVX2 and FMA");
    const bool has512 = cpu_has_avx512f();
    if (isa == KernelIsa::Avx512f && !has512) {
        bad("kernel level avx512f needs a CPU with AVX-512F; this one runs avx2 only");
    }
    const bool use_bf16 = precision == KernelPrecision::Bf16;
    if (use_bf16 && !cpu_has_bf16()) {
        bad("precision bf16 needs a CPU with AVX512_BF16 and AVX512VL; this one runs f32 only");
    }
    const bool use512 = isa == KernelIsa::Avx512f || (isa == KernelIsa::Auto && has512);
    if (threads < 1) bad("threads must be >= 1, got " + std::to_string(threads));
    if (wt.widths.size() != kLayers || wt.conv_w.size() != kLayers || wt.conv_b.size() != kLayers) {
        bad("the student has 5 conv layers");
    }
    for (int l = 0; l < kLayers; ++l) {
        if (wt.widths[l] < 1 || wt.widths[l] > kMaxWidth) {
            bad("conv" + std::to_string(l + 1) + " has " + std::to_string(wt.widths[l]) +
                " output channels; the student engine takes 1 to " + std::to_string(kMaxWidth));
        }
    }
    if (wt.in_channels != 1 && wt.in_channels != 3) {
        bad("conv1 must take 1 or 3 input channels, got " + std::to_string(wt.in_channels));
    }
    for (int l = 0; l < kLayers; ++l) {
        const int cin = l == 0 ? wt.in_channels : wt.widths[l - 1];
        const std::size_t want = static_cast<std::size_t>(wt.widths[l]) * cin * 9;
        if (wt.conv_w[l].size() != want ||
            wt.conv_b[l].size() != static_cast<std::size_t>(wt.widths[l])) {
            bad("conv" + std::to_string(l + 1) + " weights have the wrong size");
        }
    }
    const int c5 = wt.widths[4], s5 = kPatch >> 5;
    const int k_real = c5 * s5 * s5;
    if (wt.fc1_b.empty() || wt.fc1_w.size() != wt.fc1_b.size() * static_cast<std::size_t>(k_real)) {
        bad("fc1 must be [hidden][" + std::to_string(k_real) + "] (conv5's " +
            std::to_string(c5) + " channels x 7 x 7)");
    }
    const int hidden = static_cast<int>(wt.fc1_b.size());
    if (wt.fc2_b.empty() || wt.fc2_w.size() != wt.fc2_b.size() * static_cast<std::size_t>(hidden)) {
        bad("fc2 must be [classes][hidden]");
    }
    impl_ = std::make_unique<Impl>(threads);
    Impl& m = *impl_;

    // Geometry: every layer's output stored padded (zero weights and bias: exactly 0 after ReLU).
    for (int l = 0; l < kLayers; ++l) {
        m.width[l] = wt.widths[l];
        m.padded[l] = padded_width(wt.widths[l]);
    }
    m.conv1_rep = m.padded[0] == 4 ? 4 : 1;
    m.isa = use512 ? "avx512f" : "avx2";
    m.fc1_kernel = use512 ? avx512::kFc1 : avx2::kFc1;
    for (int l = 0; l < kLayers; ++l) {
        ConvGeom& g = m.geom[l];
        g.cin = l == 0 ? 1 : m.width[l - 1];
        g.in_stride = l == 0 ? m.conv1_rep : m.padded[l - 1];
        g.out_stride = m.padded[l];
        g.block = block_width(m.padded[l]);
        const bool dup4 = l == 0 && m.conv1_rep == 4;
        const RowKernel wide = use512 ? avx512::row_kernel(g, dup4) : nullptr;
        m.kernel[l] = wide ? wide : avx2::row_kernel(g, dup4);
        if (use_bf16 && l > 0) m.kernel16[l] = bf16::row_kernel(g);
    }
    m.bf16 = use_bf16;

    // conv1: sum the replicated gray channels; fold the pad value into the bias (see header).
    const int c1 = m.width[0], c1p = m.padded[0];
    std::vector<float> w1(static_cast<std::size_t>(c1) * 9, 0.f);
    std::vector<float> b1(c1);
    for (int co = 0; co < c1; ++co) {
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
        const std::vector<float> taps = relayout(w1, c1, 1, c1p, m.geom[0].block, tr == 1);
        std::vector<float>& dst = tr ? m.wt[0] : m.w[0];
        if (m.conv1_rep == 4) {  // [tap][8]: the 4 channel weights twice (two conv columns)
            dst.resize(9 * 8);
            for (int tap = 0; tap < 9; ++tap) {
                for (int k = 0; k < 8; ++k) dst[tap * 8 + k] = taps[tap * 4 + (k % 4)];
            }
        } else {
            dst = taps;
        }
    }
    m.b[0] = zero_padded(b1, c1p);
    for (int l = 1; l < kLayers; ++l) {
        const int cout = m.width[l], cin = m.width[l - 1], cp = m.padded[l], blk = m.geom[l].block;
        if (use_bf16) {  // packed once here; the f32 layouts are not needed
            m.w16[l] = relayout_bf16(wt.conv_w[l], cout, cin, m.geom[l], false);
            m.wt16[l] = relayout_bf16(wt.conv_w[l], cout, cin, m.geom[l], true);
        } else {
            m.w[l] = relayout(wt.conv_w[l], cout, cin, cp, blk, false);
            m.wt[l] = relayout(wt.conv_w[l], cout, cin, cp, blk, true);
        }
        m.b[l] = zero_padded(wt.conv_b[l], cp);
    }
    m.scale = wt.input_scale;
    m.offset = wt.input_offset - wt.pad_value;  // v = u - pad: zero outside the patch

    // FC1: columns from NCHW flatten order to the engine's padded NHWC order, blocked by 8
    // outputs; hidden padded to a multiple of 8 (zero rows, zero bias: ReLU(0) = 0, and FC2's
    // weights for them are zero).
    const int c5p = m.padded[4];
    const int hidden_p = (hidden + 7) / 8 * 8;
    m.hidden = hidden_p;
    m.k_fc = c5p * s5 * s5;
    if (use_bf16) {  // [hidden/8][k_fc/2][8][2]: the two inputs of a pair side by side
        m.fc1_16.assign(static_cast<std::size_t>(hidden_p) * m.k_fc, 0);
    } else {
        m.fc1.assign(static_cast<std::size_t>(hidden_p) * m.k_fc, 0.f);
    }
    for (int o = 0; o < hidden; ++o) {
        for (int c = 0; c < c5; ++c) {
            for (int yx = 0; yx < s5 * s5; ++yx) {
                const int k_nhwc = yx * c5p + c, k_nchw = c * s5 * s5 + yx;
                const float v = wt.fc1_w[static_cast<std::size_t>(o) * k_real + k_nchw];
                const std::size_t blk = static_cast<std::size_t>(o / 8) * m.k_fc;
                if (use_bf16) {
                    m.fc1_16[(blk + k_nhwc / 2 * 2) * 8 + (o % 8) * 2 + k_nhwc % 2] = to_bf16(v);
                } else {
                    m.fc1[(blk + k_nhwc) * 8 + o % 8] = v;
                }
            }
        }
    }
    m.fc_inputs.clear();
    m.fc_pairs.clear();
    for (int yx = 0; yx < s5 * s5; ++yx) {
        for (int c = 0; c < c5; ++c) m.fc_inputs.push_back(yx * c5p + c);
        for (int c = 0; c < c5; c += 2) m.fc_pairs.push_back((yx * c5p + c) / 2);
    }
    for (auto& sc : m.scratch) sc.ks.reserve(m.fc_inputs.size());
    m.fc1_b = zero_padded(wt.fc1_b, hidden_p);
    m.classes = static_cast<int>(wt.fc2_b.size());
    m.fc2.assign(static_cast<std::size_t>(m.classes) * hidden_p, 0.f);
    for (int k = 0; k < m.classes; ++k) {
        std::copy_n(wt.fc2_w.begin() + static_cast<std::ptrdiff_t>(k) * hidden, hidden,
                    m.fc2.begin() + static_cast<std::ptrdiff_t>(k) * hidden_p);
    }
    m.fc2_b = wt.fc2_b;
}

StudentEngine::~StudentEngine() = default;

int StudentEngine::num_classes() const { return impl_->classes; }
int StudentEngine::threads() const { return impl_->team.size(); }
bool StudentEngine::last_shared() const { return impl_->shared; }
const char* StudentEngine::isa() const { return impl_->isa; }
const char* StudentEngine::precision() const { return impl_->bf16 ? "bf16" : "f32"; }

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
    if (m.bf16) {
        m.x_fc16.resize(n * static_cast<std::size_t>(m.k_fc));
    } else {
        m.x_fc.resize(n * static_cast<std::size_t>(m.k_fc));
    }
    m.y_fc.resize(n * static_cast<std::size_t>(m.hidden));
    m.times = StudentTimes{};
    const auto t0 = Clock::now();
    if (m.shared) {
        m.ux0 = ux0;
        m.uy0 = uy0;
        m.full[0].h = uy1 - uy0;  // level 0 is the frame region itself (not stored)
        m.full[0].w = ux1 - ux0;
        for (int level = 1; level <= 4; ++level) {
            m.full[level].init((uy1 - uy0) >> level, (ux1 - ux0) >> level, m.padded[level - 1],
                               m.bf16);
        }
        m.rings.resize(n * kLayers);
        for (std::size_t p = 0; p < n; ++p) {
            for (int level = 1; level <= 4; ++level) {
                m.rings[p * kLayers + level].init(kPatch >> level, m.padded[level - 1], m.bf16);
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

std::vector<std::string> student_kernel_precisions() {
    std::vector<std::string> out;
    if (!student_engine_supported()) return out;
    out.emplace_back("f32");
    if (cpu_has_bf16()) out.emplace_back("bf16");
    return out;
}

std::vector<std::string> student_kernel_isas() {
    std::vector<std::string> out;
    if (!student_engine_supported()) return out;
    out.emplace_back("avx2");
    if (cpu_has_avx512f()) out.emplace_back("avx512f");
    return out;
}

}  // namespace pyinspect
