"""One ``Inspector`` shared by 8 threads × 1,000 frames gives exactly the single-threaded results.

The Inspector documents that it may be shared: a lock serialises each frame's use of the backend's
buffers (tile -> infer -> vote). These tests hold it to that under contention: ``run``,
``run_batch`` and ``stream`` mixed on one instance, frames of different sizes (so the batch size
and the input buffer change between calls), bad frames interleaved, and ``close()`` racing
running threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from modelzoo import TinyBundle, textured_frame, write_tiny

from pyinspect import InspectionResult, Inspector
from pyinspect.errors import BackendError, InputError

THREADS = 8
FRAMES_PER_THREAD = 1000
PATCH = 32  # small patches keep 8,000 inferences to seconds on two cores


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> TinyBundle:
    return write_tiny(tmp_path_factory.mktemp("threads"), "t.onnx", patch=PATCH, seed=7)


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    """48 distinct frames: gray/BGR/BGRA, 1 to 9 patches, some strided or flipped views."""
    rng = np.random.default_rng(11)
    out = []
    for i in range(48):
        h, w = (int(v) for v in rng.integers(PATCH, 3 * PATCH + 1, 2))
        f = textured_frame(h, w, channels=(0, 3, 4)[i % 3], seed=100 + i)
        if i % 4 == 1:
            f = f[::-1]  # negative row stride
        elif i % 4 == 2:
            f = np.ascontiguousarray(np.swapaxes(f, 0, 1)).swapaxes(0, 1)  # column-major
        out.append(f)
    return out


@pytest.fixture(scope="module")
def expected(model: TinyBundle, frames: list[np.ndarray]) -> list[InspectionResult]:
    with Inspector(model.model_path, threads=1) as insp:
        results = [insp.run(f) for f in frames]
    assert len({r.label for r in results}) >= 3, "frames too alike to catch a mix-up"
    assert len({r.num_patches for r in results}) >= 3, "frames too alike in size"
    return results


def _same(got: InspectionResult, want: InspectionResult, *, exact: bool) -> None:
    assert (got.label, got.texture, got.defective) == (want.label, want.texture, want.defective)
    np.testing.assert_array_equal(got.boxes, want.boxes)
    np.testing.assert_array_equal(got.patch_class, want.patch_class)
    if exact:  # same batch size, one intra-op thread: the same arithmetic, bit for bit
        np.testing.assert_array_equal(got.patch_score, want.patch_score)
        np.testing.assert_array_equal(got.patch_defect_prob, want.patch_defect_prob)
    else:  # run_batch packs frames into larger batches, whose GEMMs may round differently
        np.testing.assert_allclose(got.patch_defect_prob, want.patch_defect_prob, atol=1e-6)


def _order(t: int, n: int) -> list[int]:
    """Thread t's frame indices: every frame, in a thread-specific order."""
    step = (5, 7, 11, 13, 17, 19, 23, 25)[t % 8]  # coprime with 48
    return [(t * 3 + i * step) % n for i in range(FRAMES_PER_THREAD)]


def _run_threads(workers: list[Callable[[], None]]) -> list[BaseException]:
    errors: list[BaseException] = []
    start = threading.Barrier(len(workers))

    def wrap(work: Callable[[], None]) -> None:
        try:
            start.wait()
            work()
        except BaseException as exc:  # collected and asserted in the test's own thread
            errors.append(exc)

    threads = [threading.Thread(target=wrap, args=(w,)) for w in workers]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=600)
    assert not any(th.is_alive() for th in threads), "a worker hung"
    return errors


def test_8_threads_x_1000_frames_match_single_threaded(
    model: TinyBundle, frames: list[np.ndarray], expected: list[InspectionResult]
) -> None:
    """Threads 0-3 call run(), 4-5 run_batch() in groups of 5, 6-7 each drive a stream();
    every thread also feeds a bad frame every 97 frames, which must fail alone."""
    bad = np.zeros((PATCH - 1, 64), np.uint8)  # smaller than the patch: an InputError
    checked = [0] * THREADS

    def by_run(t: int) -> Callable[[], None]:
        def work() -> None:
            for k, i in enumerate(_order(t, len(frames))):
                if k % 97 == 50:
                    with pytest.raises(InputError, match="smaller than"):
                        insp.run(bad)
                _same(insp.run(frames[i]), expected[i], exact=True)
                checked[t] += 1

        return work

    def by_batch(t: int) -> Callable[[], None]:
        def work() -> None:
            order = _order(t, len(frames))
            for lo in range(0, len(order), 5):
                group = order[lo : lo + 5]
                for i, r in zip(group, insp.run_batch([frames[i] for i in group]), strict=True):
                    _same(r, expected[i], exact=False)
                    checked[t] += 1
                if lo % 485 == 0:
                    with pytest.raises(InputError):
                        insp.run_batch([frames[group[0]], bad])

        return work

    def by_stream(t: int) -> Callable[[], None]:
        def work() -> None:
            order = _order(t, len(frames))

            def source() -> Iterator[np.ndarray | None]:
                for k, i in enumerate(order):
                    if k % 97 == 50:
                        yield bad
                    yield frames[i]

            results = iter(insp.stream(source()))
            for k, i in enumerate(order):
                if k % 97 == 50:
                    failed = next(results)
                    assert not failed.ok and "smaller than" in (failed.error or "")
                _same(next(results), expected[i], exact=True)
                checked[t] += 1
            assert next(results, None) is None

        return work

    with Inspector(model.model_path, threads=1) as insp:
        workers = [by_run(t) for t in range(4)] + [by_batch(t) for t in (4, 5)]
        workers += [by_stream(t) for t in (6, 7)]
        errors = _run_threads(workers)
        assert not errors, errors[:3]
        # the shared Inspector is still consistent afterwards
        _same(insp.run(frames[0]), expected[0], exact=True)
    assert checked == [FRAMES_PER_THREAD] * THREADS
    assert not [t for t in threading.enumerate() if t.name.startswith("pyinspect-stream-")]


def test_close_while_threads_run(model: TinyBundle, frames: list[np.ndarray]) -> None:
    """close() from another thread: running callers get BackendError (or finish), nothing else,
    and the Inspector stays closed."""
    insp = Inspector(model.model_path, threads=1)
    started = threading.Barrier(5)
    outcomes: list[str] = []

    def worker(t: int) -> None:
        started.wait()
        try:
            for k in range(2000):
                insp.run(frames[(t + k) % len(frames)])
            outcomes.append("finished")
        except BackendError as exc:
            assert "closed" in str(exc)
            outcomes.append("closed")

    def closer() -> None:
        started.wait()
        insp.run(frames[0])  # let the workers get going
        insp.close()

    errors = _run_threads([lambda t=t: worker(t) for t in range(4)] + [closer])
    assert not errors, errors[:3]
    assert sorted(set(outcomes)) <= ["closed", "finished"] and len(outcomes) == 4
    with pytest.raises(BackendError, match="is closed"):
        insp.run(frames[0])


def test_threads_with_their_own_inspectors_agree(
    model: TinyBundle, frames: list[np.ndarray], expected: list[InspectionResult], tmp_path: Path
) -> None:
    """The documented alternative to sharing (one Inspector per worker) gives the same results;
    each loads its own session from the same file."""
    errors = _run_threads(
        [lambda: _own_inspector(model, frames, expected, tmp_path) for _ in range(4)]
    )
    assert not errors, errors[:3]


def _own_inspector(
    model: TinyBundle, frames: list[np.ndarray], expected: list[InspectionResult], tmp: Path
) -> None:
    with Inspector(model.model_path, threads=1) as insp:
        for i in range(len(frames)):
            _same(insp.run(frames[i]), expected[i], exact=True)
