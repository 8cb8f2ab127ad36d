"""Frames in: load an image file or take an array, and check it once.

Every path (``Inspector.run``, ``run_batch``, ``stream``, the runners) takes its frame through
``as_frame``, so a frame is validated in one place and the error names the file when there is one.
A frame is uint8 H×W (gray) or H×W×C with C = 1 (gray), 3 (BGR, as OpenCV loads it) or 4 (BGRA),
or uint16 H×W / H×W×1 (a 10-, 12- or 16-bit mono camera), any strides; it is never copied here.
A uint16 frame runs only on a model whose sidecar declares that bit depth (``input.bit_depth``),
and a uint8 frame only on an 8-bit one: the dtype decides the scale ``x / (2^bits - 1)``, so a
mismatch would be mis-scaled silently, and is refused instead.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import TypeAlias

import cv2
import numpy as np

from pyinspect.errors import InputError, InputTypeError

__all__ = [
    "BIT_DEPTHS",
    "Frame",
    "as_frame",
    "check_frame",
    "frame_bit_depth",
    "is_gray",
    "load_frame",
    "path_problem",
    "with_source",
]

Frame: TypeAlias = "np.ndarray | str | os.PathLike[str]"

_UINT8 = np.dtype(np.uint8)
_UINT16 = np.dtype(np.uint16)
#: Bits per pixel a frame may have: 8 (uint8), 10, 12 or 16 (uint16, mono).
BIT_DEPTHS = (8, 10, 12, 16)


def path_problem(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` is not a regular file one can open, in words (``None`` when it is one):
    not found, a dangling symlink, a symlink loop, a folder, a device, no permission."""
    p = os.fspath(path)
    if p == "":
        return "path is empty ('')"
    try:
        st = os.stat(p)
    except FileNotFoundError:
        if os.path.islink(p):
            return f"is a dangling symlink to {os.readlink(p)!r}, which does not exist"
        return "not found"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a symlink loop (following its links never reaches a file)"
        return f"cannot be read: {exc.strerror or exc}"
    if stat.S_ISDIR(st.st_mode):
        return "is a folder"
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file (a device, a socket or a pipe)"
    return None


def load_frame(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as stored (``cv2.IMREAD_UNCHANGED``: gray stays 2-D, BGR(A) 3-D)."""
    p = Path(path)
    problem = path_problem(path)
    if problem is not None:
        shown = os.fspath(path)
        msg = f"{shown}: image {problem}" if shown else f"image {problem}"
        raise InputError(msg)
    image = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
    if image is None:
        try:  # OpenCV says nothing about why; an unreadable file is not an undecodable one
            with p.open("rb") as fh:
                fh.read(1)
        except OSError as exc:
            msg = f"{p}: cannot read image: {exc.strerror or exc}"
            raise InputError(msg) from exc
        msg = f"{p}: cannot decode image (empty, truncated or not a format OpenCV reads)"
        raise InputError(msg)
    return image


def check_frame(frame: object, bit_depth: int | None = None) -> np.ndarray:
    """``frame`` as an array of a shape and dtype the tiler reads, or an ``InputError`` saying
    why.

    ``bit_depth``: the bits per pixel the caller expects (a model's ``input.bit_depth``): 8
    takes uint8 only, 10/12/16 take uint16 mono only; ``None`` takes either. A buffer that is not
    an ndarray is viewed (not copied) through ``memoryview``.
    """
    if not isinstance(frame, np.ndarray):
        try:
            frame = np.asarray(memoryview(frame))  # type: ignore[arg-type]  # zero-copy view
        except TypeError:
            msg = f"frame must be a NumPy array (or a buffer), got {type(frame).__name__}"
            raise InputTypeError(msg) from None
    if frame.dtype != _UINT8:
        return _check_deep_frame(frame, bit_depth)
    if bit_depth is not None and bit_depth != 8:
        _check_bit_depth(bit_depth)
        msg = (
            f"frame must be uint16 (mono), got uint8: the model expects {bit_depth}-bit frames"
            f" (input.bit_depth {bit_depth} in its sidecar), and an 8-bit frame would be"
            f" mis-scaled (x / {2**bit_depth - 1} instead of x / 255); pass the camera's uint16"
            " frames, or use a model whose sidecar says input.bit_depth 8"
        )
        raise InputError(msg)
    if frame.ndim not in (2, 3):
        msg = f"frame must be 2-D (H, W) or 3-D (H, W, C), got {frame.ndim}-D shape {frame.shape}"
        raise InputError(msg)
    if frame.ndim == 3 and frame.shape[2] not in (1, 3, 4):
        msg = (
            f"frame must have 1 (gray), 3 (BGR) or 4 (BGRA) channels, got {frame.shape[2]} "
            f"(shape {frame.shape})"
        )
        raise InputError(msg)
    return frame


def _check_bit_depth(bit_depth: object) -> None:
    if (
        not isinstance(bit_depth, int | np.integer)
        or isinstance(bit_depth, bool)
        or (bit_depth not in BIT_DEPTHS)
    ):
        msg = f"bit_depth must be one of {list(BIT_DEPTHS)}, got {bit_depth!r}"
        raise InputError(msg)


def _check_deep_frame(frame: np.ndarray, bit_depth: int | None) -> np.ndarray:
    """A frame that is not uint8: uint16 mono where ``bit_depth`` allows it, else why not."""
    if frame.dtype != _UINT16:
        msg = f"frame must be uint8, got {frame.dtype} (convert it explicitly; tiling never copies)"
        raise InputError(msg)
    if bit_depth is not None:
        _check_bit_depth(bit_depth)
    if frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] != 1):
        msg = (
            "frame must be uint8 for colour or other shapes: a uint16 frame must be mono,"
            f" 2-D (H, W) or 3-D (H, W, 1), got uint16 of shape {frame.shape}"
        )
        raise InputError(msg)
    if bit_depth == 8:
        msg = (
            "frame must be uint8, got uint16: the model expects 8-bit frames (its sidecar's"
            " input.bit_depth is 8, the default); for a 10-, 12- or 16-bit camera declare"
            " input.bit_depth (10, 12 or 16) in the sidecar"
        )
        raise InputError(msg)
    return frame


def as_frame(frame: Frame, bit_depth: int | None = None) -> tuple[np.ndarray, str | None]:
    """(checked array, source path or ``None``) for an array or an image path (a 16-bit PNG
    or TIFF loads as uint16); ``bit_depth`` as for ``check_frame``."""
    if isinstance(frame, np.ndarray):
        return check_frame(frame, bit_depth), None
    if isinstance(frame, np.generic):  # np.uint8(3): a number, not an image
        msg = (
            f"frame must be a 2-D or 3-D uint8 array or an image path, got a NumPy"
            f" {frame.dtype} scalar (0-D) {frame!r}"
        )
        raise InputTypeError(msg)
    if isinstance(frame, str | os.PathLike):
        source = os.fspath(frame)
        try:
            return check_frame(load_frame(frame), bit_depth), source
        except InputError as exc:
            raise with_source(exc, source) from exc.__cause__
    msg = f"frame must be a NumPy uint8 array or an image path, got {type(frame).__name__}"
    raise InputTypeError(msg)


def is_gray(image: np.ndarray) -> bool:
    """One channel (H×W or H×W×1): what the direct student runner reads."""
    return image.ndim == 2 or image.shape[2] == 1


def frame_bit_depth(image: np.ndarray, bit_depth: object) -> int:
    """The bits per pixel a checked frame is normalised by (``x / (2^bits - 1)``), given the
    caller's ``bit_depth`` argument: 8 for uint8 (``None`` or 8); for uint16, the declared 10, 12
    or 16, which must be given (a 12-bit camera's frame scaled by 65535 would come out 16 times
    too dark). Any other pairing is an ``InputError`` naming both."""
    if bit_depth is not None:
        _check_bit_depth(bit_depth)
    if image.dtype == _UINT8:
        if bit_depth is None or bit_depth == 8:
            return 8
        msg = (
            f"bit_depth={bit_depth} needs a uint16 frame, got uint8 (8-bit pixels are"
            " normalised by 255: pass bit_depth=8 or leave it out)"
        )
        raise InputError(msg)
    if bit_depth is None:
        msg = (
            "frame must be uint8, got uint16 without a bit depth: pass bit_depth=10, 12 or 16"
            " (the camera's bits per pixel; pixels are normalised by 2^bits - 1)"
        )
        raise InputError(msg)
    if bit_depth == 8:
        msg = "bit_depth=8 needs a uint8 frame, got uint16 (pass bit_depth=10, 12 or 16)"
        raise InputError(msg)
    return int(bit_depth)  # type: ignore[call-overload]


def with_source(exc: InputError, source: str | None) -> InputError:
    """The same error with the image path in front, when the frame came from a file and the
    message does not already start with it."""
    if source is None or str(exc).startswith(source):
        return exc
    return type(exc)(f"{source}: {exc}")
