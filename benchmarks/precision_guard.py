"""Verdict parity of every fast CPU path with fp32 ONNX Runtime on the synthetic test split.

The accuracy guard of docs/fast_cpu.md: a path (OpenVINO f32, the native OpenVINO runner, the
direct student engine, and bf16 where the CPU has it) is accepted only if its verdicts equal the
fp32 ONNX Runtime ones on every test image, else the differing images are listed.

    .venv/bin/python benchmarks/precision_guard.py models/student.onnx \
        --data data/synth-dagm --seed 0 [--limit 200] [--json results/guard.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def candidates(model: Path, threads: int) -> dict[str, Callable[[], Any]]:
    """Name -> factory of every fast path worth guarding on this machine."""
    from pyinspect import Inspector

    out: dict[str, Callable[[], Any]] = {
        "openvino-f32": lambda: Inspector(model, backend="openvino", threads=threads),
    }
    try:
        from pyinspect.backends.openvino_native import native_available, native_runner

        if native_available():
            out["openvino-native"] = lambda: native_runner(model, threads=threads)
            from pyinspect.fast_student import FastStudentRunner

            out["student-engine"] = lambda: FastStudentRunner(model, threads=threads)
    except ImportError:
        pass
    try:
        import openvino

        from pyinspect.backends.openvino import cpu_precisions

        if "BF16" in cpu_precisions(openvino.Core()):
            out["openvino-bf16"] = lambda: Inspector(
                model, backend="openvino", threads=threads, precision="bf16"
            )
    except ImportError:
        pass
    return out


def test_frames(data: Path, seed: int, limit: int | None) -> Iterator[tuple[str, np.ndarray]]:
    sys.path.insert(0, str(ROOT))
    from train.dagm import read_image
    from train.evaluate import load_split

    for rec in load_split(data, "test", seed, limit=limit):
        yield str(rec.path), read_image(rec)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "synth-dagm")
    ap.add_argument("--seed", type=int, default=0, help="split seed (as train/evaluate.py)")
    ap.add_argument("--limit", type=int, default=None, help="first N test images only")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", nargs="*", help="candidate names to check")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    from pyinspect import Inspector
    from pyinspect.precision_guard import compare

    frames = list(test_frames(args.data, args.seed, args.limit))
    reports = {}
    with Inspector(args.model, backend="onnxruntime", threads=args.threads) as ref:
        for name, make in candidates(args.model, args.threads).items():
            if args.only and name not in args.only:
                continue
            t0 = time.perf_counter()
            try:
                cand = make()
            except Exception as exc:  # report what could not be built, check the rest
                print(f"{name}: not checked ({exc})", file=sys.stderr)
                continue
            report = compare(
                ref, cand, frames, reference_name="onnxruntime-f32", candidate_name=name
            )
            reports[name] = report.to_dict()
            print(report.summary())
            print(f"  ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "model": str(args.model),
                    "data": str(args.data),
                    "seed": args.seed,
                    "images": len(frames),
                    "reports": reports,
                },
                indent=2,
            )
        )
    return 0 if all(r["accepted"] for r in reports.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
