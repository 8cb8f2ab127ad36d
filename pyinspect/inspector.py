"""Inspector: model + sidecar -> a runner or a backend; frame -> verdict.

A frame takes one of two paths, both ending in the same ``InspectionResult``:

- a whole-frame runner (``pyinspect.runners``): one GIL-free C++ call from the uint8 frame to
  the vote; for the paper's students on gray frames, the fastest CPU path;
- tile -> backend -> vote: one fused tile pass written straight into the backend's input
  buffer, one ``infer``, one vote.

Frames are loaded and checked once (``pyinspect.frames``), in ``prepare``, which also fits a
frame smaller than the patch by the sidecar's ``resize`` policy (``pyinspect.resize``);
``run_prepared`` inspects a prepared frame. ``run`` is the two in a row, and ``stream`` runs them
in two threads so that acquiring frame n+1 overlaps inspecting frame n.

Thread-safety: one Inspector may be shared by many threads. Inspection holds a lock while it
uses the backend's buffers or the runner, so concurrent calls are correct but execute one at a
time; the compute already spreads one frame over the cores. For throughput prefer ``run_batch``
(one inference for several frames) or one Inspector per worker.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import warnings
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from pyinspect.backends.base import (
    Backend,
    check_output_kind,
    check_threads,
    create_backend,
    pick_backend,
    require_backend,
    usable_cpus,
)
from pyinspect.backends.triton import is_model_url, remote_spec
from pyinspect.errors import (
    BackendError,
    BackendUnavailableError,
    InputError,
    InputTypeError,
    ModelFileError,
    PyInspectError,
    check_int,
)
from pyinspect.frames import Frame, as_frame, load_frame, path_problem, with_source
from pyinspect.resize import fit_to_patch, resized_shape
from pyinspect.result import InspectionResult, Timings
from pyinspect.runners.base import (
    RUNNERS,
    FrameRunner,
    RunnerInfo,
    precision_choice,
    runner_choice,
    runner_info,
)
from pyinspect.spec import ModelSpec
from pyinspect.tiling import Tiler, patch_grid
from pyinspect.voting import VoteResult, check_threshold, vote

__all__ = ["ARGMAX", "Frame", "Inspector", "PreparedFrame", "ThresholdChoice", "load_frame"]

log = logging.getLogger("pyinspect")

_NS_TO_MS = 1e-6
#: ``engine=`` values (deprecated) -> ``runner=`` values.
_ENGINE_TO_RUNNER = {"auto": "auto", "student": "student", "backend": "backend"}

#: ``threshold="argmax"``: the argmax rule even where the sidecar sets a threshold.
ARGMAX = "argmax"
#: A ``threshold=`` argument: ``None`` (the default rule), ``"argmax"`` or a number in [0, 1].
ThresholdChoice = float | Literal["argmax"] | None


@dataclass(frozen=True, slots=True)
class PreparedFrame:
    """A frame loaded and checked once (and fitted to the patch when the sidecar's ``resize``
    says so), with the patch grid of its size: what ``run_prepared`` takes. ``source`` is the
    image path when the frame came from a file (errors name it)."""

    image: np.ndarray
    source: str | None
    boxes: np.ndarray


class Inspector:
    """Run one model on frames: ``Inspector("models/student.onnx").run(img)``.

    Args:
        model_path: the model file; its sidecar ``<model_path>.json`` must sit beside it.
        backend: ``"auto"`` (the first row of ``pyinspect.backends.base.BACKENDS`` that reads the
            file: ONNX Runtime for ``.onnx``, TensorRT for ``.plan``) or a backend name.
        runner: ``"auto"``: with ``backend="auto"`` on the CPU, a whole-frame runner of
            ``pyinspect.runners.RUNNERS`` that takes this model (the direct student runner for
            the paper's students; its logits are checked against the backend at load), else the
            backend. A runner name (``"student"``): that runner, or an error saying why not.
            ``"backend"``: always the backend. Frames a runner does not take (colour frames on
            the student runner) use the backend.
        threshold: default defect rule. ``None``: the sidecar's ``threshold`` (the argmax rule
            when it sets none); ``"argmax"``: a patch is defective when its argmax class is
            defective; ``t`` in [0, 1]: when its summed defective probability is >= t.
        threads: compute threads of the backend and runner (``None``: physical cores).
        spec: use this spec instead of reading the sidecar (tests, in-memory exports).
        tile_threads: threads for the tiler (0 = let the core decide).
        engine: deprecated alias of ``runner`` (one release).
        precision: the arithmetic of the path. With ``backend="auto"``: ``None`` / ``"f32"``
            (the reference); ``"bf16"``: the direct student runner in bf16 where the
            verdict-parity guard accepts it (>= 99.9 % of image verdicts identical to f32, no
            texture flipped; run once per model, CPU level and precision, then cached beside
            the model), else f32 with a logged warning saying why; ``"auto"``: the lowest
            precision this CPU's student kernels have, guarded the same way, kept only when a
            timing at load finds it clearly faster than f32 (``precision_timing``: the bf16
            kernels are slower than f32 on some CPUs); ``precision`` afterwards names the one
            in use, ``precision_report`` the guard's counts, ``precision_timing`` the timing.
            With a named
            backend: that backend's own ``precision`` option (OpenVINO ``"bf16"``, torch
            ``"fp16"``, ...), passed to it unguarded.
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
        runner: str = "auto",
        threshold: ThresholdChoice = None,
        threads: int | None = None,
        spec: ModelSpec | None = None,
        tile_threads: int = 0,
        engine: str | None = None,
        precision: str | None = None,
        **backend_options: Any,
    ) -> None:
        if engine is not None:
            _deprecated("Inspector(engine=...)", "runner=... ('auto', 'student', 'backend')")
            runner = _ENGINE_TO_RUNNER.get(engine, engine)
        runner = runner_choice(runner)
        if backend != "auto" and precision is not None:  # the named backend's own option
            backend_options["precision"], precision = precision, None
        precision = "f32" if precision is None else precision_choice(precision)
        check_threads(threads)
        check_int("tile_threads", tile_threads, 0)  # 0: the core decides
        check_threads(tile_threads or None, "tile_threads")
        remote = is_model_url(model_path)  # triton: a server's model (grpc:// or http://)
        self.model_path = model_path if remote else Path(model_path)  # a URL stays a str
        if not remote and not self.model_path.is_file():
            what = "is not a file" if self.model_path.exists() else "not found"
            why = path_problem(self.model_path)
            detail = f"; the path {why}" if why and why != "not found" else ""
            msg = f"{self.model_path}: model file {what}{detail}"
            raise ModelFileError(msg)
        auto = "triton" if remote else None  # triton: a URL names its backend
        name = (auto or pick_backend(self.model_path)) if backend == "auto" else backend
        try:  # unknown or not installed: fail before reading anything else
            require_backend(name)
        except BackendUnavailableError as exc:
            msg = f"{self.model_path}: {exc}"
            raise BackendUnavailableError(msg) from exc
        if runner not in ("auto", "backend") and name not in runner_info(runner).replaces:
            msg = (
                f"{self.model_path}: the {runner} runner replaces the"
                f" {list(runner_info(runner).replaces)} backend(s), not {name!r}"
            )
            raise InputError(msg)
        if spec is None and remote:  # triton: the sidecar in the server's model config
            spec = remote_spec(model_path, **_timeout_option(backend_options))
        self._spec = spec if spec is not None else ModelSpec.for_model(self.model_path)
        choice = _threshold_choice(threshold)
        self._threshold = self._spec.threshold if choice is None else _rule(choice)
        self._backend: Backend = create_backend(
            name, self.model_path, self._spec, threads=threads, **backend_options
        )
        self._backend_name = name
        self._max_batch = int(self._backend.max_batch)
        try:
            if not remote:  # a model loaded here: its output.kind is probed once
                check_output_kind(self._backend, self._spec, self.model_path)
            norm = self._spec.normalization
            # 8 takes uint8 frames, 10/12/16 uint16 mono ones (normalised by 2^bits - 1)
            self._bit_depth: int = getattr(self._spec.input, "bit_depth", 8)
            own_tiler = getattr(self._backend, "tiler", None)  # triton: uint8 patches
            if own_tiler is not None and self._bit_depth != 8:
                msg = (
                    f"{self.model_path}: the backend cuts uint8 patches itself, but the sidecar"
                    f" declares input.bit_depth {self._bit_depth} (uint16 frames)"
                )
                raise InputError(msg)
            self._tiler = own_tiler or Tiler(
                norm.mean, norm.std, self._spec.input.channels, tile_threads, self._bit_depth
            )
            self._is_logits = self._spec.output.kind == "logits"
            self._class_texture = self._spec.class_texture
            self._class_defective = self._spec.class_defective
            self._lock = threading.Lock()
            self._closed = False
            self._grids: dict[tuple[int, int], np.ndarray] = {}
            auto_backend = backend == "auto" and _on_cpu(backend_options)
            self._runner, self.runner_note = _open_runner(
                runner, auto_backend, self.model_path, self._spec, threads, self._backend
            )
            #: The verdict-parity guard's report behind ``precision`` (``None``: f32 asked for,
            #: or the guard could not run; the log says why).
            self.precision_report: Any = None
            #: ``precision="auto"``: the load-time timing that chose between f32 and the accepted
            #: lower precision (``precision_timing.PrecisionTiming``); ``None`` otherwise.
            self.precision_timing: Any = None
            if precision != "f32":
                self._runner, self.precision_report = self._guarded_runner(precision, threads)
        except BaseException:
            if getattr(self, "_runner", None) is not None:
                self._runner.close()
            self._backend.close()
            raise

    def _guarded_runner(self, requested: str, threads: int | None) -> tuple[Any, Any]:
        """The runner at the precision the parity guard accepts (``precision_guard``), and its
        report. Only the direct student runner has lower precisions: on a model without it,
        ``"auto"`` stays f32 and a named one is an ``InputError`` saying why."""
        from pyinspect.precision_guard import cpu_feature_level, resolve_precision
        from pyinspect.runners.student import StudentRunner, kernel_precisions

        runner = self._runner
        if runner is None or runner.name != "student":
            if requested == "auto":
                return runner, None
            why = self.runner_note or f"the {runner.name} runner is in use"
            msg = (
                f"{self.model_path}: precision={requested!r} needs the direct student runner,"
                f" which does not run this model here ({why})"
            )
            raise InputError(msg)
        auto = requested == "auto"
        if auto:
            lower = [p for p in kernel_precisions() if p != "f32"]
            if not lower:  # this CPU has no lower-precision kernels: f32, nothing to guard
                return runner, None
            requested = lower[-1]

        def make(precision: str) -> Any:
            return lambda: StudentRunner(
                self.model_path, self._spec, threads=threads, verify=False, precision=precision
            )

        level = f"student {runner.isa} | {cpu_feature_level()}"
        chosen, report = resolve_precision(
            self.model_path, requested, make(requested), make("f32"), level, log
        )
        if chosen == runner.precision:
            return runner, report
        lower_runner = StudentRunner(
            self.model_path, self._spec, threads=threads, reference=self._backend, precision=chosen
        )
        if auto and not self._faster_than_reference(lower_runner, runner):
            lower_runner.close()
            return runner, report
        runner.close()
        return lower_runner, report

    def _faster_than_reference(self, lower: Any, reference: Any) -> bool:
        """``precision="auto"``: whether the guard-accepted ``lower`` runner is clearly faster
        than the f32 ``reference`` here, timed on one guard frame (``precision_timing``); the
        timing is kept in ``self.precision_timing``. No frame to time on: keep ``lower``."""
        from pyinspect.precision_guard import guard_frames
        from pyinspect.precision_timing import time_precisions

        try:
            _, frame = next(iter(guard_frames(self.model_path, self._spec)))
        except Exception as exc:  # any failure only skips the timing
            log.warning(
                "%s: precision auto not timed (%s); keeping %s",
                self.model_path,
                exc,
                lower.precision,
            )
            return True
        timing = time_precisions(
            {reference.precision: reference, lower.precision: lower}, frame, reference.precision
        )
        self.precision_timing = timing
        log.info("%s: precision %s", self.model_path, timing.describe())
        return timing.chosen == lower.precision

    # ---- what it is ------------------------------------------------------------------------
    @property
    def spec(self) -> ModelSpec:
        return self._spec

    @property
    def precision(self) -> str:
        """The arithmetic in use: the runner's (``"f32"``, or a lower one the parity guard
        accepted: ``"bf16"``), else the backend's (``"f32"`` unless it was given another)."""
        path = self._runner if self._runner is not None else self._backend
        return str(getattr(path, "precision", None) or "f32")

    @property
    def backend(self) -> Backend:
        return self._backend

    @property
    def threshold(self) -> float | None:
        """The default defect rule: a threshold in [0, 1], or ``None`` for the argmax rule (from
        ``Inspector(threshold=...)``, else the sidecar's ``threshold``)."""
        return self._threshold

    def check_threshold(self, threshold: object) -> ThresholdChoice:
        """A per-call ``threshold=`` argument, validated (``None``, ``"argmax"`` or a float in
        [0, 1]); an ``InputError`` / ``InputTypeError`` names a bad one."""
        return _threshold_choice(threshold)

    def resolve_threshold(self, threshold: object) -> float | None:
        """The rule a call with ``threshold=`` applies: ``None`` -> ``self.threshold``,
        ``"argmax"`` -> ``None`` (argmax), a number -> itself."""
        choice = _threshold_choice(threshold)
        return self._threshold if choice is None else _rule(choice)

    def inspected_shape(self, height: int, width: int) -> tuple[int, int]:
        """``(H, W)`` an H×W frame has when inspected: itself, or the frame fitted by the
        sidecar's ``resize`` when smaller than the patch. Result boxes are in these pixels."""
        return resized_shape(height, width, self._spec.patch, self._spec.resize)

    @property
    def backend_name(self) -> str:
        return self._backend_name

    @property
    def runner(self) -> str:
        """The whole-frame runner in use (``"student"``, ...) or ``"backend"``;
        ``runner_note`` says why no runner is used."""
        return "backend" if self._runner is None else self._runner.name

    @property
    def engine(self) -> str:
        """Deprecated (one release): ``"student-engine"`` when the student runner is in use,
        else ``"backend"``; use ``runner``."""
        _deprecated("Inspector.engine", "Inspector.runner")
        return "student-engine" if self.runner == "student" else "backend"

    @property
    def engine_note(self) -> str:
        """Deprecated (one release): use ``runner_note``."""
        _deprecated("Inspector.engine_note", "Inspector.runner_note")
        return self.runner_note

    @property
    def max_batch(self) -> int:
        return self._max_batch

    @property
    def closed(self) -> bool:
        return self._closed

    def inference_pool(self, image: np.ndarray) -> tuple[int, bool]:
        """``(CPU threads, busy-waits)`` of the compute that ``image`` would run on (the runner
        for a frame it takes, else the backend; a CPU pool without a size counts as every CPU);
        ``(0, False)`` on a GPU. ``stream`` uses it to decide whether its reader steps back."""
        if self._runner is not None and self._runner.accepts(image):
            return int(self._runner.threads), bool(self._runner.spins)
        if getattr(self._backend, "device", "cpu") != "cpu":
            return 0, False
        threads = getattr(self._backend, "threads", None) or usable_cpus()
        return int(threads), bool(getattr(self._backend, "spin", True))

    def boxes(self, height: int, width: int) -> np.ndarray:
        """The patch grid (x, y, w, h) this model uses on an H×W frame (cached, read-only)."""
        boxes = self._grids.get((height, width))
        if boxes is None:
            rows, cols = self._spec.grid_rows_cols
            boxes = patch_grid(height, width, self._spec.patch, rows, cols)
            if len(self._grids) < 64:  # a camera has a few sizes; a folder of odd ones, many
                self._grids[(height, width)] = boxes
        return boxes

    # ---- inspecting ------------------------------------------------------------------------
    def prepare(self, frame: Frame) -> PreparedFrame:
        """Load (a path) and check a frame, and look up its grid: everything before inference,
        with errors that name the file. Safe to call from another thread than ``run_prepared``."""
        image, source = as_frame(frame, self._bit_depth)
        patch, policy = self._spec.patch, self._spec.resize
        try:
            if policy != "none" and (image.shape[0] < patch or image.shape[1] < patch):
                image = fit_to_patch(image, patch, policy)  # a new array; the caller's is kept
            boxes = self.boxes(image.shape[0], image.shape[1])
        except InputError as exc:
            raise with_source(exc, source) from exc.__cause__
        return PreparedFrame(image, source, boxes)

    def run(self, frame: Frame, *, threshold: ThresholdChoice = None) -> InspectionResult:
        """Inspect one frame (array or image path). ``threshold``: ``None`` = the Inspector's
        rule, ``"argmax"`` = the argmax rule, a number in [0, 1] = that threshold."""
        return self.run_prepared(self.prepare(frame), threshold=threshold)

    def run_prepared(
        self, frame: PreparedFrame, *, threshold: ThresholdChoice = None
    ) -> InspectionResult:
        """Inspect a frame from ``prepare``; ``threshold`` as for ``run``."""
        return self._run_prepared(frame, self.resolve_threshold(threshold))

    def _run_prepared(self, frame: PreparedFrame, thr: float | None) -> InspectionResult:
        """``run_prepared`` with the rule resolved (``None``: argmax)."""
        t0 = time.perf_counter_ns()
        image, boxes = frame.image, frame.boxes
        with self._lock:
            self._check_open()
            try:
                if self._runner is not None and self._runner.accepts(image):
                    return self._runner.run(image, boxes, thr)
                n = len(boxes)
                if n <= self._max_batch:
                    self._tiler(image, self._backend.input_buffer(n), boxes)
                    t1 = time.perf_counter_ns()
                    logits = self._backend.infer(n)
                    t2 = time.perf_counter_ns()
                else:  # a frame larger than one batch: infer in chunks, vote once
                    logits, t1, t2 = self._infer_chunked(image, boxes)
                verdict = self._vote(logits, thr)
            except InputError as exc:
                raise with_source(exc, frame.source) from exc.__cause__
        t3 = time.perf_counter_ns()
        timings = Timings(
            tile_ms=(t1 - t0) * _NS_TO_MS,
            infer_ms=(t2 - t1) * _NS_TO_MS,
            vote_ms=(t3 - t2) * _NS_TO_MS,
            total_ms=(t3 - t0) * _NS_TO_MS,
        )
        return InspectionResult.from_vote(verdict, self._spec, boxes, timings)

    def run_batch(
        self, frames: Iterable[Frame], *, threshold: ThresholdChoice = None
    ) -> list[InspectionResult]:
        """Inspect several frames, packing as many as fit into one ``infer`` (up to
        ``max_batch`` patches). Results are in input order; ``infer_ms`` is each frame's share.
        Frames a runner takes run on it one by one (it beats any batch on the backend)."""
        one_frame = str | bytes | bytearray | os.PathLike | np.ndarray
        if isinstance(frames, one_frame) or not isinstance(frames, Iterable):
            msg = (
                "frames must be an iterable (list, tuple, ...) of frames, got"
                f" {type(frames).__name__}; use run() for one frame"
            )
            raise InputTypeError(msg)
        thr = self.resolve_threshold(threshold)
        prepared = []
        for i, frame in enumerate(frames):
            try:
                prepared.append(self.prepare(frame))
            except PyInspectError as exc:
                msg = f"frames[{i}]: {exc}"
                raise type(exc)(msg) from exc
        results: list[InspectionResult | None] = [None] * len(prepared)
        group: list[int] = []
        patches = 0
        for i, p in enumerate(prepared):
            if self._runner is not None and self._runner.accepts(p.image):
                with _naming_frames([i]):
                    results[i] = self._run_prepared(p, thr)
                continue
            if group and patches + len(p.boxes) > self._max_batch:
                with _naming_frames(group):
                    self._run_group(group, prepared, thr, results)
                group, patches = [], 0
            group.append(i)
            patches += len(p.boxes)
        if group:
            with _naming_frames(group):
                self._run_group(group, prepared, thr, results)
        return [r for r in results if r is not None]

    def stream(
        self,
        frames: Any,
        *,
        depth: int = 2,
        threshold: ThresholdChoice = None,
        reader_nice: int | None = None,
    ) -> Generator[InspectionResult, None, None]:
        """Inspect a camera/video/folder in order, acquiring frame n+1 while frame n is inferred.

        ``frames``: a ``cv2.VideoCapture`` or an iterable of arrays / image paths; a frame that
        fails yields a result with ``error`` set and the stream goes on. ``reader_nice``: how far
        the reader thread steps back for inference (``None``: only when inference's threads
        fill every CPU and sleep when idle). ``threshold`` as for ``run``. See
        ``pyinspect.stream``.
        """
        from pyinspect.stream import stream

        return stream(self, frames, depth=depth, threshold=threshold, reader_nice=reader_nice)

    def close(self) -> None:
        """Release the backend and runner (idempotent). The Inspector cannot run afterwards."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._backend.close()
                if self._runner is not None:
                    self._runner.close()

    def __enter__(self) -> Inspector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = ", closed" if self._closed else ""
        return (
            f"Inspector({str(self.model_path)!r}, backend={self._backend_name!r},"
            f" device={getattr(self._backend, 'device', '?')!r}, runner={self.runner!r},"
            f" classes={self._spec.num_classes},"
            f" patch={self._spec.patch}, threshold={self.threshold}{state})"
        )

    # ---- steps -----------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            msg = f"Inspector for {self.model_path} is closed"
            raise BackendError(msg)

    def _vote(self, logits: np.ndarray, threshold: float | None) -> VoteResult:
        return vote(
            logits,
            self._class_texture,
            self._class_defective,
            is_logits=self._is_logits,
            threshold=threshold,
        )

    def _infer_chunked(self, image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, int, int]:
        """Logits of all boxes, ``max_batch`` at a time; returns (logits, t_tiled, t_inferred)
        with tiling and inference time summed into a pseudo timeline."""
        n, step = len(boxes), self._max_batch
        logits = np.empty((n, self._spec.num_classes), dtype=np.float32)
        tile_ns = infer_ns = 0
        start = time.perf_counter_ns()
        for lo in range(0, n, step):
            hi = min(n, lo + step)
            a = time.perf_counter_ns()
            self._tiler(image, self._backend.input_buffer(hi - lo), boxes[lo:hi])
            b = time.perf_counter_ns()
            logits[lo:hi] = self._backend.infer(hi - lo)
            tile_ns += b - a
            infer_ns += time.perf_counter_ns() - b
        return logits, start + tile_ns, start + tile_ns + infer_ns

    def _run_group(
        self,
        group: list[int],
        prepared: list[PreparedFrame],
        threshold: float | None,
        results: list[InspectionResult | None],
    ) -> None:
        """Tile ``group``'s frames into consecutive rows of one buffer, infer once, vote each."""
        if len(group) == 1:  # alone (or too large to share): the single-frame path
            results[group[0]] = self._run_prepared(prepared[group[0]], threshold)
            return
        counts = [len(prepared[i].boxes) for i in group]
        total = sum(counts)
        with self._lock:
            self._check_open()
            buf = self._backend.input_buffer(total)
            tile_ns: list[int] = []
            row = 0
            for i, n in zip(group, counts, strict=True):
                a = time.perf_counter_ns()
                try:
                    self._tiler(prepared[i].image, buf[row : row + n], prepared[i].boxes)
                except InputError as exc:
                    raise with_source(exc, prepared[i].source) from exc.__cause__
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
                results[i] = InspectionResult.from_vote(
                    verdict, self._spec, prepared[i].boxes, timings
                )
                row += n


@contextlib.contextmanager
def _naming_frames(indices: list[int]) -> Iterator[None]:
    """An error while ``run_batch`` inspects these frames says which of the caller's frames
    (``frames[3]``; a shared inference names every frame in it)."""
    try:
        yield
    except PyInspectError as exc:
        where = f"frames[{indices[0]}]" if len(indices) == 1 else f"frames{indices}"
        msg = f"{where}: {exc}"
        raise type(exc)(msg) from exc


def _threshold_choice(value: object) -> ThresholdChoice:
    """``None``, ``"argmax"`` or a float in [0, 1] (``voting.check_threshold``'s errors)."""
    if value is None or (isinstance(value, str) and value == ARGMAX):
        return value  # type: ignore[return-value]
    if isinstance(value, str):
        msg = (
            f"threshold must be a number in [0, 1], 'argmax' or None, got str {value!r}"
            if value.strip().lower() == ARGMAX
            else "threshold must be a number in [0, 1] or None, got str"
        )
        raise InputTypeError(msg)
    return check_threshold(value)


def _rule(choice: float | str) -> float | None:
    """A non-None threshold choice as the voter's rule (``None``: argmax)."""
    return None if isinstance(choice, str) else float(choice)


def _deprecated(old: str, new: str) -> None:
    """Warn the caller of an Inspector method (two frames up) that ``old`` is going away."""
    warnings.warn(f"{old} is deprecated; use {new}", DeprecationWarning, stacklevel=3)


def _timeout_option(backend_options: dict[str, Any]) -> dict[str, Any]:
    """triton: the backend's ``timeout`` option, for reading the sidecar from the server."""
    timeout = backend_options.get("timeout")
    return {} if timeout is None else {"timeout": timeout}


def _on_cpu(backend_options: dict[str, Any]) -> bool:
    return str(backend_options.get("device") or "cpu").startswith("cpu")


def _open_runner(
    choice: str,
    auto_backend: bool,
    model_path: Path,
    spec: ModelSpec,
    threads: int | None,
    backend: Backend,
) -> tuple[FrameRunner | None, str]:
    """(runner or None, why none). ``auto`` considers the table's ``auto`` rows, and only in
    place of an automatically chosen CPU backend: a backend named by the caller is what the
    caller gets. A named runner that cannot run the model raises, saying why."""
    if choice == "backend":
        return None, "runner='backend' was asked for"
    if choice != "auto":
        info = runner_info(choice)
        try:
            return info.open(model_path, spec, threads=threads, reference=backend), ""
        except (ImportError, PyInspectError) as exc:
            msg = f"{model_path}: the {info.name} runner cannot run this model: {exc}"
            raise BackendError(msg) from exc
    if not auto_backend:
        return None, f"backend {backend.name!r} was named, or is not on the CPU"
    notes = []
    for info in _auto_runners(backend.name):
        try:
            return info.open(model_path, spec, threads=threads, reference=backend), ""
        except BackendError as exc:  # it read the model but disagrees with the backend
            log.warning("%s; using the %s backend", exc, backend.name)
            notes.append(str(exc))
        except (ImportError, PyInspectError) as exc:  # not this model, not built, not this CPU
            notes.append(f"{info.name}: {exc}")
    return None, "; ".join(notes) or f"no runner replaces the {backend.name} backend"


def _auto_runners(backend_name: str) -> list[RunnerInfo]:
    return [r for r in RUNNERS if r.auto and backend_name in r.replaces]
