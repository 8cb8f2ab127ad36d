// Patch-grid geometry and the fused crop/convert/normalise kernel. No Python in here: bindings.cpp
// turns buffers into the views below and maps std::invalid_argument to ValueError.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace pyinspect {

// One patch: top-left corner (x, y) and size (w, h) in frame pixels.
struct Box {
    std::int32_t x, y, w, h;
};

// Start offsets of `count` patches of size `patch` along an axis of `length` pixels:
// position(i) = round_half_up(i * (length - patch) / (count - 1)), so the first is 0 and the last
// is flush with the border (length - patch); count == 1 gives {0}. count == 0 picks the smallest
// count that covers the axis: 1 when length == patch, else 1 + ceil((length - patch) / patch).
// Throws std::invalid_argument when length < patch, patch < 1, count < 0, an explicit count
// leaves a gap (fewer patches than the smallest covering count), or count > 2^20 (also the limit
// on a whole grid's patches: hostile sizes are refused rather than allocated).
std::vector<std::int32_t> axis_positions(std::int64_t length, std::int64_t patch,
                                         std::int64_t count = 0);

// Row-major grid (top row first, left to right) of rows x cols patches (0 = smallest covering).
std::vector<Box> patch_grid(std::int64_t height, std::int64_t width, std::int64_t patch,
                            std::int64_t rows = 0, std::int64_t cols = 0);

// How a frame stores a pixel: uint8 (any layout below), or uint16 in native byte order (gray
// only: the 10-, 12- and 16-bit mono cameras; a pixel may sit at any byte address).
enum class PixelType { UInt8, UInt16 };

// A frame the kernel reads in place. Strides are in bytes and may be negative or zero.
// channels is 1 (gray; H x W or H x W x 1), 3 (BGR) or 4 (BGRA; alpha ignored).
struct FrameView {
    const std::uint8_t* data;  // the first byte of pixel (0, 0)
    std::int64_t height, width, channels;
    std::int64_t stride_y, stride_x, stride_c;
    PixelType pixel;
};

enum class OutDType { Float32, Float16 };

// A C-contiguous [n, channels, patch, patch] output the kernel overwrites completely.
struct OutView {
    void* data;
    OutDType dtype;
    std::int64_t n, channels, patch;
};

// Writes out[i, c] = crop(frame, boxes[i]) -> channel rule -> v * scale[c] + offset[c], where
// scale[c] = float(1 / (max_value std[c])) and offset[c] = float(-mean[c] / std[c]) (rounded from
// double; the product and the sum are rounded separately, never fused, so results are the same on
// every CPU path). Channel rule: gray -> replicated; BGR(A) -> C_out 3 is RGB order; BGR(A) ->
// C_out 1 is luma = (0.299f R + 0.587f G) + 0.114f B in float32. float16 output is
// round-to-nearest-even. max_value is the pixel value that maps to 1 before mean/std: 255 for a
// uint8 frame (nothing else is accepted), 2^bits - 1 in [256, 65535] for a uint16 one (gray
// only). uint16 values above max_value are not clipped: they come out above 1 before mean/std.
// threads: 0 = auto (2 when the work pays for a thread), else that many (capped at n * patch).
// Checks shapes, boxes, mean/std, max_value (throws std::invalid_argument); never allocates per
// pixel.
void tile_into(const FrameView& frame, const OutView& out, const Box* boxes, std::size_t n_boxes,
               const std::vector<double>& mean, const std::vector<double>& std,
               int threads = 0, double max_value = 255.0);

// The thread count tile_into uses for `threads` on this frame and output (0 = auto).
int resolve_threads(const FrameView& frame, const OutView& out, int threads);

// IEEE binary32 -> binary16, round-to-nearest-even, subnormals kept, overflow -> inf, NaN kept
// quiet (payload truncated). Bit-exact with NumPy's astype(np.float16).
std::uint16_t float_to_half(float value);

// Name of the CPU code path tile_into uses ("avx2+f16c" or "baseline"), for benchmarks/reports.
// Chosen once from the CPU; the environment variable PYINSPECT_TILE_ISA=baseline forces baseline.
const char* tile_kernel_isa();

}  // namespace pyinspect
