"""Patch grid and tiler: the only place frames become network input.

The geometry (``patch_grid``) is the same C++ function at training-time evaluation, export and run
time, so the three can never disagree. ``tile_into`` reads the frame in place (any strides, no
copy) and writes normalised patches straight into a caller-owned buffer, e.g. a backend's input
buffer. These wrappers check the arguments first so errors name the problem; the C++ core checks
again, so a direct ``_core`` call cannot crash either.

Normalisation is ``v * scale[c] + offset[c]`` in float32 with ``scale = 1 / (M std)`` and
``offset = -mean / std`` (rounded from float64), i.e. ``(v / M - mean) / std`` to within 1e-6
for std >= 0.1, where ``M = 2^bits - 1``: 255 for a uint8 frame, 1023 / 4095 / 65535 for a
uint16 mono frame of ``bit_depth`` 10 / 12 / 16 (which the caller must give: the dtype does not
say how many bits a camera fills). uint16 values above ``M`` are not clipped (they come out
above ``(1 - mean) / std``). Channel rules: gray is replicated to 3 channels; BGR(A) gives RGB;
BGR(A) to one channel is luma ``0.299 R + 0.587 G + 0.114 B``. float16 output is
round-to-nearest-even.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from pyinspect import _core
from pyinspect.errors import InputError, InputTypeError
from pyinspect.frames import BIT_DEPTHS, check_frame, frame_bit_depth

__all__ = ["Tiler", "patch_grid", "tile", "tile_into"]

_OUT_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))
_INT32 = np.dtype(np.int32)

MeanStd = float | Sequence[float] | npt.NDArray[np.floating[Any]]


_INT32_MAX = 2**31 - 1


def _as_int(name: str, value: object, minimum: int, maximum: int = _INT32_MAX) -> int:
    """``value`` as a Python int in [minimum, maximum]; the core stores geometry as int32, so a
    larger value is an ``InputError`` here rather than pybind11's bare ``TypeError``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        msg = f"{name} must be an int, got {type(value).__name__}"
        raise InputTypeError(msg)
    if value < minimum:
        msg = f"{name} must be >= {minimum}, got {value}"
        raise InputError(msg)
    if value > maximum:
        msg = f"{name} must be <= {maximum}, got {value}"
        raise InputError(msg)
    return operator.index(value)


@functools.lru_cache(maxsize=64)
def _grid(height: int, width: int, patch: int, rows: int, cols: int) -> npt.NDArray[np.int32]:
    try:
        boxes = _core.patch_grid(height, width, patch, rows, cols)
    except ValueError as exc:
        msg = f"patch grid for a {height}x{width} (HxW) frame: {exc}"
        raise InputError(msg) from exc
    boxes.flags.writeable = False  # shared by every caller through the cache
    return boxes


def patch_grid(
    height: int, width: int, patch: int = 224, rows: int | None = None, cols: int | None = None
) -> npt.NDArray[np.int32]:
    """Boxes ``[N, 4]`` int32 ``(x, y, w, h)``, row-major, of a grid that covers the frame.

    Per axis, ``n`` patches (the smallest count that covers it unless ``rows``/``cols`` say
    otherwise) start at ``round_half_up(i * (L - P) / (n - 1))``: first at 0, last flush with the
    border, overlaps differing by at most 1 px (512 -> 0, 144, 288). Patches are never resized, so
    a frame smaller than the patch is an ``InputError``. The array is cached and read-only.
    """
    h = _as_int("height", height, 0)
    w = _as_int("width", width, 0)
    p = _as_int("patch", patch, 1)
    r = 0 if rows is None else _as_int("rows", rows, 1)
    c = 0 if cols is None else _as_int("cols", cols, 1)
    if h < p or w < p:
        msg = f"frame of {h}x{w} (HxW) is smaller than the {p}x{p} patch (never resized)"
        raise InputError(msg)
    return _grid(h, w, p, r, c)


def _check_boxes(boxes: object) -> npt.NDArray[np.int32]:
    if not (
        type(boxes) is np.ndarray and boxes.dtype == _INT32 and boxes.flags.c_contiguous
    ):  # fast path: patch_grid's output needs no conversion
        try:
            arr = np.asarray(boxes)
        except (TypeError, ValueError) as exc:
            msg = f"boxes must be an int array of shape (N, 4): {exc}"
            raise InputError(msg) from exc
        # int32 conversion would truncate 1.9 -> 1 and wrap 2**32 -> 0: a wrong crop, no error
        if arr.size and arr.dtype.kind not in "iu":
            msg = f"boxes must be an int array of shape (N, 4), got dtype {arr.dtype}"
            raise InputError(msg)
        if arr.size and (arr.min() < -_INT32_MAX - 1 or arr.max() > _INT32_MAX):
            msg = f"boxes must fit in int32, got values from {arr.min()} to {arr.max()}"
            raise InputError(msg)
        boxes = np.ascontiguousarray(arr, dtype=np.int32)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        msg = f"boxes must have shape (N, 4) of (x, y, w, h), got {boxes.shape}"
        raise InputError(msg)
    return boxes


def _check_out(out: object, boxes: npt.NDArray[np.int32]) -> np.ndarray:
    if not isinstance(out, np.ndarray):
        msg = f"out must be a NumPy array, got {type(out).__name__}"
        raise InputTypeError(msg)
    if out.dtype not in _OUT_DTYPES:
        msg = f"out must be float32 or float16, got {out.dtype}"
        raise InputError(msg)
    n = boxes.shape[0]
    p = int(boxes[0, 2]) if n else (out.shape[-1] if out.ndim == 4 else "P")
    if out.ndim != 4 or out.shape[0] != n or out.shape[1] not in (1, 3) or out.shape[2:] != (p, p):
        msg = f"out must have shape ({n}, 1 or 3, {p}, {p}) (N, C_out, P, P), got {out.shape}"
        raise InputError(msg)
    if not out.flags.writeable:
        msg = "out is not writable"
        raise InputError(msg)
    if not out.flags.c_contiguous:
        msg = f"out is not C-contiguous (strides {out.strides})"
        raise InputError(msg)
    return out


# id(tuple) -> (the tuple, its checked values): the entry keeps the tuple alive so its id cannot
# be reused; keyed by identity, not equality, because (0.0,) == (-0.0,) but the zero's sign
# reaches the output.
_CHANNEL_VALUES: dict[tuple[int, str, int], tuple[object, tuple[float, ...]]] = {}


def _per_channel(name: str, value: MeanStd, channels: int) -> tuple[float, ...]:
    if type(value) is tuple:  # the per-frame case: checked once per tuple object
        hit = _CHANNEL_VALUES.get((id(value), name, channels))
        if hit is not None and hit[0] is value:
            return hit[1]
        checked = _check_channel_values(name, value, channels)
        if len(_CHANNEL_VALUES) >= 64:
            _CHANNEL_VALUES.clear()
        _CHANNEL_VALUES[(id(value), name, channels)] = (value, checked)
        return checked
    if isinstance(value, int | float | np.number):
        return _check_channel_values(name, (value,) * channels, channels)
    if isinstance(value, str | bytes):  # iterable, but "123" is not the numbers (1, 2, 3)
        msg = f"{name} must be a number or a sequence of {channels} numbers, got {value!r}"
        raise InputError(msg)
    return _check_channel_values(name, value, channels)


def _check_channel_values(name: str, value: object, channels: int) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in value)  # type: ignore[attr-defined]
    except (TypeError, ValueError) as exc:
        msg = f"{name} must be a number or a sequence of {channels} numbers: {exc}"
        raise InputError(msg) from exc
    if len(values) != channels:
        msg = f"{name} needs {channels} values (one per output channel), got {len(values)}"
        raise InputError(msg)
    if not all(math.isfinite(v) for v in values):
        msg = f"{name} must be finite, got {values}"
        raise InputError(msg)
    if name == "std" and 0.0 in values:
        msg = f"std must be non-zero, got {values}"
        raise InputError(msg)
    return values


def tile_into(
    frame: npt.ArrayLike,
    out: np.ndarray,
    boxes: npt.ArrayLike,
    mean: MeanStd,
    std: MeanStd,
    threads: int = 0,
    bit_depth: int | None = None,
) -> None:
    """Write every box of ``frame`` into ``out`` [N, C_out, P, P] in one pass, in place.

    ``frame`` is uint8 H×W or H×W×C (C = 1, 3 BGR, 4 BGRA), or uint16 H×W / H×W×1 with
    ``bit_depth`` 10, 12 or 16, any strides, read without a copy. ``out`` must be a writable
    C-contiguous float32/float16 array (e.g. a backend's input buffer); it is filled in place
    (HOLDS THE RESULT AFTERWARDS). Boxes (x, y, w, h) must be P×P and inside the frame.
    ``mean``/``std`` have one value per output channel (or one for all).
    ``threads``: 0 = auto (2 when the work pays for it).
    """
    f = check_frame(frame)
    max_value = float(2 ** frame_bit_depth(f, bit_depth) - 1)
    b = _check_boxes(boxes)
    o = _check_out(out, b)
    c_out = o.shape[1]
    m = _per_channel("mean", mean, c_out)
    s = _per_channel("std", std, c_out)
    t = _as_int("threads", threads, 0)
    try:
        _core.tile_into(f, o, b, m, s, t, max_value)
    except ValueError as exc:
        msg = str(exc)
        raise InputError(msg) from exc


class Tiler:
    """``tile_into`` for frames already checked by ``pyinspect.frames.check_frame``, into buffers
    the caller owns, with normalisation fixed once: the Inspector's per-frame call, which then
    validates nothing twice (the C++ core still bounds-checks every box).

    ``channels``: the output channel count (the model's input channels). ``bit_depth``: the
    frames' bits per pixel (the model's ``input.bit_depth``): 8 takes uint8 frames, 10/12/16
    uint16 mono ones; the core refuses the other dtype rather than mis-scale it.
    """

    __slots__ = ("bit_depth", "channels", "max_value", "mean", "std", "threads")

    def __init__(
        self, mean: MeanStd, std: MeanStd, channels: int, threads: int = 0, bit_depth: int = 8
    ) -> None:
        self.channels = _as_int("channels", channels, 1, 3)
        self.mean = _per_channel("mean", mean, self.channels)
        self.std = _per_channel("std", std, self.channels)
        self.threads = _as_int("threads", threads, 0)
        self.bit_depth = _as_int("bit_depth", bit_depth, 8, 16)
        if self.bit_depth not in BIT_DEPTHS:
            msg = f"bit_depth must be one of {list(BIT_DEPTHS)}, got {bit_depth}"
            raise InputError(msg)
        self.max_value = float(2**self.bit_depth - 1)

    def __call__(self, frame: np.ndarray, out: np.ndarray, boxes: npt.NDArray[np.int32]) -> None:
        """Fill ``out`` [len(boxes), channels, P, P] from ``frame`` (a checked array of the
        tiler's bit depth)."""
        try:
            _core.tile_into(frame, out, boxes, self.mean, self.std, self.threads, self.max_value)
        except ValueError as exc:
            msg = str(exc)
            raise InputError(msg) from exc


def tile(
    frame: npt.ArrayLike,
    *,
    patch: int = 224,
    rows: int | None = None,
    cols: int | None = None,
    channels: int = 3,
    dtype: npt.DTypeLike = np.float32,
    mean: MeanStd = 0.0,
    std: MeanStd = 1.0,
    threads: int = 0,
    bit_depth: int | None = None,
) -> tuple[np.ndarray, npt.NDArray[np.int32]]:
    """Cut ``frame`` into the covering grid of ``patch``-sized patches; returns (patches, boxes).

    Allocates the output; in a per-frame loop prefer ``tile_into`` with a reused buffer.
    ``mean``/``std`` take one value per output channel or a single value for all (defaults
    0 and 1 leave the values at v / 255, or v / (2^bit_depth - 1) for a uint16 frame, whose
    ``bit_depth`` must be given).
    """
    f = check_frame(frame)
    frame_bit_depth(f, bit_depth)  # before anything is allocated
    if not (isinstance(channels, int | np.integer) and not isinstance(channels, bool)) or (
        channels not in (1, 3)
    ):
        msg = f"channels must be 1 or 3, got {channels!r}"
        raise InputError(msg)
    try:
        out_dtype = np.dtype(dtype)
    except TypeError as exc:
        msg = f"dtype must be float32 or float16, got {dtype!r}"
        raise InputTypeError(msg) from exc
    if out_dtype not in _OUT_DTYPES:
        msg = f"dtype must be float32 or float16, got {out_dtype}"
        raise InputError(msg)
    boxes = patch_grid(f.shape[0], f.shape[1], patch, rows, cols)
    out = np.empty((boxes.shape[0], channels, patch, patch), dtype=out_dtype)
    tile_into(f, out, boxes, mean, std, threads, bit_depth)
    return out, boxes
