// pybind11 glue for pyinspect._fastcpu: the whole-frame OpenVINO runner (openvino_runner.hpp). A
// module of its own, not part of pyinspect._core, because it links libopenvino.so.<release>: if
// OpenVINO is missing or another release, only this import fails (with a clear message from
// pyinspect/runners/openvino_native.py) and the core keeps working.
// Tests: tests/test_backend_openvino.py (native section).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "openvino_runner.hpp"
#include "py_convert.hpp"

namespace py = pybind11;

namespace {

using namespace pyinspect::pyconv;

pyinspect::OpenVinoRunner* make_runner(
    const std::string& model_path, const std::string& input_name, const std::string& output_name,
    std::int64_t channels, std::int64_t patch, std::int64_t height, std::int64_t width,
    std::int64_t rows, std::int64_t cols, std::vector<double> mean, std::vector<double> stdev,
    bool float16_input, const std::string& precision, int threads, int tile_threads,
    std::vector<std::int32_t> class_texture, const std::vector<bool>& class_defective,
    bool is_logits) {
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
}

}  // namespace

PYBIND11_MODULE(_fastcpu, m) {
    m.doc() = "pyinspect's whole-frame OpenVINO runner (see pyinspect/_fastcpu.pyi).";
    m.def("build_version", &pyinspect::openvino_build_version,
          "OpenVINO release this module was compiled against, e.g. '2026.4.1'.");
    m.def("runtime_version", &pyinspect::openvino_runtime_version,
          "Build number of the libopenvino actually loaded.");

    py::class_<pyinspect::OpenVinoRunner>(m, "FrameRunner")
        .def(py::init(&make_runner), py::arg("model_path"), py::arg("input_name"),
             py::arg("output_name"), py::arg("channels"), py::arg("patch"), py::arg("height"),
             py::arg("width"), py::arg("rows"), py::arg("cols"), py::arg("mean"), py::arg("std"),
             py::arg("float16_input"), py::arg("precision"), py::arg("threads"),
             py::arg("tile_threads"), py::arg("class_texture"), py::arg("class_defective"),
             py::arg("is_logits"))
        .def(
            "run",
            [](pyinspect::OpenVinoRunner& self, const py::buffer& frame, double threshold) {
                const py::buffer_info info = frame.request();  // holds the frame until return
                const pyinspect::FrameView fv = frame_view(frame, info);
                pyinspect::StageTimes times;
                pyinspect::VoteOutput r;
                {
                    py::gil_scoped_release release;
                    r = self.run(fv, threshold, times);
                }
                return vote_dict(r, times);
            },
            py::arg("frame"), py::arg("threshold") = -1.0,
            "Tile, infer and vote one frame; GIL released throughout. Not reentrant.")
        .def_property_readonly("boxes",
                               [](const pyinspect::OpenVinoRunner& self) {
                                   return boxes_array(self.boxes());
                               })
        .def(
            "logits",
            [](const pyinspect::OpenVinoRunner& self) {
                return logits_array(self.logits(), static_cast<py::ssize_t>(self.boxes().size()),
                                    static_cast<py::ssize_t>(self.num_classes()));
            },
            "A copy of the last run's logits [N, K].")
        .def_property_readonly("precision", &pyinspect::OpenVinoRunner::compiled_precision)
        .def_property_readonly("threads", &pyinspect::OpenVinoRunner::compiled_threads);
}
