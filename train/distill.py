"""Distillation (paper §3.4, Eq. 1): the student regresses the frozen teacher's logits,
``w_S* = argmin 1/(2N) Σ ‖f_T(x_i) − f_S(x_i)‖²``, on the augmented patch set.

The teacher runs once per patch set: its logits are cached next to the patches (``.npy``), so every
student epoch (and every student width of the compression sweep) costs only the student. The paper
does not name the student's optimiser; Adam (lr 1e-3) is used because it fits the 4096-wide FC
layer of a narrow student in a few epochs, where SGD at 1e-3 needs many times more.

On a GPU the student trains in full FP32 (TF32 off, as on the CPU): a (4,8,16,4,4) student's
kernels are tiny, so TF32 would save little time (not measured) and cost the regression of 12
logits precision; FP32 keeps the student's arithmetic the same on every device.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from train.cli import command_parser, friendly_errors
from train.models import NUM_CLASSES, STUDENT_DEFAULT, STUDENT_FULL


def sweep_widths(
    full: Sequence[int] = STUDENT_FULL, halvings_all: int = 4, final: Sequence[int] = (4, 4)
) -> list[tuple[int, ...]]:
    """Fig. 10's compression sweep: halve all of (C1..C5) ``halvings_all`` times (to 1/16), then
    halve only (C4, C5) until they reach ``final`` (1/128 of 512 = 4)."""
    points = [tuple(int(c) for c in full)]
    for _ in range(halvings_all):
        points.append(tuple(max(1, c // 2) for c in points[-1]))
    while points[-1][3] > final[0] or points[-1][4] > final[1]:
        c = points[-1]
        points.append((c[0], c[1], c[2], max(final[0], c[3] // 2), max(final[1], c[4] // 2)))
    return points


def checkpoint_iteration(checkpoint: str | Path) -> int | None:
    """The training iteration a checkpoint was saved at (its meta), or None."""
    from train.models import checkpoint_meta

    return checkpoint_meta(checkpoint).get("iteration")


def logits_cache(
    cache_dir: str | Path, teacher: str | Path, patches: int, orientations: str = ""
) -> Path:
    """Where a teacher's logits on an aug set are cached: named by the teacher's iteration, the
    set's size and its orientation tag (``orientation_tag``), so a teacher trained further or
    another set never reads stale logits."""
    teacher = Path(teacher)
    it = checkpoint_iteration(teacher)
    return Path(cache_dir) / f"{teacher.stem}-it{it}-aug{patches}{orientations}.logits.npy"


def teacher_logits(
    checkpoint: str | Path,
    patches: np.ndarray,
    cache: str | Path | None = None,
    batch: int = 128,
    progress: bool = True,
    device: str = "cpu",
) -> np.ndarray:
    """Logits [N, classes] of the frozen teacher on ``patches``; read from/written to ``cache``."""
    if cache is not None and Path(cache).is_file():
        cached = np.load(cache)
        if len(cached) == len(patches):
            return cached
    import torch

    from train.models import load_checkpoint, normalization, resolve_device, to_input

    dev = resolve_device(device)
    model, ckpt = load_checkpoint(checkpoint)
    model = model.to(dev, memory_format=torch.channels_last).eval()
    mean, std = normalization(ckpt["arch"])
    out: np.ndarray | None = None  # [N, classes] once the first batch says how many
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(
            total=len(patches),
            desc=f"teacher logits {Path(checkpoint).stem}",
            unit="patch",
            file=sys.stderr,
        )
    with torch.inference_mode():
        for start in range(0, len(patches), batch):
            chunk = np.asarray(patches[start : start + batch])
            got = (
                model(to_input(chunk, mean, std, channels_last=True, device=dev))
                .float()
                .cpu()
                .numpy()
            )
            if out is None:
                out = np.zeros((len(patches), got.shape[1]), np.float32)
            out[start : start + len(chunk)] = got
            if bar is not None:
                bar.update(len(chunk))
    if bar is not None:
        bar.close()
    if out is None:
        out = np.zeros((0, NUM_CLASSES), np.float32)
    if cache is not None:
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, out)
    return out


@dataclass(frozen=True)
class DistillConfig:
    """How a student is distilled (Eq. 1), as ``FitConfig`` is for a teacher."""

    widths: tuple[int, ...] = STUDENT_DEFAULT  # C1..C5
    fc: int = 4096
    epochs: int = 8
    batch: int = 32
    lr: float = 1e-3  # Adam's (peak) learning rate
    schedule: str = "constant"  # "constant" or "cosine" (decay to 0 over the run)
    seed: int = 0  # the student's init and batch order
    threads: int = 2
    # > 0 adds hard_weight × cross-entropy(student, labels) to Eq. 1 (needs the labels)
    hard_weight: float = 0.0
    # train with a BatchNorm after each conv, folded away before the checkpoint is saved
    batchnorm: bool = False
    c1_init: str = "random"  # C1's starting filters: "random" or "basis" (train.models.c1_basis)
    weight_init: str = "default"  # "kaiming": He init (train.models.Student), for few-step runs
    device: str = "cpu"  # cpu | cuda | cuda:N | auto (train.models.resolve_device)

    def __post_init__(self) -> None:
        if self.schedule not in ("constant", "cosine"):
            msg = f"unknown schedule {self.schedule!r}; expected 'constant' or 'cosine'"
            raise ValueError(msg)
        object.__setattr__(self, "widths", tuple(int(v) for v in self.widths))


def distill(
    patches: np.ndarray,
    targets: np.ndarray,
    eval_records: Sequence[Any],
    checkpoint: str | Path,
    log: str | Path,
    config: DistillConfig | None = None,
    *,
    labels: np.ndarray | None = None,
    run: str = "student",
    progress: bool = True,
    meta: dict[str, Any] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Train a student on (patches, teacher logits) with Eq. 1; evaluate (§4) after every epoch.

    ``config`` holds the settings; ``overrides`` replace single fields of it (``c=`` is accepted
    for ``widths``), so ``distill(..., epochs=2)`` keeps working.

    ``batchnorm`` trains with a BatchNorm after each conv and saves the folded, plain Table 1
    network (same eval outputs, 858,380 parameters at the default widths), so export, the C++
    engine and the analysis see the paper's architecture.

    ``hard_weight`` > 0 adds ``hard_weight × cross-entropy(student, labels)`` to Eq. 1 (not in
    the paper: the classic distillation mix of soft and hard targets), for a teacher whose
    logits the narrow student cannot fit well enough by regression alone."""
    if "c" in overrides:
        overrides["widths"] = overrides.pop("c")
    cfg = dataclasses.replace(config or DistillConfig(), **overrides)
    if cfg.hard_weight and labels is None:
        msg = "hard_weight > 0 needs the patches' labels"
        raise ValueError(msg)
    import torch

    from train.evaluate import evaluate_model
    from train.fit import JsonLog, seed_everything
    from train.models import (
        build_model,
        device_name,
        fold_batchnorm,
        normalization,
        resolve_device,
        save_checkpoint,
        to_input,
    )
    from train.torchdata import batch_indices

    c, fc, epochs, batch, lr = cfg.widths, cfg.fc, cfg.epochs, cfg.batch, cfg.lr
    seed, hard_weight, batchnorm, c1_init = cfg.seed, cfg.hard_weight, cfg.batchnorm, cfg.c1_init
    dev = resolve_device(cfg.device)
    with full_fp32(dev):
        seed_everything(seed, cfg.threads)
        kwargs: dict[str, Any] = {"c": [int(v) for v in c], "fc": fc}
        if targets.shape[1] != NUM_CLASSES:  # an own-data class table (train run --data)
            kwargs["num_classes"] = int(targets.shape[1])
        # Layout: on the 2-core CPU a (4,8,16,4,4) BatchNorm training step (batch 32) takes
        # 0.15 s in NCHW against 0.27 s in channels_last, whose BatchNorm is slow at 4 channels
        # (`sec_per_iter` in results/cpu/logs/student-transfer-r*.jsonl, measured in NCHW);
        # evaluation keeps channels_last, faster for inference. On a GPU, channels_last.
        layout = torch.channels_last if dev.type == "cuda" else torch.contiguous_format
        model = build_model(
            "student", **kwargs, batchnorm=batchnorm, c1_init=c1_init, weight_init=cfg.weight_init
        ).to(memory_format=layout)
        init_form = fold_batchnorm(model) if batchnorm else model  # w0 in the deployed form
        init_state = {k: v.detach().clone() for k, v in init_form.state_dict().items()}
        model = model.to(dev)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        mean, std = normalization("student")
        jlog = JsonLog(log)
        per_epoch = max(1, len(patches) // batch)
        sched = (
            torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=per_epoch * epochs)
            if cfg.schedule == "cosine"
            else None
        )
        jlog.write(
            event="start",
            run=run,
            widths=list(c),
            patches=len(patches),
            epochs=epochs,
            iters=per_epoch * epochs,
        )
        curve: list[tuple[int, float]] = []
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=per_epoch * epochs, desc=run, unit="it", file=sys.stderr)
        t_train, losses = 0.0, []
        for it in range(per_epoch * epochs):
            model.train()
            idx = np.sort(batch_indices(len(patches), batch, seed, it))
            x = to_input(
                np.asarray(patches[idx]),
                mean,
                std,
                channels_last=layout is torch.channels_last,
                device=dev,
            )
            t = torch.as_tensor(np.asarray(targets[idx])).to(dev)
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            out = model(x)
            loss = 0.5 * ((out - t) ** 2).sum(1).mean()  # Eq. 1
            if hard_weight:
                y = torch.as_tensor(np.asarray(labels[idx])).to(dev)  # type: ignore[index]
                loss = loss + hard_weight * torch.nn.functional.cross_entropy(out, y)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            t_train += time.perf_counter() - t0
            losses.append(loss.item())
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")
            if (it + 1) % per_epoch == 0:
                res = evaluate_model(model, eval_records, mean, std)
                curve.append((it + 1, res.accuracy))
                jlog.write(
                    event="eval",
                    run=run,
                    iteration=it + 1,
                    epoch=(it + 1) // per_epoch,
                    accuracy=res.accuracy,
                    images=len(res.labels),
                    loss=float(np.mean(losses[-per_epoch:])),
                    sec_per_iter=t_train / (it + 1),
                )
                if bar is not None:
                    bar.write(
                        f"[{run}] epoch {(it + 1) // per_epoch}: accuracy "
                        f"{100 * res.accuracy:.2f}% on {len(res.labels)} images"
                    )
        if bar is not None:
            bar.close()
        summary = {
            "run": run,
            "widths": list(c),
            "curve": curve,
            "sec_per_iter": t_train / max(1, per_epoch * epochs),
            "final_loss": float(np.mean(losses[-per_epoch:])) if losses else None,
        }
        # the summary travels with the weights, so a reused checkpoint reports its own numbers
        final = fold_batchnorm(model.eval()) if batchnorm else model
        save_checkpoint(
            checkpoint,
            final.to(memory_format=torch.contiguous_format),
            "student",
            kwargs,
            init_state,
            {
                **(meta or {}),
                "run": run,
                "curve": curve,
                "epochs": epochs,
                "seed": seed,
                "summary": summary,
                "trained_with_batchnorm": batchnorm,
                "c1_init": c1_init,
                "device": device_name(dev),
            },
        )
        jlog.write(event="done", **summary)
        return summary


@contextlib.contextmanager
def full_fp32(dev: Any) -> Any:
    """Turn TF32 off for CUDA convolutions and matmuls inside the block; restore on exit."""
    import torch

    if getattr(dev, "type", "cpu") != "cuda":
        yield
        return
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@friendly_errors
def main(argv: list[str] | None = None) -> int:
    ap = command_parser("distill", __doc__)
    ap.add_argument("--teacher", required=True, help="teacher checkpoint (.pt)")
    ap.add_argument("--data", required=True, help="dataset root (DAGM layout)")
    ap.add_argument("--widths", default="4,8,16,4,4", help="C1..C5, or 'sweep' for Fig. 10")
    ap.add_argument("--fc", type=int, default=4096)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument(
        "--schedule",
        default="constant",
        choices=["constant", "cosine"],
        help="Adam's learning rate: constant 1e-3, or cosine-decayed to 0",
    )
    ap.add_argument(
        "--hard-weight",
        type=float,
        default=0.0,
        help="add this × cross-entropy on the patch labels to Eq. 1 (0: the paper)",
    )
    ap.add_argument(
        "--batchnorm",
        action="store_true",
        help="train with BatchNorm after each conv (folded away in the checkpoint)",
    )
    ap.add_argument(
        "--c1-init",
        default="random",
        choices=["random", "basis"],
        help="C1's starting filters: random, or box/centre-surround/edges (train.models.c1_basis)",
    )
    ap.add_argument("--lr", type=float, default=1e-3, help="Adam's (peak) learning rate")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--max-patches", type=int, default=16000)
    ap.add_argument(
        "--orientations",
        default="0,1,2,3,4,5,6,7",
        help="rotations/flips drawn for the aug set (dihedral indices; 0,2,4,6 keeps "
        "each texture's axes)",
    )
    ap.add_argument("--eval-images", type=int, default=None, help="test images per evaluation")
    ap.add_argument("--seed", type=int, default=0, help="split and patch-set seed")
    ap.add_argument(
        "--student-seed",
        type=int,
        default=None,
        help="the student's init and batch order (default: --seed)",
    )
    ap.add_argument("--threads", type=int, default=int(os.environ.get("TORCH_THREADS", "2")))
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    ap.add_argument("--out", default="results/manual")
    args = ap.parse_args(argv)

    from train.evaluate import load_split
    from train.torchdata import orientation_tag, patch_set

    out = Path(args.out)
    members = tuple(int(k) for k in args.orientations.split(","))
    tag = orientation_tag(members)
    train_recs = load_split(args.data, "train", args.seed)
    eval_recs = load_split(args.data, "test", args.seed, limit=args.eval_images)
    x, y = patch_set(
        "aug",
        train_recs,
        args.seed,
        out / "data" / f"aug-{args.seed}{tag}",
        max_patches=args.max_patches,
        members=members,
    )
    tname = Path(args.teacher).stem
    t = teacher_logits(
        args.teacher, x, logits_cache(out / "cache", args.teacher, len(x), tag), device=args.device
    )
    widths = (
        sweep_widths()
        if args.widths == "sweep"
        else [tuple(int(v) for v in args.widths.split(","))]
    )
    sseed = args.seed if args.student_seed is None else args.student_seed
    flags = (
        "fc",
        "epochs",
        "batch",
        "lr",
        "schedule",
        "threads",
        "hard_weight",
        "batchnorm",
        "c1_init",
        "device",
    )
    cfg = DistillConfig(seed=sseed, **{k: getattr(args, k) for k in flags})
    for c in widths:
        run = f"student-{'x'.join(map(str, c))}-from-{tname}"
        if args.student_seed is not None:
            run += f"-s{sseed}"
        summary = distill(
            x,
            t,
            eval_recs,
            out / "checkpoints" / f"{run}.pt",
            out / "logs" / f"{run}.jsonl",
            dataclasses.replace(cfg, widths=c),
            labels=y if args.hard_weight else None,
            run=run,
            meta={"teacher": tname},
        )
        print(
            json.dumps(
                {k: v for k, v in summary.items() if k != "curve"}
                | {"accuracy": summary["curve"][-1][1] if summary["curve"] else None}
            )
        )
    return 0
