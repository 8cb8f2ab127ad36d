// The student engine's bf16 level (precision "bf16"), compiled with -mavx512f -mavx512bf16
// -mavx512vl -mavx2 -mfma (this file only; CMakeLists.txt). student_engine.cpp calls it only on a
// CPU with AVX512-BF16 and AVX512VL (student_kernel_precisions()), for conv2..conv5 and FC1;
// conv1 (one input channel) and FC2 keep their f32 kernels, and conv1's output is rounded to
// bf16 here (round_row) before conv2 reads it.
//
// Every multiply-add is a bf16 dot product (_mm512_dpbf16_ps, and _mm256_dpbf16_ps for FC1's
// last block of 8 outputs): each f32 lane adds the products of one pair of input channels, so the
// pair dimension is always input channels (the weight layouts in student_kernels.hpp zero the
// missing ones). Accumulators are f32; the 2x2 max, bias and ReLU are applied in f32 and the
// pooled value is rounded to bf16 (nearest even) as it is stored. Per output value the sum runs
// over taps, then channel groups, in the same order in every kernel variant (main step, ragged
// end, single pixels), so a pixel's value does not depend on where in a row it lies, and the
// shared computation stays exact as in the f32 levels.
//
// Kernels, by the layer's output block (student_kernels.hpp has the weight layouts):
// - blocks of 16 (conv3 of the paper's student): one zmm = 16 output channels, each input pair
//   broadcast to every lane (32 multiply-adds per dot product);
// - blocks of 8 (conv2): lanes = 8 outputs x 2 pairs, a quad of input channels (64 bits)
//   broadcast, the two pair lanes added at the end;
// - blocks of 4 over 4-channel input (conv5): lanes = 4 outputs x 2 conv columns x 2 pairs, the
//   two columns' 4 channels in one 128-bit broadcast;
// - blocks of 4 over 8k-channel input (conv4): lanes = 4 outputs x 4 pairs, an octet of input
//   channels (128 bits) broadcast, the 4 pair lanes added at the end.
//
// As in the other levels, everything is in the anonymous namespace or a named entry point of
// pyinspect::student::bf16, and no standard-library template or inline function is used, so no
// AVX-512 copy of shared code can leak into the baseline parts of the module.
// GCC 12 warns that AVX-512 intrinsics use their own _mm512_undefined_*() passthrough
// uninitialised (GCC bug 105593, fixed in 13); off for this file only, as in the AVX-512F level.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "student_kernels.hpp"

namespace pyinspect::student::bf16 {
namespace {

using u16 = std::uint16_t;

constexpr std::ptrdiff_t min_index(std::ptrdiff_t a, std::ptrdiff_t b) { return b < a ? b : a; }

inline std::uint32_t load32(const u16* p) {
    std::uint32_t v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

inline std::uint64_t load64(const u16* p) {
    std::uint64_t v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

// One pair of bf16 values (2 input channels) in every lane.
inline __m512bh pair_all(const u16* p) {
    return (__m512bh)_mm512_set1_epi32(static_cast<int>(load32(p)));
}
// A quad (4 channels, 64 bits) in every pair of lanes.
inline __m512bh quad_all(const u16* p) {
    return (__m512bh)_mm512_set1_epi64(static_cast<long long>(load64(p)));
}
// 8 bf16 values (128 bits) in every 128-bit lane.
inline __m512bh octet_all(const u16* p) {
    return (__m512bh)_mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline __m512bh load_w(const u16* p) { return (__m512bh)_mm512_loadu_si512(p); }
inline __m512 dot(__m512 acc, __m512bh x, __m512bh w) { return _mm512_dpbf16_ps(acc, x, w); }

inline __m512 relu_bias(__m512 v, __m512 bias) {
    return _mm512_max_ps(_mm512_add_ps(v, bias), _mm512_setzero_ps());
}

// Element 0 (and, with `pairs`, element 1) of each 128-bit lane, in the low lanes.
inline __m512 lane_heads(__m512 v, bool pairs) {
    const __m512i one = _mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i two = _mm512_setr_epi32(0, 1, 4, 5, 8, 9, 12, 13, 0, 0, 0, 0, 0, 0, 0, 0);
    return _mm512_permutexvar_ps(pairs ? two : one, v);
}

// ---- blocks of 16 output channels --------------------------------------------------------------
// w: [9][groups][32] (lane = output channel, a pair of input channels per lane). NQ pooled pixels
// per step: 4 NQ accumulators (the 4 conv pixels under each), each input pair broadcast from
// memory into its dot product. NG > 0: the group count compiled in; 0: ng.
template <int NG, int NQ>
inline void block16_step(const u16* const rows[4], std::ptrdiff_t j, const u16* w, int ng_rt,
                         std::ptrdiff_t st, __m512 bias, u16* out, std::ptrdiff_t os) {
    const int ng = NG > 0 ? NG : ng_rt;
    __m512 acc[NQ][4];
    for (auto& q : acc) q[0] = q[1] = q[2] = q[3] = _mm512_setzero_ps();
    for (int ky = 0; ky < 3; ++ky) {
        for (int kx = 0; kx < 3; ++kx) {
            const u16* wt = w + (ky * 3 + kx) * ng * 32;
            for (int g = 0; g < ng; ++g) {
                const __m512bh wv = load_w(wt + g * 32);
                for (int q = 0; q < NQ; ++q) {
                    for (int a = 0; a < 2; ++a) {
                        const u16* src = rows[a + ky] + (2 * (j + q) + kx) * st + 2 * g;
                        acc[q][2 * a] = dot(acc[q][2 * a], pair_all(src), wv);
                        acc[q][2 * a + 1] = dot(acc[q][2 * a + 1], pair_all(src + st), wv);
                    }
                }
            }
        }
    }
    for (int q = 0; q < NQ; ++q) {
        const __m512 m = _mm512_max_ps(_mm512_max_ps(acc[q][0], acc[q][1]),
                                       _mm512_max_ps(acc[q][2], acc[q][3]));
        const __m256bh r = _mm512_cvtneps_pbh(relu_bias(m, bias));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + os * (j + q)), (__m256i)r);
    }
}

template <int NG>
void layer16(const u16* const rows[4], int wout, const u16* w, const float* b, u16* out,
             const ConvGeom& g) {
    constexpr int kStep = 4;
    const int ng = (g.cin + 1) / 2;
    const std::ptrdiff_t w_block = static_cast<std::ptrdiff_t>(9) * ng * 32;
    const std::ptrdiff_t st = g.in_stride, os = g.out_stride;
    for (int k = 0; k * 16 < g.out_stride; ++k) {
        const __m512 bias = _mm512_loadu_ps(b + k * 16);
        const u16* wk = w + k * w_block;
        u16* ok = out + k * 16;
        if (wout >= kStep) {
            for (std::ptrdiff_t j = 0; j < wout; j += kStep) {
                block16_step<NG, kStep>(rows, min_index(j, wout - kStep), wk, ng, st, bias, ok, os);
            }
        } else {
            for (std::ptrdiff_t j = 0; j < wout; ++j) {
                block16_step<NG, 1>(rows, j, wk, ng, st, bias, ok, os);
            }
        }
    }
}

// ---- blocks of 8 output channels ---------------------------------------------------------------
// Lane 2 co + h holds output channel co over pair h of a quad of input channels; one 64-bit
// broadcast per pixel and quad. w: [9][groups][32].
// The 4 conv pixels' accumulators (row 0: columns 0, 1; row 1: columns 0, 1) -> the pooled 8
// channels: the two pair lanes added, then the max over the 4 pixels.
inline __m256 pool8(const __m512 acc[4]) {
    // per 128-bit lane L: [a co 2L, a co 2L + 1, b co 2L, b co 2L + 1] (a, b: columns 0, 1)
    const __m512 r0 = _mm512_add_ps(_mm512_shuffle_ps(acc[0], acc[1], 0x88),
                                    _mm512_shuffle_ps(acc[0], acc[1], 0xDD));
    const __m512 r1 = _mm512_add_ps(_mm512_shuffle_ps(acc[2], acc[3], 0x88),
                                    _mm512_shuffle_ps(acc[2], acc[3], 0xDD));
    __m512 m = _mm512_max_ps(r0, r1);
    m = _mm512_max_ps(m, _mm512_permute_ps(m, _MM_SHUFFLE(1, 0, 3, 2)));
    return _mm512_castps512_ps256(lane_heads(m, true));
}

template <int NG, int NQ>
inline void block8_step(const u16* const rows[4], std::ptrdiff_t j, const u16* w, int ng_rt,
                        std::ptrdiff_t st, __m256 bias, u16* out, std::ptrdiff_t os) {
    const int ng = NG > 0 ? NG : ng_rt;
    __m512 acc[NQ][4];
    for (auto& q : acc) q[0] = q[1] = q[2] = q[3] = _mm512_setzero_ps();
    for (int ky = 0; ky < 3; ++ky) {
        for (int kx = 0; kx < 3; ++kx) {
            const u16* wt = w + (ky * 3 + kx) * ng * 32;
            for (int g = 0; g < ng; ++g) {
                const __m512bh wv = load_w(wt + g * 32);
                for (int q = 0; q < NQ; ++q) {
                    for (int a = 0; a < 2; ++a) {
                        const u16* src = rows[a + ky] + (2 * (j + q) + kx) * st + 4 * g;
                        acc[q][2 * a] = dot(acc[q][2 * a], quad_all(src), wv);
                        acc[q][2 * a + 1] = dot(acc[q][2 * a + 1], quad_all(src + st), wv);
                    }
                }
            }
        }
    }
    for (int q = 0; q < NQ; ++q) {
        const __m256 v = _mm256_max_ps(_mm256_add_ps(pool8(acc[q]), bias), _mm256_setzero_ps());
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out + os * (j + q)),
                         (__m128i)_mm256_cvtneps_pbh(v));
    }
}

template <int NG>
void layer8(const u16* const rows[4], int wout, const u16* w, const float* b, u16* out,
            const ConvGeom& g) {
    constexpr int kStep = 4;
    const int ng = (g.cin + 3) / 4;
    const std::ptrdiff_t w_block = static_cast<std::ptrdiff_t>(9) * ng * 32;
    const std::ptrdiff_t st = g.in_stride, os = g.out_stride;
    for (int k = 0; k * 8 < g.out_stride; ++k) {
        const __m256 bias = _mm256_loadu_ps(b + k * 8);
        const u16* wk = w + k * w_block;
        u16* ok = out + k * 8;
        if (wout >= kStep) {
            for (std::ptrdiff_t j = 0; j < wout; j += kStep) {
                block8_step<NG, kStep>(rows, min_index(j, wout - kStep), wk, ng, st, bias, ok, os);
            }
        } else {
            for (std::ptrdiff_t j = 0; j < wout; ++j) {
                block8_step<NG, 1>(rows, j, wk, ng, st, bias, ok, os);
            }
        }
    }
}

// ---- blocks of 4 output channels ---------------------------------------------------------------
// The pooled 4 channels from one value per 128-bit lane (lane L = output channel L), + bias,
// ReLU, stored as 4 bf16.
inline void store4(u16* out, __m512 pooled, __m128 bias) {
    const __m128 v = _mm512_castps512_ps128(lane_heads(pooled, false));
    const __m128bh r = _mm_cvtneps_pbh(_mm_max_ps(_mm_add_ps(v, bias), _mm_setzero_ps()));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(out), (__m128i)r);
}

// 4-channel input (in_stride 4, one quad): a 128-bit load at conv column 2j + kx holds both conv
// columns of pooled pixel j (pixels 2j + kx, 2j + kx + 1), so lane 4 co + 2 column + h holds
// output co, column `column`, pair h. Two accumulators (the conv rows) per pooled pixel.
// w: [9][32].
template <int NQ>
inline void block4s4_step(const u16* const rows[4], std::ptrdiff_t j, const u16* w, __m128 bias,
                          u16* out, std::ptrdiff_t os) {
    __m512 acc[NQ][2];
    for (auto& q : acc) q[0] = q[1] = _mm512_setzero_ps();
    for (int ky = 0; ky < 3; ++ky) {
        for (int kx = 0; kx < 3; ++kx) {
            const __m512bh wv = load_w(w + (ky * 3 + kx) * 32);
            for (int q = 0; q < NQ; ++q) {
                for (int a = 0; a < 2; ++a) {
                    const u16* src = rows[a + ky] + (2 * (j + q) + kx) * 4;
                    acc[q][a] = dot(acc[q][a], octet_all(src), wv);
                }
            }
        }
    }
    for (int q = 0; q < NQ; ++q) {
        __m512 s[2];
        for (int a = 0; a < 2; ++a) {  // per lane: [column 0, column 0, column 1, column 1]
            s[a] = _mm512_add_ps(acc[q][a], _mm512_permute_ps(acc[q][a], _MM_SHUFFLE(2, 3, 0, 1)));
        }
        __m512 m = _mm512_max_ps(s[0], s[1]);
        m = _mm512_max_ps(m, _mm512_permute_ps(m, _MM_SHUFFLE(1, 0, 3, 2)));
        store4(out + os * (j + q), m, bias);
    }
}

void layer4_s4(const u16* const rows[4], int wout, const u16* w, const float* b, u16* out,
               const ConvGeom& g) {
    constexpr int kStep = 4;
    const __m128 bias = _mm_loadu_ps(b);
    const std::ptrdiff_t os = g.out_stride;
    if (wout >= kStep) {
        for (std::ptrdiff_t j = 0; j < wout; j += kStep) {
            block4s4_step<kStep>(rows, min_index(j, wout - kStep), w, bias, out, os);
        }
    } else {
        for (std::ptrdiff_t j = 0; j < wout; ++j) block4s4_step<1>(rows, j, w, bias, out, os);
    }
}

// 8k-channel input: lane 4 co + p holds output co over pair p of an octet of input channels; one
// 128-bit broadcast per pixel and octet. The 4 pair lanes are added at the end. w: [9][groups][32].
inline __m512 hsum4(__m512 a, __m512 b) {  // per lane: [a0 + a1, a2 + a3, b0 + b1, b2 + b3]
    return _mm512_add_ps(_mm512_shuffle_ps(a, b, 0x88), _mm512_shuffle_ps(a, b, 0xDD));
}

template <int NG, int NQ>
inline void block4_step(const u16* const rows[4], std::ptrdiff_t j, const u16* w, int ng_rt,
                        std::ptrdiff_t st, __m128 bias, u16* out, std::ptrdiff_t os) {
    const int ng = NG > 0 ? NG : ng_rt;
    __m512 acc[NQ][4];
    for (auto& q : acc) q[0] = q[1] = q[2] = q[3] = _mm512_setzero_ps();
    for (int ky = 0; ky < 3; ++ky) {
        for (int kx = 0; kx < 3; ++kx) {
            const u16* wt = w + (ky * 3 + kx) * ng * 32;
            for (int g = 0; g < ng; ++g) {
                const __m512bh wv = load_w(wt + g * 32);
                for (int q = 0; q < NQ; ++q) {
                    for (int a = 0; a < 2; ++a) {
                        const u16* src = rows[a + ky] + (2 * (j + q) + kx) * st + 8 * g;
                        acc[q][2 * a] = dot(acc[q][2 * a], octet_all(src), wv);
                        acc[q][2 * a + 1] = dot(acc[q][2 * a + 1], octet_all(src + st), wv);
                    }
                }
            }
        }
    }
    for (int q = 0; q < NQ; ++q) {
        // per lane: the 4 conv pixels' sums, then their max in every element
        const __m512 s = hsum4(hsum4(acc[q][0], acc[q][1]), hsum4(acc[q][2], acc[q][3]));
        __m512 m = _mm512_max_ps(s, _mm512_permute_ps(s, _MM_SHUFFLE(2, 3, 0, 1)));
        m = _mm512_max_ps(m, _mm512_permute_ps(m, _MM_SHUFFLE(1, 0, 3, 2)));
        store4(out + os * (j + q), m, bias);
    }
}

template <int NG>
void layer4(const u16* const rows[4], int wout, const u16* w, const float* b, u16* out,
            const ConvGeom& g) {
    constexpr int kStep = 4;
    const int ng = (g.cin + 7) / 8;
    const __m128 bias = _mm_loadu_ps(b);
    const std::ptrdiff_t st = g.in_stride, os = g.out_stride;
    if (wout >= kStep) {
        for (std::ptrdiff_t j = 0; j < wout; j += kStep) {
            block4_step<NG, kStep>(rows, min_index(j, wout - kStep), w, ng, st, bias, out, os);
        }
    } else {
        for (std::ptrdiff_t j = 0; j < wout; ++j) {
            block4_step<NG, 1>(rows, j, w, ng, st, bias, out, os);
        }
    }
}

// ---- FC1 ------------------------------------------------------------------------------------
// W: [hidden/8][k_len/2][8][2]; two 8-blocks per zmm (one 256-bit load from each), V zmm per
// step, so each broadcast input pair feeds 16 V outputs. The weight streams are prefetched 4 KB
// ahead, as in the f32 levels. Fewer than 4 blocks at the end run 16, then 8 wide (ymm).
constexpr std::uintptr_t kFcPrefetch = 4096;

inline void prefetch(const u16* p) {
    _mm_prefetch(reinterpret_cast<const char*>(reinterpret_cast<std::uintptr_t>(p) + kFcPrefetch),
                 _MM_HINT_T0);
}

inline __m512bh two_blocks(const u16* lo, const u16* hi) {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(lo));
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(hi));
    return (__m512bh)_mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
}

template <int NB, int V>
inline void fc1_blocks(const u16* x, int k_len, const int* kps, int n_kps, const u16* wblk,
                       const float* b, int ob, int hidden, float* y) {
    const std::size_t step = static_cast<std::size_t>(k_len) * 8;  // bf16 values per 8-block
    const u16* w0 = wblk + static_cast<std::size_t>(ob) * step;
    __m512 acc[NB][V];
    for (auto& q : acc) {
        for (auto& a : q) a = _mm512_setzero_ps();
    }
    for (int i = 0; i < n_kps; ++i) {
        const int p = kps[i];
        __m512bh wv[V];
        for (int v = 0; v < V; ++v) {
            const u16* lo = w0 + 2 * v * step + static_cast<std::size_t>(p) * 16;
            wv[v] = two_blocks(lo, lo + step);
            prefetch(lo);
            prefetch(lo + step);
        }
        for (int q = 0; q < NB; ++q) {
            const __m512bh xq = pair_all(x + static_cast<std::ptrdiff_t>(q) * k_len + 2 * p);
            for (int v = 0; v < V; ++v) acc[q][v] = dot(acc[q][v], xq, wv[v]);
        }
    }
    for (int v = 0; v < V; ++v) {
        const __m512 bias = _mm512_loadu_ps(b + (ob + 2 * v) * 8);
        for (int q = 0; q < NB; ++q) {
            _mm512_storeu_ps(y + static_cast<std::size_t>(q) * hidden + (ob + 2 * v) * 8,
                             relu_bias(acc[q][v], bias));
        }
    }
}

template <int NB>
inline void fc1_block8(const u16* x, int k_len, const int* kps, int n_kps, const u16* wblk,
                       const float* b, int ob, int hidden, float* y) {
    const u16* wp = wblk + static_cast<std::size_t>(ob) * k_len * 8;
    __m256 acc[NB];
    for (int q = 0; q < NB; ++q) acc[q] = _mm256_setzero_ps();
    for (int i = 0; i < n_kps; ++i) {
        const int p = kps[i];
        const u16* wk = wp + static_cast<std::size_t>(p) * 16;
        const __m256bh wv = (__m256bh)_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wk));
        prefetch(wk);
        for (int q = 0; q < NB; ++q) {
            const std::uint32_t xp = load32(x + static_cast<std::ptrdiff_t>(q) * k_len + 2 * p);
            const __m256bh xq = (__m256bh)_mm256_set1_epi32(static_cast<int>(xp));
            acc[q] = _mm256_dpbf16_ps(acc[q], xq, wv);
        }
    }
    const __m256 bias = _mm256_loadu_ps(b + ob * 8);
    for (int q = 0; q < NB; ++q) {
        _mm256_storeu_ps(y + static_cast<std::size_t>(q) * hidden + ob * 8,
                         _mm256_max_ps(_mm256_add_ps(acc[q], bias), _mm256_setzero_ps()));
    }
}

template <int NB>
void fc1_block(const u16* x, int k_len, const int* kps, int n_kps, const u16* wblk,
               const float* b, int ob0, int ob1, int hidden, float* y) {
    int ob = ob0;
    for (; ob + 4 <= ob1; ob += 4) fc1_blocks<NB, 2>(x, k_len, kps, n_kps, wblk, b, ob, hidden, y);
    if (ob + 2 <= ob1) {
        fc1_blocks<NB, 1>(x, k_len, kps, n_kps, wblk, b, ob, hidden, y);
        ob += 2;
    }
    if (ob < ob1) fc1_block8<NB>(x, k_len, kps, n_kps, wblk, b, ob, hidden, y);
}

}  // namespace

const Fc1Kernel16 kFc1[kFcRows + 1] = {nullptr,         fc1_block<1>,  fc1_block<2>,  fc1_block<3>,
                                       fc1_block<4>,    fc1_block<5>,  fc1_block<6>,  fc1_block<7>,
                                       fc1_block<8>,    fc1_block<9>,  fc1_block<10>, fc1_block<11>,
                                       fc1_block<12>};

RowKernel16 row_kernel(const ConvGeom& g) {
    if (g.block == 16) {
        switch ((g.cin + 1) / 2) {
            case 2: return layer16<2>;
            case 4: return layer16<4>;
            case 8: return layer16<8>;
            default: return layer16<0>;
        }
    }
    if (g.block == 8) {
        switch ((g.cin + 3) / 4) {
            case 1: return layer8<1>;
            case 2: return layer8<2>;
            case 4: return layer8<4>;
            default: return layer8<0>;
        }
    }
    if (g.in_stride == 4) return layer4_s4;
    switch ((g.cin + 7) / 8) {
        case 1: return layer4<1>;
        case 2: return layer4<2>;
        default: return layer4<0>;
    }
}

void round_row(const float* src, std::size_t n, std::uint16_t* dst) {
    std::size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256bh r = _mm512_cvtneps_pbh(_mm512_loadu_ps(src + i));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), (__m256i)r);
    }
    if (i < n) {  // the same instruction for the tail, so every value rounds the same way
        const __mmask16 live = static_cast<__mmask16>((1u << (n - i)) - 1);
        alignas(32) std::uint16_t tail[16];
        const __m256bh r = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(live, src + i));
        _mm256_store_si256(reinterpret_cast<__m256i*>(tail), (__m256i)r);
        std::memcpy(dst + i, tail, (n - i) * sizeof(std::uint16_t));
    }
}

}  // namespace pyinspect::student::bf16
