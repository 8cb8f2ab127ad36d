"""``python -m train data import FORMAT SRC ROOT``: public inspection sets into the generic layout.

The source is only read: images are copied byte for byte, masks are written anew (thresholded
to 0/255) into ``ROOT/masks/<defect type>/``. ``ROOT`` must not exist or be empty, and may not
lie inside ``SRC``. Each format documents what it does with the set's quirks.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np

from pyinspect.dataset import DATASET_JSON, DatasetError

__all__ = ["FORMATS", "import_mtd"]

#: MTD's folder per class -> the defect type it becomes (None = good)
MTD_CLASSES = {
    "MT_Free": None,
    "MT_Blowhole": "blowhole",
    "MT_Break": "break",
    "MT_Crack": "crack",
    "MT_Fray": "fray",
    "MT_Uneven": "uneven",
}
MTD_MASK_THRESHOLD = 127  # the masks are anti-aliased grey levels; > 127 is the defect


def _prepare_root(src: Path, root: Path) -> None:
    if not src.is_dir():
        msg = f"{src}: no such folder"
        raise DatasetError(msg)
    if root.resolve().is_relative_to(src.resolve()):
        msg = f"{root}: the output may not lie inside the source {src} (it is never modified)"
        raise DatasetError(msg)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        msg = f"{root}: exists and is not an empty folder; nothing is replaced, choose another"
        raise DatasetError(msg)
    root.mkdir(parents=True, exist_ok=True)


def import_mtd(src: Path, root: Path, *, strict: bool = False) -> dict[str, int]:
    """Magnetic Tile Defect (``MT_*/Imgs/*.jpg`` + same-stem ``.png`` masks) as one product.

    Four ``MT_Uneven`` images have empty masks: by default they are kept as image-level
    defective (no mask written, a warning each; train with ``--no-locations``); ``strict``
    refuses them."""
    missing = [d for d in MTD_CLASSES if not (src / d / "Imgs").is_dir()]
    if missing:
        msg = (
            f"{src}: not a Magnetic Tile Defect copy: no {', '.join(d + '/Imgs' for d in missing)}"
        )
        raise DatasetError(msg)
    empty: list[Path] = []
    for folder, dtype in MTD_CLASSES.items():
        if dtype is None:
            continue
        for img in sorted((src / folder / "Imgs").glob("*.jpg")):
            m = cv2.imread(str(img.with_suffix(".png")), cv2.IMREAD_GRAYSCALE)
            if m is None:
                msg = f"{img.with_suffix('.png')}: mask missing or unreadable"
                raise DatasetError(msg)
            if not (m > MTD_MASK_THRESHOLD).any():
                empty.append(img)
    if empty and strict:
        names = ", ".join(str(p) for p in empty)
        msg = f"{len(empty)} defective image(s) with an empty mask (--strict): {names}"
        raise DatasetError(msg)
    _prepare_root(src, root)
    counts: dict[str, int] = {}
    for folder, dtype in MTD_CLASSES.items():
        out = root / (dtype or "good")
        out.mkdir()
        n = 0
        for img in sorted((src / folder / "Imgs").glob("*.jpg")):
            shutil.copyfile(img, out / img.name)
            n += 1
            if dtype is None or img in empty:
                continue
            m = cv2.imread(str(img.with_suffix(".png")), cv2.IMREAD_GRAYSCALE)
            mdir = root / "masks" / dtype
            mdir.mkdir(parents=True, exist_ok=True)
            binary = np.where(m > MTD_MASK_THRESHOLD, 255, 0).astype(np.uint8)
            if not cv2.imwrite(str(mdir / f"{img.stem}.png"), binary):
                msg = f"{mdir / img.stem}.png: could not be written"
                raise DatasetError(msg)
        counts[dtype or "good"] = n
    for img in empty:
        print(f"warning: {img}: empty mask; kept as image-level defective", file=sys.stderr)
    notes = (
        "Magnetic Tile Defect, imported by `python -m train data import mtd`; masks thresholded "
        f"at > {MTD_MASK_THRESHOLD}. Image-level defective (empty source mask): "
        + (", ".join(f"{p.parent.parent.name}/{p.name}" for p in empty) or "none")
    )
    (root / DATASET_JSON).write_text(
        json.dumps({"name": "magnetic-tile", "notes": notes}, indent=1) + "\n", encoding="utf-8"
    )
    return counts


FORMATS = {"mtd": import_mtd}
