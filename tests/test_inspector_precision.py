"""``Inspector(precision=...)``: the direct student runner in a lower precision only behind the
verdict-parity guard (pyinspect/precision_guard.py), f32 otherwise, every fallback said."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

import pyinspect.precision_guard as guard
import pyinspect.precision_timing as timing
from pyinspect import Inspector
from pyinspect.errors import InputError
from pyinspect.runners.student import kernel_isas, kernel_precisions

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "models" / "student.onnx"
#: The generator version the shipped student was trained on (its guard record says).
TRAINED_ON = guard.guard_frames(SHIPPED).synth_version

needs_runner = pytest.mark.skipif(
    not kernel_isas(), reason="the direct student runner needs an x86-64 CPU with AVX2 and FMA"
)
needs_bf16 = pytest.mark.skipif(
    "bf16" not in kernel_precisions(),
    reason="this CPU has no bf16 student kernels (they need AVX512_BF16 and AVX512VL)",
)


@pytest.fixture
def model(tmp_path: Path) -> Path:
    """The shipped student in a folder of its own, its guard on a small set of the generator
    version it was trained on: 3 good + 3 defective per texture, 4 orientations, 144 frames."""
    dest = tmp_path / "model" / "student.onnx"
    dest.parent.mkdir()
    shutil.copyfile(SHIPPED, dest)
    shutil.copyfile(SHIPPED.with_name("student.onnx.json"), dest.with_name("student.onnx.json"))
    guard.write_synthetic_guard(dest, version=TRAINED_ON, per_class=3)
    return dest


def frame(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (512, 512), dtype=np.uint8)


@pytest.mark.parametrize("bad", ["fp16", "F32", "", 16])
def test_a_bad_precision_is_named_before_anything_loads(bad: object) -> None:
    with pytest.raises(InputError, match=r"precision must be one of \['f32', 'bf16', 'auto'\]"):
        Inspector(SHIPPED, precision=bad)  # type: ignore[arg-type]


def test_with_a_named_backend_precision_is_that_backends_option(model: Path) -> None:
    """``Inspector(backend="openvino", precision=...)`` is OpenVINO's own precision, unguarded."""
    pytest.importorskip("openvino", reason="OpenVINO is not installed")
    with pytest.raises(InputError, match=r"precision must be one of"):
        Inspector(model, backend="openvino", precision="fp8")  # OpenVINO's check, not ours
    with Inspector(model, backend="openvino", precision="f32") as insp:
        assert insp.runner == "backend" and insp.precision == "f32"


@needs_runner
def test_f32_runs_no_guard_and_writes_nothing(model: Path, monkeypatch) -> None:
    monkeypatch.setattr(guard, "run_guard", _must_not_run)
    with Inspector(model) as insp:
        assert insp.precision == "f32" and insp.precision_report is None
    assert not guard.cache_path(model).exists()


@needs_runner
@needs_bf16
def test_bf16_is_guarded_once_then_read_from_the_cache(model: Path, monkeypatch) -> None:
    with Inspector(model, precision="bf16") as insp:
        assert insp.runner == "student" and insp.precision == "bf16"
        report = insp.precision_report
        assert report.accepted and report.frames == 144
        bf16 = insp.run(frame()).label
    cached = json.loads(guard.cache_path(model).read_text())
    assert json.dumps(cached).count('"bf16"') >= 1  # the entry names its precision
    monkeypatch.setattr(guard, "run_guard", _must_not_run)  # a second start reads the cache
    monkeypatch.setattr(timing, "time_precisions", _timed_as({"f32": 1.0, "bf16": 0.5}))
    with Inspector(model, precision="auto") as again:
        assert again.precision == "bf16"
        assert again.precision_report.identical == report.identical
    with Inspector(model) as f32:
        assert f32.precision == "f32"
        assert f32.run(frame()).label == bf16  # the guard's promise, on one more frame


@needs_runner
@needs_bf16
def test_a_rejected_precision_runs_f32_and_says_why(model: Path, monkeypatch, caplog) -> None:
    flip = guard.Difference("frame 7", "Texture 1 good", "Texture 2 good", (0, 1), (False, False))

    def rejecting(model_path, precision, *args, **kwargs):
        return guard.GuardReport("f32", precision, frames=2000, differences=(flip,))

    monkeypatch.setattr(guard, "run_guard", rejecting)
    with (
        caplog.at_level(logging.WARNING, logger="pyinspect"),
        Inspector(model, precision="bf16") as insp,
    ):
        assert insp.precision == "f32"
        assert not insp.precision_report.accepted
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "rejected" in warning and "1 texture flip" in warning and "running f32" in warning


@needs_runner
@needs_bf16
def test_without_guard_frames_the_model_runs_f32(model: Path, caplog) -> None:
    guard.guard_path(model).write_text(
        json.dumps({"format": "pyinspect guard frames", "version": 1, "split": "val",
                    "written_in": str(model.parent), "orientations": [0],
                    "images": ["missing/0001.png"]})
    )  # fmt: skip
    with (
        caplog.at_level(logging.WARNING, logger="pyinspect"),
        Inspector(model, precision="bf16") as insp,
    ):
        assert insp.precision == "f32" and insp.precision_report is None
    assert "0001.png" in caplog.text and "running f32" in caplog.text


@needs_runner
def test_auto_on_a_cpu_without_lower_kernels_stays_f32_quietly(model, monkeypatch, caplog):
    import pyinspect.runners.student as student

    monkeypatch.setattr(student, "kernel_precisions", lambda: ("f32",))
    monkeypatch.setattr(guard, "run_guard", _must_not_run)
    with (
        caplog.at_level(logging.WARNING, logger="pyinspect"),
        Inspector(model, precision="auto") as insp,
    ):
        assert insp.precision == "f32"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@needs_runner
@needs_bf16
@pytest.mark.parametrize(("f32_ms", "bf16_ms", "expected"), [(1.0, 0.5, "bf16"), (0.8, 0.9, "f32")])
def test_auto_keeps_the_accepted_lower_precision_only_when_timed_faster(
    model: Path, monkeypatch, f32_ms: float, bf16_ms: float, expected: str
) -> None:
    monkeypatch.setattr(timing, "time_precisions", _timed_as({"f32": f32_ms, "bf16": bf16_ms}))
    with Inspector(model, precision="auto") as insp:
        assert insp.precision_report.accepted  # the guard ran either way
        assert insp.precision == expected == insp.precision_timing.chosen
        assert insp.run(frame()).patch_class.shape == (9,)


@needs_runner
@needs_bf16
def test_auto_times_both_precisions_on_a_guard_frame(model: Path) -> None:
    """Un-faked: the timing ran both runners and the runner in use is the one it chose."""
    with Inspector(model, precision="auto") as insp:
        measured = insp.precision_timing
        assert set(measured.ms_per_frame) == {"f32", "bf16"}
        assert all(ms > 0 for ms in measured.ms_per_frame.values())
        assert insp.precision == measured.chosen
        assert measured.chosen in measured.describe()


@needs_runner
@needs_bf16
def test_bf16_named_is_not_timed(model: Path, monkeypatch) -> None:
    monkeypatch.setattr(timing, "time_precisions", _must_not_run)
    with Inspector(model, precision="bf16") as insp:
        assert insp.precision == "bf16" and insp.precision_timing is None


def test_a_named_lower_precision_needs_the_student_runner(model: Path) -> None:
    with pytest.raises(InputError, match=r"precision='bf16' needs the direct student runner"):
        Inspector(model, runner="backend", precision="bf16")
    with Inspector(model, runner="backend", precision="auto") as insp:  # auto: f32 there
        assert insp.precision == "f32"


@needs_runner
@needs_bf16
def test_inspect_cli_reports_the_precision_in_use(model: Path, tmp_path: Path, capsys) -> None:
    import cv2

    from pyinspect.cli import main

    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), frame(3))
    assert main(["inspect", "-m", str(model), "--precision", "bf16", "--json", str(image)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert lines[-1]["summary"]["precision"] == "bf16"


def _must_not_run(*args: object, **kwargs: object) -> None:
    msg = "the precision guard ran although it should not"
    raise AssertionError(msg)


def _timed_as(ms_per_frame: dict[str, float]):
    """A ``time_precisions`` stand-in that reports these times (and checks what it was given)."""

    def fake(runners, frame, reference, **kwargs):
        assert set(runners) == set(ms_per_frame) and reference == "f32"
        assert frame.ndim == 2 and frame.dtype == np.uint8
        chosen = timing.choose_faster(ms_per_frame, reference)
        return timing.PrecisionTiming(chosen, dict(ms_per_frame), 1, 1)

    return fake
