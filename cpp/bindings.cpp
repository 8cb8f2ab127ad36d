// pybind11 glue for pyinspect._core: buffers in (never copied), GIL released around the kernels,
// std::invalid_argument -> ValueError. The public, typed surface is pyinspect/_core.pyi; the
// Python layer (pyinspect/tiling.py, voting.py) validates first and words the errors, these checks
// only guarantee that a direct call cannot crash the process.
//
// Layout: one bind_<area>(module) function per area, all called from PYBIND11_MODULE at the end.
// A later area in its own file (e.g. an OpenVINO runner) declares `void bind_<area>(py::module_&)`
// here, defines it in its file, adds the file in CMakeLists.txt, and calls it below.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "tiling.hpp"
#include "voting.hpp"

namespace py = pybind11;

namespace {

[[noreturn]] void fail(const std::string& msg) { throw std::invalid_argument(msg); }

// Format code of a buffer without a native byte-order prefix ("<f" -> 'f' on a little-endian
// host). A non-native order (">f", "!f") gives '?', so a big-endian array is refused rather than
// written in the wrong byte order.
char format_code(const py::buffer_info& info) {
    const std::string& f = info.format;
    if (f.size() == 1) return f[0];
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    const char* native = "@=>!";
#else
    const char* native = "@=<";
#endif
    return f.size() == 2 && std::strchr(native, f[0]) ? f[1] : '?';
}

// "float64" for NumPy arrays, the buffer format otherwise.
std::string dtype_name(py::handle obj, const py::buffer_info& info) {
    if (py::isinstance<py::array>(obj)) return py::str(obj.attr("dtype")).cast<std::string>();
    return "buffer format '" + info.format + "'";
}

std::string shape_str(const std::vector<py::ssize_t>& shape) {
    std::string s = "(";
    for (std::size_t i = 0; i < shape.size(); ++i) {
        if (i) s += ", ";
        s += std::to_string(shape[i]);
    }
    return s + (shape.size() == 1 ? ",)" : ")");
}

bool c_contiguous(const py::buffer_info& info) {
    py::ssize_t expected = info.itemsize;
    for (py::ssize_t d = info.ndim - 1; d >= 0; --d) {
        if (info.shape[d] == 0) return true;
        if (info.shape[d] != 1 && info.strides[d] != expected) return false;
        expected *= info.shape[d];
    }
    return true;
}

pyinspect::FrameView frame_view(const py::buffer& frame, const py::buffer_info& info) {
    if (info.itemsize != 1 || format_code(info) != 'B') {
        fail("frame must be uint8, got " + dtype_name(frame, info) +
             " (convert it explicitly; the tiler never copies the frame)");
    }
    if (info.ndim != 2 && info.ndim != 3) {
        fail("frame must be 2-D (H, W) or 3-D (H, W, C), got " + std::to_string(info.ndim) +
             "-D with shape " + shape_str(info.shape));
    }
    const bool color = info.ndim == 3;
    return {static_cast<const std::uint8_t*>(info.ptr), info.shape[0], info.shape[1],
            color ? info.shape[2] : 1, info.strides[0], info.strides[1],
            color ? info.strides[2] : 0};
}

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
            const std::vector<pyinspect::Box> boxes =
                pyinspect::patch_grid(height, width, patch, rows, cols);
            py::array_t<std::int32_t> arr({static_cast<py::ssize_t>(boxes.size()), py::ssize_t{4}});
            static_assert(sizeof(pyinspect::Box) == 4 * sizeof(std::int32_t), "Box is 4 int32");
            if (!boxes.empty()) std::memcpy(arr.mutable_data(), boxes.data(), boxes.size() * 16);
            return arr;
        },
        py::arg("height"), py::arg("width"), py::arg("patch") = 224, py::arg("rows") = 0,
        py::arg("cols") = 0, "Boxes [N, 4] int32 of (x, y, w, h), row-major.");

    m.def(
        "tile_into",
        [](const py::buffer& frame, const py::buffer& out,
           const py::array_t<std::int32_t, py::array::c_style>& boxes,
           const std::vector<double>& mean, const std::vector<double>& std, int threads) {
            // Both buffer_infos hold the exporters' buffers (and so their memory) until return.
            const py::buffer_info fi = frame.request();
            const py::buffer_info oi = out.request();
            const pyinspect::FrameView fv = frame_view(frame, fi);
            const pyinspect::OutView ov = out_view(out, oi);
            if (boxes.ndim() != 2 || boxes.shape(1) != 4) {
                fail("boxes must have shape (N, 4), got " +
                     shape_str({boxes.shape(), boxes.shape() + boxes.ndim()}));
            }
            static_assert(sizeof(pyinspect::Box) == 4 * sizeof(std::int32_t), "Box is 4 int32");
            const auto* bx = reinterpret_cast<const pyinspect::Box*>(boxes.data());
            const auto n = static_cast<std::size_t>(boxes.shape(0));
            py::gil_scoped_release release;
            pyinspect::tile_into(fv, ov, bx, n, mean, std, threads);
        },
        py::arg("frame"), py::arg("out"), py::arg("boxes").noconvert(), py::arg("mean"),
        py::arg("std"), py::arg("threads") = 1,
        "Crop, convert and normalise every box of a uint8 frame into `out` in one pass.");

    m.def("tile_kernel_isa", &pyinspect::tile_kernel_isa,
          "CPU code path of the tiler on this machine ('avx2+f16c' or 'baseline').");
    m.def("float_to_half", &pyinspect::float_to_half, py::arg("value"),
          "Bits of the float16 nearest (ties to even) to a float32; for tests.");
}

template <typename T>
py::array_t<T> to_array(const std::vector<T>& v) {
    py::array_t<T> a(static_cast<py::ssize_t>(v.size()));
    if (!v.empty()) std::memcpy(a.mutable_data(), v.data(), v.size() * sizeof(T));
    return a;
}

// tests/test_voting.py
void bind_voting(py::module_& m) {
    m.def(
        "vote",
        [](const py::array_t<float, py::array::c_style | py::array::forcecast>& scores,
           const py::array_t<std::int32_t, py::array::c_style>& class_texture,
           const py::array_t<bool, py::array::c_style>& class_defective, bool is_logits,
           double threshold) {
            if (scores.ndim() != 2) {
                fail("scores must have shape (N, K), got " +
                     shape_str({scores.shape(), scores.shape() + scores.ndim()}));
            }
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
            py::array_t<bool> defective(static_cast<py::ssize_t>(r.patch_defective.size()));
            if (!r.patch_defective.empty()) {
                std::memcpy(defective.mutable_data(), r.patch_defective.data(),
                            r.patch_defective.size());
            }
            py::dict d;
            d["patch_class"] = to_array(r.patch_class);
            d["patch_score"] = to_array(r.patch_score);
            d["patch_defect_prob"] = to_array(r.patch_defect_prob);
            d["patch_defective"] = defective;
            d["texture"] = r.texture;
            d["defective"] = r.defective;
            d["texture_votes"] = to_array(r.texture_votes);
            return d;
        },
        py::arg("scores"), py::arg("class_texture"), py::arg("class_defective"),
        py::arg("is_logits") = true, py::arg("threshold") = -1.0,
        "Patch scores [N, K] -> per-patch decisions and the image's texture and verdict.");
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "pyinspect C++ core: patch grid, fused tiler, voter (see pyinspect/_core.pyi).";
#ifdef PYINSPECT_VERSION
    m.attr("__version__") = PYINSPECT_VERSION;
#else
    m.attr("__version__") = "dev";
#endif
    bind_tiling(m);
    bind_voting(m);
}
