"""Run a preset end to end: data, teachers, §4 evaluation, distillation, export, Inspector.

Writes ``<out>/results.json`` and ``<out>/REPORT.md`` (Tables 2, 3, 5 beside the paper, Fig. 4 as
``fig4_accuracy_vs_iteration.png``). Every stage leaves its output on disk and is skipped when that
output exists, so an interrupted run resumes where it stopped; ``--report-only`` (or
``python -m train report <out>``) rebuilds the report from ``results.json``. The stages are in
``train/stages.py``, the report in ``train/report.py``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from train.cli import command_parser, friendly_errors
from train.presets import Preset, get_preset
from train.report import sweep_rows, write_report
from train.stages import (
    distill_key,
    ensure_data,
    estimate_seconds,
    export_stage,
    full_teacher_evaluations,
    open_run,
    pick_restart,
    student_stage,
    sweep_stage,
    teacher_stage,
    trials_stage,
)
from train.synth import VERSIONS

__all__ = [
    "distill_key",
    "ensure_data",
    "estimate_seconds",
    "main",
    "pick_restart",
    "run_preset",
    "ship",
    "sweep_rows",
    "write_report",
]


def run_preset(
    p: Preset, out: Path, *, threads: int = 2, skip_sweep: bool = False, device: str = "cpu"
) -> dict[str, Any]:
    """Run ``p`` into ``out``; ``device`` trains, distils and evaluates the PyTorch models there
    (``cpu``, ``cuda``, ``auto``); exports and ``Inspector`` runs stay on the CPU."""
    run = open_run(p, out, threads=threads, device=device)
    results = run.results
    # Each teacher's student (and the shipped export) is finished before the next teacher
    # starts, so the deployable model exists as early as possible.
    for tr in p.teachers:
        teacher_stage(run, tr)
        if tr.name in p.distill_from:
            student_stage(run, tr.name)
        if tr.name == p.ship:
            export_stage(run)
            results["wall_seconds_main"] = run.elapsed()
            run.save()
            write_report(results, out)
    full_teacher_evaluations(run)
    results.pop("trials", None)  # only this preset's trials are reported
    if p.trials > 1:
        trials_stage(
            run,
            lambda trial, trial_out: run_preset(
                trial, trial_out, threads=threads, skip_sweep=True, device=device
            ),
        )
    results["wall_seconds_before_sweep"] = run.elapsed()
    run.save()
    write_report(results, out)
    sweep = bool(p.sweep) and not skip_sweep
    if sweep:
        sweep_stage(run)
    results["wall_includes_sweep"] = sweep
    results["wall_seconds"] = run.elapsed()
    run.save()
    write_report(results, out)
    return results


def ship(results: dict[str, Any], dest: Path) -> list[Path]:
    """Copy the preset's exported student (folded -> ``student.onnx``, rgb ->
    ``student_rgb.onnx``) with their sidecars and precision-guard records into ``dest`` (the
    repository's ``models/``)."""
    import shutil

    files = results.get("export", {}).get("files", {})
    if not files:
        msg = "results.json has no exported student to ship (run the preset first)"
        raise FileNotFoundError(msg)
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for variant, name in (("folded", "student.onnx"), ("rgb", "student_rgb.onnx")):
        src = Path(files[variant]["onnx"])
        shutil.copyfile(src, dest / name)
        shutil.copyfile(src.with_name(src.name + ".json"), dest / f"{name}.json")
        written += [dest / name, dest / f"{name}.json"]
        guard = src.with_name(src.name + ".guard.json")
        if guard.is_file():  # an image record keeps its own folder, so a copy finds the images
            shutil.copyfile(guard, dest / f"{name}.guard.json")
            written.append(dest / f"{name}.guard.json")
    return written


@friendly_errors
def main(argv: list[str] | None = None) -> int:
    ap = command_parser("reproduce", __doc__)
    ap.add_argument("--preset", required=True, choices=["smoke", "cpu", "paper"])
    ap.add_argument("--out", help="output directory (default results/<preset>)")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("TORCH_THREADS", "2")))
    ap.add_argument("--data", help="dataset root (overrides the preset's)")
    ap.add_argument(
        "--synth-version",
        type=int,
        help="synthetic generator version of the data (overrides the preset's; with --data)",
    )
    ap.add_argument(
        "--good-grid-share",
        type=float,
        metavar="F",
        help="share of good training patches taken at test-grid positions (overrides the "
        "preset's; 0 is the paper's sampler)",
    )
    ap.add_argument(
        "--aug-texture-repeat",
        metavar="F1,...,F6",
        help="per texture (class 1 first), a whole factor on the distillation set's patches per "
        "image, e.g. 1,1,1,2,1,1 (overrides the preset's)",
    )
    ap.add_argument(
        "--aug-max-patches",
        type=int,
        metavar="N",
        help="cap of the distillation patch set (overrides the preset's)",
    )
    ap.add_argument(
        "--teacher-iters",
        type=int,
        metavar="N",
        help="SGD iterations of every teacher (overrides the preset's)",
    )
    ap.add_argument(
        "--distill-epochs",
        type=int,
        metavar="N",
        help="epochs of every student's distillation (overrides the preset's)",
    )
    ap.add_argument(
        "--distill-hard-weight",
        type=float,
        metavar="W",
        help="add W x cross-entropy on the patch labels to Eq. 1 (overrides the preset's; "
        "0 is the paper's loss)",
    )
    ap.add_argument(
        "--distill-restarts",
        type=int,
        metavar="N",
        help="students distilled per teacher, the lowest final loss kept (overrides the preset's)",
    )
    ap.add_argument(
        "--defect-offsets-seed",
        metavar="S",
        help="choose per-texture defect offsets on a fresh synthetic set of seed S and fold them"
        " into the student (train.defect_offsets); 'none' keeps the paper's argmax rule"
        " (overrides the preset's)",
    )
    ap.add_argument(
        "--device",
        default="cpu",
        help="where PyTorch trains and evaluates: cpu, cuda, cuda:N or auto "
        "(exports and Inspector runs stay on the CPU)",
    )
    ap.add_argument("--skip-sweep", action="store_true")
    ap.add_argument(
        "--report-only", action="store_true", help="rebuild REPORT.md from results.json"
    )
    ap.add_argument(
        "--ship-to",
        type=Path,
        metavar="DIR",
        help="copy the exported student (+ sidecars) here, e.g. models",
    )
    args = ap.parse_args(argv)
    out = Path(args.out or f"results/{args.preset}")
    if args.report_only:
        path = out / "results.json"
        if not path.is_file():
            msg = f"{path}: no results.json to rebuild the report from"
            raise FileNotFoundError(msg)
        results = json.loads(path.read_text())
        print(write_report(results, out))
        if args.ship_to:
            print("\n".join(map(str, ship(results, args.ship_to))))
        return 0
    overrides: dict[str, object] = {"data_root": args.data} if args.data else {}
    if args.synth_version is not None:
        if args.synth_version not in VERSIONS:
            ap.error(f"--synth-version must be one of {list(VERSIONS)}, got {args.synth_version}")
        overrides["synth_version"] = args.synth_version
    if args.good_grid_share is not None:
        if not 0.0 <= args.good_grid_share <= 1.0:
            ap.error(f"--good-grid-share must be in 0..1, got {args.good_grid_share}")
        overrides["good_grid_share"] = args.good_grid_share
    if args.aug_texture_repeat is not None:
        try:
            overrides["aug_texture_repeat"] = tuple(
                int(v) for v in args.aug_texture_repeat.split(",")
            )
        except ValueError:
            ap.error(
                "--aug-texture-repeat must be whole numbers separated by commas, got "
                f"{args.aug_texture_repeat!r}"
            )
    for flag, key, low in (
        ("--aug-max-patches", "aug_max_patches", 1),
        ("--distill-epochs", "distill_epochs", 1),
        ("--distill-hard-weight", "distill_hard_weight", 0),
        ("--distill-restarts", "distill_restarts", 1),
    ):
        value = getattr(args, key)
        if value is not None:
            if not math.isfinite(value) or value < low:
                ap.error(f"{flag} must be a finite number >= {low}, got {value}")
            overrides[key] = value
    if args.defect_offsets_seed is not None:
        text = args.defect_offsets_seed.strip().lower()
        if text == "none":
            overrides["defect_offsets_seed"] = None
        elif text.isdigit():
            overrides["defect_offsets_seed"] = int(text)
        else:
            ap.error(f"--defect-offsets-seed must be a seed >= 0 or 'none', got {text!r}")
    try:
        preset = get_preset(args.preset, **overrides)
    except ValueError as exc:
        ap.error(str(exc))
    if args.teacher_iters is not None:
        if args.teacher_iters < 1:
            ap.error(f"--teacher-iters must be >= 1, got {args.teacher_iters}")
        teachers = tuple(dataclasses.replace(t, iters=args.teacher_iters) for t in preset.teachers)
        preset = dataclasses.replace(preset, teachers=teachers)
    results = run_preset(
        preset, out, threads=args.threads, skip_sweep=args.skip_sweep, device=args.device
    )
    if args.ship_to:
        print("\n".join(map(str, ship(results, args.ship_to))))
    print(f"wrote {out / 'results.json'} and {out / 'REPORT.md'}", file=sys.stderr)
    return 0
