"""Synthetic DAGM: six texture models, each with its own defect type, written in the real layouts.

Every image is a pure function of ``(seed, texture, index, defective, version)``
(:func:`synth_image`), so a set can be regenerated bit for bit and any single image rebuilt
without the others. Four generator versions exist (:data:`VERSIONS`); a version's pixels
never change once a model was trained on it. Version 1 (the default) follows a few statistics
measured on real DAGM pixels for classes 1–3 (mean/std, grain, streak and cloud scales, defect
kind) and makes up classes 4–6 (:data:`TEXTURES` describes it). Version 2 is fitted to real DAGM
statistics for every class (texture spectrum, orientation, grey levels, local contrast; label
geometry from the development set; defect contrast against its surround): ``train data
compare`` finds it within the real images' own spread on every statistic (docs/data.md,
"Synthetic vs real DAGM"). Version 3 is version 2 with class 2's fibres drawn with the real
images' spread of along-fibre smoothness and tilt, which version 2 held fixed: a network trained
on version 2 took real class-2 images for another class. Version 4 is version 3 with class 4's
cracks drawn as the real images show them (long, even, reaching the borders; a larger hub).
Textures jitter per image and defects are partly low contrast, so the 12-way task is learnable
but not trivial.

numpy + OpenCV only: ``make demo`` runs this in the runtime venv (no torch, no scipy).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import math
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from pyinspect.errors import PyInspectError, check_int
from train.dagm import DagmError, Ellipse, draw_ellipse, format_dev_label

__all__ = ["SIZE", "TEXTURES", "VERSIONS", "TextureInfo", "synth_image", "synthesize"]

SIZE = 512
F32 = npt.NDArray[Any]  # float32 throughout; cv2's stubs do not carry dtypes, so not spelled
Rng = np.random.Generator


@dataclass(frozen=True)
class TextureInfo:
    """What a version-1 synthetic class looks like, for the docs and the contact sheet."""

    name: str
    defect: str
    mean: float
    std: float


TEXTURES: tuple[TextureInfo, ...] = (
    TextureInfo("fine grain + ring moire", "wiped smooth patch", 72.0, 27.0),
    TextureInfo("vertical fibre streaks", "thin dark scratch", 100.0, 56.0),
    TextureInfo("cloudy low-pass + fine grid", "bright speckle cluster", 132.0, 32.0),
    TextureInfo("blobs", "dark stain", 112.0, 30.0),
    TextureInfo("crossing gratings", "local scale change", 150.0, 24.0),
    TextureInfo("coarse isotropic grain", "bright elongated blur", 168.0, 16.0),
)


# ---------------------------------------------------------------------------------------------
# building blocks


def _noise(rng: Rng, h: int, w: int | None = None) -> F32:
    return rng.standard_normal((h, h if w is None else w), dtype=np.float32)


def _standardize(x: F32) -> F32:
    mean, std = cv2.meanStdDev(x)
    return (x - np.float32(mean[0, 0])) / np.float32(max(std[0, 0], 1e-6))


def _oriented_kernel(sigma_along: float, sigma_across: float, angle: float, size: int) -> F32:
    """Normalised anisotropic Gaussian, long axis at ``angle`` (radians from +x toward +y)."""
    r = np.arange(size, dtype=np.float32) - (size - 1) / 2
    yy, xx = np.meshgrid(r, r, indexing="ij")
    c, s = math.cos(angle), math.sin(angle)
    u = xx * c + yy * s
    v = -xx * s + yy * c
    k = np.exp(-0.5 * ((u / sigma_along) ** 2 + (v / sigma_across) ** 2)).astype(np.float32)
    return k / k.sum()


def _lowpass(
    rng: Rng, size: int, factor: int, sigma_along: float, sigma_across: float, angle: float
) -> F32:
    """Smooth random field: oriented blur of noise at ``1/factor`` resolution, cubic upsampled."""
    n = size // factor + 8
    small = _noise(rng, n)
    ks = int(6 * max(sigma_along, sigma_across)) | 1
    small = cv2.filter2D(
        small,
        -1,
        _oriented_kernel(sigma_along, sigma_across, angle, ks),
        borderType=cv2.BORDER_REFLECT,
    )
    big = cv2.resize(small, (n * factor, n * factor), interpolation=cv2.INTER_CUBIC)
    o = 4 * factor
    return _standardize(np.ascontiguousarray(big[o : o + size, o : o + size]))


def _grid(size: int) -> tuple[F32, F32]:
    r = np.arange(size, dtype=np.float32)
    yy, xx = np.meshgrid(r, r, indexing="ij")
    return xx, yy


def _soft_ellipse(e: Ellipse, blur: float, size: int = SIZE) -> F32:
    """Filled ellipse with a Gaussian-blurred edge, values 0..1."""
    canvas = np.zeros((size, size), np.uint8)
    draw_ellipse(canvas, e)
    alpha: F32 = canvas.astype(np.float32) / 255
    if blur > 0:
        alpha = cv2.GaussianBlur(alpha, (0, 0), blur)
    return alpha


def _finish(field: F32, rng: Rng, mean: float, std: float) -> F32:
    """Standardised field → intensities with per-image brightness and contrast jitter."""
    m = mean * rng.uniform(0.94, 1.06)
    s = std * rng.uniform(0.92, 1.08)
    return field * np.float32(s) + np.float32(m)


def _to_uint8(x: F32) -> npt.NDArray[np.uint8]:
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


def _rounded(cx: float, cy: float, a: float, b: float, theta: float) -> Ellipse:
    """A label ellipse as the label file stores it: 2 decimals, θ in (-π/2, π/2]."""
    theta = (theta + math.pi / 2) % math.pi - math.pi / 2
    if theta <= -math.pi / 2 + 0.005:
        theta += math.pi
    return Ellipse(round(cx, 2), round(cy, 2), round(a, 2), round(b, 2), round(theta, 2))


def _centre(rng: Rng, margin: float) -> tuple[float, float]:
    return float(rng.uniform(margin, SIZE - margin)), float(rng.uniform(margin, SIZE - margin))


def _cover(e: Ellipse, rng: Rng, extra: float = 0.0) -> Ellipse:
    """A label ellipse covering defect ellipse ``e`` generously, as DAGM's labellers drew them.

    ``extra`` pads for a soft edge that reaches beyond ``e`` (about 2.5–3 blur sigmas).
    """
    grow = rng.uniform(1.2, 1.45)
    pad = rng.uniform(3.0, 7.0) + extra
    return _rounded(e.cx, e.cy, e.a * grow + pad, e.b * grow + pad, e.theta)


# ---------------------------------------------------------------------------------------------
# class 1: very fine broadband grain with concentric-ring moiré; defect = wiped smooth patch


def _class1(rng: Rng, defective: bool) -> tuple[F32, Ellipse | None]:
    info = TEXTURES[0]
    grain = _standardize(cv2.GaussianBlur(_noise(rng, SIZE), (0, 0), rng.uniform(0.55, 0.75)))
    xx, yy = _grid(SIZE)
    ang = rng.uniform(0, 2 * math.pi)
    dist = rng.uniform(150, 700)
    ox, oy = SIZE / 2 + dist * math.cos(ang), SIZE / 2 + dist * math.sin(ang)
    r = cv2.magnitude(xx - np.float32(ox), yy - np.float32(oy))
    period = rng.uniform(18, 34)
    ring = np.cos(r * np.float32(2 * math.pi / period) + np.float32(rng.uniform(0, 6.3)))
    field = _standardize(grain * (1 + 0.2 * ring) + np.float32(rng.uniform(0.15, 0.3)) * ring)
    img = _finish(field, rng, info.mean, info.std)
    if not defective:
        return img, None
    cx, cy = _centre(rng, 40)
    e = Ellipse(cx, cy, rng.uniform(14, 40), rng.uniform(9, 26), rng.uniform(-math.pi, math.pi))
    blur = rng.uniform(2.0, 5.0)
    alpha = _soft_ellipse(e, blur=blur) * np.float32(rng.uniform(0.6, 0.95))
    smooth = cv2.GaussianBlur(img, (0, 0), 10) + _noise(rng, SIZE) * np.float32(
        rng.uniform(3.0, 5.0)
    )
    return img * (1 - alpha) + smooth * alpha, _cover(e, rng, extra=2.5 * blur)


# ---------------------------------------------------------------------------------------------
# class 2: near-vertical fibre streaks; defect = thin dark scratch

FIBRE_TILT = 0.14  # the fibres run within this many rad of vertical
SCRATCH_ACROSS_FIBRES = 0.45  # the least angle (rad) between a scratch and the fibres


def _class2(rng: Rng, defective: bool) -> tuple[F32, Ellipse | None]:
    info = TEXTURES[1]
    angle = math.pi / 2 + rng.uniform(-FIBRE_TILT, FIBRE_TILT)
    kernel = _oriented_kernel(rng.uniform(3.0, 5.0), rng.uniform(0.45, 0.6), angle, 31)
    fibres = _standardize(cv2.filter2D(_noise(rng, SIZE), -1, kernel, borderType=cv2.BORDER_WRAP))
    bands = _lowpass(rng, SIZE, 8, 6.0, 0.6, angle)
    field = _standardize(fibres + np.float32(rng.uniform(0.25, 0.45)) * bands)
    img = _finish(field, rng, info.mean, info.std * 1.08)  # ×1.08: clipping at 0 eats some std
    if not defective:
        return img, None
    length = rng.uniform(45, 200)
    # At least SCRATCH_ACROSS_FIBRES rad off the fibres: a 2-3 px dark line along them is one
    # more dark fibre (a teacher trained on scratches in any direction missed 7 of 30, 5 of them
    # within 0.3 rad of the fibre axis; with scratches across the fibres it finds all 30).
    direction = angle + rng.uniform(SCRATCH_ACROSS_FIBRES, math.pi - SCRATCH_ACROSS_FIBRES)
    cx, cy = _centre(rng, 30 + length / 4)
    sag = rng.uniform(-0.12, 0.12) * length if rng.random() < 0.5 else 0.0
    t = np.linspace(-0.5, 0.5, 24)
    c, s = math.cos(direction), math.sin(direction)
    u, v = t * length, (1 - 4 * t**2) * sag
    pts = np.stack([cx + u * c - v * s, cy + u * s + v * c], axis=1)
    canvas = np.zeros((SIZE, SIZE), np.uint8)
    f = 16
    width = int(rng.integers(2, 4))
    cv2.polylines(canvas, [np.round(pts * f).astype(np.int32)], False, 255, width, cv2.LINE_AA, 4)
    line = cv2.GaussianBlur(canvas.astype(np.float32) / 255, (0, 0), 0.5)
    # A scratch pulls the fibres toward black rather than subtracting a fixed amount: on this
    # dark, high-contrast texture a subtraction is clipped away wherever a fibre is already dark
    # (a teacher misses 30 % of such subtracted scratches).
    depth = line * np.float32(rng.uniform(0.75, 0.95))
    img = img * (1 - depth) + np.float32(rng.uniform(0, 15)) * depth
    mid_v = sag / 2  # the bow's mean offset from the chord
    ex, ey = cx - mid_v * s, cy + mid_v * c
    # Half-width |sag| + margin (not |sag|/2): the chord's ends sit |sag|/2 off the ellipse's
    # centre line, where the ellipse is already narrowing.
    b = abs(sag) + rng.uniform(8, 13)
    label = _rounded(ex, ey, length / 2 * rng.uniform(1.1, 1.2) + 8, b, direction)
    return img, label


# ---------------------------------------------------------------------------------------------
# class 3: cloudy low-pass texture with a faint fine grid; defect = bright speckle cluster


def _class3(rng: Rng, defective: bool) -> tuple[F32, Ellipse | None]:
    info = TEXTURES[2]
    scale = rng.uniform(0.85, 1.15)
    angle = math.pi / 2 + rng.uniform(-0.3, 0.3)
    clouds = _lowpass(rng, SIZE, 4, 4.2 * scale, 1.9 * scale, angle)
    xx, yy = _grid(SIZE)
    p = rng.uniform(5.0, 7.0)
    w = np.float32(2 * math.pi / p)
    grid = np.cos(xx * w) + np.cos(yy * w)
    field = clouds + np.float32(rng.uniform(0.07, 0.12)) * grid + 0.12 * _noise(rng, SIZE)
    img = _finish(_standardize(field), rng, info.mean, info.std)
    if not defective:
        return img, None
    cx, cy = _centre(rng, 30)
    sx, sy = rng.uniform(4, 16), rng.uniform(3, 10)
    rot = rng.uniform(-math.pi, math.pi)
    n = int(rng.integers(4, 18))
    du, dv = rng.normal(0, 1, n).clip(-2, 2) * sx, rng.normal(0, 1, n).clip(-2, 2) * sy
    c, s = math.cos(rot), math.sin(rot)
    spots: F32 = np.zeros((SIZE, SIZE), np.float32)
    for u, v in zip(du, dv, strict=True):
        x, y = cx + u * c - v * s, cy + u * s + v * c
        radius = rng.uniform(0.8, 2.2)
        cv2.circle(
            spots,
            (round(x * 16), round(y * 16)),
            round(radius * 16),
            float(rng.uniform(0.5, 1.0)),
            -1,
            cv2.LINE_AA,
            4,
        )
    spots = cv2.GaussianBlur(spots, (0, 0), 0.7)
    img = img + spots * np.float32(rng.uniform(45, 110))
    extent = Ellipse(cx, cy, float(np.abs(du).max()) + 2.5, float(np.abs(dv).max()) + 2.5, rot)
    return img, _cover(extent, rng)


# ---------------------------------------------------------------------------------------------
# class 4: blobs; defect = dark stain


def _class4(rng: Rng, defective: bool) -> tuple[F32, Ellipse | None]:
    info = TEXTURES[3]
    scale = rng.uniform(0.85, 1.15)
    blobs = _lowpass(
        rng, SIZE, 8, 1.1 * scale, 1.1 * scale * rng.uniform(0.8, 1.0), rng.uniform(0, math.pi)
    )
    blobs = np.tanh(blobs * np.float32(rng.uniform(1.6, 2.4)))
    field = _standardize(blobs) + 0.35 * _standardize(
        cv2.GaussianBlur(_noise(rng, SIZE), (0, 0), 1)
    )
    img = _finish(_standardize(field), rng, info.mean, info.std)
    if not defective:
        return img, None
    cx, cy = _centre(rng, 45)
    e = Ellipse(cx, cy, rng.uniform(18, 45), rng.uniform(12, 32), rng.uniform(-math.pi, math.pi))
    blur = rng.uniform(4, 7)
    shape = _soft_ellipse(e, blur=blur)
    wobble = 1 + 0.35 * _lowpass(rng, SIZE, 16, 1.0, 1.0, 0.0)
    alpha = np.clip(shape * wobble, 0, 1) * np.float32(rng.uniform(0.75, 0.95))
    # A stain darkens and washes out the blobs under it; darker than the blobs' own dark lobes
    # (a 35-60 grey-level stain at half opacity hides among them: a teacher misses 47 %).
    flat = np.float32(info.mean) + (img - np.float32(info.mean)) * np.float32(0.3)
    img = img * (1 - alpha) + flat * alpha - alpha * np.float32(rng.uniform(65, 90))
    return img, _cover(e, rng, extra=2.5 * blur)


# ---------------------------------------------------------------------------------------------
# class 5: crossing gratings; defect = a local change of the grating's scale


def _class5(rng: Rng, defective: bool) -> tuple[F32, Ellipse | None]:
    info = TEXTURES[4]
    # Every texture draw comes before the defect's, so a defective image equals its good twin
    # (same generator state, defective=False) outside the defect; tests rely on that.
    base, half = rng.uniform(0, math.pi), rng.uniform(0.45, 0.7)
    waves = []
    for ang in (base - half, base + half):
        k = 2 * math.pi / rng.uniform(9.0, 14.0)
        waves.append(
            (
                np.float32(k * math.cos(ang)),
                np.float32(k * math.sin(ang)),
                np.float32(rng.uniform(0, 2 * math.pi)),
            )
        )
    rest = 0.6 * _noise(rng, SIZE) + 0.4 * _lowpass(rng, SIZE, 16, 2.0, 2.0, 0.0)
    mean = info.mean * rng.uniform(0.94, 1.06)
    std = info.std * rng.uniform(0.92, 1.08)
    xx, yy = _grid(SIZE)
    label = None
    if defective:
        cx, cy = _centre(rng, 45)
        e = Ellipse(
            cx, cy, rng.uniform(18, 40), rng.uniform(14, 32), rng.uniform(-math.pi, math.pi)
        )
        blur = rng.uniform(4, 7)
        bump = _soft_ellipse(e, blur=blur)
        delta = np.float32(rng.choice([-1, 1]) * rng.uniform(0.4, 0.6))
        # Magnify (or shrink) coordinates about the centre inside the bump: a local period change.
        factor = 1 + delta * bump
        xx = np.float32(cx) + (xx - np.float32(cx)) * factor
        yy = np.float32(cy) + (yy - np.float32(cy)) * factor
        label = _cover(e, rng, extra=3 * blur)
    field = rest
    for kx, ky, phase in waves:
        field = field + np.cos(xx * kx + yy * ky + phase)
    # Fixed scale (2 cosines of variance 1/2, noise 0.36, low-pass 0.16), not a per-image
    # standardisation, so the defect cannot change pixels outside it.
    return field * np.float32(std / math.sqrt(1.52)) + np.float32(mean), label


# ---------------------------------------------------------------------------------------------
# class 6: coarse isotropic grain; defect = bright elongated blur


def _class6(rng: Rng, defective: bool) -> tuple[F32, Ellipse | None]:
    info = TEXTURES[5]
    grain = _standardize(cv2.GaussianBlur(_noise(rng, SIZE), (0, 0), rng.uniform(1.3, 1.8)))
    shade = _lowpass(rng, SIZE, 32, 1.5, 1.5, 0.0)
    field = _standardize(grain + np.float32(rng.uniform(0.2, 0.4)) * shade)
    img = _finish(field, rng, info.mean, info.std)
    if not defective:
        return img, None
    cx, cy = _centre(rng, 45)
    along, across = rng.uniform(14, 45), rng.uniform(3, 7)
    rot = rng.uniform(-math.pi, math.pi)
    xx, yy = _grid(SIZE)
    c, s = np.float32(math.cos(rot)), np.float32(math.sin(rot))
    dx, dy = xx - np.float32(cx), yy - np.float32(cy)
    u, v = dx * c + dy * s, -dx * s + dy * c
    gauss = np.exp(-0.5 * ((u / np.float32(along)) ** 2 + (v / np.float32(across)) ** 2))
    alpha = np.maximum(gauss - np.float32(0.05), 0) / np.float32(0.95)  # support: 2.45 sigma
    blurred = cv2.GaussianBlur(img, (0, 0), 3)
    img = (
        img * (1 - 0.7 * alpha) + blurred * (0.7 * alpha) + alpha * np.float32(rng.uniform(35, 55))
    )
    return img, _cover(Ellipse(cx, cy, 2.1 * along, 2.1 * across, rot), rng)


_MODELS: tuple[Callable[[Rng, bool], tuple[F32, Ellipse | None]], ...] = (
    _class1,
    _class2,
    _class3,
    _class4,
    _class5,
    _class6,
)


# =============================================================================================
# version 2: every class fitted to real DAGM statistics (docs/data.md, "Synthetic vs real DAGM")
#
# A texture is a Gaussian random field shaped in the Fourier domain by a radial power profile
# and an angular gain, mapped pointwise to the real grey-level distribution, plus, where the
# real class has them, drawn structures (class 1's moiré rings, class 4's radial cracks). The
# tables below were fitted by iterating: generate, measure with ``train data compare``'s
# statistics, correct the table by the log ratio to the real pool.

#: The grey-level table's knots: standard-normal quantiles of the field.
GREY_KNOTS = np.linspace(-4.0, 4.0, 33)
_LUT_RANGE, _LUT_SIZE = 6.0, 4096
_TILE = 128  # the radial table's frequency unit: cycles per 128 px, as data compare measures


@dataclass(frozen=True)
class TextureLook:
    """A v2 texture: power spectrum shape, anisotropy, grey levels and per-image jitter."""

    radial_db: tuple[float, ...]  # power in dB at r = 0..63 cycles per 128 px (r > 63: last)
    aniso: tuple[float, ...]  # log amplitude: cos 2nφ, sin 2nφ for n = 1, 2, … (φ: wave vector)
    grey: tuple[float, ...]  # grey level at each GREY_KNOTS quantile of the field
    shift: float = 0.0  # per-image brightness jitter, ± grey levels
    gain: float = 0.0  # per-image contrast jitter, ± fraction


@functools.lru_cache(maxsize=32)
def _v2_filter(radial_db: tuple[float, ...], aniso: tuple[float, ...]) -> F32:
    """Amplitude filter on the 512×257 half spectrum, scaled so the field has unit variance."""
    fy = np.fft.fftfreq(SIZE)[:, None]
    fx = np.fft.rfftfreq(SIZE)[None, :]
    r = np.hypot(fx, fy) * _TILE
    db = np.interp(r, np.arange(len(radial_db)), np.asarray(radial_db))
    phi = np.arctan2(fy, fx)
    log_a = np.zeros_like(phi)
    for n in range(len(aniso) // 2):
        log_a += aniso[2 * n] * np.cos(2 * (n + 1) * phi) + aniso[2 * n + 1] * np.sin(
            2 * (n + 1) * phi
        )
    amp = 10 ** (db / 20) * np.exp(log_a)
    amp[0, 0] = 0.0
    weight = np.full(amp.shape, 2.0)
    weight[:, 0] = weight[:, -1] = 1.0
    # irfft2 of a spectrum with mean power amp²/6 per frequency: variance Σ w·amp²/6/N⁴
    var = float((weight * amp**2).sum()) / 6 / SIZE**4
    return (amp / math.sqrt(var)).astype(np.float32)


@functools.lru_cache(maxsize=32)
def _v2_lut(grey: tuple[float, ...]) -> F32:
    z = np.linspace(-_LUT_RANGE, _LUT_RANGE, _LUT_SIZE)
    return np.interp(z, GREY_KNOTS, np.asarray(grey)).astype(np.float32)


@functools.lru_cache(maxsize=32)
def _v2_row_power(radial_db: tuple[float, ...], aniso: tuple[float, ...]) -> F32:
    """The unit-variance filter's power per vertical frequency (row of the half spectrum),
    normalised to sum 1: what a vertical blur of the field keeps of its variance."""
    amp = _v2_filter(radial_db, aniso).astype(np.float64)
    weight = np.full(amp.shape, 2.0)
    weight[:, 0] = weight[:, -1] = 1.0
    rows = (weight * amp**2).sum(axis=1)
    return (rows / rows.sum()).astype(np.float32)


def _v2_field(rng: Rng, look: TextureLook, along_sigma: float = 0.0) -> F32:
    """A unit-variance field with the look's spectrum: every frequency at its amplitude with a
    random phase (the sum over 2^17 of them makes every pixel Gaussian; a fixed amplitude keeps
    the few broad-scale components, which set an image's shading, from varying in strength).

    ``along_sigma`` (px) blurs the field vertically, in the spectrum, still at unit variance."""
    amp = _v2_filter(look.radial_db, look.aniso)
    if along_sigma > 0:
        fy = np.fft.fftfreq(SIZE).astype(np.float32)
        keep = np.exp(-2 * (np.float32(math.pi * along_sigma) * fy) ** 2)
        var = float((_v2_row_power(look.radial_db, look.aniso) * keep**2).sum())
        amp = amp * (keep / np.float32(math.sqrt(var)))[:, None]
    u = rng.random((2, *amp.shape), dtype=np.float32) - np.float32(0.5)
    norm = amp * np.float32(math.sqrt(1 / 6)) / np.maximum(np.hypot(u[0], u[1]), np.float32(1e-6))
    spec = (u[0] * norm) + 1j * (u[1] * norm)
    return np.fft.irfft2(spec.astype(np.complex64), s=(SIZE, SIZE)).astype(np.float32)


def _v2_grey(rng: Rng, look: TextureLook, z: F32) -> F32:
    """Field → grey levels through the look's table, with per-image brightness/contrast jitter."""
    lut = _v2_lut(look.grey)
    scale = np.float32((_LUT_SIZE - 1) / (2 * _LUT_RANGE))
    idx = np.clip(z * scale + np.float32(_LUT_SIZE / 2), 0, _LUT_SIZE - 1).astype(np.intp)
    grey = lut[idx]
    centre = np.float32(look.grey[len(look.grey) // 2])
    g = np.float32(1 + rng.uniform(-look.gain, look.gain))
    d = np.float32(rng.uniform(-look.shift, look.shift))
    return (grey - centre) * g + centre + d


@dataclass(frozen=True)
class _Geometry:
    """Label ellipses of one class: deciles (0, 10, ..., 100 %) of the development set's 150.

    ``size`` is √(ab), ``aspect`` long/short, ``angle`` the long axis (rad, in (-π/2, π/2]),
    ``x``/``y`` the 0-based centre.
    """

    size: tuple[float, ...]
    aspect: tuple[float, ...]
    angle: tuple[float, ...]
    x: tuple[float, ...]
    y: tuple[float, ...]


_DECILES = np.linspace(0.0, 1.0, 11)


def _draw(rng: Rng, deciles: tuple[float, ...]) -> float:
    """One value from a distribution given by its deciles (inverse CDF, linear between)."""
    return float(np.interp(rng.random(), _DECILES, deciles))


def _v2_label(rng: Rng, texture: int) -> Ellipse:
    """A label ellipse as the development set's labellers drew them for this class."""
    g = _GEOMETRY[texture]
    size, aspect = _draw(rng, g.size), _draw(rng, g.aspect)
    angle, cx, cy = _draw(rng, g.angle), _draw(rng, g.x), _draw(rng, g.y)
    if texture == 4:  # every class-5 label has aspect 1.75: b a multiple of 0.04 keeps it exact
        b = round(size / math.sqrt(1.75) / 0.04) * 0.04
        return _rounded(cx, cy, 1.75 * b, b, angle)
    if texture == 5:  # every class-6 label is the same 260 × 30 px ellipse
        return _rounded(cx, cy, 260.0, 30.0, angle)
    return _rounded(cx, cy, size * math.sqrt(aspect), size / math.sqrt(aspect), angle)


def label_mask(e: Ellipse) -> npt.NDArray[np.bool_]:
    """The label region exactly as a reader of the written labels.txt draws it."""
    canvas = np.zeros((SIZE, SIZE), np.uint8)
    draw_ellipse(canvas, e)
    return canvas > 0


def _ring(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """The surround ``data compare`` measures a defect against: a band half its radius wide."""
    radius = max(8, round(0.5 * math.sqrt(mask.sum() / math.pi)))
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return (cv2.dilate(mask.astype(np.uint8), k) > 0) & ~mask


def _hit_contrast(
    img: F32,
    mask: npt.NDArray[np.bool_],
    directions: list[F32],
    targets: tuple[float | None, float | None],
    start: list[float],
    bounds: list[tuple[float, float]],
) -> F32:
    """``img + Σ pᵢ·directionsᵢ`` with the pᵢ (within ``bounds``) that give the label region the
    target mean step (in surround stds) and log2 std ratio; a target that is None is left free,
    and there are at least as many directions as targets.

    The real bars for these two statistics come from 2–3 real defects per class (class 6's
    two differ by 0.003 surround std), narrower than a texture's own scatter, so a defect's
    strength is set against its surround rather than drawn blind. Damped Newton steps on the
    final, rounded and clipped pixels; ``directions`` are zero outside ``mask``, so nothing
    outside the label changes.
    """
    ring = _ring(mask)
    if mask.sum() < 4 or ring.sum() < 16:  # too little of the label inside the image to measure
        return img
    around = _to_uint8(img[ring]).astype(np.float64)
    mu, sd = float(around.mean()), max(float(around.std()), 1.0)
    base = img[mask]
    dirs = [d[mask] for d in directions]
    which = [i for i, t in enumerate(targets) if t is not None]
    n = len(dirs)
    if not 0 < len(which) <= n:
        msg = f"{n} directions for {len(which)} targets"
        raise ValueError(msg)
    goal = np.array([targets[i] for i in which], np.float64)
    lo, hi = np.array([b[0] for b in bounds]), np.array([b[1] for b in bounds])

    def residual(p: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        x = base.copy()
        for pi, d in zip(p, dirs, strict=True):
            x += np.float32(pi) * d
        v = _to_uint8(x).astype(np.float64)
        got = [(v.mean() - mu) / sd, math.log2(max(float(v.std()), 0.5) / sd)]
        return np.array([got[i] for i in which]) - goal

    p = np.clip(np.array(start, np.float64), lo, hi)
    f = residual(p)
    for _ in range(12):
        if np.abs(f).max() < 2e-4:
            break
        jac = np.empty((len(which), n))
        for j in range(n):
            h = np.zeros(n)
            h[j] = 1e-2 * (hi[j] - lo[j])
            jac[:, j] = (residual(p + h) - f) / h[j]
        span = hi - lo  # steps in units of each direction's range: min-norm treats them alike
        try:
            step = np.linalg.lstsq(jac * span, f, rcond=None)[0] * span
        except np.linalg.LinAlgError:
            break
        for damp in (1.0, 0.5, 0.25, 0.1):
            q = np.clip(p - damp * step, lo, hi)
            fq = residual(q)
            if np.abs(fq).sum() < np.abs(f).sum():
                p, f = q, fq
                break
        else:
            break
    if len(which) == 2 and abs(f[0]) > 2e-3:
        # both targets out of reach together: the mean step (the tighter bar) wins, moved by
        # the second direction alone (bisection: the step is monotone in it)
        def at(x: float) -> float:
            q = p.copy()
            q[1] = x
            return float(residual(q)[0])

        lo_p, hi_p = lo[1], hi[1]
        sign = np.sign(at(hi_p) - at(lo_p))
        for _ in range(20):
            mid = 0.5 * (lo_p + hi_p)
            if at(mid) * sign > 0:
                hi_p = mid
            else:
                lo_p = mid
        p[1] = 0.5 * (lo_p + hi_p)
    out = img.copy()
    for pi, d in zip(p, directions, strict=True):
        out += np.float32(pi) * d
    return out


def _v2_targets(rng: Rng, texture: int) -> tuple[float, float]:
    lo_m, hi_m, lo_s, hi_s = _CONTRAST[texture]
    return float(rng.uniform(lo_m, hi_m)), float(rng.uniform(lo_s, hi_s))


def _plain_v2(texture: int) -> Callable[[Rng, bool], tuple[F32, Ellipse | None]]:
    def model(rng: Rng, defective: bool) -> tuple[F32, Ellipse | None]:
        look = V2_LOOKS[texture]
        img = _v2_grey(rng, look, _v2_field(rng, look))
        if not defective:
            return img, None
        return _V2_DEFECTS[texture](rng, img)

    return model


def _bands(rng: Rng, decay: float) -> F32:
    """Unit-variance vertical bands: a random profile along x, amplitude ∝ exp(-k/decay) at k
    cycles per image, the same down every column."""
    k = np.arange(SIZE // 2 + 1, dtype=np.float64)
    amp = np.exp(-k / decay)
    amp[0] = 0.0
    phase = rng.uniform(0, 2 * math.pi, k.size)
    profile = np.fft.irfft(np.exp(1j * phase) * amp, n=SIZE)
    profile /= max(float(profile.std()), 1e-9)
    return np.broadcast_to(profile.astype(np.float32), (SIZE, SIZE))


def _class1_v2(rng: Rng, defective: bool) -> tuple[F32, Ellipse | None]:
    """Class 1: fine grain under four ring gratings from far-off centres, two opposite pairs
    at right angles (one pair coarse, one aliased near the pixel pitch), in annular bands;
    their sums and products draw the real class's diamond moiré."""
    look = V2_LOOKS[0]
    xx, yy = _grid(SIZE)
    base, dist = rng.uniform(0, 2 * math.pi), rng.uniform(300, 500)
    periods = rng.uniform(4.2, 5.2), rng.uniform(2.2, 2.9)  # visible arcs, aliased fine rings
    rings = []
    for j in range(4):
        ang = base + (j % 2) * math.pi + (j // 2) * math.pi / 2 + rng.normal(0, 0.1)
        d = dist * rng.uniform(0.9, 1.1)
        ox, oy = SIZE / 2 + d * math.cos(ang), SIZE / 2 + d * math.sin(ang)
        r = cv2.magnitude(xx - np.float32(ox), yy - np.float32(oy))
        k = np.float32(2 * math.pi / (periods[j // 2] * rng.uniform(0.99, 1.01)))
        # rings come in annular bands, as in the real class (smooth: drawn at 1/4 resolution)
        coarse = r[2::4, 2::4] * np.float32(2 * math.pi / rng.uniform(60, 150))
        band = cv2.resize(
            1 + 0.7 * np.cos(coarse + np.float32(rng.uniform(0, 6.3))),
            (SIZE, SIZE),
            interpolation=cv2.INTER_LINEAR,
        )
        rings.append(
            np.cos(r * k + np.float32(rng.uniform(0, 2 * math.pi)))
            * band
            / np.float32(math.sqrt(1 + 0.7**2 / 2))
        )
    # four cosines (variance 1/2 each) and two products (1/4 each): variance 2.5
    moire = (sum(rings) + rings[0] * rings[1] + rings[2] * rings[3]) / np.float32(math.sqrt(2.5))
    w = np.float32(rng.uniform(0.6, 0.8))
    z = _v2_field(rng, look) * np.sqrt(1 - w * w) + w * moire
    img = _v2_grey(rng, look, z)
    if not defective:
        return img, None
    return _V2_DEFECTS[0](rng, img)


def _class2_v2(rng: Rng, defective: bool) -> tuple[F32, Ellipse | None]:
    """Class 2: near-vertical fibres, sheared per image so each image's run a little off
    vertical (the field is periodic, so the shear wraps)."""
    look = V2_LOOKS[1]
    z = _v2_field(rng, look)
    t = rng.uniform(-0.1, 0.1)
    warp = np.array([[1.0, t, -t * SIZE / 2], [0.0, 1.0, 0.0]], np.float32)
    z = cv2.warpAffine(z, warp, (SIZE, SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
    img = _v2_grey(rng, look, z)
    if not defective:
        return img, None
    return _V2_DEFECTS[1](rng, img)


#: Version 3's class 2: how smooth the fibres run along their length varies per image in the
#: real class (structure-tensor coherence 0.75-0.98, std of the vertical grey step 8.8-31.5 over
#: the 17 real images; version 2 holds every image at 0.90 and ≈ 25). Each image takes a point
#: u on a path from the smoothest to the grainiest real image: a vertical blur of the field
#: (sigma, px) and a share of fine isotropic grain (grain, of the unit variance), u drawn from
#: the real images' deciles (each real image placed on the path by its vertical step std).
_C2_PATH_U = (0.0, 0.25, 0.5, 0.65, 0.85, 1.0)
_C2_PATH_SIGMA = (1.5, 0.7, 0.7, 0.5, 0.0, 0.0)
_C2_PATH_GRAIN = (0.0, 0.05, 0.15, 0.2, 0.28, 0.36)
_C2_U_DECILES = (0.016, 0.054, 0.2, 0.273, 0.417, 0.491, 0.546, 0.581, 0.668, 0.837, 1.0)
#: The fibres' tilt off vertical (tan): the real images' sd is 0.9° (all within ±2.5°).
_C2_TILT_SD, _C2_TILT_MAX = 0.016, 0.045


def _class2_v3(rng: Rng, defective: bool) -> tuple[F32, Ellipse | None]:
    """Class 2, version 3: the version-2 fibres with the real spread of along-fibre smoothness
    and of tilt (see ``_C2_PATH_U``)."""
    look = V2_LOOKS[1]
    u = _draw(rng, _C2_U_DECILES)
    sigma = float(np.interp(u, _C2_PATH_U, _C2_PATH_SIGMA))
    w = np.float32(np.interp(u, _C2_PATH_U, _C2_PATH_GRAIN))
    z = _v2_field(rng, look, along_sigma=sigma)
    if w > 0:
        grain = cv2.GaussianBlur(rng.standard_normal((SIZE, SIZE), dtype=np.float32), (0, 0), 0.8)
        grain /= max(float(grain.std()), 1e-6)
        z = z * np.sqrt(1 - w * w) + w * grain
    t = float(np.clip(rng.normal(0.0, _C2_TILT_SD), -_C2_TILT_MAX, _C2_TILT_MAX))
    warp = np.array([[1.0, t, -t * SIZE / 2], [0.0, 1.0, 0.0]], np.float32)
    z = cv2.warpAffine(z, warp, (SIZE, SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
    img = _v2_grey(rng, look, z)
    if not defective:
        return img, None
    return _V2_DEFECTS[1](rng, img)


def _class3_v2(rng: Rng, defective: bool) -> tuple[F32, Ellipse | None]:
    """Class 3: fine clouds over broad vertical bands (column means carry ~45 % of the variance)
    and fainter horizontal ones (row means ~4 %)."""
    look = V2_LOOKS[2]
    w, w_row = np.float32(rng.uniform(0.62, 0.72)), np.float32(rng.uniform(0.15, 0.25))
    z = _v2_field(rng, look) * np.sqrt(1 - w * w - w_row * w_row) + w * _bands(rng, 1.8)
    z += w_row * _bands(rng, 3.0).T
    img = _v2_grey(rng, look, z)
    if not defective:
        return img, None
    return _V2_DEFECTS[2](rng, img)


@dataclass(frozen=True)
class _CrackModel:
    """How class 4's radial cracks are drawn (ranges are uniform draws per crack)."""

    n_fine: tuple[int, int]  # fine cracks per image
    r0_scale: float  # px: fine cracks start 6 + Exp(r0_scale) from the hub
    fine_length: tuple[float, float]  # px
    main_depth: tuple[float, float]
    fine_depth: tuple[float, float]
    fine_decay: tuple[float, float]  # px: e-folding length of a fine crack's depth
    soft: float  # share of the fine cracks drawn broad and soft
    hub_radius: float = 7.0  # px: the dark disc where the cracks meet
    hub_depth: float = 1.6


#: Versions 2 and 3: fewer, shorter fine cracks that fade early and a third drawn soft, which
#: leaves short dark fragments in the corners, up to 92 grey levels below a corner patch's
#: median where the real corners reach 21-66 (``tests/test_synth.py``).
_CRACKS_V2 = _CrackModel((150, 220), 35.0, (60, 260), (0.6, 1.0), (0.25, 0.8), (300, 800), 0.3)
#: Version 4: the real images' look, long even cracks that reach the borders (docs/data.md).
_CRACKS_V4 = _CrackModel(
    (200, 280), 20.0, (220, 380), (0.5, 0.8), (0.3, 0.6), (600, 1400), 0.05, 11.0, 2.4
)


def _cracks(rng: Rng, model: _CrackModel = _CRACKS_V2) -> F32:
    """Class 4's radial cracks: grooves from a point near the centre, curving and fading
    outward, lit from one side (a height field's slope plus its darkening), 0 = no crack.

    A few broad main rays start at the hub; the many fine ones start further out.
    """
    cx, cy = rng.uniform(253, 265), rng.uniform(253, 265)
    n_main = int(rng.integers(15, 25))
    n = n_main + int(rng.integers(*model.n_fine))
    is_main = np.arange(n) < n_main
    phi = rng.uniform(-math.pi, math.pi, n)
    r0 = np.where(is_main, rng.uniform(2, 6, n), 6 + rng.exponential(model.r0_scale, n))
    length = np.where(is_main, rng.uniform(40, 160, n), rng.uniform(*model.fine_length, n))
    bend = rng.normal(0, 1 / 2500, n)
    offset = rng.normal(0, 1, n) * np.where(is_main, 1.5, 3.0)
    depth = np.where(is_main, rng.uniform(*model.main_depth, n), rng.uniform(*model.fine_depth, n))
    decay = np.where(is_main, rng.uniform(40, 120, n), rng.uniform(*model.fine_decay, n))
    soft_pick = rng.random(n) < model.soft
    steps = np.linspace(0.0, 1.0, 12)
    r = r0[:, None] + steps[None, :] * length[:, None]
    v = offset[:, None] + bend[:, None] * r * r
    c, s = np.cos(phi)[:, None], np.sin(phi)[:, None]
    pts = np.stack([cx + r * c - v * s, cy + r * s + v * c], axis=2)
    fixed = np.round(pts * 16).astype(np.int32)
    ramp = np.minimum(1, steps[None, :] * 6 + is_main[:, None])
    fade = depth[:, None] * np.exp(-(r - r0[:, None]) / decay[:, None]) * ramp
    fine = np.zeros((SIZE, SIZE), np.float32)
    main = np.zeros((SIZE, SIZE), np.float32)
    soft = np.zeros((SIZE, SIZE), np.float32)
    for i in range(n):
        canvas = main if is_main[i] else (soft if soft_pick[i] else fine)
        for j in range(len(steps) - 1):
            cv2.polylines(
                canvas, [fixed[i, j : j + 2]], False, float(fade[i, j]), 1, cv2.LINE_AA, 4
            )
    # a 1 px line blurred to σ peaks at 1/(σ√2π) of its value: ×3 and ×4 about undo that
    height = np.minimum(cv2.GaussianBlur(fine, (0, 0), 1.3) * 3.0, 1.5)
    height += np.minimum(cv2.GaussianBlur(main, (0, 0), 1.6) * 4, 1.5)
    height += np.minimum(cv2.GaussianBlur(soft, (0, 0), 2.4) * 6, 1.5)
    slope = cv2.Sobel(height, cv2.CV_32F, 1, 0, ksize=3) + cv2.Sobel(
        height, cv2.CV_32F, 0, 1, ksize=3
    )
    hub = np.zeros((SIZE, SIZE), np.float32)
    centre, radius = (round(cx * 16), round(cy * 16)), round(model.hub_radius * 16)
    cv2.circle(hub, centre, radius, model.hub_depth, -1, cv2.LINE_AA, 4)
    return height + 0.4 * slope + cv2.GaussianBlur(hub, (0, 0), 2.5)


_CRACK_DEPTH = (33.0, 43.0)  # grey levels of a full-depth crack
_CRACK_DEPTH_V4 = (26.0, 34.0)  # version 4: more, longer cracks, each shallower


def _cracked(
    rng: Rng,
    defective: bool,
    look: TextureLook,
    depth: tuple[float, float],
    cracks: _CrackModel,
) -> tuple[F32, Ellipse | None]:
    """Class 4: bright fine grain crossed by radial cracks, inside a dark one-pixel frame."""
    img = _v2_grey(rng, look, _v2_field(rng, look))
    img -= np.float32(rng.uniform(*depth)) * _cracks(rng, cracks)
    frame = np.float32(rng.uniform(0.39, 0.44))
    img[0, :] *= frame
    img[-1, :] *= frame
    img[1:-1, 0] *= frame
    img[1:-1, -1] *= frame
    if not defective:
        return img, None
    return _V2_DEFECTS[3](rng, img)


def _class4_v2(rng: Rng, defective: bool) -> tuple[F32, Ellipse | None]:
    """Class 4 of versions 2 and 3."""
    return _cracked(rng, defective, V2_LOOKS[3], _CRACK_DEPTH, _CRACKS_V2)


def _class4_v4(rng: Rng, defective: bool) -> tuple[F32, Ellipse | None]:
    """Class 4 of version 4: the real images' long, even cracks (``_CRACKS_V4``) over a grain
    table fitted with them (``V4_LOOKS``)."""
    return _cracked(rng, defective, V4_LOOKS[3], _CRACK_DEPTH_V4, _CRACKS_V4)


# ---- defects (each draws its label first, then a defect inside it)


def _frame(e: Ellipse) -> tuple[F32, F32]:
    """Pixel coordinates along (u) and across (v) the label's ``a`` axis, from its centre."""
    xx, yy = _grid(SIZE)
    c, s = np.float32(math.cos(e.theta)), np.float32(math.sin(e.theta))
    dx, dy = xx - np.float32(e.cx), yy - np.float32(e.cy)
    return dx * c + dy * s, -dx * s + dy * c


def _line(pts: npt.NDArray[np.float64], width: int, blur: float) -> F32:
    """An anti-aliased polyline (sub-pixel), blurred, values 0..1."""
    canvas = np.zeros((SIZE, SIZE), np.uint8)
    cv2.polylines(canvas, [np.round(pts * 16).astype(np.int32)], False, 255, width, cv2.LINE_AA, 4)
    return cv2.GaussianBlur(canvas.astype(np.float32) / 255, (0, 0), blur)


def _d1_smooth_patch(rng: Rng, img: F32) -> tuple[F32, Ellipse]:
    """Class 1: a wiped patch, two merged blobs of smooth grey inside the label."""
    e = _v2_label(rng, 0)
    mask = label_mask(e)
    blob: F32 = np.zeros((SIZE, SIZE), np.float32)
    u, v = _frame(e)
    for _ in range(2):
        ou, ov = rng.uniform(-0.3, 0.3) * e.a, rng.uniform(-0.3, 0.3) * e.b
        ra, rb = rng.uniform(0.35, 0.55) * e.a, rng.uniform(0.35, 0.55) * e.b
        d = ((u - np.float32(ou)) / np.float32(ra)) ** 2 + (
            (v - np.float32(ov)) / np.float32(rb)
        ) ** 2
        blob = np.maximum(blob, (d < 1).astype(np.float32))
    blob = cv2.GaussianBlur(blob, (0, 0), 1.5) * mask
    local = cv2.GaussianBlur(img, (0, 0), 12)
    t_mean, t_std = _v2_targets(rng, 0)
    out = _hit_contrast(
        img,
        mask,
        [-blob * (img - local), -blob],
        (t_mean, t_std),
        [0.8, 0.0],
        [(0.0, 1.0), (-80.0, 80.0)],
    )
    return out, e


def _d2_scratch(rng: Rng, img: F32) -> tuple[F32, Ellipse]:
    """Class 2: a thin dark arc along the label's long axis (a 1 px and a 3 px profile: how much
    of each sets the region's mean step and std ratio)."""
    e = _v2_label(rng, 1)
    mask = label_mask(e)
    t = np.linspace(-0.5, 0.5, 32)
    length = 2 * e.a * rng.uniform(0.6, 0.8)
    sag = rng.uniform(0.3, 0.8) * e.b * rng.choice([-1, 1])
    uu, vv = t * length, (1 - 4 * t**2) * sag - sag / 2
    c, s = math.cos(e.theta), math.sin(e.theta)
    pts = np.stack([e.cx + uu * c - vv * s, e.cy + uu * s + vv * c], axis=1)
    thin, wide = _line(pts, 1, 0.5) * mask, _line(pts, 3, 0.8) * mask
    t_mean, t_std = _v2_targets(rng, 1)
    out = _hit_contrast(
        img, mask, [-thin, -wide], (t_mean, t_std), [60.0, 20.0], [(0.0, 300.0), (-60.0, 200.0)]
    )
    return out, e


def _d3_speckle(rng: Rng, img: F32) -> tuple[F32, Ellipse]:
    """Class 3: a dense cluster of bright specks on a faintly brighter patch inside the label."""
    e = _v2_label(rng, 2)
    mask = label_mask(e)
    spots: F32 = np.zeros((SIZE, SIZE), np.float32)
    c, s = math.cos(e.theta), math.sin(e.theta)
    su, sv = rng.uniform(0.08, 0.16) * e.a, rng.uniform(0.12, 0.2) * e.b
    for _ in range(int(rng.integers(25, 60))):
        du, dv = rng.normal(0, su), rng.normal(0, sv)
        x, y = e.cx + du * c - dv * s, e.cy + du * s + dv * c
        r = rng.uniform(1.0, 2.2)
        cv2.circle(spots, (round(x * 16), round(y * 16)), round(r * 16), 1.0, -1, cv2.LINE_AA, 4)
    spots = cv2.GaussianBlur(spots, (0, 0), 0.6) * mask
    u, v = _frame(e)
    halo = np.exp(-0.5 * ((u / np.float32(0.5 * e.a)) ** 2 + (v / np.float32(0.5 * e.b)) ** 2))
    halo *= mask
    t_mean, t_std = _v2_targets(rng, 2)
    out = _hit_contrast(
        img,
        mask,
        [spots * (255 - img), halo],
        (t_mean, t_std),
        [0.85, 5.0],
        [(0.7, 1.0), (-10.0, 40.0)],
    )
    return out, e


def _d4_line(rng: Rng, img: F32) -> tuple[F32, Ellipse]:
    """Class 4: a thin straight dark line along the label's long axis."""
    e = _v2_label(rng, 3)
    mask = label_mask(e)
    half = e.a * rng.uniform(0.7, 0.85)
    c, s = math.cos(e.theta), math.sin(e.theta)
    pts = np.array([[e.cx - half * c, e.cy - half * s], [e.cx + half * c, e.cy + half * s]])
    thin = _line(pts, 2, 0.7) * mask
    wide = cv2.GaussianBlur(thin, (0, 0), 1.2)
    t_mean, t_std = _v2_targets(rng, 3)
    out = _hit_contrast(
        img, mask, [-thin, -wide], (t_mean, t_std), [40.0, 0.0], [(-100.0, 200.0), (-100.0, 200.0)]
    )
    return out, e


def _d5_hatch(rng: Rng, img: F32) -> tuple[F32, Ellipse]:
    """Class 5: a patch of parallel dark lines across the label's long axis, stacked along it."""
    e = _v2_label(rng, 4)
    mask = label_mask(e)
    u, v = _frame(e)
    hu, hv = np.float32(0.4 * e.a), np.float32(0.5 * e.b)
    patch: F32 = ((np.abs(u) < hu) & (np.abs(v) < hv)).astype(np.float32)
    patch = cv2.GaussianBlur(patch, (0, 0), 0.7)
    period = np.float32(rng.uniform(4.0, 5.0))
    # dark lines on lighter gaps, darker on average (the mean of max(cos, 0)³ is 2/3π)
    lines = np.maximum(np.cos(u * np.float32(2 * math.pi) / period), 0) ** 3
    hatch = patch * (lines - np.float32(1 / (3 * math.pi))) * mask
    _, t_std = _v2_targets(rng, 4)
    out = _hit_contrast(img, mask, [-hatch], (None, t_std), [80.0], [(0.0, 300.0)])
    return out, e


def _d6_streak(rng: Rng, img: F32) -> tuple[F32, Ellipse]:
    """Class 6: a long dark streak with ragged edges along the label's long axis.

    A narrow and a wide darkening profile: how much of each sets both the region's mean step
    and its std ratio.
    """
    e = _v2_label(rng, 5)
    mask = label_mask(e)
    u, v = _frame(e)
    half = np.float32(e.a * rng.uniform(0.7, 0.95))
    width = np.float32(rng.uniform(6.0, 9.0)) * np.clip(
        1 + 0.3 * _lowpass(rng, SIZE, 8, 1.0, 1.0, 0.0), 0.4, 2.0
    )
    along = np.clip((half - np.abs(u)) / np.float32(40), 0, 1) * mask
    narrow = np.exp(-0.5 * (v / width) ** 2) * along
    wide = np.exp(-0.5 * (v / (2.5 * width)) ** 2) * along
    t_mean, t_std = _v2_targets(rng, 5)
    # a third direction for labels the border clips to a sliver: the texture's own contrast
    local = mask * (img - np.float32(img[mask].mean()))
    out = _hit_contrast(
        img,
        mask,
        [-narrow, -wide * img, local],
        (t_mean, t_std),
        [60.0, 0.2, 0.0],
        [(0.0, 255.0), (0.0, 1.5), (-0.3, 0.3)],
    )
    return out, e


_V2_DEFECTS: dict[int, Callable[[Rng, F32], tuple[F32, Ellipse]]] = {
    0: _d1_smooth_patch,
    1: _d2_scratch,
    2: _d3_speckle,
    3: _d4_line,
    4: _d5_hatch,
    5: _d6_streak,
}
_MODELS_V2: tuple[Callable[[Rng, bool], tuple[F32, Ellipse | None]], ...] = (
    _class1_v2,
    _class2_v2,
    _class3_v2,
    _class4_v2,
    _plain_v2(4),
    _plain_v2(5),
)
#: Version 3: version 2 with class 2's along-fibre smoothness and tilt refitted.
_MODELS_V3: tuple[Callable[[Rng, bool], tuple[F32, Ellipse | None]], ...] = (
    _MODELS_V2[0],
    _class2_v3,
    *_MODELS_V2[2:],
)
#: Version 4: version 3 with class 4's cracks drawn as the real images show them.
_MODELS_V4: tuple[Callable[[Rng, bool], tuple[F32, Ellipse | None]], ...] = (
    *_MODELS_V3[:3],
    _class4_v4,
    *_MODELS_V3[4:],
)
_MODELS_BY_VERSION = {2: _MODELS_V2, 3: _MODELS_V3, 4: _MODELS_V4}


# ---- fitted tables (begin): written by the fitting loop described in docs/data.md
# fmt: off
V2_LOOKS: dict[int, TextureLook] = {
    0: TextureLook(
        radial_db=(
            -29.28, 48.89, 16.16, 24.82, 27.36, 18.68, 26.98, 21.90, 24.48, 29.80,
            26.58, 30.50, 26.12, 24.05, 24.92, 23.79, 29.83, 24.67, 29.46, 25.42,
            28.01, 26.61, 28.65, 24.05, 16.48, -68.01, -96.94, -37.85, 22.37, -2.49,
            8.94, 23.99, 26.59, 25.79, 24.34, 24.56, 24.54, 25.31, 23.12, 25.36,
            23.41, 25.88, 25.95, 24.96, 21.39, 19.71, 15.95, 14.33, 5.60, -1.77,
            9.97, 12.42, 12.09, 16.55, 14.25, 17.29, 6.82, 12.97, 20.46, 23.32,
            23.95, 23.40, 23.47, 23.55,
        ),
        aniso=(
            0.0000, 0.0000, 0.0000, 0.0000,
        ),
        grey=(
            -28.92, -2.97, -2.97, 1.32, 11.79, 11.88, 16.19, 19.79, 23.70, 28.24,
            33.28, 38.75, 44.57, 50.86, 57.31, 64.16, 71.08, 78.34, 85.72, 93.30,
            101.11, 108.27, 118.76, 122.33, 137.51, 137.51, 155.07, 156.55, 162.62, 186.21,
            186.21, 186.21, 222.87,
        ),
        shift=5.0,
        gain=0.08,
    ),
    1: TextureLook(
        radial_db=(
            -5.29, 11.86, 9.54, 5.58, 8.82, 3.84, 5.13, 3.83, 2.94, 4.08,
            1.91, 2.75, 1.68, 2.17, 1.37, 1.03, 1.39, 1.01, 0.87, 0.68,
            0.18, 0.87, 0.45, 0.36, 0.07, 0.30, -0.04, -0.01, -0.11, -0.37,
            0.06, -0.64, -0.48, -0.48, -0.12, -0.56, -0.39, -0.66, -0.07, -0.41,
            -0.52, -0.10, -0.50, -0.27, -0.31, -0.51, -0.28, -0.24, -0.17, -0.26,
            -0.52, 0.00, 0.04, -0.28, 0.14, -0.65, 0.27, -0.12, 0.00, -0.48,
            0.25, -0.45, 0.57, -1.73,
        ),
        aniso=(
            0.4231, 0.1636, 0.7321, 0.0774, 0.7924, 0.0669, 0.7270, -0.0252,
        ),
        grey=(
            -5.15, -5.15, -5.15, -5.15, -5.15, -5.15, -5.15, -4.38, 2.54, 3.08,
            7.32, 12.42, 21.09, 32.26, 46.36, 64.76, 86.43, 110.29, 135.50, 159.15,
            181.12, 199.02, 212.11, 221.74, 231.35, 238.15, 241.92, 243.88, 252.50, 269.03,
            277.33, 277.86, 278.07,
        ),
        shift=16.0,
        gain=0.02,
    ),
    2: TextureLook(
        radial_db=(
            31.76, 23.02, 25.65, 25.28, 23.34, 23.00, 21.50, 20.73, 17.46, 15.42,
            13.66, 12.94, 12.12, 10.09, 10.38, 8.81, 7.99, 7.70, 6.83, 5.98,
            6.13, 5.07, 5.04, 4.33, 4.12, 3.03, 2.56, 2.46, 1.98, 1.25,
            1.15, 0.00, 1.35, -0.50, -0.47, -0.93, -1.26, -1.58, -1.86, -2.20,
            -2.55, -2.76, -3.07, -3.16, -4.08, -2.88, -3.94, -4.48, -3.90, -4.61,
            -4.61, -4.06, -4.94, -4.84, -5.08, -5.34, -5.26, -5.42, -5.27, -5.28,
            -5.62, -5.69, -5.41, -5.85,
        ),
        aniso=(
            -0.0624, -0.0541, 0.0236, -0.0060,
        ),
        grey=(
            -3.67, 11.90, 12.22, 22.17, 30.37, 38.32, 46.45, 54.58, 63.18, 71.46,
            79.85, 88.25, 96.63, 104.80, 112.98, 121.08, 129.07, 137.01, 144.84, 152.56,
            160.30, 168.04, 175.87, 183.75, 191.70, 199.57, 207.78, 215.88, 223.98, 232.52,
            240.10, 246.27, 248.69,
        ),
        shift=3.0,
        gain=0.03,
    ),
    3: TextureLook(
        radial_db=(
            40.06, 32.39, 14.52, -9.31, -3.07, 4.60, 17.20, 13.90, 15.58, 16.37,
            13.93, 17.98, 15.44, 16.88, 14.16, 12.96, 13.35, 11.49, 11.30, 9.33,
            7.81, 7.37, 3.91, 3.39, 0.02, -2.09, -2.46, -2.51, -1.29, -1.99,
            -1.26, -1.08, -0.36, -0.38, -0.28, -0.10, 0.00, 0.15, -0.19, -0.12,
            -0.16, 0.28, -0.20, 0.20, -0.15, -0.35, 0.25, -0.37, -0.03, 0.07,
            -0.13, 0.16, -0.16, 0.10, -0.30, -0.15, -0.08, -0.25, 0.14, -0.03,
            -0.54, 0.07, -0.10, -1.13,
        ),
        aniso=(
            -0.0285, 0.4456, -0.1742, -0.2262,
        ),
        grey=(
            140.51, 143.06, 145.61, 148.16, 150.71, 153.26, 155.81, 158.36, 160.91, 163.46,
            166.01, 168.56, 171.11, 173.66, 176.21, 178.76, 181.31, 183.86, 186.41, 188.96,
            191.51, 194.06, 196.61, 199.16, 201.71, 204.26, 206.81, 209.36, 211.91, 214.46,
            217.01, 219.56, 222.11,
        ),
        shift=12.0,
        gain=0.04,
    ),
    4: TextureLook(
        radial_db=(
            46.21, 27.59, 23.06, 17.54, 19.54, 17.53, 16.83, 15.14, 13.64, 13.86,
            12.43, 12.44, 11.00, 11.59, 9.21, 10.11, 9.58, 9.26, 8.18, 7.91,
            6.95, 7.09, 6.15, 6.05, 5.51, 5.17, 3.92, 4.01, 3.06, 2.17,
            1.67, 0.91, 0.35, -0.46, -0.59, -2.31, -2.23, -3.08, -3.60, -3.85,
            -4.82, -5.53, -5.90, -5.29, -7.11, -6.39, -7.47, -7.37, -7.53, -8.02,
            -7.86, -8.26, -7.96, -8.62, -8.51, -8.59, -9.01, -8.47, -9.10, -9.12,
            -9.12, -9.41, -9.31, -9.70,
        ),
        aniso=(
            0.1345, -0.0764, 0.0317, -0.0518,
        ),
        grey=(
            8.58, 14.33, 34.10, 35.43, 43.51, 50.28, 56.65, 63.66, 70.71, 77.88,
            84.82, 91.89, 98.93, 105.93, 113.04, 120.25, 127.54, 134.84, 142.15, 149.54,
            157.10, 164.47, 171.86, 179.20, 186.49, 193.65, 201.05, 208.37, 215.84, 223.85,
            229.64, 236.24, 246.57,
        ),
        shift=4.5,
        gain=0.02,
    ),
    5: TextureLook(
        radial_db=(
            28.64, 24.81, 20.17, 22.11, 18.01, 17.57, 17.36, 16.78, 14.81, 13.87,
            14.92, 12.56, 12.31, 11.26, 10.58, 10.45, 9.27, 8.36, 8.14, 7.27,
            7.06, 5.64, 6.14, 4.66, 4.27, 4.08, 3.15, 2.79, 1.90, 2.42,
            0.38, 0.39, 0.09, -0.40, -1.25, -1.75, -2.26, -3.35, -3.16, -3.82,
            -4.47, -4.97, -5.71, -6.45, -6.20, -7.15, -7.84, -8.33, -8.76, -8.76,
            -9.39, -9.89, -10.66, -10.88, -11.37, -11.45, -11.99, -12.64, -12.53, -12.90,
            -13.13, -13.14, -12.53, -15.40,
        ),
        aniso=(
            0.0396, 0.0678, 0.0056, 0.0487,
        ),
        grey=(
            -6.73, -6.73, -6.73, -6.73, -6.73, -5.85, -1.35, 1.66, 4.02, 6.97,
            10.43, 15.04, 21.37, 30.24, 42.17, 57.89, 77.86, 100.96, 126.12, 151.48,
            174.94, 194.98, 211.32, 223.72, 232.35, 238.69, 243.80, 250.43, 260.46, 261.59,
            262.18, 262.50, 262.63,
        ),
        shift=8.0,
        gain=0.03,
    ),
}
#: Version 4's own tables (class 4: fitted with its cracks, ``_CRACKS_V4``).
V4_LOOKS: dict[int, TextureLook] = {
    3: TextureLook(
        radial_db=(
            53.23, 32.53, 5.94, -30.75, -10.41, 10.38, 22.83, 18.79, 19.55, 19.34,
            17.66, 19.91, 17.65, 18.34, 15.19, 14.43, 13.78, 11.53, 11.40, 8.75,
            7.20, 5.34, 0.81, 0.05, -5.50, -9.17, -9.48, -8.43, -5.42, -5.12,
            -3.54, -2.21, -0.15, -0.50, 0.62, 0.58, 1.29, 1.43, 0.81, 1.72,
            0.63, 2.30, 1.04, 1.60, 1.75, 0.45, 2.41, 0.82, 1.47, 2.03,
            0.79, 2.30, 0.71, 2.20, 0.98, 1.19, 1.97, 0.60, 2.20, 1.20,
            1.07, 1.69, 1.60, -0.66,
        ),
        aniso=(
            -0.0117, 0.3224, -0.6023, -0.3928,
        ),
        grey=(
            140.51, 143.06, 145.61, 148.16, 150.71, 153.26, 155.81, 158.36, 160.91, 163.46,
            166.01, 168.56, 171.11, 173.66, 176.21, 178.76, 181.31, 183.86, 186.41, 188.96,
            191.51, 194.06, 196.61, 199.16, 201.71, 204.26, 206.81, 209.36, 211.91, 214.46,
            217.01, 219.56, 222.11,
        ),
        shift=12.0,
        gain=0.04,
    ),
}
# fmt: on
# ---- fitted tables (end)


_GEOMETRY: dict[int, _Geometry] = {
    0: _Geometry(
        size=(35.2, 37.9, 41.9, 44.7, 47.8, 50.8, 55.0, 60.0, 65.6, 74.7, 89.2),
        aspect=(1.00, 1.04, 1.07, 1.13, 1.17, 1.26, 1.33, 1.45, 1.60, 1.85, 2.55),
        angle=(-1.53, -1.27, -1.10, -0.60, -0.39, -0.08, 0.28, 0.63, 0.91, 1.29, 1.54),
        x=(34, 56, 72, 86, 99, 113, 140, 160, 201, 252, 370),
        y=(31, 75, 102, 137, 174, 200, 229, 257, 290, 330, 383),
    ),
    1: _Geometry(
        size=(13.8, 17.1, 20.7, 23.0, 24.9, 26.5, 28.1, 29.4, 32.7, 41.8, 72.3),
        aspect=(1.49, 2.07, 2.32, 2.60, 3.12, 3.86, 4.46, 5.39, 6.03, 7.00, 14.95),
        angle=(-0.79, -0.67, -0.59, -0.42, -0.34, -0.20, 0.15, 0.32, 0.44, 0.58, 0.79),
        x=(85, 113, 156, 187, 223, 246, 282, 311, 359, 394, 436),
        y=(84, 132, 152, 200, 227, 250, 282, 323, 375, 417, 440),
    ),
    2: _Geometry(
        size=(18.8, 22.2, 24.1, 26.9, 28.2, 31.5, 34.0, 38.6, 42.2, 46.2, 63.4),
        aspect=(1.04, 1.34, 1.55, 1.66, 1.81, 2.02, 2.22, 2.36, 2.81, 3.18, 4.28),
        angle=(-1.54, -0.82, -0.40, -0.15, -0.03, 0.13, 0.26, 0.50, 0.77, 1.09, 1.55),
        x=(47, 100, 129, 181, 218, 254, 307, 350, 392, 435, 473),
        y=(34, 73, 113, 152, 194, 253, 281, 324, 361, 426, 473),
    ),
    3: _Geometry(
        size=(26.8, 36.9, 41.3, 43.2, 44.8, 47.3, 49.7, 52.3, 54.1, 58.0, 66.4),
        aspect=(1.03, 1.58, 1.89, 2.08, 2.26, 2.49, 2.77, 2.95, 3.19, 3.64, 5.77),
        angle=(-1.52, -1.31, -0.99, -0.64, -0.40, -0.11, 0.23, 0.73, 0.93, 1.27, 1.53),
        x=(24, 67, 100, 134, 180, 250, 326, 386, 414, 449, 495),
        y=(42, 78, 113, 154, 184, 251, 308, 353, 412, 448, 480),
    ),
    4: _Geometry(
        size=(27.5, 29.8, 32.5, 35.4, 37.2, 40.0, 43.7, 46.1, 49.1, 51.5, 54.1),
        aspect=(1.75, 1.75, 1.75, 1.75, 1.75, 1.75, 1.75, 1.75, 1.75, 1.75, 1.75),
        angle=(-1.52, -1.19, -0.86, -0.66, -0.19, 0.03, 0.25, 0.65, 1.00, 1.34, 1.55),
        x=(5, 36, 64, 132, 171, 240, 289, 330, 389, 459, 498),
        y=(11, 59, 107, 152, 206, 257, 296, 357, 383, 434, 505),
    ),
    5: _Geometry(
        size=(88.3, 88.3, 88.3, 88.3, 88.3, 88.3, 88.3, 88.3, 88.3, 88.3, 88.3),
        aspect=(8.67, 8.67, 8.67, 8.67, 8.67, 8.67, 8.67, 8.67, 8.67, 8.67, 8.67),
        angle=(-1.56, -1.18, -0.93, -0.53, -0.21, 0.20, 0.41, 0.59, 0.88, 1.31, 1.57),
        x=(29, 130, 186, 207, 250, 269, 307, 323, 368, 408, 501),
        y=(2, 109, 157, 178, 206, 272, 303, 342, 370, 408, 511),
    ),
}

#: Each class's real defects (2–3 per class): least and largest mean step (surround stds) and
#: log2 std ratio of the label region against its surround; a defect's targets are drawn between.
_CONTRAST: dict[int, tuple[float, float, float, float]] = {
    0: (-0.181, -0.016, -0.523, -0.221),
    1: (-0.162, -0.116, 0.034, 0.114),
    2: (0.132, 0.393, 0.185, 0.550),
    3: (-0.396, -0.189, 0.290, 0.578),
    4: (-0.786, 0.011, 0.254, 0.376),
    5: (-0.6075, -0.6044, -0.1248, -0.1181),
}


#: Generator versions: 1 is the first model (the shipped student was trained on it), 2 the one
#: fitted to real DAGM statistics, 3 version 2 with class 2 refitted to what a network sees,
#: 4 version 3 with class 4's cracks as the real images show them.
VERSIONS = (1, 2, 3, 4)


def synth_image(
    seed: int, texture: int, index: int, defective: bool, version: int = 1
) -> tuple[npt.NDArray[np.uint8], Ellipse | None]:
    """One 512×512 uint8 image and its label ellipse (0-based, 2 dp; None when good).

    A pure function of its arguments; ``texture`` is 0-based (0..5), ``version`` one of
    :data:`VERSIONS`.
    """
    if isinstance(version, bool) or not isinstance(version, int) or version not in VERSIONS:
        msg = f"version must be one of {', '.join(map(str, VERSIONS))}, got {version!r}"
        raise ValueError(msg)
    if not 0 <= texture < len(_MODELS):
        msg = f"texture must be in 0..{len(_MODELS) - 1}, got {texture}"
        raise ValueError(msg)
    if seed < 0 or index < 0:
        msg = f"seed and index must be >= 0, got seed={seed} index={index}"
        raise ValueError(msg)
    if version == 1:
        rng = np.random.default_rng([seed, texture, index, int(defective)])
        img, ellipse = _MODELS[texture](rng, defective)
    else:
        rng = np.random.default_rng([seed, texture, index, int(defective), version])
        models = _MODELS_BY_VERSION[version]
        img, ellipse = models[texture](rng, defective)
    return _to_uint8(img), ellipse


# ---------------------------------------------------------------------------------------------
# writing a set

# Huffman-only deflate: on grain textures it is both faster and smaller than LZ matching.
PNG_PARAMS = [
    cv2.IMWRITE_PNG_COMPRESSION,
    1,
    cv2.IMWRITE_PNG_STRATEGY,
    cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY,
]


@dataclass(frozen=True)
class _Job:
    seed: int
    texture: int
    index: int
    defective: bool
    path: str
    mask_path: str | None
    version: int = 1


def _run(job: _Job) -> Ellipse | None:
    img, ellipse = synth_image(job.seed, job.texture, job.index, job.defective, job.version)
    if not cv2.imwrite(job.path, img, PNG_PARAMS):
        msg = f"cannot write {job.path}"
        raise OSError(msg)
    if job.mask_path is not None and ellipse is not None:
        mask = np.zeros_like(img)
        draw_ellipse(mask, ellipse)
        if not cv2.imwrite(job.mask_path, mask, PNG_PARAMS):
            msg = f"cannot write {job.mask_path}"
            raise OSError(msg)
    return ellipse


def _init_worker() -> None:
    """One OpenCV thread per process; keep freed 1 MiB float buffers in the heap.

    glibc hands allocations above 128 KiB back to the kernel on free, so every image's dozen
    temporaries cost fresh zeroed pages (about 10% of the run in system time). Raising the mmap and
    trim thresholds in the worker processes only (never the caller's) removes that.
    """
    cv2.setNumThreads(1)
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 64 << 20)
    libc.mallopt(m_trim_threshold, 256 << 20)


def _plan_dev(out: Path, k: int, good: int, defective: int, seed: int, version: int) -> list[_Job]:
    good_dir, def_dir = out / f"Class{k}", out / f"Class{k}_def"
    good_dir.mkdir(parents=True, exist_ok=True)
    def_dir.mkdir(parents=True, exist_ok=True)
    jobs = [
        _Job(seed, k - 1, i, False, str(good_dir / f"{i}.png"), None, version)
        for i in range(1, good + 1)
    ]
    jobs += [
        _Job(seed, k - 1, i, True, str(def_dir / f"{i}.png"), None, version)
        for i in range(1, defective + 1)
    ]
    return jobs


def _plan_split(
    out: Path, k: int, good: int, defective: int, seed: int, version: int
) -> dict[str, list[_Job]]:
    """10-class layout: half of each kind to Train, the rest to Test, shuffled within a split."""
    items = {
        "Train": [(False, i) for i in range(1, (good + 1) // 2 + 1)]
        + [(True, i) for i in range(1, (defective + 1) // 2 + 1)],
        "Test": [(False, i) for i in range((good + 1) // 2 + 1, good + 1)]
        + [(True, i) for i in range((defective + 1) // 2 + 1, defective + 1)],
    }
    plans: dict[str, list[_Job]] = {}
    for n, (split, entries) in enumerate(items.items()):
        d = out / f"Class{k}" / split
        (d / "Label").mkdir(parents=True, exist_ok=True)
        order = np.random.default_rng([seed, k, n, 7]).permutation(len(entries))
        jobs = []
        for number, j in enumerate(order):
            is_def, i = entries[j]
            mask = str(d / "Label" / f"{number:04d}_label.PNG") if is_def else None
            jobs.append(_Job(seed, k - 1, i, is_def, str(d / f"{number:04d}.PNG"), mask, version))
        plans[split] = jobs
    return plans


def _map(jobs: list[_Job], workers: int, progress: bool) -> Iterator[Ellipse | None]:
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), desc="synth", unit="img", disable=not progress)
    try:
        if workers <= 1:
            for job in jobs:
                yield _run(job)
                bar.update()
            return
        # spawn, not fork: the caller may already run thread pools (ONNX Runtime, OpenVINO, torch)
        # and a forked child can inherit one of their locks held, then deadlock or crash.
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker) as pool:
            for result in pool.map(_run, jobs, chunksize=16):
                yield result
                bar.update()
    finally:
        bar.close()


#: Written beside a synthetic set: how it was made and the generator's fingerprint.
RECIPE = "synth.json"


def generator_fingerprint(seed: int = 0, version: int = 1) -> str:
    """A short hash of one defective image per texture: it changes whenever the generator's
    pixels or labels change, so a set written by an older generator (or another version) can be
    told apart."""
    import hashlib

    digest = hashlib.sha256()
    for texture in range(len(_MODELS)):
        img, ellipse = synth_image(seed, texture, 0, True, version)
        digest.update(img.tobytes())
        digest.update(repr(ellipse).encode())
    return digest.hexdigest()[:16]


def read_recipe(root: str | Path) -> dict[str, Any] | None:
    """The ``synth.json`` a synthetic set was written with, or None (a real DAGM copy, or a set
    from before recipes existed). An unreadable one is an error that names the file."""
    import json

    recipe = Path(root) / RECIPE
    if not recipe.is_file():
        return None
    try:
        made = json.loads(recipe.read_text())
        made["seed"], made["fingerprint"] = int(made["seed"]), str(made["fingerprint"])
        made["version"] = int(made.get("version", 1))  # sets from before versions: 1
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        msg = f"{recipe} is unreadable ({exc!r}); delete it, or the set, to regenerate"
        raise DagmError(msg) from exc
    return dict(made)


def stale_set(root: str | Path, version: int = 1) -> str | None:
    """Why the synthetic set at ``root`` is not what this generator writes at ``version`` (it
    records another version, or its fingerprint differs), or None: also for a real DAGM copy
    or a set without a recipe file."""
    made = read_recipe(root)
    if made is None:
        return None
    if made["version"] != version:
        return (
            f"{root} was written by version {made['version']} of the synthetic generator, "
            f"version {version} was asked for; delete it to regenerate, or use another folder"
        )
    now = generator_fingerprint(made["seed"], version)
    if made["fingerprint"] == now:
        return None
    return (
        f"{root} was written by another version of the synthetic generator or on another kind "
        f"of machine (fingerprint {made['fingerprint']}, this one writes {now} here: numpy's "
        "and OpenCV's SIMD paths round differently across CPUs); delete it to regenerate, or "
        "use another folder"
    )


def synthesize(
    out: str | Path,
    *,
    classes: int = 6,
    good: int = 1000,
    defective: int = 150,
    seed: int = 0,
    layout: str = "dev",
    workers: int | None = None,
    progress: bool = True,
    version: int = 1,
) -> float:
    """Write a synthetic DAGM set under ``out`` in the ``dev`` or ``10class`` layout.

    ``good``/``defective`` are per class (split half/half between Train and Test in the 10-class
    layout); ``version`` picks the generator (:data:`VERSIONS`). Returns the wall time in
    seconds. Every argument is checked before anything is
    written; ``out`` must not hold ``Class*`` entries or a ``synth.json`` already (nothing of
    the user's is replaced), and a run that fails or is interrupted removes what it created, so
    a rerun is not blocked by half a set.
    """
    _check_synth_args(classes, good, defective, seed, layout, workers, version)
    out = Path(out)
    _check_out(out)
    start = time.perf_counter()
    workers = workers if workers is not None else (os.cpu_count() or 1)
    made_out = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        msg = f"--out {out}: cannot create the folder: {exc.strerror or exc}"
        raise DagmError(msg) from exc
    try:
        _write_set(out, classes, good, defective, seed, layout, workers, progress, version)
    except BaseException as exc:
        _remove_partial(out, classes, made_out)
        if isinstance(exc, OSError) and not isinstance(exc, DagmError):
            msg = f"{out}: writing the set failed, nothing kept: {exc.strerror or exc}"
            raise DagmError(msg) from exc
        raise
    return time.perf_counter() - start


def _check_synth_args(
    classes: object,
    good: object,
    defective: object,
    seed: object,
    layout: object,
    workers: object,
    version: object = 1,
) -> None:
    """Every number checked before a folder exists, so a bad one leaves nothing behind."""
    if layout not in ("dev", "10class"):
        msg = f"layout must be 'dev' or '10class', got {layout!r}"
        raise DagmError(msg)
    if isinstance(version, bool) or not isinstance(version, int) or version not in VERSIONS:
        msg = f"version must be one of {', '.join(map(str, VERSIONS))}, got {version!r}"
        raise DagmError(msg)
    for name, value, low, high in (
        ("classes", classes, 1, len(_MODELS)),
        ("good", good, 0, None),
        ("defective", defective, 0, None),
        ("seed", seed, 0, 2**63 - 1),
        ("workers", 1 if workers is None else workers, 1, None),
    ):
        try:
            check_int(name, value, low, high)
        except PyInspectError as exc:  # the data commands report DagmErrors
            raise DagmError(str(exc)) from None


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        msg = f"--out {out}: exists and is not a folder"
        raise DagmError(msg)
    if not out.exists():
        return
    taken = sorted(p.name for p in out.iterdir() if p.name.lower().startswith("class"))
    if taken:
        msg = (
            f"{out} already holds Class folders ({', '.join(taken[:3])}); choose an empty directory"
        )
        raise DagmError(msg)
    if os.path.lexists(out / RECIPE):
        msg = (
            f"{out / RECIPE} already exists; synth never replaces it (it records how a set was"
            " made): choose an empty directory"
        )
        raise DagmError(msg)


def _remove_partial(out: Path, classes: int, made_out: bool) -> None:
    """Remove the Class folders this run made (``_check_out`` proved none were there before)."""
    import shutil

    for k in range(1, classes + 1):
        for name in (f"Class{k}", f"Class{k}_def"):
            shutil.rmtree(out / name, ignore_errors=True)
    if made_out:
        with contextlib.suppress(OSError):
            out.rmdir()  # only when empty: never anything the run did not make


def _write_set(
    out: Path,
    classes: int,
    good: int,
    defective: int,
    seed: int,
    layout: str,
    workers: int,
    progress: bool,
    version: int,
) -> None:
    import json

    from pyinspect.outputs import OutputError, write_new

    if layout == "dev":
        groups = {
            (k, ""): _plan_dev(out, k, good, defective, seed, version)
            for k in range(1, classes + 1)
        }
    else:
        groups = {
            (k, split): jobs
            for k in range(1, classes + 1)
            for split, jobs in _plan_split(out, k, good, defective, seed, version).items()
        }
    flat = [job for jobs in groups.values() for job in jobs]
    results = iter(list(_map(flat, workers, progress)))
    for (k, split), jobs in groups.items():
        done = [(job, next(results)) for job in jobs]
        if layout == "dev":
            lines = [
                format_dev_label(job.index, e) for job, e in done if job.defective and e is not None
            ]
            (out / f"Class{k}_def" / "labels.txt").write_text("\n".join(lines) + "\n")
        else:
            rows = ["1"]
            for number, (job, _) in enumerate(done):
                name = Path(job.path).name
                mask = Path(job.mask_path).name if job.mask_path else "0"
                rows.append(f"{number + 1}\t{int(job.defective)}\t{name}\t0\t{mask}")
            (out / f"Class{k}" / split / "Label" / "Labels.txt").write_text("\n".join(rows) + "\n")
    recipe = {
        "seed": seed,
        "classes": classes,
        "good": good,
        "defective": defective,
        "layout": layout,
        "version": version,
        "fingerprint": generator_fingerprint(seed, version),
    }
    try:  # last, atomically and never over another file: its presence means the set is whole
        write_new(out / RECIPE, (json.dumps(recipe, indent=1) + "\n").encode())
    except OutputError as exc:
        raise DagmError(str(exc)) from exc
