"""The stages of a preset run (teacher, student, export, sweep, trials) over one :class:`Run`.

Each stage reads what it needs from the ``Run`` (the preset, the splits, the output folder, the
``results`` dict) and leaves its output on disk and in ``results.json``. A stage whose output
exists with the same settings is reused, not recomputed, so an interrupted run resumes where it
stopped; ``train/reproduce.py`` calls the stages in order.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from train.distill import DistillConfig
from train.presets import Preset, TeacherRun

# Seconds per step measured with 2 threads on a 2-core CPU: the first ETA, refined after a
# teacher has trained.
SEC_TEACHER_STEP = {"lite0": 1.5, "vgg16": 15.0, "student": 0.05}
SEC_EVAL_PATCH = {"lite0": 0.012, "vgg16": 0.15, "student": 0.002}
SEC_STUDENT_STEP = 0.1
#: DistillConfig field <- the Preset field it is read from
PRESET_DISTILL_FIELDS = {
    "widths": "student_widths",
    "fc": "student_fc",
    "epochs": "distill_epochs",
    "schedule": "distill_schedule",
    "seed": "seed",
    "hard_weight": "distill_hard_weight",
    "batchnorm": "student_batchnorm",
    "c1_init": "student_c1_init",
}


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


@dataclass
class Run:
    """Everything the stages of one preset run share: settings, splits, folders, results."""

    preset: Preset
    out: Path
    root: Path  # the dataset
    threads: int
    device: Any  # torch.device
    train_recs: list[Any]
    test_recs: list[Any]
    sub_recs: list[Any]  # the intermediate-evaluation subset
    results: dict[str, Any]
    stage: Stage
    t_start: float = field(default_factory=time.perf_counter)
    aug: tuple[np.ndarray, np.ndarray] | None = None  # the distillation patch set, once read

    @property
    def ckdir(self) -> Path:
        return self.out / "checkpoints"

    @property
    def logdir(self) -> Path:
        return self.out / "logs"

    @property
    def reused(self) -> list[str]:
        """Stages this invocation took from disk: their timings stay the recorded ones."""
        return self.results["reused_stages"]

    def elapsed(self) -> float:
        return round(time.perf_counter() - self.t_start, 1)

    def save(self) -> None:
        self.results["timings"].update(self.stage.timings)
        (self.out / "results.json").write_text(json.dumps(self.results, indent=1))

    def aug_patches(self) -> tuple[np.ndarray, np.ndarray]:
        """The distillation (aug) patch set and its labels, read or sampled once per run."""
        if self.aug is None:
            from train.torchdata import patch_set

            p = self.preset
            self.aug = patch_set(
                "aug",
                self.train_recs,
                p.seed,
                self.out / "data" / f"aug-{p.seed}{aug_tag(p)}",
                max_patches=p.aug_max_patches,
                members=p.aug_orientations,
                grid_share=p.good_grid_share,
                texture_repeat=p.aug_texture_repeat,
            )
        return self.aug

    def logits_cache(self, teacher: Path) -> Path:
        from train.distill import logits_cache

        x, _ = self.aug_patches()
        return logits_cache(self.out / "cache", teacher, len(x), aug_tag(self.preset))

    def distill_config(self, **changes: Any) -> DistillConfig:
        """The preset's student settings on this run's device and threads."""
        p = self.preset
        settings = {k: getattr(p, name) for k, name in PRESET_DISTILL_FIELDS.items()}
        cfg = DistillConfig(**settings, threads=self.threads, device=str(self.device))
        return dataclasses.replace(cfg, **changes)

    def hard_labels(self) -> np.ndarray | None:
        """The aug set's labels when the preset adds the cross-entropy term, else None."""
        return self.aug_patches()[1] if self.preset.distill_hard_weight else None


# --------------------------------------------------------------------------- helpers
def estimate_seconds(
    p: Preset,
    sec_teacher: float,
    sec_student: float,
    sec_eval_patch: float,
    test_images: int,
    train_images: int,
    teachers: Sequence[TeacherRun] | None = None,
) -> float:
    """Rough wall time of a preset from measured step costs (printed as the ETA); ``teachers``:
    the ones still to train (default: all of the preset's)."""
    t = 0.0
    per_eval = (p.eval_images or test_images) * 9 * sec_eval_patch
    for tr in p.teachers if teachers is None else teachers:
        t += tr.iters * sec_teacher + p.eval_points * per_eval + test_images * 9 * sec_eval_patch
    n_aug = p.aug_max_patches or train_images * 10
    logit_teachers = set(p.distill_from) | (set(p.sweep_teachers) if p.sweep else set())
    t += len(logit_teachers) * n_aug * sec_eval_patch
    t += len(p.distill_from) * p.distill_restarts * p.distill_epochs * (n_aug / 32) * sec_student
    t += len(p.sweep_teachers) * len(p.sweep) * p.sweep_epochs * (n_aug / 32) * sec_student
    return t * max(1, p.trials)


def aug_tag(p: Preset) -> str:
    """The distillation patch set's part of its cache names: orientations, grid share and
    per-texture repeats (``train.torchdata``), so sets drawn differently never share a file."""
    from train.torchdata import grid_tag, orientation_tag, repeat_tag

    return (
        orientation_tag(p.aug_orientations)
        + grid_tag(p.good_grid_share)
        + repeat_tag(p.aug_texture_repeat)
    )


def distill_key(p: Preset, teacher_iteration: int | None, patches: int) -> dict[str, Any]:
    """What a distilled student depends on: ``reproduce`` reuses a student checkpoint only when
    its recorded key equals this one (same teacher iteration, patch set and settings)."""
    key: dict[str, Any] = {
        "teacher_iteration": teacher_iteration,
        "patches": patches,
        "orientations": list(p.aug_orientations),
        "epochs": p.distill_epochs,
        "schedule": p.distill_schedule,
        "widths": list(p.student_widths),
        "fc": p.student_fc,
        "batchnorm": p.student_batchnorm,
    }
    # absent at their defaults, so the key of a run that leaves them at the default stays short
    # and keeps matching the checkpoints written with it
    if p.distill_hard_weight:
        key["hard_weight"] = p.distill_hard_weight
    if p.distill_restarts > 1:
        key["restarts"] = p.distill_restarts
    if p.student_c1_init != "random":
        key["c1_init"] = p.student_c1_init
    if any(v != 1 for v in p.aug_texture_repeat):
        key["texture_repeat"] = list(p.aug_texture_repeat)
    return key


def record_other_machine(results: dict[str, Any], machine: dict[str, Any]) -> None:
    """A run resumed on another machine (a GPU run finished on the CPU, say) moves the first
    machine, its wall times and its stage timings under ``other_machines`` and starts the
    timings afresh, so the report can say where each part ran and no stage mixes two machines."""
    old = results.get("machine")
    if not old or old == machine:
        return
    keys = (
        "wall_seconds_main",
        "wall_seconds_before_sweep",
        "wall_seconds",
        "wall_includes_sweep",
        "timings",
    )
    entry = {"machine": old, **{k: results[k] for k in keys if k in results}}
    others = results.setdefault("other_machines", [])
    if entry not in others:
        others.append(entry)
    results["timings"] = {}


def pick_restart(final_losses: list[float | None]) -> int:
    """The restart a student is taken from: the lowest final training loss (Eq. 1 over its last
    epoch). It is the objective the student is trained on, so the choice never looks at test
    images; a restart without a loss ranks last."""
    if not final_losses:
        msg = "no restarts to choose from"
        raise ValueError(msg)
    return min(
        range(len(final_losses)), key=lambda i: (final_losses[i] is None, final_losses[i] or 0.0, i)
    )


def ensure_data(p: Preset, root: Path, seed: int | None = None) -> None:
    """Generate the preset's synthetic set (``seed``: another seed's) into ``root`` unless a
    current one is there."""
    from train.dagm import DagmError
    from train.synth import stale_set

    if root.is_dir() and any(root.glob("Class*")):
        # a set another generator version wrote must not pass for this one
        why = stale_set(root, p.synth_version)
        if why:
            raise DagmError(why)
        return
    from pyinspect.backends.base import usable_cpus
    from train.synth import synthesize

    seed = p.synth_seed if seed is None else seed
    print(f"generating synthetic DAGM v{p.synth_version} into {root} (seed {seed})", flush=True)
    # every image is a pure function of its seed and index: the worker count changes no pixel
    synthesize(
        root,
        good=p.synth_good,
        defective=p.synth_defective,
        seed=seed,
        workers=max(1, usable_cpus()),
        progress=False,
        version=p.synth_version,
    )


def teacher_kwargs(p: Preset, init: str) -> dict[str, Any]:
    kw = dict(p.teacher_kwargs)
    if p.teacher_arch != "student":
        kw["init"] = init
    return kw


def cpu_model() -> str | None:
    """The CPU's model name (``/proc/cpuinfo``), which ``platform.processor()`` leaves empty on
    Linux."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def measure_latency(model_path: Path, records: list[Any], frames: int) -> dict[str, Any]:
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
    path = insp.backend_name + (" + student runner" if insp.runner == "student" else "")
    insp.close()
    return {
        "median_ms": float(np.median(times)),
        "mean_ms": float(np.mean(times)),
        "frames": len(times),
        "path": path,
    }


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


def jsonable(obj: Any) -> Any:
    """Dataclasses, tuples and dicts as plain JSON values."""
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "__dataclass_fields__"):
        return jsonable(obj.__dict__)
    return obj


def without_summary(restarts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "summary"} for r in restarts]


# --------------------------------------------------------------------------- open a run
def open_run(p: Preset, out: Path, *, threads: int, device: str) -> Run:
    """Data, splits and ``results.json`` (read when it exists) of a run into ``out``."""
    import torch

    from train.dagm import DagmError
    from train.evaluate import load_split
    from train.models import device_name, resolve_device
    from train.synth import read_recipe

    dev = resolve_device(device)
    torch.set_num_threads(threads)
    t_start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    root = Path(p.data_root.format(out=out))
    stage = Stage(0.0)
    stage("data")
    ensure_data(p, root)
    train_recs = load_split(root, "train", p.seed)
    test_recs = load_split(root, "test", p.seed)
    sub_recs = load_split(root, "test", p.seed, limit=p.eval_images)
    stage.record("data", time.perf_counter() - t_start)
    print(
        f"   {len(train_recs)} train / {len(test_recs)} test images; intermediate evals on "
        f"{len(sub_recs)}",
        flush=True,
    )
    stage.estimate = estimate_seconds(
        p,
        SEC_TEACHER_STEP.get(p.teacher_arch, 1.0),
        SEC_STUDENT_STEP,
        SEC_EVAL_PATCH.get(p.teacher_arch, 0.01),
        len(test_recs),
        len(train_recs),
    )
    results_path = out / "results.json"
    results: dict[str, Any] = json.loads(results_path.read_text()) if results_path.is_file() else {}
    machine = {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpu": cpu_model(),
        "torch_threads": threads,
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "device": device_name(dev),
    }
    fingerprint = (read_recipe(root) or {}).get("fingerprint")  # ensure_data checked it
    recorded = (results.get("data") or {}).get("fingerprint")
    if recorded and fingerprint and recorded != fingerprint:
        msg = (
            f"{out} holds a run on other data (generator fingerprint {recorded}; {root} has "
            f"{fingerprint}): its checkpoints and patch caches do not fit; use another --out"
        )
        raise DagmError(msg)
    config = results.get("config")
    share = (config or {}).get("good_grid_share", 0.0)  # a run before the option: the paper's
    if config is not None and share != p.good_grid_share:
        msg = (
            f"{out} holds a run whose good patches were sampled with grid share {share}, not "
            f"{p.good_grid_share}: its checkpoints and patch caches do not fit; use another --out"
        )
        raise DagmError(msg)
    if p.defect_offsets_seed is not None and read_recipe(root) is None:
        msg = (
            f"defect offsets are chosen on a fresh synthetic set of the training generator, but"
            f" {root} was not written by train.synth: run without --defect-offsets-seed"
        )
        raise DagmError(msg)
    record_other_machine(results, machine)
    results.update(
        {
            "preset": p.name,
            "config": jsonable(p.__dict__),
            "machine": machine,
            "data": {
                "root": str(root),
                "train_images": len(train_recs),
                "test_images": len(test_recs),
                "split_seed": p.seed,
                "fingerprint": fingerprint,
            },
            "reused_stages": [],
        }
    )
    for key in ("teachers", "students", "timings"):
        results.setdefault(key, {})
    return Run(
        preset=p,
        out=out,
        root=root,
        threads=threads,
        device=dev,
        train_recs=train_recs,
        test_recs=test_recs,
        sub_recs=sub_recs,
        results=results,
        stage=stage,
        t_start=t_start,
    )


# --------------------------------------------------------------------------- teachers
def teacher_stage(run: Run, tr: TeacherRun) -> None:
    """Train (or reuse) one teacher and evaluate it on the test split (or its first subset)."""
    from train.evaluate import load_split
    from train.fit import FitConfig, fit, log_iters, summary_from_checkpoint
    from train.models import checkpoint_meta
    from train.torchdata import grid_tag, patch_set

    p, results = run.preset, run.results
    run.stage(f"teacher {tr.name} ({p.teacher_arch}, init {tr.init}, {tr.patches}, {tr.iters} it)")
    t0 = time.perf_counter()
    ck = run.ckdir / f"teacher-{tr.name}.pt"
    x, y = patch_set(
        tr.patches,
        run.train_recs,
        p.seed,
        run.out / "data" / f"{tr.patches}-{p.seed}{grid_tag(p.good_grid_share)}",
        max_patches=p.aug_max_patches_teacher if tr.patches == "aug" else None,
        grid_share=p.good_grid_share,
    )
    cfg = FitConfig(
        arch=p.teacher_arch,
        arch_kwargs=teacher_kwargs(p, tr.init),
        iters=tr.iters,
        lr=p.teacher_lr,
        eval_at=log_iters(tr.iters, p.eval_points),
        seed=p.seed,
        threads=run.threads,
        device=str(run.device),
    )
    recorded = results["teachers"].get(tr.name) or {}
    done = ck.is_file() and checkpoint_meta(ck).get("iteration") == tr.iters
    if done:  # the recorded summary, unless it belongs to another iteration budget
        fit_rec = recorded.get("fit") or {}
        summary = fit_rec if fit_rec.get("iterations") == tr.iters else summary_from_checkpoint(ck)
        run.reused.append(f"teacher-{tr.name}-fit")
    else:
        summary = fit(
            cfg,
            x,
            y,
            run.sub_recs,
            ck,
            run.logdir / f"teacher-{tr.name}.jsonl",
            run=f"teacher-{tr.name}",
            meta={"preset": p.name, "seed": p.seed},
        )
        run.stage.record(f"teacher-{tr.name}-fit", time.perf_counter() - t0)
    if summary.get("sec_per_iter"):
        later = p.teachers[p.teachers.index(tr) + 1 :]
        run.stage.estimate = (time.perf_counter() - run.stage.t0) + estimate_seconds(
            p,
            summary["sec_per_iter"],
            SEC_STUDENT_STEP,
            SEC_EVAL_PATCH.get(p.teacher_arch, 0.01),
            len(run.test_recs),
            len(run.train_recs),
            teachers=later,
        )
    entry = {
        "fit": summary,
        "init": tr.init,
        "patches": tr.patches,
        "train_patches": len(x),
        "arch": p.teacher_arch,
    }
    if (
        done
        and recorded.get("test_is_full")
        and (recorded.get("fit") or {}).get("iterations") == tr.iters
        and recorded.get("train_patches") == len(x)
    ):
        # the same checkpoint is already evaluated on the full split
        print(
            f"   teacher {tr.name}: full test evaluation reused "
            f"({100 * recorded['test']['accuracy']:.2f}%)",
            flush=True,
        )
        run.reused.append(f"teacher-{tr.name}-eval")
        return
    first = p.teacher_test_images is not None and p.teacher_test_images < len(run.test_recs)
    recs = (
        load_split(run.root, "test", p.seed, limit=p.teacher_test_images)
        if first
        else run.test_recs
    )
    evaluate_teacher(run, tr.name, recs, entry)


def evaluate_teacher(run: Run, name: str, recs: list[Any], entry: dict[str, Any]) -> None:
    """Table 2/3 numbers of one teacher on ``recs``, into ``results['teachers'][name]``."""
    import torch

    from train.evaluate import evaluate_model
    from train.models import count_parameters, load_checkpoint, normalization

    run.stage(f"teacher {name}: test evaluation ({len(recs)} of {len(run.test_recs)} images)")
    t0 = time.perf_counter()
    model, _ = load_checkpoint(run.ckdir / f"teacher-{name}.pt")
    res = evaluate_model(
        model.to(run.device, memory_format=torch.channels_last),
        recs,
        *normalization(run.preset.teacher_arch),
        progress=True,
        desc=name,
    )
    run.stage.record(f"teacher-{name}-eval-{len(recs)}", time.perf_counter() - t0)
    m = res.metrics()
    print(
        f"   teacher {name}: accuracy {100 * m['accuracy']:.2f}% on {len(recs)} images "
        f"(convergence at {entry['fit'].get('convergence_iteration')} it)",
        flush=True,
    )
    run.results["teachers"][name] = {
        **entry,
        "test": m,
        "test_is_full": len(recs) == len(run.test_recs),
        "parameters": count_parameters(model),
    }
    run.save()


def full_teacher_evaluations(run: Run) -> None:
    """Teachers first evaluated on a subset (so the student ships sooner) get the full split."""
    for tr in run.preset.teachers:
        entry = run.results["teachers"].get(tr.name)
        if entry is not None and not entry.get("test_is_full"):
            evaluate_teacher(run, tr.name, run.test_recs, entry)


# --------------------------------------------------------------------------- students
def _restart(
    run: Run, index: int, n: int, name: str, key: dict[str, Any], teacher: str, logits: np.ndarray
) -> tuple[dict[str, Any], bool]:
    """Distil (or reuse) restart ``index`` of ``n``; its record and whether it was trained."""
    from train.distill import distill
    from train.models import checkpoint_meta

    seed = run.preset.seed + index
    rrun = name if n == 1 else f"{name}-r{index}"
    rck = run.ckdir / f"{rrun}.pt"
    rkey = key if n == 1 else {**key, "seed": seed}
    trained = not rck.is_file() or checkpoint_meta(rck).get("distill_key") != rkey
    if trained:
        run.stage(f"distil {rrun} (seed {seed})")
        x, _ = run.aug_patches()
        distill(
            x,
            logits,
            run.sub_recs,
            rck,
            run.logdir / f"{rrun}.jsonl",
            run.distill_config(seed=seed),
            labels=run.hard_labels(),
            run=rrun,
            meta={"preset": run.preset.name, "teacher": teacher, "distill_key": rkey},
        )
    meta = checkpoint_meta(rck)
    return {
        "seed": seed,
        "checkpoint": rck.name,
        "final_loss": (meta.get("summary") or {}).get("final_loss"),
        "summary": meta.get("summary") or {},
        "device": meta.get("device"),
    }, trained


def student_stage(run: Run, tname: str) -> None:
    """Distil the preset's student from teacher ``tname`` (restarts: the lowest final Eq. 1
    loss is kept) and evaluate it on the test split."""
    import torch

    from train.distill import checkpoint_iteration, teacher_logits
    from train.evaluate import evaluate_model
    from train.models import checkpoint_meta, count_parameters, load_checkpoint, normalization

    p = run.preset
    run.stage(f"distil student {p.student_widths} from teacher {tname}")
    t0 = time.perf_counter()
    x, _ = run.aug_patches()
    tck = run.ckdir / f"teacher-{tname}.pt"
    logits = teacher_logits(tck, x, run.logits_cache(tck), device=str(run.device))
    sck = run.ckdir / f"student-{tname}.pt"
    name = f"student-{tname}"
    key = distill_key(p, checkpoint_iteration(tck), len(x))
    distilled = False
    if sck.is_file() and checkpoint_meta(sck).get("distill_key") == key:
        # the checkpoint's own summary; results.json may describe another student
        meta = checkpoint_meta(sck)
        summary, restarts = meta.get("summary") or {}, meta.get("restarts") or []
    else:
        # each restart is its own checkpoint (reused when its key matches), so an interrupted
        # run keeps the restarts it finished
        n = max(1, p.distill_restarts)
        restarts = []
        for i in range(n):
            record, trained = _restart(run, i, n, name, key, f"teacher-{tname}", logits)
            restarts.append(record)
            distilled = distilled or trained
        if n > 1:  # every restart's test accuracy, for the record (not for the choice)
            for r in restarts:
                rmodel, _ = load_checkpoint(run.ckdir / r["checkpoint"])
                r["test_accuracy"] = evaluate_model(
                    rmodel.to(run.device), run.test_recs, *normalization("student")
                ).accuracy
        best = pick_restart([r["final_loss"] for r in restarts])
        for i, r in enumerate(restarts):
            r["chosen"] = i == best
        blob = torch.load(
            run.ckdir / restarts[best]["checkpoint"], map_location="cpu", weights_only=False
        )
        blob["meta"].update(
            {"distill_key": key, "run": name, "restarts": without_summary(restarts)}
        )
        summary = blob["meta"].get("summary") or {}
        torch.save(blob, sck)
    if len(restarts) > 1:
        print(
            "   restarts (seed, final Eq. 1 loss, test accuracy): "
            + ", ".join(
                f"({r['seed']}, {r['final_loss']}, {100 * r.get('test_accuracy', float('nan')):.2f}"
                " %)" + (" chosen" if r["chosen"] else "")
                for r in restarts
            ),
            flush=True,
        )
    offsets = defect_offsets_stage(run, sck)
    model, _ = load_checkpoint(sck)
    res = evaluate_model(
        model.to(run.device), run.test_recs, *normalization("student"), progress=True, desc=name
    )
    m = res.metrics()
    print(f"   student from {tname}: accuracy {100 * m['accuracy']:.2f}%", flush=True)
    run.results["students"][tname] = {
        "distill": summary,
        "test": m,
        "parameters": count_parameters(model),
        "widths": list(p.student_widths),
        "aug_patches": len(x),
        "seed": checkpoint_meta(sck).get("seed"),
        "restarts": without_summary(restarts),
    }
    if offsets is not None:
        run.results["students"][tname]["defect_offsets"] = offsets
    if distilled:
        run.stage.record(name, time.perf_counter() - t0)
    else:
        run.reused.append(name)
    run.save()


def defect_offsets_stage(run: Run, sck: Path) -> dict[str, Any] | None:
    """Choose per-texture defect offsets (``train.defect_offsets``) for the student at ``sck`` on
    a fresh synthetic set (seed ``defect_offsets_seed``) and fold them into its checkpoint. The
    record (offsets, calibration errors before and after, test accuracy without them, the bias
    they replaced) goes into the checkpoint's meta: a resumed run reuses it, and other settings
    (or none: ``defect_offsets_seed=None``) start again from the bias before any offsets."""
    import torch

    from train.dagm import load_dagm
    from train.defect_offsets import OFFSET_GRID, choose_offsets, fold_offsets
    from train.evaluate import CLASS_DEFECTIVE, CLASS_TEXTURE, evaluate_model, grid_logits
    from train.models import load_checkpoint, normalization, save_checkpoint

    p = run.preset
    blob = torch.load(sck, map_location="cpu", weights_only=False)
    done = blob["meta"].get("defect_offsets")
    key = None
    if p.defect_offsets_seed is not None:
        key = {
            "seed": p.defect_offsets_seed,
            "good": p.synth_good,
            "defective": p.synth_defective,
            "version": p.synth_version,
            "grid": [float(OFFSET_GRID[0]), float(OFFSET_GRID[-1]), len(OFFSET_GRID)],
        }
    if done is None and key is None:
        return None
    if done is not None and done.get("key") == key:
        return dict(done)
    model, _ = load_checkpoint(sck)
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    if done is not None:  # offsets of other settings (or of none): back to the distilled bias
        with torch.no_grad():
            last.bias.copy_(torch.as_tensor(done["bias_before"], dtype=last.bias.dtype))
    meta = {k: v for k, v in blob["meta"].items() if k != "defect_offsets"}
    if key is None:
        save_checkpoint(
            sck, model, blob["arch"], blob["arch_kwargs"], blob.get("init_state_dict"), meta
        )
        return None
    run.stage(f"defect offsets for {sck.stem} on a fresh synthetic set (seed {key['seed']})")
    t0 = time.perf_counter()
    bias_before = last.bias.detach().tolist()
    root = run.out / "data" / f"calibration-v{p.synth_version}-s{p.defect_offsets_seed}"
    ensure_data(p, root, seed=p.defect_offsets_seed)
    mean, std = normalization("student")
    model = model.to(run.device)
    logits, labels = grid_logits(model, list(load_dagm(root)), mean, std, progress=True)
    without = evaluate_model(model, run.test_recs, mean, std).metrics()
    offsets, record = choose_offsets(logits, labels, CLASS_TEXTURE, CLASS_DEFECTIVE)
    fold_offsets(model, offsets, CLASS_TEXTURE, CLASS_DEFECTIVE)
    record = {
        "key": key,
        "offsets": [round(float(v), 6) for v in offsets],  # grid values, without float32 noise
        **record,
        "calibration_set": str(root),
        "test_without_offsets": without,
        "bias_before": bias_before,
    }
    meta["defect_offsets"] = jsonable(record)
    save_checkpoint(
        sck, model.cpu(), blob["arch"], blob["arch_kwargs"], blob.get("init_state_dict"), meta
    )
    run.stage.record(f"defect offsets {sck.stem}", time.perf_counter() - t0)
    print(
        f"   defect offsets {', '.join(f'{v:g}' for v in offsets)}: calibration errors"
        f" {record['errors_before']} -> {record['errors_after']} of {record['images']} images;"
        f" test accuracy without them {100 * without['accuracy']:.2f}%",
        flush=True,
    )
    return meta["defect_offsets"]


# --------------------------------------------------------------------------- export
def export_stage(run: Run) -> None:
    """Export the shipped student (rgb + folded), check train/deploy parity, time it."""
    from train.evaluate import evaluate_inspector, evaluate_model, parity
    from train.export import export
    from train.models import load_checkpoint, normalization

    p, results = run.preset, run.results
    run.stage(f"export student-{p.ship} (rgb + folded) and check train/deploy parity")
    t0 = time.perf_counter()
    sck = run.ckdir / f"student-{p.ship}.pt"
    student = results["students"][p.ship]
    provenance = {
        "preset": p.name,
        "seed": p.seed,
        "distill_seed": student.get("seed"),
        "accuracy": student["test"]["accuracy"],
        "dataset": f"{run.root} (test 20%, seed {p.seed}, {len(run.test_recs)} images)",
    }
    exp: dict[str, Any] = {}
    for variant, folded in (("rgb", False), ("folded", True)):
        path = run.out / "models" / f"student-{p.ship}{'' if folded else '-rgb'}.onnx"
        exp[variant] = export(sck, path, folded=folded, provenance=provenance)
        record_guard_frames(run, Path(exp[variant]["onnx"]))
    model, _ = load_checkpoint(sck)
    torch_res = evaluate_model(model.to(run.device), run.test_recs, *normalization("student"))
    dep = {}
    for variant in ("folded", "rgb"):
        r = evaluate_inspector(exp[variant]["onnx"], run.test_recs, progress=True)
        dep[variant] = {"accuracy": r.accuracy, "parity": parity(torch_res, r)}
    lat = measure_latency(Path(exp["folded"]["onnx"]), run.test_recs, p.latency_frames)
    lat_rgb = measure_latency(Path(exp["rgb"]["onnx"]), run.test_recs, p.latency_frames)
    results["export"] = {
        "files": exp,
        "inspector": dep,
        "latency_folded": lat,
        "latency_rgb": lat_rgb,
    }
    if p.teachers:
        results["export"]["teacher_torch_ms_per_frame"] = torch_latency(
            run.ckdir / f"teacher-{p.teachers[0].name}.pt", p.latency_frames, run.threads
        )
    run.stage.record("export", time.perf_counter() - t0)
    print(
        f"   deploy parity: {dep['folded']['parity']['mismatches']} mismatches (folded), "
        f"{dep['rgb']['parity']['mismatches']} (rgb); {lat['median_ms']:.2f} ms/frame",
        flush=True,
    )
    run.save()


def record_guard_frames(run: Run, model: Path) -> Path:
    """Beside ``model``, what the runtime's precision guard checks it on: synthetic frames of
    the generator version it was trained on, or, for a real DAGM copy, its test images."""
    from pyinspect.precision_guard import write_guard_frames, write_synthetic_guard
    from train.synth import read_recipe

    recipe = read_recipe(run.root)
    if recipe is not None:
        return write_synthetic_guard(model, version=recipe["version"])
    return write_guard_frames(model, [rec.path for rec in run.test_recs], split="test")


# --------------------------------------------------------------------------- compression sweep
def sweep_stage(run: Run) -> None:
    """Fig. 10: a short-trained student of every sweep width from every sweep teacher."""
    from train.distill import checkpoint_iteration, distill, teacher_logits
    from train.evaluate import evaluate_model
    from train.models import count_parameters, load_checkpoint, normalization

    p, results = run.preset, run.results
    sweep = results.setdefault("sweep", {})
    x, _ = run.aug_patches()
    for tname in p.sweep_teachers:
        tck = run.ckdir / f"teacher-{tname}.pt"
        cache = run.logits_cache(tck)
        cached = cache.is_file()
        t0 = time.perf_counter()
        logits = teacher_logits(tck, x, cache, device=str(run.device))
        if not cached:  # a cached set keeps the time it took when it was computed
            run.stage.record(f"sweep-logits-{tname}", time.perf_counter() - t0)
        t_it = checkpoint_iteration(tck)
        settings = {
            "teacher_iteration": t_it,
            "patches": len(x),
            "orientations": list(p.aug_orientations),
            "epochs": p.sweep_epochs,
            "c1_init": p.student_c1_init,
        }
        if any(v != 1 for v in p.aug_texture_repeat):
            settings["texture_repeat"] = list(p.aug_texture_repeat)
        for c in p.sweep:
            key = f"{tname}:{'x'.join(map(str, c))}"
            point = sweep.get(key, {})
            if {
                k: point.get(k, "random" if k == "c1_init" else None) for k in settings
            } == settings:
                run.reused.append(f"sweep-{key}")
                continue
            run.stage(f"sweep {key}")
            t0 = time.perf_counter()
            name = f"sweep-{tname}-{'x'.join(map(str, c))}"
            distill(
                x,
                logits,
                run.sub_recs,
                run.ckdir / f"{name}.pt",
                run.logdir / f"{name}.jsonl",
                run.distill_config(widths=c, epochs=p.sweep_epochs),
                labels=run.hard_labels(),
                run=name,
                progress=False,
            )
            model, _ = load_checkpoint(run.ckdir / f"{name}.pt")
            r = evaluate_model(model.to(run.device), run.test_recs, *normalization("student"))
            sweep[key] = {
                "teacher": tname,
                "widths": list(c),
                "accuracy": r.accuracy,
                "parameters": count_parameters(model),
                **settings,
            }
            run.stage.record(f"sweep-{key}", time.perf_counter() - t0)
            print(f"   sweep {key}: {100 * r.accuracy:.2f}%", flush=True)
            run.save()


# --------------------------------------------------------------------------- trials
def trial_accuracies(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The test accuracy of every teacher and student of one trial's results."""
    return {
        role: {
            name: r["test"]["accuracy"]
            for name, r in results.get(role, {}).items()
            if r.get("test")
        }
        for role in ("teachers", "students")
    }


def trials_stage(run: Run, run_trial: Any) -> None:
    """The preset's other 80/20 trials (split seeds seed+1, ...), each a whole run without the
    sweep in ``trials/seed-<seed>/`` on the same data; ``results['trials']`` collects every
    trial's accuracies, the report their mean ± standard error. ``run_trial(preset, out)``
    runs one (``reproduce.run_preset``)."""
    p = run.preset
    per_trial = [trial_accuracies(run.results)]
    seeds = [p.seed]
    for k in range(1, p.trials):
        seed = p.seed + k
        trial = dataclasses.replace(p, seed=seed, trials=1, sweep=(), data_root=str(run.root))
        res = run_trial(trial, run.out / "trials" / f"seed-{seed}")
        per_trial.append(trial_accuracies(res))
        seeds.append(seed)
    run.results["trials"] = {
        "seeds": seeds,
        **{
            role: {
                name: [t[role][name] for t in per_trial if name in t[role]]
                for name in per_trial[0][role]
            }
            for role in ("teachers", "students")
        },
    }
    run.save()
