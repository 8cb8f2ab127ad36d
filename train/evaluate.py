"""The paper's §4 test protocol: 9 covering patches, texture by majority, defective if any.

The grid and the voter are the runtime's (``pyinspect.tiling`` / ``pyinspect.voting``), so a
PyTorch checkpoint evaluated here and the exported model run by ``pyinspect.Inspector`` decide
every image with the same code; :func:`evaluate_inspector` checks that parity.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from train.cli import friendly_errors

NUM_TEXTURES = 6
NUM_CLASSES = 2 * NUM_TEXTURES
CLASS_TEXTURE = (np.arange(NUM_CLASSES) // 2).astype(np.int32)
CLASS_DEFECTIVE = (np.arange(NUM_CLASSES) % 2 == 1).astype(np.bool_)


@dataclass
class EvalResult:
    """Per-image verdicts of one model on one split and the metrics of Table 2/3."""

    labels: np.ndarray  # int [M] true 12-class label (2*texture + defective)
    predictions: np.ndarray  # int [M] predicted 12-class label
    patch_classes: np.ndarray | None = None  # int [M, 9] per-patch argmax class
    paths: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.labels == self.predictions)) if len(self.labels) else float("nan")

    def metrics(self) -> dict[str, Any]:
        return compute_metrics(self.labels, self.predictions) | {"seconds": round(self.seconds, 2)}


def compute_metrics(labels: np.ndarray, predictions: np.ndarray) -> dict[str, Any]:
    """Accuracy over 12 classes, 12×12 confusion (rows = truth) and per-texture TPR/TNR (Table 3).

    TPR(t) = defective images of texture t predicted defective / defective images of texture t;
    TNR(t) = good images of texture t predicted good / good images of texture t (texture of the
    prediction not required, as in the paper's Table 3).
    """
    labels = np.asarray(labels, dtype=np.int64)
    predictions = np.asarray(predictions, dtype=np.int64)
    confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    true_tex, true_def = labels // 2, labels % 2 == 1
    pred_def = predictions % 2 == 1
    tpr: list[float | None] = []
    tnr: list[float | None] = []
    for t in range(NUM_TEXTURES):
        pos = (true_tex == t) & true_def
        neg = (true_tex == t) & ~true_def
        tpr.append(float(np.mean(pred_def[pos])) if pos.any() else None)
        tnr.append(float(np.mean(~pred_def[neg])) if neg.any() else None)
    return {
        "images": len(labels),
        "accuracy": float(np.mean(labels == predictions)) if len(labels) else None,
        "texture_accuracy": float(np.mean(true_tex == predictions // 2)) if len(labels) else None,
        "tpr": tpr,
        "tnr": tnr,
        "confusion": confusion.tolist(),
    }


def vote_label(logits: np.ndarray) -> tuple[int, np.ndarray]:
    """9 patch logits -> (12-class image label, patch argmax classes) via the runtime's voter."""
    from pyinspect.voting import vote

    res = vote(np.ascontiguousarray(logits, dtype=np.float32), CLASS_TEXTURE, CLASS_DEFECTIVE)
    return 2 * int(res.texture) + int(bool(res.defective)), np.asarray(res.patch_class)


def _batched(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def predict_logits(
    model: Any,
    patches: np.ndarray,
    mean: Sequence[float],
    std: Sequence[float],
    batch: int = 128,
    channels_last: bool = True,
) -> np.ndarray:
    """Logits [N, 12] of uint8 patches [N, 224, 224] (eval mode, no grad)."""
    import torch

    from train.models import model_device, to_input

    model.eval()
    device = model_device(model)  # inputs follow the model (CPU or GPU)
    out = []
    with torch.inference_mode():
        for start in range(0, len(patches), batch):
            x = to_input(
                patches[start : start + batch],
                mean,
                std,
                channels_last=channels_last,
                device=device,
            )
            out.append(model(x).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, NUM_CLASSES), np.float32)


def grid_logits(
    model: Any,
    records: Sequence[Any],
    mean: Sequence[float],
    std: Sequence[float],
    *,
    images_per_batch: int = 14,
    progress: bool = False,
    desc: str = "logits",
) -> tuple[np.ndarray, np.ndarray]:
    """(logits [M, 9, classes] of each record's §4 test patches, true labels [M])."""
    from train.patches import test_grid_patches

    out, labels = [], []
    bar = _progress(len(records), desc) if progress else None
    for chunk in _batched(list(records), images_per_batch):
        patches = np.stack([np.asarray(test_grid_patches(rec)[0]) for rec in chunk])
        n, per = patches.shape[:2]
        flat = predict_logits(model, patches.reshape(n * per, *patches.shape[2:]), mean, std)
        out.append(flat.reshape(n, per, -1))
        labels += [int(rec.label) for rec in chunk]
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    if not out:
        return np.zeros((0, 9, NUM_CLASSES), np.float32), np.zeros(0, np.int64)
    return np.concatenate(out), np.asarray(labels, np.int64)


def evaluate_model(
    model: Any,
    records: Sequence[Any],
    mean: Sequence[float],
    std: Sequence[float],
    *,
    images_per_batch: int = 14,
    progress: bool = False,
    desc: str = "evaluate",
) -> EvalResult:
    """§4 protocol for a PyTorch model over ``records`` (DagmRecord)."""
    t0 = time.perf_counter()
    logits, labels = grid_logits(
        model, records, mean, std, images_per_batch=images_per_batch, progress=progress, desc=desc
    )
    votes = [vote_label(z) for z in logits]
    return EvalResult(
        labels,
        np.asarray([label for label, _ in votes]),
        np.asarray([pc for _, pc in votes]),
        [str(rec.path) for rec in records],
        time.perf_counter() - t0,
    )


def evaluate_inspector(
    model_path: str | Path, records: Sequence[Any], *, backend: str = "auto", progress: bool = False
) -> EvalResult:
    """§4 protocol through the deployed runtime (``pyinspect.Inspector``) on an exported model."""
    from pyinspect import Inspector
    from train.dagm import read_image

    t0 = time.perf_counter()
    inspector = Inspector(str(model_path), backend=backend)
    labels, preds, pclasses, paths = [], [], [], []
    bar = _progress(len(records), "inspector") if progress else None
    for rec in records:
        result = inspector.run(read_image(rec))
        labels.append(int(rec.label))
        preds.append(2 * int(result.texture) + int(bool(result.defective)))
        pc = getattr(result, "patch_class", None)
        pclasses.append(np.asarray(pc) if pc is not None else np.zeros(0, np.int32))
        paths.append(str(rec.path))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    same_len = len({len(p) for p in pclasses}) == 1
    return EvalResult(
        np.asarray(labels),
        np.asarray(preds),
        np.asarray(pclasses) if same_len else None,
        paths,
        time.perf_counter() - t0,
    )


def parity(a: EvalResult, b: EvalResult) -> dict[str, Any]:
    """Train/deploy parity: images where the two verdicts differ (should be none)."""
    diff = [p for p, x, y in zip(a.paths, a.predictions, b.predictions, strict=True) if x != y]
    return {"images": len(a.paths), "mismatches": len(diff), "examples": diff[:5]}


def _progress(total: int, desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", file=sys.stderr, leave=False)


def load_split(
    root: str | Path, split: str, seed: int, test_fraction: float = 0.2, limit: int | None = None
) -> list[Any]:
    """Records of ``split`` ("train" | "test" | "all") of the dataset at ``root``."""
    from train.dagm import load_dagm
    from train.patches import split_records

    records = list(load_dagm(root))
    if split != "all":
        train, test = split_records(records, test_fraction=test_fraction, seed=seed)
        records = list(train if split == "train" else test)
    if limit is not None and limit < len(records):
        idx = np.random.default_rng(seed + 1).choice(len(records), size=limit, replace=False)
        records = [records[i] for i in sorted(idx)]
    return records


def format_table3(metrics: dict[str, Any]) -> str:
    rows = ["| texture | TPR % | TNR % |", "|---|---|---|"]
    for t in range(NUM_TEXTURES):
        tp, tn = metrics["tpr"][t], metrics["tnr"][t]
        rows.append(
            f"| {t + 1} | {'-' if tp is None else f'{100 * tp:.2f}'} | "
            f"{'-' if tn is None else f'{100 * tn:.2f}'} |"
        )
    return "\n".join(rows)


@friendly_errors
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train evaluate", description=__doc__)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="a train checkpoint (.pt)")
    src.add_argument("--model", help="an exported model (.onnx with sidecar) run by Inspector")
    ap.add_argument("--data", required=True, help="dataset root (DAGM layout)")
    ap.add_argument("--split", default="test", choices=["train", "test", "all"])
    ap.add_argument("--seed", type=int, default=0, help="split seed")
    ap.add_argument("--test-fraction", type=float, default=0.2)
    ap.add_argument("--limit", type=int, default=None, help="evaluate a random subset of images")
    ap.add_argument("--parity", help="also run this exported model and compare verdicts")
    ap.add_argument("--json", help="write the metrics here")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--device", default="cpu", help="where the checkpoint runs: cpu, cuda, cuda:N or auto"
    )
    args = ap.parse_args(argv)

    records = load_split(args.data, args.split, args.seed, args.test_fraction, args.limit)
    report: dict[str, Any] = {}
    if args.checkpoint:
        import torch

        from train.models import load_checkpoint, normalization, resolve_device

        torch.set_num_threads(args.threads)
        device = resolve_device(args.device)
        model, ckpt = load_checkpoint(args.checkpoint)
        model = model.to(device, memory_format=torch.channels_last)
        mean, std = normalization(ckpt["arch"])
        res = evaluate_model(model, records, mean, std, progress=True)
        report["torch"] = res.metrics()
        if args.parity:
            dep = evaluate_inspector(args.parity, records, progress=True)
            report["inspector"] = dep.metrics()
            report["parity"] = parity(res, dep)
    else:
        res = evaluate_inspector(args.model, records, progress=True)
        report["inspector"] = res.metrics()
    main_metrics = report.get("torch", report.get("inspector", {}))
    print(f"images {main_metrics['images']}  accuracy {100 * main_metrics['accuracy']:.2f}%")
    print(format_table3(main_metrics))
    if "parity" in report:
        print(f"parity: {report['parity']['mismatches']} mismatching verdicts")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 1 if report.get("parity", {}).get("mismatches") else 0


Callback = Callable[[int, float], None]
