"""The fastest CPU path for the paper's student: a direct engine that runs a whole gray frame.

``pyinspect._fastcpu.StudentRunner`` (cpp/student_engine.cpp) computes the Table 1 student
(``[conv3x3 → ReLU → maxpool2] × 5 → FC → ReLU → FC``) over the frame once and recomputes only
each patch's outermost ring, which is exact because the 3×3 grid's patch offsets are multiples of
16 (cpp/student_engine.hpp has the argument). It reads the uint8 frame itself, so there is no tile
buffer, and votes in the same GIL-free call.

The weights come from the same ONNX (or OpenVINO IR) and sidecar as every other backend: the graph
is read with OpenVINO, constant-folded, and matched op by op against the student's structure;
anything else (other widths, a softmax head, other ops) is refused with the reason, and the caller
falls back to a general backend. As a last guard, a freshly built engine must reproduce OpenVINO's
f32 logits on a fixed test frame before it is used.

    runner = FastStudentRunner("models/student.onnx")
    result = runner.run(gray_frame)        # InspectionResult with stage timings
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pyinspect.backends.base import Backend, physical_cores
from pyinspect.backends.openvino import check_model_file, first_line
from pyinspect.backends.openvino_native import load_native
from pyinspect.errors import BackendError, BackendUnavailableError, InputError, SpecError
from pyinspect.result import InspectionResult, result_from_native
from pyinspect.spec import ModelSpec

WIDTHS = (4, 8, 16, 4, 4)
#: Largest |Δlogit| against OpenVINO f32 accepted at load (float summation order only: ~1e-5).
VERIFY_TOLERANCE = 1e-3


class NotAStudentError(SpecError):
    """The model is not the paper's student in a form the direct engine runs."""


@dataclass
class StudentGraph:
    """What the engine needs from the model: weights and how conv1 sees a pixel."""

    weights: dict[str, np.ndarray] = field(default_factory=dict)
    in_channels: int = 1
    pad_value: float = 0.0  # value conv1 sees outside the patch


def extract_student(model_path: str | os.PathLike[str]) -> StudentGraph:
    """Read the model with OpenVINO and match it op by op against the student."""
    import openvino as ov
    from openvino._offline_transformations import apply_moc_transformations

    try:
        model = ov.Core().read_model(str(model_path))
    except Exception as exc:
        msg = f"{model_path}: not a loadable model ({first_line(exc)})"
        raise SpecError(msg) from exc
    apply_moc_transformations(model, cf=True)  # folds Gemm scales, bias reshapes, Converts
    return _match(model, str(model_path))


def _const(node: Any, where: str) -> np.ndarray:
    if node.get_type_name() == "Convert":  # a compressed (f16) weight behind its decompression
        node = node.input_value(0).get_node()
    if node.get_type_name() != "Constant":
        msg = f"{where}: expected a constant, got {node.get_type_name()}"
        raise NotAStudentError(msg)
    return np.asarray(node.get_data(), dtype=np.float32)


def _match(model: Any, name: str) -> StudentGraph:
    params = model.get_parameters()
    if len(params) != 1 or len(model.outputs) != 1:
        msg = f"{name}: the student has one input and one output"
        raise NotAStudentError(msg)
    node = params[0]
    graph = StudentGraph()

    def step(expected: str) -> Any:
        nonlocal node
        users = list(node.output(0).get_target_inputs())
        if len(users) != 1:
            msg = f"{name}: {node.get_friendly_name()} feeds {len(users)} ops, expected one"
            raise NotAStudentError(msg)
        node = users[0].get_node()
        if node.get_type_name() != expected:
            msg = (
                f"{name}: expected {expected} after the previous op, got {node.get_type_name()}"
                f" ({node.get_friendly_name()}); not the paper's student"
            )
            raise NotAStudentError(msg)
        return node

    def next_type() -> str:
        users = list(node.output(0).get_target_inputs())
        return users[0].get_node().get_type_name() if len(users) == 1 else ""

    explicit_pad, saw_pad = 0.0, False
    if next_type() == "Pad":
        saw_pad = True
        pad = step("Pad")
        attrs = pad.get_attributes()
        begin, end = (
            _const(pad.input_value(1).get_node(), "pad"),
            _const(pad.input_value(2).get_node(), "pad"),
        )
        if (
            attrs.get("pad_mode") != "constant"
            or list(begin) != [0, 0, 1, 1]
            or list(end) != [0, 0, 1, 1]
        ):
            msg = f"{name}: conv1's Pad must add one constant pixel on each side"
            raise NotAStudentError(msg)
        explicit_pad = float(_const(pad.input_value(3).get_node(), "pad value").reshape(()))
    for layer, width in enumerate(WIDTHS, start=1):
        conv = step("Convolution")
        a = conv.get_attributes()
        want_pad = [0, 0] if layer == 1 and saw_pad else [1, 1]
        if (
            list(a["strides"]) != [1, 1]
            or list(a["dilations"]) != [1, 1]
            or list(a["pads_begin"]) != want_pad
            or list(a["pads_end"]) != want_pad
        ):
            msg = f"{name}: conv{layer} must be 3×3, stride 1, zero padding 1: got {a}"
            raise NotAStudentError(msg)
        w = _const(conv.input_value(1).get_node(), f"conv{layer} weight")
        if w.ndim != 4 or w.shape[0] != width or w.shape[2:] != (3, 3):
            msg = f"{name}: conv{layer} weight is {list(w.shape)}, expected [{width}, C, 3, 3]"
            raise NotAStudentError(msg)
        if layer == 1:
            graph.in_channels = int(w.shape[1])
            graph.pad_value = explicit_pad
        add = step("Add")
        b = _const(add.input_value(1).get_node(), f"conv{layer} bias").reshape(-1)
        if b.shape != (width,):
            msg = f"{name}: conv{layer} bias has {b.size} values, expected {width}"
            raise NotAStudentError(msg)
        step("Relu")
        pool = step("MaxPool")
        p = pool.get_attributes()
        if (
            list(p["kernel"]) != [2, 2]
            or list(p["strides"]) != [2, 2]
            or list(p["pads_begin"]) != [0, 0]
            or list(p["pads_end"]) != [0, 0]
        ):
            msg = f"{name}: pool{layer} must be 2×2 stride 2 without padding, got {p}"
            raise NotAStudentError(msg)
        graph.weights[f"conv{layer}_w"] = w
        graph.weights[f"conv{layer}_b"] = b
    if next_type() in ("Reshape", "Flatten"):
        step(next_type())
    for k, relu in ((1, True), (2, False)):
        mm = step("MatMul")
        w = _const(mm.input_value(1).get_node(), f"fc{k} weight")
        attrs = mm.get_attributes()
        if attrs.get("transpose_a"):
            msg = f"{name}: fc{k} must not transpose its input"
            raise NotAStudentError(msg)
        if not attrs.get("transpose_b"):
            w = w.T
        add = step("Add")
        graph.weights[f"fc{k}_w"] = np.ascontiguousarray(w, dtype=np.float32)
        graph.weights[f"fc{k}_b"] = _const(add.input_value(1).get_node(), f"fc{k} bias").reshape(-1)
        if relu:
            step("Relu")
    step("Result")
    fc1 = graph.weights["fc1_w"]
    if fc1.shape[1] != WIDTHS[-1] * 7 * 7 or fc1.shape[0] % 8:
        msg = f"{name}: fc1 weight is {list(fc1.shape)}, expected [hidden (multiple of 8), 196]"
        raise NotAStudentError(msg)
    return graph


class FastStudentRunner:
    """Inspect gray frames with the direct student engine (same verdicts as ``Inspector``).

    Args:
        model_path: the student (``.onnx`` or ``.xml``), sidecar beside it (or pass ``spec``).
        spec: the sidecar, if already loaded.
        threads: engine threads (``None``: physical cores).
        threshold: default defect rule, as for ``Inspector``.
        verify: compare with OpenVINO f32 on a fixed frame at load (keep it on).
        reference: an already open backend of the same model to verify against instead of a new
            OpenVINO one (``Inspector`` passes its own, so the check is parity with the path the
            engine replaces, at no extra load cost).

    Raises ``NotAStudentError`` (a ``SpecError``) for other networks and
    ``BackendUnavailableError`` when the module is missing or the CPU lacks AVX2/FMA.
    Not safe for concurrent ``run`` from several threads.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        spec: ModelSpec | None = None,
        *,
        threads: int | None = None,
        threshold: float | None = None,
        verify: bool = True,
        reference: Backend | None = None,
    ) -> None:
        if threads is not None and threads < 1:
            msg = f"threads must be >= 1 (or None for the physical core count), got {threads}"
            raise InputError(msg)
        native = load_native()
        if not native.student_engine_supported():
            msg = "the direct student engine needs a CPU with AVX2 and FMA"
            raise BackendUnavailableError(msg)
        self.model_path = Path(model_path)
        check_model_file(self.model_path)
        self.spec = spec if spec is not None else ModelSpec.for_model(self.model_path)
        s = self.spec
        if s.output.kind != "logits":
            msg = (
                f"{self.model_path}: the student engine needs a logits output, not {s.output.kind}"
            )
            raise NotAStudentError(msg)
        mean, std = s.normalization.mean, s.normalization.std
        if len(set(mean)) != 1 or len(set(std)) != 1:
            msg = (
                f"{self.model_path}: the engine feeds one gray plane, so the normalisation must be"
                f" the same for every channel; got mean {mean}, std {std}"
            )
            raise NotAStudentError(msg)
        if s.patch != 224 or s.input.dtype != "float32":
            msg = f"{self.model_path}: the engine runs float32 224×224 patches"
            raise NotAStudentError(msg)
        graph = extract_student(self.model_path)
        if graph.in_channels != s.input.channels:
            msg = (
                f"{self.model_path}: conv1 takes {graph.in_channels} channels but the sidecar"
                f" says {s.input.channels}"
            )
            raise NotAStudentError(msg)
        if graph.weights["fc2_b"].size != s.num_classes:
            msg = (
                f"{self.model_path}: {graph.weights['fc2_b'].size} outputs, sidecar has"
                f" {s.num_classes} classes"
            )
            raise NotAStudentError(msg)
        # The tiler's arithmetic: u = x * float(1 / (255 std)) + float(-mean / std).
        scale = float(np.float32(1.0 / (255.0 * std[0])))
        offset = float(np.float32(-mean[0] / std[0]))
        self.threads = threads or physical_cores()
        self.threshold = threshold
        try:
            self._runner = native.StudentRunner(
                graph.weights,
                graph.in_channels,
                scale,
                offset,
                graph.pad_value,
                self.threads,
                s.class_texture.tolist(),
                s.class_defective.tolist(),
                True,
            )
        except ValueError as exc:
            msg = f"{self.model_path}: {exc}"
            raise NotAStudentError(msg) from exc
        self._boxes: dict[tuple[int, int], np.ndarray] = {}
        self.verify_delta: float | None = None
        if verify:
            self.verify_delta = self._verify(reference)

    def run(self, frame: np.ndarray, *, threshold: float | None = None) -> InspectionResult:
        """Inspect one gray uint8 frame (H×W or H×W×1, any strides)."""
        from pyinspect.tiling import _check_frame

        _check_frame(frame)
        if frame.ndim == 3 and frame.shape[2] != 1:
            msg = (
                f"the student engine reads gray frames; got {frame.shape[2]} channels (convert"
                " with cv2.cvtColor, or use Inspector for color frames)"
            )
            raise InputError(msg)
        boxes = self.boxes(int(frame.shape[0]), int(frame.shape[1]))
        thr = self.threshold if threshold is None else threshold
        try:
            r = self._runner.run(frame, boxes, -1.0 if thr is None else float(thr))
        except ValueError as exc:
            raise InputError(str(exc)) from exc
        self.last_stages = {
            "layers_ms": list(r["layers_ms"]),
            "fc_ms": r["fc_ms"],
            "shared": bool(r["shared"]),
        }
        return result_from_native(r, self.spec, boxes)

    def boxes(self, height: int, width: int) -> np.ndarray:
        """The patch grid for an H×W frame (cached, read-only), as ``Inspector.boxes``."""
        key = (height, width)
        boxes = self._boxes.get(key)
        if boxes is None:
            from pyinspect.tiling import patch_grid

            rows, cols = self.spec.grid_rows_cols
            boxes = np.ascontiguousarray(
                patch_grid(height, width, self.spec.patch, rows, cols), dtype=np.int32
            )
            boxes.flags.writeable = False
            self._boxes[key] = boxes
        return boxes

    def logits(self) -> np.ndarray:
        """A copy of the last frame's logits [N, K]."""
        return self._runner.logits()

    def close(self) -> None:
        self._runner = None

    def __enter__(self) -> FastStudentRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FastStudentRunner({str(self.model_path)!r}, threads={self.threads})"

    def _verify(self, reference: Backend | None = None) -> float:
        """Max |Δlogit| against ``reference`` (default: OpenVINO f32) on a fixed frame whose
        patches overlap (the shared path) and one whose 9 patches run one by one (offsets not
        multiples of 16); refuse the engine if they disagree. Both have 9 patches, so OpenVINO
        compiles once."""
        from pyinspect.tiling import tile_into

        rng = np.random.default_rng(20200)
        owned = reference is None
        if reference is None:
            from pyinspect.backends.openvino import OpenVinoBackend

            reference = OpenVinoBackend(self.model_path, self.spec, threads=1)
        worst = 0.0
        try:
            for shape in ((512, 512), (600, 600)):
                frame = rng.integers(0, 256, shape, dtype=np.uint8)
                boxes = self.boxes(*shape)
                self._runner.run(frame, boxes, -1.0)
                got = self._runner.logits()
                buf = reference.input_buffer(len(boxes))
                s = self.spec.normalization
                tile_into(frame, buf, boxes, s.mean, s.std)
                want = reference.infer(len(boxes))
                worst = max(worst, float(np.abs(got - want).max()))
        finally:
            if owned:
                reference.close()
        if not worst <= VERIFY_TOLERANCE:
            msg = (
                f"{self.model_path}: the student engine's logits differ from the reference by"
                f" {worst:.3g} (> {VERIFY_TOLERANCE}); not using it"
            )
            raise BackendError(msg)
        return worst
