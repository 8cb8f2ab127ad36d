"""DAGM 2007 reader: both public releases, exactly as they are found on disk.

Two layouts exist and both are detected from the tree:

* development release (classes 1–6): ``Class{k}/`` holds the good images, ``Class{k}_def/`` the
  defective ones plus ``labels.txt`` (``idx A B θ x y``: an ellipse per defect, MATLAB 1-based
  centre, θ in radians);
* 10-class release: ``Class{k}/Train`` and ``Class{k}/Test``, each with ``Label/Labels.txt``
  (header ``1``, then ``idx defect image 0 mask-or-0``) and filled-ellipse masks.

Copies in the wild carry CRLF endings, a UTF-8 BOM, trailing junk, ``Thumbs.db``, an extra
``Class1/Class1`` level from unzipping and mixed ``.png``/``.PNG``; all are tolerated. Anything else
the reader cannot understand raises :class:`DagmError` naming the file (and line). File names are
always taken from the directory listing, never built from a label's index column.

numpy + OpenCV only: the demo runs this in a runtime venv without torch or scipy.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from pyinspect.errors import PyInspectError

__all__ = [
    "DagmError",
    "DagmRecord",
    "Ellipse",
    "defect_bbox",
    "defect_mask",
    "format_dev_label",
    "load_dagm",
    "parse_dev_labels",
    "parse_split_labels",
    "read_image",
]

IMAGE_SUFFIX = ".png"
JUNK_NAMES = frozenset({"thumbs.db", "desktop.ini", ".ds_store", "__macosx"})
_CLASS_DIR = re.compile(r"^class(\d+)(_def)?$", re.IGNORECASE)
_SPLITS = {"train": "train", "test": "test"}


class DagmError(PyInspectError, ValueError):
    """A DAGM tree or label file that the reader cannot interpret."""


@dataclass(frozen=True)
class Ellipse:
    """A label ellipse in 0-based pixel coordinates (x = column, y = row).

    ``a`` is the semi-axis along direction ``theta`` (radians, from +x toward +y in image
    coordinates), ``b`` the one across it; ``a`` is not necessarily the larger one.
    """

    cx: float
    cy: float
    a: float
    b: float
    theta: float

    def bbox(self) -> tuple[float, float, float, float]:
        """Exact axis-aligned bounds ``(x0, y0, x1, y1)`` of the rotated ellipse."""
        c, s = math.cos(self.theta), math.sin(self.theta)
        hx = math.hypot(self.a * c, self.b * s)
        hy = math.hypot(self.a * s, self.b * c)
        return self.cx - hx, self.cy - hy, self.cx + hx, self.cy + hy


@dataclass(frozen=True)
class DagmRecord:
    """One image of either release.

    ``texture`` is the 0-based class index (``Class1`` → 0); ``index`` is the image number taken
    from its file name; ``split`` is ``"train"``/``"test"`` for the 10-class release and ``None``
    for the development release. A defective record carries an ``ellipse`` (development release)
    or a ``mask_path`` (10-class release).
    """

    path: Path
    texture: int
    defective: bool
    ellipse: Ellipse | None
    mask_path: Path | None
    split: str | None
    index: int

    @property
    def label(self) -> int:
        """The 12-way (2 × textures) class: ``2 * texture + defective``."""
        return 2 * self.texture + int(self.defective)


# ---------------------------------------------------------------------------------------------
# label files


def _label_lines(path: Path) -> list[tuple[int, list[str]]]:
    """(1-based line number, fields) of every meaningful line.

    Handles a BOM and CRLF/CR endings; skips lines holding no letter or digit (blank lines, a
    Ctrl-Z end-of-file byte, stray separators) wherever they are.
    """
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        msg = f"{path}: not UTF-8/ASCII text ({exc.reason} at byte {exc.start})"
        raise DagmError(msg) from exc
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not any(ch.isalnum() for ch in line):
            continue
        out.append((number, line.replace(",", " ").split()))
    return out


def _number(path: Path, line: int, field: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        msg = f"{path}:{line}: field {field!r} is {text!r}, expected a finite number"
        raise DagmError(msg)
    return value


def _integer(path: Path, line: int, field: str, text: str) -> int:
    value = _number(path, line, field, text)
    if value != int(value):
        msg = f"{path}:{line}: field {field!r} is {text!r}, expected an integer"
        raise DagmError(msg)
    return int(value)


def parse_dev_labels(path: Path, *, one_based: bool = True) -> dict[int, Ellipse]:
    """``labels.txt`` of the development release → ellipse per image number (0-based centres).

    Each line is ``idx A B θ x y``; ``one_based`` says the centre is MATLAB's 1-based pixel
    coordinate (the documented convention), which is shifted to 0-based here.
    """
    names = ("idx", "A", "B", "theta", "x", "y")
    shift = 1.0 if one_based else 0.0
    out: dict[int, Ellipse] = {}
    for line, fields in _label_lines(path):
        if len(fields) != len(names):
            msg = (
                f"{path}:{line}: expected 6 fields (idx A B theta x y), got {len(fields)}: "
                f"{' '.join(fields)!r}"
            )
            raise DagmError(msg)
        idx = _integer(path, line, "idx", fields[0])
        a, b, theta, x, y = (
            _number(path, line, n, f) for n, f in zip(names[1:], fields[1:], strict=True)
        )
        if a <= 0 or b <= 0:
            msg = f"{path}:{line}: semi-axes must be > 0, got A={a} B={b}"
            raise DagmError(msg)
        if idx in out:
            msg = f"{path}:{line}: image index {idx} appears twice"
            raise DagmError(msg)
        out[idx] = Ellipse(cx=x - shift, cy=y - shift, a=a, b=b, theta=theta)
    return out


def format_dev_label(index: int, e: Ellipse, *, one_based: bool = True) -> str:
    """One ``labels.txt`` line in the release's own format (tab separated, right-aligned, 2 dp)."""
    shift = 1.0 if one_based else 0.0
    values = (e.a, e.b, e.theta, e.cx + shift, e.cy + shift)
    return f"{index}\t" + "\t".join(f"{v:7.2f}" for v in values)


def parse_split_labels(path: Path) -> list[tuple[int, str, bool, str | None]]:
    """``Labels.txt`` of the 10-class release → ``(line, image name, defective, mask name)``.

    The first meaningful line is the header ``1``; after it every row is
    ``idx defect(0/1) image-file 0 mask-file-or-0``.
    """
    rows = _label_lines(path)
    if rows and len(rows[0][1]) == 1:
        rows = rows[1:]
    out = []
    for line, fields in rows:
        if len(fields) != 5:
            msg = (
                f"{path}:{line}: expected 5 fields (idx defect image 0 mask), got "
                f"{len(fields)}: {' '.join(fields)!r}"
            )
            raise DagmError(msg)
        _integer(path, line, "idx", fields[0])
        flag = _integer(path, line, "defect", fields[1])
        if flag not in (0, 1):
            msg = f"{path}:{line}: field 'defect' is {fields[1]!r}, expected 0 or 1"
            raise DagmError(msg)
        mask = None if fields[4] == "0" else fields[4]
        if flag and mask is None:
            msg = f"{path}:{line}: defective image {fields[2]!r} has no mask file (got '0')"
            raise DagmError(msg)
        out.append((line, fields[2], bool(flag), mask))
    return out


# ---------------------------------------------------------------------------------------------
# tree walking


def _is_junk(p: Path) -> bool:
    name = p.name.lower()
    return name in JUNK_NAMES or name.startswith((".", "._"))


def _children(d: Path) -> list[Path]:
    return sorted((p for p in d.iterdir() if not _is_junk(p)), key=lambda p: p.name)


def _images(d: Path) -> dict[int, Path]:
    """Image number (from the file name's digits) → path, for every ``.png``/``.PNG`` in ``d``."""
    out: dict[int, Path] = {}
    for p in _children(d):
        if not p.is_file() or p.suffix.lower() != IMAGE_SUFFIX:
            continue
        if not p.stem.isdigit():
            msg = f"{p}: cannot tell the image number from the file name (expected digits.png)"
            raise DagmError(msg)
        number = int(p.stem)
        if number in out:
            msg = f"{p}: image number {number} also used by {out[number].name}"
            raise DagmError(msg)
        out[number] = p
    return out


def _by_name(d: Path) -> dict[str, Path]:
    """Case-insensitive file lookup (copies differ in ``.png`` vs ``.PNG``)."""
    return {p.name.lower(): p for p in _children(d) if p.is_file()}


def _unnest(d: Path) -> Path:
    """Descend ``Class1/Class1/…`` wrappers left by unzipping into a folder of the same name."""
    while True:
        kids = _children(d)
        dirs = [p for p in kids if p.is_dir()]
        files = [p for p in kids if p.is_file()]
        if len(dirs) == 1 and not files and dirs[0].name.lower() == d.name.lower():
            d = dirs[0]
        else:
            return d


def _class_dirs(root: Path) -> dict[tuple[int, bool], Path]:
    """``(class number, is _def folder)`` → folder, looking through wrapper folders."""
    for _ in range(4):
        found: dict[tuple[int, bool], Path] = {}
        for p in _children(root):
            m = _CLASS_DIR.match(p.name)
            if p.is_dir() and m:
                key = (int(m.group(1)), m.group(2) is not None)
                if key in found:
                    msg = f"{root}: both {found[key].name!r} and {p.name!r} name the same class"
                    raise DagmError(msg)
                found[key] = _unnest(p)
        if found:
            # A development copy sometimes keeps Class{k}_def inside Class{k}.
            for (k, is_def), d in list(found.items()):
                if is_def or (k, True) in found:
                    continue
                inner = [
                    p for p in _children(d) if p.is_dir() and p.name.lower() == f"class{k}_def"
                ]
                if inner:
                    found[(k, True)] = _unnest(inner[0])
            return found
        dirs = [p for p in _children(root) if p.is_dir()]
        if len(dirs) != 1:
            break
        root = dirs[0]
    msg = f"{root}: no Class<k> folders found (expected Class1/, Class1_def/ or Class1/Train/)"
    raise DagmError(msg)


def _split_dirs(d: Path) -> dict[str, Path]:
    return {
        _SPLITS[p.name.lower()]: p for p in _children(d) if p.is_dir() and p.name.lower() in _SPLITS
    }


def _load_dev(k: int, good_dir: Path, def_dir: Path | None, one_based: bool) -> list[DagmRecord]:
    texture = k - 1
    records = [
        DagmRecord(
            path=p,
            texture=texture,
            defective=False,
            ellipse=None,
            mask_path=None,
            split=None,
            index=i,
        )
        for i, p in _images(good_dir).items()
    ]
    if def_dir is None:
        return records
    files = _by_name(def_dir)
    if "labels.txt" not in files:
        msg = f"{def_dir}: labels.txt is missing"
        raise DagmError(msg)
    label_path = files["labels.txt"]
    ellipses = parse_dev_labels(label_path, one_based=one_based)
    images = _images(def_dir)
    if missing := sorted(set(ellipses) - set(images)):
        msg = f"{label_path}: rows for images {missing[:5]} that are not in {def_dir}"
        raise DagmError(msg)
    if unlabelled := sorted(set(images) - set(ellipses)):
        names = [images[i].name for i in unlabelled[:5]]
        msg = f"{label_path}: no row for defective images {names}"
        raise DagmError(msg)
    records += [
        DagmRecord(
            path=p,
            texture=texture,
            defective=True,
            ellipse=ellipses[i],
            mask_path=None,
            split=None,
            index=i,
        )
        for i, p in images.items()
    ]
    return records


def _load_split(k: int, split: str, d: Path) -> list[DagmRecord]:
    label_dir = next((p for p in _children(d) if p.is_dir() and p.name.lower() == "label"), None)
    label_files = _by_name(label_dir) if label_dir else {}
    if "labels.txt" not in label_files:
        msg = f"{d}: Label/Labels.txt is missing"
        raise DagmError(msg)
    label_path = label_files["labels.txt"]
    images = _by_name(d)
    records = []
    seen: set[str] = set()
    for line, name, defective, mask in parse_split_labels(label_path):
        key = name.lower()
        if key not in images:
            msg = f"{label_path}:{line}: image {name!r} not found in {d}"
            raise DagmError(msg)
        if key in seen:
            msg = f"{label_path}:{line}: image {name!r} listed twice"
            raise DagmError(msg)
        seen.add(key)
        mask_path = None
        if mask is not None:
            if mask.lower() not in label_files:
                msg = f"{label_path}:{line}: mask {mask!r} not found in {label_dir}"
                raise DagmError(msg)
            mask_path = label_files[mask.lower()]
        path = images[key]
        if not path.stem.isdigit():
            msg = f"{label_path}:{line}: image {name!r} has no number in its name"
            raise DagmError(msg)
        records.append(
            DagmRecord(
                path=path,
                texture=k - 1,
                defective=defective,
                ellipse=None,
                mask_path=mask_path,
                split=split,
                index=int(path.stem),
            )
        )
    unlisted = sorted(
        n for n, p in images.items() if p.suffix.lower() == IMAGE_SUFFIX and n not in seen
    )
    if unlisted:
        msg = f"{label_path}: no row for images {[images[n].name for n in unlisted[:5]]}"
        raise DagmError(msg)
    return records


def load_dagm(
    root: str | Path, *, one_based: bool = True, classes: Iterable[int] | None = None
) -> list[DagmRecord]:
    """Every image of a DAGM tree (either release), sorted by (texture, split, defective, index).

    ``classes`` selects on-disk class numbers (``Class3`` → 3; records still say texture 2);
    ``one_based`` applies to the development release's ellipse centres.
    """
    root = Path(root)
    if not root.is_dir():
        msg = f"DAGM root {root} is not a directory"
        raise DagmError(msg)
    dirs = _class_dirs(root)
    numbers = sorted({k for k, _ in dirs})
    wanted = numbers if classes is None else sorted(set(classes))
    if absent := [k for k in wanted if k not in numbers]:
        msg = f"{root}: Class{absent[0]} not found; found classes {numbers}"
        raise DagmError(msg)
    records: list[DagmRecord] = []
    layouts: set[str] = set()
    for k in wanted:
        good_dir = dirs.get((k, False))
        def_dir = dirs.get((k, True))
        splits = _split_dirs(good_dir) if good_dir is not None else {}
        if splits:
            layouts.add("10-class")
            for split, d in sorted(splits.items()):
                records += _load_split(k, split, _unnest(d))
        else:
            layouts.add("development")
            if good_dir is None:
                msg = f"{root}: Class{k}_def found but Class{k} (the good images) is missing"
                raise DagmError(msg)
            records += _load_dev(k, good_dir, def_dir, one_based)
    if len(layouts) > 1:
        msg = f"{root}: mixes the development and 10-class layouts; point at one release"
        raise DagmError(msg)
    records.sort(key=lambda r: (r.texture, r.split or "", r.defective, r.index, str(r.path)))
    return records


# ---------------------------------------------------------------------------------------------
# pixels


def read_image(record: DagmRecord | str | Path) -> npt.NDArray[np.uint8]:
    """The image as uint8 H×W (converted to gray if a copy was saved in colour)."""
    path = record.path if isinstance(record, DagmRecord) else Path(record)
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        msg = f"{path}: cannot be read as an image"
        raise DagmError(msg)
    if img.ndim == 3:
        code = cv2.COLOR_BGRA2GRAY if img.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        img = cv2.cvtColor(img, code)
    if img.dtype != np.uint8:
        msg = f"{path}: expected an 8-bit image, got dtype {img.dtype}"
        raise DagmError(msg)
    return np.ascontiguousarray(img)


_SHIFT = 4  # cv2 fixed-point bits: draw ellipses at 1/16 px precision


def draw_ellipse(mask: np.ndarray, e: Ellipse, value: int = 255, thickness: int = -1) -> None:
    """Draw ``e`` onto ``mask`` in place (filled by default) at sub-pixel precision."""
    f = 1 << _SHIFT
    cv2.ellipse(
        mask,
        (round(e.cx * f), round(e.cy * f)),
        (max(round(e.a * f), 1), max(round(e.b * f), 1)),
        math.degrees(e.theta),
        0,
        360,
        value,
        thickness,
        cv2.LINE_8,
        _SHIFT,
    )


def defect_mask(record: DagmRecord, shape: tuple[int, int]) -> npt.NDArray[np.bool_]:
    """The labelled defect region as bool H×W: the filled label ellipse, or the mask file."""
    h, w = shape
    if not record.defective:
        return np.zeros((h, w), dtype=bool)
    if record.ellipse is not None:
        canvas = np.zeros((h, w), dtype=np.uint8)
        draw_ellipse(canvas, record.ellipse)
        return canvas > 0
    if record.mask_path is None:
        msg = f"{record.path}: defective record has neither an ellipse nor a mask file"
        raise DagmError(msg)
    mask = read_image(record.mask_path)
    if mask.shape != (h, w):
        msg = f"{record.mask_path}: mask is {mask.shape[0]}×{mask.shape[1]}, image is {h}×{w}"
        raise DagmError(msg)
    return mask > 0


def defect_bbox(mask: npt.NDArray[np.bool_]) -> tuple[int, int, int, int] | None:
    """``(x0, y0, x1, y1)`` (end-exclusive) of the True pixels, or None when there are none."""
    cols = np.flatnonzero(mask.any(axis=0))
    if cols.size == 0:
        return None
    rows = np.flatnonzero(mask.any(axis=1))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1
