#include "tiling.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "tile_kernel.hpp"

namespace pyinspect {

std::uint16_t float_to_half(float value) { return detail::half_bits(value); }

namespace detail::baseline {
namespace {
inline void store_half(std::uint16_t* __restrict dst, const float* __restrict src,
                       std::int64_t n) {
    for (std::int64_t x = 0; x < n; ++x) dst[x] = half_bits(src[x]);
}
}  // namespace
#define PYINSPECT_STORE_HALF store_half
#include "tile_kernel.inl"
#undef PYINSPECT_STORE_HALF

namespace {

// One 256-entry table per output channel holding v * scale + offset (as float32 or as float16
// bits): the same bits as the arithmetic, one load per pixel.
template <typename T>
void run_rows_table(const KernelArgs& a, const T (*table)[256], std::int64_t row_begin,
                    std::int64_t row_end) {
    const FrameView& f = a.frame;
    const std::int64_t p = a.patch, plane = p * p, sx = f.stride_x;
    const int oc = a.out_channels;
    std::int64_t channel_offset[3] = {0, 0, 0};  // gray: every output channel reads channel 0
    if (f.channels != 1) {  // BGR(A) -> RGB
        channel_offset[0] = 2 * f.stride_c;
        channel_offset[1] = f.stride_c;
    }
    for (std::int64_t r = row_begin; r < row_end; ++r) {
        const std::int64_t i = r / p, y = r - i * p;
        const Box& b = a.boxes[i];
        const std::uint8_t* src = f.data + (b.y + y) * f.stride_y + b.x * sx;
        T* row = static_cast<T*>(a.out) + i * oc * plane + y * p;
        for (int c = 0; c < oc; ++c) {
            const std::uint8_t* s = src + channel_offset[c];
            const T* t = table[c];
            T* d = row + c * plane;
            for (std::int64_t x = 0; x < p; ++x) d[x] = t[s[x * sx]];
        }
    }
}

}  // namespace

// Without AVX2 a table wins for float16 (no fast vector float -> half) and for BGR(A) input
// (SSE2 has no byte shuffle to de-interleave); the arithmetic wins for gray -> float32. Luma
// mixes three channels, so it always computes. Numbers: benchmarks/tiling_lut_vs_affine.cpp.
void run_rows(const KernelArgs& a, std::int64_t row_begin, std::int64_t row_end) {
    const bool luma = a.frame.channels != 1 && a.out_channels == 1;
    const bool fp16 = a.dtype == OutDType::Float16;
    // uint16 (gray only) always computes: a 65536-entry table per channel would not stay cached.
    if (luma || (!fp16 && a.frame.channels == 1) || a.frame.pixel == PixelType::UInt16) {
        run_rows_affine(a, row_begin, row_end);
        return;
    }
    float table[3][256];
    for (int c = 0; c < a.out_channels; ++c) {
        for (int v = 0; v < 256; ++v) {
            table[c][v] = static_cast<float>(v) * a.scale[c] + a.offset[c];
        }
    }
    if (!fp16) {
        run_rows_table<float>(a, table, row_begin, row_end);
        return;
    }
    std::uint16_t half_table[3][256];
    for (int c = 0; c < a.out_channels; ++c) {
        for (int v = 0; v < 256; ++v) half_table[c][v] = half_bits(table[c][v]);
    }
    run_rows_table<std::uint16_t>(a, half_table, row_begin, row_end);
}

}  // namespace detail::baseline

namespace {

using RunRows = void (*)(const detail::KernelArgs&, std::int64_t, std::int64_t);

struct Kernel {
    RunRows run;
    const char* isa;
};

// PYINSPECT_TILE_ISA=baseline forces the portable path (tests compare both paths on one CPU).
Kernel pick_kernel() {
#if defined(PYINSPECT_HAVE_AVX2)
    const char* forced = std::getenv("PYINSPECT_TILE_ISA");
    const bool baseline_only = forced != nullptr && std::strcmp(forced, "baseline") == 0;
    __builtin_cpu_init();
    if (!baseline_only && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c")) {
        return {&detail::avx2::run_rows, "avx2+f16c"};
    }
#endif
    return {&detail::baseline::run_rows, "baseline"};
}

const Kernel& kernel() {
    static const Kernel k = pick_kernel();
    return k;
}

[[noreturn]] void fail(const std::string& msg) { throw std::invalid_argument(msg); }

// Shortest readable form of a number for messages ("1e-40", "0.5", "nan"), unlike to_string.
std::string num(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", v);
    return buf;
}

std::string shape_str(std::initializer_list<std::int64_t> dims) {
    std::string s = "(";
    bool first = true;
    for (std::int64_t d : dims) {
        if (!first) s += ", ";
        s += std::to_string(d);
        first = false;
    }
    return s + ")";
}

std::string box_str(const Box& b) {
    return "(x=" + std::to_string(b.x) + ", y=" + std::to_string(b.y) + ", w=" +
           std::to_string(b.w) + ", h=" + std::to_string(b.h) + ")";
}

// Work is counted in units of one output element plus one input byte per channel read: about
// 70 ps each on one 2.4 GHz Zen 3 core (AVX2 path). Starting and joining a std::thread cost
// 60-100 us on the shared 2-core VM this was measured on (benchmarks/tiling.py), and there a
// second thread never paid for the DAGM frame (9 x 224^2 patches: 1.8M units gray -> 3 channels,
// 2.7M BGR -> 3 channels). So auto adds a thread only from 3M units (larger frames or grids).
constexpr std::int64_t kUnitsPerExtraThread = 3000000;

// Grids beyond this many patches (per axis, and in all) are refused, not allocated: 2^20 patches
// of 224 px cover a 230k x 230k frame, while a hostile size (a 2^31-pixel broadcast view with
// patch 1) would otherwise ask for tens of GB and be killed by the OOM killer.
constexpr std::int64_t kMaxPatches = std::int64_t{1} << 20;

}  // namespace

std::vector<std::int32_t> axis_positions(std::int64_t length, std::int64_t patch,
                                         std::int64_t count) {
    if (patch < 1) fail("patch size must be >= 1, got " + std::to_string(patch));
    if (length < patch) {
        fail("image size " + std::to_string(length) + " is smaller than the patch size " +
             std::to_string(patch) + " (patches are never resized)");
    }
    if (length > INT32_MAX) fail("image size " + std::to_string(length) + " is too large");
    if (count < 0) fail("patch count must be >= 0 (0 = auto), got " + std::to_string(count));
    const std::int64_t span = length - patch;
    const std::int64_t needed = span == 0 ? 1 : 1 + (span + patch - 1) / patch;
    if (count == 0) count = needed;
    if (count < needed) {
        fail(std::to_string(count) + " patches of " + std::to_string(patch) +
             " px leave gaps along " + std::to_string(length) + " px; at least " +
             std::to_string(needed) + " are needed");
    }
    if (count > length) {
        fail("patch count " + std::to_string(count) + " exceeds the image size " +
             std::to_string(length));
    }
    if (count > kMaxPatches) {
        fail(std::to_string(count) + " patches along one axis exceed the limit of " +
             std::to_string(kMaxPatches) + " (use a larger patch or a smaller frame)");
    }
    std::vector<std::int32_t> pos(static_cast<std::size_t>(count), 0);
    if (count == 1) return pos;
    const std::int64_t gaps = count - 1;
    for (std::int64_t i = 0; i < count; ++i) {
        // round_half_up(i * span / gaps) in exact integer arithmetic
        pos[static_cast<std::size_t>(i)] =
            static_cast<std::int32_t>((2 * i * span + gaps) / (2 * gaps));
    }
    return pos;
}

std::vector<Box> patch_grid(std::int64_t height, std::int64_t width, std::int64_t patch,
                            std::int64_t rows, std::int64_t cols) {
    const std::vector<std::int32_t> ys = axis_positions(height, patch, rows);
    const std::vector<std::int32_t> xs = axis_positions(width, patch, cols);
    const auto n = static_cast<std::int64_t>(ys.size()) * static_cast<std::int64_t>(xs.size());
    if (n > kMaxPatches) {
        fail("a grid of " + std::to_string(ys.size()) + " x " + std::to_string(xs.size()) +
             " patches exceeds the limit of " + std::to_string(kMaxPatches) +
             " (use a larger patch or a smaller frame)");
    }
    std::vector<Box> boxes;
    boxes.reserve(ys.size() * xs.size());
    const auto p = static_cast<std::int32_t>(patch);
    for (std::int32_t y : ys) {
        for (std::int32_t x : xs) boxes.push_back(Box{x, y, p, p});
    }
    return boxes;
}

int resolve_threads(const FrameView& frame, const OutView& out, int threads) {
    if (threads < 0) fail("threads must be >= 0 (0 = auto), got " + std::to_string(threads));
    const std::int64_t rows = out.n * out.patch;
    std::int64_t t = threads;
    if (t == 0) {
        const std::int64_t read = frame.channels == 1 ? 1 : 3;
        const std::int64_t units = rows * out.patch * (out.channels + read);
        // hardware_concurrency() reads /sys on Linux (tens of microseconds): ask once.
        static const std::int64_t hw =
            std::max<std::int64_t>(1, std::thread::hardware_concurrency());
        t = std::min<std::int64_t>({2, hw, 1 + units / kUnitsPerExtraThread});
    }
    return static_cast<int>(std::max<std::int64_t>(1, std::min(t, rows)));
}

void tile_into(const FrameView& frame, const OutView& out, const Box* boxes, std::size_t n_boxes,
               const std::vector<double>& mean, const std::vector<double>& std,
               int threads, double max_value) {
    if (frame.channels != 1 && frame.channels != 3 && frame.channels != 4) {
        fail("frame must have 1 (gray), 3 (BGR) or 4 (BGRA) channels, got " +
             std::to_string(frame.channels));
    }
    if (frame.height < 0 || frame.width < 0) fail("frame has a negative size");
    if (frame.pixel == PixelType::UInt16) {
        if (frame.channels != 1) {
            fail("a uint16 frame must be gray (H x W or H x W x 1), got " +
                 std::to_string(frame.height) + " x " + std::to_string(frame.width) + " x " +
                 std::to_string(frame.channels) + " (colour frames must be uint8)");
        }
        if (!(max_value >= 256.0 && max_value <= 65535.0)) {
            fail("max_value of a uint16 frame must be 2^bits - 1 in [256, 65535] (1023, 4095, "
                 "65535 for 10, 12, 16 bits), got " + num(max_value));
        }
    } else if (max_value != 255.0) {
        fail("max_value " + num(max_value) +
             " does not fit a uint8 frame: 8-bit pixels are normalised by 255 (frames of more "
             "bits are uint16)");
    }
    if (out.channels != 1 && out.channels != 3) {
        fail("out must have 1 or 3 channels (axis 1), got " + std::to_string(out.channels));
    }
    if (out.n != static_cast<std::int64_t>(n_boxes)) {
        fail("out has " + std::to_string(out.n) + " patches (axis 0) but there are " +
             std::to_string(n_boxes) + " boxes");
    }
    if (mean.size() != static_cast<std::size_t>(out.channels) ||
        std.size() != static_cast<std::size_t>(out.channels)) {
        fail("mean and std need " + std::to_string(out.channels) +
             " values (one per output channel), got " + std::to_string(mean.size()) + " and " +
             std::to_string(std.size()));
    }
    detail::KernelArgs args{frame, out.data, out.dtype, out.patch, static_cast<int>(out.channels),
                            boxes, {0.f, 0.f, 0.f}, {0.f, 0.f, 0.f}};
    for (std::size_t c = 0; c < mean.size(); ++c) {
        const double m = mean[c], s = std[c];
        if (!std::isfinite(m) || !std::isfinite(s) || s == 0.0) {
            fail("mean and std must be finite and std non-zero; channel " + std::to_string(c) +
                 " has mean " + num(m) + ", std " + num(s));
        }
        args.scale[c] = static_cast<float>(1.0 / (max_value * s));  // uint8: 1 / (255 s)
        args.offset[c] = static_cast<float>(-m / s);
        if (!std::isfinite(args.scale[c]) || !std::isfinite(args.offset[c])) {
            fail("std of channel " + std::to_string(c) + " is too small (" + num(s) + "): 1 / (" +
                 num(max_value) + " std) or mean / std overflows float32");
        }
    }
    for (std::size_t i = 0; i < n_boxes; ++i) {
        const Box& b = boxes[i];
        if (b.w != out.patch || b.h != out.patch) {
            fail("box " + std::to_string(i) + " " + box_str(b) + " is not " +
                 std::to_string(out.patch) + "x" + std::to_string(out.patch) +
                 ", the patch size of out " +
                 shape_str({out.n, out.channels, out.patch, out.patch}));
        }
        if (b.x < 0 || b.y < 0 || static_cast<std::int64_t>(b.x) + b.w > frame.width ||
            static_cast<std::int64_t>(b.y) + b.h > frame.height) {
            fail("box " + std::to_string(i) + " " + box_str(b) + " lies outside the frame of " +
                 std::to_string(frame.height) + "x" + std::to_string(frame.width) + " (HxW)");
        }
    }
    const std::int64_t rows = out.n * out.patch;
    if (rows == 0) return;
    const int t = resolve_threads(frame, out, threads);
    const RunRows run = kernel().run;
    if (t == 1) {
        run(args, 0, rows);
        return;
    }
    std::vector<std::thread> workers;
    workers.reserve(static_cast<std::size_t>(t - 1));
    std::int64_t started = 0;  // rows [0, started) are handed to workers
    try {
        for (int k = 1; k < t; ++k) {
            const std::int64_t begin = rows * (k - 1) / t, end = rows * k / t;
            workers.emplace_back(run, std::cref(args), begin, end);
            started = end;
        }
    } catch (const std::system_error&) {
        // No thread available: the calling thread does the rest.
    }
    run(args, started, rows);
    for (std::thread& w : workers) w.join();
}

const char* tile_kernel_isa() { return kernel().isa; }

}  // namespace pyinspect
