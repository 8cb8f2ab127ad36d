"""Assemble the real DAGM images found in three public repositories into a development-layout tree.

    python tools/real_dagm.py --dagm-git GIT --paint-git GIT --ellipses DIR_OR_GIT \\
        --out data/real-dagm --geometry-out data/real-dagm-geometry

Inputs (git directories as the project's ``fetch`` brings them, no work tree needed):

* ``--dagm-git``: github:balarajuyogesh/Defect-Inspection-for-DAGM. Its ``DataForEval*``
  folders hold 15 distinct 512×512 images named ``<class>-<id>.PNG`` (the ``temp/`` folder and a
  folder with a non-ASCII name repeat some; duplicates are dropped by content hash) and eight
  ``<class>-<id>_label.PNG`` masks. A 4-digit id is an image of the 10-class release; with a
  mask it is defective and its label ellipse is fitted to the mask. The 3-digit ids
  (``1-150.png`` … ``4-146.png``) are development-set defective images ``Class<k>_def/<id>.png``:
  each shows its defect where row ``<id>`` of ``def_<k>.csv`` puts the ellipse (checked by eye).
  ``2-0003.PNG`` shows a scratch but has no mask: it is left out (neither good nor labelled).
* ``--paint-git``: github:tonewworld/PaintDefect, ``static/uploads/0576.PNG`` … ``0595.PNG``: 20
  class-2 images of the 10-class release without labels; 0576, 0578, 0579, 0580 and 0588 show a
  scratch (checked by eye) and are left out, the other 15 are the good images of Class2.
* ``--ellipses``: ``DAGM_dataset/def_<k>.csv`` of github:jhj1111/DAGM2007_ws (a git directory,
  or a folder holding the six files): the development set's ``labels.txt`` rows, 150 per class,
  as ``filename,class,label,x,y,angle,w,h`` (x, y the 1-based centre, w = A, h = B).

Outputs: ``--out`` in the development layout (``Class<k>/`` good, ``Class<k>_def/`` defective +
``labels.txt``; 10-class images are renumbered 10000 + id so the two releases never share a
number) with ``SOURCES.tsv`` naming each file's origin and hash; ``--geometry-out`` holds
``Class<k>_def/labels.txt`` with all 150 development ellipses per class (for ``data compare
--geometry``). Real images must never be committed: inside this repository both outputs must be
git-ignored paths (``data/`` is), and neither may exist already.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import math
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from train.dagm import Ellipse, draw_ellipse, format_dev_label  # noqa: E402
from train.data_compare import fit_ellipse  # noqa: E402

DAGM_FOLDERS = re.compile(r"^DAGM/.*/DataForEval(uation)?/")
NAME = re.compile(r"^(\d)-(\d+)\.png$", re.IGNORECASE)
# Decided by looking at every image (see the module docstring).
DEV_DEFECTIVE = {(1, 150), (2, 150), (3, 150), (4, 146), (5, 150), (6, 150)}
LEFT_OUT = {(2, 3): "a scratch without a mask"}
PAINT = range(576, 596)
PAINT_DEFECTIVE = {576, 578, 579, 580, 588}
SPLIT_OFFSET = 10000


class AssembleError(Exception):
    """An input that is not what this script was written for (named)."""


def git_files(git_dir: Path) -> list[str]:
    out = subprocess.run(
        ["git", "--git-dir", str(git_dir), "ls-tree", "-r", "--name-only", "-z", "HEAD"],
        capture_output=True,
        check=True,
    ).stdout
    return [p for p in out.decode("utf-8", "surrogateescape").split("\0") if p]


def git_blob(git_dir: Path, path: str) -> bytes:
    return subprocess.run(
        ["git", "--git-dir", str(git_dir), "show", f"HEAD:{path}"], capture_output=True, check=True
    ).stdout


def decode(data: bytes, what: str) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    if img is None or img.shape != (512, 512):
        msg = f"{what}: not a 512×512 image"
        raise AssembleError(msg)
    return img


def read_ellipses(source: Path) -> dict[int, dict[int, tuple[str, ...]]]:
    """Class → image number → (A, B, θ, x, y) as written in the csv (1-based centre)."""
    is_git = (source / "HEAD").is_file() and (source / "objects").is_dir()
    out: dict[int, dict[int, tuple[str, ...]]] = {}
    for k in range(1, 7):
        if is_git:
            text = git_blob(source, f"DAGM_dataset/def_{k}.csv").decode()
        else:
            text = (source / f"def_{k}.csv").read_text()
        rows = list(csv.DictReader(io.StringIO(text)))
        if len(rows) != 150:
            msg = f"def_{k}.csv: {len(rows)} rows, expected 150"
            raise AssembleError(msg)
        out[k] = {}
        for i, row in enumerate(rows, start=1):
            if int(row["filename"].split(".")[0]) != i or int(row["class"]) != k:
                msg = f"def_{k}.csv row {i}: unexpected filename/class {row}"
                raise AssembleError(msg)
            out[k][i] = (row["w"], row["h"], row["angle"], row["x"], row["y"])
    return out


def dev_line(idx: int, values: tuple[str, ...]) -> str:
    return "\t".join([str(idx), *values])


def dev_ellipse(values: tuple[str, ...]) -> Ellipse:
    a, b, theta, x, y = map(float, values)
    return Ellipse(x - 1, y - 1, a, b, theta)


def iou(e: Ellipse, mask: np.ndarray) -> float:
    canvas = np.zeros(mask.shape, np.uint8)
    draw_ellipse(canvas, e)
    drawn = canvas > 0
    return float((drawn & mask).sum() / max((drawn | mask).sum(), 1))


def check_target(path: Path, what: str) -> None:
    """Refuse an existing path, and a path inside the repository that git does not ignore."""
    if path.exists():
        msg = f"{what} {path}: already exists; choose a new folder"
        raise AssembleError(msg)
    target = path.resolve()
    if target.is_relative_to(ROOT) and (ROOT / ".git").exists():
        rel = target.relative_to(ROOT).as_posix()
        done = subprocess.run(
            ["git", "-C", str(ROOT), "check-ignore", "-q", "--no-index", rel], check=False
        )
        if done.returncode != 0:
            msg = (
                f"{what} {path}: inside the repository and not git-ignored (real images must "
                "not be committed)"
            )
            raise AssembleError(msg)


def assemble(dagm_git: Path, paint_git: Path, ellipses: Path, out: Path, geometry: Path) -> None:
    check_target(out, "--out")
    check_target(geometry, "--geometry-out")
    rows = read_ellipses(ellipses)
    images: dict[tuple[int, int], tuple[str, bytes]] = {}
    masks: dict[tuple[int, int], bytes] = {}
    seen: set[str] = set()
    for path in sorted(git_files(dagm_git)):
        if not DAGM_FOLDERS.match(path) or not path.lower().endswith(".png"):
            continue
        name = path.rsplit("/", 1)[-1]
        data = git_blob(dagm_git, path)
        if name.lower().endswith("_label.png"):
            mask_cls, ident_text = name.split("_")[0].split("-")
            masks[(int(mask_cls), int(ident_text))] = data
            continue
        digest = hashlib.sha256(data).hexdigest()
        if digest in seen:
            continue
        seen.add(digest)
        m = NAME.match(name)
        if m is None:
            msg = f"{path}: not named <class>-<id>.png"
            raise AssembleError(msg)
        key = (int(m.group(1)), int(m.group(2)))
        if key in images:
            msg = f"{path}: a second, different image for class {key[0]} id {key[1]}"
            raise AssembleError(msg)
        images[key] = (path, data)
    labels: dict[int, list[str]] = {k: [] for k in range(1, 7)}
    sources = ["file\trepository\tpath\tsha256\tkind\tlabel"]
    repo_dagm, repo_paint = "balarajuyogesh/Defect-Inspection-for-DAGM", "tonewworld/PaintDefect"
    planned: list[tuple[Path, bytes]] = []
    for (k, ident), (path, data) in sorted(images.items()):
        decode(data, path)
        digest = hashlib.sha256(data).hexdigest()
        if (k, ident) in LEFT_OUT:
            print(f"left out {path}: {LEFT_OUT[(k, ident)]}")
            continue
        if (k, ident) in DEV_DEFECTIVE:
            number, label = ident, f"def_{k}.csv row {ident}"
            labels[k].append(dev_line(number, rows[k][ident]))
        elif (k, ident) in masks:
            mask = decode(masks[(k, ident)], f"{path} mask") > 0
            e = fit_ellipse(mask)
            if e is None or (overlap := iou(e, mask)) < 0.9:
                msg = f"{path}: its mask is not an ellipse"
                raise AssembleError(msg)
            number, label = SPLIT_OFFSET + ident, f"ellipse fitted to its mask (IoU {overlap:.3f})"
            labels[k].append(format_dev_label(number, e))
        else:
            msg = f"{path}: no mask and not in the decided lists; look at it and add it to one"
            raise AssembleError(msg)
        target = out / f"Class{k}_def" / f"{number}.png"
        planned.append((target, data))
        sources.append(
            f"{target.relative_to(out)}\t{repo_dagm}\t{path}\t{digest}\tdefective\t{label}"
        )
    for n in PAINT:
        path = f"static/uploads/{n:04d}.PNG"
        data = git_blob(paint_git, path)
        decode(data, path)
        if n in PAINT_DEFECTIVE:
            print(f"left out {path}: a scratch without a label")
            continue
        target = out / "Class2" / f"{SPLIT_OFFSET + n}.png"
        planned.append((target, data))
        digest = hashlib.sha256(data).hexdigest()
        sources.append(f"{target.relative_to(out)}\t{repo_paint}\t{path}\t{digest}\tgood\t-")
    for k in range(1, 7):
        (out / f"Class{k}").mkdir(parents=True)
        (out / f"Class{k}_def").mkdir()
        (out / f"Class{k}_def" / "labels.txt").write_text("\n".join(labels[k]) + "\n")
        g = geometry / f"Class{k}_def"
        g.mkdir(parents=True)
        lines = [dev_line(i, v) for i, v in sorted(rows[k].items())]
        (g / "labels.txt").write_text("\n".join(lines) + "\n")
    for target, data in planned:
        target.write_bytes(data)
    (out / "SOURCES.tsv").write_text("\n".join(sources) + "\n")
    good = sum(1 for t, _ in planned if not t.parent.name.endswith("_def"))
    print(f"wrote {len(planned)} images ({good} good) to {out}; 6 × 150 ellipses to {geometry}")
    for cls, ident in sorted(DEV_DEFECTIVE):
        e = dev_ellipse(rows[cls][ident])
        print(
            f"Class{cls}_def/{ident}.png: ellipse centre ({e.cx:.0f}, {e.cy:.0f}), "
            f"semi-axes {e.a:.0f}×{e.b:.0f}, {math.degrees(e.theta):.0f}°"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dagm-git", type=Path, required=True)
    parser.add_argument("--paint-git", type=Path, required=True)
    parser.add_argument("--ellipses", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "real-dagm")
    parser.add_argument("--geometry-out", type=Path, default=ROOT / "data" / "real-dagm-geometry")
    args = parser.parse_args(argv)
    try:
        assemble(args.dagm_git, args.paint_git, args.ellipses, args.out, args.geometry_out)
    except (AssembleError, OSError, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
