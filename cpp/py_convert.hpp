// Buffer checks and result conversions shared by the binding files (bindings.cpp,
// student_bindings.cpp, fastcpu_bindings.cpp). Buffers are read in place, never copied; a bad one
// raises std::invalid_argument (ValueError in Python) whose message names the argument, what it
// must be and what it is. The Python layer checks first and words its own errors; these checks
// only guarantee that a direct call cannot crash the process.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "tiling.hpp"
#include "voting.hpp"

namespace pyinspect::pyconv {

namespace py = pybind11;

using Int32Array = py::array_t<std::int32_t, py::array::c_style>;

[[noreturn]] inline void fail(const std::string& msg) { throw std::invalid_argument(msg); }

// Format code of a buffer without a native byte-order prefix ("<f" -> 'f' on a little-endian
// host). A non-native order (">f", "!f") gives '?', so a big-endian array is refused rather than
// read in the wrong byte order.
inline char format_code(const py::buffer_info& info) {
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
inline std::string dtype_name(py::handle obj, const py::buffer_info& info) {
    if (py::isinstance<py::array>(obj)) return py::str(obj.attr("dtype")).cast<std::string>();
    return "buffer format '" + info.format + "'";
}

// "(512,)", "(9, 4)".
inline std::string shape_str(const std::vector<py::ssize_t>& shape) {
    std::string s = "(";
    for (std::size_t i = 0; i < shape.size(); ++i) {
        if (i) s += ", ";
        s += std::to_string(shape[i]);
    }
    return s + (shape.size() == 1 ? ",)" : ")");
}

inline std::string shape_str(const py::array& a) {
    return shape_str({a.shape(), a.shape() + a.ndim()});
}

inline bool c_contiguous(const py::buffer_info& info) {
    py::ssize_t expected = info.itemsize;
    for (py::ssize_t d = info.ndim - 1; d >= 0; --d) {
        if (info.shape[d] == 0) return true;
        if (info.shape[d] != 1 && info.strides[d] != expected) return false;
        expected *= info.shape[d];
    }
    return true;
}

// A uint8 H x W or H x W x C frame with any strides; with allow_uint16 also a uint16 one
// (native byte order; the tiler and the student engine check that it is gray). `info` (the
// caller's) holds the exporter's buffer, and so the memory the view points at, until the caller
// returns.
inline FrameView frame_view(const py::buffer& frame, const py::buffer_info& info,
                            bool allow_uint16 = false) {
    const char code = format_code(info);
    PixelType pixel = PixelType::UInt8;
    if (allow_uint16 && info.itemsize == 2 && code == 'H') {
        pixel = PixelType::UInt16;
    } else if (info.itemsize != 1 || code != 'B') {
        fail(std::string(allow_uint16 ? "frame must be uint8 (or uint16 gray), got "
                                      : "frame must be uint8, got ") +
             dtype_name(frame, info) +
             " (convert it explicitly; the frame is read in place, never copied)");
    }
    if (info.ndim != 2 && info.ndim != 3) {
        fail("frame must be 2-D (H, W) or 3-D (H, W, C), got " + std::to_string(info.ndim) +
             "-D with shape " + shape_str(info.shape));
    }
    const bool color = info.ndim == 3;
    return {static_cast<const std::uint8_t*>(info.ptr),
            info.shape[0],
            info.shape[1],
            color ? info.shape[2] : 1,
            info.strides[0],
            info.strides[1],
            color ? info.strides[2] : 0,
            pixel};
}

// Boxes [N, 4] int32 of (x, y, w, h), read in place (the array outlives the call).
struct BoxesView {
    const Box* data;
    std::size_t size;
};

inline BoxesView boxes_view(const Int32Array& boxes) {
    if (boxes.ndim() != 2 || boxes.shape(1) != 4) {
        fail("boxes must have shape (N, 4), got " + shape_str(boxes));
    }
    static_assert(sizeof(Box) == 4 * sizeof(std::int32_t), "Box is 4 int32");
    return {reinterpret_cast<const Box*>(boxes.data()), static_cast<std::size_t>(boxes.shape(0))};
}

inline py::array_t<std::int32_t> boxes_array(const std::vector<Box>& boxes) {
    py::array_t<std::int32_t> a({static_cast<py::ssize_t>(boxes.size()), py::ssize_t{4}});
    if (!boxes.empty()) std::memcpy(a.mutable_data(), boxes.data(), boxes.size() * sizeof(Box));
    return a;
}

template <typename T>
py::array_t<T> to_array(const std::vector<T>& v) {
    py::array_t<T> a(static_cast<py::ssize_t>(v.size()));
    if (!v.empty()) std::memcpy(a.mutable_data(), v.data(), v.size() * sizeof(T));
    return a;
}

// A copy of n x k row-major logits.
inline py::array_t<float> logits_array(const float* logits, py::ssize_t n, py::ssize_t k) {
    py::array_t<float> a({n, k});
    if (n > 0 && k > 0) std::memcpy(a.mutable_data(), logits, sizeof(float) * n * k);
    return a;
}

// The Python form of a VoteOutput (keys and dtypes as in _core.pyi's vote()).
inline py::dict vote_dict(const VoteOutput& r) {
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
    return d;
}

// vote_dict plus a whole-frame runner's 'tile_ms', 'infer_ms', 'vote_ms', 'total_ms'.
inline py::dict vote_dict(const VoteOutput& r, const StageTimes& t) {
    py::dict d = vote_dict(r);
    d["tile_ms"] = t.tile_ms;
    d["infer_ms"] = t.infer_ms;
    d["vote_ms"] = t.vote_ms;
    d["total_ms"] = t.total_ms;
    return d;
}

}  // namespace pyinspect::pyconv
