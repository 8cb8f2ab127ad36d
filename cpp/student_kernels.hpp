// Internal: the student engine's compute kernels (student_kernels_avx2.cpp, the only file built
// with -mavx2 -mfma) and the network shape they are written for. student_engine.cpp calls them,
// and only after student_engine_supported(). Plain pointers in and out, no allocation.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pyinspect::student {

constexpr int kLayers = 5;
constexpr int kCout[kLayers] = {4, 8, 16, 4, 4};
constexpr int kCin[kLayers] = {1, 4, 8, 16, 4};  // conv1 after summing replicated gray channels
constexpr int kFcRows = 12;                      // patches per FC1 pass (accumulators in registers)

// conv3x3 -> ReLU -> maxpool2 for one pooled output row from 4 zero-padded input rows: rows[t]
// points at padded column -1 of input row 2i - 1 + t; conv column x reads padded columns
// x .. x + 2. Output: wout pooled pixels, NHWC (cout floats each). w is [tap][cin][cout] (conv1:
// [tap][8], each tap's 4 channel weights twice, over "dup4" rows; see dup4_row).
using RowKernel = void (*)(const float* const rows[4], int wout, const float* w, const float* b,
                           float* out);

// FC1 + ReLU for output blocks [ob0, ob1) of NB patches: y[q][o] = relu(sum_k x[q][k] W[k][o] +
// b[o]) over the inputs k in ks[0..n_ks) only (the caller drops inputs that are 0 for every patch;
// adding 0 * w leaves a float sum unchanged, so this is exact). W is blocked as [hidden/8][k][8].
using Fc1Kernel = void (*)(const float* x, int k_len, const int* ks, int n_ks, const float* wblk,
                           const float* b, int ob0, int ob1, int hidden, float* y);

namespace avx2 {

// conv1 .. conv5 (the paper's widths; index = 0-based layer).
extern const RowKernel kRowKernels[kLayers];
// Indexed by the number of patches in the pass, 1 .. kFcRows (entry 0 is null).
extern const Fc1Kernel kFc1[kFcRows + 1];

// sum_i a[i] b[i] (8-lane partial sums, then the horizontal sum, then a scalar tail).
float dot(const float* a, const float* b, int n);

// uint8 pixels src[c * step], c < n -> dst: n + 2 pixels of 4 equal floats ("dup4"), a zero
// pixel, the converted v = x * scale + offset (product and sum rounded separately), a zero pixel.
void dup4_row(const std::uint8_t* src, std::int64_t step, int n, float scale, float offset,
              float* dst);

}  // namespace avx2
}  // namespace pyinspect::student
