"""``pyinspect evaluate --model M --data ROOT [--split test]``: a model's image-level metrics on
labelled data in the generic dataset layout (``pyinspect.dataset``), without retraining.

The split comes from ``split.json`` beside the model (what ``train run`` wrote) or
``--split-file``; ``--split all`` takes every image. The options that pick the data are shared
with ``pyinspect calibrate`` (``add_data_arguments`` / ``select_samples``), so both read the
same images the same way. Exit statuses: 0 done, 1 some images could not be read or inspected
(each named; the metrics cover the rest), 2 usage (an option, the model, the data, the split or a
class table that does not match refused).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyinspect.backends.base import BACKEND_CHOICES
from pyinspect.cli import add_threshold_argument
from pyinspect.errors import InputError

if TYPE_CHECKING:
    from pyinspect.dataset import Dataset, Sample
    from pyinspect.evaluation import ClassMatch, Failure, ImageOutcome
    from pyinspect.inspector import Inspector, ThresholdChoice
    from pyinspect.spec import ModelSpec

__all__ = [
    "SPLIT_CHOICES",
    "Selection",
    "add_arguments",
    "add_data_arguments",
    "evaluate_samples",
    "run",
    "select_samples",
    "split_file_for",
]

SPLIT_CHOICES = ("test", "val", "train", "all")
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_data_arguments(p: argparse.ArgumentParser, *, default_split: str) -> None:
    """``--model --data --split --split-file --defect-types --backend --threads``."""
    p.add_argument("--model", "-m", required=True, help="model file (its .json sidecar beside it)")
    p.add_argument(
        "--data", required=True, metavar="ROOT", help="labelled images in the generic layout"
    )
    p.add_argument(
        "--split",
        choices=SPLIT_CHOICES,
        default=default_split,
        help=f"part of split.json to use, or all: every image (default: {default_split})",
    )
    p.add_argument(
        "--split-file",
        type=Path,
        metavar="F",
        help="the split file (default: split.json in the model's folder)",
    )
    p.add_argument(
        "--defect-types",
        choices=("merge", "keep"),
        default=None,
        help="class table: one defective class per group, or one per defect type (default: keep"
        " when the model's classes name defect types, else merge)",
    )
    p.add_argument(
        "--backend",
        default="auto",
        choices=BACKEND_CHOICES,
        help="auto (default) or a backend by name, as for inspect",
    )
    p.add_argument("--threads", type=int, default=None, help="backend threads (physical cores)")


def split_file_for(model: str | Path, split: str, split_file: Path | None) -> Path | None:
    """The split file to read: ``--split-file``, else ``split.json`` beside the model; ``None``
    for ``--split all``. Raises ``InputError`` naming what is missing."""
    from pyinspect.dataset import SPLIT_JSON

    if split == "all":
        if split_file is not None:
            msg = (
                f"--split-file {split_file}: --split all uses every image of the data; name a"
                " part (--split train, val or test) to read the split file"
            )
            raise InputError(msg)
        return None
    if split_file is not None:
        if not split_file.is_file():
            why = "not a file" if split_file.exists() else "not found"
            msg = f"--split-file {split_file}: {why}"
            raise InputError(msg)
        return split_file
    path = Path(model).parent / SPLIT_JSON
    if not path.is_file():
        msg = (
            f"{path}: no split file beside the model; pass --split-file F, or --split all to"
            " use every image"
        )
        raise InputError(msg)
    return path


@dataclass
class Selection:
    """The data an evaluation or a calibration runs on."""

    ds: Dataset
    samples: list[Sample]
    split: str
    split_file: Path | None
    match: ClassMatch


def select_samples(args: argparse.Namespace, spec: ModelSpec, split_file: Path | None) -> Selection:
    """Load ``--data`` in the class-table mode asked for (default: the model's), check it against
    the model's class table and take the split's samples."""
    from pyinspect.dataset import DatasetError, load_dataset, read_split
    from pyinspect.evaluation import match_class_table, model_defect_mode

    mode = args.defect_types or model_defect_mode(spec)
    ds = load_dataset(args.data, defect_types=mode, strict=True)
    match = match_class_table(spec, ds)
    samples = ds.samples if split_file is None else read_split(split_file, ds, args.split)
    if not samples:
        msg = f"{split_file}: split {args.split!r} lists no images"
        raise DatasetError(msg)
    return Selection(ds, samples, args.split, split_file, match)


def evaluate_samples(
    inspector: Inspector, sel: Selection, threshold: ThresholdChoice = None
) -> tuple[list[ImageOutcome], list[Failure]]:
    """Run the selection through ``inspector`` with a progress bar on stderr (a terminal only)."""
    from tqdm import tqdm

    from pyinspect.evaluation import run_samples

    def bar(items: Any) -> Any:
        return tqdm(items, unit="img", file=sys.stderr, leave=False, disable=None)

    return run_samples(inspector, sel.ds, sel.samples, sel.match, threshold=threshold, progress=bar)


def report_failures(failures: list[Failure]) -> None:
    for f in failures:
        print(f"pyinspect: error: {f.path}: {f.error}", file=sys.stderr)


def check_threads(args: argparse.Namespace) -> None:
    if args.threads is not None and args.threads < 1:
        msg = f"--threads must be >= 1, got {args.threads}"
        raise InputError(msg)


# ---- evaluate -----------------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    add_data_arguments(p, default_split="test")
    add_threshold_argument(p)
    p.add_argument("--json", action="store_true", help="print one JSON document")


def run(args: argparse.Namespace) -> int:
    from pyinspect.evaluation import image_metrics
    from pyinspect.inspector import Inspector

    check_threads(args)
    split_file = split_file_for(args.model, args.split, args.split_file)
    with Inspector(
        args.model, args.backend, threshold=args.threshold, threads=args.threads
    ) as inspector:
        sel = select_samples(args, inspector.spec, split_file)
        outcomes, failures = evaluate_samples(inspector, sel)
        threshold = inspector.threshold
        if args.threshold is not None:
            source = "--threshold"
        else:
            source = "sidecar" if threshold is not None else "default (the sidecar sets none)"
        doc: dict[str, Any] = {
            "model": str(args.model),
            "data": str(Path(args.data).resolve()),
            "split": sel.split,
            "split_file": None if split_file is None else str(split_file),
            "defect_types": sel.ds.mode,
            "rule": "argmax" if threshold is None else "threshold",
            "threshold": threshold,
            "threshold_from": source,
            "backend": inspector.backend_name,
            "runner": inspector.runner,
            "images": len(outcomes),
            "failed": [{"path": f.path, "error": f.error} for f in failures],
            **image_metrics(sel.ds.classes, sel.ds.groups, outcomes, mode=sel.ds.mode),
        }
    report_failures(failures)
    if args.json:
        print(json.dumps(doc))
    else:
        print(_text(doc))
    return EXIT_FAILED if failures else EXIT_OK


def _frac(rate: float | None, num: int, den: int) -> str:
    return "-" if rate is None else f"{rate:.4f} ({num}/{den})"


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.4f}"


def _text(doc: dict[str, Any]) -> str:
    o = doc["overall"]
    rule = "argmax" if doc["threshold"] is None else f"threshold {doc['threshold']:.6g}"
    where = doc["split"] + (f" of {doc['split_file']}" if doc["split_file"] else "")
    lines = [
        f"{doc['model']} on {doc['data']} (split {where}, {doc['defect_types']} defect types):"
        f" {doc['images']} images, {rule} ({doc['threshold_from']})"
        f" [{doc['backend']}"
        + ("" if doc["runner"] == "backend" else f" + {doc['runner']} runner")
        + "]",
        f"overall  TPR {_frac(o['tpr'], o['tp'], o['defective_images'])}"
        f"  TNR {_frac(o['tnr'], o['tn'], o['good_images'])}"
        f"  accuracy {_pct(o['accuracy'])}  group accuracy {_pct(o['group_accuracy'])}"
        + (
            f"  defect-type accuracy {_pct(o['defect_type_accuracy'])}"
            f" (of {o['defect_type_caught']} caught)"
            if o["defect_type_accuracy"] is not None
            else ""
        ),
    ]
    width = max([len(g["group"]) for g in doc["groups"]] + [5])
    lines.append(f"{'group':<{width}}  images  TPR                 TNR")
    for g in doc["groups"]:
        lines.append(
            f"{g['group']:<{width}}  {g['images']:>6}"
            f"  {_frac(g['tpr'], g['tp'], g['defective_images']):<18}"
            f"  {_frac(g['tnr'], g['tn'], g['good_images'])}"
        )
    cwidth = max([len(c["class"]) for c in doc["classes"]] + [5])
    lines.append(f"{'class':<{cwidth}}  images  exact     TPR/TNR")
    for c in doc["classes"]:
        rate = c.get("tpr", c.get("tnr"))
        lines.append(
            f"{c['class']:<{cwidth}}  {c['images']:>6}  {_pct(c['recall']):<8}"
            f"  {'TPR' if c['defective'] else 'TNR'} {_pct(rate)}"
        )
    conf = doc["confusion"]
    lines.append("confusion (rows = truth, columns = verdict): " + " | ".join(conf["columns"]))
    for name, row in zip(conf["rows"], conf["matrix"], strict=True):
        lines.append(f"{name:<{cwidth}}  " + " ".join(f"{v:>5}" for v in row))
    if doc["failed"]:
        lines.append(f"{len(doc['failed'])} image(s) could not be inspected (listed on stderr)")
    return "\n".join(lines)
