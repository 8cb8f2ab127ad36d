"""Synthetic DAGM: six texture models, each with its own defect type, written in the real layouts.

Every image is a pure function of ``(seed, texture, index, defective)`` (:func:`synth_image`), so a
set can be regenerated bit for bit and any single image rebuilt without the others. Classes 1–3
follow statistics measured on real DAGM pixels (mean/std, grain, streak and cloud scales, defect
kind); classes 4–6 are made up to be distinct from them and from each other. Textures jitter per
image (brightness, contrast, orientation, scale) and defects are partly low contrast, so the
12-way task is learnable but not trivial.

numpy + OpenCV only: ``make demo`` runs this in the runtime venv (no torch, no scipy).
"""

from __future__ import annotations

import contextlib
import ctypes
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

__all__ = ["SIZE", "TEXTURES", "TextureInfo", "synth_image", "synthesize"]

SIZE = 512
F32 = npt.NDArray[Any]  # float32 throughout; cv2's stubs do not carry dtypes, so not spelled
Rng = np.random.Generator


@dataclass(frozen=True)
class TextureInfo:
    """What a synthetic class looks like, for the docs and the contact sheet."""

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


def synth_image(
    seed: int, texture: int, index: int, defective: bool
) -> tuple[npt.NDArray[np.uint8], Ellipse | None]:
    """One 512×512 uint8 image and its label ellipse (0-based, 2 dp; None when good).

    A pure function of its arguments; ``texture`` is 0-based (0..5).
    """
    if not 0 <= texture < len(_MODELS):
        msg = f"texture must be in 0..{len(_MODELS) - 1}, got {texture}"
        raise ValueError(msg)
    if seed < 0 or index < 0:
        msg = f"seed and index must be >= 0, got seed={seed} index={index}"
        raise ValueError(msg)
    rng = np.random.default_rng([seed, texture, index, int(defective)])
    img, ellipse = _MODELS[texture](rng, defective)
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


def _run(job: _Job) -> Ellipse | None:
    img, ellipse = synth_image(job.seed, job.texture, job.index, job.defective)
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


def _plan_dev(out: Path, k: int, good: int, defective: int, seed: int) -> list[_Job]:
    good_dir, def_dir = out / f"Class{k}", out / f"Class{k}_def"
    good_dir.mkdir(parents=True, exist_ok=True)
    def_dir.mkdir(parents=True, exist_ok=True)
    jobs = [
        _Job(seed, k - 1, i, False, str(good_dir / f"{i}.png"), None) for i in range(1, good + 1)
    ]
    jobs += [
        _Job(seed, k - 1, i, True, str(def_dir / f"{i}.png"), None) for i in range(1, defective + 1)
    ]
    return jobs


def _plan_split(out: Path, k: int, good: int, defective: int, seed: int) -> dict[str, list[_Job]]:
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
            jobs.append(_Job(seed, k - 1, i, is_def, str(d / f"{number:04d}.PNG"), mask))
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


def generator_fingerprint(seed: int = 0) -> str:
    """A short hash of one defective image per texture: it changes whenever the generator's
    pixels or labels change, so a set written by an older generator can be told apart."""
    import hashlib

    digest = hashlib.sha256()
    for texture in range(len(_MODELS)):
        img, ellipse = synth_image(seed, texture, 0, True)
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
    except (ValueError, KeyError, TypeError) as exc:
        msg = f"{recipe} is unreadable ({exc!r}); delete it, or the set, to regenerate"
        raise DagmError(msg) from exc
    return dict(made)


def stale_set(root: str | Path) -> str | None:
    """Why the synthetic set at ``root`` is not what this generator writes (its recorded
    fingerprint differs), or None: also for a real DAGM copy or a set without a recipe file."""
    made = read_recipe(root)
    if made is None:
        return None
    now = generator_fingerprint(made["seed"])
    if made["fingerprint"] == now:
        return None
    return (
        f"{root} was written by another version of the synthetic generator (fingerprint "
        f"{made['fingerprint']}, this one writes {now}); delete it to regenerate, or use "
        "another folder"
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
) -> float:
    """Write a synthetic DAGM set under ``out`` in the ``dev`` or ``10class`` layout.

    ``good``/``defective`` are per class (split half/half between Train and Test in the 10-class
    layout). Returns the wall time in seconds. Every argument is checked before anything is
    written; ``out`` must not hold ``Class*`` entries or a ``synth.json`` already (nothing of
    the user's is replaced), and a run that fails or is interrupted removes what it created, so
    a rerun is not blocked by half a set.
    """
    _check_synth_args(classes, good, defective, seed, layout, workers)
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
        _write_set(out, classes, good, defective, seed, layout, workers, progress)
    except BaseException as exc:
        _remove_partial(out, classes, made_out)
        if isinstance(exc, OSError) and not isinstance(exc, DagmError):
            msg = f"{out}: writing the set failed, nothing kept: {exc.strerror or exc}"
            raise DagmError(msg) from exc
        raise
    return time.perf_counter() - start


def _check_synth_args(
    classes: object, good: object, defective: object, seed: object, layout: object, workers: object
) -> None:
    """Every number checked before a folder exists, so a bad one leaves nothing behind."""
    if layout not in ("dev", "10class"):
        msg = f"layout must be 'dev' or '10class', got {layout!r}"
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
) -> None:
    import json

    from pyinspect.outputs import OutputError, write_new

    if layout == "dev":
        groups = {(k, ""): _plan_dev(out, k, good, defective, seed) for k in range(1, classes + 1)}
    else:
        groups = {
            (k, split): jobs
            for k in range(1, classes + 1)
            for split, jobs in _plan_split(out, k, good, defective, seed).items()
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
        "fingerprint": generator_fingerprint(seed),
    }
    try:  # last, atomically and never over another file: its presence means the set is whole
        write_new(out / RECIPE, (json.dumps(recipe, indent=1) + "\n").encode())
    except OutputError as exc:
        raise DagmError(str(exc)) from exc
