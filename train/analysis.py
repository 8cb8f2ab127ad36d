"""``python -m train analyze --run results/<preset>``: the paper's representation analysis (§4.1).

Reads the run's checkpoints, runs the networks once over a fixed sample of DAGM patches and writes
Figs 1, 5, 6, 7, 9, 11 (and 8 when data-size runs exist) into ``<run>/figures/``, the numbers into
``<run>/analysis.json`` and an "## Analysis" section into ``<run>/REPORT.md`` between
``<!-- analysis:start -->`` and ``<!-- analysis:end -->``. The measures themselves live in
:mod:`train.analysis_math`; this module is the I/O and the plotting around them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from train.analysis_math import AnalysisError
from train.cli import command_parser
from train.report import END_MARK, START_MARK, carry_section, pct, splice_report

__all__ = [
    "END_MARK",
    "START_MARK",
    "AnalysisError",
    "analyze",
    "carry_section",
    "classify",
    "discover",
    "main",
    "pick_teacher",
    "splice_report",
]

PAPER_D = {"scratch": 8.09, "transfer": 3.28}
PAPER_LAST_SPARSITY = {"scratch": 0.0844, "transfer": 0.9047}
#: skimage.data photos used as the "natural images" side of Fig. 1 (ImageNet is not available here)
NATURAL_IMAGES = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "camera",
    "coins",
    "moon",
    "hubble_deep_field",
    "clock",
)
KIND_LABEL = {"transfer": "Transfer", "scratch": "Scratch"}
#: Fig. 5's verdict by (teacher kind, _compare of the layers the paper says move more vs the rest)
GAMMA_VERDICT = {
    ("transfer", 1): "transfer moves its upper layers more than its lower ones, as in the paper",
    ("transfer", -1): "transfer moves its lower layers more (paper: the upper ones)",
    ("transfer", 0): "transfer moves upper and lower layers about equally (paper: upper more)",
    ("scratch", 1): "Scratch moves its lower layers more, as in the paper",
    ("scratch", -1): "Scratch moves its upper layers more (paper: the lower ones)",
    ("scratch", 0): "Scratch moves upper and lower layers about equally (paper: lower more)",
}


# --------------------------------------------------------------------------- run discovery
@dataclass
class Run:
    name: str
    path: Path
    ckpt: dict[str, Any]
    role: str  # "teacher" | "student"
    kind: str  # "transfer" | "scratch"
    patches: str | None = None  # "aug" | "noaug" | None (unknown)
    fraction: float | None = None  # share of the training data, for Fig. 8 runs
    model: Any = field(default=None, repr=False)

    @property
    def label(self) -> str:
        text = KIND_LABEL[self.kind]
        if self.kind == "scratch" and self.patches:
            text += f" ({'aug' if self.patches == 'aug' else 'no aug'})"
        return text


def _patches_of(name: str, meta: dict[str, Any]) -> str | None:
    for key in ("patches", "augmentation"):
        if isinstance(meta.get(key), str):
            return "aug" if meta[key] in ("aug", "augmented") else "noaug"
    if re.search(r"(^|[-_])noaug($|[-_])", name):
        return "noaug"
    if re.search(r"(^|[-_])aug($|[-_])", name):
        return "aug"
    return None


def _fraction_of(name: str, meta: dict[str, Any]) -> float | None:
    for key in ("data_fraction", "fraction", "train_fraction"):
        if meta.get(key) is not None:
            return float(meta[key])
    m = re.search(r"frac(?:tion)?[-_]?([0-9.]+)", name)
    if m:
        v = float(m.group(1).rstrip("."))
        return v / 100.0 if v > 1 else v
    return None


def _kind_from_text(text: str) -> str | None:
    low = text.lower()
    if "transfer" in low or "imagenet" in low:
        return "transfer"
    return "scratch" if "scratch" in low else None


def classify(
    name: str, ckpt: dict[str, Any], teacher_info: dict[str, dict[str, Any]]
) -> Run | None:
    """Role and kind of a checkpoint (pure; None = not analysed).

    Teachers: file ``teacher-*`` / meta ``run`` ``teacher-*``, or any non-student arch; their kind
    comes from ``arch_kwargs.init``, else ``results.json`` (``teacher_info``), else the name.
    Students: the kind of the teacher named in meta ``teacher``, else the name
    (``sweep-transfer-…``).
    """
    arch = ckpt.get("arch")
    meta = ckpt.get("meta") or {}
    is_teacher = (
        arch != "student"
        or name.startswith("teacher")
        or str(meta.get("run", "")).startswith("teacher")
    )
    if is_teacher:
        info = teacher_info.get(name) or teacher_info.get(name.removeprefix("teacher-")) or {}
        init = (ckpt.get("arch_kwargs") or {}).get("init") or info.get("init")
        kind = {"imagenet": "transfer", "scratch": "scratch"}.get(str(init)) or _kind_from_text(
            name.removeprefix("teacher-")
        )
        if kind is None:
            return None
        patches = info.get("patches") or _patches_of(name, meta)
        return Run(name, Path(), ckpt, "teacher", kind, patches, _fraction_of(name, meta))
    teacher = str(meta.get("teacher", ""))
    kind = teacher_info.get(teacher, {}).get("kind") or _kind_from_text(f"{teacher} {name}")
    return None if kind is None else Run(name, Path(), ckpt, "student", kind)


def pick_teacher(cands: list[Run]) -> Run:
    """The teacher a kind is analysed with: a run that names no data fraction (the preset's own)
    before a Fig. 8 run, even a 100 % one; then aug patches (the paper's scratch comparison);
    then the longest-trained; then the name."""

    def rank(r: Run) -> tuple[int, int, int, str]:
        iteration = int((r.ckpt.get("meta") or {}).get("iteration") or 0)
        return (r.fraction is not None, r.patches != "aug", -iteration, r.name)

    return min(cands, key=rank)


@dataclass
class RunSet:
    teachers: dict[str, Run]  # kind -> the teacher analysed
    students: dict[str, Run]  # teacher kind -> the student analysed
    datasize: list[Run]  # transfer teachers trained on a fraction of the data (Fig. 8)
    skipped: list[str]


def discover(run_dir: Path) -> RunSet:
    """Load ``<run>/checkpoints/*.pt`` and pick one teacher per kind (Scratch: aug preferred, the
    paper's comparison), one student per teacher (the Table 1 widths preferred)."""
    import torch

    from train.models import STUDENT_DEFAULT

    files = sorted((run_dir / "checkpoints").glob("*.pt"))
    if not files:
        msg = f"{run_dir}/checkpoints has no *.pt files; run training first (python -m train ...)"
        raise AnalysisError(msg)
    blobs = {p.stem: (p, torch.load(p, map_location="cpu", weights_only=False)) for p in files}
    results = _results_json(run_dir)
    teacher_info: dict[str, dict[str, Any]] = {
        k: dict(v) for k, v in (results.get("teachers") or {}).items() if isinstance(v, dict)
    }
    runs: list[Run] = []
    skipped: list[str] = []
    for name, (path, ck) in blobs.items():
        r = classify(name, ck, teacher_info)
        if r is None:
            skipped.append(name)
            continue
        r.path = path
        runs.append(r)
        if r.role == "teacher":  # students name their teacher by checkpoint stem
            teacher_info.setdefault(name, {})["kind"] = r.kind
    for r in runs:  # a student's kind is its teacher's, once every teacher is known
        if r.role == "student":
            t = str((r.ckpt.get("meta") or {}).get("teacher", ""))
            r.kind = teacher_info.get(t, {}).get("kind", r.kind)

    teachers: dict[str, Run] = {}
    for kind in ("transfer", "scratch"):
        cands = [r for r in runs if r.role == "teacher" and r.kind == kind]
        if cands:
            teachers[kind] = pick_teacher(cands)
    students: dict[str, Run] = {}
    for kind in ("transfer", "scratch"):
        cands = [r for r in runs if r.role == "student" and r.kind == kind]
        if cands:
            students[kind] = min(
                cands,
                key=lambda r: (
                    not r.name.startswith("student"),
                    tuple((r.ckpt.get("arch_kwargs") or {}).get("c", ())) != STUDENT_DEFAULT,
                    r.name,
                ),
            )
    datasize = sorted(
        (
            r
            for r in runs
            if r.role == "teacher" and r.kind == "transfer" and r.fraction is not None
        ),
        key=lambda r: float(r.fraction or 0.0),
    )
    return RunSet(teachers, students, datasize, skipped)


def load_model(run: Run) -> Any:
    from train.models import load_checkpoint

    if run.model is None:
        run.model, _ = load_checkpoint(run.path)
        run.model.eval()
    return run.model


def _results_json(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "results.json"
    if not path.is_file():
        return {}
    try:
        blob = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        msg = f"{path}: not valid JSON ({exc})"
        raise AnalysisError(msg) from exc
    return blob if isinstance(blob, dict) else {}


def find_data_root(run_dir: Path, explicit: str | None) -> Path:
    """``--data``, else ``results.json`` ``data.root`` (as written, then relative to the repo)."""
    cands: list[Path] = [Path(explicit)] if explicit else []
    root = (_results_json(run_dir).get("data") or {}).get("root")
    if root:
        cands += [Path(root), Path(__file__).resolve().parents[1] / root]
    for c in cands:
        if c.is_dir():
            return c
    msg = (
        f"no DAGM data root for {run_dir}: pass --data ROOT (tried "
        f"{[str(c) for c in cands] or 'nothing'}; results.json data.root is read when present)"
    )
    raise AnalysisError(msg)


def split_seed(run_dir: Path, runs: Sequence[Run], explicit: int | None) -> int:
    """``--seed``, else ``results.json`` ``data.split_seed``, else a checkpoint's meta seed."""
    if explicit is not None:
        return explicit
    seed = (_results_json(run_dir).get("data") or {}).get("split_seed")
    if seed is not None:
        return int(seed)
    for r in runs:
        meta = r.ckpt.get("meta") or {}
        for v in (meta.get("seed"), (meta.get("config") or {}).get("seed")):
            if v is not None:
                return int(v)
    return 0


# --------------------------------------------------------------------------- forward passes
class _Stop(Exception):
    """Raised by a hook to end a forward pass once the wanted representation exists."""


def representation(model: Any, module: Any, x: Any) -> Any:
    """Output of ``module`` for input ``x`` (the rest of the network is not run)."""
    box: list[Any] = []

    def hook(_m: Any, _i: Any, out: Any) -> None:
        box.append(out)
        raise _Stop

    h = module.register_forward_hook(hook)
    try:
        model(x)
    except _Stop:
        pass
    finally:
        h.remove()
    if not box:
        msg = f"module {type(module).__name__} did not run in the forward pass"
        raise AnalysisError(msg)
    return box[0]


@dataclass
class Pass:
    """What one network yields over the patch sample."""

    layers: list[tuple[str, str | None]]  # (conv, activation module or None)
    sparsity: dict[str, float]  # conv name -> s (convs with an activation only)
    reps: np.ndarray  # [N, P] last-conv post-activation, float32
    seconds: float


def forward_pass(run: Run, patches: np.ndarray, in_train: np.ndarray, batch: int) -> Pass:
    """One no-grad pass: sparsity hooks (training patches only, Eq. 3 "over the training data")
    and the last-conv representation of every patch (for d)."""
    import torch

    from train.analysis_math import SparsityAccumulator, post_activation_modules
    from train.models import last_conv, normalization, to_input

    model = load_model(run).to(memory_format=torch.channels_last)  # ~1.8x faster on the CPU
    mean, std = normalization(run.ckpt["arch"])
    t0 = time.perf_counter()
    layers = post_activation_modules(model, to_input(patches[:1], mean, std, channels_last=True))
    modules = dict(model.named_modules())
    acc = SparsityAccumulator()
    active = {"on": True}

    def make(conv: str) -> Callable[..., None]:
        inner = acc.hook(conv)

        def hook(m: Any, i: Any, out: Any) -> None:
            if active["on"]:
                inner(m, i, out)

        return hook

    handles = [modules[a].register_forward_hook(make(c)) for c, a in layers if a is not None]
    _, rep_module = last_conv(model)
    reps: np.ndarray | None = None
    try:
        with torch.no_grad():
            for s in range(0, len(patches), batch):
                x = to_input(patches[s : s + batch], mean, std, channels_last=True)
                train_part = in_train[s : s + batch]
                # hooks count only the training patches; the others still give representations
                for on in (True, False):
                    part = np.flatnonzero(train_part == on)
                    if len(part) == 0:
                        continue
                    active["on"] = on
                    r = representation(model, rep_module, x[torch.as_tensor(part)])
                    flat = r.reshape(r.shape[0], -1).float().numpy()
                    if reps is None:
                        reps = np.empty((len(patches), flat.shape[1]), dtype=np.float32)
                    reps[s + part] = flat
    finally:
        for h in handles:
            h.remove()
    if reps is None:
        msg = "forward_pass: empty patch sample"
        raise AnalysisError(msg)
    names = [c for c, a in layers if a is not None and acc.counts.get(c)]
    return Pass(layers, {c: acc.sparsity(c) for c in names}, reps, time.perf_counter() - t0)


# --------------------------------------------------------------------------- data
@dataclass
class Sample:
    patches: np.ndarray  # uint8 [N, 224, 224]
    labels: np.ndarray  # 2 * texture + defective
    in_train: np.ndarray  # bool, the patch's image is in the training split


def sample_patches(root: Path, seed: int, n_images: int) -> Sample:
    """One patch per image (§3.3 no-aug rule: defect-containing for defective images) for a
    stratified random ``n_images`` of the whole set (the paper's d uses all 6,900 images)."""
    from train.dagm import load_dagm
    from train.patches import collect, sample_noaug, split_records

    records = list(load_dagm(root))
    if not records:
        msg = f"{root}: no DAGM images found"
        raise AnalysisError(msg)
    train, _ = split_records(records, seed=seed)
    train_ids = {id(r) for r in train}
    if n_images < len(records):
        keep, _ = split_records(records, test_fraction=1.0 - n_images / len(records), seed=seed + 7)
        records = keep
    b = collect(sample_noaug(records, np.random.default_rng(seed), batch_size=256))
    in_train = np.array([id(records[i]) in train_ids for i in b.record_index.tolist()])
    order = np.argsort(b.record_index, kind="stable")
    return Sample(b.patches[order], b.labels[order], in_train[order])


def natural_crops(limit: int, patch: int = 224) -> np.ndarray:
    """RGB 224×224 crops of skimage.data photos at three scales (stride 112), ``limit`` at most."""
    import cv2
    from skimage import data

    crops: list[np.ndarray] = []
    for name in NATURAL_IMAGES:
        img = np.asarray(getattr(data, name)())
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        img = np.ascontiguousarray(img[:, :, :3]).astype(np.uint8)
        for short in (224, 320, 448):
            s = short / min(img.shape[:2])
            im = cv2.resize(
                img,
                (round(img.shape[1] * s), round(img.shape[0] * s)),
                interpolation=cv2.INTER_AREA,
            )
            for y in range(0, im.shape[0] - patch + 1, 112):
                for x in range(0, im.shape[1] - patch + 1, 112):
                    crops.append(im[y : y + patch, x : x + patch])
    rng = np.random.default_rng(0)
    pick = rng.permutation(len(crops))[:limit]
    return np.stack([crops[i] for i in sorted(pick)])


# --------------------------------------------------------------------------- plotting helpers
def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def channel_mosaic(act: np.ndarray, cols: int | None = None) -> np.ndarray:
    """[C, H, W] activations -> one 2-D mosaic (1-px gaps), scaled by the layer's maximum so dead
    channels are black and brightness compares across channels (Fig. 7)."""
    c, h, w = act.shape
    cols = cols or math.ceil(math.sqrt(c * h / w))
    rows = math.ceil(c / cols)
    out = np.full((rows * (h + 1) + 1, cols * (w + 1) + 1), np.nan, dtype=np.float32)
    top = float(act.max()) or 1.0
    for i in range(c):
        r, q = divmod(i, cols)
        out[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + q * (w + 1) : 1 + q * (w + 1) + w] = (
            act[i] / top
        )
    return out


def _compare(a: float, b: float, tol: float = 0.1) -> int:
    """1 if a exceeds b by more than ``tol`` (relative), -1 if b exceeds a, 0 if within."""
    if a > b * (1 + tol):
        return 1
    return -1 if b > a * (1 + tol) else 0


# --------------------------------------------------------------------------- the analyses
def fig5_gamma(rs: RunSet, fig_dir: Path, out: dict[str, Any]) -> str:
    from train.analysis_math import weight_change_rate
    from train.models import conv_layers

    plt = _plt()
    kinds = [k for k in ("scratch", "transfer") if k in rs.teachers]
    if not kinds:
        return "**Fig. 5 (weight change rate γ)**: not computed, no teacher checkpoint."
    fig, axes = plt.subplots(1, len(kinds), figsize=(6 * len(kinds), 3.4), squeeze=False)
    summary: dict[str, dict[str, float]] = {}
    for ax, kind in zip(axes[0], kinds, strict=True):
        r = rs.teachers[kind]
        if not r.ckpt.get("init_state_dict"):
            ax.set_title(f"{r.label}: no init_state_dict in checkpoint")
            continue
        names = [n for n, _ in conv_layers(load_model(r))]
        g = weight_change_rate(r.ckpt["init_state_dict"], r.ckpt["state_dict"], names)
        out.setdefault("gamma", {})[kind] = {"run": r.name, "layers": names, "gamma": g.tolist()}
        third = max(1, len(g) // 3)
        summary[kind] = {
            "low": float(g[:third].mean()),
            "high": float(g[-third:].mean()),
            "mean": float(g.mean()),
        }
        ax.bar(np.arange(1, len(g) + 1), g, color="tab:blue" if kind == "transfer" else "tab:red")
        ax.set_title(f"{r.label} teacher ({r.ckpt['arch']}): γ per conv layer")
        ax.set_xlabel("conv layer (forward order)")
        ax.set_ylabel("γ = ‖w − w₀‖ / ‖w₀‖")
    fig.tight_layout()
    fig.savefig(fig_dir / "fig5_weight_change.png", dpi=110)
    plt.close(fig)
    parts = [
        f"{rs.teachers[k].label}: mean γ {v['mean']:.3g}, lowest third {v['low']:.3g}, "
        f"highest third {v['high']:.3g}"
        for k, v in summary.items()
    ]
    verdict = []
    for kind, (more, less) in (("transfer", ("high", "low")), ("scratch", ("low", "high"))):
        if kind in summary:  # more / less: the layers the paper says move more / the others
            answer = _compare(summary[kind][more], summary[kind][less])
            verdict.append(GAMMA_VERDICT[kind, answer])
    if len(summary) == 2:
        verdict.append(
            {
                1: "transfer changes its weights less overall, as in the paper",
                -1: "transfer changes its weights MORE overall (paper: less)",
                0: "both change their weights about equally overall (paper: transfer less)",
            }[_compare(summary["scratch"]["mean"], summary["transfer"]["mean"])]
        )
    return (
        "**Fig. 5 (weight change rate γ, Eq. 2)** — `figures/fig5_weight_change.png`. "
        + "; ".join(parts)
        + ". "
        + ("; ".join(verdict) + "." if verdict else "")
    )


def fig6_sparsity(rs: RunSet, passes: dict[str, Pass], fig_dir: Path, out: dict[str, Any]) -> str:
    plt = _plt()
    if not passes:
        return "**Fig. 6 (sparsity)**: not computed, no network."
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.6), squeeze=False)
    lines = []
    sp_out: dict[str, Any] = {}
    for key, p in passes.items():
        role, kind = key.split(":")
        ax = axes[0][0 if role == "teacher" else 1]
        s = np.array(list(p.sparsity.values()))
        sp_out[key] = {"layers": list(p.sparsity), "sparsity": s.tolist()}
        run = rs.teachers[kind] if role == "teacher" else rs.students[kind]
        ax.plot(
            np.arange(1, len(s) + 1),
            100 * s,
            "o-",
            ms=3,
            label=run.label,
            color="tab:blue" if kind == "transfer" else "tab:red",
        )
        lines.append((role, kind, run, s))
    for ax, title in zip(axes[0], ("teachers", "students (Table 1)"), strict=True):
        if not ax.lines:
            ax.text(
                0.5, 0.5, f"no {title.split()[0]} in this run", ha="center", transform=ax.transAxes
            )
        ax.set_title(f"Sparsity sˡ per conv layer with a ReLU, {title}")
        ax.set_xlabel("conv layer (those followed by ReLU/ReLU6)")
        ax.set_ylabel("dead channels %")
        ax.set_ylim(-2, 102)
        if ax.lines:
            ax.legend()
    fig.tight_layout()
    fig.savefig(fig_dir / "fig6_sparsity.png", dpi=110)
    plt.close(fig)
    out["sparsity"] = sp_out
    txt = []
    last = {}
    for role, kind, run, s in lines:
        txt.append(
            f"{role} {run.label}: last layer {pct(s[-1])}%, mean of the other layers "
            f"{pct(float(s[:-1].mean()) if len(s) > 1 else 0.0)}%"
        )
        if role == "teacher":
            last[kind] = float(s[-1])
    verdict = ""
    rise = [(run, s) for role, kind, run, s in lines if role == "teacher" and kind == "transfer"]
    if rise and len(rise[0][1]) >= 3:
        s = rise[0][1]
        third = max(1, len(s) // 3)
        lo, hi = float(s[:third].mean()), float(s[-third:].mean())
        verdict += (
            f" Transfer teacher: lowest third of layers {pct(lo)}%, highest third "
            f"{pct(hi)}% — "
            + (
                "sparsity rises towards the top, as in the paper."
                if hi > lo + 0.05
                else "no clear rise towards the top (paper: it rises from layer 9 on)."
            )
        )
    if len(last) == 2:
        ok = last["transfer"] > last["scratch"]
        verdict += (
            f" Paper: last layer transfer {pct(PAPER_LAST_SPARSITY['transfer'])}% vs "
            f"Scratch {pct(PAPER_LAST_SPARSITY['scratch'])}%. "
            + (
                "Reproduced in direction: transfer's last layer is sparser."
                if ok
                else "Not reproduced: transfer's last layer is not sparser."
            )
        )
    return (
        "**Fig. 6 (sparsity, Eq. 3)** — `figures/fig6_sparsity.png`, averaged over the "
        "training-split patches of the sample. " + "; ".join(txt) + "." + verdict
    )


def fig7_channels(rs: RunSet, sample: Sample, fig_dir: Path) -> str:
    """Fig. 7 (teachers) and Fig. 11 (students): last-conv channels for one 'Texture 2 defect'."""
    import torch

    from train.models import last_conv, normalization, to_input

    plt = _plt()
    pick = np.flatnonzero(sample.labels == 3)  # texture 2 (index 1), defective
    if len(pick) == 0:
        pick = np.flatnonzero(sample.labels % 2 == 1)
    if len(pick) == 0:
        return "**Fig. 7/11**: not drawn, the sample has no defective patch."
    i = int(pick[0])
    texts = []
    for fig_name, group, title in (
        ("fig7_teacher_channels.png", rs.teachers, "teacher"),
        ("fig11_student_channels.png", rs.students, "student"),
    ):
        kinds = [k for k in ("scratch", "transfer") if k in group]
        if not kinds:
            texts.append(f"{title}s: none in this run")
            continue
        fig, axes = plt.subplots(1, 1 + len(kinds), figsize=(4.2 * (1 + len(kinds)), 4.4))
        axes[0].imshow(sample.patches[i], cmap="gray", vmin=0, vmax=255)
        axes[0].set_title(f"input (class {sample.labels[i] // 2 + 1} defect)")
        for ax, kind in zip(axes[1:], kinds, strict=True):
            run = group[kind]
            model = load_model(run)
            mean, std = normalization(run.ckpt["arch"])
            with torch.no_grad():
                act = representation(
                    model, last_conv(model)[1], to_input(sample.patches[i : i + 1], mean, std)
                )[0].numpy()
            dead = float((act.reshape(act.shape[0], -1) == 0).all(axis=1).mean())
            ax.imshow(channel_mosaic(act), cmap="gray", vmin=0, vmax=1)
            ax.set_title(
                f"{run.label} {title}: {act.shape[0]}×{act.shape[1]}×{act.shape[2]}, "
                f"{pct(dead)}% dead",
                fontsize=9,
            )
            texts.append(f"{title} {run.label} {pct(dead)}% of {act.shape[0]} channels dead")
        for ax in axes:
            ax.axis("off")
        fig.tight_layout()
        fig.savefig(fig_dir / fig_name, dpi=110)
        plt.close(fig)
    return (
        "**Fig. 7 / Fig. 11 (last-conv channels, one defective patch)** — "
        "`figures/fig7_teacher_channels.png`, `figures/fig11_student_channels.png`; "
        "each mosaic is scaled by its layer's maximum, so dead channels are black: "
        + "; ".join(texts)
        + ". Paper: most transfer channels dead, Scratch dense."
    )


def table4_d(rs: RunSet, passes: dict[str, Pass], out: dict[str, Any]) -> str:
    from train.analysis_math import disentanglement, nonzero_columns

    rows = [
        "| teacher | N | dims (non-zero / all) | d (ours) | d (paper) | pairs left out |",
        "|---|---|---|---|---|---|",
    ]
    vals: dict[str, float] = {}
    for kind in ("scratch", "transfer"):
        p = passes.get(f"teacher:{kind}")
        if p is None:
            continue
        x = nonzero_columns(p.reps)
        t0 = time.perf_counter()
        res = disentanglement(x, k=5)
        secs = time.perf_counter() - t0
        vals[kind] = res.d
        out.setdefault("disentanglement", {})[kind] = {
            "d": res.d,
            "n": res.n_points,
            "k": res.k,
            "pairs": res.pairs,
            "disconnected_pairs": res.disconnected_pairs,
            "duplicate_pairs": res.duplicate_pairs,
            "dims": int(x.shape[1]),
            "dims_all": int(p.reps.shape[1]),
            "seconds": secs,
        }
        rows.append(
            f"| {rs.teachers[kind].label} | {res.n_points} | {x.shape[1]} / "
            f"{p.reps.shape[1]} | {res.d:.3f} | {PAPER_D[kind]} | "
            f"{res.disconnected_pairs} disconnected, {res.duplicate_pairs} duplicate |"
        )
    if not vals:
        return "**Table 4 (disentanglement d)**: not computed, no teacher."
    verdict = ""
    if len(vals) == 2:
        verdict = (
            " Reproduced in direction: transfer's representation is more unfolded (smaller d)."
            if vals["transfer"] < vals["scratch"]
            else " Not reproduced: transfer's d is not smaller than Scratch's."
        )
    n = next(iter(out["disentanglement"].values()))["n"]
    return (
        "**Table 4 (disentanglement d, Eq. 4–6, k = 5)** — last-conv post-activation "
        f"representations of N = {n} patches (one per image; the paper uses all 6,900 images)."
        " Absolute values depend on the network and N, so compare the order, not the numbers."
        + verdict
        + "\n\n"
        + "\n".join(rows)
    )


def fig9_inversion(
    rs: RunSet,
    sample: Sample,
    fig_dir: Path,
    steps: int,
    out: dict[str, Any],
    tv_weight: float,
    lr: float,
) -> str:
    import torch

    from train.analysis_math import interpolate, invert
    from train.models import last_conv, normalization

    plt = _plt()
    kinds = [k for k in ("scratch", "transfer") if k in rs.teachers]
    defects = [
        int(np.flatnonzero(sample.labels == lab)[0])
        for lab in np.unique(sample.labels)
        if lab % 2 == 1
    ]
    if not kinds or len(defects) < 2:
        return "**Fig. 9 (inversion)**: not drawn (needs a teacher and defects of two textures)."
    ia, ib = defects[0], defects[1]
    a = torch.as_tensor(sample.patches[ia]).float().div(255)[None, None]
    b = torch.as_tensor(sample.patches[ib]).float().div(255)[None, None]
    n_steps = 8
    rows: list[tuple[str, list[np.ndarray]]] = [
        ("input space", [t.squeeze().numpy() for t in interpolate(a, b, n_steps)])
    ]
    info: dict[str, Any] = {
        "images": [int(sample.labels[ia]), int(sample.labels[ib])],
        "steps": steps,
        "tv_weight": tv_weight,
    }
    for kind in kinds:
        run = rs.teachers[kind]
        model = load_model(run)
        for prm in model.parameters():
            prm.requires_grad_(False)
        mean, std = normalization(run.ckpt["arch"])
        m = torch.tensor(mean).view(1, 3, 1, 1)
        s = torch.tensor(std).view(1, 3, 1, 1)
        module = last_conv(model)[1]

        def f(
            x: torch.Tensor,
            model: Any = model,
            module: Any = module,
            m: torch.Tensor = m,
            s: torch.Tensor = s,
        ) -> torch.Tensor:
            return representation(model, module, (x.expand(-1, 3, -1, -1) - m) / s)

        with torch.no_grad():
            fa, fb = f(a), f(b)
        targets = torch.cat(interpolate(fa, fb, n_steps))
        t0 = time.perf_counter()
        res = invert(
            f,
            targets,
            (n_steps, 1, *a.shape[-2:]),
            tv_weight=tv_weight,
            steps=steps,
            lr=lr,
            bounds=(0.0, 1.0),
        )
        with torch.no_grad():
            fx = f(res.x)
            rel = (fx - targets).pow(2).flatten(1).sum(1) / targets.pow(2).flatten(1).sum(
                1
            ).clamp_min(1e-12)
        info[kind] = {
            "objective_first": res.history[0],
            "objective_best": sum(res.best),
            "feature_error": float(rel.mean()),
            "seconds": time.perf_counter() - t0,
        }
        rows.append((f"{run.label} teacher", [x.squeeze().numpy() for x in res.x]))
    out["inversion"] = info
    fig, axes = plt.subplots(len(rows), n_steps, figsize=(1.6 * n_steps, 1.75 * len(rows)))
    for r, (name, imgs) in enumerate(rows):
        for c, img in enumerate(imgs):
            ax = axes[r][c]
            lo, hi = (0.0, 1.0) if r == 0 else (float(img.min()), float(img.max()))
            ax.imshow(img, cmap="gray", vmin=lo, vmax=max(hi, lo + 1e-6))
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
    fig.suptitle(
        f"Fig. 9: linear interpolation; rows 2+: inverted last-conv representations "
        f"(Adam, {steps} steps, λ_TV={tv_weight}; each image min–max stretched)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(fig_dir / "fig9_interpolation.png", dpi=100)
    plt.close(fig)
    objs = "; ".join(
        f"{rs.teachers[k].label}: objective {info[k]['objective_first']:.3g} → "
        f"{info[k]['objective_best']:.3g}, relative feature error "
        f"{info[k]['feature_error']:.2f}, {info[k]['seconds']:.0f} s"
        for k in kinds
    )
    worst = max(info[k]["feature_error"] for k in kinds)
    judge = (
        "The inversions are far from converged (relative feature error "
        f"{worst:.2f}; a flat grey image scores about 1), so this figure can neither "
        "confirm nor refute the paper's claim that transfer's interpolations show fewer "
        "doubled defects; rerun with many more --inv-steps on a faster machine."
        if worst > 0.3
        else "Qualitative: judge by eye whether transfer's middle images show fewer doubled "
        "defects than Scratch's, as the paper reports."
    )
    return (
        "**Fig. 9 (inversion, Eq. 7–8, and interpolation)** — "
        "`figures/fig9_interpolation.png`: 8-step linear interpolation between a class "
        f"{sample.labels[ia] // 2 + 1} and a class {sample.labels[ib] // 2 + 1} defect patch, "
        f"each interpolated representation inverted with Adam ({steps} steps; {objs}). " + judge
    )


def fig1_embedding(
    rs: RunSet, sample: Sample, fig_dir: Path, n_dagm: int, n_natural: int, out: dict[str, Any]
) -> str:
    import torch

    from train.analysis_math import embed_2d, knn_agreement
    from train.models import build_model, normalization, to_input

    plt = _plt()
    from train.models import ModelError

    src = rs.teachers.get("transfer")
    if (
        src is not None
        and src.ckpt["arch"] in ("lite0", "vgg16")
        and src.ckpt.get("init_state_dict")
    ):
        arch = src.ckpt["arch"]
        model = build_model(arch, **{**src.ckpt["arch_kwargs"], "init": "scratch"})
        model.load_state_dict(src.ckpt["init_state_dict"])
        origin = f"the ImageNet initial weights of `{src.name}`"
    else:
        arch, origin = "lite0", "ImageNet lite0 (this run has no lite0/VGG16 transfer teacher)"
        try:
            model = build_model(arch, init="imagenet")
        except ModelError as exc:
            return f"**Fig. 1 (embedding)**: not drawn, no ImageNet source network ({exc})."
    model.eval()
    mean, std = normalization(arch)
    net: Any = model

    def pooled(x: np.ndarray) -> np.ndarray:
        feats = []
        with torch.no_grad():
            for s in range(0, len(x), 32):
                t = to_input(x[s : s + 32], mean, std)
                if hasattr(net, "forward_head"):  # timm: pre-logits pooled features
                    f = net.forward_head(net.forward_features(t), pre_logits=True)
                else:  # VGG16: conv5_3 averaged over space (ImageNet FC layers are not kept)
                    f = net.features(t).mean(dim=(2, 3))
                feats.append(f.numpy())
        return np.concatenate(feats)

    rng = np.random.default_rng(0)
    di = np.sort(rng.permutation(len(sample.patches))[:n_dagm])
    nat = natural_crops(n_natural)
    fd, fn = pooled(sample.patches[di]), pooled(nat)
    feats = np.concatenate([fd, fn])
    groups = np.r_[np.zeros(len(fd), int), np.ones(len(fn), int)]
    pca, tsne = embed_2d(feats, seed=0)
    agree = {"pca": knn_agreement(pca, groups), "tsne": knn_agreement(tsne, groups)}
    majority = max(len(fd), len(fn)) / len(feats)
    out["embedding"] = {
        "dagm": len(fd),
        "natural": len(fn),
        "feature_dim": int(feats.shape[1]),
        "knn_agreement": agree,
        "majority_share": majority,
        "source": origin,
    }
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    for ax, emb, name, key in ((axes[0], pca, "PCA", "pca"), (axes[1], tsne, "t-SNE", "tsne")):
        ax.scatter(*emb[groups == 1].T, s=8, c="tab:orange", label="natural photos (skimage.data)")
        ax.scatter(
            *emb[groups == 0].T,
            s=8,
            c=(sample.labels[di] // 2),
            cmap="tab10",
            vmin=0,
            vmax=9,
            marker="x",
            label="DAGM patches (colour = texture)",
        )
        ax.set_title(
            f"{name} of pooled {arch} features, 5-NN agreement {agree[key]:.2f}", fontsize=9
        )
        ax.legend(fontsize=7)
    fig.suptitle(
        "Fig. 1 stand-in: ImageNet is not available here; natural side = 224×224 crops of "
        + ", ".join(NATURAL_IMAGES)
        + " (skimage.data)",
        fontsize=8,
    )
    fig.tight_layout()
    fig.savefig(fig_dir / "fig1_embedding.png", dpi=110)
    plt.close(fig)
    sep = min(agree.values()) > majority + 0.5 * (1 - majority)
    return (
        f"**Fig. 1 (source-network features, PCA / t-SNE)** — `figures/fig1_embedding.png`: "
        f"{len(fd)} DAGM patches vs {len(fn)} crops of natural photos from skimage.data "
        "(ImageNet itself is not available offline), pooled penultimate features of "
        f"{origin}. Leave-one-out 5-NN agreement of the two groups: PCA {agree['pca']:.2f}, "
        f"t-SNE {agree['tsne']:.2f} (chance ≈ {majority:.2f}). "
        + (
            "The DAGM features separate from the natural ones, as in the paper."
            if sep
            else "The groups are not clearly separated (paper: clearly separated)."
        )
    )


def fig8_datasize(
    rs: RunSet, fig_dir: Path, out: dict[str, Any], sample: Sample, batch: int
) -> str:
    from train.analysis_math import weight_change_rate
    from train.models import conv_layers

    if len(rs.datasize) < 2:
        return (
            "**Fig. 8 (target data size)**: not run — this run directory has no transfer "
            "teachers trained on a fraction of the data (meta 'data_fraction')."
        )
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.6))
    rows: list[dict[str, Any]] = []
    for r in rs.datasize:
        names = [n for n, _ in conv_layers(load_model(r))]
        g = weight_change_rate(r.ckpt["init_state_dict"], r.ckpt["state_dict"], names)
        p = forward_pass(r, sample.patches, sample.in_train, batch)
        s = np.array(list(p.sparsity.values()))
        curve = (r.ckpt.get("meta") or {}).get("curve") or []
        acc = float(curve[-1][1]) if curve else math.nan
        lab = f"{100 * (r.fraction or 0):.0f}%"
        axes[1].plot(np.arange(1, len(g) + 1), g, label=lab)
        axes[2].plot(np.arange(1, len(s) + 1), 100 * s, label=lab)
        rows.append(
            {
                "run": r.name,
                "fraction": r.fraction,
                "accuracy": acc,
                "gamma_mean": float(g.mean()),
                "last_sparsity": float(s[-1]),
            }
        )
    axes[0].plot(
        [100 * (x["fraction"] or 0) for x in rows], [100 * x["accuracy"] for x in rows], "o-"
    )
    axes[0].set_xlabel("training data %")
    axes[0].set_ylabel("accuracy %")
    axes[1].set_ylabel("γ")
    axes[2].set_ylabel("sparsity %")
    for ax in axes[1:]:
        ax.set_xlabel("conv layer")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(fig_dir / "fig8_datasize.png", dpi=110)
    plt.close(fig)
    out["datasize"] = rows
    return (
        "**Fig. 8 (target data size)** — `figures/fig8_datasize.png` (accuracy = each "
        "run's last intermediate evaluation, on its fit's `--eval-images` test subset): "
        + "; ".join(
            f"{100 * (x['fraction'] or 0):.0f}%: accuracy {100 * x['accuracy']:.2f}%, "
            f"mean γ {x['gamma_mean']:.3g}, last-layer sparsity "
            f"{pct(x['last_sparsity'])}%"
            for x in rows
        )
        + ". Paper: accuracy and γ fall with less data, sparsity stays similar."
    )


# --------------------------------------------------------------------------- command
def analyze(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    torch.set_num_threads(args.threads)
    run_dir = Path(args.run)
    fig_dir = run_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    rs = discover(run_dir)
    all_runs = [*rs.teachers.values(), *rs.students.values()]
    if not all_runs:
        msg = f"{run_dir}/checkpoints: no teacher or student checkpoint could be classified"
        raise AnalysisError(msg)
    seed = split_seed(run_dir, all_runs, args.seed)
    root = find_data_root(run_dir, args.data)
    t_start = time.perf_counter()
    sample = sample_patches(root, seed, args.images)
    out: dict[str, Any] = {
        "run_dir": str(run_dir),
        "data": str(root),
        "seed": seed,
        "images": len(sample.patches),
        "quick": bool(args.quick),
        "teachers": {k: r.name for k, r in rs.teachers.items()},
        "students": {k: r.name for k, r in rs.students.items()},
        "skipped": rs.skipped,
    }
    teachers = ", ".join(f"{r.label} = `{r.name}`" for r in rs.teachers.values())
    students = ", ".join(f"of {r.label} = `{r.name}`" for r in rs.students.values())
    paragraphs = [
        f"Produced by `python -m train analyze --run {run_dir}"
        + (" --quick" if args.quick else "")
        + f"` on {len(sample.patches)} patches "
        f"(one per image, {int(sample.in_train.sum())} from the training split) of `{root}`. "
        f"Teachers: {teachers or 'none'}; students: {students or 'none'}."
    ]
    passes: dict[str, Pass] = {}
    for role, group in (("teacher", rs.teachers), ("student", rs.students)):
        for kind, r in group.items():
            passes[f"{role}:{kind}"] = forward_pass(r, sample.patches, sample.in_train, args.batch)
            _log(f"forward {r.name}: {passes[f'{role}:{kind}'].seconds:.1f} s")
    paragraphs.append(fig5_gamma(rs, fig_dir, out))
    paragraphs.append(fig6_sparsity(rs, passes, fig_dir, out))
    paragraphs.append(fig7_channels(rs, sample, fig_dir))
    paragraphs.append(table4_d(rs, passes, out))
    _log("disentanglement done")
    paragraphs.append(
        fig9_inversion(rs, sample, fig_dir, args.inv_steps, out, args.tv_weight, args.inv_lr)
    )
    _log("inversion done")
    paragraphs.append(fig1_embedding(rs, sample, fig_dir, args.embed_dagm, args.embed_natural, out))
    paragraphs.append(fig8_datasize(rs, fig_dir, out, sample, args.batch))
    out["seconds"] = time.perf_counter() - t_start
    paragraphs.append(f"Analysis wall time: {out['seconds']:.0f} s ({args.threads} torch threads).")
    (run_dir / "analysis.json").write_text(json.dumps(out, indent=1, default=float))
    report = run_dir / "REPORT.md"
    old = report.read_text() if report.is_file() else ""
    report.write_text(splice_report(old, "## Analysis\n\n" + "\n\n".join(paragraphs)))
    return out


def _log(text: str) -> None:
    print(f"[analyze] {text}", file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    ap = command_parser("analyze", __doc__)
    ap.add_argument("--run", required=True, help="run directory, e.g. results/cpu")
    ap.add_argument("--data", help="DAGM root (default: results.json data.root)")
    ap.add_argument("--seed", type=int, default=None, help="split seed (default: the runs' seed)")
    ap.add_argument(
        "--images",
        type=int,
        default=1000,
        help="images in the sample, one patch each (paper: all 6,900)",
    )
    ap.add_argument("--inv-steps", type=int, default=200, help="Adam steps per inversion")
    ap.add_argument("--inv-lr", type=float, default=0.03)
    ap.add_argument("--tv-weight", type=float, default=0.5, help="λ of Eq. 7 (normalised terms)")
    ap.add_argument("--embed-dagm", type=int, default=300, help="DAGM patches in Fig. 1")
    ap.add_argument("--embed-natural", type=int, default=150, help="natural crops in Fig. 1")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("TORCH_THREADS", "2")))
    ap.add_argument(
        "--quick",
        action="store_true",
        help="smoke settings: 24 images, 2 inversion steps, small Fig. 1",
    )
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.images, args.inv_steps = min(args.images, 24), min(args.inv_steps, 2)
        args.embed_dagm, args.embed_natural = min(args.embed_dagm, 12), min(args.embed_natural, 8)
    try:
        out = analyze(args)
    except AnalysisError as exc:
        print(f"analyze: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: out[k] for k in ("images", "teachers", "students", "seconds")}))
    return 0
