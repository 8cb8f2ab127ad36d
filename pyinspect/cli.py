"""``pyinspect`` command line: ``pyinspect inspect IMG|DIR... --model M`` and friends.

Subcommands live in a registry: ``inspect`` is defined here; a command whose code lives in
another module is a row of ``LAZY_COMMANDS`` (name, module, help), and its module, which must
define ``add_arguments(parser)`` and ``run(args) -> int``, is imported only when the parser is
built. ``run`` returns the exit status; a ``PyInspectError`` it raises is printed as
``pyinspect: error: ...`` (status 2).
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import statistics
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pyinspect import __version__
from pyinspect.backends.base import BACKEND_CHOICES
from pyinspect.errors import PyInspectError
from pyinspect.runners.base import RUNNER_CHOICES

IMAGE_SUFFIXES = frozenset({".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".pgm", ".ppm"})

#: Subcommands implemented in other modules: (name, module, help).
LAZY_COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("build", "pyinspect.build.tensorrt", "ONNX -> TensorRT plan for this GPU (FP16/FP32/INT8)"),
)


@dataclass(frozen=True)
class Command:
    """One subcommand: ``add_arguments(parser)`` declares its options, ``run(args)`` does it."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


_COMMANDS: dict[str, Command] = {}


def register_command(command: Command) -> None:
    """Add (or replace) a subcommand."""
    _COMMANDS[command.name] = command


# ---- inspect --------------------------------------------------------------------------------
_DAGM_FOLDER = re.compile(r"^Class(\d+)(_def)?$", re.IGNORECASE)


def dagm_truth(path: str | Path) -> tuple[int, bool] | None:
    """Truth from a DAGM folder name: ``.../Class4_def/x.png`` -> (texture id 3, defective);
    ``None`` when the parent folder is not ``ClassK`` / ``ClassK_def``."""
    m = _DAGM_FOLDER.match(Path(path).parent.name)
    return (int(m[1]) - 1, m[2] is not None) if m and int(m[1]) >= 1 else None


def collect_images(inputs: Iterable[str | Path]) -> tuple[list[Path], bool]:
    """Files given, plus every image under the folders given (sorted; DAGM ``Label`` folders and
    ``*_label.*`` masks skipped). Returns (paths, whether any folder was given)."""
    paths: list[Path] = []
    any_dir = False
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            any_dir = True
            found = [
                f
                for f in p.rglob("*")
                if f.suffix.lower() in IMAGE_SUFFIXES
                and f.is_file()
                and "label" not in {part.lower() for part in f.relative_to(p).parts[:-1]}
                and not f.stem.lower().endswith("_label")
            ]
            paths.extend(sorted(found))
        elif p.is_file():
            paths.append(p)
        else:
            msg = f"{p}: no such file or folder"
            raise FileNotFoundError(msg)
    return paths, any_dir


def render_overlay(image: np.ndarray, result: Any, spec: Any) -> np.ndarray:
    """BGR picture of the verdict: good patches outlined thin green, defective patches tinted
    and outlined red, the label and the highest defect probability written on top."""
    import cv2

    if image.ndim == 2 or image.shape[2] == 1:
        canvas = cv2.cvtColor(
            np.ascontiguousarray(image.reshape(image.shape[:2])), cv2.COLOR_GRAY2BGR
        )
    elif image.shape[2] == 4:
        canvas = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    else:
        canvas = np.ascontiguousarray(image).copy()
    green, red = (60, 200, 60), (0, 0, 255)
    defective = set(result.defective_patches.tolist())
    for i, (x, y, w, h) in enumerate(result.boxes.tolist()):
        if i not in defective:
            cv2.rectangle(canvas, (x, y), (x + w - 1, y + h - 1), green, 1)
    if defective:  # tint the union of defective patches, then outline each one
        mask = np.zeros(canvas.shape[:2], dtype=bool)
        for i in defective:
            x, y, w, h = result.boxes[i].tolist()
            mask[y : y + h, x : x + w] = True
        canvas[mask] = (0.7 * canvas[mask] + 0.3 * np.array(red)).astype(np.uint8)
        for i in sorted(defective):
            x, y, w, h = result.boxes[i].tolist()
            cv2.rectangle(canvas, (x + 1, y + 1), (x + w - 2, y + h - 2), red, 2)
    text = f"{result.label}  p_def={result.max_defect_prob:.2f}"
    scale = max(0.4, min(canvas.shape[:2]) / 900)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(canvas, (0, 0), (tw + 8, th + base + 8), (0, 0, 0), -1)
    color = red if result.defective else green
    cv2.putText(canvas, text, (4, th + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, color, 1, cv2.LINE_AA)
    return canvas


def _overlay_name(path: Path, used: set[str]) -> str:
    """``<parent>_<stem>.png`` (DAGM stems repeat across class folders), made unique."""
    base = f"{path.parent.name}_{path.stem}" if path.parent.name else path.stem
    name, k = f"{base}.png", 2
    while name in used:
        name, k = f"{base}-{k}.png", k + 1
    used.add(name)
    return name


def _add_inspect_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="IMG|DIR", help="images and/or folders of images")
    p.add_argument("--model", "-m", required=True, help="model file (its .json sidecar beside it)")
    p.add_argument(
        "--backend",
        default="auto",
        choices=BACKEND_CHOICES,
        help="auto (default: ONNX Runtime for .onnx, TensorRT for .plan) or a backend by name",
    )
    p.add_argument("--json", action="store_true", help="print JSON lines instead of text")
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="defective if a patch's defect probability >= t (default: argmax class)",
    )
    p.add_argument("--overlay", type=Path, metavar="DIR", help="write a PNG per image here")
    p.add_argument("--threads", type=int, default=None, help="backend threads (physical cores)")
    p.add_argument(
        "--runner",
        choices=RUNNER_CHOICES,
        default=None,
        help="whole-frame runner: auto (default: the direct student runner for the paper's"
        " student on gray frames, else the backend), a runner by name, or backend",
    )
    p.add_argument(
        "--engine",
        choices=("auto", "student", "backend"),
        default=None,
        help="deprecated alias of --runner",
    )


def _run_inspect(args: argparse.Namespace) -> int:
    import cv2
    from tqdm import tqdm

    from pyinspect.frames import load_frame
    from pyinspect.inspector import Inspector

    try:
        paths, any_dir = collect_images(args.inputs)
    except FileNotFoundError as exc:
        print(f"pyinspect: error: {exc}", file=sys.stderr)
        return 2
    if not paths:
        print(f"pyinspect: error: no images found in {args.inputs}", file=sys.stderr)
        return 2
    if args.overlay is not None:
        args.overlay.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    times: list[float] = []
    defective = errors = known = correct = 0
    runner = args.runner or "auto"
    if args.engine is not None:
        print("pyinspect: warning: --engine is deprecated; use --runner", file=sys.stderr)
        runner = args.runner or args.engine
    with Inspector(
        args.model,
        args.backend,
        runner=runner,
        threshold=args.threshold,
        threads=args.threads,
    ) as inspector:
        ran_on = inspector.backend_name + (
            "" if inspector.runner == "backend" else f" + {inspector.runner} runner"
        )
        bar = tqdm(paths, unit="img", file=sys.stderr, disable=not any_dir, leave=False)
        for path in bar:
            try:
                image = load_frame(path)
                result = inspector.run(image, threshold=args.threshold)
            except PyInspectError as exc:
                errors += 1
                msg = str(exc) if str(exc).startswith(str(path)) else f"{path}: {exc}"
                tqdm.write(f"pyinspect: error: {msg}", file=sys.stderr)
                continue
            times.append(result.timings.total_ms)
            defective += result.defective
            truth = dagm_truth(path)
            verdict_ok = None
            if truth is not None:
                known += 1
                verdict_ok = (result.texture, result.defective) == truth
                correct += verdict_ok
            if args.json:
                record = {"path": str(path), **result.to_dict()}
                record["truth"] = (
                    None if truth is None else {"texture": truth[0], "defective": truth[1]}
                )
                line = json.dumps(record)
            else:
                line = (
                    f"{path}  {result.label}  p_def={result.max_defect_prob:.3f}"
                    f"  {result.timings.total_ms:.2f} ms"
                )
                if verdict_ok is False and truth is not None:
                    line += f"  WRONG (truth: {inspector.spec.label(*truth)})"
            tqdm.write(line, file=sys.stdout)
            if args.overlay is not None:
                out = args.overlay / _overlay_name(path, used)
                cv2.imwrite(str(out), render_overlay(image, result, inspector.spec))
        bar.close()
    summary: dict[str, Any] = {
        "images": len(times),
        "defective": defective,
        "errors": errors,
        "median_ms": round(statistics.median(times), 3) if times else None,
        "accuracy": round(correct / known, 6) if known else None,
        "with_truth": known,
        "backend": inspector.backend_name,
        "runner": inspector.runner,
        # deprecated (one release): "student-engine" | "backend"; read "runner" instead
        "engine": "student-engine" if inspector.runner == "student" else "backend",
    }
    if args.json:
        print(json.dumps({"summary": summary}))
    else:
        text = f"{len(times)} images, {defective} defective"
        if times:
            text += f", median {summary['median_ms']:.2f} ms/image"
        if known:
            text += f", accuracy {correct / known:.2%} ({correct}/{known} with DAGM truth)"
        if errors:
            text += f", {errors} failed"
        print(f"{text} [{ran_on}]")
    return 1 if errors else 0


register_command(
    Command(
        "inspect",
        "classify images and print a verdict per image",
        _add_inspect_arguments,
        _run_inspect,
    )
)


# ---- entry point ----------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    for name, module_name, help_text in LAZY_COMMANDS:
        module = importlib.import_module(module_name)
        register_command(Command(name, help_text, module.add_arguments, module.run))
    parser = argparse.ArgumentParser(
        prog="pyinspect", description="Real-time visual inspection of textured surfaces."
    )
    parser.add_argument("--version", action="version", version=f"pyinspect {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for cmd in _COMMANDS.values():
        sp = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        cmd.add_arguments(sp)
        sp.set_defaults(_run=cmd.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit status (argparse's own exits included)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return int(exc.code or 0)
    try:
        return int(args._run(args) or 0)
    except PyInspectError as exc:
        print(f"pyinspect: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
