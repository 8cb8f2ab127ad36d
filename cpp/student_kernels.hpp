// Internal: the student engine's compute kernels and the layout they read, one namespace per kernel
// level, each in its own file built with that level's flags (student_kernels_avx2.cpp: -mavx2
// -mfma; student_kernels_avx512.cpp: -mavx512f; student_kernels_bf16.cpp: -mavx512f -mavx512bf16
// -mavx512vl). student_engine.cpp calls a level only on a CPU that has it. Plain pointers in and
// out, no allocation.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pyinspect::student {

constexpr int kLayers = 5;
constexpr int kMaxWidth = 64;  // widest conv layer the engine takes (wider: a backend)
constexpr int kFcRows = 12;    // patches per FC1 pass (accumulators in registers)

// Channels of a layer's output as stored: 4 when it has at most 4, else a multiple of 8. The
// padded channels have zero weights and a zero bias, so they hold ReLU(0) = 0 everywhere, and the
// next layer reads only the real ones.
constexpr int padded_width(int c) { return c <= 4 ? 4 : (c + 7) / 8 * 8; }
// Output channels one kernel pass computes (the weights' block): 16, 8 or 4.
constexpr int block_width(int padded) { return padded % 16 == 0 ? 16 : padded % 8 == 0 ? 8 : 4; }

// What a row kernel reads and writes. Input pixels are `in_stride` floats apart and the first
// `cin` of them are read; output pixels are `out_stride` floats apart (the layer's padded width),
// written in blocks of `block` channels.
struct ConvGeom {
    int cin = 0, in_stride = 0, out_stride = 0, block = 0;
};

// conv3x3 -> ReLU -> maxpool2 for one pooled output row from 4 zero-padded input rows: rows[t]
// points at padded column -1 of input row 2i - 1 + t; conv column x reads padded columns
// x .. x + 2. Output: wout pooled pixels, NHWC. w is [out_stride / block][tap][cin][block]
// (conv1 over "dup4" rows: [tap][8], each tap's 4 channel weights twice; see dup4_row).
using RowKernel = void (*)(const float* const rows[4], int wout, const float* w, const float* b,
                           float* out, const ConvGeom& g);

// FC1 + ReLU for output blocks [ob0, ob1) of NB patches: y[q][o] = relu(sum_k x[q][k] W[k][o] +
// b[o]) over the inputs k in ks[0..n_ks) only (the caller drops inputs that are 0 for every patch;
// adding 0 * w leaves a float sum unchanged, so this is exact). W is blocked as [hidden/8][k][8].
using Fc1Kernel = void (*)(const float* x, int k_len, const int* ks, int n_ks, const float* wblk,
                           const float* b, int ob0, int ob1, int hidden, float* y);

namespace avx2 {

// The row kernel for a layer of this geometry; `dup4` for conv1 over dup4 rows (4 channels).
// Geometries of the paper's student get kernels with the channel counts compiled in.
RowKernel row_kernel(const ConvGeom& g, bool dup4);

// Indexed by the number of patches in the pass, 1 .. kFcRows (entry 0 is null).
extern const Fc1Kernel kFc1[kFcRows + 1];

// sum_i a[i] b[i] (8-lane partial sums, then the horizontal sum, then a scalar tail).
float dot(const float* a, const float* b, int n);

// uint8 pixels src[c * step], c < n -> dst: n + 2 pixels of 4 equal floats ("dup4"), a zero
// pixel, the converted v = x * scale + offset (product and sum rounded separately), a zero pixel.
void dup4_row(const std::uint8_t* src, std::int64_t step, int n, float scale, float offset,
              float* dst);
// The same with one float per pixel (conv1 of 8 or more channels broadcasts each pixel).
void plain_row(const std::uint8_t* src, std::int64_t step, int n, float scale, float offset,
               float* dst);
// dup4_row and plain_row for uint16 pixels (10- to 16-bit gray) at src + c * step, step in
// bytes (2 = contiguous), each at any byte address; the same arithmetic per pixel.
void dup4_row_u16(const std::uint8_t* src, std::int64_t step, int n, float scale, float offset,
                  float* dst);
void plain_row_u16(const std::uint8_t* src, std::int64_t step, int n, float scale, float offset,
                   float* dst);

}  // namespace avx2

// The AVX-512F level: the kernels that gain from 16 lanes (conv1 over dup4 rows, 4 -> 8 and 4k -> 4
// channel convs, blocks of 16 output channels, FC1); the same sums in the same order as the AVX2
// level, so the same bits.
namespace avx512 {

// The AVX-512F row kernel for a layer of this geometry, or nullptr where the AVX2 one serves.
RowKernel row_kernel(const ConvGeom& g, bool dup4);

// FC1 over the AVX2 level's weight layout, as avx2::kFc1.
extern const Fc1Kernel kFc1[kFcRows + 1];

}  // namespace avx512

// The bf16 level (precision "bf16"): conv2..conv5 and FC1 multiply bf16 activations by bf16
// weights with AVX512-BF16 dot products (two products per f32 lane, summed into an f32
// accumulator); ReLU and the 2x2 max are fused as in the f32 kernels, and each layer's output is
// rounded to bf16 (nearest even) when it is stored for the next one. bf16 values are their raw
// bits, std::uint16_t.
//
// Activations: NHWC rows of bf16, in_stride values per pixel (4 or a multiple of 8, so pairs and
// quads of channels never straddle two pixels); padded channels hold 0.
// Weights: [out_stride / block][tap][group][16 lanes][2] bf16, 32 values per (block, tap, group),
// zero where the output or input channel does not exist. A group is the input channels one
// broadcast load brings to every lane; lane l, element e holds the weight of output channel co and
// input channel g * G + ch of the group:
//   block 16:                    G = 2, co = l,     ch = e            (one pair per pixel load)
//   block 8:                     G = 4, co = l / 2, ch = 2 (l % 2) + e (a quad per load)
//   block 4, in_stride 4:        G = 4, co = l / 4, ch = 2 (l % 2) + e (lanes l / 2 % 2 = 0, 1:
//                                the two conv columns of a pooled pixel, one 128-bit load)
//   block 4, in_stride 8k:       G = 8, co = l / 4, ch = 2 (l % 4) + e (an octet per load)
// groups = ceil(cin / G). Per output value the sum runs over taps, then groups, each dot product
// adding its two products in the order the instruction defines.
namespace bf16 {

// conv3x3 -> ReLU -> maxpool2 as RowKernel, over bf16 rows into bf16 output.
using RowKernel16 = void (*)(const std::uint16_t* const rows[4], int wout, const std::uint16_t* w,
                             const float* b, std::uint16_t* out, const ConvGeom& g);
RowKernel16 row_kernel(const ConvGeom& g);

// FC1 + ReLU as Fc1Kernel over bf16 inputs x [NB][k_len] (k_len even) and the live input pairs
// kps[0..n_kps) (pair p = inputs 2p, 2p + 1; a pair is left out when both are 0 for every patch).
// W is [hidden/8][k_len/2][8][2] bf16 (8 outputs x the pair's two weights); y is f32.
using Fc1Kernel16 = void (*)(const std::uint16_t* x, int k_len, const int* kps, int n_kps,
                             const std::uint16_t* wblk, const float* b, int ob0, int ob1,
                             int hidden, float* y);
extern const Fc1Kernel16 kFc1[kFcRows + 1];

// src[0..n) -> bf16, round to nearest even (conv1 computes in f32; its output is stored as bf16).
void round_row(const float* src, std::size_t n, std::uint16_t* dst);

}  // namespace bf16
}  // namespace pyinspect::student
