"""Typed surface of the optional C++ module ``pyinspect._fastcpu``: the whole-frame OpenVINO
runner (built when CMake finds OpenVINO; see docs/fast_cpu.md). Use it through
``pyinspect.runners.openvino_native``, which checks the OpenVINO release and words the errors."""

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

def build_version() -> str:
    """OpenVINO release this module was compiled against, e.g. '2026.4.1'."""

def runtime_version() -> str:
    """Build number of the libopenvino actually loaded."""

class FrameRunner:
    """Tile -> OpenVINO infer -> vote for frames of one size; GIL released in ``run``."""

    def __init__(
        self,
        model_path: str,
        input_name: str,
        output_name: str,
        channels: int,
        patch: int,
        height: int,
        width: int,
        rows: int,
        cols: int,
        mean: Sequence[float],
        std: Sequence[float],
        float16_input: bool,
        precision: str,
        threads: int,
        tile_threads: int,
        class_texture: Sequence[int],
        class_defective: Sequence[bool],
        is_logits: bool,
    ) -> None: ...
    def run(self, frame: npt.ArrayLike, threshold: float = -1.0) -> dict[str, Any]:
        """Vote dict (as ``_core.vote``) plus 'tile_ms', 'infer_ms', 'vote_ms', 'total_ms'."""
    @property
    def boxes(self) -> npt.NDArray[np.int32]: ...
    def logits(self) -> npt.NDArray[np.float32]: ...
    @property
    def precision(self) -> str: ...
    @property
    def threads(self) -> int: ...
