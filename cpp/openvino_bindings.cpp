// pybind11 glue for pyinspect._openvino_native: the whole-frame OpenVINO runner (see
// openvino_runner.hpp). A module of its own, not part of pyinspect._core, because it links
// libopenvino.so.<release>: if OpenVINO is missing or another release, only this import fails
// (with a clear message from pyinspect/backends/openvino_native.py) and the core keeps working.
// Tests: tests/test_backend_openvino.py (native section).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "openvino_runner.hpp"

namespace py = pybind11;

namespace {

[[noreturn]] void bad(const std::string& msg) { throw std::invalid_argument(msg); }

// A uint8 H x W or H x W x C frame, read in place (never copied).
pyinspect::FrameView frame_view(const py::buffer_info& info) {
    const std::string& f = info.format;
    const bool u8 = info.itemsize == 1 && (f == "B" || (f.size() == 2 && f[1] == 'B'));
    if (!u8) bad("frame must be uint8, got buffer format '" + f + "'");
    if (info.ndim != 2 && info.ndim != 3) {
        bad("frame must be 2-D (H, W) or 3-D (H, W, C), got " + std::to_string(info.ndim) + "-D");
    }
    const bool color = info.ndim == 3;
    return {static_cast<const std::uint8_t*>(info.ptr), info.shape[0], info.shape[1],
            color ? info.shape[2] : 1, info.strides[0], info.strides[1],
            color ? info.strides[2] : 0};
}

template <typename T>
py::array_t<T> to_array(const std::vector<T>& v) {
    py::array_t<T> a(static_cast<py::ssize_t>(v.size()));
    if (!v.empty()) std::memcpy(a.mutable_data(), v.data(), v.size() * sizeof(T));
    return a;
}

py::dict to_dict(const pyinspect::VoteOutput& r, const pyinspect::StageTimes& t) {
    py::array_t<bool> defective(static_cast<py::ssize_t>(r.patch_defective.size()));
    if (!r.patch_defective.empty()) {
        std::memcpy(defective.mutable_data(), r.patch_defective.data(), r.patch_defective.size());
    }
    py::dict d;
    d["patch_class"] = to_array(r.patch_class);
    d["patch_score"] = to_array(r.patch_score);
    d["patch_defect_prob"] = to_array(r.patch_defect_prob);
    d["patch_defective"] = defective;
    d["texture"] = r.texture;
    d["defective"] = r.defective;
    d["texture_votes"] = to_array(r.texture_votes);
    d["tile_ms"] = t.tile_ms;
    d["infer_ms"] = t.infer_ms;
    d["vote_ms"] = t.vote_ms;
    d["total_ms"] = t.total_ms;
    return d;
}

}  // namespace

PYBIND11_MODULE(_openvino_native, m) {
    m.doc() = "pyinspect's whole-frame OpenVINO runner (tile -> infer -> vote in C++).";
    m.def("build_version", &pyinspect::openvino_build_version,
          "OpenVINO release this module was compiled against, e.g. '2026.4.1'.");
    m.def("runtime_version", &pyinspect::openvino_runtime_version,
          "Build number of the libopenvino actually loaded.");

    py::class_<pyinspect::OpenVinoRunner>(m, "FrameRunner")
        .def(py::init([](const std::string& model_path, const std::string& input_name,
                         const std::string& output_name, std::int64_t channels, std::int64_t patch,
                         std::int64_t height, std::int64_t width, std::int64_t rows,
                         std::int64_t cols, std::vector<double> mean, std::vector<double> stdev,
                         bool float16_input, const std::string& precision, int threads,
                         int tile_threads, std::vector<std::int32_t> class_texture,
                         std::vector<bool> class_defective, bool is_logits) {
                 pyinspect::OpenVinoRunnerOptions o;
                 o.model_path = model_path;
                 o.input_name = input_name;
                 o.output_name = output_name;
                 o.channels = channels;
                 o.patch = patch;
                 o.height = height;
                 o.width = width;
                 o.rows = rows;
                 o.cols = cols;
                 o.mean = std::move(mean);
                 o.std = std::move(stdev);
                 o.float16_input = float16_input;
                 o.precision = precision;
                 o.threads = threads;
                 o.tile_threads = tile_threads;
                 o.class_texture = std::move(class_texture);
                 o.class_defective.assign(class_defective.begin(), class_defective.end());
                 o.is_logits = is_logits;
                 py::gil_scoped_release release;  // reading and compiling take ~0.1 s
                 return new pyinspect::OpenVinoRunner(o);
             }),
             py::arg("model_path"), py::arg("input_name"), py::arg("output_name"),
             py::arg("channels"), py::arg("patch"), py::arg("height"), py::arg("width"),
             py::arg("rows"), py::arg("cols"), py::arg("mean"), py::arg("std"),
             py::arg("float16_input"), py::arg("precision"), py::arg("threads"),
             py::arg("tile_threads"), py::arg("class_texture"), py::arg("class_defective"),
             py::arg("is_logits"))
        .def(
            "run",
            [](pyinspect::OpenVinoRunner& self, const py::buffer& frame, double threshold) {
                const py::buffer_info info = frame.request();  // holds the frame until return
                const pyinspect::FrameView fv = frame_view(info);
                pyinspect::StageTimes times;
                pyinspect::VoteOutput r;
                {
                    py::gil_scoped_release release;
                    r = self.run(fv, threshold, times);
                }
                return to_dict(r, times);
            },
            py::arg("frame"), py::arg("threshold") = -1.0,
            "Tile, infer and vote one frame; GIL released throughout. Not reentrant.")
        .def_property_readonly("boxes",
                               [](const pyinspect::OpenVinoRunner& self) {
                                   const auto& b = self.boxes();
                                   py::array_t<std::int32_t> a(
                                       {static_cast<py::ssize_t>(b.size()), py::ssize_t{4}});
                                   if (!b.empty()) std::memcpy(a.mutable_data(), b.data(), b.size() * 16);
                                   return a;
                               })
        .def("logits",
             [](const pyinspect::OpenVinoRunner& self) {
                 const auto n = static_cast<py::ssize_t>(self.boxes().size());
                 const auto k = static_cast<py::ssize_t>(self.num_classes());
                 py::array_t<float> a({n, k});
                 std::memcpy(a.mutable_data(), self.logits(), sizeof(float) * n * k);
                 return a;
             },
             "A copy of the last run's logits [N, K].")
        .def_property_readonly("precision", &pyinspect::OpenVinoRunner::compiled_precision)
        .def_property_readonly("threads", &pyinspect::OpenVinoRunner::compiled_threads);
}
