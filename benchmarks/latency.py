"""Teacher vs student latency on every backend here, beside the paper's Table 5.

The paper (Kim, Noh & Park 2020, Table 5) times one image = a batch of 9 patches on a TITAN Xp:
teacher (VGG16) 57.43 ms, student (4, 8, 16, 4, 4) 1.46 ms, a 39.3x speed-up. This script measures

* pure inference at batch 9 (the paper's measurement) and batch 1: ``backend.infer`` on a filled
  input buffer;
* end to end per frame: a 512x512 uint8 frame -> tile -> infer -> vote -> ``InspectionResult``
  through ``Inspector.run`` (and through the whole-frame runners of ``pyinspect.runners``: the
  direct student runner, row ``student``, and the native OpenVINO runner, row
  ``openvino-native``), with the time per stage and the overhead: the median wall time minus
  the median of the path's own timer (``timings.total_ms``: on a runner, the native call's
  timer, so on the direct student path it is the Python side of ``Inspector.run``, goal
  ``TARGET_PYTHON_MS``);
* with ``--peers``: the direct student path against NumPy tiling + ONNX Runtime / OpenVINO and
  against the same engines on the student's whole-frame graph, at f32 and the lower precisions
  each offers on this CPU, in one interleaved run on the same frames (``benchmarks/peers.py``);

for the teacher, the student (the paper's 3-channel network) and the folded 1-channel student
(the deployed variant), on every available backend (ONNX Runtime always). Each row reports the
median, p90, p99 and min over an adaptive number of runs after a warm-up (>= 200 for students,
>= 10 for the teacher; about ``--budget`` seconds each), the rows of one model and backend timed in
interleaved rounds so that a change in load hits them alike; on a GPU the time comes from CUDA
events. ``--clock cpu --threads 1`` measures CPU time instead, for a machine shared with others.

    .venv/bin/python benchmarks/latency.py                     # exports the models if absent
    .venv/bin/python benchmarks/latency.py --backend onnxruntime --runs 50
    .venv/bin/python benchmarks/latency.py --backend student --backend onnxruntime --no-teacher
    .venv/bin/python benchmarks/latency.py --peers-only --peer-rounds 2 --peer-iters 10  # a look

Models missing from ``benchmarks/models/`` are exported first with random weights (timing does
not depend on the weights; the output says so). A runner that cannot run here (not built, CPU
without AVX2/FMA) is listed under "skipped" with the reason. Writes
``benchmarks/results/latency-<host>-<date>.json`` (or ``--json PATH``) with a bar chart (``.png``)
and the Markdown report (``.md``) beside it, and prints the report. ``benchmarks/compare_base.py``
times this tree against a base commit in interleaved blocks.
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common, when imported from tests
import common
import peers
from common import Model, fmt_ms

from pyinspect.cli import add_choice_argument
from pyinspect.errors import PyInspectError

PAPER: dict[str, Any] = {
    "source": "Kim, Noh & Park 2020, Table 5",
    "device": "NVIDIA TITAN Xp",
    "batch": 9,
    "teacher_ms": 57.43,
    "student_ms": 1.46,
    "speedup": 39.3,
}
TARGET_E2E_OVER_PURE = 1.15
TARGET_PYTHON_MS = 0.03  # the Python side of Inspector.run on the direct student path
CLOCKS = {
    "wall": "wall time (CUDA events on a GPU)",
    "cpu": "process CPU time, all threads (robust to other jobs; equals the work at 1 thread)",
}
MIN_RUNS = {"teacher": 10, "student": 200}
MAX_RUNS = 20_000
ROUNDS = 10  # interleaved rounds per model and backend
NATIVE = "openvino-native"  # pyinspect.runners.openvino_native: C++ tile -> OpenVINO -> vote
STUDENT = "student"  # pyinspect.runners.student: the direct student runner (students only)
RUNNER_TITLES = {
    NATIVE: "native OpenVINO runner (C++)",
    STUDENT: "direct student runner (C++)",
}


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
    backend: str  # a backend, or a whole-frame runner (NATIVE, STUDENT)
    kind: str  # "infer" (pure, at ``batch``) or "e2e" (one 512x512 frame)
    batch: int
    device: str
    timer: str
    stats: Stats
    stages: dict[str, float] = field(default_factory=dict)  # e2e: median tile/infer/vote/overhead


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
    stages: list[tuple[float, float, float, float]] = field(default_factory=list)


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
                    t.stages.append((tm.tile_ms, tm.infer_ms, tm.vote_ms, tm.total_ms))


def make_row(
    model: Model, backend: str, device: str, timer_name: str, t: Task, args: argparse.Namespace
) -> Row:
    ms = np.array(t.ms)
    row = Row(model.key, backend, t.kind, t.batch, device, timer_name, Stats.of(ms))
    if t.kind == "e2e":
        med = np.median(np.array(t.stages), axis=0)
        # overhead = median wall time - median of the path's own timer (a runner's: the native
        # call's); CPU time and the (wall-time) timers do not subtract
        overhead = float(np.median(ms) - med[3]) if args.clock == "wall" else math.nan
        row.stages = {
            "tile_ms": float(med[0]),
            "infer_ms": float(med[1]),
            "vote_ms": float(med[2]),
            "total_ms": float(med[3]),
            "overhead_ms": overhead,
        }
    return row


def host_timer(args: argparse.Namespace) -> tuple[Timer, str]:
    return (cpu_ms, "process_time") if args.clock == "cpu" else (wall_ms, "perf_counter")


# ---- one model on one backend or runner ---------------------------------------------------------
def bench_backend(
    model: Model, backend: str, frame: np.ndarray, args: argparse.Namespace
) -> list[Row]:
    """Pure inference at batch 9 and 1 (``backend.infer`` on a buffer tiled once from
    ``frame``) and ``Inspector.run(frame)`` on the backend, interleaved."""
    from pyinspect import Inspector
    from pyinspect.tiling import tile_into

    with Inspector(model.path, backend=backend, runner="backend", threads=args.threads) as insp:
        b = insp.backend
        device = str(getattr(b, "device", "cpu"))
        gpu_timer = cuda_timer(device)
        timer, timer_name = (gpu_timer, "cuda-event") if gpu_timer else host_timer(args)
        spec = insp.spec
        boxes = insp.boxes(*frame.shape[:2])
        mean, std = tuple(spec.normalization.mean), tuple(spec.normalization.std)

        tasks = [
            Task("infer", n, functools.partial(b.infer, n)) for n in (9, 1) if n <= insp.max_batch
        ]
        tasks.append(Task("e2e", len(boxes), functools.partial(insp.run, frame)))
        # infer(1) reads row 0 of the same buffer that infer(9) reads; Inspector.run re-tiles
        # the same frame into it, so every task sees the same input.
        tile_into(frame, b.input_buffer(len(boxes)), boxes, mean, std)
        measure(tasks, timer, model.role, args)
        return [make_row(model, backend, device, timer_name, t, args) for t in tasks]


def bench_runner(name: str, model: Model, frame: np.ndarray, args: argparse.Namespace) -> list[Row]:
    """``Inspector.run`` on whole-frame runner ``name`` (one C++ call per frame: tile or read ->
    infer -> vote), as a user who asks for that runner gets it."""
    with common.open_runner_inspector(name, model.path, args.threads) as insp:
        timer, timer_name = host_timer(args)
        task = Task("e2e", len(insp.boxes(*frame.shape[:2])), functools.partial(insp.run, frame))
        measure([task], timer, model.role, args)
        return [make_row(model, name, "cpu", timer_name, task, args)]


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
        if r.kind != "e2e" or r.backend in RUNNER_TITLES or r.model == "teacher":
            continue
        pure = find(rows, r.model, r.backend, "infer")
        if pure:
            ratio = r.stats.median / pure.stats.median
            overhead.append(
                {
                    "model": r.model,
                    "backend": r.backend,
                    "e2e_ms": r.stats.median,
                    "pure_b9_ms": pure.stats.median,
                    "e2e_over_pure": ratio,
                    "meets_target": ratio <= TARGET_E2E_OVER_PURE,
                }
            )
    students = [r for r in rows if r.kind == "e2e" and r.model != "teacher"]
    best = min(students, key=lambda r: r.stats.median, default=None)
    best_row = None
    if best is not None:
        best_row = {
            "model": best.model,
            "backend": best.backend,
            "median_ms": best.stats.median,
            "p99_ms": best.stats.p99,
            "stages": best.stages,
            "vs_paper_student_ms": PAPER["student_ms"],
        }
    python_side = [
        {
            "model": r.model,
            "python_ms": r.stages["overhead_ms"],
            "wall_ms": r.stats.median,
            "native_ms": r.stages["total_ms"],
            "meets_target": r.stages["overhead_ms"] <= TARGET_PYTHON_MS,
        }
        for r in rows
        if r.kind == "e2e" and r.backend == STUDENT and _measured(r.stages.get("overhead_ms"))
    ]
    return {
        "speedup_by_backend": ratios,
        "e2e_over_pure": overhead,
        "python_side": python_side,
        "best_student_e2e": best_row,
    }


def _measured(value: float | None) -> bool:
    """Whether a figure was measured (a CPU-time run has no overhead: NaN, null in JSON)."""
    return value is not None and not math.isnan(value)


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    rows = [Row(**{**r, "stats": Stats(**r["stats"])}) for r in result["rows"]]
    titles = {k: v["title"] for k, v in result["models"].items()}
    out = [
        f"# Latency: teacher vs student ({m['host']}, {m['date']})",
        "",
        common.describe(m),
        "",
        "Models: "
        + (
            "; ".join(
                f"{v['title']} = `{v['path']}` ({v['weights']}"
                + (f", {v['parameters']:,} parameters" if v["parameters"] else "")
                + ")"
                for v in result["models"].values()
            )
            or "none (the peers table alone)"
        )
        + ".",
        "",
        f"Clock: {CLOCKS[result['clock']]}; threads: {result['threads'] or 'physical cores'}.",
        "",
    ]
    if rows:
        out += main_tables(result, rows, titles)
    if result.get("peers"):
        out += peers.markdown(result["peers"])
    return common.end_report(out, result["skipped"], result["command"])


def main_tables(result: dict[str, Any], rows: list[Row], titles: dict[str, str]) -> list[str]:
    """The pure-inference and end-to-end tables, the paper's comparison and the targets."""
    out = [
        "## Pure inference (ms per call)",
        "",
        "| model | backend | batch | median | p90 | p99 | min | runs |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r.kind == "infer":
            s = r.stats
            times = " | ".join(fmt_ms(v) for v in (s.median, s.p90, s.p99, s.min))
            out.append(
                f"| {titles[r.model]} | {r.backend} ({r.device}) | {r.batch} | {times} | {s.runs} |"
            )
    out += [
        "",
        "## End to end per frame (512x512 uint8 -> tile -> infer -> vote -> result), ms",
        "",
        "Overhead: median wall time minus the median of the path's own timer"
        " (`timings.total_ms`; on a runner the native call's, so on the direct student runner"
        " it is the Python side of `Inspector.run`).",
        "",
        "| model | path | median | p90 | p99 | min | tile | infer | vote | overhead | runs |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r.kind == "e2e":
            s, g = r.stats, r.stages
            path = RUNNER_TITLES.get(r.backend, f"Inspector.run, {r.backend}")
            stages = (g["tile_ms"], g["infer_ms"], g["vote_ms"], g["overhead_ms"])
            times = " | ".join(fmt_ms(v) for v in (s.median, s.p90, s.p99, s.min, *stages))
            out.append(f"| {titles[r.model]} | {path} | {times} | {s.runs} |")
    summary = result["summary"]
    ratios = summary["speedup_by_backend"]
    if ratios:
        names = list(ratios)
        out += [
            "",
            f"## Against the paper ({PAPER['source']}: batch 9, {PAPER['device']})",
            "",
            "| per image (9 patches) | paper | "
            + " | ".join(f"{n} (median)" for n in names)
            + " |",
            "|---|---:|" + "---:|" * len(names),
            f"| Teacher VGG16, ms | {PAPER['teacher_ms']} | "
            + " | ".join(fmt_ms(ratios[n]["teacher_ms"]) for n in names)
            + " |",
            f"| Student (4,8,16,4,4), ms | {PAPER['student_ms']} | "
            + " | ".join(fmt_ms(ratios[n]["student_ms"]) for n in names)
            + " |",
            f"| Speed-up | {PAPER['speedup']}x | "
            + " | ".join(f"{ratios[n]['speedup']:.1f}x" for n in names)
            + " |",
        ]
    out += ["", "## Targets", ""]
    for n, v in ratios.items():
        text = f"teacher/student on {n} = {v['speedup']:.1f}x (paper {PAPER['speedup']}x)"
        out.append(common.target_line(v["meets_paper"], text))
    for v in summary["e2e_over_pure"]:
        text = (
            f"{titles[v['model']]} on {v['backend']}: end to end {fmt_ms(v['e2e_ms'])} ms ="
            f" {v['e2e_over_pure']:.3f} x pure batch-9 inference {fmt_ms(v['pure_b9_ms'])} ms"
            f" (target <= {TARGET_E2E_OVER_PURE})"
        )
        out.append(common.target_line(v["meets_target"], text))
    for v in summary.get("python_side", []):
        text = (
            f"Python side of `Inspector.run` on the direct student runner, {titles[v['model']]}:"
            f" {v['python_ms']:.4f} ms (median wall {fmt_ms(v['wall_ms'])} − median native timer"
            f" {fmt_ms(v['native_ms'])} ms; target <= {TARGET_PYTHON_MS} ms)"
        )
        out.append(common.target_line(v["meets_target"], text))
    best = summary["best_student_e2e"]
    if best:
        g = best["stages"]
        out.append(
            f"- Best student frame, end to end: {fmt_ms(best['median_ms'])} ms median"
            f" ({titles[best['model']]}, {best['backend']}; tile {fmt_ms(g['tile_ms'])} + infer"
            f" {fmt_ms(g['infer_ms'])} + vote {fmt_ms(g['vote_ms'])} + overhead"
            f" {fmt_ms(g['overhead_ms'])} ms) vs the paper's {PAPER['student_ms']} ms (pure"
            f" inference on a {PAPER['device']} GPU)"
        )
    return out


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
        ax.bar_label(bars, labels=[("" if np.isnan(v) else fmt_ms(v)) for v in values], fontsize=7)
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
    ap = common.arg_parser(__doc__)
    ap.add_argument(
        "--backend",
        action="append",
        metavar="NAME",
        help="backend to time (repeatable; also the whole-frame runners 'student' and"
        " 'openvino-native'); default: every available backend and every runner",
    )
    ap.add_argument(
        "--runs",
        type=int,
        help="timed runs per row (default: adaptive, >= 200 for students, >= 10 for the teacher)",
    )
    ap.add_argument(
        "--budget",
        type=float,
        default=3.0,
        help="seconds of timed runs per row when --runs is not given (default 3)",
    )
    ap.add_argument(
        "--json",
        type=Path,
        help="results file (default benchmarks/results/latency-<host>-<date>.json; the chart"
        " goes beside it as .png)",
    )
    ap.add_argument(
        "--models",
        type=Path,
        default=common.MODELS,
        help="folder of the exported models (default benchmarks/models)",
    )
    ap.add_argument("--teacher", help="time this teacher model instead of exporting one")
    ap.add_argument("--student", help="time this student model instead of exporting one")
    ap.add_argument("--no-teacher", action="store_true", help="skip the teacher")
    ap.add_argument("--threads", type=int, help="inference threads (default: physical cores)")
    add_choice_argument(
        ap,
        "--clock",
        ("wall", "cpu"),
        help="wall time (default), or process CPU time: robust to other jobs on a shared"
        " machine, meaningful with --threads 1",
    )
    ap.add_argument("--no-chart", action="store_true")
    ap.add_argument(
        "--peers",
        action="store_true",
        help="add the peers table: the direct student path against NumPy tiling + ONNX Runtime /"
        " OpenVINO and the same engines on the whole-frame graph (benchmarks/peers.py)",
    )
    ap.add_argument("--peers-only", action="store_true", help="the peers table alone")
    ap.add_argument(
        "--peer-model",
        type=Path,
        help="the student of the peers table (default: --student, else models/student.onnx)",
    )
    ap.add_argument("--peer-rounds", type=int, default=6, help="interleaved rounds (default 6)")
    ap.add_argument(
        "--peer-iters", type=int, default=200, help="frames per path per round (default 200)"
    )
    args = ap.parse_args(argv)
    if args.runs is not None and args.runs < 1:
        ap.error(f"--runs must be >= 1, got {args.runs}")
    for name in ("peer_rounds", "peer_iters"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    args.peers = args.peers or args.peers_only
    return args


def pick_models(args: argparse.Namespace) -> list[Model]:
    """``--teacher``/``--student`` files, else the exported benchmark models."""
    if not (args.teacher or args.student):
        return common.ensure_models(args.models, teacher=not args.no_teacher)
    models = []
    if args.teacher and not args.no_teacher:
        models.append(common.user_model("teacher", "teacher", args.teacher))
    if args.student:
        models.append(common.user_model("student", "student", args.student))
    return models


def skip_reason(model: Model, name: str, available: list[str], runners: list[str]) -> str:
    """Why ``model`` is not timed on backend or runner ``name`` here (``""``: it is)."""
    if name in runners:
        return common.runner_unavailable(name)
    if name not in available:
        return "not available here"
    return ""


def tensorrt_target(model: Model) -> tuple[Model | None, str]:
    """The ``.plan`` beside an ONNX model (TensorRT reads plans), or why there is none."""
    if model.path.suffix != ".onnx":
        return model, ""
    plan = model.path.with_suffix(".plan")
    if not plan.is_file():
        return None, f"no {plan.name}; build it: `pyinspect build {model.path} -o {plan}`"
    return Model(
        model.key, model.role, model.title, plan, model.weights, model.parameters, model.channels
    ), ""


def time_all(
    models: list[Model], backends: list[str], args: argparse.Namespace
) -> tuple[list[Row], list[dict[str, str]]]:
    """Every model on every backend and runner: the rows, and what was skipped with why."""
    from pyinspect.backends.base import list_backends

    available = list_backends(available_only=True)
    runners = common.runner_names()
    frame = common.bench_frame()
    rows: list[Row] = []
    skipped: list[dict[str, str]] = []
    for model in models:
        for be in backends:
            if be == STUDENT and model.role == "teacher":
                continue  # the direct student runner runs the paper's student only
            reason = skip_reason(model, be, available, runners)
            target: Model | None = model
            if not reason and be == "tensorrt":
                target, reason = tensorrt_target(model)
            if reason or target is None:
                skipped.append({"model": model.key, "backend": be, "reason": reason})
                common.log(f"{model.key} on {be}: skipped: {reason}")
                continue
            common.log(f"timing {model.key} on {be} ...")
            t0 = time.perf_counter()
            try:
                if be in runners:
                    got = bench_runner(be, target, frame, args)
                else:
                    got = bench_backend(target, be, frame, args)
            except PyInspectError as exc:
                skipped.append({"model": model.key, "backend": be, "reason": str(exc)})
                common.log(f"  skipped: {exc}")
                continue
            rows.extend(got)
            done = ", ".join(
                f"{r.kind}{'' if r.kind == 'e2e' else f'@{r.batch}'} {fmt_ms(r.stats.median)} ms"
                for r in got
            )
            common.log(f"  {time.perf_counter() - t0:.1f} s: {done}")
    return rows, skipped


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from pyinspect.backends.base import list_backends, physical_cores

    runners = common.runner_names()
    backends = args.backend or [*list_backends(available_only=True), *runners]
    known = [*list_backends(), *runners]
    unknown = [b for b in backends if b not in known]
    if unknown:
        common.log(f"error: unknown backend(s) {unknown}; choose from {known}")
        return 2
    peer_model = args.peer_model or Path(args.student or common.SHIPPED)
    if args.peers and not peer_model.is_file():
        common.log(f"error: --peers: no student model at {peer_model} (pass --peer-model)")
        return 2
    models = [] if args.peers_only else pick_models(args)
    random_models = [m.key for m in models if m.weights == common.RANDOM_NOTE]
    if random_models:
        common.log(f"note: {', '.join(random_models)} have {common.RANDOM_NOTE}")
    facts = common.machine_facts()
    rows, skipped = time_all(models, backends, args)
    peer_result = None
    if args.peers:
        reason = common.runner_unavailable(STUDENT)
        if reason:
            skipped.append({"model": "peers", "backend": STUDENT, "reason": reason})
        else:
            common.log(f"timing the peers table on {peer_model} ...")
            threads = args.threads or physical_cores()
            peer_result = peers.run_peers(peer_model, threads, args.peer_rounds, args.peer_iters)
    result: dict[str, Any] = {
        "machine": common.finish(facts),
        "paper": PAPER,
        "clock": args.clock,
        "threads": args.threads,
        "command": common.command_line("benchmarks/latency.py", argv),
        "models": {
            m.key: {
                "title": m.title,
                "path": common.rel(m.path),
                "weights": m.weights,
                "parameters": m.parameters,
                "channels": m.channels,
            }
            for m in models
        },
        "rows": [asdict(r) for r in rows],
        "skipped": skipped,
        "summary": summarise(rows, [b for b in backends if b not in runners]),
        "peers": peer_result,
    }
    json_path = args.json or common.result_path("latency", facts)
    result = common.json_safe(result)
    png = None if args.no_chart or not rows else chart(result, json_path.with_suffix(".png"))
    common.write_results(result, json_path, markdown(result))
    if png:
        common.log(f"wrote {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
