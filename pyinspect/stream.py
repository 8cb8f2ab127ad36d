"""Camera loops: inspect a stream of frames in order while the next frame is being acquired.

``Inspector.stream(frames, depth=2)`` runs two worker threads joined by bounded queues:

    reader:   acquire frame n+1 (``VideoCapture.read``, ``next(iterable)``, or decode a path)
              and validate it (dtype, shape, size -> its cached patch grid)
    inferrer: tile frame n into the backend's input buffer -> infer -> vote
    caller:   receives ``InspectionResult``s in input order

Decoding, the tiler and the backends all release the GIL, so acquisition really overlaps
inference. Tiling stays in the inference stage: it writes the backend's own input buffer (no copy),
and on the CPU it takes 0.1-0.2 ms against ~5 ms of inference for the student (measured by
``benchmarks/throughput.py``), so moving it to the reader would need a second input buffer per
backend and would save little.

Sharing the cores: when inference's threads fill every CPU the process may use and sleep when
idle (ONNX Runtime with spinning off, its default then), a reader at the same priority preempts
them mid-frame, and the slowest inference thread sets the pace. So by default the reader then
runs at a lower OS priority (``reader_nice``, Linux only): it decodes in the gaps where inference
threads wait for each other, and still gets a core whenever inference waits for a frame. A pool
that busy-waits (the direct student runner) would starve a low-priority reader, so there, and with a
core to spare, the reader keeps its priority. Measured in ``benchmarks/throughput.py``.

Reliability: a frame that cannot be inspected (``None``, a failed ``VideoCapture.read``, wrong
dtype/shape, an undecodable file, a backend error) yields ``InspectionResult.failed(...)`` naming
the frame index, and the stream goes on. Leaving a ``for`` loop over the stream (``break``, or an
exception in the consumer) stops both threads promptly and reads no further frame, also while the
caller still holds the stream object (each ``for`` loop iterates a fresh wrapper that closes the
stream when the loop drops it); so do ``.close()`` and ``with``. An exception raised by the
caller's own iterable is re-raised in the caller after the frames before it. At most
``2 * depth + 3`` frames are referenced at once, so memory stays flat on an endless camera.

Frames that are arrays are copied by the reader before it hands them on: camera SDKs (and any
source that refills one buffer) overwrite a frame's memory while it still waits for inference, and
a reference would report the verdict of a later frame. The copy costs 3 us for a 512×512 gray
frame and 23 us for 1024×1040 against ~5 ms of inference (``python benchmarks/watch.py``, row
``frame_copy``, 2-core AMD EPYC VM). Frames read from paths are decoded into new memory and are
not copied again.
"""

from __future__ import annotations

import itertools
import os
import queue
import sys
import threading
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass, replace
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from pyinspect.errors import (
    BackendError,
    InputError,
    InputTypeError,
    PyInspectError,
    check_int,
)
from pyinspect.result import InspectionResult

if TYPE_CHECKING:
    from pyinspect.inspector import Inspector, PreparedFrame

__all__ = [
    "MAX_READ_FAILURES",
    "READER_NICE",
    "ResultStream",
    "VideoSource",
    "auto_reader_nice",
    "default_reader_nice",
    "lower_thread_priority",
    "stream",
]

#: Consecutive failed ``VideoCapture.read`` calls (each yields an error result) after which a
#: capture that does not report its end (cameras, some containers) is treated as finished.
MAX_READ_FAILURES = 5
#: Nice increment of the reader thread when inference threads fill every CPU (see module doc).
READER_NICE = 10
_POLL_S = 0.05  # how often a blocked worker re-checks the stop flag
_JOIN_S = 2.0  # how long close() waits for a worker (one blocked in the caller's iterator may not)
_ids = itertools.count()


class VideoSource(Protocol):
    """What ``stream`` uses of a ``cv2.VideoCapture`` (so tests and wrappers can stand in)."""

    def read(self) -> tuple[bool, np.ndarray | None]: ...

    def isOpened(self) -> bool: ...  # OpenCV spells it so

    def get(self, prop_id: int) -> float: ...


@dataclass(frozen=True, slots=True)
class _Frame:
    index: int
    prepared: PreparedFrame


@dataclass(frozen=True, slots=True)
class _Failed:
    index: int
    error: str


@dataclass(frozen=True, slots=True)
class _Raise:
    """An exception that is not a per-frame fault (a bug, or the caller's iterator failing)."""

    exc: BaseException


_END = object()


class ResultStream(Generator[InspectionResult, None, None]):
    """What ``stream`` returns: a generator of results whose ``for`` loops own the stream.

    ``iter(stream)`` is a fresh wrapper over the one underlying generator, so when a ``for`` loop
    ends early (``break``, an exception in its body) and drops its iterator, the workers stop at
    once even while the caller still holds ``stream``. ``next``, ``send``, ``close`` and ``with``
    act on the underlying generator directly."""

    def __init__(self, gen: Generator[InspectionResult, None, None]) -> None:
        self._gen = gen

    def send(self, value: None) -> InspectionResult:
        return self._gen.send(value)

    def throw(  # type: ignore[override]
        self,
        typ: type[BaseException] | BaseException,
        val: object = None,
        tb: TracebackType | None = None,
    ) -> InspectionResult:
        exc = typ if isinstance(typ, BaseException) else typ() if val is None else typ(val)
        return self._gen.throw(exc.with_traceback(tb) if tb is not None else exc)

    def close(self) -> None:
        self._gen.close()

    def __iter__(self) -> Generator[InspectionResult, None, None]:
        return self._loop()

    def _loop(self) -> Generator[InspectionResult, None, None]:
        yield from self._gen  # closing this wrapper closes the underlying generator

    def __enter__(self) -> ResultStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def stream(
    inspector: Inspector,
    frames: Iterable[Any] | VideoSource,
    *,
    depth: int = 2,
    threshold: float | str | None = None,
    max_read_failures: int = MAX_READ_FAILURES,
    reader_nice: int | None = None,
) -> ResultStream:
    """Yield one ``InspectionResult`` per frame of ``frames``, in order (see the module doc).

    Args:
        inspector: an open ``Inspector``; the stream shares its backend (and lock).
        frames: a ``cv2.VideoCapture`` (read until it ends; it is not released here) or any
            iterable of uint8 arrays, image paths, ``None`` (a missing frame) or the
            ``(ok, frame)`` tuples ``VideoCapture.read`` returns.
        depth: frames queued between stages (>= 1); 2 double-buffers each hand-over.
        threshold: defect rule for this stream (``None``: the Inspector's; ``"argmax"``).
        max_read_failures: consecutive failed reads after which a capture counts as ended.
        reader_nice: nice increment for the reader thread, 0-19 (Linux; elsewhere ignored).
            ``None``: :data:`READER_NICE` when the inference that the first frame takes fills
            every CPU this process may use with threads that sleep when idle, else 0
            (:func:`default_reader_nice`).

    Arrays are copied once validated, so an iterable may refill one buffer per frame.
    """
    check_int("depth", depth, 1)
    check_int("max_read_failures", max_read_failures, 1)
    if reader_nice is not None:
        check_int("reader_nice", reader_nice, 0, 19)  # a nice increment
    thr = inspector.check_threshold(threshold)  # run_prepared resolves None and "argmax"
    if inspector.closed:
        msg = f"Inspector for {inspector.model_path} is closed"
        raise BackendError(msg)
    if _is_capture(frames):
        if not frames.isOpened():  # type: ignore[union-attr]
            msg = "VideoCapture is not opened (wrong camera index, or a file OpenCV cannot read)"
            raise InputError(msg)
        acquire = _capture_reader(frames, max_read_failures)  # type: ignore[arg-type]
    elif isinstance(frames, np.ndarray | str | os.PathLike):
        msg = (
            f"frames must be an iterable of frames or a cv2.VideoCapture, got one"
            f" {type(frames).__name__}; use Inspector.run for a single frame"
        )
        raise InputTypeError(msg)
    else:
        try:
            acquire = iter(frames)  # type: ignore[arg-type]
        except TypeError:
            msg = (
                f"frames must be an iterable of frames or a cv2.VideoCapture,"
                f" got {type(frames).__name__}"
            )
            raise InputTypeError(msg) from None
    return ResultStream(_pipeline(inspector, acquire, depth, thr, reader_nice))


def default_reader_nice(inference_threads: int, spins: bool, cpus: int) -> int:
    """:data:`READER_NICE` when inference's threads take every CPU and sleep when idle, else 0
    (a busy-waiting pool would hold the CPUs a low-priority reader needs)."""
    return READER_NICE if inference_threads >= cpus and not spins else 0


def auto_reader_nice(inspector: Inspector, image: np.ndarray) -> int:
    """The default ``reader_nice`` for frames like ``image`` (gray frames may take a runner)."""
    from pyinspect.backends.base import usable_cpus

    return default_reader_nice(*inspector.inference_pool(image), usable_cpus())


def _pipeline(
    inspector: Inspector,
    acquire: Iterator[Any],
    depth: int,
    threshold: float | None,
    reader_nice: int | None = 0,
) -> Generator[InspectionResult, None, None]:
    """The generator proper: threads start at the first ``next()`` and stop in ``finally``."""
    stop = threading.Event()
    prepared: queue.Queue[Any] = queue.Queue(maxsize=depth)
    results: queue.Queue[Any] = queue.Queue(maxsize=depth)
    n = next(_ids)
    workers = [
        threading.Thread(
            target=_read_loop,
            args=(inspector, acquire, prepared, stop, reader_nice),
            name=f"pyinspect-stream-{n}-read",
            daemon=True,
        ),
        threading.Thread(
            target=_infer_loop,
            args=(inspector, prepared, results, stop, threshold),
            name=f"pyinspect-stream-{n}-infer",
            daemon=True,
        ),
    ]
    for w in workers:
        w.start()
    try:
        while True:
            item = _get(results, stop, workers[-1])
            if item is _END:
                return
            if isinstance(item, _Raise):
                raise item.exc
            yield item
    finally:
        stop.set()
        for w in workers:
            w.join(_JOIN_S)


# ---- stages --------------------------------------------------------------------------------------
def _read_loop(
    inspector: Inspector,
    acquire: Iterator[Any],
    out: queue.Queue[Any],
    stop: threading.Event,
    nice: int | None = 0,
) -> None:
    """Acquire and validate frames until the source ends, a put is refused, or stop is set.
    ``nice``: the reader's nice increment; ``None`` decides it at the first valid frame."""
    if nice:
        lower_thread_priority(nice)
    for index in itertools.count():
        if stop.is_set():
            return
        try:
            raw = next(acquire)
        except StopIteration:
            break
        except BaseException as exc:  # the caller's iterator failed: hand its error to the caller
            _put(out, _Raise(exc), stop)
            return
        item = _prepare(inspector, index, raw)
        if nice is None and isinstance(item, _Frame):
            nice = auto_reader_nice(inspector, item.prepared.image)
            if nice:
                lower_thread_priority(nice)
        if not _put(out, item, stop):
            return
    _put(out, _END, stop)


def _prepare(inspector: Inspector, index: int, raw: Any) -> _Frame | _Failed | _Raise:
    if isinstance(raw, tuple) and len(raw) == 2 and isinstance(raw[0], bool | np.bool_):
        ok, raw = raw  # what VideoCapture.read returns
        if not ok:
            return _Failed(index, f"frame {index}: no frame (VideoCapture.read returned False)")
    if raw is None:
        return _Failed(index, f"frame {index}: no frame (got None)")
    try:
        prepared = inspector.prepare(raw)
    except PyInspectError as exc:
        return _Failed(index, f"frame {index}: {exc}")
    except Exception as exc:  # a bug, not a bad frame: surface it
        return _Raise(exc)
    if prepared.source is None:  # an array: its producer may refill it before inference reads it
        prepared = replace(prepared, image=prepared.image.copy())
    return _Frame(index, prepared)


def _infer_loop(
    inspector: Inspector,
    inp: queue.Queue[Any],
    out: queue.Queue[Any],
    stop: threading.Event,
    threshold: float | None,
) -> None:
    """Tile -> infer -> vote each prepared frame, in order; pass failures and the end through."""
    while True:
        item = _get(inp, stop)
        if item is None:  # stopped
            return
        if isinstance(item, _Frame):
            item = _inspect(inspector, item, threshold)
        elif isinstance(item, _Failed):
            item = InspectionResult.failed(item.error)
        if not _put(out, item, stop) or item is _END or isinstance(item, _Raise):
            return


def _inspect(
    inspector: Inspector, frame: _Frame, threshold: float | None
) -> InspectionResult | _Raise:
    try:
        return inspector.run_prepared(frame.prepared, threshold=threshold)
    except BackendError as exc:
        if inspector.closed:  # every later frame would fail the same way
            return _Raise(exc)
        return InspectionResult.failed(f"frame {frame.index}: {exc}")
    except PyInspectError as exc:
        return InspectionResult.failed(f"frame {frame.index}: {exc}")
    except Exception as exc:
        return _Raise(exc)


def lower_thread_priority(increment: int) -> bool:
    """Add ``increment`` to the calling thread's nice value (Linux: a thread is a task with its
    own nice, capped at 19). Returns False where it could not be set (not Linux, or refused)."""
    if not sys.platform.startswith("linux"):
        return False  # PRIO_PROCESS with a thread id would renice another process there
    tid = threading.get_native_id()
    try:
        os.setpriority(
            os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + increment)
        )
    except OSError:
        return False
    return True


# ---- sources -------------------------------------------------------------------------------------
def _is_capture(frames: object) -> bool:
    return callable(getattr(frames, "read", None)) and callable(getattr(frames, "isOpened", None))


def _capture_reader(cap: VideoSource, max_failures: int) -> Iterator[Any]:
    """Frames of a capture as ``(ok, frame)``; ends at the file's end, when the capture closes,
    or after ``max_failures`` failed reads in a row (each of which is yielded as a failure)."""
    import cv2

    failures = 0
    while True:
        ok, frame = cap.read()
        if ok and frame is not None:
            failures = 0
            yield True, frame
            continue
        if not cap.isOpened():
            return
        count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        if count > 0 and cap.get(cv2.CAP_PROP_POS_FRAMES) >= count:
            return  # a file at its end
        failures += 1
        yield False, None
        if failures >= max_failures:
            return


# ---- queues that give up when the stream is closed -----------------------------------------------
def _put(q: queue.Queue[Any], item: object, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=_POLL_S)
            return True
        except queue.Full:
            continue
    return False


def _get(
    q: queue.Queue[Any], stop: threading.Event, producer: threading.Thread | None = None
) -> Any:
    """Next item, or ``None`` once stopped; with ``producer`` (the thread that fills ``q`` and
    always ends with a final item), its death with ``q`` empty is an error rather than a hang."""
    while not stop.is_set():
        try:
            return q.get(timeout=_POLL_S)
        except queue.Empty:
            if producer is not None and not producer.is_alive() and q.empty():
                msg = "stream worker thread ended without a result (internal error)"
                raise RuntimeError(msg) from None
    return None
