"""``python -m train run --data ROOT --out RUN``: a student for any inspection set.

The paper's recipe on a user's own parts: an ImageNet-transferred ``lite0`` teacher is fine-tuned
on patches of the set (defective patches hold the labelled defect region), the Table 1 student
with the set's class count is distilled from it (Eq. 1), exported (ONNX + sidecar with the class
table, resize policy and bit depth) and evaluated image by image through ``pyinspect.Inspector``
on the held-out test split. ``RUN/`` gets ``student.onnx`` (+ ``.json``, and ``.guard.json``:
the validation images the runtime's precision guard runs on), ``split.json``, ``REPORT.md``,
``run.json`` and the checkpoints; every stage whose output exists is reused, so
an interrupted run resumes. ``reproduce`` keeps the paper's comparisons (scratch teachers,
sweep); this command trains only what ships.

Class balance: every defect type gets ``patches_per_class`` training patches and a group's good
class gets as many as all of that group's defect types together, so half of every group's
patches are good whether defect types are merged or kept (a frame is defective when any of its
patches is, so the per-patch false-alarm rate decides the image-level TNR). A class with fewer
images gets more patches per image (each at a random position inside the allowed range and a
random axis-preserving flip), and the report lists the patches per image of every class.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pyinspect.dataset import (
    SPLIT_JSON,
    Dataset,
    DatasetError,
    Sample,
    defect_mask,
    load_dataset,
    read_image,
    read_split,
    split_samples,
    write_split,
)
from train.cli import command_parser, friendly_errors

__all__ = ["DATA_PRESETS", "DataPreset", "main", "train_on_data"]

PATCH = 224
RUN_MARKER = "run.json"
VAL_FRACTION, TEST_FRACTION = 0.1, 0.2


@dataclass(frozen=True)
class DataPreset:
    """What ``train run`` trains: the teacher's budget, the patch set and the student."""

    name: str
    teacher_arch: str = "lite0"
    teacher_kwargs: dict[str, Any] = field(default_factory=lambda: {"init": "imagenet"})
    teacher_iters: int = 600
    teacher_lr: float = 1e-3
    patches_per_class: int = 2000
    orientations: tuple[int, ...] = (0, 2, 4, 6)  # identity, half turn, the two flips
    student_widths: tuple[int, ...] = (4, 8, 16, 4, 4)
    student_fc: int = 4096
    distill_epochs: int = 12
    distill_schedule: str = "cosine"
    batchnorm: bool = True
    c1_init: str = "basis"
    weight_init: str = "default"  # "kaiming" for the few-step smoke networks (train.models)


DATA_PRESETS: dict[str, DataPreset] = {
    # seconds, for tests: a tiny scratch teacher and student
    "smoke": DataPreset(
        name="smoke",
        teacher_arch="student",
        teacher_kwargs={"c": (4, 4, 8, 8, 8), "fc": 32, "weight_init": "kaiming"},
        teacher_iters=8,
        teacher_lr=1e-2,
        patches_per_class=12,
        student_widths=(2, 2, 2, 2, 2),
        student_fc=16,
        distill_epochs=1,
        distill_schedule="constant",
        batchnorm=False,
        c1_init="random",
        weight_init="kaiming",
    ),
    # Sized for a set of MTD's size, at most 2.5 h on 2 cores including evaluation: on MTD with
    # --defect-types keep (20,000 patches) the teacher's 600 steps took 28 min and the logits +
    # 12 student epochs 58 min on a 2-core VM shared with other jobs (results/mtd/run.json).
    "cpu": DataPreset(name="cpu"),
}


# ---------------------------------------------------------------------------------------------
# data


@dataclass
class Prepared:
    """The set as training sees it: images fitted to the patch, uint8, and their masks."""

    ds: Dataset
    parts: dict[str, list[Sample]]
    resize: str
    bit_depth: int
    channels: int


def check_out(out: Path, data: Path) -> None:
    """``--out`` must be a new or empty folder or an earlier run's, and not inside the data."""
    if out.resolve().is_relative_to(data.resolve()):
        msg = f"--out {out} lies inside the data {data}; choose a folder outside it"
        raise DatasetError(msg)
    if out.exists() and not out.is_dir():
        msg = f"--out {out} exists and is not a folder"
        raise DatasetError(msg)
    if out.is_dir() and any(out.iterdir()) and not (out / RUN_MARKER).is_file():
        msg = (
            f"--out {out} holds files but no {RUN_MARKER}: it is not a run folder; nothing in "
            "it is replaced, choose a new folder"
        )
        raise DatasetError(msg)


def to_uint8(img: np.ndarray, bit_depth: int) -> np.ndarray:
    """Training patches are uint8: a deeper frame is scaled by 255 / (2^bits − 1), which the
    runtime's x / (2^bits − 1) normalisation matches to within one 8-bit step."""
    if img.dtype == np.uint8:
        return img
    top = float(2**bit_depth - 1)
    return np.clip(np.rint(img.astype(np.float32) * (255.0 / top)), 0, 255).astype(np.uint8)


def prepare(
    ds: Dataset, out: Path, *, seed: int, resize: str, gray: bool
) -> tuple[Prepared, list[str]]:
    """Split (read back from ``split.json`` when the run resumes), resize policy, bit depth,
    channels; returns notes for the report."""
    notes: list[str] = []
    split_path = out / SPLIT_JSON
    if split_path.is_file():
        doc = json.loads(split_path.read_text(encoding="utf-8"))
        if doc.get("seed") != seed or doc.get("defect_types") != ds.mode:
            msg = (
                f"{split_path}: written with seed {doc.get('seed')} and defect types "
                f"{doc.get('defect_types')!r}; this run asks for {seed} and {ds.mode!r}: "
                "use another --out"
            )
            raise DatasetError(msg)
        parts = {p: read_split(split_path, ds, p) for p in ("train", "val", "test")}
    else:
        parts = split_samples(ds, seed=seed, val=VAL_FRACTION, test=TEST_FRACTION)
        write_split(split_path, ds, parts, seed=seed, val=VAL_FRACTION, test=TEST_FRACTION)
    small, deep, colour = 0, False, False
    for s in ds.samples:
        img = read_image(ds.absolute(s))
        small += min(img.shape[:2]) < PATCH
        deep |= img.dtype == np.uint16
        colour |= img.ndim == 3
    if resize == "auto":
        resize = "upscale" if small else "none"
    if small and resize == "none":
        msg = f"{ds.root}: {small} image(s) are smaller than the {PATCH} patch: pass --resize"
        raise DatasetError(msg)
    if small:
        notes.append(f"{small} image(s) smaller than {PATCH} px: resize policy {resize!r}")
    bit_depth = ds.bit_depth or (16 if deep else 8)
    if deep and bit_depth == 8:
        msg = f"{ds.root}: 16-bit images in a set whose dataset.json says bit_depth 8"
        raise DatasetError(msg)
    channels = 3 if colour and not gray else 1
    if colour and gray:
        notes.append("colour images converted to gray (--gray)")
    return Prepared(ds, parts, resize, bit_depth, channels), notes


def load_train_image(prep: Prepared, s: Sample) -> tuple[np.ndarray, np.ndarray | None]:
    """One training image fitted to the patch (uint8; RGB when the student is colour) and its
    defect region fitted the same way (None: a defective image without a location)."""
    import cv2

    from pyinspect.resize import fit_to_patch

    img = read_image(prep.ds.absolute(s), gray=prep.channels == 1)
    if prep.channels == 3 and img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    region = defect_mask(prep.ds, s, img.shape[:2])
    img = to_uint8(fit_to_patch(img, PATCH, prep.resize), prep.bit_depth)
    if prep.channels == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)  # the student's input is RGB, as the tiler's
    if region is not None:
        fitted = fit_to_patch(region.astype(np.uint8) * 255, PATCH, prep.resize)
        region = fitted > 127
    return np.ascontiguousarray(img), region


def class_targets(ds: Dataset, patches_per_class: int) -> list[int]:
    """Training patches per class: ``patches_per_class`` for each defect type, and for a group's
    good class the sum over that group's defect types (at least ``patches_per_class``)."""
    defect_classes: dict[int, int] = {}
    for c in ds.classes:
        if c.defective:
            defect_classes[c.group] = defect_classes.get(c.group, 0) + 1
    return [
        patches_per_class
        if c.defective
        else patches_per_class * max(1, defect_classes.get(c.group, 0))
        for c in ds.classes
    ]


def sample_patches(
    prep: Prepared, preset: DataPreset, seed: int, *, no_locations: bool
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """The balanced training patch set (``class_targets``). Good patches anywhere
    in a good image; defective ones hold the defect core (``train.patches.defect_core``), or
    anywhere when the image has no location (``--no-locations``: weak labels)."""
    from train.patches import defect_core, dihedral, patch_position_range

    rng = np.random.default_rng(seed)
    by_class: dict[int, list[Sample]] = {}
    for s in prep.parts["train"]:
        by_class.setdefault(s.label, []).append(s)
    missing = [c.name for i, c in enumerate(prep.ds.classes) if i not in by_class]
    if missing:
        msg = f"{prep.ds.root}: no training image in class(es) {missing}"
        raise DatasetError(msg)
    unlocated = [s for s in prep.parts["train"] if s.defective and not s.has_location]
    if unlocated and not no_locations:
        names = ", ".join(str(s.path) for s in unlocated[:5])
        msg = (
            f"{len(unlocated)} defective training image(s) have no mask or boxes (first: "
            f"{names}); add masks/ or boxes/, or pass --no-locations to use their patches as "
            "weak labels"
        )
        raise DatasetError(msg)
    targets = class_targets(prep.ds, preset.patches_per_class)
    xs, ys, per_image = [], [], {}
    for label in sorted(by_class):
        members = by_class[label]
        target = targets[label]
        per = math.ceil(target / len(members))
        per_image[prep.ds.class_name(label)] = {
            "images": len(members),
            "patches": target,
            "patches_each": per,
        }
        drawn = 0
        for s in members:
            img, region = load_train_image(prep, s)
            h, w = img.shape[:2]
            if s.defective and region is not None:
                xmin, xmax, ymin, ymax = patch_position_range(
                    defect_core(region, PATCH), (h, w), PATCH
                )
            else:
                xmin, xmax, ymin, ymax = 0, w - PATCH, 0, h - PATCH
            for _ in range(min(per, target - drawn)):
                x = int(rng.integers(xmin, xmax, endpoint=True))
                y = int(rng.integers(ymin, ymax, endpoint=True))
                k = int(rng.choice(preset.orientations))
                xs.append(np.ascontiguousarray(dihedral(img[y : y + PATCH, x : x + PATCH], k)))
                ys.append(label)
                drawn += 1
    info = {
        "patches_per_class": preset.patches_per_class,
        "orientations": list(preset.orientations),
        "per_class": per_image,
        "weak_labels": len(unlocated),
    }
    return np.stack(xs), np.asarray(ys, dtype=np.int64), info


# ---------------------------------------------------------------------------------------------
# stages


def class_table_for_spec(ds: Dataset) -> list[dict[str, Any]]:
    return [
        {
            "name": c.name,
            "texture": c.group,
            "defective": c.defective,
            "defect_type": c.defect_type,
        }
        for c in ds.classes
    ]


def evaluate_split(model: Path, ds: Dataset, samples: list[Sample]) -> dict[str, Any]:
    """Image-level metrics of the exported model on ``samples``, computed by
    ``pyinspect.evaluation`` through ``Inspector.run`` (what ``pyinspect evaluate`` reports),
    plus every image's score for the report."""
    from pyinspect import Inspector
    from pyinspect.evaluation import image_metrics, match_class_table, run_samples

    with Inspector(str(model)) as insp:
        match = match_class_table(insp.spec, ds)
        outcomes, failures = run_samples(insp, ds, samples, match)
    if failures:
        first = failures[0]
        msg = f"{len(failures)} test image(s) could not be inspected (first: {first})"
        raise DatasetError(msg)
    return image_metrics(ds.classes, ds.groups, outcomes, mode=ds.mode) | {
        "scores": [round(float(o.score), 6) for o in outcomes],
        "defective": [ds.classes[o.truth].defective for o in outcomes],
    }


def train_on_data(
    data: Path,
    out: Path,
    *,
    preset: DataPreset,
    defect_types: str = "merge",
    seed: int = 0,
    device: str = "cpu",
    threads: int | None = None,
    resize: str = "auto",
    gray: bool = False,
    no_locations: bool = False,
) -> dict[str, Any]:
    """Every stage of ``train run``; returns ``run.json``'s content."""
    import torch

    from pyinspect.backends.base import usable_cpus
    from pyinspect.precision_guard import write_guard_frames
    from train.distill import DistillConfig, distill, teacher_logits
    from train.export import export
    from train.fit import FitConfig, fit, log_iters
    from train.models import checkpoint_meta, resolve_device, sha256_file
    from train.stages import Stage, cpu_model

    threads = threads or max(1, usable_cpus())
    dev = resolve_device(device)
    torch.set_num_threads(threads)
    check_out(out, data)
    ds = load_dataset(data, defect_types=defect_types, strict=True)
    out.mkdir(parents=True, exist_ok=True)
    marker = out / RUN_MARKER
    state: dict[str, Any] = json.loads(marker.read_text()) if marker.is_file() else {}
    settings = {
        "data": str(data),
        "preset": preset.name,
        "defect_types": defect_types,
        "seed": seed,
        "resize": resize,
        "gray": gray,
        "no_locations": no_locations,
    }
    if state.get("settings") and state["settings"] != settings:
        msg = f"{marker}: this run folder was made with {state['settings']}; use another --out"
        raise DatasetError(msg)
    state["settings"] = settings
    state.setdefault("timings", {})
    state["machine"] = {"cpu": cpu_model(), "threads": threads, "device": str(dev)}

    def save() -> None:
        tmp = marker.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1) + "\n")
        os.replace(tmp, marker)

    save()
    stage = Stage(0.0)
    t0 = time.perf_counter()
    stage("data: split, sizes, patches")
    prep, notes = prepare(ds, out, seed=seed, resize=resize, gray=gray)
    x, y, patch_info = sample_patches(prep, preset, seed, no_locations=no_locations)
    k = len(ds.classes)
    state["data"] = {
        "classes": [c.name for c in ds.classes],
        "groups": ds.groups,
        "counts": {
            part: {
                c.name: sum(s.label == i for s in prep.parts[part])
                for i, c in enumerate(ds.classes)
            }
            for part in ("train", "val", "test")
        },
        "patches": patch_info,
        "resize": prep.resize,
        "bit_depth": prep.bit_depth,
        "channels": prep.channels,
        "notes": notes,
    }
    state["timings"]["data"] = round(time.perf_counter() - t0, 1)
    save()
    per_step = 1.8 if preset.teacher_arch == "lite0" else 0.05
    stage.estimate = (
        preset.teacher_iters * per_step
        + len(x) * 0.012
        + (preset.distill_epochs * len(x) / 32 * 0.1)
    )
    ckdir, logdir = out / "checkpoints", out / "logs"
    # teacher
    tck = ckdir / "teacher.pt"
    if not (tck.is_file() and checkpoint_meta(tck).get("iteration") == preset.teacher_iters):
        stage(f"teacher {preset.teacher_arch} ({preset.teacher_iters} it, {len(x)} patches)")
        t0 = time.perf_counter()
        kwargs = {**preset.teacher_kwargs, "num_classes": k}
        fit(
            FitConfig(
                arch=preset.teacher_arch,
                arch_kwargs=kwargs,
                iters=preset.teacher_iters,
                lr=preset.teacher_lr,
                eval_at=log_iters(preset.teacher_iters, 10),
                seed=seed,
                threads=threads,
                device=str(dev),
            ),
            x,
            y,
            [],
            tck,
            logdir / "teacher.jsonl",
            run="teacher",
            meta={"preset": preset.name, "seed": seed, "data": str(data)},
        )
        state["timings"]["teacher"] = round(time.perf_counter() - t0, 1)
        save()
    # student
    sck = ckdir / "student.pt"
    key = {"teacher_iteration": preset.teacher_iters, "patches": len(x), **settings}
    if not (sck.is_file() and checkpoint_meta(sck).get("run_key") == key):
        stage("teacher logits")
        t0 = time.perf_counter()
        logits = teacher_logits(
            tck, x, out / "cache" / f"teacher-logits-{len(x)}.npy", device=str(dev)
        )
        stage(f"distil student {preset.student_widths} ({preset.distill_epochs} epochs)")
        cfg = DistillConfig(
            widths=preset.student_widths,
            fc=preset.student_fc,
            epochs=preset.distill_epochs,
            schedule=preset.distill_schedule,
            seed=seed,
            threads=threads,
            batchnorm=preset.batchnorm,
            c1_init=preset.c1_init,
            weight_init=preset.weight_init,
            device=str(dev),
        )
        distill(
            x,
            logits,
            [],
            sck,
            logdir / "student.jsonl",
            cfg,
            run="student",
            meta={"preset": preset.name, "run_key": key},
        )
        state["timings"]["student"] = round(time.perf_counter() - t0, 1)
        save()
    # export: skipped when student.onnx already comes from this checkpoint, so that a
    # resumed run keeps what `pyinspect calibrate` wrote into the sidecar
    model = out / "student.onnx"
    # what pyinspect.precision_guard checks a lower precision on: the validation images, in
    # the orientations training augmented with (written on every run: an older run gains it)
    write_guard_frames(
        model,
        [ds.absolute(s) for s in prep.parts["val"]],
        split="val",
        orientations=preset.orientations,
    )
    student_sha = sha256_file(sck)
    exported = (
        state.get("exported_from") == student_sha
        and model.is_file()
        and model.with_name(model.name + ".json").is_file()
        and "test" in state
    )
    if exported:
        stage("student.onnx is this run's export: kept (with its sidecar's threshold)")
        from train.run_report import write_report

        write_report(out, state)
        stage("done")
        return state
    stage("export student.onnx + sidecar")
    t0 = time.perf_counter()
    spec_options = {
        "classes": class_table_for_spec(ds),
        "textures": ds.groups,
        "resize": prep.resize,
        "bit_depth": prep.bit_depth,
    }
    provenance = {
        "preset": f"run:{preset.name}",
        "seed": seed,
        "dataset": f"{data} ({ds.mode} defect types; split.json beside the model)",
    }
    export(sck, model, folded=prep.channels == 1, provenance=provenance, spec_options=spec_options)
    state["timings"]["export"] = round(time.perf_counter() - t0, 1)
    # evaluation
    stage(f"evaluate on the test split ({len(prep.parts['test'])} images)")
    t0 = time.perf_counter()
    state["test"] = evaluate_split(model, ds, prep.parts["test"])
    state["timings"]["evaluate"] = round(time.perf_counter() - t0, 1)
    state["exported_from"] = student_sha
    save()
    from train.run_report import write_report

    write_report(out, state)
    stage("done")
    return state


# ---------------------------------------------------------------------------------------------
# command line


@friendly_errors
def main(argv: list[str] | None = None) -> int:
    p = command_parser("train run", "train a student on any inspection set (docs/training.md)")
    p.add_argument("--data", required=True, type=Path, help="dataset root (docs/data.md)")
    p.add_argument("--out", required=True, type=Path, help="run folder (new, empty or a run's)")
    p.add_argument("--preset", choices=sorted(DATA_PRESETS), default="cpu")
    p.add_argument("--defect-types", choices=("merge", "keep"), default="merge")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | auto")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: CPUs)")
    p.add_argument(
        "--resize",
        choices=("auto", "upscale", "reflect", "none"),
        default="auto",
        help="frames smaller than the patch (auto: upscale when any is)",
    )
    p.add_argument("--gray", action="store_true", help="train a 1-channel student on colour")
    p.add_argument(
        "--no-locations",
        action="store_true",
        help="defective images without mask/boxes give weak-label patches",
    )
    p.add_argument("--teacher-iters", type=int, default=None, help="override the preset's")
    p.add_argument("--epochs", type=int, default=None, help="student epochs (preset's)")
    p.add_argument("--patches-per-class", type=int, default=None, help="preset's patch budget")
    args = p.parse_args(argv)
    preset = DATA_PRESETS[args.preset]
    changes: dict[str, Any] = {}
    if args.teacher_iters is not None:
        changes["teacher_iters"] = args.teacher_iters
    if args.epochs is not None:
        changes["distill_epochs"] = args.epochs
    if args.patches_per_class is not None:
        changes["patches_per_class"] = args.patches_per_class
    preset = dataclasses.replace(preset, **changes)
    state = train_on_data(
        args.data,
        args.out,
        preset=preset,
        defect_types=args.defect_types,
        seed=args.seed,
        device=args.device,
        threads=args.threads,
        resize=args.resize,
        gray=args.gray,
        no_locations=args.no_locations,
    )
    t = state["test"]["overall"]
    print(
        f"test: {t['images']} images, TPR {t['tpr']}, TNR {t['tnr']}, accuracy {t['accuracy']}"
        f" -> {args.out / 'student.onnx'}, {args.out / 'REPORT.md'}",
        file=sys.stderr,
    )
    return 0
