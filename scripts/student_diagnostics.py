"""Why the `cpu` preset's student does not detect defects: the measurements quoted in
`results/cpu/REPORT.md` (Notes) and `train/presets.py`, reproducible from a `cpu` run directory.

    python scripts/student_diagnostics.py orientations    # teacher on turned/flipped test patches
    python scripts/student_diagnostics.py auc CKPT...      # per-texture defect AUC of patch margins
    python scripts/student_diagnostics.py oracle           # Eq. 1 of texture-/class-mean guesses
    python scripts/student_diagnostics.py train ce --batchnorm --epochs 4 --threads 1
    python scripts/student_diagnostics.py train ce --batchnorm --textures 3 --epochs 6 --threads 1

``train`` fits a (4, 8, 16, 4, 4) student on the run's cached distillation set with Eq. 1
(``eq1``) or with hard-label cross-entropy (``ce``), cosine-decayed Adam 1e-3, and prints the
§4 test accuracy and the per-texture AUC. The AUC is over the 9 test-grid patches of every
defective test image and 180 good ones (seed 5): the score is the defective-minus-good logit of
the patch's true texture, a patch is positive when it overlaps the defect. AUC 0.5 = the patch
score says nothing about the defect. ``--textures`` trains on those textures' patches only (can a
4-channel student learn that defect at all?) and reports only their AUC.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def test_patches(data: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(patches [N,224,224], defect-overlap label [N], texture [N]) of the AUC sample."""
    from train.evaluate import load_split
    from train.patches import test_grid_patches

    recs = load_split(data, "test", seed)
    good = [r for r in recs if not r.defective]
    bad = [r for r in recs if r.defective]
    pick = np.random.default_rng(5).choice(len(good), 180, replace=False)
    patches, labels, textures = [], [], []
    for r in bad + [good[i] for i in pick]:
        p, _, lab = test_grid_patches(r)
        patches.append(np.asarray(p))
        labels.append(lab % 2)
        textures += [r.label // 2] * len(p)
    return np.concatenate(patches), np.concatenate(labels), np.asarray(textures)


def auc(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve (scikit-learn; ties count half)."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(positive, score))


def texture_aucs(model: object, arch: str, sample: tuple[np.ndarray, ...]) -> list[float]:
    from train.evaluate import predict_logits
    from train.models import normalization

    patches, labels, textures = sample
    logits = predict_logits(model, patches, *normalization(arch))
    rows = np.arange(len(textures))
    margin = logits[rows, 2 * textures + 1] - logits[rows, 2 * textures]
    return [round(auc(margin[textures == t], labels[textures == t]), 3) for t in range(6)]


def cmd_orientations(args: argparse.Namespace) -> None:
    import torch

    from train.evaluate import load_split, predict_logits
    from train.models import load_checkpoint, normalization
    from train.patches import dihedral, test_grid_patches

    recs = [r for r in load_split(args.data, "test", 0) if not r.defective]
    pick = np.random.default_rng(5).choice(len(recs), 60, replace=False)
    patches = np.concatenate([np.asarray(test_grid_patches(recs[i])[0]) for i in pick])
    texture = np.repeat([recs[i].label // 2 for i in pick], 9)
    model, ckpt = load_checkpoint(Path(args.run) / "checkpoints" / "teacher-transfer.pt")
    model = model.to(memory_format=torch.channels_last)
    for k in range(8):
        x = np.stack([np.ascontiguousarray(dihedral(p, k)) for p in patches])
        pred = predict_logits(model, x, *normalization(ckpt["arch"])).argmax(1)
        right = [round(float((pred[texture == t] // 2 == t).mean()), 2) for t in range(6)]
        print(json.dumps({"orientation": k, "texture_accuracy": right}), flush=True)


def cmd_auc(args: argparse.Namespace) -> None:
    from train.models import load_checkpoint

    sample = test_patches(args.data)
    for path in args.checkpoints:
        model, ckpt = load_checkpoint(path)
        print(
            json.dumps({"checkpoint": path, "auc": texture_aucs(model, ckpt["arch"], sample)}),
            flush=True,
        )


def group_mean_loss(targets: np.ndarray, groups: np.ndarray) -> float:
    """Eq. 1 of the predictor that outputs each group's mean target (the best that knows only
    the group)."""
    total = 0.0
    for g in np.unique(groups):
        t = targets[groups == g]
        total += float(((t - t.mean(0)) ** 2).sum())
    return 0.5 * total / len(targets)


def cmd_oracle(args: argparse.Namespace) -> None:
    run = Path(args.run)
    y = np.load(run / "data" / f"{args.set}.labels.npy")
    t = np.load(run / "cache" / args.logits).astype(np.float64)
    print(
        json.dumps(
            {
                "nothing": round(group_mean_loss(t, np.zeros_like(y)), 1),
                "texture_only": round(group_mean_loss(t, y // 2), 1),
                "class": round(group_mean_loss(t, y), 1),
            }
        )
    )


def texture_subset(labels: np.ndarray, textures: list[int] | None) -> np.ndarray:
    """Indices of the patches whose texture (1-based, as in the paper) is in ``textures``;
    every index when ``textures`` is empty or None."""
    if not textures:
        return np.arange(len(labels))
    bad = sorted(set(textures) - set(range(1, 7)))
    if bad:
        msg = f"textures are 1..6, got {bad}"
        raise ValueError(msg)
    return np.flatnonzero(np.isin(labels // 2, [k - 1 for k in textures]))


def cmd_train(args: argparse.Namespace) -> None:
    import torch

    from train.evaluate import evaluate_model, load_split
    from train.models import build_model, normalization, to_input
    from train.torchdata import batch_indices

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    run = Path(args.run)
    x = np.load(run / "data" / f"{args.set}.patches.npy", mmap_mode="r")
    y = np.load(run / "data" / f"{args.set}.labels.npy")
    t = np.load(run / "cache" / args.logits)
    if args.textures:
        keep = texture_subset(y, args.textures)
        x, y, t = np.asarray(x[keep]), y[keep], t[keep]
    model = build_model("student", batchnorm=args.batchnorm).to(memory_format=torch.channels_last)
    mean, std = normalization("student")
    steps = args.epochs * (len(x) // 32)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    t0, losses = time.time(), []
    for it in range(steps):
        model.train()
        idx = np.sort(batch_indices(len(x), 32, 0, it))
        out = model(to_input(np.asarray(x[idx]), mean, std, channels_last=True))
        if args.loss == "ce":
            loss = torch.nn.functional.cross_entropy(out, torch.as_tensor(y[idx]))
        else:
            loss = 0.5 * ((out - torch.as_tensor(t[idx])) ** 2).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if (it + 1) % 750 == 0:
            print(
                f"it {it + 1}: loss {np.mean(losses[-750:]):.4f} ({time.time() - t0:.0f} s)",
                flush=True,
            )
    model.eval()
    aucs = texture_aucs(model, "student", test_patches(args.data))
    report = {
        "loss": args.loss,
        "batchnorm": args.batchnorm,
        "epochs": args.epochs,
        "patches": len(x),
        "train_loss": float(np.mean(losses[-(len(x) // 32) :])),
    }
    if args.textures:  # a net that knows some textures only: their AUC, no 12-class accuracy
        report |= {"textures": args.textures, "auc": {k: aucs[k - 1] for k in args.textures}}
    else:
        m = evaluate_model(model, load_split(args.data, "test", 0), mean, std).metrics()
        report |= {"accuracy": m["accuracy"], "auc": aucs}
    print(json.dumps(report | {"seconds": round(time.time() - t0)}), flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", default="results/cpu", help="run directory (default results/cpu)")
    ap.add_argument("--data", default="data/synth-dagm", help="dataset root")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("orientations", help="teacher texture accuracy per rotation/flip")
    a = sub.add_parser("auc", help="per-texture defect AUC of checkpoints")
    a.add_argument("checkpoints", nargs="+")
    o = sub.add_parser("oracle", help="Eq. 1 of group-mean predictors on the cached set")
    tr = sub.add_parser("train", help="fit a student on the cached distillation set")
    tr.add_argument("loss", choices=["eq1", "ce"])
    tr.add_argument("--batchnorm", action="store_true")
    tr.add_argument("--epochs", type=int, default=4)
    tr.add_argument("--threads", type=int, default=2)
    tr.add_argument(
        "--textures",
        type=int,
        nargs="+",
        metavar="K",
        help="train on these textures (1..6) only; report their AUC",
    )
    for sp in (o, tr):
        sp.add_argument("--set", default="aug-0-d0246-max24000", help="patch set name in RUN/data")
        sp.add_argument(
            "--logits",
            default="teacher-transfer-it2000-aug24000-d0246.logits.npy",
            help="teacher logits file in RUN/cache",
        )
    args = ap.parse_args(argv)
    commands = {
        "orientations": cmd_orientations,
        "auc": cmd_auc,
        "oracle": cmd_oracle,
        "train": cmd_train,
    }
    commands[args.cmd](args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
