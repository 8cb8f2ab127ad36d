"""``pyinspect calibrate``: choose the defect threshold on labelled images and write it into the
model's sidecar (``--model M --data ROOT [--split val] (--target-tpr T | --max-false-alarm F)``).

The split runs once; each image keeps its score (highest patch defect probability). Every
distinct score in (0, 1] is a candidate threshold (an image is flagged iff its score is >= the
threshold, as the voter decides at run time), and the rule picks one:

- ``--target-tpr T``: the highest TNR among thresholds with TPR >= T (ties: the largest);
- ``--max-false-alarm F``: the highest TPR among thresholds with false-alarm rate (1 − TNR) <= F
  that catch at least one defective image (ties: the highest TNR, then the largest threshold).

The threshold and its measured operating point go into the sidecar through
``ModelSpec.with_threshold`` (the previous pair moves to ``history``) and an atomic ``save``;
``pyinspect evaluate`` on the same split reproduces the counts exactly. The ROC and PR curves are
saved as a PNG (matplotlib when it is installed, else drawn with OpenCV). The plot never replaces
a file unless its SHA-256 is one this sidecar recorded for a plot calibrate wrote. A target that
cannot be reached is exit status 1 with the best achievable value, and nothing is written.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyinspect.errors import InputError, PyInspectError
from pyinspect.evaluate_cli import (
    EXIT_FAILED,
    EXIT_OK,
    add_data_arguments,
    check_threads,
    evaluate_samples,
    report_failures,
    select_samples,
    split_file_for,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pyinspect.evaluation import OperatingPoint
    from pyinspect.spec import ModelSpec

__all__ = [
    "PLOT_SUFFIX",
    "RULES",
    "UnreachableTargetError",
    "add_arguments",
    "choose_threshold",
    "plot_owned",
    "render_plot",
    "run",
]

RULES = ("target_tpr", "max_false_alarm")
PLOT_SUFFIX = ".calibration.png"


class UnreachableTargetError(PyInspectError, ValueError):
    """No candidate threshold meets the rule; the message names the best achievable value."""


# ---- the rule ------------------------------------------------------------------------------------
def choose_threshold(points: Sequence[OperatingPoint], rule: str, target: float) -> OperatingPoint:
    """The operating point the rule picks among ``points`` (see the module docstring)."""
    if rule not in RULES:
        msg = f"rule must be one of {list(RULES)}, got {rule!r}"
        raise InputError(msg)
    if not points:
        msg = "every image scores 0: no threshold in (0, 1] separates any image"
        raise UnreachableTargetError(msg)
    if rule == "target_tpr":
        ok = [p for p in points if p.tpr >= target]
        if not ok:
            best = max(points, key=lambda p: (p.tpr, p.threshold))
            msg = (
                f"TPR >= {target:g} cannot be reached: the best is {best.tpr:.4f}"
                f" ({best.tp}/{best.tp + best.fn} defective images flagged) at threshold"
                f" {best.threshold:.6g}; the others score 0"
            )
            raise UnreachableTargetError(msg)
        return max(ok, key=lambda p: (p.tnr, p.threshold))
    catching = [p for p in points if p.tp > 0]
    ok = [p for p in catching if p.false_alarm_rate <= target]
    if not ok:
        if not catching:
            msg = "no defective image scores above 0: no threshold catches any"
            raise UnreachableTargetError(msg)
        best = min(catching, key=lambda p: (p.false_alarm_rate, -p.tpr))
        msg = (
            f"a false-alarm rate <= {target:g} cannot be reached while catching any defective"
            f" image: the best is {best.false_alarm_rate:.4f} ({best.fp}/{best.fp + best.tn}"
            f" good images flagged) at threshold {best.threshold:.6g}, TPR {best.tpr:.4f}"
        )
        raise UnreachableTargetError(msg)
    return max(ok, key=lambda p: (p.tpr, p.tnr, p.threshold))


def _rule_from_args(args: argparse.Namespace) -> tuple[str, float]:
    """(rule, target) from ``--target-tpr`` / ``--max-false-alarm``: exactly one, in range."""
    given = [
        (r, v)
        for r, v in (("target_tpr", args.target_tpr), ("max_false_alarm", args.max_false_alarm))
        if v is not None
    ]
    if len(given) != 1:
        what = "both were given" if given else "neither was given"
        msg = f"calibrate needs exactly one of --target-tpr T and --max-false-alarm F ({what})"
        raise InputError(msg)
    rule, text = given[0]
    flag = "--target-tpr" if rule == "target_tpr" else "--max-false-alarm"
    try:
        value = float(text)
    except ValueError:
        msg = f"{flag} must be a number, got {text!r}"
        raise InputError(msg) from None
    if rule == "target_tpr" and not 0.0 < value <= 1.0:
        msg = f"{flag} must be in (0, 1], got {text}"
        raise InputError(msg)
    if rule == "max_false_alarm" and not 0.0 <= value < 1.0:
        msg = f"{flag} must be in [0, 1), got {text}"
        raise InputError(msg)
    return rule, value


# ---- the plot ------------------------------------------------------------------------------------
def _curves(
    points: Sequence[OperatingPoint],
) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """ROC (false-alarm rate, TPR) from (0, 0) to (1, 1), and PR (recall, precision), from
    ``points`` in ascending threshold order."""
    down = list(reversed(points))  # threshold descending: both rates rise
    roc = [(0.0, 0.0), *((p.false_alarm_rate, p.tpr) for p in down), (1.0, 1.0)]
    pr = [(p.tpr, p.precision) for p in down if p.precision is not None]
    return roc, pr  # type: ignore[return-value]


def render_plot(
    points: Sequence[OperatingPoint],
    chosen: OperatingPoint,
    title: str,
    *,
    use_matplotlib: bool | None = None,
) -> tuple[bytes, str]:
    """PNG bytes of the ROC and PR curves with the chosen point marked, and what drew them
    (``"matplotlib"`` or ``"opencv"``). ``use_matplotlib=None``: matplotlib when importable."""
    if use_matplotlib is not False:
        try:
            return _render_matplotlib(points, chosen, title), "matplotlib"
        except ImportError:
            if use_matplotlib:
                raise
    return _render_opencv(points, chosen, title), "opencv"


def _render_matplotlib(
    points: Sequence[OperatingPoint], chosen: OperatingPoint, title: str
) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    roc, pr = _curves(points)
    fig = Figure(figsize=(9.0, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax_roc, ax_pr = fig.subplots(1, 2)
    ax_roc.plot([x for x, _ in roc], [y for _, y in roc], color="C0")
    ax_roc.plot([0, 1], [0, 1], color="0.8", linewidth=0.8)
    ax_roc.plot(chosen.false_alarm_rate, chosen.tpr, "o", color="C3")
    ax_roc.set(
        xlabel="false-alarm rate (1 - TNR)",
        ylabel="TPR",
        title="ROC",
        xlim=(-0.02, 1.02),
        ylim=(-0.02, 1.02),
    )
    if pr:
        ax_pr.plot([x for x, _ in pr], [y for _, y in pr], color="C0")
    if chosen.precision is not None:
        ax_pr.plot(chosen.tpr, chosen.precision, "o", color="C3")
    ax_pr.set(
        xlabel="recall (TPR)",
        ylabel="precision",
        title="PR",
        xlim=(-0.02, 1.02),
        ylim=(-0.02, 1.02),
    )
    fig.suptitle(
        f"{title}\nthreshold {chosen.threshold:.6g}: TPR {chosen.tpr:.4f}, TNR {chosen.tnr:.4f}",
        fontsize=9,
    )
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": "pyinspect calibrate"})
    return buf.getvalue()


def _render_opencv(points: Sequence[OperatingPoint], chosen: OperatingPoint, title: str) -> bytes:
    import cv2
    import numpy as np

    roc, pr = _curves(points)
    size, margin, top = 320, 50, 60
    canvas = np.full((top + size + margin, 2 * (size + 2 * margin), 3), 255, np.uint8)
    font, black, blue, red = cv2.FONT_HERSHEY_SIMPLEX, (0, 0, 0), (180, 90, 20), (30, 30, 220)

    def panel(k: int, curve: list[tuple[float, float]], mark: tuple[float, float] | None,
              name: str, xlabel: str, ylabel: str) -> None:  # fmt: skip
        x0, y0 = margin + k * (size + 2 * margin), top + size

        def px(x: float, y: float) -> tuple[int, int]:
            return (round(x0 + x * size), round(y0 - y * size))

        cv2.rectangle(canvas, px(0, 0), px(1, 1), black, 1)
        if name == "ROC":
            cv2.line(canvas, px(0, 0), px(1, 1), (210, 210, 210), 1, cv2.LINE_AA)
        for t in (0.0, 0.5, 1.0):
            cv2.putText(canvas, f"{t:g}", (px(t, 0)[0] - 8, y0 + 16), font, 0.4, black, 1)
            cv2.putText(canvas, f"{t:g}", (x0 - 28, px(0, t)[1] + 4), font, 0.4, black, 1)
        cv2.putText(canvas, name, (x0 + size // 2 - 15, top - 8), font, 0.55, black, 1)
        cv2.putText(canvas, xlabel, (x0 + 40, y0 + 36), font, 0.45, black, 1)
        cv2.putText(canvas, ylabel, (x0 - 45, top - 8), font, 0.45, black, 1)
        if len(curve) > 1:
            pts = np.array([px(x, y) for x, y in curve], np.int32).reshape(-1, 1, 2)
            cv2.polylines(canvas, [pts], False, blue, 2, cv2.LINE_AA)
        if mark is not None:
            cv2.circle(canvas, px(*mark), 5, red, -1, cv2.LINE_AA)

    panel(0, roc, (chosen.false_alarm_rate, chosen.tpr), "ROC", "false-alarm rate", "TPR")
    mark = None if chosen.precision is None else (chosen.tpr, chosen.precision)
    panel(1, pr, mark, "PR", "recall (TPR)", "precision")
    head = f"threshold {chosen.threshold:.6g}: TPR {chosen.tpr:.4f}, TNR {chosen.tnr:.4f}"
    cv2.putText(canvas, title[:90], (10, 18), font, 0.45, black, 1, cv2.LINE_AA)
    cv2.putText(canvas, head, (10, 36), font, 0.45, black, 1, cv2.LINE_AA)
    ok, png = cv2.imencode(".png", canvas)
    if not ok:
        msg = "cannot encode the calibration plot as PNG"
        raise PyInspectError(msg)
    return png.tobytes()


def _sha256(path: Path) -> str | None:
    try:
        with path.open("rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    except OSError:
        return None


def _recorded_plots(spec: ModelSpec) -> set[str]:
    """SHA-256 of every plot this sidecar says calibrate wrote (current and history)."""
    cals: list[Any] = []
    if spec.calibration is not None:
        cals.append(spec.calibration.model_dump())
    cals += [h.get("calibration") for h in spec.history if isinstance(h, dict)]
    return {
        c["plot_sha256"]
        for c in cals
        if isinstance(c, dict) and isinstance(c.get("plot_sha256"), str)
    }


def plot_owned(spec: ModelSpec, path: Path) -> bool:
    """Whether ``path`` may be (re)written: it does not exist, or it is a regular file whose
    SHA-256 the sidecar recorded for a plot calibrate wrote (so it was not changed since)."""
    if not os.path.lexists(path):
        return True
    if path.is_symlink() or not path.is_file():
        return False
    digest = _sha256(path)
    return digest is not None and digest in _recorded_plots(spec)


def _write_plot(spec: ModelSpec, path: Path, png: bytes) -> None:
    """A new file (``write_new``: never replaces one), or over the plot calibrate wrote before
    (checked again here: it may have changed since the run began), atomically."""
    from pyinspect.outputs import OutputExistsError, replace_file, write_new

    if not os.path.lexists(path):
        write_new(path, png)
        return
    if not plot_owned(spec, path):
        msg = f"--plot {path}: a file appeared there while calibrating; not replaced"
        raise OutputExistsError(msg)
    replace_file(path, png)


# ---- the command ---------------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    add_data_arguments(p, default_split="val")
    p.add_argument(
        "--target-tpr",
        metavar="T",
        default=None,
        help="the highest-TNR threshold whose TPR is >= T, T in (0, 1]",
    )
    p.add_argument(
        "--max-false-alarm",
        metavar="F",
        default=None,
        help="the highest-TPR threshold whose false-alarm rate (1 - TNR) is <= F, F in [0, 1)",
    )
    p.add_argument(
        "--plot",
        type=Path,
        metavar="PATH",
        default=None,
        help=f"ROC + PR plot (PNG; default: MODEL{PLOT_SUFFIX}); an existing file is refused"
        " unless it is the plot calibrate wrote for this model",
    )


def run(args: argparse.Namespace) -> int:
    from pyinspect.errors import ModelFileError
    from pyinspect.evaluation import operating_points
    from pyinspect.inspector import Inspector
    from pyinspect.outputs import OutputError, OutputExistsError, check_output_folder
    from pyinspect.spec import ModelSpec

    rule, target = _rule_from_args(args)
    check_threads(args)
    model = Path(args.model)
    if not model.is_file():
        msg = f"{model}: model file {'is not a file' if model.exists() else 'not found'}"
        raise ModelFileError(msg)
    split_file = split_file_for(model, args.split, args.split_file)
    sidecar = ModelSpec.sidecar_path(model)
    ModelSpec.for_model(model)  # its errors name a missing sidecar, a stale model digest
    try:
        before = sidecar.read_bytes()
    except OSError as exc:
        msg = f"{sidecar}: cannot read the sidecar: {exc.strerror or exc}"
        raise OutputError(msg) from exc
    spec = ModelSpec.from_json(before, source=str(sidecar))  # exactly the bytes compared later
    plot = args.plot if args.plot is not None else Path(f"{model}{PLOT_SUFFIX}")
    if not plot_owned(spec, plot):
        msg = (
            f"--plot {plot}: a file is there that calibrate did not write for this model;"
            " calibrate never replaces it: remove it or pass --plot PATH"
        )
        raise OutputExistsError(msg)
    check_output_folder(plot.parent, "--plot")

    with Inspector(model, args.backend, threads=args.threads, spec=spec) as inspector:
        sel = select_samples(args, spec, split_file)
        outcomes, failures = evaluate_samples(inspector, sel)
        backend, runner = inspector.backend_name, inspector.runner
    where = f"split {sel.split} of {Path(args.data)}"
    if failures:
        report_failures(failures)
        print(
            f"pyinspect: error: {len(failures)} image(s) of {where} could not be inspected;"
            f" {sidecar} not changed",
            file=sys.stderr,
        )
        return EXIT_FAILED
    defective = [sel.ds.classes[o.truth].defective for o in outcomes]
    scores = [o.score for o in outcomes]
    missing = [
        w for w, have in (("defective", any(defective)), ("good", not all(defective))) if not have
    ]
    if missing:
        print(
            f"pyinspect: error: {where} holds no {missing[0]} images: a threshold cannot be"
            f" calibrated on it; {sidecar} not changed",
            file=sys.stderr,
        )
        return EXIT_FAILED
    points = operating_points(scores, defective)
    try:
        chosen = choose_threshold(points, rule, target)
    except UnreachableTargetError as exc:
        print(f"pyinspect: error: {where}: {exc}; {sidecar} not changed", file=sys.stderr)
        return EXIT_FAILED

    rule_text = f"TPR >= {target:g}" if rule == "target_tpr" else f"false alarms <= {target:g}"
    png, drawn_by = render_plot(points, chosen, f"{model.name} on {where} ({rule_text})")
    calibration = {
        "threshold": chosen.threshold,
        "rule": rule,
        "target": target,
        "tpr": chosen.tpr,
        "tnr": chosen.tnr,
        "tp": chosen.tp,
        "fn": chosen.fn,
        "tn": chosen.tn,
        "fp": chosen.fp,
        "split": sel.split,
        "data": str(Path(args.data).resolve()),
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "split_file": None if split_file is None else str(split_file.resolve()),
        "defect_types": sel.ds.mode,
        "images": len(outcomes),
        "backend": backend,
        "runner": runner,
        "plot": str(plot),
        "plot_sha256": hashlib.sha256(png).hexdigest(),
    }
    updated = spec.with_threshold(
        chosen.threshold, {k: v for k, v in calibration.items() if v is not None}
    )
    if sidecar.read_bytes() != before:
        msg = f"{sidecar}: changed while calibrating; not written (run calibrate again)"
        raise OutputError(msg)
    updated.save(sidecar)
    try:
        _write_plot(spec, plot, png)
    except OSError as exc:
        print(f"pyinspect: error: {exc} (the threshold was written to {sidecar})", file=sys.stderr)
        return EXIT_FAILED
    print(_summary(spec, chosen, rule_text, where, len(outcomes), sidecar, plot, drawn_by))
    return EXIT_OK


def _summary(
    old: ModelSpec,
    p: OperatingPoint,
    rule_text: str,
    where: str,
    images: int,
    sidecar: Path,
    plot: Path,
    drawn_by: str,
) -> str:
    was = "the argmax rule" if old.threshold is None else f"threshold {old.threshold:.6g}"
    kept = (
        ""
        if old.threshold is None and old.calibration is None
        else "; the previous one is kept in history"
    )
    return (
        f"threshold {p.threshold:.6g} ({rule_text}) on {where}, {images} images:"
        f" TPR {p.tpr:.4f} ({p.tp}/{p.tp + p.fn}), TNR {p.tnr:.4f} ({p.tn}/{p.tn + p.fp}),"
        f" {p.fp} false alarm(s), {p.fn} miss(es)\n"
        f"wrote {sidecar} (was {was}{kept}); plot {plot} ({drawn_by})"
    )
