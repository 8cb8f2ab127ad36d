"""Patch decisions -> image decision (paper §4), a thin wrapper over the C++ voter.

Rules (the same as ``cpp/voting.hpp``): each patch's class is its argmax (ties: the lower class id);
its texture is that class's texture; the image texture is the majority texture, and a tie goes to
the tied texture with the larger summed softmax probability (over its classes and all patches),
then to the lower texture id. The image is defective when any patch is: with ``threshold=None`` a
patch is defective when its argmax class is a defective class, with a threshold in [0, 1] when its
summed defective-class probability is >= threshold. Softmax is the stable one (max subtracted).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from pyinspect import _core
from pyinspect.errors import InputError, InputTypeError

__all__ = ["VoteResult", "check_threshold", "vote"]

_FLOAT32 = np.dtype(np.float32)
_INT32 = np.dtype(np.int32)
_BOOL = np.dtype(np.bool_)
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


@dataclass(frozen=True)
class VoteResult:
    """Per-patch decisions and the image verdict."""

    patch_class: npt.NDArray[np.int32]  # argmax class per patch
    patch_score: npt.NDArray[np.float32]  # probability of that class
    patch_defect_prob: npt.NDArray[np.float32]  # summed probability of the defective classes
    patch_defective: npt.NDArray[np.bool_]
    texture: int
    defective: bool
    texture_votes: npt.NDArray[np.int32]  # patches per texture id


# id(tuple) -> (the tuple, its array): the entry keeps the tuple alive, so its id cannot be reused
# while cached; per-frame calls with the same class-table tuple skip conversion and hashing.
_TABLES: dict[tuple[int, str], tuple[object, np.ndarray]] = {}


def _table(values: object, dtype: np.dtype, name: str) -> np.ndarray:
    if type(values) is np.ndarray and values.dtype == dtype and values.flags.c_contiguous:
        return values
    if type(values) is not tuple:
        return _convert_table(values, dtype, name)
    hit = _TABLES.get((id(values), name))
    if hit is not None and hit[0] is values:
        return hit[1]
    table = _convert_table(values, dtype, name)
    table.flags.writeable = False
    if len(_TABLES) >= 64:
        _TABLES.clear()
    _TABLES[(id(values), name)] = (values, table)
    return table


def _convert_table(values: object, dtype: np.dtype, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        msg = f"{name} must be 1-D (one entry per class), got shape {arr.shape}"
        raise InputError(msg)
    if dtype == _BOOL and arr.dtype != _BOOL:
        msg = f"{name} must be bool, got {arr.dtype}"
        raise InputError(msg)
    if dtype == _INT32 and arr.dtype.kind not in "iu" and arr.size:
        msg = f"{name} must be integer texture ids, got {arr.dtype}"
        raise InputError(msg)
    if dtype == _INT32 and arr.size and (arr.min() < _INT32_MIN or arr.max() > _INT32_MAX):
        # the cast below would wrap silently (2**32 -> 0): a wrong texture, not an error
        msg = f"{name} has texture ids outside int32: min {arr.min()}, max {arr.max()}"
        raise InputError(msg)
    return np.ascontiguousarray(arr, dtype=dtype)


def _as_float32(scores: object) -> np.ndarray:
    """Real-valued scores as C-contiguous float32. A value beyond float32 becomes inf, which the
    core then reports by patch and class (so the cast's overflow warning is not raised here)."""
    try:
        arr = np.asarray(scores)
    except (TypeError, ValueError) as exc:
        msg = f"scores must be a float array of shape (N, K): {exc}"
        raise InputError(msg) from exc
    if arr.dtype.kind not in "fiub":  # complex would lose its imaginary part; str, object, ...
        msg = f"scores must be a float array of shape (N, K), got dtype {arr.dtype}"
        raise InputError(msg)
    with np.errstate(over="ignore"):
        return np.ascontiguousarray(arr, dtype=np.float32)


def check_threshold(threshold: object) -> float | None:
    """The defect rule: ``None`` (argmax class) or a number in [0, 1], as a float."""
    if threshold is None:
        return None
    if isinstance(threshold, bool) or not isinstance(threshold, int | float | np.number):
        msg = f"threshold must be a number in [0, 1] or None, got {type(threshold).__name__}"
        raise InputTypeError(msg)
    thr = float(threshold)
    if not 0.0 <= thr <= 1.0:  # also rejects NaN
        msg = f"threshold must be in [0, 1] or None (argmax rule), got {threshold}"
        raise InputError(msg)
    return thr


def vote(
    scores: npt.ArrayLike,
    class_texture: Sequence[int] | npt.NDArray[np.integer],
    class_defective: Sequence[bool] | npt.NDArray[np.bool_],
    *,
    is_logits: bool = True,
    threshold: float | None = None,
) -> VoteResult:
    """Turn patch scores ``[N, K]`` into a ``VoteResult`` (rules in the module docstring).

    ``scores`` are logits (``is_logits``) or probabilities; ``class_texture[k]`` is the texture id
    of class k and ``class_defective[k]`` whether it is a defect class; both have length K.
    NaN/inf scores, N < 1 and a class table of the wrong length raise ``InputError``.
    """
    if not (type(scores) is np.ndarray and scores.dtype == _FLOAT32 and scores.flags.c_contiguous):
        scores = _as_float32(scores)
    if scores.ndim != 2 or scores.shape[0] < 1 or scores.shape[1] < 1:
        msg = f"scores must have shape (N, K) with N, K >= 1, got {scores.shape}"
        raise InputError(msg)
    texture = _table(class_texture, _INT32, "class_texture")
    defective = _table(class_defective, _BOOL, "class_defective")
    k = scores.shape[1]
    if texture.shape[0] != k or defective.shape[0] != k:
        msg = (
            f"scores have {k} classes but class_texture has {texture.shape[0]} and "
            f"class_defective {defective.shape[0]} entries"
        )
        raise InputError(msg)
    t = check_threshold(threshold)
    thr = -1.0 if t is None else t
    try:
        r: dict[str, Any] = _core.vote(scores, texture, defective, bool(is_logits), thr)
    except ValueError as exc:
        msg = str(exc)
        raise InputError(msg) from exc
    return VoteResult(
        patch_class=r["patch_class"],
        patch_score=r["patch_score"],
        patch_defect_prob=r["patch_defect_prob"],
        patch_defective=r["patch_defective"],
        texture=int(r["texture"]),
        defective=bool(r["defective"]),
        texture_votes=r["texture_votes"],
    )
