// See student_engine.hpp for what this computes and why the shared computation is exact.
// The orchestration (geometry, task plan, weight layouts) is baseline x86-64 code; the arithmetic
// is in student_kernels_avx2.cpp and, for the layers it covers, student_kernels_avx512.cpp, each
// called only once the constructor has checked that the CPU has its level. Python:
// pyinspect/runners/student.py; tests: tests/test_runner_student.py, tests/test_student_isa.py.
#include "student_engine.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <string>
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

[[noreturn]] void bad(const std::string& msg) { throw std::invalid_argument(msg); }

constexpr int kPatch = StudentEngine::kPatch;
constexpr int kAlign = 16;  // offsets must be multiples of 2^4 to share conv1..conv4

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
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
    // weights in kernel layouts
    std::vector<float> w[kLayers], wt[kLayers], b[kLayers];  // wt: spatially transposed taps
    float scale = 1.f, offset = 0.f;                          // v = x * scale + offset
    int hidden = 0, classes = 0, k_fc = 0;  // hidden padded to a multiple of 8
    std::vector<float> fc1, fc1_b, fc2, fc2_b;
    std::vector<int> fc_inputs;  // the FC1 inputs of real (not padded) conv5 channels, ascending

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
        const int s = kPatch >> level, ch = padded[level - 1];
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

    // Layer 1 over a frame region (x0, y0, h, w), zero-padded outside it, rows [i0, i1) of out.
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
            kernel[0](rows, width / 2, w[0].data(), b[0].data(), out.px(i, 0), geom[0]);
        }
    }

    // Layers 2..5 over a padded map, rows [i0, i1) of out.
    void conv_rows(int layer, const Map& in, Map& out, int i0, int i1) {
        const float* rows[4];
        for (int i = i0; i < i1; ++i) {
            for (int t = 0; t < 4; ++t) rows[t] = in.row(2 * i - 1 + t);
            kernel[layer](rows, out.w, w[layer].data(), b[layer].data(), out.px(i, 0), geom[layer]);
        }
    }

    // One band (0 top, 1 bottom, 2 left, 3 right) of patch p at layer `layer` (0-based: conv1 =
    // 0): builds the 4 padded input rows (transposed for left/right) and writes the ring side.
    void band(int p, int layer, int side, Scratch& s) {
        const int s_in = kPatch >> layer, cin = layer == 0 ? conv1_rep : padded[layer - 1];
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
                convert_row(src, transposed ? frame.stride_y : frame.stride_x, s_in, dst);
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
        kernel[layer](rows, s_in / 2, wl, b[layer].data(), out, geom[layer]);
    }

    // conv5 (+ pool) of patch p from its level-4 map -> x_fc[p].
    void conv5(int p, const Map& m4) {
        const float* rows[4];
        const int s_out = kPatch >> 5;
        for (int i = 0; i < s_out; ++i) {
            for (int t = 0; t < 4; ++t) rows[t] = m4.row(2 * i - 1 + t);
            kernel[4](rows, s_out, w[4].data(), b[4].data(),
                      x_fc.data() + static_cast<std::size_t>(p) * k_fc + i * s_out * padded[4],
                      geom[4]);
        }
    }

    // FC1 for output blocks [ob0, ob1) (all patches), then FC2 for one patch: task bodies.
    void fc1_task(int ob0, int ob1, int tid) {
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
                m4.init(s4, s4, padded[3]);
                for (int r = 0; r < s4; ++r) patch_line(i, 4, r, false, m4.row(r));
                conv5(i, m4);
            } else {
                for (int level = 1; level <= 4; ++level) {
                    s.maps[level].init(kPatch >> level, kPatch >> level, padded[level - 1]);
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

}  // namespace

StudentEngine::StudentEngine(const StudentWeights& wt, int threads, KernelIsa isa) {
    if (!student_engine_supported()) bad("the student engine needs a CPU with AVX2 and FMA");
    const bool has512 = cpu_has_avx512f();
    if (isa == KernelIsa::Avx512f && !has512) {
        bad("kernel level avx512f needs a CPU with AVX-512F; this one runs avx2 only");
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
    }

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
        m.w[l] = relayout(wt.conv_w[l], cout, cin, cp, blk, false);
        m.wt[l] = relayout(wt.conv_w[l], cout, cin, cp, blk, true);
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
    m.fc1.assign(static_cast<std::size_t>(hidden_p) * m.k_fc, 0.f);
    for (int o = 0; o < hidden; ++o) {
        for (int c = 0; c < c5; ++c) {
            for (int yx = 0; yx < s5 * s5; ++yx) {
                const int k_nhwc = yx * c5p + c, k_nchw = c * s5 * s5 + yx;
                m.fc1[(static_cast<std::size_t>(o / 8) * m.k_fc + k_nhwc) * 8 + o % 8] =
                    wt.fc1_w[static_cast<std::size_t>(o) * k_real + k_nchw];
            }
        }
    }
    m.fc_inputs.clear();
    for (int yx = 0; yx < s5 * s5; ++yx) {
        for (int c = 0; c < c5; ++c) m.fc_inputs.push_back(yx * c5p + c);
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
            m.full[level].init((uy1 - uy0) >> level, (ux1 - ux0) >> level, m.padded[level - 1]);
        }
        m.rings.resize(n * kLayers);
        for (std::size_t p = 0; p < n; ++p) {
            for (int level = 1; level <= 4; ++level) {
                m.rings[p * kLayers + level].init(kPatch >> level, m.padded[level - 1]);
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

std::vector<std::string> student_kernel_isas() {
    std::vector<std::string> out;
    if (!student_engine_supported()) return out;
    out.emplace_back("avx2");
    if (cpu_has_avx512f()) out.emplace_back("avx512f");
    return out;
}

}  // namespace pyinspect
