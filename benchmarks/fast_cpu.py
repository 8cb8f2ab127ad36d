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

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common, when imported from tests
import common

PAPER_MS = 1.46
PATHS = ("ort-rgb", "ort-folded", "ov-folded", "ov-native", "student", "student-1t")

#: One path: the object that owns the compute (closed at the end) and frame -> InspectionResult.
Path_ = tuple[Any, Callable[[np.ndarray], Any]]


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
    sys.path.insert(0, str(ROOT))
    try:
        from train.synth import synth_image

        return [synth_image(7, i % 6, i, bool(i % 2))[0] for i in range(n)]
    except ImportError:
        rng = np.random.default_rng(0)
        return [rng.integers(0, 256, (512, 512), dtype=np.uint8) for _ in range(n)]


def build_paths(folded: Path, rgb: Path, threads: int, which: list[str]) -> dict[str, Path_]:
    """The paths named in ``which`` that open here; the others are named with the reason."""
    from pyinspect import Inspector
    from pyinspect.errors import PyInspectError

    def inspector(model: Path, backend: str) -> Path_:
        insp = Inspector(model, backend=backend, runner="backend", threads=threads)
        return insp, insp.run

    def native(model: Path) -> Path_:
        from pyinspect.runners.openvino_native import OpenVinoFrameRunner

        runner = OpenVinoFrameRunner(model, threads=threads)
        return runner, runner.inspect

    def student(model: Path, n: int) -> Path_:
        from pyinspect.runners.student import StudentRunner

        runner = StudentRunner(model, threads=n)
        return runner, runner.inspect

    makers: dict[str, Callable[[], Path_]] = {
        "ort-rgb": lambda: inspector(rgb, "onnxruntime"),
        "ort-folded": lambda: inspector(folded, "onnxruntime"),
        "ov-folded": lambda: inspector(folded, "openvino"),
        "ov-native": lambda: native(folded),
        "student": lambda: student(folded, threads),
        "student-1t": lambda: student(folded, 1),
    }
    paths: dict[str, Path_] = {}
    for name in which:
        try:
            paths[name] = makers[name]()
        except (ImportError, PyInspectError) as exc:  # a path missing here is named, not fatal
            common.log(f"skip {name}: {exc}")
    return paths


def timed(paths: dict[str, Any], frames_: list[np.ndarray], rounds: int, iters: int) -> dict:
    """Interleaved rounds; per path: median wall ms, per-stage medians, verdicts per frame."""
    per_round: dict[str, list[float]] = {k: [] for k in paths}
    stages: dict[str, list[tuple[float, float, float]]] = {k: [] for k in paths}
    extra: dict[str, list[list[float]]] = {k: [] for k in paths}
    for p in paths.values():  # warm-up
        for f in frames_:
            p.run(f)
    for r in range(rounds):
        for name, p in paths.items():
            ts = []
            for i in range(iters):
                f = frames_[(r * iters + i) % len(frames_)]
                t0 = time.perf_counter_ns()
                res = p.run(f)
                ts.append((time.perf_counter_ns() - t0) * 1e-6)
                t = res.timings
                stages[name].append((t.tile_ms, t.infer_ms, t.vote_ms))
                last = getattr(p, "last_stages", None)
                if last is not None:
                    extra[name].append([*last["layers_ms"], last["fc_ms"]])
            per_round[name].append(float(np.median(ts)))
    out = {}
    for name in paths:
        v = np.array(per_round[name])
        st = np.median(np.array(stages[name]), axis=0)
        row = {
            "median_ms": float(np.median(v)),
            "best_round_ms": float(v.min()),
            "rounds": len(v),
            "tile_ms": float(st[0]),
            "infer_ms": float(st[1]),
            "vote_ms": float(st[2]),
        }
        if extra[name]:
            e = np.median(np.array(extra[name]), axis=0)
            row["engine_stages_ms"] = {
                **{f"conv{i + 1}": float(e[i]) for i in range(5)},
                "fc": float(e[5]),
            }
        out[name] = row
    return out


def parity(paths: dict[str, Any], frames_: list[np.ndarray], reference: str) -> dict:
    """Verdict and patch-class differences of every path against ``reference``."""
    ref = paths[reference]
    report = {}
    for name, p in paths.items():
        verdicts = patches = 0
        for f in frames_:
            a, b = ref.run(f), p.run(f)
            verdicts += int((a.texture, a.defective) != (b.texture, b.defective))
            patches += int(np.count_nonzero(a.patch_class != b.patch_class))
        report[name] = {"frames": len(frames_), "verdict_diffs": verdicts, "patch_diffs": patches}
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folded", type=Path, help="folded 1-channel student (.onnx + sidecar)")
    ap.add_argument("--rgb", type=Path, help="the paper's 3-channel student (.onnx + sidecar)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument(
        "--paths",
        nargs="*",
        default=["ort-rgb", "ort-folded", "ov-folded", "ov-native", "engine", "engine-1t"],
    )
    ap.add_argument("--json", type=Path, help="write the results here too")
    args = ap.parse_args(argv)

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    folded, rgb = ensure_models(log)
    folded, rgb = args.folded or folded, args.rgb or rgb
    fr = frames()
    paths = build_paths(folded, rgb, args.threads, args.paths)
    load0 = os.getloadavg()[0]
    results = timed(paths, fr, args.rounds, args.iters)
    load1 = os.getloadavg()[0]
    ref = "ort-rgb" if "ort-rgb" in paths else next(iter(paths))
    par = parity(paths, fr, ref)
    best = min(results, key=lambda k: results[k]["median_ms"])
    f = flops()
    print(
        f"# student frame (512x512 gray, 9 patches), {args.threads} threads; load average "
        f"{load0:.1f} -> {load1:.1f}; models: {folded.name}, {rgb.name}"
    )
    print(f"| path | median ms | best round | tile | infer | vote | verdict diffs vs {ref} |")
    print("|---|---|---|---|---|---|---|")
    for name, r in sorted(results.items(), key=lambda kv: kv[1]["median_ms"]):
        print(
            f"| {name} | {r['median_ms']:.3f} | {r['best_round_ms']:.3f} | {r['tile_ms']:.3f} |"
            f" {r['infer_ms']:.3f} | {r['vote_ms']:.3f} | {par[name]['verdict_diffs']}/"
            f"{par[name]['frames']} |"
        )
    print(
        f"\nbest: {best} {results[best]['median_ms']:.3f} ms vs the paper's {PAPER_MS} ms "
        f"(GPU); gap {results[best]['median_ms'] - PAPER_MS:+.3f} ms"
    )
    for name, r in results.items():
        if "engine_stages_ms" in r:
            st = ", ".join(f"{k} {v:.3f}" for k, v in r["engine_stages_ms"].items())
            print(f"{name} stages (ms, thread 0): {st}")
    mac_pp = sum(f["per_patch_mac"].values())
    mac_sh = sum(f["shared_mac"].values())
    print(f"multiply-adds per frame: {mac_pp / 1e6:.1f} M per patch, {mac_sh / 1e6:.1f} M shared")
    if args.json:
        args.json.write_text(
            json.dumps(
                {"results": results, "parity": par, "flops": f, "load": [load0, load1]}, indent=2
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
