"""pyinspect: real-time visual inspection of textured surfaces (DAGM 2007).

``pyinspect.Inspector("models/student.onnx").run(img)`` tiles a frame into patches, classifies
them with a backend (ONNX Runtime by default) and votes a verdict. Names are imported lazily so
``import pyinspect.spec`` (used by training/export) does not load the C++ core or a backend.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from pyinspect import errors

# The error classes, importable as ``pyinspect.InputError`` and the like.
BackendError = errors.BackendError
BackendUnavailableError = errors.BackendUnavailableError
InputError = errors.InputError
InputTypeError = errors.InputTypeError
ModelFileError = errors.ModelFileError
PyInspectError = errors.PyInspectError
SpecError = errors.SpecError

try:
    __version__ = version("pyinspect")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

if TYPE_CHECKING:
    from pyinspect.inspector import Inspector
    from pyinspect.result import InspectionResult, Timings
    from pyinspect.spec import ModelSpec

_LAZY = {
    "Inspector": "pyinspect.inspector",
    "InspectionResult": "pyinspect.result",
    "Timings": "pyinspect.result",
    "ModelSpec": "pyinspect.spec",
}

__all__ = [
    "BackendError",
    "BackendUnavailableError",
    "InputError",
    "InputTypeError",
    "InspectionResult",
    "Inspector",
    "ModelFileError",
    "ModelSpec",
    "PyInspectError",
    "SpecError",
    "Timings",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    msg = f"module 'pyinspect' has no attribute {name!r}"
    raise AttributeError(msg)
