"""``python -m train data import FORMAT SRC ROOT``: public inspection sets into the generic layout.

The source is only read: images are copied byte for byte, masks are written anew (0/255 PNG)
into ``ROOT/masks/<defect type>/``. ``ROOT`` must not exist or be empty, and may not lie inside
``SRC``. Every source file is read and checked before ``ROOT`` is made, so a refused import
writes nothing; a write that fails midway removes what it wrote. Each format documents what it
does with its set's quirks (docs/data.md, "Generic layout"); what the default keeps with a
warning, ``strict`` refuses.

numpy + OpenCV only, like the rest of ``train data``.
"""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from pyinspect.dataset import (
    DATASET_JSON,
    DatasetError,
    list_folder,
    load_dataset,
    require_folder,
)

__all__ = ["FORMATS", "ImportResult", "import_dagm", "import_ksdd", "import_mtd"]

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
KSDD_DEFECT = "defect"
DAGM_DEFECT = "defect"
_KOS_DIR = re.compile(r"^kos\d+$", re.IGNORECASE)
_KSDD_PART = re.compile(r"^(part\d+)(_label)?$", re.IGNORECASE)


@dataclass(frozen=True)
class ImportResult:
    """What an import wrote: images per class folder (``group/folder``) and its warnings."""

    root: Path
    counts: dict[str, int]
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Item:
    """One image to copy and, for a located defect, its mask already encoded as PNG."""

    source: Path
    dest: PurePosixPath  # relative to ROOT
    mask_dest: PurePosixPath | None = None
    mask_png: bytes | None = None


@dataclass
class _Plan:
    items: list[_Item]
    dataset_json: dict[str, Any]
    warnings: list[str]


# ---------------------------------------------------------------------------------------------
# reading the source


def _read_gray(path: Path, what: str) -> npt.NDArray[Any]:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        msg = f"{path}: {what} missing or unreadable"
        raise DatasetError(msg)
    if img.ndim == 3:
        code = cv2.COLOR_BGRA2GRAY if img.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        img = cv2.cvtColor(img, code)
    return img


def _image_shape(path: Path) -> tuple[int, int]:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        msg = f"{path}: cannot be read as an image"
        raise DatasetError(msg)
    return int(img.shape[0]), int(img.shape[1])


def _same_size(mask: npt.NDArray[Any], mask_path: Path, image: Path) -> None:
    h, w = _image_shape(image)
    if mask.shape[:2] != (h, w):
        msg = (
            f"{mask_path}: mask is {mask.shape[1]}×{mask.shape[0]}, its image {image.name} is "
            f"{w}×{h}"
        )
        raise DatasetError(msg)


def _encode(region: npt.NDArray[np.bool_], path: Path) -> bytes:
    ok, buf = cv2.imencode(".png", region.astype(np.uint8) * 255, [cv2.IMWRITE_PNG_COMPRESSION, 6])
    if not ok:
        msg = f"{path}: the mask could not be encoded"
        raise DatasetError(msg)
    return buf.tobytes()


def _refuse_if_strict(strict: bool, warnings: list[str], what: str) -> None:
    if strict and warnings:
        shown = "; ".join(warnings[:5]) + (
            f"; ... {len(warnings) - 5} more" if len(warnings) > 5 else ""
        )
        msg = f"{len(warnings)} {what} (--strict refuses them): {shown}"
        raise DatasetError(msg)


def _plan_mtd(src: Path, strict: bool) -> _Plan:
    """Magnetic Tile Defect (``MT_*/Imgs/*.jpg`` + same-stem ``.png`` grey-level masks), one
    product. A mask is thresholded at > 127. Four ``MT_Uneven`` images have empty masks: kept
    as image-level defective (no mask written, a warning each; train with ``--no-locations``)."""
    missing = [d for d in MTD_CLASSES if not (src / d / "Imgs").is_dir()]
    if missing:
        msg = (
            f"{src}: not a Magnetic Tile Defect copy: no {', '.join(d + '/Imgs' for d in missing)}"
        )
        raise DatasetError(msg)
    items: list[_Item] = []
    empty: list[Path] = []
    for folder, dtype in MTD_CLASSES.items():
        images = sorted(
            p
            for p in list_folder(src / folder / "Imgs")
            if p.is_file() and p.suffix.lower() == ".jpg"
        )
        if not images:
            msg = f"{src / folder / 'Imgs'}: no .jpg images"
            raise DatasetError(msg)
        for img in images:
            dest = PurePosixPath(dtype or "good", img.name)
            if dtype is None:
                items.append(_Item(img, dest))
                continue
            mpath = img.with_suffix(".png")
            m = _read_gray(mpath, "mask")
            _same_size(m, mpath, img)
            region = m > MTD_MASK_THRESHOLD
            if not region.any():
                empty.append(img)
                items.append(_Item(img, dest))
                continue
            mdest = PurePosixPath("masks", dtype, f"{img.stem}.png")
            items.append(_Item(img, dest, mdest, _encode(region, mpath)))
    warnings = [
        f"{p}: empty mask (no pixel > {MTD_MASK_THRESHOLD}); kept as image-level defective"
        for p in empty
    ]
    _refuse_if_strict(strict, warnings, "defective image(s) with an empty mask")
    notes = (
        "Magnetic Tile Defect, imported by `python -m train data import mtd`; masks thresholded "
        f"at > {MTD_MASK_THRESHOLD}. Image-level defective (empty source mask): "
        + (", ".join(f"{p.parent.parent.name}/{p.name}" for p in empty) or "none")
    )
    return _Plan(items, {"name": "magnetic-tile", "notes": notes}, warnings)


def _ksdd_root(src: Path) -> tuple[Path, list[Path]]:
    """The folder holding ``kosNN/``: SRC itself, or the one folder inside it (an unzip wrapper)."""
    subdirs = [p for p in list_folder(src) if p.is_dir()]
    for d in (src, *subdirs[:1]) if len(subdirs) == 1 else (src,):
        kos = [p for p in list_folder(d) if p.is_dir() and _KOS_DIR.match(p.name)]
        if kos:
            return d, kos
    msg = (
        f"{src}: not a KolektorSDD copy: no kosNN/ folders (expected kos01/Part0.jpg + "
        "kos01/Part0_label.bmp)"
    )
    raise DatasetError(msg)


def _plan_ksdd(src: Path, strict: bool) -> _Plan:
    """KolektorSDD (``kosNN/PartK.jpg`` + ``PartK_label.bmp``), one product. Stems repeat
    across ``kosNN``, so every file becomes ``kosNN_PartK``; a part is defective iff its label
    has any non-zero pixel (the mask is label > 0). Files that are neither are skipped with a
    warning."""
    base, kos_dirs = _ksdd_root(src)
    items: list[_Item] = []
    warnings: list[str] = []
    for kos in kos_dirs:
        images: dict[str, Path] = {}
        labels: dict[str, Path] = {}
        for p in list_folder(kos):
            m = _KSDD_PART.match(p.stem) if p.is_file() else None
            if m and m.group(2) is None and p.suffix.lower() in (".jpg", ".jpeg"):
                images[m.group(1).lower()] = p
            elif m and m.group(2) is not None and p.suffix.lower() == ".bmp":
                labels[m.group(1).lower()] = p
            else:
                warnings.append(f"{p}: not a PartK.jpg or PartK_label.bmp; skipped")
        for key in sorted(set(labels) - set(images)):
            warnings.append(f"{labels[key]}: a label without its image; skipped")
        for key in sorted(images, key=lambda k: int(k[4:])):
            img = images[key]
            if key not in labels:
                msg = f"{img}: its label {img.stem}_label.bmp is missing"
                raise DatasetError(msg)
            label = _read_gray(labels[key], "label")
            _same_size(label, labels[key], img)
            stem = f"{kos.name}_{img.stem}"
            region = label > 0
            if not region.any():
                items.append(_Item(img, PurePosixPath("good", stem + img.suffix.lower())))
                continue
            dest = PurePosixPath(KSDD_DEFECT, stem + img.suffix.lower())
            mdest = PurePosixPath("masks", KSDD_DEFECT, f"{stem}.png")
            items.append(_Item(img, dest, mdest, _encode(region, labels[key])))
    _refuse_if_strict(strict, warnings, "file(s) that are not parts")
    if not any(i.dest.parts[0] == "good" for i in items):
        msg = f"{base}: no good part (every label has a defect); the layout needs good/ images"
        raise DatasetError(msg)
    notes = (
        "KolektorSDD format, imported by `python -m train data import ksdd`; stems are "
        "kosNN_PartK; a part is defective iff its label has a non-zero pixel (mask = label > 0)."
    )
    return _Plan(items, {"name": "kolektorsdd", "notes": notes}, warnings)


def _plan_dagm(src: Path, strict: bool) -> _Plan:
    """DAGM 2007, either release (``train.dagm.load_dagm``): one group ``ClassK`` per class
    with good/ and defect type ``defect``; masks are the filled label ellipse (development
    release) or the mask file > 0 (10-class release). Stems are kept; the 10-class release's
    ``Train``/``Test`` reuse numbers, so there they become ``train_NNNN``/``test_NNNN``. A
    defective image whose region is empty inside the image is kept image-level with a warning."""
    from train.dagm import DagmError, defect_mask, load_dagm, read_image

    try:
        records = load_dagm(src)
    except DagmError as exc:
        raise DatasetError(str(exc)) from exc
    items: list[_Item] = []
    warnings: list[str] = []
    classes = sorted({r.texture for r in records})
    for t in classes:
        if not any(r.texture == t and not r.defective for r in records):
            msg = (
                f"{src}: Class{t + 1} has no good image; the generic layout needs good/ in "
                "every group"
            )
            raise DatasetError(msg)
    for r in records:
        group = f"Class{r.texture + 1}"
        stem = f"{r.split}_{r.path.stem}" if r.split else r.path.stem
        name = stem + r.path.suffix.lower()
        if not r.defective:
            items.append(_Item(r.path, PurePosixPath(group, "good", name)))
            continue
        dest = PurePosixPath(group, DAGM_DEFECT, name)
        try:
            img = read_image(r)
            region = defect_mask(r, img.shape)
        except DagmError as exc:
            raise DatasetError(str(exc)) from exc
        if not region.any():
            warnings.append(
                f"{r.path}: the defect region is empty inside the image; kept as image-level "
                "defective"
            )
            items.append(_Item(r.path, dest))
            continue
        mdest = PurePosixPath(group, "masks", DAGM_DEFECT, f"{stem}.png")
        items.append(_Item(r.path, dest, mdest, _encode(region, r.mask_path or r.path)))
    _refuse_if_strict(strict, warnings, "defective image(s) with an empty defect region")
    release = "10-class" if any(r.split for r in records) else "development"
    notes = (
        f"DAGM 2007 {release} release, imported by `python -m train data import dagm`; masks "
        + (
            "from the mask files (> 0); Train/Test merged, stems prefixed train_/test_."
            if release == "10-class"
            else "drawn from the label ellipses."
        )
    )
    doc = {"name": "dagm", "groups": [f"Class{t + 1}" for t in classes], "notes": notes}
    return _Plan(items, doc, warnings)


# ---------------------------------------------------------------------------------------------
# writing ROOT


def _check_root(src: Path, root: Path) -> None:
    """Refusals that need no reading: a missing SRC, ROOT inside SRC, ROOT in use."""
    require_folder(src)
    if root.resolve().is_relative_to(src.resolve()):
        msg = f"{root}: the output may not lie inside the source {src} (it is never modified)"
        raise DatasetError(msg)
    if root.exists() and not root.is_dir():
        msg = f"{root}: exists and is not a folder; nothing is replaced, choose another"
        raise DatasetError(msg)
    if root.is_dir() and any(root.iterdir()):
        msg = f"{root}: exists and is not empty; nothing is replaced, choose another folder"
        raise DatasetError(msg)


def _remove_written(root: Path, made_root: bool) -> None:
    """Undo a failed write: ROOT was new or empty, so everything in it is this import's."""
    if made_root:
        shutil.rmtree(root, ignore_errors=True)
        return
    for p in list(root.iterdir()) if root.is_dir() else []:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def _write(plan: _Plan, root: Path) -> None:
    dests = Counter(i.dest for i in plan.items)
    clash = [d for d, n in dests.items() if n > 1]
    if clash:  # a bug in a format's naming, never a silent overwrite
        msg = f"{root / clash[0]}: two source images map to this file"
        raise DatasetError(msg)
    made_root = not root.exists()
    try:
        root.mkdir(parents=True, exist_ok=True)
        made: set[PurePosixPath] = set()
        for item in plan.items:
            for rel in (item.dest, item.mask_dest):
                if rel is not None and rel.parent not in made:
                    (root / rel.parent).mkdir(parents=True, exist_ok=True)
                    made.add(rel.parent)
            shutil.copyfile(item.source, root / item.dest)
            if item.mask_dest is not None and item.mask_png is not None:
                (root / item.mask_dest).write_bytes(item.mask_png)
        text = json.dumps(plan.dataset_json, indent=1) + "\n"
        (root / DATASET_JSON).write_text(text, encoding="utf-8")
    except BaseException as exc:
        _remove_written(root, made_root)
        if isinstance(exc, OSError):
            msg = f"{root}: writing the import failed, nothing kept: {exc.strerror or exc}"
            raise DatasetError(msg) from exc
        raise


def _run(
    plan_of: Callable[[Path, bool], _Plan], src: str | Path, root: str | Path, strict: bool
) -> ImportResult:
    src, root = Path(src), Path(root)
    _check_root(src, root)
    plan = plan_of(src, strict)
    _write(plan, root)
    ds = load_dataset(root, defect_types="keep", strict=True)  # the importer's own check
    counts = Counter("/".join(s.path.parts[:-1]) for s in ds.samples)
    return ImportResult(root, dict(sorted(counts.items())), plan.warnings)


def import_mtd(src: str | Path, root: str | Path, *, strict: bool = False) -> ImportResult:
    """Magnetic Tile Defect into ``root`` (see :func:`_plan_mtd` for the policy)."""
    return _run(_plan_mtd, src, root, strict)


def import_ksdd(src: str | Path, root: str | Path, *, strict: bool = False) -> ImportResult:
    """A KolektorSDD-format tree into ``root`` (see :func:`_plan_ksdd`)."""
    return _run(_plan_ksdd, src, root, strict)


def import_dagm(src: str | Path, root: str | Path, *, strict: bool = False) -> ImportResult:
    """A DAGM 2007 tree, either release, into ``root`` (see :func:`_plan_dagm`)."""
    return _run(_plan_dagm, src, root, strict)


FORMATS: dict[str, Callable[..., ImportResult]] = {
    "mtd": import_mtd,
    "ksdd": import_ksdd,
    "dagm": import_dagm,
}


def describe(result: ImportResult) -> Iterable[str]:
    """The lines the CLI prints after an import."""
    total = sum(result.counts.values())
    yield f"imported {total} images into {result.root}"
    for folder, n in result.counts.items():
        yield f"  {folder:<24}{n:>6}"
