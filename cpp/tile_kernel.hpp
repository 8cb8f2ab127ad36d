// Internal: what tiling.cpp hands to the per-ISA kernels (tile_kernel.inl).
#pragma once

#include <cstdint>
#include <cstring>

#include "tiling.hpp"

namespace pyinspect::detail {

// float32 -> float16 bits, round-to-nearest-even (the contract of pyinspect::float_to_half).
// Branch-free (every case computed, then selected) so loops over it vectorise; `static` so each
// translation unit keeps its own copy, compiled for its own ISA.
static inline std::uint16_t half_bits(float value) {
    std::uint32_t bits;
    std::memcpy(&bits, &value, sizeof bits);
    const std::uint32_t sign = (bits >> 16) & 0x8000u;
    const std::uint32_t mag = bits & 0x7fffffffu;
    // Normal half (|v| >= 2^-14): rebias the exponent (127 -> 15), round 13 bits away, ties to
    // even; a carry out of the mantissa correctly bumps the exponent.
    const std::uint32_t normal = (mag - 0x38000000u + 0x0fffu + ((mag >> 13) & 1u)) >> 13;
    // Subnormal half (|v| < 2^-14): adding 0.5f leaves the value in [0.5, 1), whose float32 ulp is
    // 2^-24 = the half subnormal step, so the FPU's ties-to-even addition does the rounding and
    // the low mantissa bits are the result (0x400, the smallest normal, comes out right too).
    float magnitude;
    std::memcpy(&magnitude, &mag, sizeof mag);
    const float shifted = magnitude + 0.5f;
    std::uint32_t shifted_bits;
    std::memcpy(&shifted_bits, &shifted, sizeof shifted_bits);
    const std::uint32_t subnormal = shifted_bits - 0x3f000000u;
    // >= 65520 rounds to inf; NaN stays a quiet NaN with the top payload bits.
    const std::uint32_t is_nan = 0u - static_cast<std::uint32_t>(mag > 0x7f800000u);
    const std::uint32_t special = 0x7c00u | (is_nan & (0x0200u | ((mag >> 13) & 0x03ffu)));
    // Selects as masks (all ones or zero), which the vectoriser handles without branches.
    const std::uint32_t is_sub = 0u - static_cast<std::uint32_t>(mag < 0x38800000u);
    const std::uint32_t is_big = 0u - static_cast<std::uint32_t>(mag >= 0x477ff000u);
    const std::uint32_t finite = (subnormal & is_sub) | (normal & ~is_sub);
    return static_cast<std::uint16_t>(sign | (special & is_big) | (finite & ~is_big));
}

// Validated arguments: every box lies inside the frame and matches the output's patch size.
struct KernelArgs {
    FrameView frame;
    void* out;
    OutDType dtype;
    std::int64_t patch;
    int out_channels;
    const Box* boxes;
    float scale[3];
    float offset[3];
};

// Fills output rows [row_begin, row_end) where row r is (box r / patch, patch row r % patch).
namespace baseline {
void run_rows(const KernelArgs& args, std::int64_t row_begin, std::int64_t row_end);
}
#if defined(PYINSPECT_HAVE_AVX2)
namespace avx2 {
void run_rows(const KernelArgs& args, std::int64_t row_begin, std::int64_t row_end);
}
#endif

}  // namespace pyinspect::detail
