"""The direct student runner: a student of the paper's family on a whole gray frame in one C++
call.

``pyinspect._core.StudentRunner`` (cpp/student_engine.cpp) computes the Table 1 structure
(``[conv3x3 -> ReLU -> maxpool2] x 5 -> FC -> ReLU -> FC``) with any conv widths C1..C5 of 1 to
``MAX_WIDTH`` channels, any FC1 width and any class count, read from the weights. Where the patch
offsets are multiples of 16 (the 3×3 grid of a 512×512 frame) it computes conv1–4 over the frame
once and recomputes only each patch's outermost ring, which is exact (cpp/student_engine.hpp has
the argument); other grids run patch by patch. It reads the frame itself (no tile buffer) and
votes in the same GIL-free call: uint8 frames, or uint16 mono frames for a model whose sidecar
declares ``input.bit_depth`` 10, 12 or 16 (conv1 then reads 16-bit pixels with the tiler's
``x / (2^bits - 1)`` normalisation; a runner takes the one dtype its sidecar says).

The weights come from the ONNX file every backend reads: the graph is matched op by op against
the student's structure with the ``onnx`` package; anything else (a layer wider than
``MAX_WIDTH``, a softmax head, other ops) is a ``NotAStudentError`` naming the op or the layer,
and the Inspector keeps its backend. Before it is used, a freshly built runner must reproduce
the backend's float32 logits on two fixed frames (one on the shared path, one patch by patch).

Kernel levels (``ISAS``): AVX2 + FMA for every layer, and AVX-512F for the layers that gain from
16 lanes (conv1, 4-to-8-channel convs, blocks of 16 output channels); all are compiled in, and
``isa="auto"`` takes the highest this CPU runs (``kernel_isas()``). Both levels sum in the same
order, so they give the same bits.

Precision (``PRECISIONS``): ``"f32"`` (the default, the reference) or ``"bf16"`` on a CPU with
AVX512-BF16 (``kernel_precisions()``): conv2–conv5 and FC1 multiply bf16 weights by bf16
activations with f32 sums, the feature maps are stored in bf16, conv1 and FC2 stay f32
(cpp/student_kernels_bf16.cpp). bf16 keeps about 3 significant digits, so its logits are not the
f32 ones; the load-time check compares it at that resolution, and whether its verdicts are
acceptable is for ``pyinspect.precision_guard`` to judge on real frames.

    runner = StudentRunner("models/student.onnx")
    result = runner.inspect(gray_frame)        # InspectionResult with stage timings
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pyinspect import _core
from pyinspect.backends.base import check_model_file, check_threads, physical_cores
from pyinspect.errors import BackendError, BackendUnavailableError, InputError, SpecError
from pyinspect.frames import check_frame, is_gray
from pyinspect.result import DeferredInspectionResult, InspectionResult, Timings, verdict_fields
from pyinspect.spec import ModelSpec
from pyinspect.tiling import patch_grid, tile_into

if TYPE_CHECKING:
    from pyinspect.backends.base import Backend

__all__ = [
    "BF16_VERIFY_TOLERANCE",
    "ISAS",
    "MAX_WIDTH",
    "PRECISIONS",
    "RECORD_HEAD",
    "VERIFY_TOLERANCE",
    "WIDTHS",
    "NotAStudentError",
    "StudentGraph",
    "StudentRunner",
    "check_precision",
    "decode_record",
    "input_transform",
    "kernel_isas",
    "kernel_precisions",
]

#: Conv widths of the paper's student (Table 1, the shipped model); any others up to MAX_WIDTH run.
WIDTHS = (4, 8, 16, 4, 4)
#: Widest conv layer the direct runner takes (the 1/16 student's 32 and everything narrower fit).
MAX_WIDTH = 64
#: Largest |Δlogit| against the backend accepted at load (float summation order only: ~1e-5).
VERIFY_TOLERANCE = 1e-3
#: ``StudentRunner(isa=...)``: ``auto`` (the highest kernel level this CPU runs) or a level.
ISAS = ("auto", "avx2", "avx512f")
#: ``StudentRunner(precision=...)``: ``f32`` (the reference) or ``bf16`` (AVX512-BF16 CPUs).
PRECISIONS = ("f32", "bf16")
#: bf16 at load: largest |Δlogit| against the backend as a fraction of the largest |logit| of the
#: check's frames. bf16 keeps 8 significant bits (rounding ≤ 2^-9 ≈ 0.2 %) in every weight and
#: stored activation of five layers, and a logit is a difference of larger terms: for
#: models/student.onnx the check gives 0.11 against logits up to 10.6 (1.1 %; ``verify_delta`` of
#: ``StudentRunner("models/student.onnx", precision="bf16")``), random students of the family
#: (widths 1–64) stayed under 5 %, and a wrong kernel or layout is off by about the logits' size.
BF16_VERIFY_TOLERANCE = 0.1


class NotAStudentError(SpecError):
    """The model is not a student of the paper's family in a form the direct runner reads."""


@dataclass
class StudentGraph:
    """What the C++ runner needs from the model: weights and how conv1 sees a pixel."""

    weights: dict[str, np.ndarray] = field(default_factory=dict)
    in_channels: int = 1
    pad_value: float = 0.0  # value conv1 sees outside the patch
    widths: tuple[int, ...] = ()  # output channels of conv1..conv5

    @property
    def num_classes(self) -> int:
        return int(self.weights["fc2_b"].size)


def read_student(model_path: str | os.PathLike[str]) -> StudentGraph:
    """Read an ONNX file and match it op by op against the student (``NotAStudentError``)."""
    import onnx

    path = Path(model_path)
    if path.suffix.lower() != ".onnx":
        msg = f"{path}: the direct student runner reads ONNX files, not {path.suffix!r}"
        raise NotAStudentError(msg)
    try:
        model = onnx.load(str(path))
    except Exception as exc:
        msg = f"{path}: not a loadable ONNX model ({type(exc).__name__}: {exc})"
        raise SpecError(msg) from exc
    return _Matcher(model.graph, str(path)).match()


class _Matcher:
    """Walks the single chain of ops from the graph's input to its output."""

    def __init__(self, graph: Any, name: str) -> None:
        from onnx import numpy_helper

        self.name = name
        self.consts: dict[str, np.ndarray] = {
            t.name: numpy_helper.to_array(t) for t in graph.initializer
        }
        self.users: dict[str, list[Any]] = {}
        for node in graph.node:
            if node.op_type == "Constant" and len(node.output) == 1:
                self.consts[node.output[0]] = _constant_value(node)
                continue
            for inp in node.input:
                self.users.setdefault(inp, []).append(node)
        inputs = [i.name for i in graph.input if i.name not in self.consts]
        if len(inputs) != 1 or len(graph.output) != 1:
            msg = f"{name}: the student has one input and one output"
            raise NotAStudentError(msg)
        self.output = graph.output[0].name
        self.tensor = inputs[0]

    def fail(self, what: str) -> NotAStudentError:
        return NotAStudentError(f"{self.name}: {what}; not a student the direct runner takes")

    def peek(self) -> str:
        users = self.users.get(self.tensor, [])
        return users[0].op_type if len(users) == 1 else ""

    def step(self, op: str) -> Any:
        users = self.users.get(self.tensor, [])
        if len(users) != 1:
            msg = f"tensor {self.tensor!r} feeds {len(users)} ops, expected one"
            raise self.fail(msg)
        node = users[0]
        if node.op_type != op:
            msg = f"expected {op} after {self.tensor!r}, got {node.op_type} ({node.name})"
            raise self.fail(msg)
        if node.input[0] != self.tensor:
            msg = f"{node.op_type} ({node.name}) reads {self.tensor!r} as a weight"
            raise self.fail(msg)
        self.tensor = node.output[0]
        return node

    def const(self, node: Any, index: int, what: str) -> np.ndarray:
        if index >= len(node.input) or node.input[index] not in self.consts:
            msg = f"{what} of {node.op_type} ({node.name}) is not a constant"
            raise self.fail(msg)
        return np.asarray(self.consts[node.input[index]], dtype=np.float32)

    def match(self) -> StudentGraph:
        graph = StudentGraph()
        saw_pad = False
        if self.peek() == "Pad":
            saw_pad = True
            pad = self.step("Pad")
            attrs = _attrs(pad)
            pads = self.const(pad, 1, "pads").astype(np.int64).tolist()
            if attrs.get("mode", b"constant") not in (b"constant", "constant") or pads != [
                0,
                0,
                1,
                1,
                0,
                0,
                1,
                1,
            ]:
                msg = "conv1's Pad must add one constant pixel on each side"
                raise self.fail(msg)
            if len(pad.input) > 2 and pad.input[2]:
                graph.pad_value = float(self.const(pad, 2, "pad value").reshape(()))
        cin = 0  # conv1: 1 or 3 (checked below)
        widths = []
        for layer in range(1, 6):
            conv = self.step("Conv")
            a = _attrs(conv)
            want = [0, 0, 0, 0] if layer == 1 and saw_pad else [1, 1, 1, 1]
            if (
                list(a.get("strides", [1, 1])) != [1, 1]
                or list(a.get("dilations", [1, 1])) != [1, 1]
                or list(a.get("pads", [0, 0, 0, 0])) != want
                or a.get("group", 1) != 1
                or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")
            ):
                msg = f"conv{layer} must be 3×3, stride 1, zero padding 1: got {a}"
                raise self.fail(msg)
            w = self.const(conv, 1, f"conv{layer} weight")
            if w.ndim != 4 or w.shape[2:] != (3, 3) or (layer > 1 and w.shape[1] != cin):
                want_in = "C_in" if layer == 1 else str(cin)
                msg = f"conv{layer} weight is {list(w.shape)}, expected [C, {want_in}, 3, 3]"
                raise self.fail(msg)
            if layer == 1 and w.shape[1] not in (1, 3):
                msg = f"conv1 takes {w.shape[1]} input channels, expected 1 (gray) or 3"
                raise self.fail(msg)
            if not 1 <= w.shape[0] <= MAX_WIDTH:
                msg = (
                    f"conv{layer} has {w.shape[0]} output channels, more than the"
                    f" {MAX_WIDTH} the direct runner takes (a backend runs it)"
                )
                raise self.fail(msg)
            cin = int(w.shape[0])
            widths.append(cin)
            if len(conv.input) < 3:
                msg = f"conv{layer} has no bias"
                raise self.fail(msg)
            b = self.const(conv, 2, f"conv{layer} bias").reshape(-1)
            if b.size != cin:
                msg = f"conv{layer} bias has {b.size} values for {cin} channels"
                raise self.fail(msg)
            if layer == 1:
                graph.in_channels = int(w.shape[1])
            self.step("Relu")
            pool = self.step("MaxPool")
            p = _attrs(pool)
            if (
                list(p.get("kernel_shape", [])) != [2, 2]
                or list(p.get("strides", [1, 1])) != [2, 2]
                or list(p.get("pads", [0, 0, 0, 0])) != [0, 0, 0, 0]
                or p.get("ceil_mode", 0) != 0
                or list(p.get("dilations", [1, 1])) != [1, 1]
            ):
                msg = f"pool{layer} must be 2×2 stride 2 without padding, got {p}"
                raise self.fail(msg)
            graph.weights[f"conv{layer}_w"] = w
            graph.weights[f"conv{layer}_b"] = b
        graph.widths = tuple(widths)
        flat = widths[-1] * 7 * 7
        if self.peek() == "Flatten":
            if _attrs(self.step("Flatten")).get("axis", 1) != 1:
                msg = "Flatten must keep the batch axis (axis=1)"
                raise self.fail(msg)
        else:
            reshape = self.step("Reshape")
            shape = self.const(reshape, 1, "shape").astype(np.int64).tolist()
            if len(shape) != 2 or shape[1] not in (flat, -1):
                msg = f"Reshape to {shape}, expected [N, {flat}]"
                raise self.fail(msg)
        for k in (1, 2):
            gemm = self.step("Gemm")
            a = _attrs(gemm)
            if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
                msg = f"fc{k} must be a plain Gemm (no transA, alpha = beta = 1), got {a}"
                raise self.fail(msg)
            w = self.const(gemm, 1, f"fc{k} weight")
            if not a.get("transB", 0):
                w = w.T
            graph.weights[f"fc{k}_w"] = np.ascontiguousarray(w, dtype=np.float32)
            graph.weights[f"fc{k}_b"] = self.const(gemm, 2, f"fc{k} bias").reshape(-1)
            if k == 1:
                self.step("Relu")
        if self.tensor != self.output:
            msg = f"the graph goes on after fc2 ({self.peek() or 'several ops'})"
            raise self.fail(msg)
        fc1, fc2 = graph.weights["fc1_w"], graph.weights["fc2_w"]
        if fc1.ndim != 2 or fc1.shape[1] != flat or graph.weights["fc1_b"].size != fc1.shape[0]:
            msg = f"fc1 weight is {list(fc1.shape)}, expected [hidden, {flat}] (C5 × 7 × 7)"
            raise self.fail(msg)
        if (
            fc2.ndim != 2
            or fc2.shape[1] != fc1.shape[0]
            or graph.weights["fc2_b"].size != fc2.shape[0]
        ):
            msg = f"fc2 weight is {list(fc2.shape)}, expected [classes, {fc1.shape[0]}]"
            raise self.fail(msg)
        return graph


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _constant_value(node: Any) -> np.ndarray:
    from onnx import numpy_helper

    for a in node.attribute:
        if a.name == "value":
            return numpy_helper.to_array(a.t)
        if a.name in ("value_float", "value_int"):
            return np.asarray(a.f if a.name == "value_float" else a.i)
        if a.name in ("value_floats", "value_ints"):
            return np.asarray(list(a.floats if a.name == "value_floats" else a.ints))
    return np.zeros(0, np.float32)


#: The head of the native runner's frame record (cpp/student_bindings.cpp): tile, infer, vote
#: and total ms, conv1..conv5 and FC ms; patches, textures, texture id, flags (1 defective,
#: 2 shared). Per-patch arrays follow.
RECORD_HEAD = struct.Struct("=10d4i")


def decode_record(record: bytes, spec: ModelSpec, boxes: np.ndarray) -> dict[str, Any]:
    """``InspectionResult``'s fields from one native frame record (read-only views of it)."""
    t = RECORD_HEAD.unpack_from(record)
    n, n_textures, texture, flags = t[10:]
    off = RECORD_HEAD.size
    return verdict_fields(
        spec,
        texture,
        bool(flags & 1),
        np.frombuffer(record, np.bool_, n, off + 12 * n + 4 * n_textures),
        Timings(t[0], t[1], t[2], t[3]),
        patch_class=np.frombuffer(record, np.int32, n, off),  # views of immutable bytes:
        patch_score=np.frombuffer(record, np.float32, n, off + 4 * n),  # read-only
        patch_defect_prob=np.frombuffer(record, np.float32, n, off + 8 * n),
        texture_votes=np.frombuffer(record, np.int32, n_textures, off + 12 * n),
    )


class StudentRunner:
    """Inspect gray frames with the direct student runner (same verdicts as the backend).

    Args:
        model_path: the student ``.onnx``, sidecar beside it (or pass ``spec``).
        spec: the sidecar, if already loaded.
        threads: compute threads (``None``: physical cores).
        reference: an open backend of the same model to check the logits against at load; the
            Inspector passes its own, so the check is parity with the path the runner replaces.
            ``None``: a fresh ONNX Runtime backend.
        verify: run that check (keep it on).
        isa: the kernel level: ``"auto"`` (the highest of ``kernel_isas()``), ``"avx2"`` or
            ``"avx512f"``; ``isa`` afterwards names the one in use (in bf16 precision, the level
            of the layers that stay f32: conv1 and FC2).
        precision: ``"f32"`` (the default: the reference, bit-identical on every level) or
            ``"bf16"``: conv2–conv5 and FC1 with bf16 weights and activations and f32 sums
            (``kernel_precisions()`` says whether this CPU runs it); ``precision`` afterwards.

    Raises ``NotAStudentError`` (a ``SpecError``) for other networks, ``InputError`` for an
    ``isa`` or ``precision`` that is not one, and ``BackendUnavailableError`` where the CPU lacks
    AVX2/FMA (or the level or precision asked for) or the core was built without the runner;
    ``BackendError`` when the parity check fails. Not safe for concurrent ``run``.
    """

    name = "student"
    spins = True  # the C++ pool busy-waits ~0.5 ms after each frame

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        spec: ModelSpec | None = None,
        *,
        threads: int | None = None,
        reference: Backend | None = None,
        verify: bool = True,
        isa: str = "auto",
        precision: str = "f32",
    ) -> None:
        check_threads(threads)
        require_runner()
        check_isa(isa)
        check_precision(precision)
        self.model_path = Path(model_path)
        check_model_file(self.model_path)
        self.spec = spec if spec is not None else ModelSpec.for_model(self.model_path)
        graph = read_student_for(self.model_path, self.spec)
        #: Bits per pixel of the frames it reads: 8 (uint8) or 10/12/16 (uint16 mono).
        self.bit_depth: int = getattr(self.spec.input, "bit_depth", 8)
        scale, offset = input_transform(self.spec)
        self.threads = threads or physical_cores()
        try:
            self._native: Any = _core.StudentRunner(
                graph.weights,
                graph.in_channels,
                scale,
                offset,
                graph.pad_value,
                self.threads,
                self.spec.class_texture.tolist(),
                self.spec.class_defective.tolist(),
                True,
                "uint8" if self.bit_depth == 8 else "uint16",
                isa,
                precision,
            )
        except ValueError as exc:
            msg = f"{self.model_path}: {exc}"
            raise NotAStudentError(msg) from exc
        #: The kernel level in use: ``"avx2"`` or ``"avx512f"``.
        self.isa: str = self._native.isa
        #: The precision in use: ``"f32"`` or ``"bf16"``.
        self.precision: str = self._native.precision
        self._record: bytes | None = None
        self.verify_delta: float | None = self._verify(reference) if verify else None

    def accepts(self, image: np.ndarray) -> bool:
        return is_gray(image)

    def run(
        self, image: np.ndarray, boxes: np.ndarray, threshold: float | None
    ) -> InspectionResult:
        """Verdict of a checked gray frame over ``boxes`` (int32 [N, 4], C-contiguous). The
        result's fields are decoded from the native record when first read."""
        try:
            record = self._native.run(image, boxes, -1.0 if threshold is None else threshold)
        except ValueError as exc:
            raise InputError(str(exc)) from exc
        self._record = record
        return DeferredInspectionResult.deferred(decode_record, record, self.spec, boxes)

    @property
    def last_stages(self) -> dict[str, Any]:
        """The last frame's per-layer times (ms, as thread 0 saw each phase end), FC time,
        whether the patches shared conv1–4 and the precision they ran in (``{}`` before the
        first frame)."""
        if self._record is None:
            return {}
        times = RECORD_HEAD.unpack_from(self._record)
        return {
            "layers_ms": list(times[4:9]),
            "fc_ms": times[9],
            "shared": bool(times[13] & 2),
            "precision": self.precision,
        }

    def inspect(self, frame: Any, *, threshold: float | None = None) -> InspectionResult:
        """Check one gray frame (H×W or H×W×1, any strides; uint8, or uint16 for a model of
        ``input.bit_depth`` > 8) and run it on its grid."""
        image = check_frame(frame, self.bit_depth)
        if not is_gray(image):
            msg = (
                f"the student runner reads gray frames; got {image.shape[2]} channels (convert"
                " with cv2.cvtColor, or use Inspector for colour frames)"
            )
            raise InputError(msg)
        return self.run(image, self.boxes(image.shape[0], image.shape[1]), threshold)

    def boxes(self, height: int, width: int) -> np.ndarray:
        """The model's patch grid for an H×W frame (cached, read-only), as ``Inspector.boxes``."""
        rows, cols = self.spec.grid_rows_cols
        return patch_grid(height, width, self.spec.patch, rows, cols)

    def logits(self) -> np.ndarray:
        """A copy of the last frame's logits [N, K]."""
        return self._native.logits()

    def close(self) -> None:
        self._native = None

    def __enter__(self) -> StudentRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"StudentRunner({str(self.model_path)!r}, threads={self.threads}, isa={self.isa!r},"
            f" precision={self.precision!r})"
        )

    def _verify(self, reference: Backend | None) -> float:
        """Max |Δlogit| against ``reference`` on a 512×512 frame (the shared path) and a 600×600
        one (offsets not multiples of 16: patch by patch); a ``BackendError`` above
        ``VERIFY_TOLERANCE``, or in bf16 above ``BF16_VERIFY_TOLERANCE`` × the frames' largest
        |logit| (bf16's own rounding is far above 1e-3, and a random frame's patch classes can be
        near ties, so this checks that the kernels compute the network, not its verdicts). Both
        frames have 9 patches, so the reference runs one batch size."""
        rng = np.random.default_rng(20200)
        owned = reference is None
        if reference is None:
            from pyinspect.backends.onnxruntime import OnnxRuntimeBackend

            reference = OnnxRuntimeBackend(self.model_path, self.spec, threads=1)
        worst = scale = 0.0
        norm = self.spec.normalization
        depth = self.bit_depth
        dtype = np.uint8 if depth == 8 else np.uint16
        try:
            for shape in ((512, 512), (600, 600)):
                frame = rng.integers(0, 2**depth, shape, dtype=dtype)
                boxes = self.boxes(*shape)
                self._native.run(frame, boxes, -1.0)
                got = self._native.logits()
                buf = reference.input_buffer(len(boxes))
                tile_into(frame, buf, boxes, norm.mean, norm.std, bit_depth=depth)
                want = reference.infer(len(boxes))
                worst = max(worst, float(np.abs(got - want).max()))
                scale = max(scale, float(np.abs(want).max()))
        finally:
            if owned:
                reference.close()
        limit = VERIFY_TOLERANCE
        if self.precision == "bf16":
            limit = max(limit, BF16_VERIFY_TOLERANCE * scale)
        if not worst <= limit:
            msg = (
                f"{self.model_path}: the student runner's {self.precision} logits differ from the"
                f" {reference.name} backend's by {worst:.3g} (> {limit:.3g})"
            )
            raise BackendError(msg)
        return worst


def input_transform(spec: ModelSpec) -> tuple[float, float]:
    """``(scale, offset)`` of the tiler's arithmetic on one gray plane, ``u = x · scale + offset``
    with ``scale = float32(1 / (max_value · std))`` and ``offset = float32(−mean / std)``: what
    conv1 sees of a pixel, here and in the whole-frame graph (``pyinspect.export.fullframe``)."""
    norm = spec.normalization
    max_value = 2 ** getattr(spec.input, "bit_depth", 8) - 1
    scale = float(np.float32(1.0 / (max_value * norm.std[0])))
    offset = float(np.float32(-norm.mean[0] / norm.std[0]))
    return scale, offset


def read_student_for(model_path: Path, spec: ModelSpec) -> StudentGraph:
    """The student's weights, after the sidecar checks that need no graph (cheap refusals
    first: the Inspector tries this on every CPU model it loads)."""
    if spec.output.kind != "logits":
        msg = f"{model_path}: the student runner needs a logits output, not {spec.output.kind}"
        raise NotAStudentError(msg)
    mean, std = spec.normalization.mean, spec.normalization.std
    if len(set(mean)) != 1 or len(set(std)) != 1:
        msg = (
            f"{model_path}: the runner feeds one gray plane, so the normalisation must be"
            f" the same for every channel; got mean {mean}, std {std}"
        )
        raise NotAStudentError(msg)
    if spec.patch != 224 or spec.input.dtype != "float32":
        msg = f"{model_path}: the student runner runs float32 224×224 patches"
        raise NotAStudentError(msg)
    graph = read_student(model_path)
    if graph.in_channels != spec.input.channels:
        msg = (
            f"{model_path}: conv1 takes {graph.in_channels} channels but the sidecar"
            f" says {spec.input.channels}"
        )
        raise NotAStudentError(msg)
    if graph.weights["fc2_b"].size != spec.num_classes:
        msg = (
            f"{model_path}: {graph.weights['fc2_b'].size} outputs, sidecar has"
            f" {spec.num_classes} classes"
        )
        raise NotAStudentError(msg)
    return graph


def kernel_isas() -> tuple[str, ...]:
    """The kernel levels this CPU runs, lowest first: ``("avx2", "avx512f")``, ``("avx2",)``, or
    ``()`` where the runner cannot run at all."""
    levels = getattr(_core, "student_kernel_isas", None)
    return tuple(levels()) if levels is not None else ()


def kernel_precisions() -> tuple[str, ...]:
    """The precisions this CPU runs: ``("f32", "bf16")`` with AVX512-BF16 (and AVX512VL),
    ``("f32",)`` without, or ``()`` where the runner cannot run at all."""
    precisions = getattr(_core, "student_kernel_precisions", None)
    return tuple(precisions()) if precisions is not None else ()


def check_precision(precision: object) -> str:
    """``precision`` as one this CPU runs: an ``InputError`` for a value that is not one of
    ``PRECISIONS``, ``BackendUnavailableError`` for ``"bf16"`` on a CPU without AVX512-BF16."""
    if not isinstance(precision, str) or precision not in PRECISIONS:
        msg = f"precision must be one of {list(PRECISIONS)}, got {precision!r}"
        raise InputError(msg)
    if precision == "bf16" and precision not in kernel_precisions():
        msg = (
            f"the student runner's {precision} kernels need a CPU with AVX512_BF16 and"
            " AVX512VL (the avx512_bf16 and avx512vl flags); this one runs"
            f" {', '.join(kernel_precisions()) or 'none of its precisions'}"
        )
        raise BackendUnavailableError(msg)
    return precision


def check_isa(isa: object) -> str:
    """``isa`` as a kernel level this CPU runs (``"auto"`` always): an ``InputError`` for a
    name that is not a level, ``BackendUnavailableError`` for a level this CPU lacks."""
    if not isinstance(isa, str) or isa not in ISAS:
        msg = f"isa must be one of {list(ISAS)}, got {isa!r}"
        raise InputError(msg)
    have = kernel_isas()
    if isa != "auto" and isa not in have:
        msg = (
            f"the student runner's {isa} kernels need a CPU with {isa.upper()}; this one runs"
            f" {', '.join(have) or 'none of its levels'}"
        )
        raise BackendUnavailableError(msg)
    return isa


def require_runner() -> None:
    """``BackendUnavailableError`` unless this build of ``_core`` has the runner and this CPU
    has the AVX2 and FMA its kernels need."""
    supported = getattr(_core, "student_engine_supported", None)
    if supported is None or not hasattr(_core, "StudentRunner"):
        msg = "this build of pyinspect._core has no direct student runner (not an x86-64 build)"
        raise BackendUnavailableError(msg)
    if not supported():
        msg = "the direct student runner needs a CPU with AVX2 and FMA"
        raise BackendUnavailableError(msg)
