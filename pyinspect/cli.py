"""``pyinspect`` command line: ``pyinspect inspect IMG|DIR... --model M`` and friends.

Subcommands live in a registry: ``inspect`` is defined here; a command whose code lives in
another module is a row of ``LAZY_COMMANDS`` (name, module, help), and its module, which must
define ``add_arguments(parser)`` and ``run(args) -> int``, is imported only when the parser is
built. ``run`` returns the exit status; a ``PyInspectError`` it raises is printed as
``pyinspect: error: ...`` (status 2), Ctrl-C is status 130 and a closed stdout (``| head``)
status 141, never a traceback (docs/runtime.md lists every command's statuses).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pyinspect import __version__
from pyinspect.backends.base import BACKEND_CHOICES
from pyinspect.errors import InputError, PyInspectError
from pyinspect.inputs import IMAGE_SUFFIXES, Collected, collect_images
from pyinspect.outputs import OutputError, check_output_folder, write_new
from pyinspect.runners.base import PRECISION_CHOICES, RUNNER_CHOICES

__all__ = [
    "IMAGE_SUFFIXES",
    "LAZY_COMMANDS",
    "Command",
    "collect_images",
    "dagm_truth",
    "main",
    "register_command",
    "render_overlay",
]

#: Subcommands implemented in other modules: (name, module, help).
LAZY_COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("build", "pyinspect.build.tensorrt", "ONNX -> TensorRT plan for this GPU (FP16/FP32/INT8)"),
    ("evaluate", "pyinspect.evaluate_cli", "image-level TPR/TNR and confusion on labelled data"),
    ("calibrate", "pyinspect.calibrate", "choose the defect threshold on labelled data"),
    ("export", "pyinspect.export.triton", "model -> a Triton Inference Server model repository"),
    ("watch", "pyinspect.watch", "station daemon: cameras -> verdicts -> the line's systems"),
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


def add_choice_argument(
    parser: argparse.ArgumentParser, flag: str, choices: Sequence[str], help: str
) -> None:
    """Option ``flag`` takes one of ``choices``; the first is its default."""
    parser.add_argument(flag, choices=choices, default=choices[0], help=help)


def args_kwargs(args: argparse.Namespace, *names: str, **renamed: str) -> dict[str, Any]:
    """A command's parsed options as keyword arguments: ``name=args.name`` for each of
    ``names``, ``key=args.option`` for each ``key="option"`` of ``renamed``."""
    values = vars(args)
    return {**{n: values[n] for n in names}, **{k: values[o] for k, o in renamed.items()}}


# ---- inspect --------------------------------------------------------------------------------
_DAGM_FOLDER = re.compile(r"^Class(\d+)(_def)?$", re.IGNORECASE)

#: Exit statuses of ``pyinspect inspect`` (docs/runtime.md has the table for every command).
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_PIPE_CLOSED = 0, 1, 2, 130, 141


def dagm_truth(path: str | Path) -> tuple[int, bool] | None:
    """Truth from a DAGM folder name: ``.../Class4_def/x.png`` -> (texture id 3, defective);
    ``None`` when the parent folder is not ``ClassK`` / ``ClassK_def``."""
    m = _DAGM_FOLDER.match(Path(path).parent.name)
    return (int(m[1]) - 1, m[2] is not None) if m and int(m[1]) >= 1 else None


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
    add_threshold_argument(p)
    p.add_argument(
        "--overlay",
        type=Path,
        metavar="DIR",
        help="write a PNG per image here (new files only: an existing name is refused)",
    )
    p.add_argument("--threads", type=int, default=None, help="backend threads (physical cores)")
    p.add_argument(
        "--runner",
        choices=RUNNER_CHOICES,
        default=None,
        help="whole-frame runner: auto (default: the direct student runner for the paper's"
        " student on gray frames, else the backend), a runner by name, or backend",
    )
    p.add_argument(
        "--precision",
        choices=PRECISION_CHOICES,
        default=None,
        help="f32 (default, the reference); bf16: the direct student runner in bf16 where the"
        " verdict-parity guard accepts it, else f32 with a warning; auto: the lowest precision"
        " this CPU's student kernels have, guarded the same way and kept only when timed"
        " faster than f32 at load; with --backend NAME, that backend's precision",
    )
    p.add_argument(
        "--engine",
        choices=("auto", "student", "backend"),
        default=None,
        help="deprecated alias of --runner",
    )


class _StdoutClosed(Exception):
    """The reader of our stdout went away (``| head``): stop quietly."""


class _StdoutFailed(Exception):
    """Our stdout cannot be written (a full disk, ``> /dev/full``): the results are lost."""


def add_threshold_argument(p: argparse.ArgumentParser) -> None:
    """``--threshold T|argmax``, shared by ``inspect`` and ``evaluate``."""
    p.add_argument(
        "--threshold",
        type=_threshold_arg,
        default=None,
        metavar="T",
        help="defective if a patch's defect probability >= T, in [0, 1]; 'argmax': the argmax"
        " class decides (default: the sidecar's threshold, else argmax)",
    )


def _threshold_arg(text: str) -> float | str:
    """``--threshold``: ``argmax`` or a number (its range is checked where the model loads)."""
    if text.strip().lower() == "argmax":
        return "argmax"
    try:
        return float(text)
    except ValueError:
        msg = f"must be a number in [0, 1] or 'argmax', got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None


def _emit(line: str) -> None:
    """One result line on stdout, flushed, so a failing stdout is noticed at that line (not at
    exit, where Python can only print a traceback)."""
    from tqdm import tqdm

    try:
        tqdm.write(line, file=sys.stdout)
        sys.stdout.flush()
    except BrokenPipeError as exc:
        raise _StdoutClosed from exc
    except OSError as exc:
        raise _StdoutFailed(exc.strerror or str(exc)) from exc


def _error(text: str) -> None:
    from tqdm import tqdm

    tqdm.write(f"pyinspect: error: {text}", file=sys.stderr)


@dataclass
class _Tally:
    """What the run did, for the summary (also when it is interrupted)."""

    times: list[float]
    defective: int = 0
    errors: int = 0
    known: int = 0
    correct: int = 0
    overlays: int = 0
    overlay_errors: int = 0
    interrupted: bool = False
    run_id: str = ""  # the record identity of this command's JSON lines (pyinspect.records)
    model: Any = None
    frames: int = 0


def _overlay_plan(args: argparse.Namespace, paths: list[Path]) -> dict[Path, Path]:
    """Image -> its overlay file. Refused up front when a name is taken: nothing is replaced."""
    used: set[str] = set()
    plan = {path: args.overlay / _overlay_name(path, used) for path in paths}
    taken = [str(out) for out in plan.values() if os.path.lexists(out)]
    if taken:
        shown = ", ".join(taken[:3]) + (f" and {len(taken) - 3} more" if len(taken) > 3 else "")
        msg = (
            f"--overlay {args.overlay}: {len(taken)} file(s) this run would write already exist"
            f" ({shown}); inspect never replaces a file: remove them or choose another folder"
        )
        raise OutputError(msg)
    return plan


def _overlay_placement(args: argparse.Namespace) -> Path | None:
    """Where ``--overlay`` lies among the inputs: the folder of an input is refused (overlays
    would mix with the images), a folder inside an input folder is left out of the inputs.
    Returns the folder to exclude from the inputs, if any. Nothing is created yet."""
    if args.overlay is None:
        return None
    target = Path(os.path.realpath(args.overlay))  # realpath: a symlink loop is no error here
    for item in args.inputs:
        folder = Path(os.path.realpath(item))
        if not folder.is_dir():
            continue
        if target == folder:
            msg = (
                f"--overlay {args.overlay}: is the input folder {item}; overlays would mix with"
                " the images: choose another folder"
            )
            raise InputError(msg)
        if target.is_relative_to(folder):
            print(
                f"pyinspect: note: --overlay {args.overlay} is inside the input folder {item};"
                " its files are not inspected",
                file=sys.stderr,
            )
            return args.overlay
    return None


def _run_inspect(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from pyinspect.inspector import Inspector

    exclude = _overlay_placement(args)
    found = collect_images(args.inputs, exclude=exclude)
    for problem in found.problems:
        _error(problem)
    if not found.paths:
        skipped = f" ({found.masks_skipped} mask files skipped)" if found.masks_skipped else ""
        print(f"pyinspect: error: no images found in {args.inputs}{skipped}", file=sys.stderr)
        return EXIT_USAGE if not found.problems else EXIT_FAILED
    runner = args.runner or "auto"
    if args.engine is not None:
        print("pyinspect: warning: --engine is deprecated; use --runner", file=sys.stderr)
        runner = args.runner or args.engine
    tally = _Tally(times=[], errors=len(found.problems))
    if args.json:
        from pyinspect.records import ModelIdentity, new_run_id

        tally.run_id, tally.model = new_run_id(), ModelIdentity.of(args.model)
    with Inspector(
        args.model,
        args.backend,
        runner=runner,
        threshold=args.threshold,
        threads=args.threads,
        precision=args.precision,
    ) as inspector:
        plan: dict[Path, Path] = {}
        if args.overlay is not None:  # created and proven writable once the model has loaded
            check_output_folder(args.overlay, "--overlay")
            plan = _overlay_plan(args, found.paths)
        bar = tqdm(found.paths, unit="img", file=sys.stderr, disable=not found.any_dir, leave=False)

        def inspect_all() -> None:
            try:
                for path in bar:
                    _inspect_one(args, inspector, path, plan.get(path), tally)
            except KeyboardInterrupt:
                tally.interrupted = True

        try:
            status = _stdout_guard(inspect_all)
        finally:
            bar.close()
        if status is not None:
            return status
        summary = _summary(tally, found, inspector)
    status = _stdout_guard(lambda: _print_summary(args, summary, tally, inspector))
    if status is not None:
        return status
    if tally.interrupted:
        print("pyinspect: interrupted; the summary covers the images done", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_FAILED if tally.errors or tally.overlay_errors else EXIT_OK


def _stdout_guard(action: Callable[[], None]) -> int | None:
    """Run ``action``, which prints results; the exit status when stdout failed under it
    (closed by its reader, or a full disk), else ``None``."""
    try:
        action()
    except _StdoutClosed:
        _silence_stdout()
        return EXIT_PIPE_CLOSED
    except _StdoutFailed as exc:
        print(f"pyinspect: error: cannot write results to stdout: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return None


def _inspect_one(
    args: argparse.Namespace, inspector: Any, path: Path, overlay: Path | None, tally: _Tally
) -> None:
    """Inspect one image, print its line, write its overlay; failures are named and counted."""
    from pyinspect.frames import load_frame
    from pyinspect.resize import fit_to_patch

    captured_ns = time.time_ns()
    tally.frames += 1  # every image gets a frame id; one that fails leaves a gap in the records
    try:
        image = load_frame(path)
        result = inspector.run(image, threshold=args.threshold)
    except PyInspectError as exc:
        tally.errors += 1
        _error(str(exc) if str(exc).startswith(str(path)) else f"{path}: {exc}")
        return
    tally.times.append(result.timings.total_ms)
    tally.defective += result.defective
    truth = dagm_truth(path)
    verdict_ok = None
    if truth is not None:
        tally.known += 1
        verdict_ok = (result.texture, result.defective) == truth
        tally.correct += verdict_ok
    if args.json:
        from pyinspect.records import record_dict

        record = record_dict(
            result,
            model=tally.model,
            run_id=tally.run_id,
            source="cli",
            frame_id=tally.frames,
            captured_ns=captured_ns,
            latency_ms=(time.time_ns() - captured_ns) * 1e-6,
            path=str(path),
            truth=None if truth is None else {"texture": truth[0], "defective": truth[1]},
        )
        line = json.dumps(record)
    else:
        line = (
            f"{path}  {result.label}  p_def={result.max_defect_prob:.3f}"
            f"  {result.timings.total_ms:.2f} ms"
        )
        if verdict_ok is False and truth is not None:
            line += f"  WRONG (truth: {inspector.spec.label(*truth)})"
    _emit(line)
    if overlay is not None:
        # the boxes are in the pixels of the frame as inspected (the sidecar's resize)
        shown = fit_to_patch(image, inspector.spec.patch, inspector.spec.resize)
        _write_overlay(overlay, render_overlay(shown, result, inspector.spec), tally)


def _write_overlay(out: Path, picture: np.ndarray, tally: _Tally) -> None:
    import cv2

    try:
        ok, png = cv2.imencode(".png", picture)
        if not ok:
            msg = f"{out}: cannot encode the overlay as PNG"
            raise OutputError(msg)
        write_new(out, png.tobytes())
    except OutputError as exc:
        tally.overlay_errors += 1
        _error(str(exc))
        return
    tally.overlays += 1


def _summary(tally: _Tally, found: Collected, inspector: Any) -> dict[str, Any]:
    times, known = tally.times, tally.known
    return {
        "images": len(times),
        "defective": tally.defective,
        "errors": tally.errors,
        "median_ms": round(statistics.median(times), 3) if times else None,
        "accuracy": round(tally.correct / known, 6) if known else None,
        "with_truth": known,
        "masks_skipped": found.masks_skipped,
        "excluded": found.excluded,
        "overlays": tally.overlays,
        "overlay_errors": tally.overlay_errors,
        "interrupted": tally.interrupted,
        "backend": inspector.backend_name,
        "runner": inspector.runner,
        "precision": inspector.precision,
        # deprecated (one release): "student-engine" | "backend"; read "runner" instead
        "engine": "student-engine" if inspector.runner == "student" else "backend",
    }


def _print_summary(
    args: argparse.Namespace, summary: dict[str, Any], tally: _Tally, inspector: Any
) -> None:
    if args.json:
        _emit(json.dumps({"summary": summary}))
        return
    ran_on = inspector.backend_name + (
        "" if inspector.runner == "backend" else f" + {inspector.runner} runner"
    )
    text = f"{len(tally.times)} images, {tally.defective} defective"
    if tally.times:
        text += f", median {summary['median_ms']:.2f} ms/image"
    if tally.known:
        text += (
            f", accuracy {tally.correct / tally.known:.2%}"
            f" ({tally.correct}/{tally.known} with DAGM truth)"
        )
    if tally.errors:
        text += f", {tally.errors} failed"
    if summary["masks_skipped"]:
        text += f", {summary['masks_skipped']} mask files skipped"
    if tally.overlay_errors:
        text += f", {tally.overlay_errors} overlays not written"
    if tally.interrupted:
        text += ", interrupted"
    _emit(f"{text} [{ran_on}]")


def _silence_stdout() -> None:
    """After the reader closed our stdout, point it at /dev/null so that Python's own flush at
    exit does not print a BrokenPipeError traceback."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # replaced in-process (tests): nothing to do
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


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
    """Console entry point; returns the exit status (argparse's own exits included): 0 done,
    1 some input or output failed (each named), 2 usage or setup error, 130 interrupted, 141
    stdout closed by its reader."""
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help, --version, usage errors
            return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
        try:
            return int(args._run(args) or 0)
        except (PyInspectError, OSError) as exc:  # an OSError: a path the user gave, named
            print(f"pyinspect: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
    except KeyboardInterrupt:
        print("pyinspect: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_PIPE_CLOSED


if __name__ == "__main__":
    sys.exit(main())
