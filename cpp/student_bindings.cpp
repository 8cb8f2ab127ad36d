// pybind11 glue for the direct student engine in pyinspect._core: StudentRunner (engine + voter,
// one GIL-free call per frame), student_engine_supported(), student_kernel_isas() and
// student_kernel_precisions(). The engine's kernels need AVX2 and
// FMA: on an x86-64 build it is compiled in and the constructor refuses a CPU without them; on
// other architectures (no PYINSPECT_HAVE_STUDENT_ENGINE) StudentRunner is absent and
// student_engine_supported() is False. Python: pyinspect/runners/student.py; tests:
// tests/test_runner_student.py.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "py_convert.hpp"
#include "voting.hpp"

#ifdef PYINSPECT_HAVE_STUDENT_ENGINE
#include "student_engine.hpp"
#endif

namespace py = pybind11;

namespace pyinspect::pyconv {

#ifdef PYINSPECT_HAVE_STUDENT_ENGINE
namespace {

std::vector<float> floats(const py::dict& d, const char* key) {
    if (!d.contains(key)) fail(std::string("student weights: missing '") + key + "'");
    const auto a = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(d[key]);
    if (!a) fail(std::string("student weights: '") + key + "' is not a float array");
    return {a.data(), a.data() + a.size()};
}

// The student engine plus the voter.
struct StudentRunner {
    std::unique_ptr<StudentEngine> engine;
    std::vector<float> logits;  // [n][classes] of the last run
    std::vector<std::int32_t> class_texture;
    std::unique_ptr<bool[]> class_defective;
    std::int64_t classes = 0;
    bool is_logits = true;
    PixelType pixel = PixelType::UInt8;  // the frames input_scale was computed for
    std::vector<char> record;  // the last run's record (see run), reused
};

// One frame's result as one bytes object, so that the call returns a single Python object (the
// runner's Python side decodes it only when a field is read). Layout, native byte order; the
// reader is RECORD in pyinspect/runners/student.py:
//   float64 tile_ms, infer_ms, vote_ms, total_ms, layers_ms[5], fc_ms
//   int32 n, n_textures, texture, flags (bit 0: defective, bit 1: shared)
//   int32 patch_class[n], float32 patch_score[n], float32 patch_defect_prob[n],
//   int32 texture_votes[n_textures], uint8 patch_defective[n]
constexpr std::size_t kRecordHead = 10 * sizeof(double) + 4 * sizeof(std::int32_t);

template <typename T>
char* put(char* at, const T* src, std::size_t count) {
    if (count) std::memcpy(at, src, count * sizeof(T));
    return at + count * sizeof(T);
}

void pack_record(std::vector<char>& out, const VoteOutput& r, const StageTimes& t,
                 const StudentTimes& st, bool shared) {
    const std::size_t n = r.patch_class.size(), nt = r.texture_votes.size();
    out.resize(kRecordHead + n * (3 * 4 + 1) + nt * 4);
    const double times[10] = {t.tile_ms,        t.infer_ms,       t.vote_ms,
                              t.total_ms,       st.layers_ms[0],  st.layers_ms[1],
                              st.layers_ms[2],  st.layers_ms[3],  st.layers_ms[4],
                              st.fc_ms};
    const std::int32_t head[4] = {static_cast<std::int32_t>(n), static_cast<std::int32_t>(nt),
                                  r.texture, (r.defective ? 1 : 0) | (shared ? 2 : 0)};
    char* at = put(out.data(), times, 10);
    at = put(at, head, 4);
    at = put(at, r.patch_class.data(), n);
    at = put(at, r.patch_score.data(), n);
    at = put(at, r.patch_defect_prob.data(), n);
    at = put(at, r.texture_votes.data(), nt);
    put(at, r.patch_defective.data(), n);
}

std::unique_ptr<StudentRunner> make_runner(const py::dict& w, int in_channels, float input_scale,
                                           float input_offset, float pad_value, int threads,
                                           std::vector<std::int32_t> class_texture,
                                           const std::vector<bool>& class_defective,
                                           bool is_logits, const std::string& frame_dtype,
                                           const std::string& isa, const std::string& precision) {
    if (frame_dtype != "uint8" && frame_dtype != "uint16") {
        fail("frame_dtype must be 'uint8' or 'uint16', got '" + frame_dtype + "'");
    }
    if (isa != "auto" && isa != "avx2" && isa != "avx512f") {
        fail("isa must be 'auto', 'avx2' or 'avx512f', got '" + isa + "'");
    }
    const KernelIsa level = isa == "avx2"      ? KernelIsa::Avx2
                            : isa == "avx512f" ? KernelIsa::Avx512f
                                               : KernelIsa::Auto;
    if (precision != "f32" && precision != "bf16") {
        fail("precision must be 'f32' or 'bf16', got '" + precision + "'");
    }
    const KernelPrecision arith = precision == "bf16" ? KernelPrecision::Bf16 : KernelPrecision::F32;
    StudentWeights sw;
    sw.in_channels = in_channels;
    for (int l = 0; l < 5; ++l) {  // the widths are the bias lengths; the engine checks the rest
        const std::string i = std::to_string(l + 1);
        sw.conv_w.push_back(floats(w, ("conv" + i + "_w").c_str()));
        sw.conv_b.push_back(floats(w, ("conv" + i + "_b").c_str()));
        sw.widths.push_back(static_cast<int>(sw.conv_b.back().size()));
    }
    sw.fc1_w = floats(w, "fc1_w");
    sw.fc1_b = floats(w, "fc1_b");
    sw.fc2_w = floats(w, "fc2_w");
    sw.fc2_b = floats(w, "fc2_b");
    sw.input_scale = input_scale;
    sw.input_offset = input_offset;
    sw.pad_value = pad_value;
    auto r = std::make_unique<StudentRunner>();
    r->engine = std::make_unique<StudentEngine>(sw, threads, level, arith);
    r->classes = r->engine->num_classes();
    if (class_texture.size() != static_cast<std::size_t>(r->classes) ||
        class_defective.size() != class_texture.size()) {
        fail("class tables have " + std::to_string(class_texture.size()) +
             " entries, the model has " + std::to_string(r->classes) + " classes");
    }
    r->class_texture = std::move(class_texture);
    r->class_defective.reset(new bool[class_defective.size()]);
    std::copy(class_defective.begin(), class_defective.end(), r->class_defective.get());
    r->is_logits = is_logits;
    r->pixel = frame_dtype == "uint16" ? PixelType::UInt16 : PixelType::UInt8;
    return r;
}

py::bytes run(StudentRunner& self, const py::buffer& frame, const Int32Array& boxes,
              double threshold) {
    const py::buffer_info info = frame.request();  // holds the frame until return
    const FrameView fv = frame_view(frame, info, /*allow_uint16=*/true);
    if (fv.pixel != self.pixel) {  // input_scale holds 1 / max_value of one pixel type only
        const bool want16 = self.pixel == PixelType::UInt16;
        fail(std::string("this runner reads ") + (want16 ? "uint16" : "uint8") +
             " frames (its input scale is for that bit depth), got a " +
             (want16 ? "uint8" : "uint16") + " frame");
    }
    const BoxesView bx = boxes_view(boxes);
    const auto n = static_cast<std::int64_t>(bx.size);
    {
        py::gil_scoped_release release;
        StudentTimes st;
        StageTimes times;
        const auto t0 = std::chrono::steady_clock::now();
        self.logits.resize(static_cast<std::size_t>(n * self.classes));
        self.engine->infer(fv, bx.data, bx.size, self.logits.data(), &st);
        const auto t1 = std::chrono::steady_clock::now();
        const VoteOutput r =
            vote(self.logits.data(), n, self.classes, self.class_texture.data(), self.classes,
                 self.class_defective.get(), self.classes, self.is_logits, threshold);
        const auto t2 = std::chrono::steady_clock::now();
        using ms = std::chrono::duration<double, std::milli>;
        times.tile_ms = 0;  // the engine reads the frame itself
        times.infer_ms = ms(t1 - t0).count();
        times.vote_ms = ms(t2 - t1).count();
        times.total_ms = ms(t2 - t0).count();
        pack_record(self.record, r, times, st, self.engine->last_shared());
    }
    return {self.record.data(), self.record.size()};
}

}  // namespace
#endif  // PYINSPECT_HAVE_STUDENT_ENGINE

void bind_student(py::module_& m) {
#ifdef PYINSPECT_HAVE_STUDENT_ENGINE
    m.def("student_engine_supported", &student_engine_supported,
          "Whether this CPU has AVX2 and FMA (the student engine's kernels need both).");
    m.def("student_kernel_isas", &student_kernel_isas,
          "The student engine's kernel levels this CPU runs, lowest first ('avx2', 'avx512f').");
    m.def("student_kernel_precisions", &student_kernel_precisions,
          "The student engine's precisions this CPU runs: 'f32', and 'bf16' with AVX512-BF16.");

    py::class_<StudentRunner>(m, "StudentRunner")
        .def(py::init(&make_runner), py::arg("weights"), py::arg("in_channels"),
             py::arg("input_scale"), py::arg("input_offset"), py::arg("pad_value"),
             py::arg("threads"), py::arg("class_texture"), py::arg("class_defective"),
             py::arg("is_logits"), py::arg("frame_dtype") = "uint8", py::arg("isa") = "auto",
             py::arg("precision") = "f32")
        .def("run", &run, py::arg("frame"), py::arg("boxes").noconvert(),
             py::arg("threshold") = -1.0,
             "Infer and vote one gray frame's patches; GIL released throughout; the result as one "
             "bytes record (layout in cpp/student_bindings.cpp). Not reentrant.")
        .def(
            "logits",
            [](const StudentRunner& self) {
                const auto k = static_cast<py::ssize_t>(self.classes);
                const auto n =
                    static_cast<py::ssize_t>(self.logits.size()) / std::max<py::ssize_t>(k, 1);
                return logits_array(self.logits.data(), n, k);
            },
            "A copy of the last run's logits [N, K].")
        .def_property_readonly("threads",
                               [](const StudentRunner& self) { return self.engine->threads(); })
        .def_property_readonly(
            "isa", [](const StudentRunner& self) { return std::string(self.engine->isa()); },
            "The kernel level in use: 'avx2' or 'avx512f'.")
        .def_property_readonly(
            "precision",
            [](const StudentRunner& self) { return std::string(self.engine->precision()); },
            "The precision in use: 'f32' or 'bf16'.");
#else
    m.def(
        "student_engine_supported", [] { return false; },
        "Whether this CPU has AVX2 and FMA (the student engine's kernels need both); this build "
        "is not for x86-64, so it has no student engine.");
    m.def(
        "student_kernel_isas", [] { return std::vector<std::string>(); },
        "The student engine's kernel levels this CPU runs: none in a build not for x86-64.");
    m.def(
        "student_kernel_precisions", [] { return std::vector<std::string>(); },
        "The student engine's precisions this CPU runs: none in a build not for x86-64.");
#endif
}

}  // namespace pyinspect::pyconv
