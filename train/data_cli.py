"""``python -m train data synth|sheet|check|import|compare``: make, look at, validate and import
datasets.

``synth``, ``sheet`` and ``compare`` work on DAGM trees; ``check`` on the generic layout
(``pyinspect.dataset``, via ``train.data_check``) and both DAGM layouts; ``import`` copies a
public set into the generic layout (``train.data_import``). numpy + OpenCV only, so the demo
can run it in the runtime venv. Exit status: 0 done; 1 the tree has problems (``check``), an
import was refused, or a tree cannot be read or written (each named); 2 a usage error (bad
numbers, a missing ``ROOT``, an unusable ``--out``: nothing written); 130 interrupted.
"""

from __future__ import annotations

import argparse
import re
import struct
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from pyinspect.dataset import DEFECT_TYPE_MODES, DatasetError, is_generic_root
from train.dagm import DagmError, DagmRecord, defect_mask, load_dagm, read_image
from train.synth import VERSIONS

__all__ = ["check_tree", "contact_sheet", "main"]


def contact_sheet(
    records: list[DagmRecord], *, per_kind: int = 2, thumb: int = 256
) -> npt.NDArray[np.uint8]:
    """BGR sheet: one row per texture, ``per_kind`` good then ``per_kind`` defective images.

    The label ellipse (or the mask's outline) is drawn in red on defective images.
    """
    textures = sorted({r.texture for r in records})
    if not textures:
        msg = "no records to draw"
        raise DagmError(msg)
    pad, head, left = 6, 22, 64
    cols = 2 * per_kind
    sheet = np.full(
        (head + len(textures) * (thumb + pad), left + cols * (thumb + pad), 3), 255, np.uint8
    )
    for c, text in enumerate(["good"] * per_kind + ["defective"] * per_kind):
        x = left + c * (thumb + pad)
        cv2.putText(
            sheet, text, (x + 4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA
        )
    scale = 16
    for row, t in enumerate(textures):
        y = head + row * (thumb + pad)
        cv2.putText(
            sheet,
            f"Class{t + 1}",
            (4, y + thumb // 2),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
        picks = [r for r in records if r.texture == t and not r.defective][:per_kind]
        picks += [r for r in records if r.texture == t and r.defective][:per_kind]
        for c, rec in enumerate(picks):
            img = read_image(rec)
            s = thumb / img.shape[1]
            tile = cv2.cvtColor(
                cv2.resize(img, (thumb, thumb), interpolation=cv2.INTER_AREA), cv2.COLOR_GRAY2BGR
            )
            if rec.defective and rec.ellipse is not None:
                e = rec.ellipse
                cv2.ellipse(
                    tile,
                    (round(e.cx * s * scale), round(e.cy * s * scale)),
                    (round(e.a * s * scale), round(e.b * s * scale)),
                    float(np.degrees(e.theta)),
                    0,
                    360,
                    (0, 0, 255),
                    1,
                    cv2.LINE_AA,
                    4,
                )
            elif rec.defective:
                small = cv2.resize(
                    defect_mask(rec, img.shape).astype(np.uint8),
                    (thumb, thumb),
                    interpolation=cv2.INTER_NEAREST,
                )
                contours, _ = cv2.findContours(small, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
                cv2.drawContours(tile, contours, -1, (0, 0, 255), 1, cv2.LINE_AA)
            x = left + c * (thumb + pad)
            sheet[y : y + thumb, x : x + thumb] = tile
    return sheet


def _png_header(path: Path) -> tuple[int, int, int, int]:
    """(width, height, bit depth, colour type) from a PNG's IHDR, without decoding pixels."""
    with path.open("rb") as f:
        head = f.read(26)
    if len(head) < 26 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        msg = f"{path}: not a PNG file"
        raise DagmError(msg)
    width, height, depth, colour = struct.unpack(">IIBB", head[16:26])
    return width, height, depth, colour


def check_tree(root: Path, *, deep: bool = False, size: int = 512) -> list[str]:
    """Problems found in a DAGM tree (empty when it is valid); prints counts per class/split."""
    records = load_dagm(root)
    counts = Counter((r.texture, r.split or "-", r.defective) for r in records)
    print(f"{root}: {len(records)} images")
    print(f"{'class':<8}{'split':<7}{'good':>6}{'defective':>11}")
    for t, split in sorted({(t, s) for t, s, _ in counts}):
        good, bad = counts[(t, split, False)], counts[(t, split, True)]
        print(f"Class{t + 1:<3}{split:<7}{good:>6}{bad:>11}")
    problems = []
    for r in records:
        try:
            w, h, depth, colour = _png_header(r.path)
            if (w, h, depth, colour) != (size, size, 8, 0):
                problems.append(
                    f"{r.path}: {w}×{h}, {depth}-bit, colour type {colour}; expected "
                    f"{size}×{size} 8-bit grayscale (type 0)"
                )
            if deep:
                img = read_image(r)
                if r.defective and not defect_mask(r, img.shape).any():
                    problems.append(f"{r.path}: defect region is empty inside the image")
        except DagmError as exc:
            problems.append(str(exc))
    return problems


def _cmd_synth(args: argparse.Namespace) -> int:
    from train.synth import synthesize

    names = ("classes", "good", "defective", "seed", "layout", "workers", "version")
    try:
        seconds = synthesize(args.out, **{k: getattr(args, k) for k in names})
    except DagmError as exc:  # refused before writing, or removed again: nothing of it is left
        print(f"error: {exc}", file=sys.stderr)
        return 2
    n = args.classes * (args.good + args.defective)
    print(f"wrote {n} images to {args.out} in {seconds:.1f} s")
    return 0


def _cmd_sheet(args: argparse.Namespace) -> int:
    sheet = contact_sheet(load_dagm(args.root), per_kind=args.per_kind, thumb=args.thumb)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(args.output), sheet, [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        msg = f"cannot write {args.output}"
        raise OSError(msg)
    print(f"wrote {args.output} ({sheet.shape[1]}×{sheet.shape[0]})")
    return 0


_DAGM_CLASS = re.compile(r"^class\d+(_def)?$", re.IGNORECASE)


def _looks_like_dagm(root: Path) -> bool:
    """A ``Class<k>`` folder at most three levels down (``load_dagm`` looks through wrappers)."""
    level = [root]
    for _ in range(3):
        level = [p for d in level for p in sorted(d.iterdir()) if p.is_dir()][:200]
        if any(_DAGM_CLASS.match(p.name) for p in level):
            return True
    return False


def _cmd_check(args: argparse.Namespace) -> int:
    root = args.root
    if not root.is_dir():
        why = "no such folder" if not root.exists() else "not a folder"
        print(f"error: ROOT {root}: {why}", file=sys.stderr)
        return 2
    if is_generic_root(root):
        from train.data_check import check_generic, print_report

        report = check_generic(root, defect_types=args.defect_types, seed=args.seed)
        print_report(report, verbose=args.verbose)
        return 0 if report.usable else 1
    if not _looks_like_dagm(root):
        print(
            f"error: {root}: neither the generic layout (ROOT/good/ or ROOT/<group>/good/, see "
            "docs/data.md) nor a DAGM tree (Class<k>/)",
            file=sys.stderr,
        )
        return 1
    problems = check_tree(root, deep=args.deep)
    for p in problems[:50]:
        print(p, file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s)", file=sys.stderr)
        return 1
    print("ok")
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    from train.data_import import FORMATS, describe

    try:
        result = FORMATS[args.format](args.src, args.root, strict=args.strict)
    except DatasetError as exc:  # one line: the refusal, naming the file
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    for line in result.warnings:
        print(f"warning: {line}", file=sys.stderr)
    for line in describe(result):
        print(line)
    return 0


def _int_in(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high], else a usage error naming the value."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            msg = f"must be an integer, got {text!r}"
            raise argparse.ArgumentTypeError(msg) from None
        if value < low or (high is not None and value > high):
            bound = f"in {low}..{high}" if high is not None else f">= {low}"
            msg = f"must be {bound}, got {value}"
            raise argparse.ArgumentTypeError(msg)
        return value

    return parse


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


def _main(argv: list[str] | None) -> int:
    from train.synth import TEXTURES

    parser = argparse.ArgumentParser(prog="python -m train data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("synth", help="write a synthetic DAGM set in the real layout")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--classes", type=_int_in(1, len(TEXTURES)), default=len(TEXTURES))
    p.add_argument("--good", type=_int_in(0), default=1000, help="good images per class")
    p.add_argument("--defective", type=_int_in(0), default=150, help="defective images per class")
    p.add_argument("--seed", type=_int_in(0, 2**63 - 1), default=0)
    p.add_argument("--layout", choices=["dev", "10class"], default="dev")
    p.add_argument("--workers", type=_int_in(1), default=None, help="processes (default: all)")
    p.add_argument(
        "--version",
        type=int,
        choices=list(VERSIONS),
        default=1,
        help="generator: 1 (the shipped student's), 2 (fitted to real DAGM statistics) or 3 "
        "(2 with class 2 refitted to what a network sees)",
    )
    p.set_defaults(func=_cmd_synth)
    p = sub.add_parser("sheet", help="contact sheet: per class 2 good + 2 defective")
    p.add_argument("root", type=Path)
    p.add_argument("-o", "--output", type=Path, default=Path("sheet.png"))
    p.add_argument("--per-kind", type=_int_in(1), default=2)
    p.add_argument("--thumb", type=_int_in(8, 4096), default=256, help="thumbnail size in pixels")
    p.set_defaults(func=_cmd_sheet)
    p = sub.add_parser(
        "check", help="counts, sizes, masks and problems of a generic-layout or DAGM tree"
    )
    p.add_argument("root", type=Path)
    p.add_argument(
        "--deep",
        action="store_true",
        help="DAGM: also decode every image and mask (the generic layout always does)",
    )
    p.add_argument(
        "--defect-types",
        choices=DEFECT_TYPE_MODES,
        default="merge",
        help="generic layout: one defective class per group (merge) or one per defect type",
    )
    p.add_argument("--verbose", action="store_true", help="list skipped files and noted files")
    p.add_argument(
        "--seed", type=_int_in(0, 2**63 - 1), default=0, help="seed of the split to check"
    )
    p.set_defaults(func=_cmd_check)
    from train.data_import import FORMATS

    p = sub.add_parser("import", help="copy a public set into the generic layout")
    p.add_argument("format", choices=list(FORMATS), help="mtd | ksdd | dagm")
    p.add_argument("src", type=Path, help="the set as downloaded (only read)")
    p.add_argument("root", type=Path, help="a new or empty folder, not inside SRC")
    p.add_argument(
        "--strict",
        action="store_true",
        help="refuse what the format's policy keeps with a warning (e.g. MTD's empty masks)",
    )
    p.set_defaults(func=_cmd_import)
    from train import data_compare

    data_compare.add_parser(sub)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse has printed
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return int(args.func(args))
    except (DagmError, DatasetError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
