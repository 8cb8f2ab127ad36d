// Whole-frame inference inside the core: tile -> OpenVINO infer -> vote in one call, no Python and
// no copy between the stages. The tiler writes straight into the memory the infer request reads
// (an ov::Tensor wrapping the runner's own aligned buffer) and the voter reads the logits where
// OpenVINO wrote them. Built only when CMake finds OpenVINO (PYINSPECT_WITH_OPENVINO); the Python
// OpenVINO backend is the fallback. Errors: std::invalid_argument for bad arguments,
// std::runtime_error for model/engine problems (the message names the file and the tensor).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tiling.hpp"
#include "voting.hpp"

namespace pyinspect {

struct OpenVinoRunnerOptions {
    std::string model_path;   // .onnx or OpenVINO IR .xml
    std::string input_name;   // the sidecar's input.name
    std::string output_name;  // the sidecar's output.name
    std::int64_t channels = 1;
    std::int64_t patch = 224;
    std::int64_t height = 512, width = 512;  // frame size the runner is compiled for
    std::int64_t rows = 0, cols = 0;         // grid (0 = smallest covering), as patch_grid
    std::vector<double> mean, std;           // the sidecar's normalisation, one per channel
    bool float16_input = false;              // the model's input dtype (sidecar input.dtype)
    std::string precision = "f32";           // INFERENCE_PRECISION_HINT, always set explicitly
    int threads = 0;                         // inference threads (0: OpenVINO's default)
    int tile_threads = 1;                    // tiler threads (0: auto)
    std::vector<std::int32_t> class_texture;
    std::vector<std::uint8_t> class_defective;  // 0/1 per class
    bool is_logits = true;
};

class OpenVinoRunner {
public:
    explicit OpenVinoRunner(const OpenVinoRunnerOptions& options);
    ~OpenVinoRunner();
    OpenVinoRunner(const OpenVinoRunner&) = delete;
    OpenVinoRunner& operator=(const OpenVinoRunner&) = delete;

    // One frame (uint8, exactly height x width) -> verdict. Not reentrant: one call at a time.
    VoteOutput run(const FrameView& frame, double threshold, StageTimes& times);

    const std::vector<Box>& boxes() const { return boxes_; }
    std::int64_t num_classes() const { return num_classes_; }
    const float* logits() const;  // [boxes().size(), num_classes()] of the last run
    const float* input() const;   // the tiled batch of the last run (float32 inputs only)
    std::string compiled_precision() const;
    int compiled_threads() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
    OpenVinoRunnerOptions options_;
    std::vector<Box> boxes_;
    std::int64_t num_classes_ = 0;
};

// "2026.4.1": the OpenVINO release whose headers this file was compiled against.
std::string openvino_build_version();
// The loaded libopenvino's build number, e.g. "2026.4.1-22982-e213a147257-releases/2026/4".
std::string openvino_runtime_version();
// Throws std::runtime_error naming both versions when the loaded library is another release.
void check_openvino_version();

}  // namespace pyinspect
