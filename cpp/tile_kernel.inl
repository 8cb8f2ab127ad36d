// The tiling kernel body, compiled once per CPU code path: tiling.cpp includes it for the baseline
// ISA and tiling_avx2.cpp for AVX2+F16C (selected at run time). Plain loops the compiler
// vectorises; no std containers or other templates that could be emitted as shared weak symbols
// with the wrong ISA. Include it inside namespace pyinspect::detail::<isa> after defining
// PYINSPECT_STORE_HALF (a function `void (std::uint16_t*, const float*, std::int64_t)`); it
// defines run_rows_affine, and the including file defines run_rows on top of it.

namespace {

// Source strides known at compile time (1 = contiguous gray, 3 = BGR, 4 = BGRA; 0 = read them at
// run time) let the compiler turn the gathers into shuffles.
template <int kStride>
inline std::int64_t stride_or(std::int64_t runtime) {
    return kStride != 0 ? kStride : runtime;
}

// uint8 gray -> one or three normalised channels.
template <int kStride>
void gray_row(const std::uint8_t* __restrict src, std::int64_t sx, std::int64_t n,
              const float* scale, const float* offset, int out_ch, float* __restrict d0,
              float* __restrict d1, float* __restrict d2) {
    const std::int64_t step = stride_or<kStride>(sx);
    if (out_ch == 1) {
        const float s0 = scale[0], o0 = offset[0];
        for (std::int64_t x = 0; x < n; ++x) d0[x] = static_cast<float>(src[x * step]) * s0 + o0;
        return;
    }
    const float s0 = scale[0], s1 = scale[1], s2 = scale[2];
    const float o0 = offset[0], o1 = offset[1], o2 = offset[2];
    for (std::int64_t x = 0; x < n; ++x) {
        const float v = static_cast<float>(src[x * step]);
        d0[x] = v * s0 + o0;
        d1[x] = v * s1 + o1;
        d2[x] = v * s2 + o2;
    }
}

// BGR(A) -> RGB planes.
template <int kStride>
void rgb_row(const std::uint8_t* __restrict src, std::int64_t sx, std::int64_t sc, std::int64_t n,
             const float* scale, const float* offset, float* __restrict d0, float* __restrict d1,
             float* __restrict d2) {
    const std::int64_t step = stride_or<kStride>(sx);
    const std::int64_t cs = kStride != 0 ? 1 : sc;
    const float s0 = scale[0], s1 = scale[1], s2 = scale[2];
    const float o0 = offset[0], o1 = offset[1], o2 = offset[2];
    for (std::int64_t x = 0; x < n; ++x) {
        const std::uint8_t* p = src + x * step;
        d0[x] = static_cast<float>(p[2 * cs]) * s0 + o0;
        d1[x] = static_cast<float>(p[cs]) * s1 + o1;
        d2[x] = static_cast<float>(p[0]) * s2 + o2;
    }
}

// BGR(A) -> luma -> one normalised channel.
template <int kStride>
void luma_row(const std::uint8_t* __restrict src, std::int64_t sx, std::int64_t sc, std::int64_t n,
              float s0, float o0, float* __restrict d0) {
    const std::int64_t step = stride_or<kStride>(sx);
    const std::int64_t cs = kStride != 0 ? 1 : sc;
    for (std::int64_t x = 0; x < n; ++x) {
        const std::uint8_t* p = src + x * step;
        const float luma = (0.299f * static_cast<float>(p[2 * cs]) +
                            0.587f * static_cast<float>(p[cs])) +
                           0.114f * static_cast<float>(p[0]);
        d0[x] = luma * s0 + o0;
    }
}

template <int kStride>
void any_row(const KernelArgs& a, const std::uint8_t* src, std::int64_t n, float* d0, float* d1,
             float* d2) {
    const FrameView& f = a.frame;
    if (f.channels == 1) {
        gray_row<kStride>(src, f.stride_x, n, a.scale, a.offset, a.out_channels, d0, d1, d2);
    } else if (a.out_channels == 3) {
        rgb_row<kStride>(src, f.stride_x, f.stride_c, n, a.scale, a.offset, d0, d1, d2);
    } else {
        luma_row<kStride>(src, f.stride_x, f.stride_c, n, a.scale[0], a.offset[0], d0);
    }
}

// A uint16 pixel at any byte address (memcpy: one plain load, no alignment assumed).
inline float load_u16(const std::uint8_t* p) {
    std::uint16_t v;
    std::memcpy(&v, p, sizeof v);
    return static_cast<float>(v);
}

// uint16 gray (10- to 16-bit cameras) -> one or three normalised channels; kStride and sx are
// in bytes (2 = contiguous). Values above max_value are not clipped.
template <int kStride>
void gray16_row(const KernelArgs& a, const std::uint8_t* __restrict src, std::int64_t n,
                float* __restrict d0, float* __restrict d1, float* __restrict d2) {
    const std::int64_t step = stride_or<kStride>(a.frame.stride_x);
    if (a.out_channels == 1) {
        const float s0 = a.scale[0], o0 = a.offset[0];
        for (std::int64_t x = 0; x < n; ++x) d0[x] = load_u16(src + x * step) * s0 + o0;
        return;
    }
    const float s0 = a.scale[0], s1 = a.scale[1], s2 = a.scale[2];
    const float o0 = a.offset[0], o1 = a.offset[1], o2 = a.offset[2];
    for (std::int64_t x = 0; x < n; ++x) {
        const float v = load_u16(src + x * step);
        d0[x] = v * s0 + o0;
        d1[x] = v * s1 + o1;
        d2[x] = v * s2 + o2;
    }
}

// Picks the compile-time stride once per call.
using RowFn = void (*)(const KernelArgs&, const std::uint8_t*, std::int64_t, float*, float*,
                       float*);

RowFn pick_row(const FrameView& f) {
    if (f.pixel == PixelType::UInt16) return f.stride_x == 2 ? &gray16_row<2> : &gray16_row<0>;
    if (f.channels == 1 && f.stride_x == 1) return &any_row<1>;
    if (f.channels == 3 && f.stride_x == 3 && f.stride_c == 1) return &any_row<3>;
    if (f.channels == 4 && f.stride_x == 4 && f.stride_c == 1) return &any_row<4>;
    return &any_row<0>;
}

}  // namespace

// v * scale + offset per pixel, vectorised by the compiler.
void run_rows_affine(const KernelArgs& a, std::int64_t row_begin, std::int64_t row_end) {
    const RowFn row = pick_row(a.frame);
    const std::int64_t p = a.patch;
    const std::int64_t plane = p * p;
    const int oc = a.out_channels;
    constexpr std::int64_t kChunk = 256;
    float tmp[3][kChunk];
    for (std::int64_t r = row_begin; r < row_end; ++r) {
        const std::int64_t i = r / p;
        const std::int64_t y = r - i * p;
        const Box& b = a.boxes[i];
        const std::uint8_t* src = a.frame.data + (b.y + y) * a.frame.stride_y +
                                  static_cast<std::int64_t>(b.x) * a.frame.stride_x;
        const std::int64_t base = i * oc * plane + y * p;  // element index of (i, 0, y, 0)
        if (a.dtype == OutDType::Float32) {
            float* d = static_cast<float*>(a.out) + base;
            row(a, src, p, d, d + plane, d + 2 * plane);
            continue;
        }
        std::uint16_t* d = static_cast<std::uint16_t*>(a.out) + base;
        for (std::int64_t x0 = 0; x0 < p; x0 += kChunk) {
            const std::int64_t n = p - x0 < kChunk ? p - x0 : kChunk;
            row(a, src + x0 * a.frame.stride_x, n, tmp[0], tmp[1], tmp[2]);
            for (int c = 0; c < oc; ++c) PYINSPECT_STORE_HALF(d + c * plane + x0, tmp[c], n);
        }
    }
}
