"""Run a preset end to end: data, teachers, §4 evaluation, distillation, export, Inspector.

Writes ``<out>/results.json`` and ``<out>/REPORT.md`` (Tables 2, 3, 5 beside the paper, Fig. 4 as
``fig4_accuracy_vs_iteration.png``). Every stage leaves its output on disk and is skipped when that
output exists, so an interrupted run resumes where it stopped; ``--report-only`` rebuilds the report
from ``results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from train._cli import friendly_errors
from train.presets import Preset, TeacherRun, get_preset

PAPER_TABLE2 = {
    "scratch": ("Scratch (no aug)", 70.87, 1.26, 17200),
    "scratch-aug": ("Scratch (aug)", 99.55, 0.13, 320000),
    "transfer": ("Transfer (no aug)", 99.90, 0.06, 2242),
}
PAPER_TABLE3_TRANSFER = {
    "tpr": [100, 100, 100, 100, 100, 98.0],
    "tnr": [99.6, 100, 100, 100, 100, 100],
}
PAPER_TABLE5 = {"teacher": (134_000_000, 57.43), "student": (858_380, 1.46),
                "student_acc": {"transfer": 99.42, "scratch-aug": 94.92}}


class Stage:
    """Prints a stage banner with the elapsed time and an ETA for the whole run."""

    def __init__(self, total_estimate: float) -> None:
        self.t0 = time.perf_counter()
        self.estimate = total_estimate
        self.timings: dict[str, float] = {}

    def __call__(self, name: str) -> None:
        el = time.perf_counter() - self.t0
        left = max(0.0, self.estimate - el)
        print(f"== {name}  (elapsed {el / 60:.1f} min, ETA {left / 60:.1f} min)", flush=True)

    def record(self, name: str, seconds: float) -> None:
        self.timings[name] = round(seconds, 1)


def estimate_seconds(p: Preset, sec_teacher: float, sec_student: float, sec_eval_patch: float,
                     test_images: int, train_images: int,
                     teachers: Sequence[TeacherRun] | None = None) -> float:
    """Rough wall time of a preset from measured step costs (printed as the ETA); ``teachers``:
    the ones still to train (default: all of the preset's)."""
    t = 0.0
    per_eval = (p.eval_images or test_images) * 9 * sec_eval_patch
    for tr in p.teachers if teachers is None else teachers:
        t += tr.iters * sec_teacher + p.eval_points * per_eval + test_images * 9 * sec_eval_patch
    n_aug = p.aug_max_patches or train_images * 10
    logit_teachers = set(p.distill_from) | (set(p.sweep_teachers) if p.sweep else set())
    t += len(logit_teachers) * n_aug * sec_eval_patch
    t += (len(p.distill_from) * p.distill_restarts * p.distill_epochs * (n_aug / 32)
          * sec_student)
    t += len(p.sweep_teachers) * len(p.sweep) * p.sweep_epochs * (n_aug / 32) * sec_student
    return t


def distill_key(p: Preset, teacher_iteration: int | None, patches: int) -> dict[str, Any]:
    """What a distilled student depends on: ``reproduce`` reuses a student checkpoint only when
    its recorded key equals this one (same teacher iteration, patch set and settings)."""
    key: dict[str, Any] = {
        "teacher_iteration": teacher_iteration, "patches": patches,
        "orientations": list(p.aug_orientations), "epochs": p.distill_epochs,
        "schedule": p.distill_schedule, "widths": list(p.student_widths), "fc": p.student_fc,
        "batchnorm": p.student_batchnorm}
    # absent at their defaults, so students distilled before these fields existed still match
    if p.distill_hard_weight:
        key["hard_weight"] = p.distill_hard_weight
    if p.distill_restarts > 1:
        key["restarts"] = p.distill_restarts
    if p.student_c1_init != "random":
        key["c1_init"] = p.student_c1_init
    return key


def remember_earlier_run(results: dict[str, Any], machine: dict[str, Any]) -> None:
    """A resumed run on another machine (a GPU run finished on the CPU, say) moves the earlier
    machine, its wall times and its stage timings under ``earlier_runs`` and starts the timings
    afresh, so the report can say where each part ran and no stage mixes two machines."""
    old = results.get("machine")
    if not old or old == machine:
        return
    entry = {"machine": old, **{k: results[k] for k in
                                ("wall_seconds_main", "wall_seconds_before_sweep", "wall_seconds",
                                 "wall_includes_sweep", "timings") if k in results}}
    earlier = results.setdefault("earlier_runs", [])
    if entry not in earlier:
        earlier.append(entry)
    results["timings"] = {}


def pick_restart(final_losses: list[float | None]) -> int:
    """The restart a student is taken from: the lowest final training loss (Eq. 1 over its last
    epoch). It is the objective the student is trained on, so the choice never looks at test
    images; a restart without a loss ranks last."""
    if not final_losses:
        msg = "no restarts to choose from"
        raise ValueError(msg)
    return min(range(len(final_losses)),
               key=lambda i: (final_losses[i] is None, final_losses[i] or 0.0, i))


def ensure_data(p: Preset, root: Path) -> None:
    from train.dagm import DagmError
    from train.synth import stale_set

    if root.is_dir() and any(root.glob("Class*")):
        why = stale_set(root)  # a set an older generator wrote must not pass for this one's
        if why:
            raise DagmError(why)
        return
    from pyinspect.backends.base import usable_cpus
    from train.synth import synthesize

    print(f"generating synthetic DAGM into {root} (seed {p.synth_seed})", flush=True)
    # every image is a pure function of its seed and index: the worker count changes no pixel
    synthesize(root, good=p.synth_good, defective=p.synth_defective, seed=p.synth_seed,
               workers=max(1, usable_cpus()), progress=False)


def teacher_kwargs(p: Preset, init: str) -> dict[str, Any]:
    kw = dict(p.teacher_kwargs)
    if p.teacher_arch != "student":
        kw["init"] = init
    return kw


def measure_latency(model_path: Path, records: list[Any], frames: int) -> dict[str, float]:
    """Per-frame latency (9 patches: tile + infer + vote) of the deployed model, ms."""
    from pyinspect import Inspector
    from train.dagm import read_image

    insp = Inspector(str(model_path))
    imgs = [read_image(r) for r in records[: max(1, frames)]]
    insp.run(imgs[0])
    times = []
    for img in imgs:
        t0 = time.perf_counter()
        insp.run(img)
        times.append((time.perf_counter() - t0) * 1e3)
    path = insp.backend_name + (" + student engine" if insp.engine == "student-engine" else "")
    insp.close()
    return {"median_ms": float(np.median(times)), "mean_ms": float(np.mean(times)),
            "frames": len(times), "path": path}


def torch_latency(checkpoint: Path, frames: int, threads: int) -> float:
    """Median ms of one 9-patch batch through a PyTorch checkpoint (Table 5's teacher column)."""
    import torch

    from train.models import load_checkpoint

    torch.set_num_threads(threads)
    model, _ = load_checkpoint(checkpoint)
    model = model.to(memory_format=torch.channels_last)
    x = torch.randn(9, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    times = []
    with torch.inference_mode():
        model(x)
        for _ in range(max(1, frames)):
            t0 = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def run_preset(p: Preset, out: Path, *, threads: int = 2, skip_sweep: bool = False,
               device: str = "cpu") -> dict:
    """Run ``p`` into ``out``; ``device`` trains, distils and evaluates the PyTorch models there
    (``cpu``, ``cuda``, ``auto``); exports and ``Inspector`` runs stay on the CPU."""
    import torch

    from train.distill import checkpoint_iteration, distill, logits_cache, teacher_logits
    from train.evaluate import evaluate_inspector, evaluate_model, load_split, parity
    from train.export import export
    from train.fit import FitConfig, fit, log_iters, summary_from_checkpoint
    from train.models import (
        checkpoint_meta,
        count_parameters,
        device_name,
        load_checkpoint,
        normalization,
        resolve_device,
    )
    from train.torchdata import orientation_tag, patch_set

    dev = resolve_device(device)
    torch.set_num_threads(threads)
    t_start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    root = Path(p.data_root.format(out=out))
    stage = Stage(0.0)
    stage("data")
    t0 = time.perf_counter()
    ensure_data(p, root)
    train_recs = load_split(root, "train", p.seed)
    test_recs = load_split(root, "test", p.seed)
    sub_recs = load_split(root, "test", p.seed, limit=p.eval_images)
    stage.record("data", time.perf_counter() - t0)
    print(f"   {len(train_recs)} train / {len(test_recs)} test images; intermediate evals on "
          f"{len(sub_recs)}", flush=True)
    # Initial ETA from the costs measured on this machine (2 threads); refined after teacher 1.
    costs = {"lite0": 1.5, "vgg16": 15.0, "student": 0.05}
    sec_teacher = costs.get(p.teacher_arch, 1.0)
    sec_patch = {"lite0": 0.012, "vgg16": 0.15, "student": 0.002}.get(p.teacher_arch, 0.01)
    stage.estimate = estimate_seconds(p, sec_teacher, 0.1, sec_patch, len(test_recs),
                                      len(train_recs))
    results_path = out / "results.json"
    results: dict[str, Any] = json.loads(results_path.read_text()) if results_path.is_file() else {}
    machine = {"platform": platform.platform(), "processor": platform.processor(),
               "torch_threads": threads, "cpu_count": os.cpu_count(),
               "torch": torch.__version__, "device": device_name(dev)}
    from train.synth import read_recipe

    fingerprint = (read_recipe(root) or {}).get("fingerprint")  # ensure_data checked it
    before = (results.get("data") or {}).get("fingerprint")
    if before and fingerprint and before != fingerprint:
        from train.dagm import DagmError

        msg = (f"{out} holds a run on other data (generator fingerprint {before}; {root} has "
               f"{fingerprint}): its checkpoints and patch caches do not fit; use another --out")
        raise DagmError(msg)
    remember_earlier_run(results, machine)
    results.update({
        "preset": p.name,
        "config": _jsonable(p.__dict__),
        "machine": machine,
        "data": {"root": str(root), "train_images": len(train_recs),
                 "test_images": len(test_recs), "split_seed": p.seed,
                 "fingerprint": fingerprint},
    })
    results.setdefault("teachers", {})
    results.setdefault("students", {})
    results.setdefault("timings", {})

    # stages this invocation took from an earlier one: their timings stay the recorded ones
    reused: list[str] = []
    results["reused_stages"] = reused

    def save() -> None:
        results["timings"].update(stage.timings)
        results_path.write_text(json.dumps(results, indent=1))

    ckdir, logdir = out / "checkpoints", out / "logs"
    # ---------------------------------------------------------------- teachers
    def do_teacher(tr: Any) -> None:
        nonlocal sec_teacher
        stage(f"teacher {tr.name} ({p.teacher_arch}, init {tr.init}, {tr.patches}, {tr.iters} it)")
        t0 = time.perf_counter()
        ck = ckdir / f"teacher-{tr.name}.pt"
        x, y = patch_set(tr.patches, train_recs, p.seed, out / "data" / f"{tr.patches}-{p.seed}",
                         max_patches=p.aug_max_patches_teacher if tr.patches == "aug" else None)
        cfg = FitConfig(arch=p.teacher_arch, arch_kwargs=teacher_kwargs(p, tr.init),
                        iters=tr.iters, lr=p.teacher_lr,
                        eval_at=log_iters(tr.iters, p.eval_points),
                        seed=p.seed, threads=threads, device=str(dev))
        done = (ck.is_file()
                and checkpoint_meta(ck).get("iteration") == tr.iters)
        if done:  # the recorded summary, unless it belongs to an earlier, shorter budget
            prev = results["teachers"].get(tr.name, {}).get("fit") or {}
            summary = prev if prev.get("iterations") == tr.iters else summary_from_checkpoint(ck)
            reused.append(f"teacher-{tr.name}-fit")
        else:
            summary = fit(cfg, x, y, sub_recs, ck, logdir / f"teacher-{tr.name}.jsonl",
                          run=f"teacher-{tr.name}", meta={"preset": p.name, "seed": p.seed})
            stage.record(f"teacher-{tr.name}-fit", time.perf_counter() - t0)
        if summary.get("sec_per_iter"):
            sec_teacher = summary["sec_per_iter"]
            stage.estimate = (time.perf_counter() - stage.t0) + estimate_seconds(
                p, sec_teacher, 0.1, sec_patch, len(test_recs), len(train_recs),
                teachers=p.teachers[p.teachers.index(tr) + 1:])
        first = p.teacher_test_images is not None and p.teacher_test_images < len(test_recs)
        recs = load_split(root, "test", p.seed, limit=p.teacher_test_images) if first else test_recs
        entry = {"fit": summary, "init": tr.init, "patches": tr.patches, "train_patches": len(x),
                 "arch": p.teacher_arch}
        prev_entry = results["teachers"].get(tr.name) or {}
        if (done and prev_entry.get("test_is_full")
                and (prev_entry.get("fit") or {}).get("iterations") == tr.iters
                and prev_entry.get("train_patches") == len(x)):
            # the same checkpoint was already evaluated on the full split (~3 min saved)
            print(f"   teacher {tr.name}: full test evaluation reused "
                  f"({100 * prev_entry['test']['accuracy']:.2f}%)", flush=True)
            reused.append(f"teacher-{tr.name}-eval")
            return
        evaluate_teacher(tr.name, ck, recs, entry)

    def evaluate_teacher(name: str, ck: Path, recs: list[Any], entry: dict[str, Any]) -> None:
        stage(f"teacher {name}: test evaluation ({len(recs)} of {len(test_recs)} images)")
        t0 = time.perf_counter()
        model, _ = load_checkpoint(ck)
        res = evaluate_model(model.to(dev, memory_format=torch.channels_last), recs,
                             *normalization(p.teacher_arch), progress=True, desc=name)
        stage.record(f"teacher-{name}-eval-{len(recs)}", time.perf_counter() - t0)
        m = res.metrics()
        print(f"   teacher {name}: accuracy {100 * m['accuracy']:.2f}% on {len(recs)} images "
              f"(convergence at {entry['fit'].get('convergence_iteration')} it)", flush=True)
        results["teachers"][name] = {**entry, "test": m, "test_is_full": len(recs) == len(
            test_recs), "parameters": count_parameters(model)}
        save()

    # ---------------------------------------------------------------- distillation
    aug_x: Any = None
    aug_y: Any = None
    aug_tag = orientation_tag(p.aug_orientations)

    def aug_patches() -> tuple[Any, Any]:
        return patch_set("aug", train_recs, p.seed, out / "data" / f"aug-{p.seed}{aug_tag}",
                         max_patches=p.aug_max_patches, members=p.aug_orientations)

    def do_student(tname: str) -> None:
        nonlocal aug_x, aug_y
        stage(f"distil student {p.student_widths} from teacher {tname}")
        t0 = time.perf_counter()
        if aug_x is None:
            aug_x, aug_y = aug_patches()
        tck = ckdir / f"teacher-{tname}.pt"
        logits = teacher_logits(tck, aug_x, logits_cache(out / "cache", tck, len(aug_x), aug_tag),
                                device=str(dev))
        sck = ckdir / f"student-{tname}.pt"
        run = f"student-{tname}"
        t_it = checkpoint_iteration(tck)
        key = distill_key(p, t_it, len(aug_x))
        restarts: list[dict[str, Any]] = []
        distilled = False
        if sck.is_file() and checkpoint_meta(sck).get("distill_key") == key:
            # the checkpoint's own summary; results.json may hold an older student's
            meta = checkpoint_meta(sck)
            summary, restarts = meta.get("summary") or {}, meta.get("restarts") or []
        else:
            # each restart is its own checkpoint (reused when its key matches), so an
            # interrupted run keeps the restarts it finished
            n = max(1, p.distill_restarts)
            for r in range(n):
                rseed = p.seed + r
                rrun = run if n == 1 else f"{run}-r{r}"
                rck = ckdir / f"{rrun}.pt"
                rkey = key if n == 1 else {**key, "seed": rseed}
                if not rck.is_file() or checkpoint_meta(rck).get("distill_key") != rkey:
                    stage(f"distil {rrun} (seed {rseed})")
                    distilled = True
                    distill(aug_x, logits, sub_recs, rck, logdir / f"{rrun}.jsonl",
                            c=p.student_widths, fc=p.student_fc, epochs=p.distill_epochs,
                            schedule=p.distill_schedule, seed=rseed, threads=threads, run=rrun,
                            batchnorm=p.student_batchnorm, c1_init=p.student_c1_init,
                            device=str(dev),
                            labels=aug_y if p.distill_hard_weight else None,
                            hard_weight=p.distill_hard_weight,
                            meta={"preset": p.name, "teacher": f"teacher-{tname}",
                                  "distill_key": rkey})
                rmeta = checkpoint_meta(rck)
                restarts.append({"seed": rseed, "checkpoint": rck.name,
                                 "final_loss": (rmeta.get("summary") or {}).get("final_loss"),
                                 "summary": rmeta.get("summary") or {},
                                 "device": rmeta.get("device")})
            best = pick_restart([r["final_loss"] for r in restarts])
            for i, r in enumerate(restarts):
                r["chosen"] = i == best
            blob = torch.load(ckdir / restarts[best]["checkpoint"], map_location="cpu",
                              weights_only=False)
            blob["meta"].update({"distill_key": key, "run": run,
                                 "restarts": [{k: v for k, v in r.items() if k != "summary"}
                                              for r in restarts]})
            summary = blob["meta"].get("summary") or {}
            torch.save(blob, sck)
        if len(restarts) > 1:  # every restart's test accuracy, for the record (not the choice)
            for r in restarts:
                if "test_accuracy" not in r and (ckdir / r["checkpoint"]).is_file():
                    rmodel, _ = load_checkpoint(ckdir / r["checkpoint"])
                    r["test_accuracy"] = evaluate_model(
                        rmodel.to(dev), test_recs, *normalization("student")).accuracy
            print("   restarts (seed, final Eq. 1 loss, test accuracy): " + ", ".join(
                f"({r['seed']}, {r['final_loss']}, {_pct(r.get('test_accuracy'))} %)"
                + (" chosen" if r["chosen"] else "") for r in restarts), flush=True)
        model, _ = load_checkpoint(sck)
        res = evaluate_model(model.to(dev), test_recs, *normalization("student"), progress=True,
                             desc=run)
        m = res.metrics()
        print(f"   student from {tname}: accuracy {100 * m['accuracy']:.2f}%", flush=True)
        results["students"][tname] = {"distill": summary, "test": m,
                                      "parameters": count_parameters(model),
                                      "widths": list(p.student_widths),
                                      "aug_patches": len(aug_x),
                                      "restarts": [{k: v for k, v in r.items() if k != "summary"}
                                                   for r in restarts]}
        if distilled:
            stage.record(f"student-{tname}", time.perf_counter() - t0)
        else:
            reused.append(f"student-{tname}")
        # the checkpoint carries its measured accuracy into the export's provenance
        blob = torch.load(sck, map_location="cpu", weights_only=False)
        blob["meta"].setdefault("distill_seed", blob["meta"].get("seed"))  # before "seed" below
        blob["meta"].update({"accuracy": m["accuracy"], "dataset": f"{root} (test 20%, seed "
                             f"{p.seed}, {len(test_recs)} images)", "seed": p.seed,
                             "preset": p.name})
        if restarts:  # with their test accuracies, so a reused student need not recompute them
            blob["meta"]["restarts"] = [{k: v for k, v in r.items() if k != "summary"}
                                        for r in restarts]
        torch.save(blob, sck)
        save()

    # ---------------------------------------------------------------- export + deploy parity
    def do_export() -> None:
        stage(f"export student-{p.ship} (rgb + folded) and check train/deploy parity")
        t0 = time.perf_counter()
        sck = ckdir / f"student-{p.ship}.pt"
        exp: dict[str, Any] = {}
        for variant, folded in (("rgb", False), ("folded", True)):
            path = out / "models" / f"student-{p.ship}{'' if folded else '-rgb'}.onnx"
            exp[variant] = export(sck, path, folded=folded)
        model, _ = load_checkpoint(sck)
        torch_res = evaluate_model(model.to(dev), test_recs, *normalization("student"))
        dep = {}
        for variant in ("folded", "rgb"):
            r = evaluate_inspector(exp[variant]["onnx"], test_recs, progress=True)
            dep[variant] = {"accuracy": r.accuracy, "parity": parity(torch_res, r)}
        lat = measure_latency(Path(exp["folded"]["onnx"]), test_recs, p.latency_frames)
        lat_rgb = measure_latency(Path(exp["rgb"]["onnx"]), test_recs, p.latency_frames)
        results["export"] = {"files": exp, "inspector": dep, "latency_folded": lat,
                             "latency_rgb": lat_rgb}
        if p.teachers:
            results["export"]["teacher_torch_ms_per_frame"] = torch_latency(
                ckdir / f"teacher-{p.teachers[0].name}.pt", p.latency_frames, threads)
        stage.record("export", time.perf_counter() - t0)
        print(f"   deploy parity: {dep['folded']['parity']['mismatches']} mismatches (folded), "
              f"{dep['rgb']['parity']['mismatches']} (rgb); {lat['median_ms']:.2f} ms/frame",
              flush=True)
        save()

    # ---------------------------------------------------------------- the run, teacher by teacher
    # Each teacher's student (and the shipped export) is finished before the next teacher starts,
    # so the deployable model exists as early as possible.
    for tr in p.teachers:
        do_teacher(tr)
        if tr.name in p.distill_from:
            do_student(tr.name)
        if tr.name == p.ship:
            do_export()
            results["wall_seconds_main"] = round(time.perf_counter() - t_start, 1)
            save()
            write_report(results, out)
    # Teachers evaluated on a subset first (to ship the student sooner) get the full split now.
    for tr in p.teachers:
        entry = results["teachers"].get(tr.name)
        if entry is not None and not entry.get("test_is_full"):
            evaluate_teacher(tr.name, ckdir / f"teacher-{tr.name}.pt", test_recs, entry)
    results["wall_seconds_before_sweep"] = round(time.perf_counter() - t_start, 1)
    save()
    write_report(results, out)
    # ---------------------------------------------------------------- compression sweep
    if p.sweep and not skip_sweep:
        results.setdefault("sweep", {})
        if aug_x is None:
            aug_x, aug_y = aug_patches()
        for tname in p.sweep_teachers:
            tck = ckdir / f"teacher-{tname}.pt"
            cache = logits_cache(out / "cache", tck, len(aug_x), aug_tag)
            cached = cache.is_file()
            t0 = time.perf_counter()
            logits = teacher_logits(tck, aug_x, cache, device=str(dev))
            if not cached:  # a cached set keeps the time it took when it was computed
                stage.record(f"sweep-logits-{tname}", time.perf_counter() - t0)
            t_it = checkpoint_iteration(tck)
            for c in p.sweep:
                key = f"{tname}:{'x'.join(map(str, c))}"
                prev = results["sweep"].get(key, {})
                if ((prev.get("teacher_iteration"), prev.get("patches"), prev.get("orientations"),
                     prev.get("epochs"), prev.get("c1_init", "random"))
                        == (t_it, len(aug_x), list(p.aug_orientations), p.sweep_epochs,
                            p.student_c1_init)):
                    reused.append(f"sweep-{key}")
                    continue
                stage(f"sweep {key}")
                t0 = time.perf_counter()
                run = f"sweep-{tname}-{'x'.join(map(str, c))}"
                distill(aug_x, logits, sub_recs, ckdir / f"{run}.pt", logdir / f"{run}.jsonl",
                        c=c, fc=p.student_fc, epochs=p.sweep_epochs, seed=p.seed,
                        threads=threads, run=run, progress=False,
                        batchnorm=p.student_batchnorm, c1_init=p.student_c1_init,
                        device=str(dev),
                        labels=aug_y if p.distill_hard_weight else None,
                        hard_weight=p.distill_hard_weight)
                model, _ = load_checkpoint(ckdir / f"{run}.pt")
                r = evaluate_model(model.to(dev), test_recs, *normalization("student"))
                results["sweep"][key] = {"teacher": tname, "widths": list(c),
                                         "accuracy": r.accuracy,
                                         "parameters": count_parameters(model),
                                         "epochs": p.sweep_epochs, "teacher_iteration": t_it,
                                         "patches": len(aug_x),
                                         "orientations": list(p.aug_orientations),
                                         "c1_init": p.student_c1_init}
                stage.record(f"sweep-{key}", time.perf_counter() - t0)
                print(f"   sweep {key}: {100 * r.accuracy:.2f}%", flush=True)
                save()
        results["wall_includes_sweep"] = True
        results["wall_seconds"] = round(time.perf_counter() - t_start, 1)
        save()
        write_report(results, out)
    else:  # the report above was written before the total was known
        results["wall_includes_sweep"] = False
        results["wall_seconds"] = round(time.perf_counter() - t_start, 1)
        save()
        write_report(results, out)
    return results


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "__dataclass_fields__"):
        return _jsonable(obj.__dict__)
    return obj


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.2f}"


def write_report(results: dict[str, Any], out: Path) -> Path:
    """REPORT.md with Tables 2, 3, 5 beside the paper's numbers, and the Fig. 4 plot."""
    fig = plot_fig4(results, out / "fig4_accuracy_vs_iteration.png")
    t = results.get("teachers", {})
    s = results.get("students", {})
    d = results.get("data", {})
    lines = [
        f"# Reproduction report: preset `{results.get('preset')}`",
        "",
        f"Data: `{d.get('root')}`: {d.get('train_images')} train / {d.get('test_images')} test "
        f"images (split seed {d.get('split_seed')}). Machine: {results['machine']['platform']}, "
        f"{results['machine']['torch_threads']} torch threads"
        + (f", PyTorch on {results['machine']['device']}"
           if results["machine"].get("device", "cpu") != "cpu" else "")
        + ". Wall time: "
        f"{results.get('wall_seconds_main', 0) / 60:.1f} min to the shipped student"
        + (f", {results['wall_seconds'] / 60:.1f} min in all"
           + (" with the sweep." if results.get("wall_includes_sweep", bool(results.get("sweep")))
              else " (no sweep)." if not results.get("sweep") else
              " (the sweep's rows come from an earlier run).")
           if "wall_seconds" in results else "."),
        *([f"This invocation reused {', '.join(results['reused_stages'])} from an earlier one "
           "(their measured times are kept under Stage timings); the stage timings add up to "
           f"{sum(results.get('timings', {}).values()) / 60:.1f} min."]
          if results.get("reused_stages") else []),
        *[f"Resumed from an earlier run on {e['machine'].get('platform')} (PyTorch on "
          f"{e['machine'].get('device', 'cpu')}, {e['machine'].get('torch_threads')} torch "
          f"threads; {e.get('wall_seconds', 0) / 60:.1f} min): its checkpoints were reused where "
          "their settings match." for e in results.get("earlier_runs", [])],
        "",
        "## Table 2: teachers (accuracy over 12 classes, §4 protocol, held-out 20 %)",
        "",
        "| teacher | arch | train patches | iterations | test images | accuracy % (ours) | "
        "convergence it (ours) | paper accuracy % | paper convergence it |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in t.items():
        ref = PAPER_TABLE2.get(name, (name, None, None, None))
        fit = r.get("fit", {})
        lines.append(
            f"| {ref[0]} | {r.get('arch')} ({r.get('init')}) | {r.get('train_patches')} | "
            f"{fit.get('iterations')} | {r['test']['images']} | {_pct(r['test']['accuracy'])} | "
            f"{fit.get('convergence_iteration')} | "
            f"{'' if ref[1] is None else f'{ref[1]:.2f} ± {ref[2]:.2f}'} | {ref[3] or ''} |")
    lines += ["", "Convergence = first evaluated iteration within 0.5 points of the best "
              "intermediate accuracy (intermediate evaluations on a fixed test subset).", "",
              f"![Fig. 4]({fig.name})", "", "## Table 3: per-texture TPR / TNR (%)", ""]
    header = "| texture | " + " | ".join(f"{n} TPR | {n} TNR" for n in t) + \
        " | paper transfer TPR | paper transfer TNR |"
    lines += [header, "|" + "---|" * (1 + 2 * len(t) + 2)]
    for k in range(6):
        cells = []
        for r in t.values():
            cells += [_pct(r["test"]["tpr"][k]), _pct(r["test"]["tnr"][k])]
        lines.append(f"| {k + 1} | " + " | ".join(cells) +
                     f" | {PAPER_TABLE3_TRANSFER['tpr'][k]} | {PAPER_TABLE3_TRANSFER['tnr'][k]} |")
    exp = results.get("export", {})
    lines += ["", "## Table 5: teacher vs student", "",
              "| model | parameters | accuracy % (ours) | ms / image (ours, this CPU) | paper "
              "parameters | paper accuracy % | paper ms / image (TITAN Xp) |",
              "|---|---|---|---|---|---|---|"]
    tms = exp.get("teacher_torch_ms_per_frame")
    for name, r in t.items():
        lines.append(f"| teacher {name} ({r.get('arch')}) | {r.get('parameters'):,} | "
                     f"{_pct(r['test']['accuracy'])} | "
                     f"{'' if tms is None else f'{tms:.1f} (PyTorch, batch 9)'} | 134 million | "
                     f"{PAPER_TABLE2.get(name, ('', ''))[1]} | 57.43 |")
    lat = exp.get("latency_folded", {})
    for name, r in s.items():
        ms = (f"{lat['median_ms']:.2f} (Inspector.run: {lat.get('path', 'onnxruntime')}, folded,"
              " whole frame)") if lat and name == results["config"].get("ship") else ""
        lines.append(f"| student of {name} {tuple(r['widths'])} | {r['parameters']:,} | "
                     f"{_pct(r['test']['accuracy'])} | {ms} | 858,380 | "
                     f"{PAPER_TABLE5['student_acc'].get(name, '')} | 1.46 |")
    if exp:
        lines += ["", "## Deployment parity (PyTorch vs `pyinspect.Inspector`)", ""]
        for variant, v in exp.get("inspector", {}).items():
            lines.append(f"- {variant}: accuracy {_pct(v['accuracy'])} %, "
                         f"{v['parity']['mismatches']} / {v['parity']['images']} verdicts differ; "
                         f"max |Δlogit| at export "
                         f"{exp['files'][variant]['max_abs_logit_diff']:.2e}")
    if results.get("sweep"):
        sweep_png = plot_fig10(results, out / "fig10_compression_sweep.png")
        lines += ["", "## Fig. 10 (partial): compression sweep", "",
                  "| teacher | widths | parameters | epochs | accuracy % |",
                  "|---|---|---|---|---|"]
        for v in sweep_rows(results):
            mark = " (the preset's student)" if v.get("preset_student") else ""
            lines.append(f"| {v['teacher']} | {tuple(v['widths'])}{mark} | "
                         f"{v['parameters']:,} | {v['epochs']} | {_pct(v['accuracy'])} |")
        lines += ["", f"![Fig. 10]({sweep_png.name})"]
    if results.get("notes"):
        lines += ["", "## Notes", "", *[f"- {n}" for n in results["notes"]]]
    tim = results.get("timings", {})
    if tim:
        lines += ["", "## Stage timings (s)", "", ", ".join(f"{k}: {v}" for k, v in tim.items())]
        for e in results.get("earlier_runs", []):
            if e.get("timings"):
                lines += ["", f"Earlier run (PyTorch on {e['machine'].get('device', 'cpu')}): "
                          + ", ".join(f"{k}: {v}" for k, v in e["timings"].items())]
    path = out / "REPORT.md"
    text = "\n".join(lines) + "\n"
    if path.is_file():  # keep the section `python -m train analyze` spliced in
        from train.analysis import carry_section

        text = carry_section(path.read_text(), text)
    path.write_text(text)
    return path


def plot_fig4(results: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    for name, r in results.get("teachers", {}).items():
        curve = r.get("fit", {}).get("curve", [])
        if curve:
            its, acc = zip(*curve, strict=True)
            ax.plot(its, [100 * a for a in acc], marker="o", label=f"{name} ({r.get('arch')})")
    ax.set_xscale("log")
    ax.set_xlabel("SGD iterations (batch 32)")
    ax.set_ylabel("test accuracy % (subset, §4 protocol)")
    ax.set_title(f"Fig. 4 reproduction: preset {results.get('preset')}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def sweep_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Fig. 10's points by teacher, widest first; a sweep teacher's main student (trained longer,
    marked ``preset_student``) joins its teacher's rows, so the curve ends at the student the
    preset made."""
    rows = [dict(v) for v in results.get("sweep", {}).values()]
    teachers = list(dict.fromkeys(v["teacher"] for v in rows))
    for name in teachers:
        s = results.get("students", {}).get(name)
        if s and s.get("test"):
            rows.append({"teacher": name, "widths": s["widths"], "parameters": s["parameters"],
                         "epochs": results.get("config", {}).get("distill_epochs"),
                         "accuracy": s["test"]["accuracy"], "preset_student": True})
    return sorted(rows, key=lambda v: (teachers.index(v["teacher"]), -v["parameters"]))


def plot_fig10(results: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sweep_rows(results)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    for name in dict.fromkeys(v["teacher"] for v in rows):
        pts = [v for v in rows if v["teacher"] == name and not v.get("preset_student")]
        line = ax.plot([v["parameters"] for v in pts], [100 * v["accuracy"] for v in pts],
                       marker="o", label=f"students of {name} ({pts[0]['epochs']} epochs)"
                       if pts else name)
        for v in rows:
            if v["teacher"] == name and v.get("preset_student"):
                ax.plot(v["parameters"], 100 * v["accuracy"], marker="*", markersize=12,
                        linestyle="none", color=line[0].get_color(),
                        label=f"{name}'s preset student ({v['epochs']} epochs)")
    ax.set_xscale("log")
    ax.set_xlabel("student parameters")
    ax.set_ylabel("test accuracy % (§4 protocol)")
    ax.set_title(f"Fig. 10 reproduction (partial): preset {results.get('preset')}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def ship(results: dict[str, Any], dest: Path) -> list[Path]:
    """Copy the preset's exported student (folded -> ``student.onnx``, rgb ->
    ``student_rgb.onnx``) and their sidecars into ``dest`` (the repository's ``models/``)."""
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
    return written


@friendly_errors
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train reproduce", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", required=True, choices=["smoke", "cpu", "paper"])
    ap.add_argument("--out", help="output directory (default results/<preset>)")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("TORCH_THREADS", "2")))
    ap.add_argument("--data", help="dataset root (overrides the preset's)")
    ap.add_argument("--device", default="cpu",
                    help="where PyTorch trains and evaluates: cpu, cuda, cuda:N or auto "
                         "(exports and Inspector runs stay on the CPU)")
    ap.add_argument("--skip-sweep", action="store_true")
    ap.add_argument("--report-only", action="store_true",
                    help="rebuild REPORT.md from results.json")
    ap.add_argument("--ship-to", type=Path, metavar="DIR",
                    help="copy the exported student (+ sidecars) here, e.g. models")
    args = ap.parse_args(argv)
    out = Path(args.out or f"results/{args.preset}")
    if args.report_only:
        results = json.loads((out / "results.json").read_text())
        print(write_report(results, out))
        if args.ship_to:
            print("\n".join(map(str, ship(results, args.ship_to))))
        return 0
    overrides = {"data_root": args.data} if args.data else {}
    preset = get_preset(args.preset, **overrides)
    results = run_preset(preset, out, threads=args.threads, skip_sweep=args.skip_sweep,
                         device=args.device)
    if args.ship_to:
        print("\n".join(map(str, ship(results, args.ship_to))))
    print(f"wrote {out / 'results.json'} and {out / 'REPORT.md'}", file=sys.stderr)
    return 0
