"""benchmarks/gpu/run.sh: the GPU script's --dry-run on the CPU, so the script does not rot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("timm", reason="the train extra (timm) is not installed")


@pytest.mark.slow
def test_dry_run_writes_every_row(tmp_path: Path) -> None:
    env_python = {"PYTHON": sys.executable}
    proc = subprocess.run(
        ["bash", "benchmarks/gpu/run.sh", str(tmp_path), "--dry-run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env_python},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "gpu-bench.json").read_text())
    rows = {(r["kind"], r["model"]) for r in doc["rows"]}
    assert rows == {
        ("inference", "vgg16"),
        ("inference", "lite0"),
        ("inference", "student"),
        ("train_step", "vgg16"),
        ("train_step", "lite0"),
    }
    assert all(r["median_ms"] > 0 and r["n"] == 1 for r in doc["rows"])
    assert doc["machine"]["device"] == "cpu" and doc["skipped"] == []
    md = (tmp_path / "gpu-bench.md").read_text()
    assert "| inference | student |" in md and "dry run" in md


def test_without_a_gpu_the_real_run_says_so(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present: the real run would start")
    proc = subprocess.run(
        [sys.executable, "benchmarks/gpu/bench.py", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    assert "no CUDA device" in proc.stderr and "--dry-run" in proc.stderr
    assert not (tmp_path / "gpu-bench.json").exists()


def test_usage_without_outdir() -> None:
    proc = subprocess.run(
        ["bash", "benchmarks/gpu/run.sh"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2 and "usage:" in proc.stderr
