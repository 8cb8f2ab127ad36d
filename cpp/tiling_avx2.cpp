// The tiling kernel compiled for AVX2 + F16C (CMake adds -mavx2 -mf16c to this file only);
// tiling.cpp calls it only after checking the CPU supports both.
#include <immintrin.h>

#include <cstdint>

#include "tile_kernel.hpp"

namespace pyinspect::detail::avx2 {
namespace {

// vcvtps2ph with round-to-nearest-even: bit-exact with the scalar float_to_half.
inline void store_half(std::uint16_t* dst, const float* src, std::int64_t n) {
    std::int64_t x = 0;
    for (; x + 8 <= n; x += 8) {
        const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(src + x), _MM_FROUND_TO_NEAREST_INT);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + x), h);
    }
    for (; x < n; ++x) dst[x] = half_bits(src[x]);
}

}  // namespace

#define PYINSPECT_STORE_HALF store_half
#include "tile_kernel.inl"
#undef PYINSPECT_STORE_HALF

// With AVX2 the arithmetic beats a lookup table in every mode
// (benchmarks/tiling_lut_vs_affine.cpp).
void run_rows(const KernelArgs& args, std::int64_t row_begin, std::int64_t row_end) {
    run_rows_affine(args, row_begin, row_end);
}

}  // namespace pyinspect::detail::avx2
