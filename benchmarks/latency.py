"""Teacher vs student latency on every backend here, beside the paper's Table 5.

The paper (Kim, Noh & Park 2020, Table 5) times one image = a batch of 9 patches on a TITAN Xp:
teacher (VGG16) 57.43 ms, student (4, 8, 16, 4, 4) 1.46 ms, a 39.3x speed-up. This script measures

* pure inference at batch 9 (the paper's measurement) and batch 1: ``backend.infer`` on a filled
  input buffer;
* end to end per frame: a 512x512 uint8 frame -> tile -> infer -> vote -> ``InspectionResult``
  through ``Inspector.run`` (and through the whole-frame C++ paths when they are built: the native
  OpenVINO runner and the direct student engine), with the time per stage and the Python overhead
  (wall time minus the stages);

for the teacher, the student (the paper's 3-channel network) and the folded 1-channel student
(the deployed variant), on every available backend (ONNX Runtime always). Each row reports the
median, p90, p99 and min over an adaptive number of runs after a warm-up (>= 200 for students,
>= 10 for the teacher; about ``--budget`` seconds each), the rows of one model and backend timed in
interleaved rounds so that a change in load hits them alike; on a GPU the time comes from CUDA
events. ``--clock cpu --threads 1`` measures CPU time instead, for a machine shared with others.

    .venv/bin/python benchmarks/latency.py                     # exports the models if absent
    .venv/bin/python benchmarks/latency.py --backend onnxruntime --runs 50

Models missing from ``benchmarks/models/`` are exported first with random weights (timing does
not depend on the weights; the output says so). Writes ``benchmarks/results/latency-<host>-
<date>.json`` (or ``--json PATH``) with a bar chart (``.png``) and the Markdown report (``.md``)
beside it, and prints the report.
"""

from __future__ import annotations

import argparse
import functools
import gc
import math
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _machine, when imported from tests
import _machine

from pyinspect.errors import PyInspectError

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "benchmarks" / "models"
SHIPPED = ROOT / "models" / "student.onnx"
PAPER: dict[str, Any] = {
    "source": "Kim, Noh & Park 2020, Table 5",
    "device": "NVIDIA TITAN Xp",
    "batch": 9,
    "teacher_ms": 57.43,
    "student_ms": 1.46,
    "speedup": 39.3,
}
TARGET_E2E_OVER_PURE = 1.15
CLOCKS = {
    "wall": "wall time (CUDA events on a GPU)",
    "cpu": "process CPU time, all threads (robust to other jobs; equals the work at 1 thread)",
}
MIN_RUNS = {"teacher": 10, "student": 200}
MAX_RUNS = 20_000
ROUNDS = 10  # interleaved rounds per model and backend
RANDOM_NOTE = "random weights (timing only)"
NATIVE = "openvino-native"  # pyinspect.backends.openvino_native: C++ tile -> OpenVINO -> vote
FAST = "fast-student"  # Inspector(engine="student"): the direct C++ student engine (students only)
FRAME_RUNNERS = (NATIVE, FAST)  # whole-frame paths: end to end only, no separate inference


@dataclass(frozen=True)
class Model:
    """One network to time: ``role`` is teacher or student (it sets the minimum run count)."""

    key: str
    role: str
    title: str
    path: Path
    weights: str
    parameters: int | None = None
    channels: int = 3


@dataclass
class Stats:
    """Milliseconds over ``runs`` timed calls."""

    runs: int
    median: float
    p90: float
    p99: float
    min: float
    mean: float

    @staticmethod
    def of(ms: np.ndarray) -> Stats:
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        return Stats(len(ms), float(p50), float(p90), float(p99), float(ms.min()), float(ms.mean()))


@dataclass
class Row:
    model: str
    backend: str
    kind: str  # "infer" (pure, at ``batch``) or "e2e" (one 512x512 frame)
    batch: int
    device: str
    timer: str
    stats: Stats
    stages: dict[str, float] = field(default_factory=dict)  # e2e: median tile/infer/vote/overhead


# ---- models ------------------------------------------------------------------------------------
def ensure_models(folder: Path, *, teacher: bool, log: Callable[[str], None]) -> list[Model]:
    """The benchmark's models, exported with random weights when absent (ONNX + sidecar + .pt2)."""
    wanted = [
        ("student", "student", "Student (4,8,16,4,4)", "student.onnx", False),
        # not student_folded.onnx: benchmarks/fast_cpu.py exports its own under that name
        ("student-folded", "student", "Student, folded 1-ch", "student_1ch.onnx", True),
    ]
    if teacher:
        wanted.insert(0, ("teacher", "teacher", "Teacher VGG16", "teacher.onnx", False))
    models = []
    for key, role, title, name, folded in wanted:
        path = folder / name
        if not (path.is_file() and path.with_name(name + ".json").is_file()):
            log(f"exporting {path} ({RANDOM_NOTE}) ...")
            t0 = time.perf_counter()
            export_random(path, arch="vgg16" if role == "teacher" else "student", folded=folded)
            log(f"  done in {time.perf_counter() - t0:.0f} s")
        models.append(_model_entry(key, role, title, path))
    if SHIPPED.is_file() and SHIPPED.with_name(SHIPPED.name + ".json").is_file():
        models.append(_model_entry("shipped", "student", "Shipped models/student.onnx", SHIPPED))
    return models


def _model_entry(key: str, role: str, title: str, path: Path) -> Model:
    from pyinspect.spec import ModelSpec

    spec = ModelSpec.for_model(path)
    prov = spec.provenance
    if prov.preset == "benchmark-random":
        weights = RANDOM_NOTE
    else:
        weights = "trained" if prov.accuracy is not None else "weights of unknown origin"
    return Model(key, role, title, path, weights, prov.parameters, spec.input.channels)


def export_random(path: Path, *, arch: str, folded: bool) -> None:
    """Export ``arch`` with seeded random weights through ``train.export`` (the project's exporter,
    parity-checked against PyTorch), plus ``<name>.pt2`` for the torch backend."""
    import torch

    from train.export import export, fold
    from train.models import build_model, save_checkpoint

    torch.manual_seed(0)
    kwargs: dict[str, Any] = {"init": "scratch"} if arch == "vgg16" else {"c": [4, 8, 16, 4, 4]}
    model = build_model(arch, **kwargs).eval()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / f"{arch}.pt"
        meta = {"preset": "benchmark-random", "seed": 0}
        save_checkpoint(ckpt, model, arch, kwargs, None, meta)
        export(ckpt, path, folded=folded, provenance={"notes": f"{arch}, {RANDOM_NOTE}"})
    net = fold(model, arch) if folded else model
    example = torch.zeros(2, 1 if folded else 3, 224, 224)
    batch = torch.export.Dim("batch", min=1, max=1024)
    with torch.no_grad():
        program = torch.export.export(net, (example,), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path.with_suffix(".pt2")))
    del program, model, net
    gc.collect()


def user_model(key: str, role: str, path: str) -> Model:
    p = Path(path)
    return _model_entry(key, role, f"{role.title()} {p.name}", p)


# ---- timing ------------------------------------------------------------------------------------
Timer = Callable[[Callable[[], Any]], tuple[float, Any]]  # fn -> (milliseconds, fn's value)


def cuda_timer(device: str) -> Timer | None:
    """Milliseconds of ``fn`` measured with CUDA events on ``device``, or None off the GPU."""
    if not device.startswith("cuda"):
        return None
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None

    def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        value = fn()
        end.record()
        end.synchronize()
        return float(start.elapsed_time(end)), value

    return timed


def cpu_ms(fn: Callable[[], Any]) -> tuple[float, Any]:
    """CPU time of the whole process (all its threads): robust to other jobs on a shared machine,
    and equal to the work done when there is one compute thread (``--threads 1``)."""
    t0 = time.process_time_ns()
    value = fn()
    return (time.process_time_ns() - t0) * 1e-6, value


def wall_ms(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter_ns()
    value = fn()
    return (time.perf_counter_ns() - t0) * 1e-6, value


def plan_runs(est_ms: float, role: str, runs: int | None, budget_s: float) -> int:
    """``--runs`` if given, else enough runs to fill ``budget_s`` (at least the role's minimum)."""
    if runs is not None:
        return runs
    want = math.ceil(budget_s * 1000.0 / max(est_ms, 1e-3))
    return int(min(MAX_RUNS, max(MIN_RUNS[role], want)))


@dataclass
class Task:
    """One row to measure: ``fn`` is timed ``n`` times; an e2e ``fn`` returns its result."""

    kind: str
    batch: int
    fn: Callable[[], Any]
    n: int = 0
    ms: list[float] = field(default_factory=list)
    stages: list[tuple[float, float, float]] = field(default_factory=list)


def measure(tasks: list[Task], timer: Timer, role: str, args: argparse.Namespace) -> None:
    """Warm every task up, size its run count, then time the tasks in interleaved rounds, so a
    change in machine load hits them alike (the e2e / pure ratio compares rows of one round)."""
    for t in tasks:
        n_min = 1 if args.runs is not None and args.runs < 10 else (2 if role == "teacher" else 10)
        t_end = time.perf_counter() + (0.0 if role == "teacher" else 0.5)
        warm: list[float] = []
        while len(warm) < n_min or (time.perf_counter() < t_end and len(warm) < 500):
            warm.append(timer(t.fn)[0])
        t.n = plan_runs(float(np.median(warm[len(warm) // 2 :])), role, args.runs, args.budget)
    rounds = max(1, min(ROUNDS, *(t.n for t in tasks)))
    for r in range(rounds):
        for t in tasks:
            for _ in range(t.n * (r + 1) // rounds - t.n * r // rounds):
                ms, value = timer(t.fn)
                t.ms.append(ms)
                if t.kind == "e2e":
                    if value.error is not None:
                        msg = f"end-to-end run failed: {value.error}"
                        raise RuntimeError(msg)
                    tm = value.timings
                    t.stages.append((tm.tile_ms, tm.infer_ms, tm.vote_ms))


def _row(model: Model, backend: str, device: str, timer_name: str, t: Task,
         args: argparse.Namespace) -> Row:
    ms = np.array(t.ms)
    row = Row(model.key, backend, t.kind, t.batch, device, timer_name, Stats.of(ms))
    if t.kind == "e2e":
        stages = np.array(t.stages)
        med = np.median(stages, axis=0)
        # overhead = wall time in no stage; CPU time and the (wall-time) stages do not subtract
        overhead = float(np.median(ms - stages.sum(axis=1))) if args.clock == "wall" else math.nan
        row.stages = {"tile_ms": float(med[0]), "infer_ms": float(med[1]),
                      "vote_ms": float(med[2]), "overhead_ms": overhead}
    return row


def host_timer(args: argparse.Namespace) -> tuple[Timer, str]:
    return (cpu_ms, "process_time") if args.clock == "cpu" else (wall_ms, "perf_counter")


# ---- one model on one backend --------------------------------------------------------------------
def bench_frame(seed: int = 0) -> np.ndarray:
    """A 512x512 uint8 gray frame (DAGM's size and format); content does not change timing."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (512, 512), dtype=np.uint8)


def bench_backend(model: Model, backend: str, frame: np.ndarray, args: argparse.Namespace
                  ) -> list[Row]:
    """Pure inference at batch 9 and 1 (``backend.infer`` on a buffer tiled once from
    ``frame``) and ``Inspector.run(frame)``, interleaved."""
    from pyinspect import Inspector
    from pyinspect.tiling import tile_into

    with Inspector(model.path, backend=backend, threads=args.threads) as insp:
        b = insp.backend
        device = str(getattr(b, "device", "cpu"))
        gpu_timer = cuda_timer(device)
        timer, timer_name = (gpu_timer, "cuda-event") if gpu_timer else host_timer(args)
        spec = insp.spec
        boxes = insp.boxes(*frame.shape[:2])
        mean, std = tuple(spec.normalization.mean), tuple(spec.normalization.std)

        tasks = [Task("infer", n, functools.partial(b.infer, n)) for n in (9, 1)
                 if n <= insp.max_batch]
        tasks.append(Task("e2e", len(boxes), functools.partial(insp.run, frame)))
        # infer(1) reads row 0 of the same buffer that infer(9) reads; Inspector.run re-tiles
        # the same frame into it, so every task sees the same input.
        tile_into(frame, b.input_buffer(len(boxes)), boxes, mean, std)
        measure(tasks, timer, model.role, args)
        return [_row(model, backend, device, timer_name, t, args) for t in tasks]


def bench_runner(path: str, model: Model, frame: np.ndarray, args: argparse.Namespace
                 ) -> list[Row]:
    """A whole-frame runner: one C++ call per frame (tile/read -> infer -> vote)."""
    runner: Any
    if path == NATIVE:
        from pyinspect.backends.openvino_native import native_runner

        runner = native_runner(model.path, threads=args.threads, frame_shape=frame.shape[:2])
    else:  # what users get: Inspector.run dispatching gray frames to the engine
        from pyinspect import Inspector

        runner = Inspector(model.path, threads=args.threads, engine="student")
    with runner:
        timer, timer_name = host_timer(args)
        task = Task("e2e", 9, functools.partial(runner.run, frame))
        measure([task], timer, model.role, args)
        return [_row(model, path, "cpu", timer_name, task, args)]


def frame_runners() -> list[str]:
    """The whole-frame paths built into this installation."""
    found: list[str] = []
    try:
        from pyinspect.backends.openvino_native import load_native, native_available
    except ImportError:
        return found
    if native_available():
        found.append(NATIVE)
        try:
            import pyinspect.fast_student  # noqa: F401

            if load_native().student_engine_supported():
                found.append(FAST)
        except (ImportError, AttributeError):
            pass
    return found


# ---- summary -------------------------------------------------------------------------------------
def find(rows: list[Row], model: str, backend: str, kind: str, batch: int = 9) -> Row | None:
    for r in rows:
        if (r.model, r.backend, r.kind, r.batch) == (model, backend, kind, batch):
            return r
    return None


def summarise(rows: list[Row], backends: list[str]) -> dict[str, Any]:
    """Teacher/student ratios per backend, the e2e/pure check, and the best student frame."""
    ratios = {}
    for be in backends:
        t, s = find(rows, "teacher", be, "infer"), find(rows, "student", be, "infer")
        if t and s:
            ratios[be] = {
                "teacher_ms": t.stats.median,
                "student_ms": s.stats.median,
                "speedup": t.stats.median / s.stats.median,
                "meets_paper": t.stats.median / s.stats.median >= PAPER["speedup"],
            }
    overhead = []
    for r in rows:
        if r.kind != "e2e" or r.backend in FRAME_RUNNERS or r.model == "teacher":
            continue
        pure = find(rows, r.model, r.backend, "infer")
        if pure:
            ratio = r.stats.median / pure.stats.median
            overhead.append({"model": r.model, "backend": r.backend, "e2e_ms": r.stats.median,
                             "pure_b9_ms": pure.stats.median, "e2e_over_pure": ratio,
                             "meets_target": ratio <= TARGET_E2E_OVER_PURE})
    students = [r for r in rows if r.kind == "e2e" and r.model != "teacher"]
    best = min(students, key=lambda r: r.stats.median, default=None)
    return {
        "speedup_by_backend": ratios,
        "e2e_over_pure": overhead,
        "best_student_e2e": None if best is None else {
            "model": best.model, "backend": best.backend, "median_ms": best.stats.median,
            "p99_ms": best.stats.p99, "stages": best.stages,
            "vs_paper_student_ms": PAPER["student_ms"],
        },
    }


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    rows = [Row(**{**r, "stats": Stats(**r["stats"])}) for r in result["rows"]]
    titles = {k: v["title"] for k, v in result["models"].items()}
    out = [
        f"# Latency: teacher vs student ({m['host']}, {m['date']})",
        "",
        _machine.describe(m),
        "",
        "Models: " + "; ".join(
            f"{v['title']} = `{v['path']}` ({v['weights']}"
            + (f", {v['parameters']:,} parameters" if v["parameters"] else "") + ")"
            for v in result["models"].values()
        ) + ".",
        "",
        f"Clock: {CLOCKS[result['clock']]}; threads: {result['threads'] or 'physical cores'}.",
        "",
        "## Pure inference (ms per call)",
        "",
        "| model | backend | batch | median | p90 | p99 | min | runs |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r.kind == "infer":
            s = r.stats
            out.append(f"| {titles[r.model]} | {r.backend} ({r.device}) | {r.batch} | "
                       f"{_ms(s.median)} | {_ms(s.p90)} | {_ms(s.p99)} | {_ms(s.min)} | {s.runs} |")
    out += [
        "",
        "## End to end per frame (512x512 uint8 -> tile -> infer -> vote -> result), ms",
        "",
        "| model | path | median | p90 | p99 | min | tile | infer | vote | overhead | runs |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r.kind == "e2e":
            s, g = r.stats, r.stages
            path = {NATIVE: "native C++ runner (OpenVINO)", FAST: "direct C++ student engine"}.get(
                r.backend, f"Inspector.run, {r.backend}")
            out.append(
                f"| {titles[r.model]} | {path} | {_ms(s.median)} | {_ms(s.p90)} | {_ms(s.p99)} |"
                f" {_ms(s.min)} | {_ms(g['tile_ms'])} | {_ms(g['infer_ms'])} |"
                f" {_ms(g['vote_ms'])} | {_ms(g['overhead_ms'])} | {s.runs} |"
            )
    summary = result["summary"]
    ratios = summary["speedup_by_backend"]
    if ratios:
        names = list(ratios)
        out += [
            "",
            f"## Against the paper ({PAPER['source']}: batch 9, {PAPER['device']})",
            "",
            "| per image (9 patches) | paper | "
            + " | ".join(f"{n} (median)" for n in names) + " |",
            "|---|---:|" + "---:|" * len(names),
            f"| Teacher VGG16, ms | {PAPER['teacher_ms']} | "
            + " | ".join(_ms(ratios[n]["teacher_ms"]) for n in names) + " |",
            f"| Student (4,8,16,4,4), ms | {PAPER['student_ms']} | "
            + " | ".join(_ms(ratios[n]["student_ms"]) for n in names) + " |",
            f"| Speed-up | {PAPER['speedup']}x | "
            + " | ".join(f"{ratios[n]['speedup']:.1f}x" for n in names) + " |",
        ]
    out += ["", "## Targets", ""]
    for n, v in ratios.items():
        verdict = "PASS" if v["meets_paper"] else "FAIL"
        out.append(f"- {verdict}: teacher/student on {n} = {v['speedup']:.1f}x"
                   f" (paper {PAPER['speedup']}x)")
    for v in summary["e2e_over_pure"]:
        verdict = "PASS" if v["meets_target"] else "FAIL"
        out.append(f"- {verdict}: {titles[v['model']]} on {v['backend']}: end to end"
                   f" {_ms(v['e2e_ms'])} ms = {v['e2e_over_pure']:.3f} x pure batch-9 inference"
                   f" {_ms(v['pure_b9_ms'])} ms (target <= {TARGET_E2E_OVER_PURE})")
    best = summary["best_student_e2e"]
    if best:
        g = best["stages"]
        out.append(
            f"- Best student frame, end to end: {_ms(best['median_ms'])} ms median"
            f" ({titles[best['model']]}, {best['backend']}; tile {_ms(g['tile_ms'])} + infer"
            f" {_ms(g['infer_ms'])} + vote {_ms(g['vote_ms'])} + overhead"
            f" {_ms(g['overhead_ms'])} ms) vs the paper's {PAPER['student_ms']} ms (pure"
            f" inference on a {PAPER['device']} GPU)"
        )
    for s in result["skipped"]:
        out.append(f"- skipped {s['model']} on {s['backend']}: {s['reason']}")
    out += ["", f"Command: `{result['command']}`"]
    return "\n".join(out) + "\n"


def _json_safe(value: Any) -> Any:
    """NaN (a figure that does not apply) -> null, so the file is strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def _ms(v: float | None) -> str:
    if v is None or math.isnan(v):
        return "n/a"
    return f"{v:.3f}" if v < 10 else (f"{v:.1f}" if v < 1000 else f"{v:,.0f}")


def chart(result: dict[str, Any], path: Path) -> Path | None:
    """Log-scale bars of batch-9 inference per backend, next to the paper's TITAN Xp numbers."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = [r for r in result["rows"] if r["kind"] == "infer" and r["batch"] == 9]
    models = list(dict.fromkeys(r["model"] for r in rows))
    backends = list(dict.fromkeys(r["backend"] for r in rows))
    groups = [f"paper\n({PAPER['device']})", *backends]
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(groups), 4.2))
    width = 0.8 / max(1, len(models))
    for i, key in enumerate(models):
        paper = {"teacher": PAPER["teacher_ms"], "student": PAPER["student_ms"]}
        values: list[float] = [float(paper.get(key, np.nan))]
        for be in backends:
            hit = [r for r in rows if r["model"] == key and r["backend"] == be]
            values.append(float(hit[0]["stats"]["median"]) if hit else np.nan)
        xs = np.arange(len(groups)) + (i - (len(models) - 1) / 2) * width
        bars = ax.bar(xs, values, width, label=result["models"][key]["title"])
        ax.bar_label(bars, labels=[("" if np.isnan(v) else _ms(v)) for v in values], fontsize=7)
    ax.set_yscale("log")
    ax.set_xticks(np.arange(len(groups)), groups)
    ax.set_ylabel("ms per image (batch of 9 patches), log scale")
    ax.set_title(f"Pure inference, median ({result['machine']['cpu']})", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ---- main ----------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", action="append", metavar="NAME",
                    help="backend to time (repeatable; also the whole-frame C++ paths"
                         " 'openvino-native' and 'fast-student'); default: every available one")
    ap.add_argument("--runs", type=int, help="timed runs per row (default: adaptive, >= 200"
                    " for students, >= 10 for the teacher)")
    ap.add_argument("--budget", type=float, default=3.0,
                    help="seconds of timed runs per row when --runs is not given (default 3)")
    ap.add_argument("--json", type=Path, help="results file (default benchmarks/results/"
                    "latency-<host>-<date>.json; the chart goes beside it as .png)")
    ap.add_argument("--models", type=Path, default=MODELS,
                    help="folder of the exported models (default benchmarks/models)")
    ap.add_argument("--teacher", help="time this teacher model instead of exporting one")
    ap.add_argument("--student", help="time this student model instead of exporting one")
    ap.add_argument("--no-teacher", action="store_true", help="skip the teacher")
    ap.add_argument("--threads", type=int, help="inference threads (default: physical cores)")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall time (default), or process CPU time: robust to other jobs on a"
                         " shared machine, meaningful with --threads 1")
    ap.add_argument("--no-chart", action="store_true")
    args = ap.parse_args(argv)
    if args.runs is not None and args.runs < 1:
        ap.error(f"--runs must be >= 1, got {args.runs}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    from pyinspect.backends.base import list_backends

    available = list_backends(available_only=True) + frame_runners()
    backends = args.backend or available
    known = [*list_backends(), *FRAME_RUNNERS]
    unknown = [b for b in backends if b not in known]
    if unknown:
        log(f"error: unknown backend(s) {unknown}; choose from {known}")
        return 2
    if args.teacher or args.student:
        models = []
        if args.teacher and not args.no_teacher:
            models.append(user_model("teacher", "teacher", args.teacher))
        if args.student:
            models.append(user_model("student", "student", args.student))
    else:
        models = ensure_models(args.models, teacher=not args.no_teacher, log=log)
    random_models = [m.key for m in models if m.weights == RANDOM_NOTE]
    if random_models:
        log(f"note: {', '.join(random_models)} have {RANDOM_NOTE}")
    facts = _machine.machine_facts()
    frame = bench_frame()
    rows: list[Row] = []
    skipped: list[dict[str, str]] = []
    for model in models:
        for be in backends:
            label = f"{model.key} on {be}"
            if be not in available:
                skipped.append({"model": model.key, "backend": be, "reason": "not available here"})
                continue
            if be == FAST and model.role == "teacher":
                continue  # the engine runs the paper's student only
            if be == "tensorrt" and model.path.suffix == ".onnx":
                plan = model.path.with_suffix(".plan")
                if not plan.is_file():
                    reason = f"no {plan.name}; build it: `pyinspect build {model.path} -o {plan}`"
                    skipped.append({"model": model.key, "backend": be, "reason": reason})
                    continue
                target = Model(model.key, model.role, model.title, plan, model.weights,
                               model.parameters, model.channels)
            else:
                target = model
            log(f"timing {label} ...")
            t0 = time.perf_counter()
            try:
                got = bench_runner(be, target, frame, args) if be in FRAME_RUNNERS else \
                    bench_backend(target, be, frame, args)
            except PyInspectError as exc:
                skipped.append({"model": model.key, "backend": be, "reason": str(exc)})
                log(f"  skipped: {exc}")
                continue
            rows.extend(got)
            log(f"  {time.perf_counter() - t0:.1f} s: " + ", ".join(
                f"{r.kind}{'' if r.kind == 'e2e' else f'@{r.batch}'} {_ms(r.stats.median)} ms"
                for r in got))
    result: dict[str, Any] = {
        "machine": _machine.finish(facts),
        "paper": PAPER,
        "clock": args.clock,
        "threads": args.threads,
        "command": " ".join(["python benchmarks/latency.py", *(argv or sys.argv[1:])]),
        "models": {m.key: {"title": m.title, "path": _rel(m.path), "weights": m.weights,
                           "parameters": m.parameters, "channels": m.channels} for m in models},
        "rows": [asdict(r) for r in rows],
        "skipped": skipped,
        "summary": summarise(rows, [b for b in backends if b not in FRAME_RUNNERS]),
    }
    json_path = args.json or _machine.result_path("latency", facts)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    import json

    json_path.write_text(json.dumps(_json_safe(result), indent=2) + "\n")
    png = None if args.no_chart else chart(result, json_path.with_suffix(".png"))
    report = markdown(result)
    json_path.with_suffix(".md").write_text(report)
    print(report)
    log(f"wrote {json_path}, its .md" + (f" and {png}" if png else ""))
    return 0


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    raise SystemExit(main())
