"""Shared fixtures: tiny ONNX models with sidecars (built once per session) and test frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from modelzoo import TinyBundle, textured_frame, write_tiny

#: the shared generic-layout sets (generic_set, generic_set_single, generic_set_16bit)
pytest_plugins = ["genericset"]


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyBundle:
    """3-channel float32 tiny model, dynamic batch, with its sidecar."""
    return write_tiny(tmp_path_factory.mktemp("tiny"), "tiny.onnx")


@pytest.fixture(scope="session")
def tiny_gray(tmp_path_factory: pytest.TempPathFactory) -> TinyBundle:
    """1-channel (gray) float32 tiny model."""
    return write_tiny(tmp_path_factory.mktemp("tiny_gray"), "gray.onnx", channels=1, seed=1)


@pytest.fixture(scope="session")
def frames() -> list[np.ndarray]:
    """Six 512×512 frames: gray, BGR, and BGRA, two of each."""
    return [
        textured_frame(seed=0),
        textured_frame(seed=1, channels=3),
        textured_frame(seed=2, channels=4),
        textured_frame(seed=3),
        textured_frame(seed=4, channels=3),
        textured_frame(seed=5, channels=4),
    ]


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """An empty folder per test for models that the test breaks on purpose."""
    return tmp_path


@pytest.fixture
def need_student_runner() -> None:
    """Skips the test where the direct student runner (``pyinspect._core``) cannot run here."""
    from pyinspect.errors import BackendUnavailableError
    from pyinspect.runners.student import require_runner

    try:
        require_runner()
    except BackendUnavailableError as exc:
        pytest.skip(f"no direct student runner here: {exc}")
