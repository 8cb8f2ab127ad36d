"""Inspector: model + sidecar -> backend; frame -> tiles -> logits -> verdict.

Per frame the hot path does: grid lookup (cached per frame shape), one fused tile pass written
straight into the backend's input buffer, one ``infer``, one vote. Nothing is allocated besides
the result's own small arrays.

Thread-safety: one Inspector may be shared by many threads. ``run``/``run_batch`` hold a lock
while they use the backend's buffers (tile -> infer -> vote), so concurrent calls are correct but
execute one at a time; the backend already spreads one inference over the cores. For parallel
throughput prefer ``run_batch`` (one inference for several frames) or one Inspector per worker.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any, TypeAlias

import cv2
import numpy as np

from pyinspect.backends.base import (
    Backend,
    backend_info,
    create_backend,
    pick_backend,
    usable_cpus,
)
from pyinspect.errors import (
    BackendError,
    InputError,
    InputTypeError,
    ModelFileError,
    PyInspectError,
)
from pyinspect.result import InspectionResult, Timings
from pyinspect.spec import ModelSpec
from pyinspect.tiling import _check_frame, patch_grid, tile_into
from pyinspect.voting import VoteResult, vote

Frame: TypeAlias = "np.ndarray | str | os.PathLike[str]"

_NS_TO_MS = 1e-6


class Inspector:
    """Run one model on frames: ``Inspector("models/student.onnx").run(img)``.

    Args:
        model_path: the model file; its sidecar ``<model_path>.json`` must sit beside it.
        backend: ``"auto"`` (see ``pyinspect.backends.base.AUTO_PREFERENCE``: ONNX Runtime for
            ``.onnx``, TensorRT for ``.plan``/``.engine``) or a registered backend name.
        threshold: default defect rule; ``None`` = a patch is defective when its argmax class is
            defective, ``t`` in [0, 1] = when its summed defective probability is >= t.
        threads: backend compute threads (``None``: the backend's default, physical cores).
        spec: use this spec instead of reading the sidecar (tests, in-memory exports).
        tile_threads: threads for the tiler (0 = let the core decide).
        engine: how gray frames of the paper's student run. ``"auto"`` (with ``backend="auto"``
            on the CPU): the direct C++ student engine (``pyinspect.fast_student``, 4-7x faster
            than ONNX Runtime here, verified against this Inspector's backend at load) when the
            model is that student and the engine is built; else the backend. ``"student"``:
            require the engine (error saying why not). ``"backend"``: always the backend.
            Colour frames always use the backend.
        **backend_options: passed to the backend (``device``, ``max_batch``, ...); ``None``
            values are dropped.

    Frames are uint8 H×W (gray) or H×W×C (C = 1, 3 BGR as OpenCV loads them, 4 BGRA), any
    strides, or a path read with ``cv2.IMREAD_UNCHANGED``.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        backend: str = "auto",
        *,
        threshold: float | None = None,
        threads: int | None = None,
        spec: ModelSpec | None = None,
        tile_threads: int = 0,
        engine: str = "auto",
        **backend_options: Any,
    ) -> None:
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            what = "is not a file" if self.model_path.exists() else "not found"
            msg = f"{self.model_path}: model file {what}"
            raise ModelFileError(msg)
        name = pick_backend(self.model_path) if backend == "auto" else backend
        backend_info(name)  # unknown / not installed: fail before reading anything else
        self._spec = spec if spec is not None else ModelSpec.for_model(self.model_path)
        self.threshold = _check_threshold(threshold)
        self._tile_threads = tile_threads
        self._backend: Backend = create_backend(
            name, self.model_path, self._spec, threads=threads, **backend_options
        )
        self._backend_name = name
        self._max_batch = int(self._backend.max_batch)
        norm = self._spec.normalization
        self._mean, self._std = tuple(norm.mean), tuple(norm.std)
        self._rows, self._cols = self._spec.grid_rows_cols
        self._is_logits = self._spec.output.kind == "logits"
        self._class_texture = self._spec.class_texture
        self._class_defective = self._spec.class_defective
        self._lock = threading.Lock()
        self._closed = False
        try:
            self._engine, self.engine_note = _pick_engine(
                engine,
                backend,
                name,
                self.model_path,
                self._spec,
                threads,
                backend_options,
                self._backend,
            )
        except BaseException:
            self._backend.close()
            raise

    # ---- public ----------------------------------------------------------------------------
    @property
    def spec(self) -> ModelSpec:
        return self._spec

    @property
    def backend(self) -> Backend:
        return self._backend

    @property
    def backend_name(self) -> str:
        return self._backend_name

    @property
    def engine(self) -> str:
        """``"student-engine"`` when gray frames run on the direct C++ student engine, else
        ``"backend"``; ``engine_note`` says why the engine was not used."""
        return "backend" if self._engine is None else "student-engine"

    @property
    def max_batch(self) -> int:
        return self._max_batch

    def inference_pool(self, image: np.ndarray) -> tuple[int, bool]:
        """``(CPU threads, busy-waits)`` of the compute that ``image`` would run on: the student
        engine for a gray frame when it is on (its pool spins ~0.5 ms after each frame), else
        the backend (a CPU pool without a size counts as every CPU); ``(0, False)`` on a GPU.
        ``stream`` uses it to decide whether its reader should step back."""
        if self._takes_engine(image):
            return int(self._engine.threads), True
        if getattr(self._backend, "device", "cpu") != "cpu":
            return 0, False
        threads = getattr(self._backend, "threads", None) or usable_cpus()
        return int(threads), bool(getattr(self._backend, "spin", True))

    def boxes(self, height: int, width: int) -> np.ndarray:
        """The patch grid (x, y, w, h) this model uses on an H×W frame (cached, read-only)."""
        return patch_grid(height, width, self._spec.patch, self._rows, self._cols)

    def run(self, frame: Frame, *, threshold: float | None = None) -> InspectionResult:
        """Inspect one frame (array or image path)."""
        image, source = _load(frame)
        thr = self.threshold if threshold is None else _check_threshold(threshold)
        t0 = time.perf_counter_ns()
        return self._run_image(image, source, self._grid_for(image, source), thr, t0)

    def _run_image(
        self,
        image: np.ndarray,
        source: str | None,
        boxes: np.ndarray,
        threshold: float | None,
        t0: int,
    ) -> InspectionResult:
        n = len(boxes)
        if self._takes_engine(image):
            with self._lock:
                self._check_open()
                try:
                    return self._engine.run(image, threshold=threshold)
                except InputError as exc:
                    raise _with_source(exc, source) from exc.__cause__
        with self._lock:
            self._check_open()
            if n <= self._max_batch:
                buf = self._backend.input_buffer(n)
                self._tile(image, buf, boxes, source)
                t1 = time.perf_counter_ns()
                logits = self._backend.infer(n)
                t2 = time.perf_counter_ns()
                verdict = self._vote(logits, threshold)
            else:  # a frame larger than one batch: infer in chunks, vote once
                logits_all, t1, t2 = self._infer_chunked(image, boxes, source)
                verdict = self._vote(logits_all, threshold)
        t3 = time.perf_counter_ns()
        timings = Timings(
            tile_ms=(t1 - t0) * _NS_TO_MS,
            infer_ms=(t2 - t1) * _NS_TO_MS,
            vote_ms=(t3 - t2) * _NS_TO_MS,
            total_ms=(t3 - t0) * _NS_TO_MS,
        )
        return self._result(verdict, boxes, timings)

    def run_batch(
        self, frames: Sequence[Frame], *, threshold: float | None = None
    ) -> list[InspectionResult]:
        """Inspect several frames, packing as many as fit into one ``infer`` (up to
        ``max_batch`` patches). Results are in input order; ``infer_ms`` is each frame's share.
        With the direct student engine every frame runs on its own (gray ones on the engine,
        which beats any batch on the backend)."""
        thr = self.threshold if threshold is None else _check_threshold(threshold)
        loaded = [_load(f) for f in frames]
        boxes = [self._grid_for(img, src) for img, src in loaded]
        if self._engine is not None:  # the engine runs one frame at a time, faster than a batch
            return [self._run_group([i], loaded, boxes, thr)[0] for i in range(len(loaded))]
        results: list[InspectionResult] = []
        group: list[int] = []
        patches = 0
        for i, b in enumerate(boxes):
            if group and patches + len(b) > self._max_batch:
                results.extend(self._run_group(group, loaded, boxes, thr))
                group, patches = [], 0
            group.append(i)
            patches += len(b)
        if group:
            results.extend(self._run_group(group, loaded, boxes, thr))
        return results

    def stream(
        self,
        frames: Any,
        *,
        depth: int = 2,
        threshold: float | None = None,
        reader_nice: int | None = None,
    ) -> Generator[InspectionResult, None, None]:
        """Inspect a camera/video/folder in order, acquiring frame n+1 while frame n is inferred.

        ``frames``: a ``cv2.VideoCapture`` or an iterable of arrays / image paths; a frame that
        fails yields a result with ``error`` set and the stream goes on. ``reader_nice``: how far
        the reader thread steps back for inference (``None``: only when inference's threads
        fill every CPU and sleep when idle). See ``pyinspect.stream``.
        """
        from pyinspect.stream import stream

        return stream(self, frames, depth=depth, threshold=threshold, reader_nice=reader_nice)

    def close(self) -> None:
        """Release the backend (idempotent). The Inspector cannot run afterwards."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._backend.close()
                if self._engine is not None:
                    self._engine.close()

    def __enter__(self) -> Inspector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = ", closed" if self._closed else ""
        return (
            f"Inspector({str(self.model_path)!r}, backend={self._backend_name!r},"
            f" device={getattr(self._backend, 'device', '?')!r}, engine={self.engine!r},"
            f" classes={self._spec.num_classes},"
            f" patch={self._spec.patch}, threshold={self.threshold}{state})"
        )

    # ---- steps (kept separate so a pipelined ``stream()`` can reuse them) -------------------
    def _takes_engine(self, image: np.ndarray) -> bool:
        """Gray frames run on the direct student engine when it is on; the rest on the backend."""
        return self._engine is not None and (image.ndim == 2 or image.shape[2] == 1)

    def _check_open(self) -> None:
        if self._closed:
            msg = f"Inspector for {self.model_path} is closed"
            raise BackendError(msg)

    def _grid_for(self, image: np.ndarray, source: str | None) -> np.ndarray:
        """Validate the frame (ndim, dtype, channels, size) and return its cached grid."""
        try:
            _check_frame(image)
            return self.boxes(image.shape[0], image.shape[1])
        except InputError as exc:
            raise _with_source(exc, source) from exc.__cause__

    def _tile(self, image: np.ndarray, out: np.ndarray, boxes: np.ndarray, source: str | None):
        try:
            tile_into(image, out, boxes, self._mean, self._std, self._tile_threads)
        except InputError as exc:
            raise _with_source(exc, source) from exc.__cause__

    def _vote(self, logits: np.ndarray, threshold: float | None) -> VoteResult:
        return vote(
            logits,
            self._class_texture,
            self._class_defective,
            is_logits=self._is_logits,
            threshold=threshold,
        )

    def _infer_chunked(
        self, image: np.ndarray, boxes: np.ndarray, source: str | None
    ) -> tuple[np.ndarray, int, int]:
        """Logits of all boxes, ``max_batch`` at a time; returns (logits, t_tiled, t_inferred)
        with tiling and inference time summed into a pseudo timeline."""
        n, step = len(boxes), self._max_batch
        logits = np.empty((n, self._spec.num_classes), dtype=np.float32)
        tile_ns = infer_ns = 0
        start = time.perf_counter_ns()
        for lo in range(0, n, step):
            hi = min(n, lo + step)
            a = time.perf_counter_ns()
            self._tile(image, self._backend.input_buffer(hi - lo), boxes[lo:hi], source)
            b = time.perf_counter_ns()
            logits[lo:hi] = self._backend.infer(hi - lo)
            tile_ns += b - a
            infer_ns += time.perf_counter_ns() - b
        return logits, start + tile_ns, start + tile_ns + infer_ns

    def _run_group(
        self,
        group: list[int],
        loaded: list[tuple[np.ndarray, str | None]],
        boxes: list[np.ndarray],
        threshold: float | None,
    ) -> list[InspectionResult]:
        """Tile ``group``'s frames into consecutive rows of one buffer, infer once, vote each."""
        if len(group) == 1:  # alone (or too large to share): the single-frame path
            image, source = loaded[group[0]]
            t0 = time.perf_counter_ns()
            return [self._run_image(image, source, boxes[group[0]], threshold, t0)]
        counts = [len(boxes[i]) for i in group]
        total = sum(counts)
        out: list[InspectionResult] = []
        with self._lock:
            self._check_open()
            buf = self._backend.input_buffer(total)
            tile_ns: list[int] = []
            row = 0
            for i, n in zip(group, counts, strict=True):
                a = time.perf_counter_ns()
                self._tile(loaded[i][0], buf[row : row + n], boxes[i], loaded[i][1])
                tile_ns.append(time.perf_counter_ns() - a)
                row += n
            a = time.perf_counter_ns()
            logits = self._backend.infer(total)
            infer_ns = time.perf_counter_ns() - a
            row = 0
            for i, n, t_ns in zip(group, counts, tile_ns, strict=True):
                a = time.perf_counter_ns()
                verdict = self._vote(logits[row : row + n], threshold)
                vote_ns = time.perf_counter_ns() - a
                share_ns = infer_ns * n / total
                timings = Timings(
                    tile_ms=t_ns * _NS_TO_MS,
                    infer_ms=share_ns * _NS_TO_MS,
                    vote_ms=vote_ns * _NS_TO_MS,
                    total_ms=(t_ns + share_ns + vote_ns) * _NS_TO_MS,
                )
                out.append(self._result(verdict, boxes[i], timings))
                row += n
        return out

    def _result(self, v: VoteResult, boxes: np.ndarray, timings: Timings) -> InspectionResult:
        for a in (v.patch_class, v.patch_score, v.patch_defect_prob, v.texture_votes):
            a.flags.writeable = False
        defective_patches = np.flatnonzero(v.patch_defective)
        defective_patches.flags.writeable = False
        return InspectionResult(
            texture=v.texture,
            texture_name=self._spec.textures[v.texture],
            defective=v.defective,
            label=self._spec.label(v.texture, v.defective),
            boxes=boxes,
            patch_class=v.patch_class,
            patch_score=v.patch_score,
            patch_defect_prob=v.patch_defect_prob,
            defective_patches=defective_patches,
            timings=timings,
            texture_votes=v.texture_votes,
        )


ENGINES = ("auto", "student", "backend")


def _pick_engine(
    engine: str,
    backend: str,
    backend_name: str,
    model_path: Path,
    spec: ModelSpec,
    threads: int | None,
    backend_options: dict[str, Any],
    reference: Backend,
) -> tuple[Any, str]:
    """(direct student engine or None, why not). ``auto`` only replaces an automatically chosen
    CPU backend: a backend named by the caller is what the caller gets."""
    if engine not in ENGINES:
        msg = f"engine must be one of {', '.join(map(repr, ENGINES))}, got {engine!r}"
        raise InputError(msg)
    if engine == "backend":
        return None, "engine='backend' was asked for"
    if engine == "auto":
        device = str(backend_options.get("device") or "cpu")
        if backend != "auto" or backend_name not in ("onnxruntime", "openvino"):
            return None, f"backend {backend_name!r} was chosen explicitly or is not a CPU backend"
        if not device.startswith("cpu"):
            return None, f"device {device!r} is not the CPU"
        from pyinspect.fast_student import WIDTHS  # OpenVINO itself is imported only later

        prov = spec.provenance  # a cheap hint first: the engine's own check needs OpenVINO
        widths = (prov.model_extra or {}).get("arch_kwargs", {}).get("c", WIDTHS)
        if prov.model != "student" or tuple(widths) != WIDTHS:
            return None, "the sidecar's provenance does not name the paper's (4,8,16,4,4) student"
    try:
        from pyinspect.fast_student import FastStudentRunner

        runner = FastStudentRunner(model_path, spec, threads=threads, reference=reference)
        why = ""
    except (ImportError, PyInspectError) as exc:  # not built here, not the student, ...
        runner, why = None, str(exc)
    if runner is None and engine == "student":
        msg = f"{model_path}: the direct student engine cannot run this model: {why}"
        raise BackendError(msg)
    return runner, why


def _check_threshold(threshold: float | None) -> float | None:
    if threshold is None:
        return None
    if isinstance(threshold, bool) or not isinstance(threshold, int | float | np.floating):
        msg = f"threshold must be a number in [0, 1] or None, got {type(threshold).__name__}"
        raise InputTypeError(msg)
    if not 0.0 <= float(threshold) <= 1.0:
        msg = f"threshold must be in [0, 1] or None (argmax rule), got {threshold}"
        raise InputError(msg)
    return float(threshold)


def load_frame(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as stored (``cv2.IMREAD_UNCHANGED``: gray stays 2-D, BGR(A) 3-D)."""
    p = Path(path)
    if not p.is_file():
        what = "is not a file" if p.exists() else "not found"
        msg = f"{p}: image {what}"
        raise InputError(msg)
    image = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
    if image is None:
        msg = f"{p}: cannot decode image (empty, truncated or not a format OpenCV reads)"
        raise InputError(msg)
    return image


def _load(frame: Frame) -> tuple[np.ndarray, str | None]:
    """(array, source path or None)."""
    if isinstance(frame, np.ndarray):
        return frame, None
    if isinstance(frame, str | os.PathLike):
        return load_frame(frame), os.fspath(frame)
    msg = f"frame must be a NumPy uint8 array or an image path, got {type(frame).__name__}"
    raise InputTypeError(msg)


def _with_source(exc: InputError, source: str | None) -> InputError:
    """Prefix the image path to a frame error when the frame came from a file."""
    return exc if source is None else type(exc)(f"{source}: {exc}")
