"""The direct student runner across the student family: time per executed multiply-add of each
student against the shipped one, and the Python side of ``Inspector.run``, in one run.

Students: the shipped ``models/student.onnx`` (4, 8, 16, 4, 4) and random-weight students built
the way the tests build them (``tests/studentzoo.py``, the exporter's folded graph, FC1 of 4096):
(4, 8, 16, 8, 8), the 1/16 student (4, 8, 16, 32, 32) and a 10-class (4, 8, 16, 4, 4). Each runs
through ``Inspector(model)`` (the automatic choice, which must be the direct runner) on the same
512×512 gray frames (3×3 grid, conv1-4 shared), in interleaved rounds (A, B, C, A, B, C; each
figure the median over rounds of the per-round median).

* **Time per executed multiply-add**: the engine's own time (``timings.infer_ms``, the compute
  without the vote) over the multiply-adds its algorithm executes at the model's real widths
  (``executed_macs``: conv1-4 over the patches' union plus each patch's recomputed ring, conv5
  and both FC layers per patch). Goal: every student within 1.5× of the shipped one.
* **Python side of Inspector.run**: the median wall time of ``Inspector.run`` minus the median of
  the native call's own timer (``timings.total_ms``) over the same frames of the shipped student;
  also the median of the per-frame differences. Goal: at most 0.03 ms.

    .venv/bin/python benchmarks/student_family.py                    # 15 rounds x 40 frames
    .venv/bin/python benchmarks/student_family.py --rounds 2 --iters 5 --hidden 64  # a quick look
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common, when imported from tests
import common

PATCH = 224
UNION = 512  # the benchmark frame; its 3x3 grid's offsets (0, 144, 288) are multiples of 16
MAC_GOAL = 1.5  # time per executed multiply-add, at most this many times the shipped student's
OVERHEAD_GOAL_MS = 0.03
#: (key, title, widths, classes) of the random-weight students.
FAMILY = (
    ("c88", "(4, 8, 16, 8, 8)", (4, 8, 16, 8, 8), 12),
    ("c3232", "(4, 8, 16, 32, 32), the 1/16 student", (4, 8, 16, 32, 32), 12),
    ("k10", "(4, 8, 16, 4, 4), 10 classes", (4, 8, 16, 4, 4), 10),
)


@dataclass(frozen=True)
class Student:
    key: str
    title: str
    path: Path
    widths: tuple[int, ...]
    hidden: int
    classes: int
    weights: str


def executed_macs(
    widths: tuple[int, ...], hidden: int, classes: int, patches: int = 9, union: int = UNION
) -> dict[str, int]:
    """Multiply-adds the engine executes on a frame whose ``patches`` share conv1-4 over a
    ``union`` × ``union`` region, per layer, at the real widths (conv1 over one gray plane; the
    zero-padded channels the kernels also compute are not counted): the shared map, plus each
    patch's ring (4 bands of 2 conv rows across the patch) for conv1-4; conv5, FC1 and FC2 per
    patch."""
    out: dict[str, int] = {}
    size, side, cin = PATCH, union, 1
    for i, w in enumerate(widths, start=1):
        per_px = w * cin * 9
        if i <= 4:
            out[f"conv{i}"] = side * side * per_px + patches * 4 * 2 * size * per_px
        else:
            out[f"conv{i}"] = patches * size * size * per_px
        size, side, cin = size // 2, side // 2, w
    out["fc"] = patches * (cin * size * size * hidden + hidden * classes)
    return out


def build_students(folder: Path, hidden: int) -> list[Student]:
    """The shipped student and the family members, exported into ``folder`` (random weights)."""
    sys.path.insert(0, str(common.ROOT / "tests"))
    from studentzoo import student_onnx

    from pyinspect.runners.student import read_student

    shipped = common.SHIPPED
    graph = read_student(shipped)
    students = [
        Student(
            "shipped",
            "shipped models/student.onnx (4, 8, 16, 4, 4)",
            shipped,
            graph.widths,
            int(graph.weights["fc1_b"].size),
            graph.num_classes,
            "trained",
        )
    ]
    for key, title, widths, classes in FAMILY:
        path = folder / f"{key}.onnx"
        student_onnx(path, widths=widths, classes=classes, hidden=hidden, seed=len(students))
        students.append(Student(key, title, path, widths, hidden, classes, common.RANDOM_NOTE))
    return students


def frames(n: int = 8) -> list[np.ndarray]:
    return [common.bench_frame(seed) for seed in range(n)]


def timed(
    paths: dict[str, common.TimedPath], frames_: list[np.ndarray], rounds: int, iters: int
) -> dict:
    """Interleaved rounds; per path (owner, frame -> InspectionResult) the medians over rounds
    of the per-round medians: wall time, the native timer (total and infer), wall minus the
    native timer per frame, and (for a runner) the layer times of its thread 0."""
    names = ("wall_ms", "native_total_ms", "infer_ms", "python_ms_per_frame_median")
    per_round: dict[str, dict[str, list[float]]] = {k: {n: [] for n in names} for k in paths}
    layers: dict[str, list[list[float]]] = {k: [] for k in paths}
    for key, calls in common.interleaved_rounds(paths, frames_, rounds, iters):
        rows = []
        for c in calls:
            t = c.result.timings
            rows.append((c.ms, t.total_ms, t.infer_ms, c.ms - t.total_ms))
        for name, column in zip(names, np.median(np.array(rows), axis=0), strict=True):
            per_round[key][name].append(float(column))
        layers[key] += [c.layers for c in calls if c.layers]
    out: dict[str, dict[str, Any]] = {}
    for key in paths:
        row: dict[str, Any] = {n: float(np.median(v)) for n, v in per_round[key].items()}
        row["python_ms"] = row["wall_ms"] - row["native_total_ms"]
        if layers[key]:
            row["layers_ms"] = common.median_layers(layers[key])
        out[key] = row
    return out


def markdown(result: dict[str, Any]) -> str:
    m, res = result["machine"], result["results"]
    ref = res["shipped"]["ns_per_mac"]
    out = [
        f"# The student family on the direct runner ({m['host']}, {m['date']})",
        "",
        common.describe(m),
        "",
        f"{result['threads']} threads; 512x512 gray frames, 9 patches (conv1-4 shared); each"
        f" student through `StudentRunner.inspect`, the shipped one also through"
        f" `Inspector.run`; medians over {result['rounds']} interleaved rounds of"
        f" {result['iters']} frames. Random-weight students: FC1 of {result['hidden']}.",
        "",
        "| student | widths | classes | executed M MACs | runner ms | engine ms |"
        " ps per MAC | vs shipped |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for s in result["students"]:
        r = res[s["key"]]
        out.append(
            f"| {s['title']} | {tuple(s['widths'])} | {s['classes']} |"
            f" {r['macs'] / 1e6:.1f} | {r['wall_ms']:.3f} | {r['infer_ms']:.3f} |"
            f" {r['ns_per_mac'] * 1e3:.1f} | {r['ns_per_mac'] / ref:.2f}× |"
        )
    out += ["", "Layer times (ms, as thread 0 saw each phase end):", ""]
    out += ["| student | conv1 | conv2 | conv3 | conv4 | conv5 | FC |", "|---|" + "---:|" * 6]
    for s in result["students"]:
        lm = res[s["key"]]["layers_ms"]
        out.append(f"| {s['key']} | " + " | ".join(f"{v:.3f}" for v in lm.values()) + " |")
    sh = res["inspector"]
    worst = max(res[s["key"]]["ns_per_mac"] / ref for s in result["students"])
    out += [
        "",
        common.target_line(
            worst <= MAC_GOAL,
            f"every student within {MAC_GOAL}× of the shipped student's time per executed"
            f" multiply-add (worst {worst:.2f}×)",
        ),
        common.target_line(
            sh["python_ms"] <= OVERHEAD_GOAL_MS,
            f"Python side of `Inspector.run` on the shipped student: {sh['python_ms']:.4f} ms"
            f" (median wall {sh['wall_ms']:.4f} − median native timer"
            f" {sh['native_total_ms']:.4f}; median of per-frame differences"
            f" {sh['python_ms_per_frame_median']:.4f}), goal ≤ {OVERHEAD_GOAL_MS} ms",
        ),
    ]
    return common.end_report(out, [], result["command"])


def main(argv: list[str] | None = None) -> int:
    ap = common.arg_parser(__doc__)
    common.round_args(ap, iters=40)
    ap.add_argument("--hidden", type=int, default=4096, help="FC1 width of the random students")
    ap.add_argument("--json", type=Path, help="write the results here (and the .md beside)")
    args = ap.parse_args(argv)

    from pyinspect import Inspector
    from pyinspect.runners.student import StudentRunner

    facts = common.machine_facts()
    with tempfile.TemporaryDirectory() as tmp:
        students = build_students(Path(tmp), args.hidden)
        owners: list[Any] = []
        try:
            paths: dict[str, common.TimedPath] = {}
            for s in students:
                runner = StudentRunner(s.path, threads=args.threads)
                owners.append(runner)
                paths[s.key] = (runner, runner.inspect)
            insp = Inspector(common.SHIPPED, threads=args.threads)
            owners.append(insp)
            if insp.runner != "student":
                common.log(f"error: Inspector does not use the direct runner: {insp.runner_note}")
                return 1
            paths["inspector"] = (insp, insp.run)
            results = timed(paths, frames(), args.rounds, args.iters)
        finally:
            for owner in owners:
                owner.close()
    for s in students:
        macs = executed_macs(s.widths, s.hidden, s.classes)
        r = results[s.key]
        r["macs_per_layer"] = macs
        r["macs"] = sum(macs.values())
        r["ns_per_mac"] = r["infer_ms"] * 1e6 / r["macs"]
    result = {
        "machine": common.finish(facts),
        "command": common.command_line("benchmarks/student_family.py", argv),
        "threads": args.threads,
        "rounds": args.rounds,
        "iters": args.iters,
        "hidden": args.hidden,
        "students": [
            {
                "key": s.key,
                "title": s.title,
                "widths": list(s.widths),
                "hidden": s.hidden,
                "classes": s.classes,
                "weights": s.weights,
            }
            for s in students
        ],
        "results": results,
    }
    common.write_results(
        result, args.json or common.result_path("student-family", facts), markdown(result)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
