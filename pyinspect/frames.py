"""Frames in: load an image file or take an array, and check it once.

Every path (``Inspector.run``, ``run_batch``, ``stream``, the runners) takes its frame through
``as_frame``, so a frame is validated in one place and the error names the file when there is one.
A frame is uint8 H×W (gray) or H×W×C with C = 1 (gray), 3 (BGR, as OpenCV loads it) or 4 (BGRA),
any strides; it is never copied here.
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
    "Frame",
    "as_frame",
    "check_frame",
    "is_gray",
    "load_frame",
    "path_problem",
    "with_source",
]

Frame: TypeAlias = "np.ndarray | str | os.PathLike[str]"

_UINT8 = np.dtype(np.uint8)


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


def check_frame(frame: object) -> np.ndarray:
    """``frame`` as a uint8 array of a shape the tiler reads, or an ``InputError`` saying why.

    A buffer that is not an ndarray is viewed (not copied) through ``memoryview``.
    """
    if not isinstance(frame, np.ndarray):
        try:
            frame = np.asarray(memoryview(frame))  # type: ignore[arg-type]  # zero-copy view
        except TypeError:
            msg = f"frame must be a NumPy array (or a buffer), got {type(frame).__name__}"
            raise InputTypeError(msg) from None
    if frame.dtype != _UINT8:
        msg = f"frame must be uint8, got {frame.dtype} (convert it explicitly; tiling never copies)"
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


def as_frame(frame: Frame) -> tuple[np.ndarray, str | None]:
    """(checked array, source path or ``None``) for an array or an image path."""
    if isinstance(frame, np.ndarray):
        return check_frame(frame), None
    if isinstance(frame, np.generic):  # np.uint8(3): a number, not an image
        msg = (
            f"frame must be a 2-D or 3-D uint8 array or an image path, got a NumPy"
            f" {frame.dtype} scalar (0-D) {frame!r}"
        )
        raise InputTypeError(msg)
    if isinstance(frame, str | os.PathLike):
        source = os.fspath(frame)
        try:
            return check_frame(load_frame(frame)), source
        except InputError as exc:
            raise with_source(exc, source) from exc.__cause__
    msg = f"frame must be a NumPy uint8 array or an image path, got {type(frame).__name__}"
    raise InputTypeError(msg)


def is_gray(image: np.ndarray) -> bool:
    """One channel (H×W or H×W×1): what the direct student runner reads."""
    return image.ndim == 2 or image.shape[2] == 1


def with_source(exc: InputError, source: str | None) -> InputError:
    """The same error with the image path in front, when the frame came from a file and the
    message does not already start with it."""
    if source is None or str(exc).startswith(source):
        return exc
    return type(exc)(f"{source}: {exc}")
