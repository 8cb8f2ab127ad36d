"""The direct student runner over the whole student family: random conv widths (1..64), class
counts, 1- and 3-channel inputs, FC1 widths, frame sizes and grids, against ONNX Runtime on the
same ONNX + sidecar (tests/studentzoo.py builds them as the exporter writes them)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from studentzoo import frames, student_onnx

from pyinspect import Inspector
from pyinspect.runners.student import MAX_WIDTH, NotAStudentError, StudentRunner
from pyinspect.spec import GridSpec
from pyinspect.tiling import tile_into

pytestmark = [pytest.mark.timeout(600), pytest.mark.usefixtures("need_student_runner")]

PATCH = 224
#: Multiply-adds of ONNX Runtime's reference per example, at most (keeps each example < ~0.5 s).
MAC_BUDGET = 2.0e9
# PYINSPECT_FAMILY_EXAMPLES=N for a longer local run (30 keeps make test under a minute here)
FAMILY = settings(
    max_examples=int(os.environ.get("PYINSPECT_FAMILY_EXAMPLES", "30")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def patch_macs(widths: tuple[int, ...], cin: int) -> int:
    """Multiply-adds of the conv stack on one 224×224 patch."""
    total, size = 0, PATCH
    for w in widths:
        total += size * size * w * cin * 9
        size, cin = size // 2, w
    return total


def reference_logits(ref: Inspector, frame: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """ONNX Runtime's logits of ``boxes``, tiled the way the Inspector tiles."""
    norm = ref.spec.normalization
    buf = ref.backend.input_buffer(len(boxes))
    tile_into(frame, buf, boxes, norm.mean, norm.std)
    return np.array(ref.backend.infer(len(boxes)))


def expect_shared(boxes: np.ndarray) -> bool:
    """The engine's rule (cpp/student_engine.hpp): several patches, offsets from the union's
    corner multiples of 16, and a union smaller than 0.9 of the patches' summed area."""
    x, y = boxes[:, 0], boxes[:, 1]
    x0, y0 = x.min(), y.min()
    area = (x.max() + PATCH - x0) * (y.max() + PATCH - y0)
    aligned = bool(((x - x0) % 16 == 0).all() and ((y - y0) % 16 == 0).all())
    return len(boxes) > 1 and aligned and bool(area < 0.9 * len(boxes) * PATCH * PATCH)


@st.composite
def students(draw: st.DrawFn) -> dict:
    """A student, a frame size and a grid whose reference run fits MAC_BUDGET. Half the frames
    are sized so that a fixed grid puts every offset on a multiple of 16 (the shared path)."""
    widths = tuple(draw(st.lists(st.integers(1, MAX_WIDTH), min_size=5, max_size=5)))
    folded = draw(st.booleans())
    max_patches = max(1, int(MAC_BUDGET // patch_macs(widths, 1 if folded else 3)))
    if draw(st.booleans()):  # aligned: H = 224 + 32a, rows <= 3 -> offsets 0, 16a, 32a
        rows = draw(st.integers(1, min(3, max_patches)))
        cols = draw(st.integers(1, min(3, max(1, max_patches // rows))))
        # n patches cover at most n * 224 pixels without a gap: 32a <= (n - 1) * 224
        a = draw(st.integers(1, min(9, 7 * (rows - 1)))) if rows > 1 else 0
        b = draw(st.integers(1, min(9, 7 * (cols - 1)))) if cols > 1 else 0
        shape = (PATCH + 32 * a, PATCH + 32 * b)  # a = 0 with one row: a 224-pixel side
        grid = GridSpec(policy="fixed", rows=rows, cols=cols)
    else:  # any size, the cover grid (offsets rarely multiples of 16: patch by patch)
        side = PATCH + draw(st.integers(0, 400))
        other = PATCH + draw(st.integers(0, 400)) if max_patches >= 9 else PATCH
        shape = (side, other) if draw(st.booleans()) else (other, side)
        grid = None
        rows_cover = 1 + -(-(shape[0] - PATCH) // PATCH)
        cols_cover = 1 + -(-(shape[1] - PATCH) // PATCH)
        if rows_cover * cols_cover > max_patches:
            shape, grid = (PATCH, PATCH), None
    return {
        "widths": widths,
        "folded": folded,
        "classes": draw(st.integers(2, 16)),
        "hidden": draw(st.sampled_from([1, 5, 8, 13, 24])),
        "shape": shape,
        "grid": grid,
        "seed": draw(st.integers(0, 2**16)),
    }


@FAMILY
@given(students())
def test_family_matches_onnxruntime(case: dict) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "student.onnx"
        kwargs = {k: case[k] for k in ("widths", "folded", "classes", "hidden", "grid", "seed")}
        student_onnx(path, **kwargs)
        runner = StudentRunner(path, threads=2, verify=False)
        with runner, Inspector(path, backend="onnxruntime", runner="backend", threads=1) as ref:
            frame = frames(case["shape"], 1, seed=case["seed"])[0]
            got = runner.inspect(frame)
            boxes = ref.boxes(*case["shape"])
            np.testing.assert_array_equal(got.boxes, boxes)
            assert runner.last_stages["shared"] is expect_shared(boxes)
            event(f"shared={runner.last_stages['shared']}")
            want_logits = reference_logits(ref, frame, boxes)
            np.testing.assert_allclose(runner.logits(), want_logits, rtol=0, atol=1e-3)
            top2 = np.sort(want_logits, axis=1)[:, -2:]
            if (top2[:, 1] - top2[:, 0]).min() < 1e-3:  # a near tie may go either way
                event("near tie: logits compared only")
                return
            want = ref.run(frame)
            np.testing.assert_array_equal(got.patch_class, want.patch_class)
            assert (got.texture, got.defective, got.label) == (
                want.texture,
                want.defective,
                want.label,
            )


@pytest.mark.parametrize("widths", [(5, 9, 17, 33, 64), (4, 8, 16, 32, 32), (1, 2, 3, 5, 7)])
def test_thread_counts_agree_exactly_across_the_family(tmp_path: Path, widths: tuple) -> None:
    path = tmp_path / "s.onnx"
    student_onnx(path, widths=widths, classes=10, hidden=20, seed=4)
    for shape in ((512, 512), (600, 600)):
        frame = frames(shape, 1)[0]
        logits = []
        for threads in (1, 2):
            with StudentRunner(path, threads=threads, verify=False) as runner:
                runner.inspect(frame)
                logits.append(runner.logits())
        np.testing.assert_array_equal(logits[0], logits[1])


def test_inspector_auto_runs_family_members_with_the_backends_verdicts(tmp_path: Path) -> None:
    """The 1/16 student (4, 8, 16, 32, 32) and a 10-class student, 3-channel and folded."""
    for i, (widths, classes, folded) in enumerate(
        [((4, 8, 16, 32, 32), 12, True), ((4, 8, 16, 8, 8), 10, False)]
    ):
        path = tmp_path / f"s{i}.onnx"
        student_onnx(path, widths=widths, classes=classes, folded=folded, hidden=64, seed=i)
        with (
            Inspector(path, threads=2) as fast,
            Inspector(path, threads=1, runner="backend") as plain,
        ):
            # an empty note: the load-time check against ONNX Runtime passed
            assert (fast.runner, fast.runner_note) == ("student", "")
            for frame in frames((512, 512), 2):
                got, want = fast.run(frame), plain.run(frame)
                assert (got.texture, got.defective) == (want.texture, want.defective)
                np.testing.assert_array_equal(got.patch_class, want.patch_class)
                np.testing.assert_allclose(got.patch_score, want.patch_score, atol=1e-5)


def test_wider_than_64_keeps_the_backend_and_says_why(tmp_path: Path) -> None:
    path = tmp_path / "wide.onnx"
    student_onnx(path, widths=(4, 8, 16, 4, MAX_WIDTH + 1), hidden=8)
    with pytest.raises(NotAStudentError, match=r"conv5 has 65 output channels, more than the 64"):
        StudentRunner(path)
    with Inspector(path, threads=1) as insp:
        assert insp.runner == "backend"
        assert "conv5 has 65 output channels" in insp.runner_note


def test_family_benchmark_smoke(tmp_path: Path) -> None:
    """benchmarks/student_family.py end to end on a few frames (keeps the script from rotting)."""
    import json
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import student_family

    out = tmp_path / "family.json"
    argv = ["--rounds", "1", "--iters", "2", "--hidden", "16", "--json", str(out)]
    assert student_family.main(argv) == 0
    doc = json.loads(out.read_text())
    assert [s["key"] for s in doc["students"]] == ["shipped", "c88", "c3232", "k10"]
    assert doc["students"][0]["widths"] == [4, 8, 16, 4, 4]
    for key in ("shipped", "c88", "c3232", "k10", "inspector"):
        assert doc["results"][key]["infer_ms"] > 0
    assert doc["results"]["c3232"]["macs"] > doc["results"]["c88"]["macs"]
    report = out.with_suffix(".md").read_text()
    assert "within 1.5× of the shipped student" in report and "Python side of" in report


def test_executed_macs_counts_the_shared_computation() -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from student_family import executed_macs

    macs = executed_macs((4, 8, 16, 4, 4), 4096, 12)
    assert macs["conv1"] == 512 * 512 * 4 * 9 + 9 * 8 * 224 * 4 * 9  # the union + 9 rings
    assert macs["conv5"] == 9 * 14 * 14 * 4 * 4 * 9
    assert macs["fc"] == 9 * (4 * 49 * 4096 + 4096 * 12)
