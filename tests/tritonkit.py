"""Shared by the tests against the real ``tritonserver``: where the server and the serving
environment are (``make serve-env`` builds both; ``make test`` does it when they are missing),
the repositories the tests serve, and realistic frames."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pyinspect.export.triton import default_python_env, export_triton
from pyinspect.export.triton_server import LocalTritonServer, default_server_dir

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "student.onnx"
SERVER_BINARY = default_server_dir() / "tritonserver" / "bin" / "tritonserver"
SERVE_ENV = default_python_env()

requires_server = pytest.mark.skipif(
    not (SERVER_BINARY.is_file() and (SERVE_ENV / "bin" / "python").is_file()),
    reason=f"no tritonserver at {SERVER_BINARY} or no serving environment at {SERVE_ENV}:"
    " run `make serve-env` (`make test` does)",
)


def synth_frames(count: int, seed: int = 11) -> list[np.ndarray]:
    """``count`` 512×512 synthetic DAGM frames over the six textures, every third defective."""
    from train.synth import synth_image

    return [synth_image(seed, i % 6, i, i % 3 == 0)[0] for i in range(count)]


def serve_student(tmp: Path) -> LocalTritonServer:
    """The shipped student exported twice: as ``pyinspect export triton MODEL --out REPO`` with
    no other flag (its frame model is served; its onnxruntime_onnx patch model needs a server
    with that backend, so it is not loaded), and with ``--patch-backend python --name
    student_py`` (its patch model, the ONNX Runtime stand-in, is served). Not started yet."""
    plain, stand_in = tmp / "repo", tmp / "repo-py"
    export_triton(MODEL, plain)
    export_triton(MODEL, stand_in, name="student_py", patch_backend="python")
    return LocalTritonServer([plain, stand_in], models=["student_frame", "student_py_patch"])


def student_server(folder: str) -> Any:
    """A module-scoped fixture: ``serve_student`` in a fresh ``folder`` under pytest's base
    temporary folder, started (its ``ready_s``: the seconds until it was ready), closed after the
    module. Use as ``server = student_server("name")``."""

    @pytest.fixture(scope="module")
    def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTritonServer]:
        srv = serve_student(tmp_path_factory.mktemp(folder))
        srv.ready_s = srv.start(timeout=60)  # type: ignore[attr-defined]
        try:
            yield srv
        finally:
            srv.close()

    return server


def same_verdict(a: object, b: object) -> bool:
    """Texture, verdict, label and per-patch classes and defect probabilities, bit for bit."""
    return (
        a.texture == b.texture  # type: ignore[attr-defined]
        and a.defective == b.defective  # type: ignore[attr-defined]
        and a.label == b.label  # type: ignore[attr-defined]
        and np.array_equal(a.patch_class, b.patch_class)  # type: ignore[attr-defined]
        and np.array_equal(a.patch_defect_prob, b.patch_defect_prob)  # type: ignore[attr-defined]
    )
