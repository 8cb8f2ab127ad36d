// A direct CPU engine for the paper's student family (Table 1: [conv3x3 -> ReLU -> maxpool2] x 5
// -> FC -> ReLU -> FC, conv widths C1..C5 of 1 to 64 channels, any FC1 width and class count)
// that runs a whole gray frame's patches at once, reading the uint8 frame itself (no tile
// buffer) and sharing the work of overlapping patches exactly.
//
// Widths: every layer's output is stored with its channels padded to 4 (at most 4 channels) or
// a multiple of 8, with zero weights and a zero bias for the padded ones, so they hold ReLU(0) = 0
// and the next layer reads only the real channels; FC1's width is padded to a multiple of 8 the
// same way. The kernels run over blocks of 16, 8 or 4 output channels, with the input channel
// count compiled in for the paper's widths (1, 4, 8, 16) and read at run time otherwise.
//
// Why it is exact: conv3x3 (zero padding) -> ReLU -> maxpool2 maps a patch's feature map to one
// of half the size. Let F_L be that map computed once over the union of all patches (zero padding
// at the union's border) and P_L the map of one patch (zero padding at the patch's border). When
// every patch offset is a multiple of 2^L, P_L[i][j] == F_L[o + i][o + j] for all i, j except the
// outermost ring (i or j in {0, S_L - 1}): by induction, an interior pooled pixel only reads
// interior pixels of the layer below. So each layer is computed once over the frame, plus the
// ring of every patch, recomputed from the patch's own border band (4 rows / columns). On the
// 3x3 grid of a 512x512 frame this is 40 % fewer multiply-adds than 9 separate patches (at the
// paper's widths), and the results equal a per-patch computation up to float summation order
// (tests compare with ONNX Runtime and OpenVINO). Frames whose patch offsets are not multiples
// of 16 run patch by patch.
//
// Requires AVX2 + FMA (checked at run time: student_engine_supported()). Kernel levels: AVX2 + FMA
// for every layer, and AVX-512F for the layers that gain from it (blocks of 16 output channels,
// conv1), every level compiled in and picked at construction from the CPU's features
// (student_kernel_isas()); both give the same bits.
//
// Precision: f32 (the default and the reference), or bf16 on a CPU with AVX512-BF16 and AVX512VL
// (student_kernel_precisions()): conv2..conv5 and FC1 then multiply bf16 weights (rounded once,
// here) by bf16 activations with f32 accumulation (student_kernels_bf16.cpp), every feature map
// and FC1's input is stored in bf16 (rounded to nearest even), and conv1 and FC2 stay f32 (conv1
// on the f32 level `isa` names). The shared computation is as exact in bf16 as in f32 (each value
// is computed the same way wherever it lies in a row); the logits differ from f32 by bf16's
// rounding (about 3 significant digits). No Python in here; std::invalid_argument for bad
// weights or frames.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tiling.hpp"

namespace pyinspect {

// Weights in framework order (PyTorch / ONNX), as read from the model; the engine re-lays them.
struct StudentWeights {
    std::vector<int> widths;                 // output channels of conv1..conv5, 1..64 each
    int in_channels = 1;                     // conv1 input channels in the graph (1, or 3 = gray
                                             // replicated: the engine sums conv1 over them)
    std::vector<std::vector<float>> conv_w;  // 5 x [Cout][Cin][3][3]
    std::vector<std::vector<float>> conv_b;  // 5 x [Cout]
    // What conv1 sees: in-bounds pixel x (0..255) -> x * input_scale + input_offset; outside the
    // patch -> pad_value (a constant Pad before a pad-0 conv1; 0 for a zero-padded conv1).
    float input_scale = 1.f, input_offset = 0.f, pad_value = 0.f;
    std::vector<float> fc1_w;  // [hidden][C5 * 7 * 7], input in NCHW flatten order; any hidden
    std::vector<float> fc1_b;  // [hidden]
    std::vector<float> fc2_w;  // [classes][hidden]
    std::vector<float> fc2_b;  // [classes]
};

struct StudentTimes {
    double layers_ms[5] = {0, 0, 0, 0, 0};  // conv1..conv5 incl. ReLU, pool and patch rings
    double fc_ms = 0;                       // both fully connected layers
    double total_ms = 0;
};

// Kernel levels: Auto = the best this CPU has; a named level must be one the CPU has.
enum class KernelIsa { Auto, Avx2, Avx512f };
// Arithmetic of conv2..conv5 and FC1: f32, or bf16 products with f32 sums (the CPU must have it).
enum class KernelPrecision { F32, Bf16 };

class StudentEngine {
public:
    static constexpr int kPatch = 224;

    // threads: 1.. (the calling thread is one of them; the others are started once, here).
    StudentEngine(const StudentWeights& weights, int threads, KernelIsa isa = KernelIsa::Auto,
                  KernelPrecision precision = KernelPrecision::F32);
    ~StudentEngine();
    StudentEngine(const StudentEngine&) = delete;
    StudentEngine& operator=(const StudentEngine&) = delete;

    // Logits [n][classes] of the 224x224 patches `boxes` of a gray frame (channels == 1).
    // Not reentrant: one call at a time per engine.
    void infer(const FrameView& frame, const Box* boxes, std::size_t n, float* logits,
               StudentTimes* times = nullptr);

    int num_classes() const;
    int threads() const;
    // Whether the last infer() shared work between patches (offsets were multiples of 16).
    bool last_shared() const;
    // The kernel level in use: "avx2" or "avx512f" (in bf16 precision: conv1's).
    const char* isa() const;
    // The precision in use: "f32" or "bf16".
    const char* precision() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// True when this CPU has AVX2 and FMA (the engine's kernels need both).
bool student_engine_supported();

// The kernel levels this CPU runs, lowest first: {"avx2", "avx512f"}, {"avx2"} or {}.
std::vector<std::string> student_kernel_isas();

// The precisions this CPU runs: {"f32", "bf16"}, {"f32"} or {}.
std::vector<std::string> student_kernel_precisions();

}  // namespace pyinspect
