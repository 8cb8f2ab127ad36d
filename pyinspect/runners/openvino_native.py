"""The whole frame in one C++ call: tile -> OpenVINO infer -> vote, GIL released throughout.

``pyinspect._fastcpu`` is built only when CMake found OpenVINO (``PYINSPECT_WITH_OPENVINO``,
AUTO by default) and links the exact OpenVINO release it was compiled against; this module loads
it, refuses another release with a clear message, and wraps it as a ``FrameRunner``
(``Inspector(model, "openvino", runner="openvino-native")``). The Python ``openvino`` backend
(``pyinspect.backends.openvino``) is the path when the module is missing.

    runner = OpenVinoFrameRunner("models/student.onnx")    # compiled for 512×512 frames
    result = runner.inspect(frame)                         # InspectionResult, with stage timings
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from pyinspect.backends.base import (
    ClosingMixin,
    check_model_file,
    check_threads,
    first_line,
    physical_cores,
)
from pyinspect.backends.openvino import PRECISIONS, check_against_spec, require_precision
from pyinspect.errors import (
    BackendError,
    BackendUnavailableError,
    InputError,
    ModelFileError,
    SpecError,
)
from pyinspect.frames import check_frame
from pyinspect.result import InspectionResult, Timings
from pyinspect.spec import ModelSpec
from pyinspect.tiling import tile_into

if TYPE_CHECKING:
    from pyinspect.backends.base import Backend

REBUILD_HINT = "rebuild pyinspect with openvino installed: pip install --no-build-isolation -e ."
#: Compiled runners kept per frame size (each compiles the model for its patch count).
_MAX_SHAPES = 4


def load_native() -> ModuleType:
    """Import the native module, or say exactly why it cannot be used."""
    try:
        import openvino  # loads libopenvino (also found through the module's rpath)
    except ImportError as exc:
        msg = (
            "the native OpenVINO runner needs the openvino package: pip install pyinspect[openvino]"
        )
        raise BackendUnavailableError(msg) from exc
    loaded = openvino.get_version()
    try:
        from pyinspect import _fastcpu as native
    except ImportError as exc:
        if "libopenvino" in str(exc):
            msg = (
                f"pyinspect's native OpenVINO runner was built against another OpenVINO release"
                f" than the installed {loaded} ({first_line(exc)}); {REBUILD_HINT}"
            )
        else:
            msg = f"pyinspect was built without the native OpenVINO runner; {REBUILD_HINT}"
        raise BackendUnavailableError(msg) from exc
    built = native.build_version()
    if not (loaded == built or loaded.startswith(built + "-")):
        msg = (
            f"pyinspect's native OpenVINO runner was built against OpenVINO {built} but"
            f" {loaded} is installed; {REBUILD_HINT}, or pip install openvino=={built}"
        )
        raise BackendUnavailableError(msg)
    return native


def native_available() -> bool:
    """True when the native runner is built and matches the installed OpenVINO."""
    try:
        load_native()
    except BackendUnavailableError:
        return False
    return True


class OpenVinoFrameRunner(ClosingMixin):
    """Inspect frames with the native runner; same verdicts as ``Inspector(model, "openvino")``.

    Args:
        model_path: ``.onnx`` or ``.xml`` with its sidecar beside it (or pass ``spec``).
        spec: the sidecar, if already loaded.
        reference: an open backend of the same model whose logits the runner must reproduce
            on a 512×512 frame at load (the Inspector passes its own); ``None``: no check.
        frame_shape: (H, W) to compile for up front; other sizes compile on first use.
        precision: ``"f32"`` or ``"bf16"`` (refused on CPUs without native bf16).
        threads: inference threads (``None``: physical cores).
        tile_threads: tiler threads (the tiler takes ~0.1 ms; 1 avoids a thread start).
        threshold: default defect rule, as for ``Inspector``.

    Not safe for concurrent ``run`` from several threads (one input buffer per frame size).
    """

    name = "openvino-native"
    spins = False

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        spec: ModelSpec | None = None,
        *,
        reference: Backend | None = None,
        frame_shape: tuple[int, int] = (512, 512),
        precision: str = "f32",
        threads: int | None = None,
        tile_threads: int = 1,
        threshold: float | None = None,
    ) -> None:
        if precision not in PRECISIONS:
            msg = f"precision must be one of {list(PRECISIONS)}, got {precision!r}"
            raise InputError(msg)
        check_threads(threads)
        self.model_path = Path(model_path)
        check_model_file(self.model_path)
        self.spec = spec if spec is not None else ModelSpec.for_model(self.model_path)
        bit_depth = getattr(self.spec.input, "bit_depth", 8)
        if bit_depth != 8:  # its C++ tiler call is built for uint8 frames only
            msg = (
                f"{self.model_path}: the native OpenVINO runner reads uint8 frames, and the"
                f" sidecar declares input.bit_depth {bit_depth} (uint16 frames); the openvino"
                " backend (runner='backend') reads them"
            )
            raise SpecError(msg)
        self._native = load_native()
        self.precision = precision
        self.threads = threads or physical_cores()
        self.tile_threads = tile_threads
        self.threshold = threshold
        import openvino

        core = openvino.Core()
        if precision != "f32":
            require_precision(core, precision)
        # The same checks and messages as the Python backend, before C++ sees the model.
        try:
            model = core.read_model(str(self.model_path))
        except Exception as exc:
            msg = f"{self.model_path}: not a loadable model ({first_line(exc)})"
            raise ModelFileError(msg) from exc
        check_against_spec(model, self.spec, self.model_path)
        del model
        self._runners: dict[tuple[int, int], Any] = {}
        self._runner(tuple(frame_shape))  # type: ignore[arg-type]
        self.verify_delta = None if reference is None else self._verify(reference)

    def accepts(self, image: np.ndarray) -> bool:
        return True

    def run(
        self, image: np.ndarray, boxes: np.ndarray, threshold: float | None
    ) -> InspectionResult:
        """Verdict of a checked frame; ``boxes`` is the model's grid for its size, which the
        C++ runner computes itself with the same function."""
        runner = self._runner((int(image.shape[0]), int(image.shape[1])))
        try:
            r = runner.run(image, -1.0 if threshold is None else float(threshold))
        except ValueError as exc:
            raise InputError(str(exc)) from exc
        except RuntimeError as exc:
            raise BackendError(str(exc)) from exc
        timings = Timings(r["tile_ms"], r["infer_ms"], r["vote_ms"], r["total_ms"])
        return InspectionResult.from_vote(r, self.spec, runner.boxes, timings)

    def inspect(self, frame: Any, *, threshold: float | None = None) -> InspectionResult:
        """Check one uint8 frame (H×W or H×W×C, any strides) and inspect it."""
        image = check_frame(frame)
        thr = self.threshold if threshold is None else threshold
        return self.run(image, self._runner(image.shape[:2]).boxes, thr)

    def logits(self, frame_shape: tuple[int, int] = (512, 512)) -> np.ndarray:
        """A copy of the logits [N, K] of the last frame of that size (for parity checks)."""
        return self._runner(frame_shape).logits()

    @property
    def compiled_precision(self) -> str:
        return str(next(iter(self._runners.values())).precision)

    def close(self) -> None:
        self._runners.clear()

    def __repr__(self) -> str:
        return (
            f"OpenVinoFrameRunner({str(self.model_path)!r}, precision={self.precision!r},"
            f" threads={self.threads}, frame_shapes={list(self._runners)})"
        )

    def _verify(self, reference: Backend) -> float:
        """Max |Δlogit| against ``reference`` on a fixed 512×512 frame (``BackendError`` above
        1e-3: a runner that replaces a backend must give its verdicts)."""
        frame = np.random.default_rng(20200).integers(0, 256, (512, 512), dtype=np.uint8)
        if self.spec.input.channels == 3:
            frame = np.ascontiguousarray(np.repeat(frame[:, :, None], 3, axis=2))
        runner = self._runner((512, 512))
        runner.run(frame, -1.0)
        norm, boxes = self.spec.normalization, runner.boxes
        tile_into(frame, reference.input_buffer(len(boxes)), boxes, norm.mean, norm.std)
        worst = float(np.abs(runner.logits() - reference.infer(len(boxes))).max())
        if not worst <= 1e-3:
            msg = (
                f"{self.model_path}: the native OpenVINO runner's logits differ from the"
                f" {reference.name} backend's by {worst:.3g} (> 0.001)"
            )
            raise BackendError(msg)
        return worst

    def _runner(self, shape: tuple[int, int]) -> Any:
        runner = self._runners.pop(shape, None)
        if runner is None:
            runner = self._build(shape)
        self._runners[shape] = runner  # most recently used last
        while len(self._runners) > _MAX_SHAPES:
            del self._runners[next(iter(self._runners))]
        return runner

    def _build(self, shape: tuple[int, int]) -> Any:
        s = self.spec
        rows, cols = s.grid_rows_cols
        try:
            return self._native.FrameRunner(
                str(self.model_path),
                s.input.name,
                s.output.name,
                s.input.channels,
                s.patch,
                shape[0],
                shape[1],
                rows or 0,
                cols or 0,
                list(s.normalization.mean),
                list(s.normalization.std),
                s.input.dtype == "float16",
                PRECISIONS[self.precision],
                self.threads,
                self.tile_threads,
                s.class_texture.tolist(),
                s.class_defective.tolist(),
                s.output.kind == "logits",
            )
        except ValueError as exc:
            msg = f"{self.model_path}: {exc}"
            raise InputError(msg) from exc
        except RuntimeError as exc:
            raise BackendError(str(exc)) from exc
