// The student engine's AVX-512F level, compiled with -mavx512f -mavx2 -mfma (this file only;
// CMakeLists.txt). student_engine.cpp picks it at run time, only on a CPU that has AVX-512F
// (student_kernel_isas()), for the layers it has a kernel for; every other layer keeps its AVX2
// kernel (student_kernels_avx2.cpp).
//
// What is here (each kernel's comment says how it maps the data onto 16 lanes):
// - conv1 over "dup4" rows (4 channels): the 4 channels of 4 neighbouring conv columns;
// - 4 input channels into blocks of 8 (conv2 of the paper's student): both conv columns of a
//   pooled pixel;
// - 4k input channels into blocks of 4 (conv4, conv5): the 4 conv pixels of a pooled pixel;
// - blocks of 16 output channels (conv3, every layer of 16 or more channels): one zmm per pixel;
// - FC1: 16 outputs per zmm.
// Each output value is summed in the same order as the AVX2 kernels (taps, then input channels;
// explicit FMAs, -ffp-contract=off), so both levels give the same bits.
//
// As in student_kernels_avx2.cpp, everything is in the anonymous namespace or a named entry point
// of pyinspect::student::avx512, and no standard-library template or inline function is used, so
// no AVX-512 copy of shared code can leak into the baseline parts of the module.
// GCC 12 warns that AVX-512 intrinsics use their own _mm512_undefined_*() passthrough
// uninitialised (GCC bug 105593, fixed in 13) at every inlined use; the warning is about the
// header's code, not this file's, so it is off for this file only.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "student_kernels.hpp"

namespace pyinspect::student::avx512 {
namespace {

constexpr std::ptrdiff_t min_index(std::ptrdiff_t a, std::ptrdiff_t b) { return b < a ? b : a; }

// ---- conv1 over dup4 rows -----------------------------------------------------------------------
// rows[t] + 4 * p is padded pixel p of input row 2i - 1 + t, its value 4 times. A zmm load at
// pixel 2j + kx holds conv columns 2j .. 2j + 3 at tap kx (4 channels each), i.e. pooled pixels j
// and j + 1. w: [9][8] (each tap's 4 channel weights twice), read as [tap] x 4.

// The 8 weights of a tap (4 channels twice) as 16 lanes (4 channels 4 times).
inline __m512 tap_weights(const float* w8) {
    return _mm512_castpd_ps(_mm512_broadcast_f64x4(_mm256_castps_pd(_mm256_loadu_ps(w8))));
}

// max over the 2 conv rows and the 2 columns of each pooled pixel, + bias, ReLU, for pooled
// pixels j and j + 1: lanes 0-3 hold column 2j, 4-7 column 2j + 1, 8-11 column 2j + 2, 12-15
// column 2j + 3. Returns [pooled j (4 channels), pooled j + 1 (4 channels)] in lanes 0-7.
inline __m256 pool_pair(__m512 row0, __m512 row1, __m512 bias) {
    const __m512 m = _mm512_max_ps(row0, row1);
    // swap the 128-bit lanes pairwise: column 2j <-> 2j + 1, 2j + 2 <-> 2j + 3
    const __m512 p = _mm512_max_ps(m, _mm512_shuffle_f32x4(m, m, _MM_SHUFFLE(2, 3, 0, 1)));
    const __m512 r = _mm512_max_ps(_mm512_add_ps(p, bias), _mm512_setzero_ps());
    // lanes 0-3 (pooled j) and 8-11 (pooled j + 1) next to each other
    return _mm512_castps512_ps256(_mm512_shuffle_f32x4(r, r, _MM_SHUFFLE(0, 0, 2, 0)));
}

// NP pairs of pooled pixels from j (2 NP pooled pixels): NP x 2 accumulators.
template <int NP>
inline void conv1_pairs(const float* const rows[4], std::ptrdiff_t j, const __m512 w[9],
                        __m512 bias, float* out) {
    __m512 acc[NP][2];
    for (auto& q : acc) q[0] = q[1] = _mm512_setzero_ps();
    for (int ky = 0; ky < 3; ++ky) {
        for (int kx = 0; kx < 3; ++kx) {
            const __m512 wv = w[ky * 3 + kx];
            for (int q = 0; q < NP; ++q) {
                for (int a = 0; a < 2; ++a) {
                    const float* src = rows[a + ky] + 4 * (2 * (j + 2 * q) + kx);
                    acc[q][a] = _mm512_fmadd_ps(_mm512_loadu_ps(src), wv, acc[q][a]);
                }
            }
        }
    }
    for (int q = 0; q < NP; ++q) {
        _mm256_storeu_ps(out + 4 * (j + 2 * q), pool_pair(acc[q][0], acc[q][1], bias));
    }
}

// One pooled pixel j (an odd end): the upper 8 lanes are masked off, so nothing past the row's
// last padded pixel is read.
inline void conv1_single(const float* const rows[4], std::ptrdiff_t j, const __m512 w[9],
                         __m512 bias, float* out) {
    constexpr __mmask16 kLow = 0x00FF;
    __m512 acc[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
    for (int ky = 0; ky < 3; ++ky) {
        for (int kx = 0; kx < 3; ++kx) {
            for (int a = 0; a < 2; ++a) {
                const float* src = rows[a + ky] + 4 * (2 * j + kx);
                acc[a] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(kLow, src), w[ky * 3 + kx], acc[a]);
            }
        }
    }
    _mm_storeu_ps(out + 4 * j, _mm256_castps256_ps128(pool_pair(acc[0], acc[1], bias)));
}

// Eight pooled pixels per step; a ragged end re-does the last eight (the same values), then pairs,
// then one.
void row_conv1(const float* const rows[4], int wout, const float* w, const float* b, float* out,
               const ConvGeom&) {
    __m512 wv[9];
    for (int t = 0; t < 9; ++t) wv[t] = tap_weights(w + t * 8);
    const __m512 bias = _mm512_broadcast_f32x4(_mm_loadu_ps(b));
    std::ptrdiff_t j = 0;
    if (wout >= 8) {
        for (; j < wout; j += 8) conv1_pairs<4>(rows, min_index(j, wout - 8), wv, bias, out);
        return;
    }
    for (; j + 2 <= wout; j += 2) conv1_pairs<1>(rows, j, wv, bias, out);
    if (j < wout) conv1_single(rows, j, wv, bias, out);
}

// ---- 4 input channels into a block of 8 -------------------------------------------------------
// conv2 of the paper's student (cin = in_stride = 4, 8 outputs). One zmm holds the 8 channels of
// both conv columns under a pooled pixel, as 128-bit lanes [column 2j channels 0-3, column 2j + 1
// channels 0-3, column 2j channels 4-7, column 2j + 1 channels 4-7]. The input of both columns at
// a tap is 8 contiguous floats (pixels p, p + 1: 4 channels each), loaded as [p, p + 1, p, p + 1]
// and each input channel broadcast within the 128-bit lanes, so the inner loop crosses no lanes.
// w: [9][4][8]; its 36 vectors are spread to that lane order once per call. Four pooled pixels
// per step (8 accumulators, enough to hide the multiply-add latency).

inline __m512 twice(const float* p8) {  // [p8[0..7], p8[0..7]]
    return _mm512_castpd_ps(_mm512_broadcast_f64x4(_mm256_castps_pd(_mm256_loadu_ps(p8))));
}

template <int NQ>
inline void cin4_step(const float* const rows[4], std::ptrdiff_t j, const __m512* w, __m256 bias,
                      float* out, int os) {
    __m512 acc[NQ][2];
    for (auto& q : acc) q[0] = q[1] = _mm512_setzero_ps();
    for (int t = 0; t < 9; ++t) {
        const int ky = t / 3, kx = t % 3;
        const __m512* wt = w + t * 4;
        for (int q = 0; q < NQ; ++q) {
            for (int a = 0; a < 2; ++a) {
                const __m512 x = twice(rows[a + ky] + 4 * (2 * (j + q) + kx));
                __m512 s = acc[q][a];
                s = _mm512_fmadd_ps(_mm512_permute_ps(x, 0x00), wt[0], s);
                s = _mm512_fmadd_ps(_mm512_permute_ps(x, 0x55), wt[1], s);
                s = _mm512_fmadd_ps(_mm512_permute_ps(x, 0xAA), wt[2], s);
                acc[q][a] = _mm512_fmadd_ps(_mm512_permute_ps(x, 0xFF), wt[3], s);
            }
        }
    }
    for (int q = 0; q < NQ; ++q) {
        // max over the columns of each conv row, then over the rows (the AVX2 kernel's order)
        __m512 m[2];
        for (int a = 0; a < 2; ++a) {
            const __m512 v = acc[q][a];
            m[a] = _mm512_max_ps(v, _mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(2, 3, 0, 1)));
        }
        const __m512 r = _mm512_max_ps(m[0], m[1]);  // lanes 0: channels 0-3, 2: channels 4-7
        const __m512 packed = _mm512_shuffle_f32x4(r, r, _MM_SHUFFLE(0, 0, 2, 0));
        const __m256 p = _mm256_add_ps(_mm512_castps512_ps256(packed), bias);
        _mm256_storeu_ps(out + os * (j + q), _mm256_max_ps(p, _mm256_setzero_ps()));
    }
}

void layer8_cin4(const float* const rows[4], int wout, const float* w, const float* b, float* out,
                 const ConvGeom& g) {
    const std::ptrdiff_t w_block = static_cast<std::ptrdiff_t>(9) * 4 * 8;
    // [c0-3, c0-3, c4-7, c4-7] of each 8 weights
    const __m512i spread = _mm512_setr_epi32(0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 6, 7, 4, 5, 6, 7);
    for (int k = 0; k * 8 < g.out_stride; ++k) {
        const __m256 bias = _mm256_loadu_ps(b + k * 8);
        __m512 wk[36];
        for (int i = 0; i < 36; ++i) {
            const __m256 w8 = _mm256_loadu_ps(w + k * w_block + i * 8);
            wk[i] = _mm512_permutexvar_ps(spread, _mm512_castps256_ps512(w8));
        }
        float* ok = out + k * 8;
        if (wout >= 4) {
            for (std::ptrdiff_t j = 0; j < wout; j += 4) {
                cin4_step<4>(rows, min_index(j, wout - 4), wk, bias, ok, g.out_stride);
            }
        } else {
            for (std::ptrdiff_t j = 0; j < wout; ++j) {
                cin4_step<1>(rows, j, wk, bias, ok, g.out_stride);
            }
        }
    }
}

// ---- 4k input channels into a block of 4 -------------------------------------------------------
// conv4 of the paper's student (16 -> 4). One zmm holds the 4 output channels of the 4 conv pixels
// under a pooled pixel (128-bit lane g: row g / 2, column g % 2). Per tap and group of 4 input
// channels, the 4 pixels' channels 4k..4k+3 are gathered into the 4 lanes (128-bit loads), then
// each channel is broadcast within the lanes. w: [9][cin][4]; in_stride = cin, a multiple of 4.
// CIN > 0: cin compiled in; 0: from the geometry. Four pooled pixels per step.

template <int CIN, int NQ>
inline void cin4k_step(const float* const rows[4], std::ptrdiff_t j, const float* w, int cin_rt,
                       __m128 bias, float* out, int os) {
    const int cin = CIN > 0 ? CIN : cin_rt;
    const std::ptrdiff_t st = cin;
    __m512 acc[NQ];
    for (auto& a : acc) a = _mm512_setzero_ps();
    for (int ky = 0; ky < 3; ++ky) {
        for (int kx = 0; kx < 3; ++kx) {
            const float* wt = w + (ky * 3 + kx) * cin * 4;
            for (int k = 0; k < cin; k += 4) {
                const __m512 w0 = _mm512_broadcast_f32x4(_mm_loadu_ps(wt + k * 4));
                const __m512 w1 = _mm512_broadcast_f32x4(_mm_loadu_ps(wt + k * 4 + 4));
                const __m512 w2 = _mm512_broadcast_f32x4(_mm_loadu_ps(wt + k * 4 + 8));
                const __m512 w3 = _mm512_broadcast_f32x4(_mm_loadu_ps(wt + k * 4 + 12));
                for (int q = 0; q < NQ; ++q) {
                    const float* p0 = rows[ky] + (2 * (j + q) + kx) * st + k;
                    const float* p1 = rows[ky + 1] + (2 * (j + q) + kx) * st + k;
                    __m512 y = _mm512_castps128_ps512(_mm_loadu_ps(p0));
                    y = _mm512_insertf32x4(y, _mm_loadu_ps(p0 + st), 1);
                    y = _mm512_insertf32x4(y, _mm_loadu_ps(p1), 2);
                    y = _mm512_insertf32x4(y, _mm_loadu_ps(p1 + st), 3);
                    __m512 s = acc[q];
                    s = _mm512_fmadd_ps(_mm512_permute_ps(y, 0x00), w0, s);
                    s = _mm512_fmadd_ps(_mm512_permute_ps(y, 0x55), w1, s);
                    s = _mm512_fmadd_ps(_mm512_permute_ps(y, 0xAA), w2, s);
                    acc[q] = _mm512_fmadd_ps(_mm512_permute_ps(y, 0xFF), w3, s);
                }
            }
        }
    }
    for (int q = 0; q < NQ; ++q) {
        // max(max(r0c0, r0c1), max(r1c0, r1c1)): the AVX2 kernel's order
        const __m512 v = acc[q];
        const __m512 pair = _mm512_max_ps(v, _mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(2, 3, 0, 1)));
        const __m128 m = _mm_max_ps(_mm512_castps512_ps128(pair), _mm512_extractf32x4_ps(pair, 2));
        _mm_storeu_ps(out + os * (j + q), _mm_max_ps(_mm_add_ps(m, bias), _mm_setzero_ps()));
    }
}

template <int CIN>
void layer4_cin4k(const float* const rows[4], int wout, const float* w, const float* b,
                  float* out, const ConvGeom& g) {
    const std::ptrdiff_t w_block = static_cast<std::ptrdiff_t>(9) * g.cin * 4;
    for (int k = 0; k * 4 < g.out_stride; ++k) {
        const __m128 bias = _mm_loadu_ps(b + k * 4);
        const float* wk = w + k * w_block;
        float* ok = out + k * 4;
        if (wout >= 4) {
            for (std::ptrdiff_t j = 0; j < wout; j += 4) {
                cin4k_step<CIN, 4>(rows, min_index(j, wout - 4), wk, g.cin, bias, ok, g.out_stride);
            }
        } else {
            for (std::ptrdiff_t j = 0; j < wout; ++j) {
                cin4k_step<CIN, 1>(rows, j, wk, g.cin, bias, ok, g.out_stride);
            }
        }
    }
}

// ---- blocks of 16 output channels ---------------------------------------------------------------
// w: [9][cin][16]. Two pooled pixels per step (8 accumulators: 2 x the 4 conv pixels under a
// pooled pixel), the input broadcast from memory into each multiply-add; then one for an odd end.
// CIN > 0: cin = in_stride = CIN (the loops unroll); CIN == 0: both from the arguments.
inline void store_pooled(float* out, const __m512 acc[4], __m512 bias) {
    const __m512 m = _mm512_max_ps(_mm512_max_ps(acc[0], acc[1]), _mm512_max_ps(acc[2], acc[3]));
    _mm512_storeu_ps(out, _mm512_max_ps(_mm512_add_ps(m, bias), _mm512_setzero_ps()));
}

template <int CIN>
void wide_block(const float* const rows[4], int wout, const float* w, const float* b, float* out,
                int cin_rt, int st_rt, int os) {
    const int cin = CIN > 0 ? CIN : cin_rt;
    const std::ptrdiff_t st = CIN > 0 ? CIN : st_rt;
    const __m512 bias = _mm512_loadu_ps(b);
    std::ptrdiff_t j = 0;
    for (; j + 2 <= wout; j += 2) {
        __m512 acc[2][4];
        for (auto& q : acc) q[0] = q[1] = q[2] = q[3] = _mm512_setzero_ps();
        for (int ky = 0; ky < 3; ++ky) {
            for (int kx = 0; kx < 3; ++kx) {
                const float* wt = w + (ky * 3 + kx) * cin * 16;
                const float* s0 = rows[ky] + (2 * j + kx) * st;
                const float* s1 = rows[ky + 1] + (2 * j + kx) * st;
                for (int ci = 0; ci < cin; ++ci) {
                    const __m512 wv = _mm512_loadu_ps(wt + ci * 16);
                    for (int q = 0; q < 2; ++q) {
                        const std::ptrdiff_t o = 2 * q * st + ci;
                        acc[q][0] = _mm512_fmadd_ps(_mm512_set1_ps(s0[o]), wv, acc[q][0]);
                        acc[q][1] = _mm512_fmadd_ps(_mm512_set1_ps(s0[o + st]), wv, acc[q][1]);
                        acc[q][2] = _mm512_fmadd_ps(_mm512_set1_ps(s1[o]), wv, acc[q][2]);
                        acc[q][3] = _mm512_fmadd_ps(_mm512_set1_ps(s1[o + st]), wv, acc[q][3]);
                    }
                }
            }
        }
        for (int q = 0; q < 2; ++q) store_pooled(out + os * (j + q), acc[q], bias);
    }
    for (; j < wout; ++j) {
        __m512 acc[4];
        for (auto& a : acc) a = _mm512_setzero_ps();
        for (int ky = 0; ky < 3; ++ky) {
            for (int kx = 0; kx < 3; ++kx) {
                const float* wt = w + (ky * 3 + kx) * cin * 16;
                const float* s0 = rows[ky] + (2 * j + kx) * st;
                const float* s1 = rows[ky + 1] + (2 * j + kx) * st;
                for (int ci = 0; ci < cin; ++ci) {
                    const __m512 wv = _mm512_loadu_ps(wt + ci * 16);
                    acc[0] = _mm512_fmadd_ps(_mm512_set1_ps(s0[ci]), wv, acc[0]);
                    acc[1] = _mm512_fmadd_ps(_mm512_set1_ps(s0[st + ci]), wv, acc[1]);
                    acc[2] = _mm512_fmadd_ps(_mm512_set1_ps(s1[ci]), wv, acc[2]);
                    acc[3] = _mm512_fmadd_ps(_mm512_set1_ps(s1[st + ci]), wv, acc[3]);
                }
            }
        }
        store_pooled(out + os * j, acc, bias);
    }
}

// A whole layer of blocks of 16: the out_stride / 16 blocks.
template <int CIN>
void layer16(const float* const rows[4], int wout, const float* w, const float* b, float* out,
             const ConvGeom& g) {
    const std::ptrdiff_t w_block = static_cast<std::ptrdiff_t>(9) * g.cin * 16;
    for (int k = 0; k * 16 < g.out_stride; ++k) {
        wide_block<CIN>(rows, wout, w + k * w_block, b + k * 16, out + k * 16, g.cin, g.in_stride,
                        g.out_stride);
    }
}

// ---- FC1 ------------------------------------------------------------------------------------
// The AVX2 level's layout ([hidden/8][k][8]) read four blocks at a time: two zmm of 16 outputs
// (each two 8-blocks, one load from each), so each input broadcast feeds 32 outputs (a zmm
// broadcast costs a full-width load; shared by two multiply-adds, the loads keep up with them).
// Fewer than four blocks at the end run 16, then 8 wide. Same sums in the same order as AVX2.
constexpr std::uintptr_t kFcPrefetch = 4096;  // bytes ahead in each weight stream (as AVX2)

inline void prefetch(const float* p) {
    _mm_prefetch(reinterpret_cast<const char*>(reinterpret_cast<std::uintptr_t>(p) + kFcPrefetch),
                 _MM_HINT_T0);
}

inline __m512 two_blocks(const float* lo, const float* hi) {
    return _mm512_castpd_ps(_mm512_insertf64x4(
        _mm512_castpd256_pd512(_mm256_castps_pd(_mm256_loadu_ps(lo))),
        _mm256_castps_pd(_mm256_loadu_ps(hi)), 1));
}

// Blocks ob .. ob + 2 V - 1 (V zmm of 16 outputs) for NB patches.
template <int NB, int V>
inline void fc1_blocks(const float* x, int k_len, const int* ks, int n_ks, const float* wblk,
                       const float* b, int ob, int hidden, float* y) {
    const std::size_t step = static_cast<std::size_t>(k_len) * 8;  // floats per 8-block
    const float* w0 = wblk + static_cast<std::size_t>(ob) * step;
    __m512 acc[NB][V];
    for (auto& q : acc) {
        for (auto& a : q) a = _mm512_setzero_ps();
    }
    for (int i = 0; i < n_ks; ++i) {
        const int k = ks[i];
        __m512 wv[V];
        for (int v = 0; v < V; ++v) {
            const float* lo = w0 + 2 * v * step + k * 8;
            wv[v] = two_blocks(lo, lo + step);
            prefetch(lo);
            prefetch(lo + step);
        }
        for (int q = 0; q < NB; ++q) {
            const __m512 xq = _mm512_set1_ps(x[q * k_len + k]);
            for (int v = 0; v < V; ++v) acc[q][v] = _mm512_fmadd_ps(xq, wv[v], acc[q][v]);
        }
    }
    for (int v = 0; v < V; ++v) {
        const __m512 bias = _mm512_loadu_ps(b + (ob + 2 * v) * 8);
        for (int q = 0; q < NB; ++q) {
            _mm512_storeu_ps(y + static_cast<std::size_t>(q) * hidden + (ob + 2 * v) * 8,
                             _mm512_max_ps(_mm512_add_ps(acc[q][v], bias), _mm512_setzero_ps()));
        }
    }
}

// One block of 8 (an odd end), as the AVX2 kernel.
template <int NB>
inline void fc1_block8(const float* x, int k_len, const int* ks, int n_ks, const float* wblk,
                       const float* b, int ob, int hidden, float* y) {
    const float* wp = wblk + static_cast<std::size_t>(ob) * k_len * 8;
    __m256 acc[NB];
    for (int q = 0; q < NB; ++q) acc[q] = _mm256_setzero_ps();
    for (int i = 0; i < n_ks; ++i) {
        const int k = ks[i];
        const __m256 wv = _mm256_loadu_ps(wp + k * 8);
        prefetch(wp + k * 8);
        for (int q = 0; q < NB; ++q) {
            acc[q] = _mm256_fmadd_ps(_mm256_broadcast_ss(x + q * k_len + k), wv, acc[q]);
        }
    }
    const __m256 bias = _mm256_loadu_ps(b + ob * 8);
    for (int q = 0; q < NB; ++q) {
        _mm256_storeu_ps(y + static_cast<std::size_t>(q) * hidden + ob * 8,
                         _mm256_max_ps(_mm256_add_ps(acc[q], bias), _mm256_setzero_ps()));
    }
}

template <int NB>
void fc1_block(const float* x, int k_len, const int* ks, int n_ks, const float* wblk,
               const float* b, int ob0, int ob1, int hidden, float* y) {
    int ob = ob0;
    for (; ob + 4 <= ob1; ob += 4) fc1_blocks<NB, 2>(x, k_len, ks, n_ks, wblk, b, ob, hidden, y);
    if (ob + 2 <= ob1) {
        fc1_blocks<NB, 1>(x, k_len, ks, n_ks, wblk, b, ob, hidden, y);
        ob += 2;
    }
    if (ob < ob1) fc1_block8<NB>(x, k_len, ks, n_ks, wblk, b, ob, hidden, y);
}

}  // namespace

const Fc1Kernel kFc1[kFcRows + 1] = {nullptr,         fc1_block<1>,  fc1_block<2>,  fc1_block<3>,
                                     fc1_block<4>,    fc1_block<5>,  fc1_block<6>,  fc1_block<7>,
                                     fc1_block<8>,    fc1_block<9>,  fc1_block<10>, fc1_block<11>,
                                     fc1_block<12>};

RowKernel row_kernel(const ConvGeom& g, bool dup4) {
    if (dup4) return row_conv1;
    if (g.block == 8 && g.cin == 4 && g.in_stride == 4) return layer8_cin4;
    if (g.block == 4 && g.cin % 4 == 0 && g.cin == g.in_stride) {
        return g.cin == 16 ? layer4_cin4k<16> : layer4_cin4k<0>;
    }
    if (g.block != 16) return nullptr;  // other blocks of 8 or 4 channels: the AVX2 kernel
    if (g.cin == g.in_stride) {
        switch (g.cin) {
            case 1: return layer16<1>;
            case 4: return layer16<4>;
            case 8: return layer16<8>;
            case 16: return layer16<16>;
            default: break;
        }
    }
    return layer16<0>;
}

}  // namespace pyinspect::student::avx512
