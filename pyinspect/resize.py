"""Fit a frame smaller than the patch to it: the sidecar's ``resize`` policy.

Training and the runtime both call ``fit_to_patch``, so a small frame is made the same way at
both ends. Policies:

- ``"none"``: a frame smaller than the patch is an error (the default);
- ``"upscale"``: scale so the short side equals the patch (``cv2.INTER_LINEAR``), the aspect
  kept and the long side rounded half up;
- ``"reflect"``: pad the bottom and right edges up to the patch with ``cv2.BORDER_REFLECT_101``
  (mirror without repeating the edge pixel; padding longer than the frame reflects again).

A frame at least as large as the patch in both dimensions is returned as it is, under every
policy. The input is never modified; a fitted frame is a new C-contiguous array of the same dtype
and channel count. Patch boxes on a fitted frame are in the fitted frame's pixels.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

from pyinspect.errors import InputError, InputTypeError, check_choice, check_int

__all__ = ["RESIZE_POLICIES", "ResizePolicy", "fit_to_patch", "resized_shape"]

ResizePolicy = Literal["none", "upscale", "reflect"]
RESIZE_POLICIES: tuple[str, ...] = ("none", "upscale", "reflect")


def resized_shape(height: int, width: int, patch: int, policy: str) -> tuple[int, int]:
    """``(H, W)`` of an H×W frame after ``fit_to_patch`` (the same shape when it fits already).
    ``"none"`` with a frame smaller than the patch raises ``InputError``."""
    check_int("height", height, 0)
    check_int("width", width, 0)
    check_int("patch", patch, 1)
    check_choice("resize policy", policy, RESIZE_POLICIES, InputError)
    if height >= patch and width >= patch:
        return height, width
    if policy == "none":
        msg = (
            f"frame of {height}x{width} (HxW) is smaller than the {patch}x{patch} patch"
            " (resize policy 'none'; 'upscale' or 'reflect' fit such frames)"
        )
        raise InputError(msg)
    if height < 1 or width < 1:
        msg = f"frame of {height}x{width} (HxW) is empty; there is nothing to resize"
        raise InputError(msg)
    if policy == "reflect":
        return max(height, patch), max(width, patch)
    short, long = min(height, width), max(height, width)
    scaled = (2 * long * patch + short) // (2 * short)  # long * patch / short, half up, exact
    return (patch, scaled) if height == short else (scaled, patch)


def fit_to_patch(frame: np.ndarray, patch: int, policy: str) -> np.ndarray:
    """``frame`` (H×W or H×W×C, any dtype OpenCV resizes) fitted to ``patch`` by ``policy``; see
    the module docstring. Returns ``frame`` itself when it is large enough."""
    if not isinstance(frame, np.ndarray):
        msg = f"frame must be a numpy array, got {type(frame).__name__}"
        raise InputTypeError(msg)
    if frame.ndim not in (2, 3):
        msg = f"frame must be H×W or H×W×C, got shape {frame.shape}"
        raise InputError(msg)
    h, w = frame.shape[0], frame.shape[1]
    out_h, out_w = resized_shape(h, w, patch, policy)
    if (out_h, out_w) == (h, w):
        return frame
    src = np.ascontiguousarray(frame)  # OpenCV reads neither negative nor odd strides
    if policy == "reflect":
        fitted = cv2.copyMakeBorder(src, 0, out_h - h, 0, out_w - w, cv2.BORDER_REFLECT_101)
    else:
        fitted = cv2.resize(src, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
    if frame.ndim == 3 and fitted.ndim == 2:  # OpenCV drops a single channel axis
        fitted = fitted[:, :, None]
    return np.ascontiguousarray(fitted)
