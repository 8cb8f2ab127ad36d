"""Which image files a user's list of paths means: every one is inspected or accounted for.

A file named on the command line is always inspected. A folder is walked (symlinked folders
followed, each folder once), and its images are inspected except

- mask files inside a recognised dataset layout (``mask_layout``): the 10-class DAGM release's
  ``ClassK/Train|Test/Label/*_label.*``, a development copy's ``ClassK[_def]/Label/*_label.*``,
  and the generic layout's ``<group>/masks/<defect type>/*`` next to a ``good/`` folder;
- files under an excluded folder (the run's own output folder).

Each skip is counted and each path that cannot be read (a dangling link, a symlink loop, an
unreadable folder) is listed with the reason, so nothing the user gave disappears silently.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pyinspect.errors import InputError

__all__ = ["IMAGE_SUFFIXES", "Collected", "collect_images", "mask_layout"]

IMAGE_SUFFIXES = frozenset({".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".pgm", ".ppm"})

_DAGM_CLASS = re.compile(r"^class\d+(_def)?$", re.IGNORECASE)
_SPLITS = frozenset({"train", "test"})


@dataclass
class Collected:
    """The images to inspect, in order, and everything that was not inspected, with why."""

    paths: list[Path] = field(default_factory=list)
    any_dir: bool = False
    masks_skipped: int = 0  # mask files of a recognised dataset layout
    excluded: int = 0  # image files under the excluded (output) folder
    problems: list[str] = field(default_factory=list)  # "<path>: <why it cannot be read>"


def mask_layout(path: Path) -> str | None:
    """The dataset layout in which ``path`` is a mask file (``"dagm"``, ``"generic"``), else
    ``None``. Only these layouts' mask folders are skipped; a folder merely named ``label`` or
    a file ``*_label.png`` elsewhere is an image like any other."""
    parent = path.parent
    if parent.name.lower() == "label" and path.stem.lower().endswith("_label"):
        up = parent.parent
        if _DAGM_CLASS.match(up.name) or (
            up.name.lower() in _SPLITS and _DAGM_CLASS.match(up.parent.name)
        ):
            return "dagm"
    masks = parent.parent  # <group>/masks/<defect type>/<stem>.png
    if masks.name.lower() == "masks" and (masks.parent / "good").is_dir():
        return "generic"
    return None


def collect_images(
    inputs: Iterable[str | os.PathLike[str]], *, exclude: Path | None = None
) -> Collected:
    """Files given, plus every image under the folders given (each folder's images sorted).

    A path given that is not a file or folder is an ``InputError`` naming it and why (not found,
    a dangling symlink, a symlink loop, a device). ``exclude``: a folder whose files are never
    collected (counted in ``excluded``).
    """
    from pyinspect.frames import path_problem  # frames loads OpenCV: only when collecting

    out = Collected()
    skip = _key(exclude) if exclude is not None and exclude.is_dir() else None
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out.any_dir = True
            out.paths.extend(sorted(_walk(p, skip, out)))
        elif p.is_file():
            out.paths.append(p)
        else:
            why = path_problem(p) or "not found"
            msg = f"{p}: no such file or folder" if why == "not found" else f"{p}: {why}"
            raise InputError(msg)
    return out


def _key(folder: Path) -> tuple[int, int]:
    st = os.stat(folder)
    return st.st_dev, st.st_ino


def _walk(root: Path, skip: tuple[int, int] | None, out: Collected) -> list[Path]:
    """Image files under ``root``; symlinked folders are followed, each folder visited once
    (a link back up the tree is no loop)."""
    from pyinspect.frames import path_problem

    found: list[Path] = []
    seen: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            key = _key(folder)
            if key in seen:
                continue
            seen.add(key)
            if key == skip:
                out.excluded += _count_images(folder)
                continue
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            out.problems.append(f"{folder}: cannot read folder: {exc.strerror or exc}")
            continue
        for entry in entries:
            path = Path(entry.path)
            kind = _kind(entry)
            if kind == "dir":
                stack.append(path)
            elif path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            elif kind != "file":
                out.problems.append(f"{path}: image {path_problem(path) or 'cannot be read'}")
            elif mask_layout(path) is not None:
                out.masks_skipped += 1
            else:
                found.append(path)
    return found


def _kind(entry: os.DirEntry[str]) -> str:
    """``"dir"``, ``"file"`` or ``"other"`` (links followed; a symlink loop is ``"other"``)."""
    try:
        return "dir" if entry.is_dir() else "file" if entry.is_file() else "other"
    except OSError:
        return "other"


def _count_images(folder: Path) -> int:
    return sum(
        Path(name).suffix.lower() in IMAGE_SUFFIXES
        for _, _, files in os.walk(folder)
        for name in files
    )
