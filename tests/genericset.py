"""A small generic-layout dataset (``pyinspect.dataset``) built from the synthetic textures.

``build_generic_set(root)`` writes, per group, ``good`` good images and ``defective`` images of
each of two defect types: ``stain`` (the synthetic generator's own defect, with a PNG mask: the
filled label ellipse) and ``scratch`` (a dark line painted on a good texture, with a VOC XML
box). Sizes are mixed (300×260 and 512×512 crops of the 512×512 render) and the first good
image of every group is 200×300, narrower than the 224 patch, for the resize policy. Options: a
single-product set (no group level), 16-bit frames (uint16 PNG = 8-bit value × 257 and
``bit_depth: 16`` in ``dataset.json``). Every pixel is a function of the arguments.

Fixtures (session-scoped, built once per session; never modify their folders, copy them
first): tests/conftest.py registers this module as a plugin, so any test takes
``generic_set``, ``generic_set_single`` or ``generic_set_16bit`` by name.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import pytest

from train.dagm import draw_ellipse
from train.synth import SIZE, synth_image

__all__ = [
    "DEFECT_TYPES",
    "GROUPS",
    "GenericImage",
    "GenericSet",
    "build_generic_set",
    "generic_set",
    "generic_set_16bit",
    "generic_set_single",
    "snapshot",
]

#: group name -> the synthetic texture (0-based) it is rendered from
GROUPS: dict[str, int] = {"plate": 0, "weave": 2}
DEFECT_TYPES = ("scratch", "stain")  # scratch: VOC boxes; stain: masks
SIZES = ((300, 260), (512, 512))  # (W, H), alternating
NARROW = (200, 300)  # (W, H) of each group's first good image: below the 224 patch
PNG_FAST = [cv2.IMWRITE_PNG_COMPRESSION, 1]
Location = Literal["mask", "boxes"]


@dataclass(frozen=True)
class GenericImage:
    """One written image: its key (path relative to the root, POSIX) and what it is."""

    key: str
    group: str
    defect_type: str | None
    width: int
    height: int
    location: Location | None  # where its defect region is written; None for good images
    box: tuple[int, int, int, int] | None = None  # the VOC box, end-exclusive (x0, y0, x1, y1)


@dataclass(frozen=True)
class GenericSet:
    root: Path
    grouped: bool
    groups: tuple[str, ...]
    bit_depth: int
    images: tuple[GenericImage, ...]

    def count(self, group: str | None = None, defect_type: str | None = "*") -> int:
        """Images of ``group`` (all when None) with ``defect_type`` (None: good; "*": any)."""
        return sum(
            1
            for im in self.images
            if (group is None or im.group == group)
            and (defect_type == "*" or im.defect_type == defect_type)
        )


def snapshot(root: str | Path) -> dict[str, str]:
    """Every file under ``root`` (links not followed) and the SHA-256 of its bytes: equal
    before and after means nothing was added, removed or changed."""
    root = Path(root)
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def _crop(w: int, h: int, cx: float, cy: float) -> tuple[int, int]:
    """Top-left corner of a w×h window of the render, centred on (cx, cy) where it fits."""
    x0 = int(np.clip(round(cx - w / 2), 0, SIZE - w))
    y0 = int(np.clip(round(cy - h / 2), 0, SIZE - h))
    return x0, y0


def _write(path: Path, img: np.ndarray, bit_depth: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    out = img.astype(np.uint16) * 257 if bit_depth == 16 else img
    if not cv2.imwrite(str(path), out, PNG_FAST):
        msg = f"cannot write {path}"
        raise OSError(msg)


def _voc(boxes: list[tuple[int, int, int, int]], w: int, h: int) -> str:
    """VOC XML for end-exclusive pixel boxes (written 1-based inclusive, as VOC does)."""
    objects = "".join(
        f"<object><name>scratch</name><bndbox><xmin>{x0 + 1}</xmin><ymin>{y0 + 1}</ymin>"
        f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        for x0, y0, x1, y1 in boxes
    )
    return (
        f"<annotation><size><width>{w}</width><height>{h}</height><depth>1</depth></size>"
        f"{objects}</annotation>\n"
    )


def _scratch(img: np.ndarray, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """Paint a dark 2–3 px line on ``img`` in place; its box, end-exclusive, 3 px margin."""
    h, w = img.shape
    length = rng.uniform(40, 90)
    angle = rng.uniform(0, np.pi)
    dx, dy = length / 2 * np.cos(angle), length / 2 * np.sin(angle)
    cx = rng.uniform(abs(dx) + 8, w - abs(dx) - 8)
    cy = rng.uniform(abs(dy) + 8, h - abs(dy) - 8)
    p0, p1 = (round(cx - dx), round(cy - dy)), (round(cx + dx), round(cy + dy))
    value = max(0, int(img.mean()) - 70)
    cv2.line(img, p0, p1, value, int(rng.integers(2, 4)), cv2.LINE_AA)
    x0, x1 = sorted((p0[0], p1[0]))
    y0, y1 = sorted((p0[1], p1[1]))
    return max(0, x0 - 3), max(0, y0 - 3), min(w, x1 + 4), min(h, y1 + 4)


def build_generic_set(
    root: str | Path,
    *,
    grouped: bool = True,
    seed: int = 0,
    good: int = 8,
    defective: int = 4,
    bit_depth: Literal[8, 16] = 8,
) -> GenericSet:
    """Write the set under ``root`` (created; it must not hold anything yet) and describe it.

    ``grouped=False``: one product (the first group's texture) without the group level.
    ``good``/``defective``: images per group and per group × defect type."""
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        msg = f"{root} is not empty"
        raise FileExistsError(msg)
    if bit_depth not in (8, 16):
        msg = f"bit_depth must be 8 or 16, got {bit_depth}"
        raise ValueError(msg)
    root.mkdir(parents=True, exist_ok=True)
    groups = dict(GROUPS) if grouped else dict(list(GROUPS.items())[:1])
    images: list[GenericImage] = []
    for g, texture in groups.items():
        base = root / g if grouped else root
        prefix = f"{g}/" if grouped else ""
        rng = np.random.default_rng([seed, texture, 99])
        for i in range(good):
            w, h = NARROW if i == 0 else SIZES[i % 2]
            img, _ = synth_image(seed, texture, i, False)
            x0, y0 = _crop(w, h, SIZE / 2, SIZE / 2)
            _write(base / "good" / f"g{i:02d}.png", img[y0 : y0 + h, x0 : x0 + w], bit_depth)
            images.append(GenericImage(f"{prefix}good/g{i:02d}.png", g, None, w, h, None))
        for i in range(defective):
            w, h = SIZES[i % 2]
            img, ellipse = synth_image(seed, texture, i, True)
            assert ellipse is not None
            mask = np.zeros((SIZE, SIZE), np.uint8)
            draw_ellipse(mask, ellipse)
            x0, y0 = _crop(w, h, ellipse.cx, ellipse.cy)
            name = f"s{i:02d}"
            _write(base / "stain" / f"{name}.png", img[y0 : y0 + h, x0 : x0 + w], bit_depth)
            _write(base / "masks" / "stain" / f"{name}.png", mask[y0 : y0 + h, x0 : x0 + w], 8)
            images.append(GenericImage(f"{prefix}stain/{name}.png", g, "stain", w, h, "mask"))
        for i in range(defective):
            w, h = SIZES[(i + 1) % 2]
            img, _ = synth_image(seed, texture, 1000 + i, False)
            x0, y0 = _crop(w, h, SIZE / 2, SIZE / 2)
            crop = np.ascontiguousarray(img[y0 : y0 + h, x0 : x0 + w])
            box = _scratch(crop, rng)
            name = f"c{i:02d}"
            _write(base / "scratch" / f"{name}.png", crop, bit_depth)
            xml = base / "boxes" / "scratch" / f"{name}.xml"
            xml.parent.mkdir(parents=True, exist_ok=True)
            xml.write_text(_voc([box], w, h), encoding="utf-8")
            images.append(
                GenericImage(f"{prefix}scratch/{name}.png", g, "scratch", w, h, "boxes", box)
            )
    doc: dict[str, object] = {
        "name": "synthetic-parts",
        "notes": "written by tests/genericset.py from train.synth textures",
    }
    if grouped:
        doc["groups"] = list(groups)
    if bit_depth == 16:
        doc["bit_depth"] = 16
    (root / "dataset.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    return GenericSet(root, grouped, tuple(groups), bit_depth, tuple(images))


@pytest.fixture(scope="session")
def generic_set(tmp_path_factory: pytest.TempPathFactory) -> GenericSet:
    """Two groups × (8 good + 4 stain + 4 scratch), 8-bit. Read only: copy it to change it."""
    return build_generic_set(tmp_path_factory.mktemp("generic") / "parts")


@pytest.fixture(scope="session")
def generic_set_single(tmp_path_factory: pytest.TempPathFactory) -> GenericSet:
    """One product without the group level: 8 good + 4 stain + 4 scratch. Read only."""
    return build_generic_set(tmp_path_factory.mktemp("generic1") / "parts", grouped=False)


@pytest.fixture(scope="session")
def generic_set_16bit(tmp_path_factory: pytest.TempPathFactory) -> GenericSet:
    """``generic_set`` as uint16 PNGs (× 257) with ``bit_depth: 16``. Read only."""
    return build_generic_set(tmp_path_factory.mktemp("generic16") / "parts", bit_depth=16)
