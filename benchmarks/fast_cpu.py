"""Every CPU path for one student frame, timed in interleaved rounds (docs/fast_cpu.md).

A 512×512 gray frame -> 9 patches -> logits -> verdict, end to end, for:

* ``ort-rgb``        Inspector + ONNX Runtime, the paper's 3-channel network (tiler normalises)
* ``ort-folded``     Inspector + ONNX Runtime, the folded 1-channel student
* ``ov-folded``      Inspector + OpenVINO (Python backend, f32), folded student
* ``ov-native``      ``pyinspect.runners.openvino_native.OpenVinoFrameRunner``: tile -> OpenVINO
                     -> vote in one C++ call
* ``student``        ``pyinspect.runners.student.StudentRunner``: the direct student runner
                     (conv1-4 computed once over the frame, in ``pyinspect._core``)
* ``student-1t``     the same on one thread

The CPU is shared (other processes, turbo), so paths run in interleaved rounds — A, B, C, A, B, C —
and each figure is the median over rounds of the per-round median; the CPU and the load average
are recorded. Also checks verdict and patch-class parity of every path against ``ort-rgb`` on the
frames used. A path that cannot run here is named with the reason and left out.

    .venv/bin/python benchmarks/fast_cpu.py                 # random-weight students
    .venv/bin/python benchmarks/fast_cpu.py --folded models/student.onnx \
        --rgb models/student_rgb.onnx
    .venv/bin/python benchmarks/fast_cpu.py --rounds 2 --iters 5   # a quick look
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common, when imported from tests
import common

PAPER_MS = 1.46
PATHS = ("ort-rgb", "ort-folded", "ov-folded", "ov-native", "student", "student-1t")

TimedPath = common.TimedPath


def flops(widths: tuple[int, ...] = (4, 8, 16, 4, 4), cin: int = 1, hidden: int = 4096) -> dict:
    """Multiply-adds of 9 patches, per layer, and of the shared computation on 512×512."""
    per_patch, shared = {}, {}
    size, c = 224, cin
    union = 512
    for i, w in enumerate(widths, start=1):
        per_patch[f"conv{i}"] = 9 * size * size * w * c * 9
        shared[f"conv{i}"] = (union * union * w * c * 9) if i <= 4 else per_patch[f"conv{i}"]
        size, union, c = size // 2, union // 2, w
    fc = 9 * (c * size * size * hidden + hidden * 12)
    per_patch["fc"] = shared["fc"] = fc
    return {"per_patch_mac": per_patch, "shared_mac": shared}


def ensure_models() -> tuple[Path, Path]:
    """The benchmark's random-weight students (timing only): (folded 1-channel, 3-channel)."""
    models = {m.key: m.path for m in common.ensure_models(common.MODELS, teacher=False)}
    return models["student-folded"], models["student"]


def frames(n: int = 8) -> list[np.ndarray]:
    sys.path.insert(0, str(common.ROOT))
    try:
        from train.synth import synth_image

        return [synth_image(7, i % 6, i, bool(i % 2))[0] for i in range(n)]
    except ImportError:
        rng = np.random.default_rng(0)
        return [rng.integers(0, 256, (512, 512), dtype=np.uint8) for _ in range(n)]


def build_paths(
    folded: Path, rgb: Path, threads: int, which: list[str]
) -> tuple[dict[str, TimedPath], dict[str, str]]:
    """The paths named in ``which`` that open here, and why each of the others does not."""
    from pyinspect import Inspector
    from pyinspect.errors import PyInspectError

    def inspector(model: Path, backend: str) -> TimedPath:
        insp = Inspector(model, backend=backend, runner="backend", threads=threads)
        return insp, insp.run

    def native(model: Path) -> TimedPath:
        from pyinspect.runners.openvino_native import OpenVinoFrameRunner

        runner = OpenVinoFrameRunner(model, threads=threads)
        return runner, runner.inspect

    def student(model: Path, n: int) -> TimedPath:
        from pyinspect.runners.student import StudentRunner

        runner = StudentRunner(model, threads=n)
        return runner, runner.inspect

    makers: dict[str, Callable[[], TimedPath]] = {
        "ort-rgb": lambda: inspector(rgb, "onnxruntime"),
        "ort-folded": lambda: inspector(folded, "onnxruntime"),
        "ov-folded": lambda: inspector(folded, "openvino"),
        "ov-native": lambda: native(folded),
        "student": lambda: student(folded, threads),
        "student-1t": lambda: student(folded, 1),
    }
    paths: dict[str, TimedPath] = {}
    skipped: dict[str, str] = {}
    for name in which:
        try:
            paths[name] = makers[name]()
        except (ImportError, PyInspectError) as exc:  # a path missing here is named, not fatal
            skipped[name] = str(exc)
            common.log(f"skip {name}: {exc}")
    return paths, skipped


def timed(paths: dict[str, TimedPath], frames_: list[np.ndarray], rounds: int, iters: int) -> dict:
    """Interleaved rounds; per path: median wall ms, per-stage medians, and for the direct
    student runner the per-layer times of its thread 0."""
    per_round: dict[str, list[float]] = {k: [] for k in paths}
    stages: dict[str, list[tuple[float, float, float]]] = {k: [] for k in paths}
    layers: dict[str, list[list[float]]] = {k: [] for k in paths}
    for name, calls in common.interleaved_rounds(paths, frames_, rounds, iters):
        per_round[name].append(float(np.median([c.ms for c in calls])))
        for c in calls:
            t = c.result.timings
            stages[name].append((t.tile_ms, t.infer_ms, t.vote_ms))
        layers[name] += [c.layers for c in calls if c.layers]
    out = {}
    for name in paths:
        v = np.array(per_round[name])
        st = np.median(np.array(stages[name]), axis=0)
        row: dict[str, Any] = {
            "median_ms": float(np.median(v)),
            "best_round_ms": float(v.min()),
            "rounds": len(v),
            "tile_ms": float(st[0]),
            "infer_ms": float(st[1]),
            "vote_ms": float(st[2]),
        }
        if layers[name]:
            row["layers_ms"] = common.median_layers(layers[name])
        out[name] = row
    return out


def parity(paths: dict[str, TimedPath], frames_: list[np.ndarray], reference: str) -> dict:
    """Verdict and patch-class differences of every path against ``reference``."""
    ref = paths[reference][1]
    report = {}
    for name, (_, run) in paths.items():
        verdicts = patches = 0
        for f in frames_:
            a, b = ref(f), run(f)
            verdicts += int((a.texture, a.defective) != (b.texture, b.defective))
            patches += int(np.count_nonzero(a.patch_class != b.patch_class))
        report[name] = {"frames": len(frames_), "verdict_diffs": verdicts, "patch_diffs": patches}
    return report


def markdown(result: dict[str, Any]) -> str:
    """The table of paths (fastest first), the best against the paper, the runner's layers."""
    res, par, ref = result["results"], result["parity"], result["reference"]
    m = result["machine"]
    out = [
        f"# Student frame (512x512 gray, 9 patches), every CPU path ({m['host']}, {m['date']})",
        "",
        common.describe(m),
        "",
        f"{result['threads']} threads; models: {result['models']['folded']},"
        f" {result['models']['rgb']}; median over {result['rounds']} interleaved rounds of"
        f" {result['iters']} frames.",
        "",
        f"| path | median ms | best round | tile | infer | vote | verdict diffs vs {ref} |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in sorted(res.items(), key=lambda kv: kv[1]["median_ms"]):
        times = " | ".join(
            f"{r[k]:.3f}" for k in ("median_ms", "best_round_ms", "tile_ms", "infer_ms", "vote_ms")
        )
        out.append(f"| {name} | {times} | {par[name]['verdict_diffs']}/{par[name]['frames']} |")
    if res:
        best = min(res, key=lambda k: res[k]["median_ms"])
        best_ms = res[best]["median_ms"]
        out += [
            "",
            f"Best: {best} {best_ms:.3f} ms vs the paper's {PAPER_MS} ms (GPU); gap"
            f" {best_ms - PAPER_MS:+.3f} ms.",
        ]
    for name, r in res.items():
        if "layers_ms" in r:
            st = ", ".join(f"{k} {v:.3f}" for k, v in r["layers_ms"].items())
            out.append(f"{name} layers (ms, thread 0): {st}.")
    for name, reason in result["skipped"].items():
        out.append(f"- skipped {name}: {reason}")
    f = result["flops"]
    mac_pp, mac_sh = sum(f["per_patch_mac"].values()), sum(f["shared_mac"].values())
    out += [
        "",
        f"Multiply-adds per frame: {mac_pp / 1e6:.1f} M per patch, {mac_sh / 1e6:.1f} M shared.",
    ]
    return common.end_report(out, [], result["command"])


def main(argv: list[str] | None = None) -> int:
    ap = common.arg_parser(__doc__)
    ap.add_argument("--folded", type=Path, help="folded 1-channel student (.onnx + sidecar)")
    ap.add_argument("--rgb", type=Path, help="the paper's 3-channel student (.onnx + sidecar)")
    common.round_args(ap, iters=20)
    ap.add_argument("--paths", nargs="*", choices=PATHS, default=list(PATHS), metavar="PATH")
    ap.add_argument("--json", type=Path, help="write the results here too (and the .md beside)")
    args = ap.parse_args(argv)

    folded, rgb = args.folded, args.rgb
    if folded is None or rgb is None:
        exported_folded, exported_rgb = ensure_models()
        folded, rgb = folded or exported_folded, rgb or exported_rgb
    fr = frames()
    facts = common.machine_facts()
    paths, skipped = build_paths(folded, rgb, args.threads, args.paths)
    if not paths:
        common.log("error: no path could be opened")
        return 1
    try:
        results = timed(paths, fr, args.rounds, args.iters)
        ref = "ort-rgb" if "ort-rgb" in paths else next(iter(paths))
        par = parity(paths, fr, ref)
    finally:
        for owner, _ in paths.values():
            owner.close()
    result = {
        "machine": common.finish(facts),
        "command": common.command_line("benchmarks/fast_cpu.py", argv),
        "threads": args.threads,
        "rounds": args.rounds,
        "iters": args.iters,
        "models": {"folded": common.rel(folded), "rgb": common.rel(rgb)},
        "reference": ref,
        "results": results,
        "parity": par,
        "skipped": skipped,
        "flops": flops(),
    }
    if args.json:
        common.write_results(result, args.json, markdown(result))
    else:
        print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
