"""Accuracy guard: a lower-precision path is compared verdict by verdict with f32, every
difference listed and counted (the rule and the cache: tests/test_precision_guard_cache.py)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from modelzoo import textured_frame, tiny_model, write_tiny

from pyinspect import Inspector
from pyinspect.errors import PyInspectError
from pyinspect.precision_guard import (
    GuardReport,
    PrecisionRejectedError,
    check_backend_precision,
    compare,
    enforce,
)
from pyinspect.result import InspectionResult

PATCH = 32


def _frames(n: int = 8) -> list[tuple[str, np.ndarray]]:
    return [(f"frame{i}.png", textured_frame(64, 80, seed=i)) for i in range(n)]


@pytest.fixture
def tiny(tmp_path: Path):
    return write_tiny(tmp_path, channels=1, patch=PATCH, mean=[0.5], std=[0.25])


def _flip(result: InspectionResult) -> InspectionResult:
    """The same result with the defect verdict inverted (what a precision bug could do)."""
    label = result.label.replace("good", "X").replace("defective", "good").replace("X", "defective")
    return replace(result, defective=not result.defective, label=label)


def test_same_path_is_accepted(tiny) -> None:
    with Inspector(tiny.model_path, backend="onnxruntime", threads=1) as ref:
        report = compare(ref, ref, _frames(4))
    assert report.accepted and report.frames == 4
    assert report.differences == () and report.patch_class_changes == 0
    assert report.patches == 4 * 6  # a 64×80 frame is 2 rows × 3 columns of 32-pixel patches
    assert report.max_score_delta == 0.0


def test_every_changed_verdict_is_listed_counted_and_enforced(tiny) -> None:
    frames = _frames(6)
    flipped = {"frame1.png", "frame4.png"}
    with Inspector(tiny.model_path, backend="onnxruntime", threads=1) as ref:
        originals = {name: ref.run(f) for name, f in frames}

        def candidate(frame: np.ndarray) -> InspectionResult:
            name = next(n for n, f in frames if f is frame)
            return _flip(originals[name]) if name in flipped else originals[name]

        report = compare(ref, candidate, frames, reference_name="fp32", candidate_name="bf16")
    assert not report.accepted
    assert [d.frame for d in report.differences] == ["frame1.png", "frame4.png"]
    d = report.differences[0]
    assert d.reference == originals["frame1.png"].label and d.candidate != d.reference
    assert d.defective == (originals["frame1.png"].defective, not originals["frame1.png"].defective)
    assert report.identical == 4 and report.texture_flips == 0
    assert report.good_to_defective + report.defective_to_good == 2
    text = report.summary()
    assert "REJECTED" in text and "4/6 identical verdicts" in text
    assert "frame4.png: fp32 says" in text
    with pytest.raises(PrecisionRejectedError, match=r"bf16 vs fp32 on 6 frames.*REJECTED"):
        enforce(report)
    assert report.to_dict()["differences"][1]["frame"] == "frame4.png"


def test_real_numeric_change_is_caught(tmp_path: Path, tiny) -> None:
    """A candidate model with the most frequent winning class swapped for one of another texture
    and defect state: the guard must list exactly the frames whose verdict that changes,
    computed independently here."""
    frames = _frames(10)
    with Inspector(tiny.model_path, backend="onnxruntime", threads=1) as ref:
        ref_results = {n: ref.run(f) for n, f in frames}
    winners = np.concatenate([r.patch_class for r in ref_results.values()])
    top = int(np.bincount(winners).argmax())
    perm = np.arange(12)
    perm[[top, (top + 3) % 12]] = perm[[(top + 3) % 12, top]]
    w = tiny.weights
    path = tmp_path / "swapped.onnx"
    onnx.save(tiny_model(replace(w, fc_w=w.fc_w[perm], fc_b=w.fc_b[perm]), patch=PATCH), path)
    tiny.spec.save_for_model(path)
    with Inspector(path, backend="onnxruntime", threads=1) as cand:
        cand_results = {n: cand.run(f) for n, f in frames}
        expected = [
            n
            for n, _ in frames
            if (ref_results[n].texture, ref_results[n].defective)
            != (cand_results[n].texture, cand_results[n].defective)
        ]
        with Inspector(tiny.model_path, backend="onnxruntime", threads=1) as ref:
            report = compare(ref, cand, frames)
    assert expected, "the swap should change some verdicts (test set-up)"
    assert [d.frame for d in report.differences] == expected
    assert not report.accepted
    swapped = np.isin(winners, [top, (top + 3) % 12])  # both classes trade places
    assert report.patch_class_changes == int(np.count_nonzero(swapped))


def test_openvino_f32_matches_onnxruntime(tiny) -> None:
    pytest.importorskip("openvino", reason="the openvino extra is not installed")
    report = check_backend_precision(
        tiny.model_path, _frames(6), candidate={"backend": "openvino", "threads": 1}
    )
    assert report.accepted, report.summary()
    assert report.patch_class_changes == 0 and report.max_score_delta < 1e-4
    assert report.candidate == "backend=openvino threads=1"


def test_patch_count_mismatch_is_an_error(tiny) -> None:
    with Inspector(tiny.model_path, backend="onnxruntime", threads=1) as ref:
        small = ref.run(textured_frame(32, 32))
        with pytest.raises(PyInspectError, match=r"reference has 6 patches, candidate 1"):
            compare(ref, lambda _frame: small, _frames(1))


def test_non_classifier_is_refused() -> None:
    with pytest.raises(
        TypeError, match=r"expected an object with inspect\(frame\) or run\(frame\)"
    ):
        compare(object(), object(), [])


def test_no_frames_is_no_evidence() -> None:
    report = GuardReport("a", "b", 0)
    assert not report.accepted
    with pytest.raises(PrecisionRejectedError, match="on 0 frames"):
        enforce(report)


def test_same_path_is_enforced_unchanged(tiny) -> None:
    with Inspector(tiny.model_path, backend="onnxruntime", threads=1) as ref:
        report = compare(ref, ref, _frames(2))
    assert enforce(report) is report
