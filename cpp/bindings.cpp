// pybind11 glue for pyinspect._core: buffers in (never copied), GIL released around the kernels,
// std::invalid_argument -> ValueError. The public, typed surface is pyinspect/_core.pyi; the
// Python layer (pyinspect/tiling.py, voting.py, runners/student.py) validates first and words
// the errors, the checks here (py_convert.hpp) only guarantee that a direct call cannot crash the
// process.
//
// Layout: one bind_<area>(module) function per area, all called from PYBIND11_MODULE at the end;
// an area in its own file (student_bindings.cpp) is declared here and listed in CMakeLists.txt.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "py_convert.hpp"
#include "tiling.hpp"
#include "voting.hpp"

namespace py = pybind11;

namespace pyinspect::pyconv {
// student_bindings.cpp: StudentRunner and student_engine_supported (tests/test_runner_student.py).
void bind_student(py::module_& m);
}  // namespace pyinspect::pyconv

namespace {

using namespace pyinspect::pyconv;

pyinspect::OutView out_view(const py::buffer& out, const py::buffer_info& info) {
    if (info.readonly) fail("out is not writable");
    const char code = format_code(info);
    pyinspect::OutDType dtype;
    if (code == 'f' && info.itemsize == 4) {
        dtype = pyinspect::OutDType::Float32;
    } else if (code == 'e' && info.itemsize == 2) {
        dtype = pyinspect::OutDType::Float16;
    } else {
        fail("out must be float32 or float16, got " + dtype_name(out, info));
    }
    if (info.ndim != 4 || info.shape[2] != info.shape[3]) {
        fail("out must have shape (N, C_out, P, P), got " + shape_str(info.shape));
    }
    if (!c_contiguous(info)) fail("out is not C-contiguous (shape " + shape_str(info.shape) + ")");
    return {info.ptr, dtype, info.shape[0], info.shape[1], info.shape[2]};
}

// tests/test_tiling.py
void bind_tiling(py::module_& m) {
    m.def(
        "axis_positions",
        [](std::int64_t length, std::int64_t patch, std::int64_t count) {
            return pyinspect::axis_positions(length, patch, count);
        },
        py::arg("length"), py::arg("patch") = 224, py::arg("count") = 0,
        "Start offsets of `count` evenly spaced patches along one axis (0 = smallest covering).");

    m.def(
        "patch_grid",
        [](std::int64_t height, std::int64_t width, std::int64_t patch, std::int64_t rows,
           std::int64_t cols) {
            return boxes_array(pyinspect::patch_grid(height, width, patch, rows, cols));
        },
        py::arg("height"), py::arg("width"), py::arg("patch") = 224, py::arg("rows") = 0,
        py::arg("cols") = 0, "Boxes [N, 4] int32 of (x, y, w, h), row-major.");

    m.def(
        "tile_into",
        [](const py::buffer& frame, const py::buffer& out, const Int32Array& boxes,
           const std::vector<double>& mean, const std::vector<double>& std, int threads,
           double max_value) {
            // Both buffer_infos hold the exporters' buffers (and so their memory) until return.
            const py::buffer_info fi = frame.request();
            const py::buffer_info oi = out.request();
            const pyinspect::FrameView fv = frame_view(frame, fi, /*allow_uint16=*/true);
            const pyinspect::OutView ov = out_view(out, oi);
            const BoxesView bx = boxes_view(boxes);
            py::gil_scoped_release release;
            pyinspect::tile_into(fv, ov, bx.data, bx.size, mean, std, threads, max_value);
        },
        py::arg("frame"), py::arg("out"), py::arg("boxes").noconvert(), py::arg("mean"),
        py::arg("std"), py::arg("threads") = 1, py::arg("max_value") = 255.0,
        "Crop, convert and normalise every box of a uint8 (or uint16 gray) frame into `out` in "
        "one pass; max_value: 255 for uint8, 2^bits - 1 for uint16.");

    m.def("tile_kernel_isa", &pyinspect::tile_kernel_isa,
          "CPU code path of the tiler on this machine ('avx2+f16c' or 'baseline').");
    m.def("float_to_half", &pyinspect::float_to_half, py::arg("value"),
          "Bits of the float16 nearest (ties to even) to a float32; for tests.");
}

// tests/test_voting.py
void bind_voting(py::module_& m) {
    m.def(
        "vote",
        [](const py::array_t<float, py::array::c_style | py::array::forcecast>& scores,
           const Int32Array& class_texture,
           const py::array_t<bool, py::array::c_style>& class_defective, bool is_logits,
           double threshold) {
            if (scores.ndim() != 2) fail("scores must have shape (N, K), got " + shape_str(scores));
            if (class_texture.ndim() != 1 || class_defective.ndim() != 1) {
                fail("class_texture and class_defective must be 1-D");
            }
            pyinspect::VoteOutput r;
            {
                py::gil_scoped_release release;
                r = pyinspect::vote(scores.data(), scores.shape(0), scores.shape(1),
                                    class_texture.data(), class_texture.shape(0),
                                    class_defective.data(), class_defective.shape(0), is_logits,
                                    threshold);
            }
            return vote_dict(r);
        },
        py::arg("scores"), py::arg("class_texture"), py::arg("class_defective"),
        py::arg("is_logits") = true, py::arg("threshold") = -1.0,
        "Patch scores [N, K] -> per-patch decisions and the image's texture and verdict.");
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "pyinspect C++ core: patch grid, fused tiler, voter, direct student engine "
              "(see pyinspect/_core.pyi).";
#ifdef PYINSPECT_VERSION
    m.attr("__version__") = PYINSPECT_VERSION;
#else
    m.attr("__version__") = "dev";
#endif
    bind_tiling(m);
    bind_voting(m);
    pyinspect::pyconv::bind_student(m);
}
