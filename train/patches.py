"""The paper's patch samplers (§3.3) and test grid (§4), over records from either DAGM source.

Samplers yield batches of arrays and never write patch files. "Contains the defect" is defined once,
in :func:`defect_core`: take the bounding box of the labelled defect region (the filled label
ellipse or the mask, clipped to the image); along each axis where it is wider than the patch, keep
only its central ``patch // 2`` pixels. A training patch contains the defect iff that core box lies
inside the patch. Small defects are therefore always whole inside their patches; large ones have at
least their central 112×112 (for 224 patches) inside.

The 9-patch test grid comes from the runtime (``pyinspect.tiling.patch_grid``), so training-time
evaluation and deployment share one geometry. numpy + OpenCV only (no torch).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from train.dagm import DagmError, DagmRecord, defect_bbox, defect_mask, read_image

__all__ = [
    "PATCH",
    "PatchBatch",
    "check_texture_repeat",
    "collect",
    "defect_core",
    "dihedral",
    "patch_position_range",
    "sample_aug",
    "sample_noaug",
    "split_records",
    "test_grid_patches",
]

PATCH = 224
Box = tuple[int, int, int, int]
Loader = Callable[[DagmRecord], npt.NDArray[np.uint8]]


class PatchBatch(NamedTuple):
    """A batch of training patches.

    ``record_index`` indexes the ``records`` sequence passed to the sampler; ``corner`` is each
    patch's top-left ``(x, y)`` in its image and ``orientation`` the rotation/flip applied
    (``k % 4`` quarter turns counter-clockwise, then a left-right flip if ``k >= 4``; 0 = none).
    """

    patches: npt.NDArray[np.uint8]  # [B, P, P]
    labels: npt.NDArray[np.int64]  # [B], 2 * texture + defective
    record_index: npt.NDArray[np.int64]  # [B]
    corner: npt.NDArray[np.int32]  # [B, 2] (x, y)
    orientation: npt.NDArray[np.int8]  # [B], 0..7


# ---------------------------------------------------------------------------------------------
# split


def split_records(
    records: Sequence[DagmRecord], *, test_fraction: float = 0.2, seed: int
) -> tuple[list[DagmRecord], list[DagmRecord]]:
    """Stratified random split: ``round(n * test_fraction)`` of every label go to test.

    Deterministic per ``seed``; both halves keep the input order. 6 × (1000 + 150) → 5,520 / 1,380.
    """
    if not 0.0 <= test_fraction <= 1.0:
        msg = f"test_fraction must be in [0, 1], got {test_fraction}"
        raise ValueError(msg)
    labels = np.array([r.label for r in records], dtype=np.int64)
    rng = np.random.default_rng(seed)
    is_test = np.zeros(len(records), dtype=bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        n_test = round(len(members) * test_fraction)
        is_test[rng.permutation(members)[:n_test]] = True
    train = [r for r, t in zip(records, is_test, strict=True) if not t]
    test = [r for r, t in zip(records, is_test, strict=True) if t]
    return train, test


# ---------------------------------------------------------------------------------------------
# geometry


def defect_core(mask: npt.NDArray[np.bool_], patch: int = PATCH) -> Box:
    """The box a patch must contain to "contain the defect" (see the module docstring).

    ``(x0, y0, x1, y1)``, end-exclusive. Raises when the defect region is empty inside the image.
    """
    box = defect_bbox(mask)
    if box is None:
        msg = "defect region is empty inside the image (label ellipse/mask outside the frame?)"
        raise DagmError(msg)
    x0, y0, x1, y1 = box
    keep = patch // 2
    out = []
    for lo, hi in ((x0, x1), (y0, y1)):
        if hi - lo > patch:
            mid = (lo + hi) // 2
            lo, hi = mid - keep // 2, mid - keep // 2 + keep
        out.append((lo, hi))
    (x0, x1), (y0, y1) = out
    return x0, y0, x1, y1


def patch_position_range(
    core: Box, shape: tuple[int, int], patch: int = PATCH
) -> tuple[int, int, int, int]:
    """Inclusive ranges ``(xmin, xmax, ymin, ymax)`` of patch corners whose patch holds ``core``."""
    h, w = shape
    x0, y0, x1, y1 = core
    xmin, xmax = max(0, x1 - patch), min(w - patch, x0)
    ymin, ymax = max(0, y1 - patch), min(h - patch, y0)
    if xmin > xmax or ymin > ymax:
        msg = f"no {patch}×{patch} patch inside a {w}×{h} image holds box {core}"
        raise DagmError(msg)
    return xmin, xmax, ymin, ymax


def _check_image(record: DagmRecord, img: np.ndarray, patch: int) -> None:
    if img.ndim != 2 or img.dtype != np.uint8:
        msg = f"{record.path}: expected uint8 H×W, got {img.dtype} {img.shape}"
        raise DagmError(msg)
    if img.shape[0] < patch or img.shape[1] < patch:
        msg = (
            f"{record.path}: image {img.shape[1]}×{img.shape[0]} is smaller than the {patch} patch"
        )
        raise DagmError(msg)


# ---------------------------------------------------------------------------------------------
# samplers


def _image_patches(
    record: DagmRecord,
    img: np.ndarray,
    count: int,
    rng: np.random.Generator,
    patch: int,
    grid_share: float = 0.0,
) -> list[tuple[int, int]]:
    """Top-left corners of ``count`` random patches; around the defect core when defective.

    A good image's patch lies anywhere with equal chance, so one at a corner of the image (a
    test grid has four) is rare, while a defect near the border forces its patch there: where a
    texture looks different at the corners (class 4: the cracks' direction and lighting, the
    dark one-pixel frame), the corners of good images then look like defects. ``grid_share`` of
    a good image's patches are instead taken at a random test-grid position
    (``test_grid_patches``), as deployed."""
    h, w = img.shape
    if record.defective:
        xmin, xmax, ymin, ymax = patch_position_range(
            defect_core(defect_mask(record, (h, w)), patch), (h, w), patch
        )
    else:
        xmin, xmax, ymin, ymax = 0, w - patch, 0, h - patch
    xs = rng.integers(xmin, xmax, size=count, endpoint=True)
    ys = rng.integers(ymin, ymax, size=count, endpoint=True)
    corners = list(zip(xs.tolist(), ys.tolist(), strict=True))
    if grid_share > 0 and not record.defective:
        from pyinspect.tiling import patch_grid

        grid = np.asarray(patch_grid(h, w, patch=patch))[:, :2].tolist()
        on_grid = rng.random(count) < grid_share
        picks = rng.integers(0, len(grid), size=count)
        corners = [
            (grid[k][0], grid[k][1]) if hit else c
            for c, hit, k in zip(corners, on_grid.tolist(), picks.tolist(), strict=True)
        ]
    return corners


def check_texture_repeat(texture_repeat: Sequence[int]) -> tuple[int, ...]:
    """``texture_repeat`` as a tuple of whole factors >= 1 (one per texture, class 1 first; empty:
    every texture at the sampler's own counts), or a ValueError naming the bad entry."""
    out = []
    for i, v in enumerate(texture_repeat):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
            msg = f"texture_repeat[{i}] (class {i + 1}) must be a whole number >= 1, got {v!r}"
            raise ValueError(msg)
        out.append(int(v))
    return tuple(out)


#: The 8 rotations/flips, and the 4 of them that keep a texture's axes where they were (identity,
#: half turn, left-right flip, up-down flip): a quarter turn makes vertical fibres horizontal.
ALL_ORIENTATIONS = tuple(range(8))
AXIS_PRESERVING = (0, 2, 4, 6)


def dihedral(p: np.ndarray, k: int) -> np.ndarray:
    """One of the 8 rotations/flips: ``k % 4`` quarter turns, then a left-right flip if k >= 4."""
    p = np.rot90(p, k % 4)
    return p[:, ::-1] if k >= 4 else p


def _sample(
    records: Sequence[DagmRecord],
    rng: np.random.Generator,
    *,
    good_per_image: int,
    defect_per_image: int,
    rotate: bool,
    orientations: int,
    members: Sequence[int] = ALL_ORIENTATIONS,
    batch_size: int,
    max_patches: int | None,
    window: int,
    loader: Loader,
    patch: int,
    grid_share: float = 0.0,
    texture_repeat: Sequence[int] = (),
) -> Iterator[PatchBatch]:
    repeat = check_texture_repeat(texture_repeat)
    if not 0.0 <= grid_share <= 1.0:
        msg = f"grid_share must be in 0..1, got {grid_share}"
        raise ValueError(msg)
    if batch_size < 1 or window < 1:
        msg = f"batch_size and window must be >= 1, got {batch_size} and {window}"
        raise ValueError(msg)
    members = tuple(int(k) for k in members)
    if not members or len(set(members)) != len(members) or not set(members) <= set(range(8)):
        msg = f"members must be distinct dihedral indices in 0..7, got {members}"
        raise ValueError(msg)
    if not 1 <= orientations <= len(members):
        msg = f"orientations must be in 1..{len(members)}, got {orientations}"
        raise ValueError(msg)
    limit = np.inf if max_patches is None else max_patches
    emitted = 0
    pending: list[tuple[np.ndarray, int, int, int, int, int]] = []
    order = rng.permutation(len(records))
    # Images are read once each, a window at a time; patches are shuffled within the window so a
    # batch mixes many images without holding the whole set in memory.
    for start in range(0, len(order), window):
        chunk: list[tuple[np.ndarray, int, int, int, int, int]] = []
        for i in order[start : start + window].tolist():
            rec = records[i]
            img = loader(rec)
            _check_image(rec, img, patch)
            count = defect_per_image if rec.defective else good_per_image
            if repeat:
                if rec.texture >= len(repeat):
                    msg = (
                        f"{rec.path}: texture_repeat has factors for classes 1-{len(repeat)}, "
                        f"but this image is of class {rec.texture + 1}"
                    )
                    raise ValueError(msg)
                count *= repeat[rec.texture]
            for x, y in _image_patches(rec, img, count, rng, patch, grid_share):
                crop = img[y : y + patch, x : x + patch]
                pick = rng.permutation(len(members))[:orientations].tolist() if rotate else []
                ks = [members[j] for j in pick] if rotate else [0]
                chunk += [(dihedral(crop, k), rec.label, i, x, y, k) for k in ks]
        pending += [chunk[j] for j in rng.permutation(len(chunk))]
        while len(pending) >= batch_size or (pending and start + window >= len(order)):
            take = int(min(batch_size, len(pending), limit - emitted))
            if take <= 0:
                return
            part, pending = pending[:take], pending[take:]
            yield PatchBatch(
                np.stack([q[0] for q in part]),
                np.array([q[1] for q in part], dtype=np.int64),
                np.array([q[2] for q in part], dtype=np.int64),
                np.array([(q[3], q[4]) for q in part], dtype=np.int32).reshape(-1, 2),
                np.array([q[5] for q in part], dtype=np.int8),
            )
            emitted += take
            if emitted >= limit:
                return


def sample_noaug(
    records: Sequence[DagmRecord],
    rng: np.random.Generator,
    *,
    batch_size: int = 256,
    max_patches: int | None = None,
    window: int = 512,
    loader: Loader = read_image,
    patch: int = PATCH,
    grid_share: float = 0.0,
) -> Iterator[PatchBatch]:
    """Transfer-learning data (§3.3): one random patch per good image, one defect-containing patch
    per defective image, no rotation or flip. Shuffled; one pass over ``records``.
    ``grid_share``: see ``_image_patches`` (0, the paper's sampler, by default)."""
    return _sample(
        records,
        rng,
        good_per_image=1,
        defect_per_image=1,
        rotate=False,
        orientations=1,
        batch_size=batch_size,
        max_patches=max_patches,
        window=window,
        loader=loader,
        patch=patch,
        grid_share=grid_share,
    )


def sample_aug(
    records: Sequence[DagmRecord],
    rng: np.random.Generator,
    *,
    good_per_image: int = 3,
    defect_per_image: int = 20,
    rotate_flip: bool = True,
    orientations: int = 1,
    members: Sequence[int] = ALL_ORIENTATIONS,
    batch_size: int = 256,
    max_patches: int | None = None,
    window: int = 256,
    loader: Loader = read_image,
    patch: int = PATCH,
    grid_share: float = 0.0,
    texture_repeat: Sequence[int] = (),
) -> Iterator[PatchBatch]:
    """Scratch-training data (§3.3): ``good_per_image`` random patches per good image and
    ``defect_per_image`` defect-containing patches per defective image; ``texture_repeat`` (one
    factor per texture, class 1 first) multiplies both counts for a texture a student finds hard.

    With ``rotate_flip`` every patch is emitted in ``orientations`` distinct random members of the
    rotations/flips in ``members`` (default all 8; 1: a fresh random orientation per pass; 8: all
    copies, the paper's enlarged set; ``AXIS_PRESERVING`` for textures whose orientation is part of
    their class). Without it, patches keep their orientation. Shuffled within windows of
    ``window`` images.
    """
    return _sample(
        records,
        rng,
        good_per_image=good_per_image,
        defect_per_image=defect_per_image,
        rotate=rotate_flip,
        orientations=orientations if rotate_flip else 1,
        members=members,
        batch_size=batch_size,
        max_patches=max_patches,
        window=window,
        loader=loader,
        patch=patch,
        grid_share=grid_share,
        texture_repeat=texture_repeat,
    )


def collect(batches: Iterator[PatchBatch]) -> PatchBatch:
    """Concatenate a (small) sampler run into one batch; for tests and little subsets."""
    parts = list(batches)
    if not parts:
        return PatchBatch(
            np.zeros((0, PATCH, PATCH), np.uint8),
            np.zeros(0, np.int64),
            np.zeros(0, np.int64),
            np.zeros((0, 2), np.int32),
            np.zeros(0, np.int8),
        )
    return PatchBatch(*(np.concatenate(field) for field in zip(*parts, strict=True)))


# ---------------------------------------------------------------------------------------------
# test grid


def test_grid_patches(
    record: DagmRecord, image: npt.NDArray[np.uint8] | None = None, *, patch: int = PATCH
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int32], npt.NDArray[np.int64]]:
    """The paper's test patches (§4): the runtime's covering grid (3×3 on 512×512).

    Returns ``(patches uint8 [N, P, P], boxes int32 [N, 4] (x, y, w, h), patch_labels int64 [N])``;
    a patch is labelled defective iff it overlaps any pixel of the labelled defect region.
    """
    from pyinspect.tiling import patch_grid

    img = read_image(record) if image is None else image
    _check_image(record, img, patch)
    boxes = np.asarray(patch_grid(img.shape[0], img.shape[1], patch=patch), dtype=np.int32)
    mask = defect_mask(record, img.shape[:2]) if record.defective else None
    patches = np.empty((len(boxes), patch, patch), np.uint8)
    labels = np.empty(len(boxes), np.int64)
    for n, (x, y, w, h) in enumerate(boxes.tolist()):
        patches[n] = img[y : y + h, x : x + w]
        hit = mask is not None and bool(mask[y : y + h, x : x + w].any())
        labels[n] = 2 * record.texture + int(hit)
    return patches, boxes, labels


test_grid_patches.__test__ = False  # type: ignore[attr-defined]  # not a pytest test
