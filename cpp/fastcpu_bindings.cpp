// pybind11 glue for pyinspect._fastcpu, the fast CPU paths: the whole-frame OpenVINO runner
// (openvino_runner.hpp) and the direct student engine (student_engine.hpp). A module of its own,
// not part of pyinspect._core, because it links libopenvino.so.<release>: if OpenVINO is missing
// or another release, only this import fails (with a clear message from
// pyinspect/backends/openvino_native.py) and the core keeps working.
// Tests: tests/test_backend_openvino.py (native section), tests/test_fast_student.py.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "openvino_runner.hpp"
#include "student_engine.hpp"

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

std::vector<float> floats(const py::dict& d, const char* key) {
    if (!d.contains(key)) bad(std::string("student weights: missing '") + key + "'");
    const auto a = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(d[key]);
    if (!a) bad(std::string("student weights: '") + key + "' is not a float array");
    return {a.data(), a.data() + a.size()};
}

// The student engine plus the voter: one GIL-free call per frame.
struct StudentRunner {
    std::unique_ptr<pyinspect::StudentEngine> engine;
    std::vector<float> logits;
    std::vector<std::int32_t> class_texture;
    std::unique_ptr<bool[]> class_defective;
    std::int64_t classes = 0;
    bool is_logits = true;
};

std::vector<pyinspect::Box> box_list(const py::array_t<std::int32_t, py::array::c_style>& boxes) {
    if (boxes.ndim() != 2 || boxes.shape(1) != 4) bad("boxes must have shape (N, 4)");
    std::vector<pyinspect::Box> out(static_cast<std::size_t>(boxes.shape(0)));
    if (!out.empty()) std::memcpy(out.data(), boxes.data(), out.size() * sizeof(pyinspect::Box));
    return out;
}

}  // namespace

PYBIND11_MODULE(_fastcpu, m) {
    m.doc() = "pyinspect's fast CPU paths: whole-frame OpenVINO runner, direct student engine.";
    m.def("student_engine_supported", &pyinspect::student_engine_supported,
          "Whether this CPU has AVX2 and FMA (the student engine's kernels need both).");

    py::class_<StudentRunner>(m, "StudentRunner")
        .def(py::init([](const py::dict& w, int in_channels, float input_scale,
                         float input_offset, float pad_value, int threads,
                         std::vector<std::int32_t> class_texture, std::vector<bool> class_defective,
                         bool is_logits) {
                 pyinspect::StudentWeights sw;
                 sw.widths = {4, 8, 16, 4, 4};
                 sw.in_channels = in_channels;
                 for (int l = 0; l < 5; ++l) {
                     const std::string i = std::to_string(l + 1);
                     sw.conv_w.push_back(floats(w, ("conv" + i + "_w").c_str()));
                     sw.conv_b.push_back(floats(w, ("conv" + i + "_b").c_str()));
                 }
                 sw.fc1_w = floats(w, "fc1_w");
                 sw.fc1_b = floats(w, "fc1_b");
                 sw.fc2_w = floats(w, "fc2_w");
                 sw.fc2_b = floats(w, "fc2_b");
                 sw.input_scale = input_scale;
                 sw.input_offset = input_offset;
                 sw.pad_value = pad_value;
                 auto r = std::make_unique<StudentRunner>();
                 r->engine = std::make_unique<pyinspect::StudentEngine>(sw, threads);
                 r->classes = r->engine->num_classes();
                 if (class_texture.size() != static_cast<std::size_t>(r->classes) ||
                     class_defective.size() != class_texture.size()) {
                     bad("class tables have " + std::to_string(class_texture.size()) +
                         " entries, the model has " + std::to_string(r->classes) + " classes");
                 }
                 r->class_texture = std::move(class_texture);
                 r->class_defective.reset(new bool[class_defective.size()]);
                 for (std::size_t k = 0; k < class_defective.size(); ++k) {
                     r->class_defective[k] = class_defective[k];
                 }
                 r->is_logits = is_logits;
                 return r;
             }),
             py::arg("weights"), py::arg("in_channels"), py::arg("input_scale"),
             py::arg("input_offset"), py::arg("pad_value"), py::arg("threads"),
             py::arg("class_texture"), py::arg("class_defective"), py::arg("is_logits"))
        .def(
            "run",
            [](StudentRunner& self, const py::buffer& frame,
               const py::array_t<std::int32_t, py::array::c_style>& boxes, double threshold) {
                const py::buffer_info info = frame.request();  // holds the frame until return
                const pyinspect::FrameView fv = frame_view(info);
                const std::vector<pyinspect::Box> bx = box_list(boxes);
                const auto n = static_cast<std::int64_t>(bx.size());
                pyinspect::StudentTimes st;
                pyinspect::StageTimes times;
                pyinspect::VoteOutput r;
                bool shared = false;
                {
                    py::gil_scoped_release release;
                    const auto t0 = std::chrono::steady_clock::now();
                    self.logits.resize(static_cast<std::size_t>(n * self.classes));
                    self.engine->infer(fv, bx.data(), bx.size(), self.logits.data(), &st);
                    const auto t1 = std::chrono::steady_clock::now();
                    r = pyinspect::vote(self.logits.data(), n, self.classes,
                                        self.class_texture.data(), self.classes,
                                        self.class_defective.get(), self.classes, self.is_logits,
                                        threshold);
                    const auto t2 = std::chrono::steady_clock::now();
                    using ms = std::chrono::duration<double, std::milli>;
                    times.tile_ms = 0;  // the engine reads the frame itself
                    times.infer_ms = ms(t1 - t0).count();
                    times.vote_ms = ms(t2 - t1).count();
                    times.total_ms = ms(t2 - t0).count();
                    shared = self.engine->last_shared();
                }
                py::dict d = to_dict(r, times);
                py::list layers;
                for (double v : st.layers_ms) layers.append(v);
                d["layers_ms"] = layers;
                d["fc_ms"] = st.fc_ms;
                d["shared"] = shared;
                return d;
            },
            py::arg("frame"), py::arg("boxes").noconvert(), py::arg("threshold") = -1.0,
            "Infer and vote one gray frame's patches; GIL released throughout. Not reentrant.")
        .def("logits",
             [](const StudentRunner& self) {
                 const auto k = static_cast<py::ssize_t>(self.classes);
                 const auto n = static_cast<py::ssize_t>(self.logits.size()) / std::max<py::ssize_t>(k, 1);
                 py::array_t<float> a({n, k});
                 if (n) std::memcpy(a.mutable_data(), self.logits.data(), sizeof(float) * n * k);
                 return a;
             },
             "A copy of the last run's logits [N, K].")
        .def_property_readonly("threads",
                               [](const StudentRunner& self) { return self.engine->threads(); });

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
