"""Whole-frame runners: paths that take a frame to a verdict in one GIL-free C++ call.

A backend classifies a batch of tiles that the Inspector cut; a runner does the tiling (or needs
none), the network and the vote itself, which is what makes it fast. Runners sit behind one
``FrameRunner`` protocol and one table, ``RUNNERS``, that ``Inspector(runner=...)`` reads:

- ``runner="auto"``: the first runner of the table marked ``auto`` that takes the model, when the
  backend was chosen automatically and runs on the CPU; otherwise the backend.
- ``runner="<name>"``: that runner, or an error saying why it cannot run the model.
- ``runner="backend"``: always the backend.

A runner that replaces a backend must reproduce that backend's logits at load (the parity check);
asked for by name, a failed check raises; chosen automatically, it logs a warning with the
difference and the backend stays.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from pyinspect.errors import InputError, suggest

if TYPE_CHECKING:
    from pyinspect.backends.base import Backend
    from pyinspect.result import InspectionResult
    from pyinspect.spec import ModelSpec

__all__ = [
    "PRECISION_CHOICES",
    "RUNNERS",
    "RUNNER_CHOICES",
    "FrameRunner",
    "RunnerInfo",
    "precision_choice",
    "runner_info",
]


@runtime_checkable
class FrameRunner(Protocol):
    """What the Inspector needs from a whole-frame path."""

    name: str
    threads: int  # CPU threads its compute uses
    spins: bool  # whether those threads busy-wait between frames (stream's reader steps aside)

    def accepts(self, image: np.ndarray) -> bool:
        """Whether this (checked) frame runs here; the others go to the backend."""
        ...

    def run(
        self, image: np.ndarray, boxes: np.ndarray, threshold: float | None
    ) -> InspectionResult:
        """Verdict of a checked frame over ``boxes`` (the model's grid for its size)."""
        ...

    def close(self) -> None: ...


RunnerFactory = Callable[..., FrameRunner]


@dataclass(frozen=True)
class RunnerInfo:
    """One row of the table: how to open the runner and when ``auto`` may pick it."""

    name: str
    module: str  # imported only when the runner is considered
    factory: str  # class or function in ``module``: (model_path, spec, *, threads, reference)
    replaces: tuple[str, ...]  # backends whose verdicts it reproduces (and is checked against)
    auto: bool  # picked by runner="auto"
    summary: str

    def open(
        self,
        model_path: str | os.PathLike[str],
        spec: ModelSpec,
        *,
        threads: int | None,
        reference: Backend | None,
    ) -> FrameRunner:
        factory: RunnerFactory = getattr(importlib.import_module(self.module), self.factory)
        return factory(model_path, spec, threads=threads, reference=reference)


RUNNERS: tuple[RunnerInfo, ...] = (
    RunnerInfo(
        name="student",
        module="pyinspect.runners.student",
        factory="StudentRunner",
        replaces=("onnxruntime", "openvino"),
        auto=True,
        summary="students of the paper's family (conv widths <= 64) on gray frames, conv1-4 shared",
    ),
    RunnerInfo(
        name="openvino-native",
        module="pyinspect.runners.openvino_native",
        factory="OpenVinoFrameRunner",
        replaces=("openvino",),
        auto=False,
        summary="tile -> OpenVINO -> vote in one C++ call (pyinspect._fastcpu, needs OpenVINO)",
    ),
)

#: Values of ``Inspector(runner=...)`` and the CLI's ``--runner``.
RUNNER_CHOICES: tuple[str, ...] = ("auto", "backend", *(r.name for r in RUNNERS))


def runner_info(name: str) -> RunnerInfo:
    """The table row of runner ``name`` (an ``InputError`` listing the choices otherwise)."""
    for info in RUNNERS:
        if info.name == name:
            return info
    hint = suggest(str(name), RUNNER_CHOICES)
    msg = f"runner must be one of {list(RUNNER_CHOICES)}, got {name!r}.{hint}"
    raise InputError(msg)


#: Values of ``Inspector(precision=...)`` and the CLI's ``--precision``: ``auto`` is the lowest
#: precision the CPU's student kernels have, each lower one behind the verdict-parity guard.
PRECISION_CHOICES: tuple[str, ...] = ("f32", "bf16", "auto")


def precision_choice(value: Any) -> str:
    """``value`` checked as a precision choice (an ``InputError`` listing the choices)."""
    if not isinstance(value, str) or value not in PRECISION_CHOICES:
        got = repr(value) if isinstance(value, str) else type(value).__name__
        hint = suggest(value, PRECISION_CHOICES) if isinstance(value, str) else ""
        msg = f"precision must be one of {list(PRECISION_CHOICES)}, got {got}.{hint}"
        raise InputError(msg)
    return value


def runner_choice(value: Any) -> str:
    """``value`` checked as a runner choice (a non-string is named as such)."""
    if not isinstance(value, str):
        msg = f"runner must be one of {list(RUNNER_CHOICES)}, got {type(value).__name__}"
        raise InputError(msg)
    if value not in RUNNER_CHOICES:
        runner_info(value)  # raises with the suggestion
    return value
