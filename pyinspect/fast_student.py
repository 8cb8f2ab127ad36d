"""Deprecated import path (one release): the direct student runner is
``pyinspect.runners.student``; ``FastStudentRunner`` is its ``StudentRunner``."""

from __future__ import annotations

import warnings
from typing import Any

from pyinspect.result import InspectionResult
from pyinspect.runners.student import (
    VERIFY_TOLERANCE,
    WIDTHS,
    NotAStudentError,
    StudentGraph,
    StudentRunner,
    read_student,
)

__all__ = [
    "VERIFY_TOLERANCE",
    "WIDTHS",
    "FastStudentRunner",
    "NotAStudentError",
    "StudentGraph",
    "extract_student",
]

warnings.warn(
    "pyinspect.fast_student is deprecated; use pyinspect.runners.student (StudentRunner)",
    DeprecationWarning,
    stacklevel=2,
)

extract_student = read_student


class FastStudentRunner(StudentRunner):
    """``StudentRunner`` with the old ``run(frame, threshold=...)`` signature."""

    def __init__(self, *args: Any, threshold: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.threshold = threshold

    def run(self, frame: Any, *args: Any, threshold: float | None = None) -> InspectionResult:  # type: ignore[override]
        if args:  # the FrameRunner call: (image, boxes, threshold)
            return super().run(frame, *args)
        return self.inspect(frame, threshold=self.threshold if threshold is None else threshold)
