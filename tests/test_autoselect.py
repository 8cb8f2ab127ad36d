"""The measured rule for backend="auto" on the CPU: candidates, interleaved timing, margin."""

from __future__ import annotations

from pathlib import Path

import pytest
from modelzoo import write_tiny

from pyinspect.autoselect import (
    CPU_ORDER,
    BackendTiming,
    choose,
    cpu_candidates,
    fastest_cpu_backend,
    measure,
    preferred_cpu_backend,
)
from pyinspect.errors import InputError


def _t(name: str, ms: float) -> BackendTiming:
    return BackendTiming(name, ms, (ms,))


@pytest.mark.parametrize(
    ("timings", "expected"),
    [
        ([_t("onnxruntime", 5.0), _t("openvino", 3.0)], "openvino"),  # 40 % faster: switch
        ([_t("onnxruntime", 5.0), _t("openvino", 4.6)], "onnxruntime"),  # 8 %: within noise
        ([_t("onnxruntime", 5.0), _t("openvino", 4.5)], "openvino"),  # exactly 10 %: switch
        ([_t("onnxruntime", 3.0), _t("openvino", 5.0)], "onnxruntime"),
        ([_t("openvino", 5.0), _t("other", 4.0)], "other"),  # no default measured: fastest
    ],
)
def test_choose_keeps_the_default_within_the_margin(timings, expected: str) -> None:
    assert choose(timings) == expected


def test_choose_needs_timings() -> None:
    with pytest.raises(InputError, match="no timings"):
        choose([])


def test_candidates_follow_the_suffix(tmp_path: Path) -> None:
    pytest.importorskip("openvino", reason="the openvino extra is not installed")
    assert cpu_candidates(tmp_path / "m.onnx") == [n for n in CPU_ORDER]
    assert cpu_candidates(tmp_path / "m.xml") == ["openvino"]
    assert preferred_cpu_backend(tmp_path / "m.onnx") == CPU_ORDER[0]
    with pytest.raises(InputError, match=r"no installed CPU backend reads '\.plan'"):
        preferred_cpu_backend(tmp_path / "m.plan")


def test_measure_times_every_candidate_in_rounds(tmp_path: Path) -> None:
    bundle = write_tiny(tmp_path, channels=1, patch=32)
    timings = measure(bundle.model_path, threads=1, rounds=3, iters=2, warmup=1)
    assert [t.name for t in timings] == cpu_candidates(bundle.model_path)
    for t in timings:
        assert len(t.rounds_ms) == 3 and t.median_ms > 0
    name, again = fastest_cpu_backend(bundle.model_path, threads=1, rounds=1, iters=1, warmup=0)
    assert name in {t.name for t in again}
    with pytest.raises(InputError, match="rounds and iters must be >= 1"):
        measure(bundle.model_path, rounds=0)
