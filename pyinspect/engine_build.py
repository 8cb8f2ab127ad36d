"""Deprecated import path (one release): the TensorRT plan builder is pyinspect.build.tensorrt."""

from __future__ import annotations

import warnings

from pyinspect.build.tensorrt import *  # noqa: F403
from pyinspect.build.tensorrt import __all__ as __all__

warnings.warn(
    "pyinspect.engine_build is deprecated; use pyinspect.build.tensorrt",
    DeprecationWarning,
    stacklevel=2,
)
