"""Typed surface of the private C++ core (``pyinspect._core``).

The public Python layer (``pyinspect.tiling``, ``pyinspect.voting``, ``pyinspect.runners.student``)
validates arguments and words the errors; these functions re-check shapes once in C++ and raise
``ValueError``/``TypeError`` so a direct call can never crash the process.
"""

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__version__: str

def axis_positions(length: int, patch: int = 224, count: int = 0) -> list[int]:
    """Start offsets of ``count`` evenly spaced patches along one axis (0 = the smallest count
    that covers ``length``); first at 0, last flush with the border. 512, 224 -> [0, 144, 288]."""

def patch_grid(
    height: int, width: int, patch: int = 224, rows: int = 0, cols: int = 0
) -> npt.NDArray[np.int32]:
    """Boxes [N, 4] int32 of (x, y, w, h), row-major (top row first, left to right)."""

def tile_into(
    frame: npt.ArrayLike,
    out: npt.ArrayLike,
    boxes: npt.NDArray[np.int32],
    mean: Sequence[float],
    std: Sequence[float],
    threads: int = 1,
    max_value: float = 255.0,
) -> None:
    """Crop every box of ``frame`` (uint8, H×W or H×W×C with C in 1, 3 (BGR), 4 (BGRA); or uint16
    gray, H×W or H×W×1; any strides, never copied) into ``out`` (writable C-contiguous float32 or
    float16 [N, C_out, P, P]) in one pass, computing (x/max_value - mean[c]) / std[c].
    ``max_value``: 255 for uint8 (nothing else accepted), 2^bits - 1 in [256, 65535] for uint16;
    uint16 values above it are not clipped. Channel rule: gray -> C_out=3 replicates; BGR(A)
    -> C_out=3 writes RGB; BGR(A) -> C_out=1 uses luma 0.299 R + 0.587 G + 0.114 B. len(mean) ==
    len(std) == C_out. float16 is round-to-nearest-even. Releases the GIL."""

def vote(
    scores: npt.ArrayLike,
    class_texture: npt.NDArray[np.int32],
    class_defective: npt.NDArray[np.bool_],
    is_logits: bool = True,
    threshold: float = -1.0,
) -> dict[str, object]:
    """Patch scores [N, K] float32 (logits, or probabilities when is_logits is False) -> dict with
    'patch_class' int32[N], 'patch_score' float32[N] (probability of the argmax class),
    'patch_defect_prob' float32[N] (summed probability of the defective classes),
    'patch_defective' bool[N], 'texture' int, 'defective' bool, 'texture_votes' int32[T].
    Texture = majority over patches' textures; a tie goes to the tied texture with the larger
    summed softmax probability (over its classes, over all patches); then the lower id.
    threshold < 0: a patch is defective iff its argmax class is defective; threshold in [0, 1]:
    iff patch_defect_prob >= threshold. NaN/inf scores raise ValueError."""

def tile_kernel_isa() -> str:
    """CPU code path tile_into uses here: 'avx2+f16c' or 'baseline' (PYINSPECT_TILE_ISA=baseline
    in the environment forces the portable one)."""

def float_to_half(value: float) -> int:
    """Bits of the float16 nearest (ties to even) to float32(value); the tiler's rounding, for
    tests."""

def student_engine_supported() -> bool:
    """Whether the direct student engine runs here: an x86-64 build on a CPU with AVX2 and FMA (the
    engine's kernels need both). False on other architectures, where ``StudentRunner`` is absent."""

def student_kernel_isas() -> list[str]:
    """The student engine's kernel levels this CPU runs, lowest first: ['avx2', 'avx512f'],
    ['avx2'], or [] (no AVX2+FMA, or not an x86-64 build)."""

def student_kernel_precisions() -> list[str]:
    """The precisions the student engine runs on this CPU: ['f32', 'bf16'] (AVX512_BF16 and
    AVX512VL), ['f32'], or [] where ``student_kernel_isas()`` is empty."""

class StudentRunner:
    """The direct student engine plus the voter (x86-64 builds only; the constructor raises
    ``ValueError`` on a CPU without AVX2+FMA). Gray frames only, of the one dtype
    ``frame_dtype`` names; GIL released in ``run``."""

    def __init__(
        self,
        weights: dict[str, npt.NDArray[np.float32]],
        in_channels: int,
        input_scale: float,
        input_offset: float,
        pad_value: float,
        threads: int,
        class_texture: Sequence[int],
        class_defective: Sequence[bool],
        is_logits: bool,
        frame_dtype: str = "uint8",
        isa: str = "auto",
        precision: str = "f32",
    ) -> None:
        """``weights``: 'conv1_w' .. 'conv5_w' [C_out, C_in, 3, 3], 'conv1_b' .. 'conv5_b',
        'fc1_w' [hidden, C5 * 49], 'fc1_b', 'fc2_w' [classes, hidden], 'fc2_b'. The widths are
        the biases' lengths, 1 to 64 each; any hidden and class count. conv1 sees a pixel x as
        x * input_scale + input_offset and pad_value outside the patch; in_channels 3 means gray
        replicated (conv1 is summed). ``frame_dtype``: 'uint8' or 'uint16', the frames
        ``input_scale`` was computed for; ``run`` refuses the other with ``ValueError``. ``isa``:
        'auto' (the highest level of ``student_kernel_isas()``), 'avx2' or 'avx512f' (a level the
        CPU lacks: ``ValueError``). ``precision``: 'f32' (the reference) or 'bf16' (conv2-conv5
        and FC1 in bf16 with f32 sums; a CPU without it: ``ValueError``)."""
    def run(
        self, frame: npt.ArrayLike, boxes: npt.NDArray[np.int32], threshold: float = -1.0
    ) -> bytes:
        """Logits of the 224×224 ``boxes`` [N, 4] of a gray frame (H×W or H×W×1, any strides; uint8
        or uint16 as ``frame_dtype`` says), then the vote, returned as one record (native byte
        order): float64 tile_ms (0: the engine reads the frame itself), infer_ms, vote_ms, total_ms,
        layers_ms[5] (conv1..conv5), fc_ms; int32 N, T, texture, flags (1: defective, 2: the
        patches shared conv1-4, offsets multiples of 16); int32 patch_class[N], float32
        patch_score[N], float32 patch_defect_prob[N], int32 texture_votes[T], uint8
        patch_defective[N] (fields as in ``vote``). ``pyinspect.runners.student.decode_record``
        reads it. Not reentrant."""
    def logits(self) -> npt.NDArray[np.float32]:
        """A copy of the last run's logits [N, K]."""
    @property
    def threads(self) -> int: ...
    @property
    def isa(self) -> str:
        """The kernel level in use: 'avx2' or 'avx512f'."""
    @property
    def precision(self) -> str:
        """The precision in use: 'f32' or 'bf16'."""
