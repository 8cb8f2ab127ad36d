"""A whole-frame ONNX graph of a student: the direct runner's algorithm for any ONNX engine.

The direct student runner (``cpp/student_engine.hpp``) computes conv1–4 once over the frame and
recomputes only each patch's outermost ring, which is exact when every patch offset is a multiple
of 16. This module writes the same computation as one ONNX graph, so that ONNX Runtime, OpenVINO
or any other engine can run it: a comparison with them is then one of kernels, not of algorithms
(``benchmarks/peers.py``).

The graph, for a frame of ``height`` × ``width`` and the model's patch grid on it:

- input ``frame``: the raw frame, ``[H, W]`` uint8 (uint16 for a sidecar of ``input.bit_depth``
  > 8), normalised in the graph as the tiler does (``x · float(1 / (max · std)) + float(−mean /
  std)``); output ``logits``: ``[N, K]``, row-major over the grid's patches, as the per-patch
  model gives them;
- level L = 1..4: the shared map ``F_L`` = pool(relu(conv(F_{L-1}))) over the patches' union
  (zero padding at its border; conv1 sees the model's pad value there), and for every patch the
  four bands of its ring (top and bottom rows, left and right columns of its level-L map),
  recomputed from the patch's own level-(L−1) border: its ring at L−1 and ``F_{L−1}`` between;
- conv5 on each patch's level-4 map (ring + the interior of ``F_4``), then FC1, ReLU, FC2.

Patch windows of a shared map are cut with two ``Gather`` ops over the grid's row and column
offsets (the grid is a product of both), so the op count does not grow with the patch count.
Numerically it equals the per-patch model up to float summation order (tests/test_fullframe_graph.py
compares their logits on ONNX Runtime and OpenVINO).

    model = fullframe_graph("models/student.onnx", height=512, width=512)
    onnx.save(model, "student_512x512.onnx")
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pyinspect.errors import InputError, SpecError, check_int
from pyinspect.runners.student import StudentGraph, input_transform, read_student_for
from pyinspect.spec import ModelSpec
from pyinspect.tiling import patch_grid

__all__ = ["ALIGN", "FRAME_INPUT", "LOGITS_OUTPUT", "FrameGrid", "frame_grid", "fullframe_graph"]

#: Patch offsets (from the union's origin) must be multiples of this to share conv1–4 exactly.
ALIGN = 16
FRAME_INPUT = "frame"
LOGITS_OUTPUT = "logits"
PATCH = 224
OPSET = 17


@dataclass(frozen=True)
class FrameGrid:
    """The patch grid of one frame size, as a product of row and column offsets."""

    height: int
    width: int
    ys: tuple[int, ...]  # distinct patch rows (top edges), ascending
    xs: tuple[int, ...]  # distinct patch columns (left edges), ascending
    boxes: np.ndarray  # int32 [N, 4] (x, y, w, h), row-major: patch_grid's order

    @property
    def patches(self) -> int:
        return len(self.ys) * len(self.xs)


def frame_grid(spec: ModelSpec, height: int, width: int) -> FrameGrid:
    """The model's grid on an H×W frame, checked for sharing: an ``InputError`` naming the
    first offset that is not a multiple of ``ALIGN`` from the union's origin (such a grid runs
    patch by patch: use the per-patch model)."""
    check_int("height", height, 1)
    check_int("width", width, 1)
    if spec.patch != PATCH:
        msg = f"the full-frame graph is for {PATCH}×{PATCH} patches, the sidecar has {spec.patch}"
        raise SpecError(msg)
    rows, cols = spec.grid_rows_cols
    boxes = patch_grid(height, width, spec.patch, rows, cols)
    ys = tuple(sorted({int(y) for y in boxes[:, 1]}))
    xs = tuple(sorted({int(x) for x in boxes[:, 0]}))
    product = [(x, y) for y in ys for x in xs]
    if [(int(b[0]), int(b[1])) for b in boxes] != product:  # patch_grid is always a product
        msg = f"the {height}x{width} grid is not a row-major product of its offsets"
        raise InputError(msg)
    for axis, offsets in (("row", ys), ("column", xs)):
        for o in offsets:
            if (o - offsets[0]) % ALIGN:
                msg = (
                    f"the {height}x{width} frame's patch {axis} offset {o} is"
                    f" {o - offsets[0]} px from the first, not a multiple of {ALIGN}: conv1-4"
                    " cannot be shared exactly on this grid (use the per-patch model)"
                )
                raise InputError(msg)
    return FrameGrid(height, width, ys, xs, boxes)


def fullframe_graph(
    model_path: str | os.PathLike[str],
    spec: ModelSpec | None = None,
    *,
    height: int = 512,
    width: int = 512,
) -> Any:
    """The whole-frame ``onnx.ModelProto`` of the student at ``model_path`` for H×W frames (a
    ``NotAStudentError`` for other networks, an ``InputError`` for a grid that cannot share)."""
    import onnx

    path = Path(model_path)
    spec = spec if spec is not None else ModelSpec.for_model(path)
    grid = frame_grid(spec, height, width)
    graph = read_student_for(path, spec)
    model = _Builder(graph, spec, grid).build()
    onnx.checker.check_model(model)
    return model


class _Builder:
    """Appends nodes and constants; each method returns the name of its output tensor."""

    def __init__(self, graph: StudentGraph, spec: ModelSpec, grid: FrameGrid) -> None:
        self.student, self.spec, self.grid = graph, spec, grid
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.count = 0
        self.weights: dict[int, str] = {}  # conv layer -> its weight constant

    # ---- primitives ----------------------------------------------------------------------------
    def name(self, hint: str) -> str:
        self.count += 1
        return f"{hint}_{self.count}"

    def const(self, value: Any, hint: str, dtype: Any = np.int64) -> str:
        from onnx import numpy_helper

        name = self.name(hint)
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str = "", **attrs: Any) -> str:
        return self.ops(op_type, inputs, 1, hint, **attrs)[0]

    def ops(
        self, op_type: str, inputs: list[str], n: int, hint: str = "", **attrs: Any
    ) -> list[str]:
        from onnx import helper

        outs = [self.name(hint or op_type.lower()) for _ in range(n)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, **attrs))
        return outs

    def slice(self, x: str, axis: int, start: int, end: int) -> str:
        starts, ends = self.const([start], "starts"), self.const([end], "ends")
        return self.op("Slice", [x, starts, ends, self.const([axis], "axes")], "slice")

    def pad(self, x: str, begin: tuple[int, int], end: tuple[int, int], value: float) -> str:
        """Pad H (begin[0], end[0]) and W (begin[1], end[1]) of an NCHW tensor with ``value``."""
        pads = self.const([0, 0, begin[0], begin[1], 0, 0, end[0], end[1]], "pads")
        return self.op("Pad", [x, pads, self.const(value, "pad_value", np.float32)], "pad")

    def concat(self, xs: list[str], axis: int) -> str:
        return self.op("Concat", xs, "concat", axis=axis)

    def window(
        self, fmap: str, level: int, rows: list[int], cols: list[int], rows_first: bool
    ) -> str:
        """``[N, C, len(rows), len(cols)]``: rows ``rows`` and columns ``cols`` of every patch's
        window of the shared level-``level`` map ``[1, C, H, W]`` (patch-relative indices)."""
        g = self.grid
        ys = np.array([(y - g.ys[0]) >> level for y in g.ys])[:, None] + np.array(rows)[None]
        xs = np.array([(x - g.xs[0]) >> level for x in g.xs])[:, None] + np.array(cols)[None]
        ri, ci = self.const(ys, "rows"), self.const(xs, "cols")
        if rows_first:  # [1, C, R, h, W] -> [1, C, R, h, Cc, w]
            t = self.op("Gather", [self.op("Gather", [fmap, ri], "grows", axis=2), ci], axis=4)
        else:  # [1, C, H, Cc, w] -> [1, C, R, h, Cc, w]
            t = self.op("Gather", [self.op("Gather", [fmap, ci], "gcols", axis=3), ri], axis=2)
        t = self.op("Transpose", [t], "patches", perm=[0, 2, 4, 1, 3, 5])  # [1, R, Cc, C, h, w]
        shape = self.const([g.patches, -1, len(rows), len(cols)], "shape")
        return self.op("Reshape", [t, shape], "window")

    def conv_relu_pool(self, x: str, layer: int, pad: int) -> str:
        w = self.weight(layer)
        b = self.const(self.student.weights[f"conv{layer}_b"], f"b{layer}", np.float32)
        c = self.op("Conv", [x, w, b], f"conv{layer}", pads=[pad] * 4, kernel_shape=[3, 3])
        r = self.op("Relu", [c], f"relu{layer}")
        return self.op("MaxPool", [r], f"pool{layer}", kernel_shape=[2, 2], strides=[2, 2])

    def weight(self, layer: int) -> str:
        """conv``layer``'s weights; conv1's summed over the replicated gray channels."""
        if layer not in self.weights:
            w = self.student.weights[f"conv{layer}_w"]
            if layer == 1:
                w = w.sum(axis=1, keepdims=True, dtype=np.float64).astype(np.float32)
            self.weights[layer] = self.const(w, f"w{layer}", np.float32)
        return self.weights[layer]

    # ---- the network ---------------------------------------------------------------------------
    def ring(self, bands: tuple[str, str, str, str], layer: int) -> tuple[str, str, str, str]:
        """Level-``layer`` ring (top, bottom ``[N, C, 1, S]``; left, right ``[N, C, S, 1]``) from
        the patch's level-(layer−1) border bands (top, bottom ``[N, C, 3, S']``; left, right
        ``[N, C, S', 3]``: its first / last three rows and columns)."""
        top, bottom, left, right = bands
        value = self.student.pad_value if layer == 1 else 0.0
        tb = self.concat(
            [self.pad(top, (1, 1), (0, 1), value), self.pad(bottom, (0, 1), (1, 1), value)], 0
        )
        lr = self.concat(
            [self.pad(left, (1, 1), (1, 0), value), self.pad(right, (1, 0), (1, 1), value)], 0
        )
        t, b = self.ops("Split", [self.conv_relu_pool(tb, layer, 0)], 2, "tb", axis=0)
        left_, right_ = self.ops("Split", [self.conv_relu_pool(lr, layer, 0)], 2, "lr", axis=0)
        return t, b, left_, right_

    def border_bands(
        self, fmap: str, ring: tuple[str, str, str, str], level: int
    ) -> tuple[str, str, str, str]:
        """The first / last three rows and columns of every patch's level-``level`` map (its
        ring where it has one, ``F_level`` elsewhere), as ``ring`` takes them."""
        s = PATCH >> level
        top, bottom, left, right = ring
        inner = [1, 2, s - 3, s - 2]
        mid = self.window(fmap, level, inner, list(range(1, s - 1)), rows_first=True)
        rows = self.const(inner, "ring_rows")
        mid = self.concat(
            [
                self.op("Gather", [left, rows], axis=2),
                mid,
                self.op("Gather", [right, rows], axis=2),
            ],
            3,
        )  # [N, C, 4, S]: rows 1, 2, S-3, S-2
        top3 = self.concat([top, self.slice(mid, 2, 0, 2)], 2)
        bottom3 = self.concat([self.slice(mid, 2, 2, 4), bottom], 2)
        side = self.window(fmap, level, list(range(1, s - 1)), inner, rows_first=False)
        edge = self.const([0, 1, 2, s - 3, s - 2, s - 1], "edge_cols")
        tg, bg = (self.op("Gather", [x, edge], axis=3) for x in (top, bottom))  # [N, C, 1, 6]
        left_mid = self.concat([self.slice(left, 2, 1, s - 1), self.slice(side, 3, 0, 2)], 3)
        right_mid = self.concat([self.slice(side, 3, 2, 4), self.slice(right, 2, 1, s - 1)], 3)
        left3 = self.concat([self.slice(tg, 3, 0, 3), left_mid, self.slice(bg, 3, 0, 3)], 2)
        right3 = self.concat([self.slice(tg, 3, 3, 6), right_mid, self.slice(bg, 3, 3, 6)], 2)
        return top3, bottom3, left3, right3

    def build(self) -> Any:
        from onnx import TensorProto, helper

        g, st = self.grid, self.student
        wide = self.spec.max_value > 255
        scale, offset = input_transform(self.spec)
        x = self.op("Cast", [FRAME_INPUT], "cast", to=TensorProto.FLOAT)
        x = self.op("Mul", [x, self.const(scale, "scale", np.float32)], "scaled")
        x = self.op("Add", [x, self.const(offset, "offset", np.float32)], "normalised")
        uy0, ux0, uy1, ux1 = g.ys[0], g.xs[0], g.ys[-1] + PATCH, g.xs[-1] + PATCH
        if (uy0, ux0, uy1, ux1) != (0, 0, g.height, g.width):
            x = self.op(
                "Slice",
                [x, self.const([uy0, ux0], "starts"), self.const([uy1, ux1], "ends")],
                "union",
            )
        u = self.op("Reshape", [x, self.const([1, 1, uy1 - uy0, ux1 - ux0], "shape")], "u")
        # level 1: the frame has no ring; its bands are the patches' own border pixels
        edge = [0, 1, 2, PATCH - 3, PATCH - 2, PATCH - 1]
        tb = self.window(u, 0, edge, list(range(PATCH)), rows_first=True)
        lr = self.window(u, 0, list(range(PATCH)), edge, rows_first=False)
        bands = (
            self.slice(tb, 2, 0, 3),
            self.slice(tb, 2, 3, 6),
            self.slice(lr, 3, 0, 3),
            self.slice(lr, 3, 3, 6),
        )
        fmap = self.conv_relu_pool(self.pad(u, (1, 1), (1, 1), st.pad_value), 1, 0)
        ring = self.ring(bands, 1)
        for layer in range(2, 5):
            bands = self.border_bands(fmap, ring, layer - 1)
            fmap = self.conv_relu_pool(fmap, layer, 1)
            ring = self.ring(bands, layer)
        # each patch's level-4 map: its ring around the interior of F_4
        s = PATCH >> 4
        top, bottom, left, right = ring
        inner = self.window(fmap, 4, list(range(1, s - 1)), list(range(1, s - 1)), True)
        mid = self.concat([self.slice(left, 2, 1, s - 1), inner, self.slice(right, 2, 1, s - 1)], 3)
        p4 = self.concat([top, mid, bottom], 2)
        flat = self.op("Flatten", [self.conv_relu_pool(p4, 5, 1)], "flat", axis=1)
        w = st.weights
        fc1 = [
            self.const(w["fc1_w"], "fc1_w", np.float32),
            self.const(w["fc1_b"], "fc1_b", np.float32),
        ]
        h = self.op("Relu", [self.op("Gemm", [flat, *fc1], "fc1", transB=1)], "hidden")
        fc2 = [
            self.const(w["fc2_w"], "fc2_w", np.float32),
            self.const(w["fc2_b"], "fc2_b", np.float32),
        ]
        self.nodes.append(helper.make_node("Gemm", [h, *fc2], [LOGITS_OUTPUT], transB=1))
        dtype = TensorProto.UINT16 if wide else TensorProto.UINT8
        graph = helper.make_graph(
            self.nodes,
            "student_fullframe",
            [helper.make_tensor_value_info(FRAME_INPUT, dtype, [g.height, g.width])],
            [
                helper.make_tensor_value_info(
                    LOGITS_OUTPUT, TensorProto.FLOAT, [g.patches, st.num_classes]
                )
            ],
            self.inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        model.ir_version = 9
        model.doc_string = (
            f"pyinspect full-frame student: conv1-4 shared over the {g.height}x{g.width} frame,"
            f" rings per patch, conv5 + FC for {g.patches} patches"
        )
        return model
