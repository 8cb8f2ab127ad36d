// See openvino_runner.hpp. Python binding: fastcpu_bindings.cpp; tests:
// tests/test_backend_openvino.py (the native whole-frame runner section) and
// tests/test_precision_guard.py.
#include "openvino_runner.hpp"

#include <cstdlib>
#include <cstring>
#include <new>
#include <openvino/core/version.hpp>
#include <openvino/openvino.hpp>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace pyinspect {

namespace {

[[noreturn]] void bad_arg(const std::string& msg) { throw std::invalid_argument(msg); }
[[noreturn]] void fail(const std::string& msg) { throw std::runtime_error(msg); }

using Clock = std::chrono::steady_clock;
double ms_between(Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
}

std::string shape_str(const ov::PartialShape& s) { return s.to_string(); }

// 64-byte aligned storage for the input batch (the CPU plugin's kernels like aligned rows).
struct AlignedFree {
    void operator()(void* p) const { std::free(p); }
};

ov::element::Type precision_type(const std::string& name) {
    if (name == "f32") return ov::element::f32;
    if (name == "bf16") return ov::element::bf16;
    bad_arg("precision must be 'f32' or 'bf16', got '" + name + "'");
}

// The port carrying tensor `name`, or a message listing the names there are.
template <typename Ports>
std::size_t find_port(const Ports& ports, const std::string& name, const std::string& what,
                      const std::string& model) {
    std::string names;
    for (std::size_t i = 0; i < ports.size(); ++i) {
        if (ports[i].get_names().count(name)) return i;
        for (const auto& n : ports[i].get_names()) names += (names.empty() ? "'" : ", '") + n + "'";
    }
    fail(model + ": has no " + what + " tensor '" + name + "'; its " + what + "s are [" + names +
         "]");
}

}  // namespace

struct OpenVinoRunner::Impl {
    ov::Core core;
    ov::CompiledModel compiled;
    ov::InferRequest request;
    std::unique_ptr<void, AlignedFree> input;  // tiler writes here; the request reads it
    std::vector<float> logits;                 // the request writes here (float32 outputs)
    ov::Tensor out_tensor;                     // float16 outputs: OpenVINO's own buffer
    bool out_is_f32 = true;
    std::size_t out_index = 0;
};

OpenVinoRunner::OpenVinoRunner(const OpenVinoRunnerOptions& o) : impl_(new Impl), options_(o) {
    check_openvino_version();
    if (o.channels != 1 && o.channels != 3) {
        bad_arg("channels must be 1 or 3, got " + std::to_string(o.channels));
    }
    if (o.mean.size() != static_cast<std::size_t>(o.channels) || o.std.size() != o.mean.size()) {
        bad_arg("mean and std need one value per channel (" + std::to_string(o.channels) + ")");
    }
    if (o.class_texture.empty() || o.class_texture.size() != o.class_defective.size()) {
        bad_arg("class_texture and class_defective must be non-empty and of equal length");
    }
    if (o.threads < 0 || o.tile_threads < 0) bad_arg("threads must be >= 0 (0 = default)");
    const ov::element::Type want = precision_type(o.precision);
    boxes_ = patch_grid(o.height, o.width, o.patch, o.rows, o.cols);  // throws on a bad grid
    const auto n = static_cast<std::int64_t>(boxes_.size());
    num_classes_ = static_cast<std::int64_t>(o.class_texture.size());

    std::shared_ptr<ov::Model> model;
    try {
        model = impl_->core.read_model(o.model_path);
    } catch (const std::exception& e) {
        fail(o.model_path + ": not a loadable model (" + std::string(e.what()).substr(0, 300) + ")");
    }
    if (model->inputs().size() != 1) {
        fail(o.model_path + ": expected exactly one input tensor, got " +
             std::to_string(model->inputs().size()));
    }
    find_port(model->inputs(), o.input_name, "input", o.model_path);
    const ov::PartialShape in_shape = model->input(0).get_partial_shape();
    const ov::PartialShape expect{ov::Dimension(), o.channels, o.patch, o.patch};
    if (!in_shape.compatible(expect)) {
        fail(o.model_path + ": input '" + o.input_name + "' has shape " + shape_str(in_shape) +
             ", the sidecar expects [?," + std::to_string(o.channels) + "," +
             std::to_string(o.patch) + "," + std::to_string(o.patch) + "]");
    }
    const ov::element::Type in_type = o.float16_input ? ov::element::f16 : ov::element::f32;
    if (model->input(0).get_element_type() != in_type) {
        fail(o.model_path + ": input '" + o.input_name + "' is " +
             model->input(0).get_element_type().get_type_name() + ", the sidecar expects " +
             in_type.get_type_name());
    }
    impl_->out_index = find_port(model->outputs(), o.output_name, "output", o.model_path);
    const ov::element::Type out_type = model->output(impl_->out_index).get_element_type();
    if (out_type != ov::element::f32 && out_type != ov::element::f16) {
        fail(o.model_path + ": output '" + o.output_name + "' is " + out_type.get_type_name() +
             ", expected f32 or f16");
    }
    try {
        model->reshape({{o.input_name, ov::PartialShape{n, o.channels, o.patch, o.patch}}});
    } catch (const std::exception& e) {
        fail(o.model_path + ": cannot use batch " + std::to_string(n) + " (" + e.what() + ")");
    }
    const ov::PartialShape out_shape = model->output(impl_->out_index).get_partial_shape();
    if (out_shape != ov::PartialShape{n, num_classes_}) {
        fail(o.model_path + ": output '" + o.output_name + "' has shape " + shape_str(out_shape) +
             ", the sidecar's class table expects [" + std::to_string(n) + "," +
             std::to_string(num_classes_) + "]");
    }

    ov::AnyMap config{ov::hint::performance_mode(ov::hint::PerformanceMode::LATENCY),
                      ov::num_streams(1), ov::hint::inference_precision(want)};
    if (o.threads > 0) config.emplace(ov::inference_num_threads(o.threads));
    try {
        impl_->compiled = impl_->core.compile_model(model, "CPU", config);
    } catch (const std::exception& e) {
        fail(o.model_path + ": OpenVINO could not compile it (" +
             std::string(e.what()).substr(0, 300) + ")");
    }
    const ov::element::Type got = impl_->compiled.get_property(ov::hint::inference_precision);
    if (got != want) {  // the CPU plugin quietly falls back; a precision is never changed quietly
        fail("OpenVINO compiled " + o.model_path + " with inference precision " +
             got.get_type_name() + ", not " + want.get_type_name() +
             " as asked (this CPU has no native " + want.get_type_name() + ")");
    }
    impl_->request = impl_->compiled.create_infer_request();

    // Input: our own aligned buffer, wrapped (not copied) as the request's input tensor.
    const std::size_t elems = static_cast<std::size_t>(n * o.channels * o.patch * o.patch);
    const std::size_t bytes = ((elems * in_type.size() + 63) / 64) * 64;
    impl_->input.reset(std::aligned_alloc(64, bytes));
    if (!impl_->input) throw std::bad_alloc();
    std::memset(impl_->input.get(), 0, bytes);
    const ov::Shape shape{static_cast<std::size_t>(n), static_cast<std::size_t>(o.channels),
                          static_cast<std::size_t>(o.patch), static_cast<std::size_t>(o.patch)};
    impl_->request.set_input_tensor(ov::Tensor(in_type, shape, impl_->input.get()));
    // Output: float32 logits land in our vector; float16 ones stay in OpenVINO's tensor.
    impl_->out_is_f32 = out_type == ov::element::f32;
    impl_->logits.assign(static_cast<std::size_t>(n * num_classes_), 0.f);
    if (impl_->out_is_f32) {
        impl_->request.set_output_tensor(
            impl_->out_index,
            ov::Tensor(ov::element::f32,
                       ov::Shape{static_cast<std::size_t>(n), static_cast<std::size_t>(num_classes_)},
                       impl_->logits.data()));
    }
}

OpenVinoRunner::~OpenVinoRunner() = default;

VoteOutput OpenVinoRunner::run(const FrameView& frame, double threshold, StageTimes& times) {
    const OpenVinoRunnerOptions& o = options_;
    if (frame.height != o.height || frame.width != o.width) {
        bad_arg("frame is " + std::to_string(frame.height) + "x" + std::to_string(frame.width) +
                " (HxW) but this runner was compiled for " + std::to_string(o.height) + "x" +
                std::to_string(o.width) + "; build a runner for that size");
    }
    const auto n = static_cast<std::int64_t>(boxes_.size());
    const auto t0 = Clock::now();
    const OutView out{impl_->input.get(), o.float16_input ? OutDType::Float16 : OutDType::Float32,
                      n, o.channels, o.patch};
    tile_into(frame, out, boxes_.data(), boxes_.size(), o.mean, o.std, o.tile_threads);
    const auto t1 = Clock::now();
    try {
        impl_->request.infer();
    } catch (const std::exception& e) {
        fail("OpenVINO failed on " + o.model_path + ": " + std::string(e.what()).substr(0, 300));
    }
    if (!impl_->out_is_f32) {
        const ov::Tensor t = impl_->request.get_output_tensor(impl_->out_index);
        const auto* h = t.data<const ov::float16>();
        for (std::size_t i = 0; i < impl_->logits.size(); ++i) {
            impl_->logits[i] = static_cast<float>(h[i]);
        }
    }
    const auto t2 = Clock::now();
    static_assert(sizeof(bool) == sizeof(std::uint8_t), "class_defective is passed as bool");
    VoteOutput verdict =
        vote(impl_->logits.data(), n, num_classes_, o.class_texture.data(),
             static_cast<std::int64_t>(o.class_texture.size()),
             reinterpret_cast<const bool*>(o.class_defective.data()),
             static_cast<std::int64_t>(o.class_defective.size()), o.is_logits, threshold);
    const auto t3 = Clock::now();
    times.tile_ms = ms_between(t0, t1);
    times.infer_ms = ms_between(t1, t2);
    times.vote_ms = ms_between(t2, t3);
    times.total_ms = ms_between(t0, t3);
    return verdict;
}

const float* OpenVinoRunner::logits() const { return impl_->logits.data(); }

const float* OpenVinoRunner::input() const {
    return options_.float16_input ? nullptr : static_cast<const float*>(impl_->input.get());
}

std::string OpenVinoRunner::compiled_precision() const {
    return impl_->compiled.get_property(ov::hint::inference_precision).get_type_name();
}

int OpenVinoRunner::compiled_threads() const {
    return impl_->compiled.get_property(ov::inference_num_threads);
}

std::string openvino_build_version() {
    return std::to_string(OPENVINO_VERSION_MAJOR) + "." + std::to_string(OPENVINO_VERSION_MINOR) +
           "." + std::to_string(OPENVINO_VERSION_PATCH);
}

std::string openvino_runtime_version() { return ov::get_openvino_version().buildNumber; }

void check_openvino_version() {
    const std::string built = openvino_build_version();
    const std::string loaded = openvino_runtime_version();
    // buildNumber is "<major>.<minor>.<patch>-<build>-<hash>-<branch>"; the release must match.
    if (loaded.compare(0, built.size() + 1, built + "-") != 0 && loaded != built) {
        fail("pyinspect's native OpenVINO runner was built against OpenVINO " + built +
             " but OpenVINO " + loaded + " is loaded; reinstall pyinspect against this OpenVINO"
             " (pip install --no-build-isolation -e .) or install openvino==" + built);
    }
}

}  // namespace pyinspect
