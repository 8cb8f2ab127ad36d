// The student engine's kernels, compiled with -mavx2 -mfma (this file only; CMakeLists.txt).
// Called from student_engine.cpp only after student_engine_supported().
//
// Everything here is either in the anonymous namespace or a named entry point of
// pyinspect::student::avx2, and no standard-library template or inline function is used: the
// linker keeps one copy of each such function for the whole module, and an AVX2 copy would then
// also run for the baseline code (tiling, voting, the bindings) on a CPU without AVX2.
// The multiply-adds are explicit _mm*_fmadd_ps; every other product and sum is rounded on its own
// (-ffp-contract=off), so results are the same on every AVX2 CPU.
#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "student_kernels.hpp"

namespace pyinspect::student::avx2 {
namespace {

constexpr std::ptrdiff_t min_index(std::ptrdiff_t a, std::ptrdiff_t b) { return b < a ? b : a; }

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
void row_conv1(const float* const rows[4], int wout, const float* w, const float* b, float* out,
               const ConvGeom&) {
    const __m128 bias = _mm_loadu_ps(b);
    if (wout < 4) {
        for (int j = 0; j < wout; ++j) conv1_step<1>(rows, j, w, bias, out);
        return;
    }
    for (std::ptrdiff_t j = 0; j < wout; j += 4) {
        conv1_step<4>(rows, min_index(j, wout - 4), w, bias, out);
    }
}

// One vector of output channels: 8 (__m256) or 4 (__m128).
struct Lanes8 {
    using V = __m256;
    static constexpr int kLanes = 8;
    static V zero() { return _mm256_setzero_ps(); }
    static V load(const float* p) { return _mm256_loadu_ps(p); }
    static V bcast(const float* p) { return _mm256_broadcast_ss(p); }
    static V fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
    static V max(V a, V b) { return _mm256_max_ps(a, b); }
    static V add(V a, V b) { return _mm256_add_ps(a, b); }
    static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
};

struct Lanes4 {
    using V = __m128;
    static constexpr int kLanes = 4;
    static V zero() { return _mm_setzero_ps(); }
    static V load(const float* p) { return _mm_loadu_ps(p); }
    static V bcast(const float* p) { return _mm_broadcast_ss(p); }
    static V fmadd(V a, V b, V c) { return _mm_fmadd_ps(a, b, c); }
    static V max(V a, V b) { return _mm_max_ps(a, b); }
    static V add(V a, V b) { return _mm_add_ps(a, b); }
    static void store(float* p, V v) { _mm_storeu_ps(p, v); }
};

// Every kernel below sums, per output value, over taps (ky, kx) and then input channels in that
// order, so a kernel with the channel count compiled in and one with it at run time give the same
// bits. CIN > 0: cin = in_stride = CIN (the loops unroll); CIN == 0: both from the arguments.

// The 4 conv pixels (2 rows x 2 columns) under pooled pixel j, accumulated over taps and input
// channels: acc[2a] is conv row a, column 2j; acc[2a + 1] column 2j + 1.
template <class L, int CIN>
inline void pool_window(const float* const rows[4], std::ptrdiff_t j, const float* w, int cin,
                        std::ptrdiff_t st, typename L::V acc[4]) {
    constexpr int C = L::kLanes;
    for (int ky = 0; ky < 3; ++ky) {
        for (int kx = 0; kx < 3; ++kx) {
            const float* wt = w + (ky * 3 + kx) * cin * C;
            for (int a = 0; a < 2; ++a) {
                const float* src = rows[a + ky] + (2 * j + kx) * st;
                for (int ci = 0; ci < cin; ++ci) {
                    const typename L::V wv = L::load(wt + ci * C);
                    acc[2 * a] = L::fmadd(L::bcast(src + ci), wv, acc[2 * a]);
                    acc[2 * a + 1] = L::fmadd(L::bcast(src + st + ci), wv, acc[2 * a + 1]);
                }
            }
        }
    }
}

// max of the 4 conv pixels, + bias, ReLU -> one pooled pixel.
template <class L>
inline void store_pooled(float* out, const typename L::V acc[4], typename L::V bias) {
    const typename L::V m = L::max(L::max(acc[0], acc[1]), L::max(acc[2], acc[3]));
    L::store(out, L::max(L::add(m, bias), L::zero()));
}

// One block of 8 or 4 output channels (one vector); w: [9][cin][C]. Two pooled pixels per step,
// interleaved so that the two windows' multiply-adds overlap, then one at a time for an odd end.
template <class L, int CIN>
void narrow_block(const float* const rows[4], int wout, const float* w, const float* b,
                  float* out, int cin_rt, int st_rt, int os) {
    constexpr int C = L::kLanes;
    using V = typename L::V;
    const int cin = CIN > 0 ? CIN : cin_rt;
    const std::ptrdiff_t st = CIN > 0 ? CIN : st_rt;
    const V bias = L::load(b), zero = L::zero();
    std::ptrdiff_t j = 0;
    for (; j + 2 <= wout; j += 2) {
        V acc[2][4];
        for (auto& q : acc) q[0] = q[1] = q[2] = q[3] = zero;
        for (int ky = 0; ky < 3; ++ky) {
            for (int kx = 0; kx < 3; ++kx) {
                const float* wt = w + (ky * 3 + kx) * cin * C;
                const float* s0 = rows[ky] + (2 * j + kx) * st;
                const float* s1 = rows[ky + 1] + (2 * j + kx) * st;
                for (int ci = 0; ci < cin; ++ci) {
                    const V wv = L::load(wt + ci * C);
                    for (int q = 0; q < 2; ++q) {
                        const std::ptrdiff_t o = 2 * q * st + ci;
                        acc[q][0] = L::fmadd(L::bcast(s0 + o), wv, acc[q][0]);
                        acc[q][1] = L::fmadd(L::bcast(s0 + o + st), wv, acc[q][1]);
                        acc[q][2] = L::fmadd(L::bcast(s1 + o), wv, acc[q][2]);
                        acc[q][3] = L::fmadd(L::bcast(s1 + o + st), wv, acc[q][3]);
                    }
                }
            }
        }
        for (int q = 0; q < 2; ++q) store_pooled<L>(out + os * (j + q), acc[q], bias);
    }
    for (; j < wout; ++j) {
        V acc[4] = {zero, zero, zero, zero};
        pool_window<L, CIN>(rows, j, w, cin, st, acc);
        store_pooled<L>(out + os * j, acc, bias);
    }
}

// One block of 16 output channels (two vectors); w: [9][cin][16]. One pooled pixel per step.
template <int CIN>
void wide_block(const float* const rows[4], int wout, const float* w, const float* b, float* out,
                int cin_rt, int st_rt, int os) {
    const int cin = CIN > 0 ? CIN : cin_rt;
    const std::ptrdiff_t st = CIN > 0 ? CIN : st_rt;
    const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8), zero = _mm256_setzero_ps();
    for (std::ptrdiff_t j = 0; j < wout; ++j) {
        __m256 acc[4][2];
        for (auto& p : acc) p[0] = p[1] = zero;
        for (int ky = 0; ky < 3; ++ky) {
            for (int kx = 0; kx < 3; ++kx) {
                const float* wt = w + (ky * 3 + kx) * cin * 16;
                const float* s0 = rows[ky] + (2 * j + kx) * st;
                const float* s1 = rows[ky + 1] + (2 * j + kx) * st;
                for (int ci = 0; ci < cin; ++ci) {
                    const __m256 w0 = _mm256_loadu_ps(wt + ci * 16);
                    const __m256 w1 = _mm256_loadu_ps(wt + ci * 16 + 8);
                    const __m256 x[4] = {
                        _mm256_broadcast_ss(s0 + ci), _mm256_broadcast_ss(s0 + st + ci),
                        _mm256_broadcast_ss(s1 + ci), _mm256_broadcast_ss(s1 + st + ci)};
                    for (int p = 0; p < 4; ++p) {
                        acc[p][0] = _mm256_fmadd_ps(x[p], w0, acc[p][0]);
                        acc[p][1] = _mm256_fmadd_ps(x[p], w1, acc[p][1]);
                    }
                }
            }
        }
        for (int h = 0; h < 2; ++h) {
            const __m256 m = _mm256_max_ps(_mm256_max_ps(acc[0][h], acc[1][h]),
                                           _mm256_max_ps(acc[2][h], acc[3][h]));
            _mm256_storeu_ps(out + os * j + 8 * h,
                             _mm256_max_ps(_mm256_add_ps(m, h ? b1 : b0), zero));
        }
    }
}

using BlockKernel = void (*)(const float* const rows[4], int wout, const float* w,
                             const float* b, float* out, int cin, int st, int os);

// A whole layer: the block kernel K over the out_stride / B blocks of B output channels.
template <BlockKernel K, int B>
void layer(const float* const rows[4], int wout, const float* w, const float* b, float* out,
           const ConvGeom& g) {
    const std::ptrdiff_t w_block = static_cast<std::ptrdiff_t>(9) * g.cin * B;
    for (int k = 0; k * B < g.out_stride; ++k) {
        K(rows, wout, w + k * w_block, b + k * B, out + k * B, g.cin, g.in_stride, g.out_stride);
    }
}

// The layer kernel for block width B (4, 8, 16) and input channel count CIN (0: run time).
template <int CIN>
RowKernel layer_for(int block) {
    if (block == 16) return layer<wide_block<CIN>, 16>;
    if (block == 8) return layer<narrow_block<Lanes8, CIN>, 8>;
    return layer<narrow_block<Lanes4, CIN>, 4>;
}

// How far ahead FC1 prefetches its weights (bytes). The weight stream is read once per frame
// (25.7 MB for C5 = 32 and 4096 outputs, more than the caches keep between frames), at 32 bytes
// per 9 multiply-adds, which the hardware prefetcher alone does not keep up with
// (docs/fast_cpu.md).
constexpr std::uintptr_t kFcPrefetch = 4096;

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
            // an address, not a pointer into the array: past the end it is only a hint (a
            // prefetch never faults)
            _mm_prefetch(reinterpret_cast<const char*>(
                             reinterpret_cast<std::uintptr_t>(wp + k * 8) + kFcPrefetch),
                         _MM_HINT_T0);
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

}  // namespace

RowKernel row_kernel(const ConvGeom& g, bool dup4) {
    if (dup4) return row_conv1;
    if (g.cin == g.in_stride) {  // the channel counts of the family's usual widths, compiled in
        switch (g.cin) {
            case 1: return layer_for<1>(g.block);
            case 4: return layer_for<4>(g.block);
            case 8: return layer_for<8>(g.block);
            case 16: return layer_for<16>(g.block);
            default: break;
        }
    }
    return layer_for<0>(g.block);
}

const Fc1Kernel kFc1[kFcRows + 1] = {nullptr,         fc1_block<1>,  fc1_block<2>,  fc1_block<3>,
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

void plain_row(const std::uint8_t* src, std::int64_t step, int n, float scale, float offset,
               float* dst) {
    dst[0] = dst[n + 1] = 0.f;
    float* d = dst + 1;
    int c = 0;
    if (step == 1) {
        const __m256 vs = _mm256_set1_ps(scale), vo = _mm256_set1_ps(offset);
        for (; c + 8 <= n; c += 8) {
            const __m128i px = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(src + c));
            _mm256_storeu_ps(d + c, _mm256_add_ps(
                _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(px)), vs), vo));
        }
    }
    for (; c < n; ++c) d[c] = static_cast<float>(src[c * step]) * scale + offset;
}

namespace {

inline float load_u16(const std::uint8_t* p) {
    std::uint16_t v;
    std::memcpy(&v, p, sizeof v);
    return static_cast<float>(v);
}

// 8 contiguous uint16 pixels -> 8 floats x * scale + offset (product and sum rounded separately).
inline __m256 convert8_u16(const std::uint8_t* p, __m256 vs, __m256 vo) {
    const __m128i px = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu16_epi32(px)), vs), vo);
}

}  // namespace

void dup4_row_u16(const std::uint8_t* src, std::int64_t step, int n, float scale, float offset,
                  float* dst) {
    std::memset(dst, 0, 4 * sizeof(float));
    std::memset(dst + 4 * (n + 1), 0, 4 * sizeof(float));
    float* d = dst + 4;
    int c = 0;
    if (step == 2) {
        const __m256 vs = _mm256_set1_ps(scale), vo = _mm256_set1_ps(offset);
        const __m256i i0 = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
        const __m256i i1 = _mm256_setr_epi32(2, 2, 2, 2, 3, 3, 3, 3);
        const __m256i i2 = _mm256_setr_epi32(4, 4, 4, 4, 5, 5, 5, 5);
        const __m256i i3 = _mm256_setr_epi32(6, 6, 6, 6, 7, 7, 7, 7);
        for (; c + 8 <= n; c += 8) {
            const __m256 v = convert8_u16(src + 2 * c, vs, vo);
            _mm256_storeu_ps(d + 4 * c, _mm256_permutevar8x32_ps(v, i0));
            _mm256_storeu_ps(d + 4 * c + 8, _mm256_permutevar8x32_ps(v, i1));
            _mm256_storeu_ps(d + 4 * c + 16, _mm256_permutevar8x32_ps(v, i2));
            _mm256_storeu_ps(d + 4 * c + 24, _mm256_permutevar8x32_ps(v, i3));
        }
    }
    for (; c < n; ++c) {
        const float v = load_u16(src + c * step) * scale + offset;  // -ffp-contract=off
        d[4 * c] = d[4 * c + 1] = d[4 * c + 2] = d[4 * c + 3] = v;
    }
}

void plain_row_u16(const std::uint8_t* src, std::int64_t step, int n, float scale, float offset,
                   float* dst) {
    dst[0] = dst[n + 1] = 0.f;
    float* d = dst + 1;
    int c = 0;
    if (step == 2) {
        const __m256 vs = _mm256_set1_ps(scale), vo = _mm256_set1_ps(offset);
        for (; c + 8 <= n; c += 8) _mm256_storeu_ps(d + c, convert8_u16(src + 2 * c, vs, vo));
    }
    for (; c < n; ++c) d[c] = load_u16(src + c * step) * scale + offset;
}

}  // namespace pyinspect::student::avx2
