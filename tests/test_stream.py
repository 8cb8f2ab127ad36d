"""Inspector.stream: same verdicts as run() in order, per-frame faults in line, real overlap of
acquisition and inference, prompt shutdown (no leaked threads), bounded memory."""

from __future__ import annotations

import itertools
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from modelzoo import TinyBundle, textured_frame

from pyinspect import Inspector
from pyinspect.backends.base import usable_cpus
from pyinspect.errors import BackendError, InputError, InputTypeError
from pyinspect.stream import (
    MAX_READ_FAILURES,
    READER_NICE,
    auto_reader_nice,
    default_reader_nice,
    lower_thread_priority,
)


@pytest.fixture
def inspector(tiny: TinyBundle) -> Iterator[Inspector]:
    with Inspector(tiny.model_path) as insp:
        yield insp


def stream_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("pyinspect-stream-")]


def wait_no_stream_threads(timeout: float = 2.0) -> list[threading.Thread]:
    deadline = time.monotonic() + timeout
    while stream_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    return stream_threads()


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    yield
    assert wait_no_stream_threads() == []


def same_verdict(a, b) -> None:
    assert (a.label, a.texture, a.defective, a.error) == (b.label, b.texture, b.defective, b.error)
    np.testing.assert_array_equal(a.patch_class, b.patch_class)
    np.testing.assert_allclose(a.patch_score, b.patch_score, rtol=0, atol=1e-6)


# ---- results -------------------------------------------------------------------------------------
def test_stream_gives_run_results_in_order(inspector: Inspector, frames: list[np.ndarray]) -> None:
    many = frames * 3  # gray, BGR, BGRA, 18 frames
    expected = [inspector.run(f) for f in many]
    got = list(inspector.stream(many))
    assert len(got) == len(many)
    for a, b in zip(got, expected, strict=True):
        same_verdict(a, b)
        assert a.ok and a.timings.total_ms > 0 and a.timings.infer_ms > 0
    assert len({r.label for r in got}) >= 2  # the order check above is not vacuous


@pytest.mark.parametrize("depth", [1, 2, 5])
def test_any_depth_keeps_order(inspector: Inspector, depth: int) -> None:
    frames = [textured_frame(seed=s) for s in range(10)]
    expected = [inspector.run(f).patch_class.tolist() for f in frames]
    got = [r.patch_class.tolist() for r in inspector.stream(frames, depth=depth)]
    assert got == expected


def test_threshold_is_passed_through(inspector: Inspector, frames: list[np.ndarray]) -> None:
    got = list(inspector.stream(frames[:3], threshold=0.0))
    assert all(r.defective and len(r.defective_patches) == 9 for r in got)


def test_image_paths_are_read_by_the_stream(
    inspector: Inspector, frames: list[np.ndarray], tmp_path: Path
) -> None:
    paths = []
    for i, f in enumerate(frames[:3]):
        paths.append(tmp_path / f"{i}.png")
        cv2.imwrite(str(paths[-1]), f)
    for a, b in zip(inspector.stream(paths), [inspector.run(p) for p in paths], strict=True):
        same_verdict(a, b)


# ---- faults in line ------------------------------------------------------------------------------
def test_bad_frames_yield_errors_and_the_stream_goes_on(
    inspector: Inspector, frames: list[np.ndarray], tmp_path: Path
) -> None:
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    good = frames[0]
    source = [
        good,
        None,
        (False, None),
        good.astype(np.float32),
        np.zeros((100, 600), np.uint8),
        np.zeros((512, 512, 2), np.uint8),
        str(junk),
        (True, good),
        good,
    ]
    got = list(inspector.stream(source))
    assert [r.ok for r in got] == [True, False, False, False, False, False, False, True, True]
    assert [r.error for r in got if not r.ok] == [
        "frame 1: no frame (got None)",
        "frame 2: no frame (VideoCapture.read returned False)",
        "frame 3: frame must be uint8, got float32 (convert it explicitly; tiling never copies)",
        "frame 4: frame of 100x600 (HxW) is smaller than the 224x224 patch (never resized)",
        "frame 5: frame must have 1 (gray), 3 (BGR) or 4 (BGRA) channels, got 2"
        " (shape (512, 512, 2))",
        f"frame 6: {junk}: cannot decode image (empty, truncated or not a format OpenCV reads)",
    ]
    failed = got[1]
    assert (failed.label, failed.texture, failed.defective, failed.num_patches) == (
        "error",
        -1,
        False,
        0,
    )
    reference = inspector.run(good)
    for r in (got[0], got[7], got[8]):
        same_verdict(r, reference)


def test_backend_error_on_one_frame_is_reported_in_line(
    inspector: Inspector, frames: list[np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = inspector.backend
    real_infer = backend.infer
    calls = itertools.count()

    def flaky(batch: int) -> np.ndarray:
        if next(calls) == 1:
            msg = "device hiccup"
            raise BackendError(msg)
        return real_infer(batch)

    monkeypatch.setattr(backend, "infer", flaky)
    got = list(inspector.stream(frames[:3]))
    assert [r.error for r in got] == [None, "frame 1: device hiccup", None]


def test_an_error_in_the_callers_iterator_is_raised_after_earlier_frames(
    inspector: Inspector, frames: list[np.ndarray]
) -> None:
    def source() -> Iterator[np.ndarray]:
        yield frames[0]
        yield frames[1]
        msg = "camera unplugged"
        raise OSError(msg)

    got = []
    with pytest.raises(OSError, match="camera unplugged"):
        for r in inspector.stream(source()):
            got.append(r)
    assert len(got) == 2 and all(r.ok for r in got)


def test_closing_the_inspector_mid_stream_raises(inspector: Inspector) -> None:
    results = inspector.stream(itertools.repeat(textured_frame(seed=0)))
    assert next(results).ok
    inspector.close()
    with pytest.raises(BackendError, match="is closed"):
        for _ in range(10):
            next(results)


# ---- arguments -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"depth": 0}, InputError, "depth must be >= 1, got 0"),
        ({"depth": 1.5}, InputTypeError, "depth must be an int >= 1, got float 1.5"),
        ({"threshold": 2.0}, InputError, "threshold must be in [0, 1] or None"),
        (
            {"reader_nice": -1},
            InputError,
            "reader_nice must be in 0..19, got -1",
        ),
        ({"reader_nice": 20}, InputError, "reader_nice must be in 0..19"),
        ({"reader_nice": True}, InputTypeError, "reader_nice must be an int in 0..19, got bool"),
        (
            {"reader_nice": "5"},
            InputTypeError,
            "reader_nice must be an int in 0..19, got str '5'",
        ),
    ],
)
def test_bad_arguments(inspector: Inspector, kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error) as info:
        inspector.stream([], **kwargs)
    assert str(info.value).startswith(message)


def test_a_single_frame_is_not_a_stream(inspector: Inspector, frames: list[np.ndarray]) -> None:
    with pytest.raises(InputTypeError, match=r"got one ndarray; use Inspector.run for a single"):
        inspector.stream(frames[0])
    with pytest.raises(InputTypeError, match="frames must be an iterable of frames or a cv2"):
        inspector.stream(42)


def test_closed_inspector_refuses_to_stream(tiny: TinyBundle) -> None:
    insp = Inspector(tiny.model_path)
    insp.close()
    with pytest.raises(BackendError, match="is closed"):
        insp.stream([])


# ---- VideoCapture --------------------------------------------------------------------------------
def write_video(path: Path, frames: list[np.ndarray]) -> Path:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 25.0, (w, h))
    assert writer.isOpened()
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_GRAY2BGR) if f.ndim == 2 else f)
    writer.release()
    return path


def test_video_file_through_videocapture(inspector: Inspector, tmp_path: Path) -> None:
    frames = [textured_frame(seed=s) for s in range(6)]
    path = write_video(tmp_path / "clip.avi", frames)
    cap = cv2.VideoCapture(str(path))
    decoded = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        decoded.append(f)
    cap.release()
    assert len(decoded) == 6
    cap = cv2.VideoCapture(str(path))
    try:
        got = list(inspector.stream(cap))
    finally:
        cap.release()
    assert len(got) == 6  # the file's end is the stream's end, without error results
    for a, f in zip(got, decoded, strict=True):
        same_verdict(a, inspector.run(f))


class FakeCapture:
    """A camera: ``script`` lists frames or None (a failed read); then it fails forever."""

    def __init__(self, script: list[np.ndarray | None], opened: bool = True) -> None:
        self.script = list(script)
        self.opened = opened
        self.reads = 0

    def read(self) -> tuple[bool, np.ndarray | None]:
        self.reads += 1
        frame = self.script.pop(0) if self.script else None
        return frame is not None, frame

    def isOpened(self) -> bool:  # OpenCV's name
        return self.opened

    def get(self, prop_id: int) -> float:
        return -1.0  # cameras report no frame count


def test_failed_camera_reads_are_errors_until_the_camera_gives_up(inspector: Inspector) -> None:
    f = textured_frame(seed=0)
    cam = FakeCapture([f, None, None, f])
    got = list(inspector.stream(cam))
    # two failures in line, a frame, then MAX_READ_FAILURES failures in a row end the stream
    assert [r.ok for r in got] == [True, False, False, True] + [False] * MAX_READ_FAILURES
    assert got[1].error == "frame 1: no frame (VideoCapture.read returned False)"
    assert cam.reads == 4 + MAX_READ_FAILURES


def test_unopened_capture_is_refused(inspector: Inspector) -> None:
    with pytest.raises(InputError, match="VideoCapture is not opened"):
        inspector.stream(FakeCapture([], opened=False))


# ---- shutdown and memory -------------------------------------------------------------------------
def endless(counter: list[int]) -> Iterator[np.ndarray]:
    frame = textured_frame(seed=0)
    while True:
        counter[0] += 1
        yield frame


def test_break_stops_the_workers(inspector: Inspector) -> None:
    pulled = [0]
    for i, _ in enumerate(inspector.stream(endless(pulled))):
        if i == 3:
            break
    assert wait_no_stream_threads(1.0) == []
    n = pulled[0]
    time.sleep(0.1)
    assert pulled[0] == n  # nothing reads the source any more


def test_break_stops_the_workers_while_the_stream_is_still_referenced(
    inspector: Inspector,
) -> None:
    pulled = [0]
    results = inspector.stream(endless(pulled))
    for _ in results:
        break
    assert wait_no_stream_threads(1.0) == []
    n = pulled[0]
    time.sleep(0.1)
    assert pulled[0] == n  # nothing reads the source any more
    assert list(results) == []  # the stream is over, not paused
    del results


def test_next_then_for_continues_one_stream(inspector: Inspector) -> None:
    frames = [textured_frame(seed=s) for s in range(4)]
    expected = [inspector.run(f).patch_class.tolist() for f in frames]
    results = inspector.stream(frames)
    first = next(results)
    rest = [r.patch_class.tolist() for r in results]
    assert [first.patch_class.tolist(), *rest] == expected


def test_a_source_refilling_one_buffer_gets_each_frames_own_verdict(
    inspector: Inspector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A camera SDK hands out one buffer it refills per frame; the stream must not report the
    verdict of a later frame (a reference instead of a copy did, for most frames)."""
    frames = [textured_frame(seed=s) for s in range(30)]
    expected = [inspector.run(f).patch_class.tolist() for f in frames]
    assert len({tuple(e) for e in expected}) > 5  # the frames' verdicts differ

    def refilled() -> Iterator[np.ndarray]:
        buf = np.empty_like(frames[0])
        for f in frames:
            buf[...] = f
            yield buf

    backend = inspector.backend
    real_infer = backend.infer

    def slow_infer(batch: int) -> np.ndarray:
        time.sleep(0.002)  # the reader runs ahead and refills while a frame waits
        return real_infer(batch)

    monkeypatch.setattr(backend, "infer", slow_infer)
    got = [r.patch_class.tolist() for r in inspector.stream(refilled(), depth=3)]
    assert got == expected


def test_generator_close_stops_the_workers(inspector: Inspector) -> None:
    results = inspector.stream(endless([0]))
    next(results)
    assert len(stream_threads()) == 2
    t0 = time.monotonic()
    results.close()
    assert stream_threads() == []
    assert time.monotonic() - t0 < 1.0


def test_exception_in_the_consumer_stops_the_workers(inspector: Inspector) -> None:
    with pytest.raises(ZeroDivisionError):
        for _ in inspector.stream(endless([0])):
            1 / 0  # noqa: B018
    assert wait_no_stream_threads(1.0) == []


def test_no_threads_before_the_first_result_is_asked_for(inspector: Inspector) -> None:
    results = inspector.stream(endless([0]))
    assert stream_threads() == []
    results.close()


@pytest.mark.parametrize("depth", [1, 3])
def test_a_slow_consumer_bounds_the_frames_in_flight(inspector: Inspector, depth: int) -> None:
    pulled = [0]
    results = inspector.stream(endless(pulled), depth=depth)
    next(results)
    time.sleep(0.3)  # the workers fill every queue, then must wait
    in_flight = pulled[0] - 1
    results.close()
    assert depth <= in_flight <= 2 * depth + 2


def test_acquisition_overlaps_inference(
    inspector: Inspector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 40 ms source and a 40 ms inference: pipelined ~40 ms per frame, a plain loop ~80."""
    frame = textured_frame(seed=0)
    delay, n = 0.04, 8

    def camera() -> Iterator[np.ndarray]:
        for _ in range(n):
            time.sleep(delay)
            yield frame

    backend = inspector.backend
    real_infer = backend.infer

    def slow_infer(batch: int) -> np.ndarray:
        time.sleep(delay)
        return real_infer(batch)

    monkeypatch.setattr(backend, "infer", slow_infer)
    t0 = time.perf_counter()
    for f in camera():
        inspector.run(f)
    plain = time.perf_counter() - t0
    t0 = time.perf_counter()
    assert len(list(inspector.stream(camera()))) == n
    piped = time.perf_counter() - t0
    assert piped < 0.8 * plain, f"stream {piped:.3f} s vs plain loop {plain:.3f} s: no overlap"


# ---- sharing the cores: the reader steps back when inference fills them --------------------------
@pytest.mark.parametrize(
    ("threads", "spins", "cpus", "nice"),
    [
        (2, False, 2, READER_NICE),
        (4, False, 2, READER_NICE),
        (1, False, 1, READER_NICE),
        (1, False, 2, 0),  # a CPU to spare
        (3, False, 4, 0),
        (0, False, 2, 0),  # a GPU
        (2, True, 2, 0),  # a busy-waiting pool would starve a low-priority reader
    ],
)
def test_default_reader_nice_steps_back_only_for_a_sleeping_pool_on_every_cpu(
    threads: int, spins: bool, cpus: int, nice: int
) -> None:
    assert default_reader_nice(threads, spins, cpus) == nice


def thread_nice() -> int:
    import os

    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="per-thread nice values are a Linux feature"
)


@linux_only
def test_lower_thread_priority_changes_only_the_calling_thread() -> None:
    main_before, seen = thread_nice(), []

    def worker() -> None:
        before = thread_nice()
        changed = lower_thread_priority(3)
        seen.append((before, changed, thread_nice()))

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    before, changed, after = seen[0]
    assert changed and after == min(19, before + 3)
    assert thread_nice() == main_before


def nice_seen_by_source(inspector: Inspector, **kwargs: object) -> list[int]:
    """The reader thread's nice value, as the frame source sees it while producing frames."""
    seen: list[int] = []

    def source() -> Iterator[np.ndarray]:
        for i in range(3):
            seen.append(thread_nice())
            yield textured_frame(seed=i)

    results = list(inspector.stream(source(), **kwargs))
    assert len(results) == 3 and all(r.ok for r in results)
    return seen


@linux_only
@pytest.mark.parametrize("nice", [0, 4])
def test_stream_runs_its_reader_at_the_nice_asked_for(inspector: Inspector, nice: int) -> None:
    base = thread_nice()
    assert nice_seen_by_source(inspector, reader_nice=nice) == [min(19, base + nice)] * 3
    assert thread_nice() == base  # the caller's thread keeps its priority


@linux_only
@pytest.mark.parametrize("threads", [1, 2])
def test_stream_default_nice_follows_the_inference_pool(tiny: TinyBundle, threads: int) -> None:
    base = thread_nice()
    with Inspector(tiny.model_path, threads=threads) as insp:
        frame = textured_frame(seed=0)
        assert insp.inference_pool(frame) == (threads, insp.backend.spin)
        expected = default_reader_nice(threads, insp.backend.spin, usable_cpus())
        assert auto_reader_nice(insp, frame) == expected
        assert nice_seen_by_source(insp)[1:] == [min(19, base + expected)] * 2
