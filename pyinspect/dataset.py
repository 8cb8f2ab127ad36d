"""The generic inspection dataset layout: any product's good and defective images, by folder.

::

    ROOT/<group>/good/*.png|jpg|bmp|tif          group = product / texture / camera view
    ROOT/<group>/<defect type>/*.png ...          one folder per defect type
    ROOT/<group>/masks/<defect type>/<stem>.png   optional: non-zero pixels = defect
    ROOT/<group>/boxes/<defect type>/<stem>.xml   optional: VOC XML boxes instead of masks
    ROOT/dataset.json                             optional: group order, mask rule, notes

A single-product set may leave out the ``<group>`` level (``ROOT/good/`` ...). The class table
is group × {good, defect type}, or with ``defect_types="merge"`` (the default) one "defective"
class per group. The reader lives in the runtime (numpy + OpenCV only) because
``pyinspect evaluate`` and ``pyinspect calibrate`` need it without torch; training reads the same
records. Problems are collected with the file they concern, so ``train data check`` can list all
of them at once; :func:`load_dataset` with ``strict=True`` raises them together.
"""

from __future__ import annotations

import json
import math
import os
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt

from pyinspect.errors import PyInspectError, check_choice
from pyinspect.inputs import IMAGE_SUFFIXES

__all__ = [
    "DEFECT_TYPE_MODES",
    "ClassEntry",
    "Dataset",
    "DatasetError",
    "Problem",
    "Sample",
    "defect_mask",
    "is_junk",
    "list_folder",
    "load_dataset",
    "read_boxes",
    "read_image",
    "read_split",
    "require_folder",
    "split_samples",
    "write_split",
]

GOOD = "good"
MASKS = "masks"
BOXES = "boxes"
RESERVED = frozenset({GOOD, MASKS, BOXES})
DATASET_JSON = "dataset.json"
SPLIT_JSON = "split.json"
MERGED_DEFECT = "defective"
DEFECT_TYPE_MODES = ("merge", "keep")
DATASET_KEYS = frozenset({"name", "groups", "defect_types", "mask_threshold", "bit_depth", "notes"})
JUNK_NAMES = frozenset({"thumbs.db", "desktop.ini", ".ds_store", "__macosx"})
XML_SUFFIXES = frozenset({".xml"})
SPLITS = ("train", "val", "test")
DefectTypes = Literal["merge", "keep"]


class DatasetError(PyInspectError, ValueError):
    """A dataset tree, ``dataset.json`` or split file that cannot be used; names the file."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the dataset, with the file or folder it concerns."""

    path: Path
    what: str

    def __str__(self) -> str:
        return f"{self.path}: {self.what}"


@dataclass(frozen=True)
class ClassEntry:
    """One output column of a model trained on the set."""

    name: str
    group: int
    defective: bool
    defect_type: str | None  # None for good; the type, or "defective" when merged


@dataclass(frozen=True)
class Sample:
    """One image. ``label`` is its column in the class table; ``texture`` (the group index) is
    the name the runtime's result uses for it."""

    path: Path
    group: int
    defect_type: str | None  # the folder's defect type, None for good images
    label: int
    mask_path: Path | None = None
    boxes_path: Path | None = None

    @property
    def defective(self) -> bool:
        return self.defect_type is not None

    @property
    def texture(self) -> int:
        return self.group

    @property
    def has_location(self) -> bool:
        return self.mask_path is not None or self.boxes_path is not None

    @property
    def key(self) -> str:
        """The sample's identity inside the set: its path relative to the root, POSIX style."""
        return self.path.as_posix()


@dataclass
class Dataset:
    """What :func:`load_dataset` found: the class table, the samples and every problem."""

    root: Path
    name: str
    groups: list[str]
    defect_types: dict[str, list[str]]  # per group, sorted
    classes: list[ClassEntry]
    samples: list[Sample]
    mode: DefectTypes
    grouped: bool  # False: the single-product layout (no <group> level)
    mask_threshold: int = 0
    bit_depth: int | None = None
    notes: str | None = None
    problems: list[Problem] = field(default_factory=list)
    skipped: list[Problem] = field(default_factory=list)  # unreadable / non-image files

    def absolute(self, sample: Sample) -> Path:
        return self.root / sample.path

    def class_counts(self) -> Counter[int]:
        return Counter(s.label for s in self.samples)

    def class_name(self, label: int) -> str:
        return self.classes[label].name

    def by_key(self) -> dict[str, Sample]:
        return {s.key: s for s in self.samples}


# ---------------------------------------------------------------------------------------------
# tree


def is_junk(p: Path) -> bool:
    """System litter (``Thumbs.db``, ``.DS_Store``, dot files, ``__MACOSX``): never data."""
    name = p.name.lower()
    return name in JUNK_NAMES or name.startswith((".", "._"))


def require_folder(path: Path) -> None:
    """A :class:`DatasetError` naming ``path`` unless it is an existing folder."""
    if not path.exists():
        msg = f"{path}: no such folder"
        raise DatasetError(msg)
    if not path.is_dir():
        msg = f"{path}: not a folder"
        raise DatasetError(msg)


def list_folder(d: Path, *, junk: bool = False) -> list[Path]:
    """A folder's entries sorted by name, without :func:`is_junk` ones unless ``junk``; a
    folder that cannot be listed is a :class:`DatasetError` naming it."""
    try:
        return sorted((p for p in d.iterdir() if junk or not is_junk(p)), key=lambda p: p.name)
    except OSError as exc:
        msg = f"{d}: cannot list the folder ({exc.strerror or exc})"
        raise DatasetError(msg) from exc


def _dirs(d: Path) -> dict[str, Path]:
    return {p.name: p for p in list_folder(d) if p.is_dir()}


def _files(d: Path, suffixes: frozenset[str], what: str, skipped: list[Problem]) -> list[Path]:
    """The files of ``d`` with one of ``suffixes`` (any case); everything else, system files
    (``Thumbs.db``, ``._*``) included, is counted in ``skipped`` with the reason."""
    out = []
    for p in list_folder(d, junk=True):
        if is_junk(p):
            skipped.append(Problem(p, "system file, not read"))
        elif p.is_dir():
            skipped.append(Problem(p, f"a folder inside a {what} folder is not read"))
        elif p.suffix.lower() in suffixes:
            out.append(p)
        else:
            kind = "a VOC .xml file" if suffixes == XML_SUFFIXES else "an image file"
            skipped.append(Problem(p, f"not {kind} ({p.suffix or 'no suffix'})"))
    return out


def _image_files(d: Path, skipped: list[Problem]) -> list[Path]:
    return _files(d, IMAGE_SUFFIXES, "class", skipped)


def _locations(
    d: Path, suffixes: frozenset[str], kind: str, problems: list[Problem], skipped: list[Problem]
) -> dict[str, Path]:
    """Stem -> file of a ``masks/<type>`` or ``boxes/<type>`` folder (suffix in any case); two
    files of one stem are a problem, since which one is meant cannot be told."""
    index: dict[str, Path] = {}
    if not d.is_dir():
        return index
    for f in _files(d, suffixes, kind, skipped):
        if f.stem in index:
            problems.append(
                Problem(f, f"two {kind} files for the stem {f.stem!r} (also {index[f.stem].name})")
            )
            continue
        index[f.stem] = f
    return index


def class_table(
    groups: Sequence[str], defect_types: dict[str, list[str]], mode: DefectTypes
) -> list[ClassEntry]:
    """Group × good/defect type (``keep``) or group × good/defective (``merge``), in group order
    and, within a group, good first then the defect types sorted."""
    table = []
    for gi, g in enumerate(groups):
        prefix = f"{g} " if len(groups) > 1 else ""
        table.append(ClassEntry(f"{prefix}good".strip(), gi, False, None))
        if mode == "merge":
            if defect_types.get(g):
                table.append(ClassEntry(f"{prefix}defective".strip(), gi, True, MERGED_DEFECT))
        else:
            for t in defect_types.get(g, []):
                table.append(ClassEntry(f"{prefix}{t}".strip(), gi, True, t))
    return table


def _read_dataset_json(root: Path) -> dict[str, Any]:
    path = root / DATASET_JSON
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        msg = f"{path}: not valid JSON ({exc})"
        raise DatasetError(msg) from exc
    if not isinstance(doc, dict):
        msg = f"{path}: expected a JSON object, got {type(doc).__name__}"
        raise DatasetError(msg)
    unknown = sorted(set(doc) - DATASET_KEYS)
    if unknown:
        msg = f"{path}: unknown keys {unknown}; known: {sorted(DATASET_KEYS)}"
        raise DatasetError(msg)
    return doc


def _check_dataset_json(
    root: Path, doc: dict[str, Any], groups: list[str], types: dict[str, list[str]]
) -> list[str]:
    """The group order ``dataset.json`` asks for, after checking it agrees with the folders."""
    path = root / DATASET_JSON
    order = groups
    if "groups" in doc:
        want = doc["groups"]
        if not isinstance(want, list) or not all(isinstance(g, str) for g in want):
            msg = f"{path}: groups: expected a list of folder names"
            raise DatasetError(msg)
        if sorted(want) != sorted(groups):
            msg = (
                f"{path}: groups {want} contradict the folders found {groups} "
                f"(missing: {sorted(set(want) - set(groups))}, "
                f"not listed: {sorted(set(groups) - set(want))})"
            )
            raise DatasetError(msg)
        order = list(want)
    if "defect_types" in doc:
        want_t = doc["defect_types"]
        if not isinstance(want_t, dict):
            msg = f"{path}: defect_types: expected an object group -> list of folder names"
            raise DatasetError(msg)
        single = len(groups) == 1 and len(want_t) == 1
        unknown = [] if single else sorted(set(want_t) - set(groups))
        if unknown:
            msg = f"{path}: defect_types names groups {unknown} that have no folder; {groups}"
            raise DatasetError(msg)
        for g in groups:
            listed = want_t.get(g)
            if listed is None and single:
                listed = next(iter(want_t.values()))
            if listed is not None and (
                not isinstance(listed, list) or not all(isinstance(t, str) for t in listed)
            ):
                msg = f"{path}: defect_types of {g!r}: expected a list of folder names"
                raise DatasetError(msg)
            if listed is not None and sorted(listed) != types.get(g, []):
                msg = (
                    f"{path}: defect_types of {g!r} are {sorted(listed)}, the folders hold "
                    f"{types.get(g, [])}"
                )
                raise DatasetError(msg)
    for key in ("name", "notes"):
        if key in doc and not isinstance(doc[key], str):
            msg = f"{path}: {key}: expected a string, got {type(doc[key]).__name__}"
            raise DatasetError(msg)
    for key, lo, hi in (("mask_threshold", 0, 65534), ("bit_depth", 8, 16)):
        if key in doc:
            v = doc[key]
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                msg = f"{path}: {key}: expected an integer in [{lo}, {hi}], got {v!r}"
                raise DatasetError(msg)
    if "bit_depth" in doc and doc["bit_depth"] not in (8, 10, 12, 16):
        msg = f"{path}: bit_depth: expected 8, 10, 12 or 16, got {doc['bit_depth']}"
        raise DatasetError(msg)
    return order


def is_generic_root(root: Path) -> bool:
    """Whether ``root`` is laid out as this module reads it (``good/`` at the root or in a
    group folder; a group folder without one is then a problem :func:`load_dataset` names)."""
    if (root / GOOD).is_dir():
        return True
    subs = list(_dirs(root).values()) if root.is_dir() else []
    return any((d / GOOD).is_dir() for d in subs)


def load_dataset(
    root: str | os.PathLike[str],
    *,
    defect_types: str = "merge",
    strict: bool = True,
) -> Dataset:
    """Read the tree at ``root`` (see the module docstring). Sample paths are relative to
    ``root``. ``strict``: raise one :class:`DatasetError` listing every problem; otherwise they
    are returned in ``Dataset.problems`` (what ``train data check`` prints)."""
    mode = check_choice("defect_types", defect_types, DEFECT_TYPE_MODES, DatasetError)
    root = Path(root)
    require_folder(root)
    doc = _read_dataset_json(root)
    problems: list[Problem] = []
    skipped: list[Problem] = []
    grouped = not (root / GOOD).is_dir()
    if grouped:
        group_dirs = _dirs(root)
        if not group_dirs:
            msg = (
                f"{root}: no good/ folder and no group folders; expected ROOT/good/ and "
                "ROOT/<defect type>/, or ROOT/<group>/good/ (see docs/data.md)"
            )
            raise DatasetError(msg)
        for name, d in group_dirs.items():
            if name in RESERVED:
                problems.append(Problem(d, f"{name}/ at the root of a grouped layout"))
            elif not (d / GOOD).is_dir():
                problems.append(Problem(d, "group folder without a good/ folder"))
        group_dirs = {
            n: d for n, d in group_dirs.items() if n not in RESERVED and (d / GOOD).is_dir()
        }
        if not group_dirs:
            msg = f"{root}: no group folder holds a good/ folder (see docs/data.md)"
            raise DatasetError(msg)
    else:
        group_dirs = {str(doc.get("name") or root.resolve().name or "product"): root}
    types = {g: sorted(n for n in _dirs(d) if n not in RESERVED) for g, d in group_dirs.items()}
    groups = _check_dataset_json(root, doc, sorted(group_dirs), types)
    classes = class_table(groups, types, mode)  # type: ignore[arg-type]
    column = {
        (c.group, c.defect_type if mode == "keep" else c.defective): i
        for i, c in enumerate(classes)
    }
    samples: list[Sample] = []
    for gi, g in enumerate(groups):
        gdir = group_dirs[g]
        for folder in [GOOD, *types[g]]:
            d = gdir / folder
            files = _image_files(d, skipped)
            dtype = None if folder == GOOD else folder
            masks: dict[str, Path] = {}
            boxes: dict[str, Path] = {}
            if dtype is not None:
                masks = _locations(gdir / MASKS / dtype, IMAGE_SUFFIXES, "mask", problems, skipped)
                boxes = _locations(gdir / BOXES / dtype, XML_SUFFIXES, "boxes", problems, skipped)
            if not files:
                problems.append(Problem(d, "empty class folder (no image files)"))
            stems: dict[str, Path] = {}
            for p in files:
                if p.stem in stems:
                    problems.append(
                        Problem(
                            p, f"duplicate stem {p.stem!r} in one class (also {stems[p.stem].name})"
                        )
                    )
                    continue
                stems[p.stem] = p
                m, b = masks.get(p.stem), boxes.get(p.stem)
                key = (gi, dtype) if mode == "keep" else (gi, dtype is not None)
                samples.append(
                    Sample(
                        p.relative_to(root),
                        gi,
                        dtype,
                        column[key],
                        m.relative_to(root) if m is not None else None,
                        b.relative_to(root) if b is not None else None,
                    )
                )
            for kind, index in (("mask", masks), ("boxes", boxes)):
                for stem, f in index.items():
                    if stem not in stems:
                        problems.append(Problem(f, f"{kind} file without an image of that stem"))
        for kind in (MASKS, BOXES):
            for t, d in _dirs(gdir / kind).items() if (gdir / kind).is_dir() else []:
                if t not in types[g]:
                    problems.append(Problem(d, f"{kind}/ for {t!r}, which has no image folder"))
    ds = Dataset(
        root=root,
        name=str(doc.get("name") or root.resolve().name),
        groups=groups,
        defect_types=types,
        classes=classes,
        samples=samples,
        mode=mode,  # type: ignore[arg-type]
        grouped=grouped,
        mask_threshold=int(doc.get("mask_threshold", 0)),
        bit_depth=doc.get("bit_depth"),
        notes=doc.get("notes"),
        problems=problems,
        skipped=skipped,
    )
    if strict and problems:
        raise DatasetError(problem_text(root, problems))
    return ds


def problem_text(root: Path, problems: Sequence[Problem], limit: int = 20) -> str:
    lines = [f"{root}: {len(problems)} problem(s) in the dataset:"]
    lines += [f"  {p}" for p in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"  ... and {len(problems) - limit} more (`python -m train data check`)")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# pixels and locations


def read_image(
    path: str | os.PathLike[str], *, gray: bool = False
) -> npt.NDArray[np.uint8] | npt.NDArray[np.uint16]:
    """The image as stored: uint8 or uint16, H×W or H×W×3 (BGR); ``gray`` converts colour."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        msg = f"{path}: cannot be read as an image"
        raise DatasetError(msg)
    if img.dtype not in (np.uint8, np.uint16):
        msg = f"{path}: unsupported pixel type {img.dtype} (expected 8- or 16-bit)"
        raise DatasetError(msg)
    if img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if gray and img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    return np.ascontiguousarray(img)


def read_boxes(path: str | os.PathLike[str]) -> list[tuple[int, int, int, int]]:
    """``(x0, y0, x1, y1)`` end-exclusive pixel boxes of a VOC XML file (1-based inclusive
    ``xmin..xmax`` as VOC writes them)."""
    try:
        tree = ET.parse(path)
    except (OSError, ET.ParseError) as exc:
        msg = f"{path}: not a readable VOC XML file ({exc})"
        raise DatasetError(msg) from exc
    boxes = []
    for n, obj in enumerate(tree.getroot().iter("object")):
        bb = obj.find("bndbox")
        if bb is None:
            msg = f"{path}: object {n} has no <bndbox>"
            raise DatasetError(msg)
        vals = []
        for tag in ("xmin", "ymin", "xmax", "ymax"):
            el = bb.find(tag)
            try:
                vals.append(float(el.text or "") if el is not None else math.nan)
            except ValueError:
                vals.append(math.nan)
            if not math.isfinite(vals[-1]):
                msg = f"{path}: object {n}: <{tag}> missing or not a number"
                raise DatasetError(msg)
        x0, y0, x1, y1 = vals
        if x1 < x0 or y1 < y0:
            msg = f"{path}: object {n}: xmax/ymax below xmin/ymin ({vals})"
            raise DatasetError(msg)
        boxes.append((round(x0) - 1, round(y0) - 1, round(x1), round(y1)))
    if not boxes:
        msg = f"{path}: no <object> boxes"
        raise DatasetError(msg)
    return boxes


def defect_mask(
    ds: Dataset, sample: Sample, shape: tuple[int, int]
) -> npt.NDArray[np.bool_] | None:
    """The labelled defect region as bool H×W (the mask's pixels above the set's threshold, or
    the filled boxes); all False for a good image; None when a defective image has no location.
    Raises when the mask's size differs from the image or the region is empty."""
    h, w = shape
    if not sample.defective:
        return np.zeros((h, w), dtype=bool)
    if sample.mask_path is not None:
        path = ds.absolute(sample)
        mpath = ds.root / sample.mask_path
        mask = read_image(mpath, gray=True)
        if mask.shape != (h, w):
            msg = (
                f"{mpath}: mask is {mask.shape[1]}×{mask.shape[0]}, its image {path.name} "
                f"is {w}×{h}"
            )
            raise DatasetError(msg)
        region = mask > ds.mask_threshold
    elif sample.boxes_path is not None:
        region = np.zeros((h, w), dtype=bool)
        for x0, y0, x1, y1 in read_boxes(ds.root / sample.boxes_path):
            region[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)] = True
    else:
        return None
    if not region.any():
        if sample.mask_path is not None:
            why = f"no pixel above the mask threshold {ds.mask_threshold}"
        else:
            why = f"the boxes cover no pixel of the {w}×{h} image"
        src = ds.root / (sample.mask_path or sample.boxes_path)  # type: ignore[operator]
        msg = f"{src}: the defect region is empty ({why})"
        raise DatasetError(msg)
    return region


# ---------------------------------------------------------------------------------------------
# split


def split_samples(
    ds: Dataset, *, seed: int, val: float = 0.1, test: float = 0.2
) -> dict[str, list[Sample]]:
    """Stratified train/val/test split per class: ``round(n · test)`` and ``round(n · val)``
    of every class (at least one each when the fraction is > 0), the rest train. Raises naming
    the class and its count when a class is too small for every part to get one image."""
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        msg = f"split fractions val={val}, test={test} must be in [0, 1) and sum below 1"
        raise DatasetError(msg)
    need = 1 + (val > 0) + (test > 0)
    counts = ds.class_counts()  # a class of the table without images counts 0, not absent
    small = [(c.name, counts[i]) for i, c in enumerate(ds.classes) if counts[i] < need]
    if small:
        names = ", ".join(f"{name!r} has {n}" for name, n in small)
        msg = f"{ds.root}: too few images for a train/val/test split ({need} per class): {names}"
        raise DatasetError(msg)
    rng = np.random.default_rng(seed)
    parts: dict[str, list[Sample]] = {s: [] for s in SPLITS}
    labels = np.array([s.label for s in ds.samples])
    assign = np.empty(len(ds.samples), dtype=object)
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        n = len(members)
        n_test = max(1, round(n * test)) if test > 0 else 0
        n_val = max(1, round(n * val)) if val > 0 else 0
        while n_test + n_val > n - 1:  # large fractions of a small class: train keeps one
            if n_val > (val > 0) and n_val >= n_test:
                n_val -= 1
            else:
                n_test -= 1
        assign[members[:n_test]] = "test"
        assign[members[n_test : n_test + n_val]] = "val"
        assign[members[n_test + n_val :]] = "train"
    for s, a in zip(ds.samples, assign, strict=True):
        parts[a].append(s)
    return parts


def write_split(
    path: str | os.PathLike[str],
    ds: Dataset,
    parts: dict[str, list[Sample]],
    *,
    seed: int,
    val: float,
    test: float,
) -> None:
    """``split.json``: every image's key per part, with the seed and fractions that made it."""
    doc = {
        "version": 1,
        "data": str(ds.root),
        "seed": seed,
        "fractions": {"val": val, "test": test},
        "defect_types": ds.mode,
        **{name: sorted(s.key for s in parts[name]) for name in SPLITS},
    }
    tmp = Path(f"{path}.tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_split(path: str | os.PathLike[str], ds: Dataset, part: str) -> list[Sample]:
    """The samples of one part of a ``split.json``; every key must be in ``ds``."""
    check_choice("split", part, SPLITS, DatasetError)
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        msg = f"{path}: cannot read the split file ({exc})"
        raise DatasetError(msg) from exc
    keys = doc.get(part) if isinstance(doc, dict) else None
    if not isinstance(keys, list):
        msg = f"{path}: no list {part!r} in the split file"
        raise DatasetError(msg)
    index = ds.by_key()
    missing = [k for k in keys if k not in index]
    if missing:
        msg = (
            f"{path}: {len(missing)} image(s) of split {part!r} are not in {ds.root} "
            f"(first: {missing[0]}); is this the data the model was trained on?"
        )
        raise DatasetError(msg)
    return [index[k] for k in keys]
