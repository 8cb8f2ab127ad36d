"""``python -m train data check ROOT`` for the generic layout (``pyinspect.dataset``).

Reads every image and every mask / box file once, so what ``train run``, ``pyinspect
evaluate`` and ``calibrate`` would stumble on is found here first, all of it at once, each with
its file. Problems make the set unusable (exit 1); notes are documented policies or choices the
user should know about (image-level defective images, small frames, boxes reaching outside
their image) and do not.

numpy + OpenCV only, like the rest of ``train data``.
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np

from pyinspect.dataset import (
    Dataset,
    DatasetError,
    Problem,
    defect_mask,
    load_dataset,
    read_boxes,
    read_image,
    split_samples,
)

__all__ = ["CheckReport", "FolderStats", "check_generic", "print_report"]

PATCH = 224  # the student's patch: smaller frames need train run's resize policy
VAL, TEST = 0.1, 0.2  # train run's split fractions (split_samples' defaults)


@dataclass
class FolderStats:
    """One image folder (group × good / defect type) and the class it feeds."""

    group: str
    folder: str
    class_name: str
    images: int = 0
    readable: int = 0
    sizes: list[tuple[int, int]] = field(default_factory=list)  # (W, H)
    depths: Counter[str] = field(default_factory=Counter)  # "8 gray", "16 gray", "8 colour"
    masks: int = 0
    boxes: int = 0
    unlocated: int = 0

    def size_text(self) -> str:
        if not self.sizes:
            return "-"
        ws, hs = [w for w, _ in self.sizes], [h for _, h in self.sizes]
        w = f"{min(ws)}" if min(ws) == max(ws) else f"{min(ws)}–{max(ws)}"
        h = f"{min(hs)}" if min(hs) == max(hs) else f"{min(hs)}–{max(hs)}"
        return f"{w}×{h}"


@dataclass
class Note:
    """A documented or harmless finding: one line, and the files it concerns (``--verbose``)."""

    text: str
    files: list[Path] = field(default_factory=list)


@dataclass
class CheckReport:
    ds: Dataset
    seed: int
    folders: list[FolderStats]
    problems: list[Problem]
    notes: list[Note]
    skipped: list[Problem]  # non-image files and unreadable images, not part of the set
    split: dict[str, dict[str, int]] | None  # class name -> images per part; None: infeasible

    @property
    def usable(self) -> bool:
        return not self.problems


def _problem(exc: DatasetError, path: Path) -> Problem:
    """A reader's error as a Problem on ``path`` (its message already starts with the path)."""
    text = str(exc)
    for prefix in (f"{path}: ", f"{path.name}: "):
        if text.startswith(prefix):
            text = text[len(prefix) :]
    return Problem(path, text)


def _class_of(ds: Dataset, group: int, folder: str) -> str:
    """The class a folder's images go to: its defect type (``keep``), or the group's merged
    defective class."""
    dtype = None if folder == "good" else folder
    for c in ds.classes:
        if c.group == group and (
            c.defect_type == dtype if ds.mode == "keep" or dtype is None else c.defective
        ):
            return c.name
    msg = f"no class for {ds.groups[group]}/{folder}"  # class_table makes one for every folder
    raise AssertionError(msg)


def check_generic(root: str | Path, *, defect_types: str = "merge", seed: int = 0) -> CheckReport:
    """Every finding for the generic-layout set at ``root``. Raises :class:`DatasetError` only
    when the tree cannot be read as a set at all (no good/ folder, a contradicting
    ``dataset.json``)."""
    ds = load_dataset(root, defect_types=defect_types, strict=False)
    problems = list(ds.problems)
    skipped = list(ds.skipped)
    folders: dict[tuple[int, str], FolderStats] = {}
    for gi, g in enumerate(ds.groups):
        for folder in ["good", *ds.defect_types[g]]:
            folders[(gi, folder)] = FolderStats(g, folder, _class_of(ds, gi, folder))
    unlocated: list[Path] = []
    outside: list[Path] = []
    small: list[tuple[int, int, Path]] = []
    by_depth: dict[int, list[Path]] = {8: [], 16: []}
    top = 2 ** (ds.bit_depth or 16) - 1
    for s in ds.samples:
        path = ds.absolute(s)
        st = folders[(s.group, s.defect_type or "good")]
        st.images += 1
        try:
            img = read_image(path)
        except DatasetError as exc:
            problems.append(_problem(exc, path))
            skipped.append(Problem(path, "unreadable image"))
            continue
        st.readable += 1
        h, w = img.shape[:2]
        st.sizes.append((w, h))
        depth = 16 if img.dtype == np.uint16 else 8
        colour = img.ndim == 3
        st.depths[f"{depth} {'colour' if colour else 'gray'}"] += 1
        by_depth[depth].append(path)
        if min(h, w) < PATCH:
            small.append((w, h, path))
        if depth == 16 and colour:
            problems.append(Problem(path, "16-bit colour image; 16-bit frames must be mono"))
        elif depth == 16 and ds.bit_depth != 8 and int(img.max()) > top:  # 8: named once below
            problems.append(
                Problem(
                    path,
                    f"pixel value {int(img.max())} exceeds the {ds.bit_depth}-bit range that "
                    f"dataset.json declares (max {top})",
                )
            )
        if not s.defective:
            continue
        st.masks += s.mask_path is not None
        st.boxes += s.mask_path is None and s.boxes_path is not None
        if not s.has_location:
            st.unlocated += 1
            unlocated.append(path)
            continue
        loc = ds.root / (s.mask_path or s.boxes_path)  # type: ignore[operator]
        try:
            defect_mask(ds, s, (h, w))
            if s.mask_path is None and any(
                x0 < 0 or y0 < 0 or x1 > w or y1 > h for x0, y0, x1, y1 in read_boxes(loc)
            ):
                outside.append(loc)
        except DatasetError as exc:
            problems.append(_problem(exc, loc))
    dataset_json = ds.root / "dataset.json"
    if by_depth[8] and by_depth[16]:
        problems.append(
            Problem(
                ds.root,
                f"mixes 8-bit ({len(by_depth[8])}, first {by_depth[8][0]}) and 16-bit "
                f"({len(by_depth[16])}, first {by_depth[16][0]}) images; a model takes one "
                "bit depth",
            )
        )
    elif ds.bit_depth is not None and ds.bit_depth > 8 and by_depth[8]:
        problems.append(
            Problem(
                dataset_json,
                f"bit_depth {ds.bit_depth}, but the images are 8-bit (first {by_depth[8][0]})",
            )
        )
    elif ds.bit_depth == 8 and by_depth[16]:
        problems.append(
            Problem(
                dataset_json,
                f"bit_depth 8, but the images are 16-bit (first {by_depth[16][0]}); declare "
                "10, 12 or 16",
            )
        )
    notes: list[Note] = []
    if unlocated:
        notes.append(
            Note(
                f"{len(unlocated)} defective image(s) have no mask or boxes: image-level labels;"
                " `train run` needs --no-locations for them",
                unlocated,
            )
        )
    if outside:
        notes.append(
            Note(f"{len(outside)} box file(s) reach outside their image (clipped)", outside)
        )
    if small:
        w, h, path = min(small, key=lambda t: min(t[0], t[1]))
        notes.append(
            Note(
                f"{len(small)} image(s) smaller than the {PATCH} px patch on a side (smallest "
                f"{w}×{h}, {path.name}): `train run` upscales them (--resize auto)",
                [p for _, _, p in small],
            )
        )
    if by_depth[16] and ds.bit_depth is None:
        notes.append(Note("16-bit images and no bit_depth in dataset.json: taken as 16-bit"))
    try:
        parts = split_samples(ds, seed=seed, val=VAL, test=TEST)
    except DatasetError as exc:
        problems.append(_problem(exc, ds.root))
        split = None
    else:
        split = {c.name: dict.fromkeys(parts, 0) for c in ds.classes}
        for name, members in parts.items():
            for s in members:
                split[ds.class_name(s.label)][name] += 1
    return CheckReport(ds, seed, list(folders.values()), problems, notes, skipped, split)


def _skip_kind(p: Problem) -> str:
    if p.what == "unreadable image":
        return "unreadable"
    if p.what.startswith("system file"):
        return "system files"
    if p.what.startswith("a folder"):
        return "folders"
    return "not images" if "image" in p.what else "not .xml"


def print_report(
    report: CheckReport,
    *,
    verbose: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> None:
    """The per-folder table, the split, notes and skipped files to ``out``; problems to
    ``err`` (default: ``sys.stdout`` / ``sys.stderr`` as they are at the call)."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    ds = report.ds
    layout = f"{len(ds.groups)} group(s)" if ds.grouped else "one product (no group level)"
    n_images = sum(f.images for f in report.folders)
    print(
        f"{ds.root}: generic layout, {layout}, defect types {ds.mode}: {len(ds.classes)} "
        f"classes, {n_images} images",
        file=out,
    )
    gw = max(5, *(len(f.group) for f in report.folders))
    fw = max(6, *(len(f.folder) for f in report.folders))
    cw = max(5, *(len(f.class_name) for f in report.folders))
    head = (
        f"{'group':<{gw}}  {'folder':<{fw}}  {'class':<{cw}}  {'images':>6}  {'W×H':<15}  "
        f"{'bit depth':<15}  {'masks':>5}  {'boxes':>5}  {'none':>5}"
    )
    print(head, file=out)
    for f in report.folders:
        depth = ", ".join(
            f"{k} ({v})" if len(f.depths) > 1 else k for k, v in sorted(f.depths.items())
        )
        loc = ("-", "-", "-") if f.folder == "good" else (f.masks, f.boxes, f.unlocated)
        print(
            f"{f.group:<{gw}}  {f.folder:<{fw}}  {f.class_name:<{cw}}  {f.images:>6}  "
            f"{f.size_text():<15}  {depth or '-':<15}  {loc[0]:>5}  {loc[1]:>5}  {loc[2]:>5}",
            file=out,
        )
    if report.split is None:
        print(f"split (seed {report.seed}; val {VAL}, test {TEST}): not feasible", file=out)
    else:
        print(f"split (seed {report.seed}; val {VAL}, test {TEST}): feasible", file=out)
        print(f"  {'class':<{cw}}  {'train':>5}  {'val':>5}  {'test':>5}", file=out)
        for name, parts in report.split.items():
            print(
                f"  {name:<{cw}}  {parts['train']:>5}  {parts['val']:>5}  {parts['test']:>5}",
                file=out,
            )
    if report.skipped:
        kinds = Counter(_skip_kind(p) for p in report.skipped)
        text = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        hint = "" if verbose else " (--verbose lists them)"
        print(f"skipped {len(report.skipped)} file(s): {text}{hint}", file=out)
        if verbose:
            for p in report.skipped:
                print(f"  {p}", file=out)
    if ds.notes:
        print(f"dataset.json notes: {ds.notes}", file=out)
    for note in report.notes:
        print(f"note: {note.text}", file=out)
        if verbose:
            for f in note.files:
                print(f"  {f}", file=out)
    for p in report.problems:
        print(str(p), file=err)
    if report.problems:
        print(f"{len(report.problems)} problem(s)", file=err)
    else:
        print("ok", file=out)
