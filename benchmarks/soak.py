"""Soak: 100,000 frames through ``Inspector.stream()``; memory must stay flat.

An inspection line runs for weeks, so a leak of a few bytes per frame is a failure that no
per-frame test sees. This script streams ``--frames`` camera-like frames (a fresh array per frame,
as a capture hands them out; gray and BGR mixed; a missing frame (``None``) and a wrong-dtype frame
injected every ``--fault-every`` frames, so the error path is soaked too) through one Inspector,
samples the process's resident memory (RSS) and Python's live object count along the way, and
checks that RSS grows by at most ``--max-growth`` (5%) between the end of the warm-up and the end.
The warm-up (``--warmup`` frames) lets the allocators, ONNX Runtime's arena and the caches reach
their working size first.

The model is ``--model`` (default: ``models/student.onnx``, else the paper's student
(4, 8, 16, 4, 4) exported with seeded random weights into ``benchmarks/models/student.onnx``;
memory behaviour does not depend on the weights). Writes
``benchmarks/results/soak-<host>-<date>.json`` and ``.md`` (or ``--out PREFIX``) and prints the
report; exits 1 if memory grew too much, a worker thread leaked, or the error count is not the
number of faults injected.

    python benchmarks/soak.py                      # 100,000 frames, about 10 min on 2 cores
    python benchmarks/soak.py --frames 5000 --warmup 1000 --out /tmp/soak   # a quick look
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common, when imported from tests
import common

ROOT = common.ROOT
EXPORTED = common.MODELS / "student.onnx"
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    """Resident set size now (Linux ``/proc/self/statm``; else the peak, from getrusage)."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * PAGE
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def default_model() -> Path:
    if common.SHIPPED.is_file():
        return common.SHIPPED
    if not EXPORTED.is_file():
        common.export_random(EXPORTED, arch="student", pt2=False)
    return EXPORTED


def frame_pool(n: int, seed: int) -> list[np.ndarray]:
    """Camera-like 512x512 frames, gray and BGR: smooth texture plus sensor noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:512, 0:512].astype(np.float32)
    pool = []
    for i in range(n):
        fx, fy = rng.uniform(4, 30, 2)
        base = 128 + 50 * np.sin(xx / fx + rng.uniform(0, 6)) * np.cos(yy / fy)
        base += rng.normal(0, 10, base.shape)
        if i % 2:
            base = np.stack([base * rng.uniform(0.7, 1.0) for _ in range(3)], axis=2)
        pool.append(np.clip(base, 0, 255).astype(np.uint8))
    return pool


def camera(pool: list[np.ndarray], frames: int, fault_every: int) -> Iterator[Any]:
    """A fresh array per frame (as VideoCapture.read returns), with faults at fixed positions:
    ``None`` at k * fault_every + fault_every // 2, a float32 frame at k * fault_every - 1."""
    half = fault_every // 2
    for i in range(frames):
        if fault_every and i % fault_every == half:
            yield None
        elif fault_every and i % fault_every == fault_every - 1:
            yield pool[i % len(pool)].astype(np.float32)
        else:
            yield pool[i % len(pool)].copy()


def expected_faults(frames: int, fault_every: int) -> int:
    if not fault_every:
        return 0
    half = fault_every // 2
    return sum(1 for i in range(frames) if i % fault_every in (half, fault_every - 1))


def soak(args: argparse.Namespace) -> dict[str, Any]:
    from pyinspect import Inspector

    model = Path(args.model) if args.model else default_model()
    pool = frame_pool(args.pool, args.seed)
    facts = common.machine_facts()
    threads_before = {t.ident for t in threading.enumerate()}
    gc.collect()
    samples: list[dict[str, float]] = [
        {"frame": 0, "rss_mib": rss_bytes() / 2**20, "objects": len(gc.get_objects()), "s": 0.0}
    ]
    errors = 0
    # Preallocated and written once (NaN), so that keeping every frame's time adds nothing to RSS
    # during the run: a growing list of floats is 32 bytes a frame, itself a "leak" of 3 MB.
    total_ms = np.full(args.frames, np.nan)
    start = time.perf_counter()
    with Inspector(model, backend=args.backend, threads=args.threads) as insp:
        backend = insp.backend_name
        if insp.runner != "backend":  # gray frames run on the runner, BGR ones on the backend
            backend += f", gray frames on the {insp.runner} runner"
        for i, result in enumerate(insp.stream(camera(pool, args.frames, args.fault_every)), 1):
            if result.ok:
                total_ms[i - 1] = result.timings.total_ms
            else:
                errors += 1
            if i % args.sample_every == 0 or i == args.frames:
                samples.append(
                    {
                        "frame": i,
                        "rss_mib": rss_bytes() / 2**20,
                        "objects": len(gc.get_objects()),
                        "s": time.perf_counter() - start,
                    }
                )
                if args.progress:
                    s = samples[-1]
                    print(
                        f"  {i:>7} frames  RSS {s['rss_mib']:.1f} MiB"
                        f"  objects {s['objects']}  {i / s['s']:.0f} frames/s",
                        file=sys.stderr,
                        flush=True,
                    )
    wall = time.perf_counter() - start
    time.sleep(0.2)  # the stream's threads are joined on close; give stragglers a moment
    leaked = [t.name for t in threading.enumerate() if t.ident not in threads_before]
    return summarize(args, facts, model, backend, samples, errors, total_ms, wall, leaked)


def summarize(
    args: argparse.Namespace,
    facts: dict[str, Any],
    model: Path,
    backend: str,
    samples: list[dict[str, float]],
    errors: int,
    total_ms: np.ndarray,
    wall: float,
    leaked: list[str],
) -> dict[str, Any]:
    after_warmup = min((s for s in samples if s["frame"] >= args.warmup), key=lambda s: s["frame"])
    end = samples[-1]
    growth = (end["rss_mib"] - after_warmup["rss_mib"]) / after_warmup["rss_mib"]
    tail = [s for s in samples if s["frame"] >= args.warmup]
    slope = 0.0
    if len(tail) >= 3:  # least-squares RSS trend after warm-up, MiB per 10,000 frames
        x = np.array([s["frame"] for s in tail], np.float64)
        y = np.array([s["rss_mib"] for s in tail], np.float64)
        slope = float(np.polyfit(x, y, 1)[0] * 10_000)
    faults = expected_faults(args.frames, args.fault_every)
    ok = growth <= args.max_growth and not leaked and errors == faults
    t = total_ms[np.isfinite(total_ms)]
    return {
        "machine": common.finish(facts),
        "command": common.command_line("benchmarks/soak.py", args.argv),
        "model": str(model.relative_to(ROOT) if model.is_relative_to(ROOT) else model),
        "backend": backend,
        "frames": args.frames,
        "warmup_frames": args.warmup,
        "fault_every": args.fault_every,
        "errors": errors,
        "faults_injected": faults,
        "wall_s": round(wall, 1),
        "frames_per_s": round(args.frames / wall, 1),
        "frame_ms_median": round(float(np.median(t)), 3) if t.size else None,
        "frame_ms_p99": round(float(np.percentile(t, 99)), 3) if t.size else None,
        "rss_mib_first": round(samples[0]["rss_mib"], 1),
        "rss_mib_after_warmup": round(after_warmup["rss_mib"], 1),
        "rss_mib_end": round(end["rss_mib"], 1),
        "rss_mib_peak": round(max(s["rss_mib"] for s in samples), 1),
        "rss_growth_after_warmup": round(growth, 4),
        "rss_trend_mib_per_10k_frames": round(slope, 3),
        "objects_after_warmup": after_warmup["objects"],
        "objects_end": end["objects"],
        "max_growth": args.max_growth,
        "leaked_threads": leaked,
        "passed": ok,
        "samples": [
            {k: round(v, 2) if isinstance(v, float) else v for k, v in s.items()} for s in samples
        ],
    }


def report(r: dict[str, Any]) -> str:
    m = r["machine"]
    verdict = "PASS" if r["passed"] else "FAIL"
    flat = r["rss_growth_after_warmup"] <= r["max_growth"]
    lines = [
        f"# Soak: {r['frames']:,} frames through Inspector.stream() ({m['host']}, {m['date']})",
        "",
        f"Machine: {common.describe(m)}",
        "",
        f"Model `{r['model']}` on `{r['backend']}`; 512x512 frames, gray and BGR alternating, a"
        f" fresh array per frame; a `None` frame and a float32 frame injected every"
        f" {r['fault_every']:,} frames. Command: `{r['command']}`.",
        "",
        "| | value |",
        "|---|---|",
        f"| RSS before the first frame | {r['rss_mib_first']} MiB |",
        f"| RSS after warm-up ({r['warmup_frames']:,} frames) | {r['rss_mib_after_warmup']} MiB |",
        f"| RSS at the end | {r['rss_mib_end']} MiB |",
        f"| RSS peak (of the samples) | {r['rss_mib_peak']} MiB |",
        f"| growth after warm-up | {100 * r['rss_growth_after_warmup']:+.2f}% (limit"
        f" {100 * r['max_growth']:.0f}%) |",
        f"| RSS trend after warm-up | {r['rss_trend_mib_per_10k_frames']:+.3f} MiB per 10k"
        " frames |",
        f"| Python objects after warm-up / end | {r['objects_after_warmup']:,} /"
        f" {r['objects_end']:,} |",
        f"| error results / faults injected | {r['errors']} / {r['faults_injected']} |",
        f"| worker threads left after close | {len(r['leaked_threads'])} |",
        f"| throughput | {r['frames_per_s']} frames/s ({r['wall_s']} s) |",
        f"| frame time, median / p99 | {r['frame_ms_median']} / {r['frame_ms_p99']} ms |",
        "",
        f"**{verdict}**: memory {'flat' if flat else 'grew'},"
        f" {len(r['leaked_threads'])} threads leaked, {r['errors']} error results for"
        f" {r['faults_injected']} injected faults.",
        "",
        "RSS along the run (MiB):",
        "",
        "| frames | RSS MiB | Python objects |",
        "|---:|---:|---:|",
    ]
    step = max(1, len(r["samples"]) // 12)
    shown = r["samples"][::step]
    if shown[-1] is not r["samples"][-1]:
        shown.append(r["samples"][-1])
    lines += [f"| {s['frame']:,} | {s['rss_mib']:.1f} | {s['objects']:,} |" for s in shown]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = common.arg_parser(__doc__)
    ap.add_argument("--frames", type=int, default=100_000)
    ap.add_argument("--warmup", type=int, default=10_000, help="frames before the baseline RSS")
    ap.add_argument("--sample-every", type=int, default=1_000)
    ap.add_argument("--fault-every", type=int, default=1_000, help="0: inject no faults")
    ap.add_argument(
        "--max-growth", type=float, default=0.05, help="allowed RSS growth (0.05 = 5%%)"
    )
    ap.add_argument("--model", help="model file (its sidecar beside it); default: the student")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--threads", type=int, help="backend compute threads (default: its own)")
    ap.add_argument("--pool", type=int, default=16, help="distinct frames cycled through")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="output prefix (default benchmarks/results/soak-<host>-<date>)")
    ap.add_argument("--progress", action="store_true", help="print each sample to stderr")
    args = ap.parse_args(argv)
    args.argv = argv
    if not 0 < args.warmup < args.frames:
        ap.error("--warmup must be between 0 and --frames")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = soak(args)
    if args.out:
        json_path = Path(args.out + ".json")
    else:
        json_path = common.result_path("soak", result["machine"])
    common.write_results(result, json_path, report(result))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
