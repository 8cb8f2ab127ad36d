"""Verdict parity of every fast CPU path with fp32 ONNX Runtime (docs/fast_cpu.md).

The accuracy guard's rule (``pyinspect.precision_guard.RULE``): a path (OpenVINO f32, the
native OpenVINO runner, the direct student runner, and bf16 where the CPU has it) is accepted
when at least 99.9 % of the image verdicts equal the fp32 ONNX Runtime ones and no texture
changes; the report gives the exact counts and lists the differing images. Frames: the DAGM test
split of ``--data`` (``--frames test``), or the set the runtime guard uses for this model
(``--frames guard``: ``<model>.guard.json``, or the synthetic DAGM guard set). A path that
cannot run here is named with the reason; the report names the CPU.

    .venv/bin/python benchmarks/precision_guard.py models/student.onnx \
        --data data/synth-dagm --seed 0 [--limit 200] [--json results/guard.json]
    .venv/bin/python benchmarks/precision_guard.py models/student.onnx --frames guard \
        [--synth-version 1]
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common, when imported from tests
import common

ROOT = common.ROOT

#: name -> (the object that owns the compute, closed after its check; frame -> InspectionResult)
Candidate = tuple[Any, Callable[[np.ndarray], Any]]


def candidates(model: Path, threads: int) -> dict[str, Callable[[], Candidate]]:
    """Name -> factory of every fast path worth guarding (a factory raises where its path
    cannot run here, saying why)."""
    from pyinspect import Inspector

    def inspector(**options: Any) -> Candidate:
        insp = Inspector(model, backend="openvino", runner="backend", threads=threads, **options)
        return insp, insp.run

    def native() -> Candidate:
        from pyinspect.runners.openvino_native import OpenVinoFrameRunner

        runner = OpenVinoFrameRunner(model, threads=threads)
        return runner, runner.inspect

    def student() -> Candidate:
        from pyinspect.runners.student import StudentRunner

        runner = StudentRunner(model, threads=threads)
        return runner, runner.inspect

    out: dict[str, Callable[[], Candidate]] = {
        "openvino-f32": inspector,
        "openvino-native": native,
        "student": student,
    }
    try:
        import openvino

        from pyinspect.backends.openvino import cpu_precisions

        if "BF16" in cpu_precisions(openvino.Core()):
            out["openvino-bf16"] = lambda: inspector(precision="bf16")
    except ImportError:
        pass
    return out


def test_frames(data: Path, seed: int, limit: int | None) -> Iterator[tuple[str, np.ndarray]]:
    sys.path.insert(0, str(ROOT))
    from train.dagm import read_image
    from train.evaluate import load_split

    for rec in load_split(data, "test", seed, limit=limit):
        yield str(rec.path), read_image(rec)


def guard_set(model: Path, synth_version: int | None) -> tuple[Any, str]:
    """The runtime guard's frames for ``model`` (re-iterable, produced lazily), or its synthetic
    DAGM set of ``synth_version``, and their name."""
    from pyinspect.precision_guard import guard_frames, synthetic_frames

    frames = (
        guard_frames(model) if synth_version is None else synthetic_frames(version=synth_version)
    )
    frames.check()
    return frames, frames.describe


def main(argv: list[str] | None = None) -> int:
    ap = common.arg_parser(__doc__)
    ap.add_argument("model", type=Path)
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "synth-dagm")
    ap.add_argument("--seed", type=int, default=0, help="split seed (as train/evaluate.py)")
    ap.add_argument("--limit", type=int, default=None, help="first N test images only")
    ap.add_argument(
        "--frames",
        choices=("test", "guard"),
        default="test",
        help="test: the test split of --data; guard: the runtime guard's frames for the model",
    )
    ap.add_argument(
        "--synth-version",
        type=int,
        default=None,
        help="with --frames guard: the synthetic DAGM guard set of this generator version",
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", nargs="*", help="candidate names to check")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    from pyinspect import Inspector
    from pyinspect.errors import PyInspectError
    from pyinspect.precision_guard import compare

    if args.frames == "guard":
        frames, source = guard_set(args.model, args.synth_version)
    else:
        frames = list(test_frames(args.data, args.seed, args.limit))
        source = f"test split of {args.data}, seed {args.seed}"
    facts = common.machine_facts()
    print(f"Machine: {common.describe(facts)}")
    reports: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    with Inspector(
        args.model, backend="onnxruntime", runner="backend", threads=args.threads
    ) as ref:
        for name, make in candidates(args.model, args.threads).items():
            if args.only and name not in args.only:
                continue
            t0 = time.perf_counter()
            try:
                owner, run = make()
            except (ImportError, PyInspectError) as exc:  # name what cannot run, check the rest
                skipped[name] = str(exc)
                print(f"{name}: not checked ({exc})", file=sys.stderr)
                continue
            try:
                report = compare(
                    ref,
                    run,
                    frames,
                    reference_name="onnxruntime-f32",
                    candidate_name=name,
                    source=source,
                )
            finally:
                owner.close()
            reports[name] = report.to_dict()
            print(report.summary())
            print(f"  ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "machine": common.finish(facts),
                    "command": common.command_line("benchmarks/precision_guard.py", argv),
                    "model": str(args.model),
                    "frames": source,
                    "images": len(frames) if isinstance(frames, list) else frames.count,
                    "reports": reports,
                    "skipped": skipped,
                },
                indent=2,
            )
        )
    return 0 if all(r["accepted"] for r in reports.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
