"""Frames per second of ``Inspector.stream`` against a plain ``run()`` loop, on a real video.

A video of 512x512 DAGM-like frames is written with ``cv2.VideoWriter`` (MJPG by default), so
every mode pays a real decode. Four rates per model and backend, each the median of
``--repeats`` passes over the whole file (the modes interleaved, so drift hits them alike):

* ``decode``: ``VideoCapture.read`` alone;
* ``inspect``: tile + infer + vote alone (``Inspector.run`` on frames already decoded);
* ``plain``: ``while cap.read(): insp.run(frame)``, the loop a user writes first;
* ``stream``: ``for r in insp.stream(cap, depth=2)``: decode overlapped with inspection.

A perfect pipeline runs at the slowest stage's rate, min(decode, inspect); the issue's target is
stream >= 90% of that, and stream > plain.

    .venv/bin/python benchmarks/throughput.py                 # students on ONNX Runtime
    .venv/bin/python benchmarks/throughput.py --backend openvino --frames 500
    .venv/bin/python benchmarks/throughput.py --backend auto --gray   # the direct student runner

Writes ``benchmarks/results/throughput-<host>-<date>.json`` (or ``--json PATH``) and the Markdown
report beside it (``.md``), and prints the report.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

TARGET_OF_SLOWEST = 0.90


def dagm_like_frames(n: int, size: int = 512, seed: int = 0) -> list[np.ndarray]:
    """Gray textures with a few dark blemishes, different per frame (so the codec works)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    frames = []
    for _ in range(n):
        fx, fy, phase = 5 + 10 * rng.random(), 7 + 12 * rng.random(), 6.3 * rng.random()
        base = 128 + 50 * np.sin(xx / fx + phase) * np.cos(yy / fy) + rng.normal(0, 14, xx.shape)
        if rng.random() < 0.3:
            cy, cx = rng.integers(40, size - 40, 2)
            base[(yy - cy) ** 2 / 400 + (xx - cx) ** 2 / 2500 < 1] -= 60
        frames.append(np.clip(base, 0, 255).astype(np.uint8))
    return frames


def write_video(path: Path, frames: list[np.ndarray], fourcc: str = "MJPG") -> Path:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), 25.0, (w, h))
    if not writer.isOpened():
        msg = f"cv2.VideoWriter cannot write {fourcc} to {path}"
        raise RuntimeError(msg)
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_GRAY2BGR))
    writer.release()
    return path


def frames_of(video: Path, gray: bool) -> Iterator[np.ndarray]:
    """Decoded frames, converted to gray when a mono camera is simulated (the conversion is
    part of the decode stage, as it would be in the user's loop)."""
    cap = cv2.VideoCapture(str(video))
    try:
        while True:
            ok, f = cap.read()
            if not ok:
                return
            yield cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) if gray else f
    finally:
        cap.release()


def decode_all(video: Path, gray: bool = False) -> list[np.ndarray]:
    return list(frames_of(video, gray))


def rate_decode(video: Path, gray: bool) -> float:
    t0 = time.perf_counter()
    n = sum(1 for _ in frames_of(video, gray))
    return n / (time.perf_counter() - t0)


def rate_inspect(insp: Any, frames: list[np.ndarray]) -> float:
    t0 = time.perf_counter()
    for f in frames:
        insp.run(f)
    return len(frames) / (time.perf_counter() - t0)


def rate_plain(insp: Any, video: Path, gray: bool) -> float:
    n, t0 = 0, time.perf_counter()
    for f in frames_of(video, gray):
        insp.run(f)
        n += 1
    return n / (time.perf_counter() - t0)


def rate_stream(insp: Any, video: Path, depth: int, gray: bool, nice: int | None = None) -> float:
    # BGR: the VideoCapture itself, as a user passes it; gray: the converting generator
    cap = None if gray else cv2.VideoCapture(str(video))
    source = frames_of(video, True) if cap is None else cap
    n, errors, t0 = 0, 0, time.perf_counter()
    for r in insp.stream(source, depth=depth, reader_nice=nice):
        n += 1
        errors += r.error is not None
    dt = time.perf_counter() - t0
    if cap is not None:
        cap.release()
    if errors:
        msg = f"stream gave {errors} error results on {video}"
        raise RuntimeError(msg)
    return n / dt


SPIN = {"auto": None, "on": True, "off": False}


def bench(
    model: common.Model,
    backend: str,
    video: Path,
    frames: list[np.ndarray],
    args: argparse.Namespace,
    spin: str = "auto",
    nice: str = "auto",
) -> dict[str, Any]:
    from pyinspect import Inspector
    from pyinspect.stream import auto_reader_nice

    gray = args.gray
    if gray:
        frames = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames]
    with Inspector(model.path, backend=backend, threads=args.threads, spin=SPIN[spin]) as insp:
        runner = insp.runner
        # spinning is a property of the backend's pool; a runner's rows do not use it
        spinning = getattr(insp.backend, "spin", None) if runner == "backend" else None
        reader_nice = auto_reader_nice(insp, frames[0]) if nice == "auto" else int(nice)
        for f in frames[: min(len(frames), 20)]:  # warm up: buffers, first-call compilation
            insp.run(f)
        rates: dict[str, list[float]] = {"decode": [], "inspect": [], "plain": [], "stream": []}
        for _ in range(args.repeats):
            rates["decode"].append(rate_decode(video, gray))
            rates["inspect"].append(rate_inspect(insp, frames))
            rates["plain"].append(rate_plain(insp, video, gray))
            rates["stream"].append(rate_stream(insp, video, args.depth, gray, reader_nice))
    fps = {k: float(np.median(v)) for k, v in rates.items()}
    slowest = min(fps["decode"], fps["inspect"])
    return {
        "model": model.key,
        "backend": backend,
        "runner": runner,
        "spin": spinning,
        "reader_nice": reader_nice,
        "input": "gray" if gray else "BGR",
        "frames": len(frames),
        "repeats": args.repeats,
        "depth": args.depth,
        "fps": fps,
        "all_fps": rates,
        "slowest_stage_fps": slowest,
        "stream_of_slowest": fps["stream"] / slowest,
        "stream_over_plain": fps["stream"] / fps["plain"],
        "meets_target": fps["stream"] >= TARGET_OF_SLOWEST * slowest
        and fps["stream"] > fps["plain"],
    }


def backend_label(row: dict[str, Any]) -> str:
    spin = row.get("spin")
    tail = "" if spin is None else f", spin {'on' if spin else 'off'}"
    tail += f", reader nice {row['reader_nice']}" if row.get("reader_nice") else ""
    return f"{row['backend']} ({row['runner']}{tail})"


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    titles = {k: v["title"] for k, v in result["models"].items()}
    v = result["video"]
    out = [
        f"# Throughput: stream() vs a plain run() loop ({m['host']}, {m['date']})",
        "",
        common.describe(m),
        "",
        f"Video: {v['frames']} frames of {v['size']}x{v['size']}, {v['fourcc']} in .avi"
        f" ({v['bytes'] / 1e6:.1f} MB), decoded by OpenCV {cv2.__version__}; frames/s, median of"
        f" {result['repeats']} passes; stream depth {result['depth']}.",
        "",
        "| model | backend (runner) | input | decode | inspect | slowest stage | plain loop |"
        " stream | stream / slowest | stream / plain |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        f = r["fps"]
        out.append(
            f"| {titles[r['model']]} | {backend_label(r)} |"
            f" {r.get('input', 'BGR')} | {f['decode']:.0f} | {f['inspect']:.0f} |"
            f" {r['slowest_stage_fps']:.0f} | {f['plain']:.0f} | {f['stream']:.0f} |"
            f" {100 * r['stream_of_slowest']:.0f}% | {r['stream_over_plain']:.2f}x |"
        )
    out += ["", "## Targets", ""]
    for r in result["rows"]:
        text = (
            f"{titles[r['model']]} on {backend_label(r)}: stream {r['fps']['stream']:.0f}"
            f" frames/s = {100 * r['stream_of_slowest']:.0f}% of the slowest stage (target >="
            f" {100 * TARGET_OF_SLOWEST:.0f}%), {r['stream_over_plain']:.2f}x the plain loop"
            " (target > 1)"
        )
        out.append(common.target_line(r["meets_target"], text))
    return common.end_report(out, result["skipped"], result["command"])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = common.arg_parser(__doc__)
    ap.add_argument("--backend", action="append", help="backend, repeatable (default onnxruntime)")
    ap.add_argument(
        "--model",
        action="append",
        metavar="PATH",
        help="model to run (repeatable; default the benchmark's two students)",
    )
    ap.add_argument("--frames", type=int, default=300, help="frames in the video (default 300)")
    ap.add_argument("--repeats", type=int, default=3, help="passes per mode (default 3)")
    ap.add_argument("--depth", type=int, default=2, help="stream depth (default 2)")
    ap.add_argument("--fourcc", default="MJPG", help="video codec (default MJPG, in .avi)")
    ap.add_argument("--threads", type=int, help="inference threads (default: physical cores)")
    ap.add_argument(
        "--spin",
        action="append",
        choices=sorted(SPIN),
        metavar="MODE",
        help="ONNX Runtime thread spinning: auto (off when its threads fill every"
        " core), on, off; repeatable to compare (default auto)",
    )
    ap.add_argument(
        "--reader-nice",
        action="append",
        metavar="N",
        dest="reader_nice",
        help="stream reader's nice increment: auto (10 when inference threads fill"
        " every CPU and sleep when idle, else 0) or 0..19; repeatable to compare"
        " (default auto)",
    )
    ap.add_argument(
        "--gray",
        action="store_true",
        help="convert decoded frames to gray (a mono camera; lets backend 'auto'"
        " use the direct student runner)",
    )
    ap.add_argument(
        "--models",
        type=Path,
        default=common.MODELS,
        help="folder of the exported models (default benchmarks/models)",
    )
    ap.add_argument(
        "--json",
        type=Path,
        help="results file (default benchmarks/results/throughput-<host>-<date>.json)",
    )
    args = ap.parse_args(argv)
    for value in args.reader_nice or []:
        if value != "auto" and not (value.isdigit() and int(value) <= 19):
            ap.error(f"--reader-nice must be auto or 0..19, got {value!r}")
    for name in ("frames", "repeats", "depth"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from pyinspect.errors import PyInspectError

    if args.model:
        models = [
            common.user_model(f"model{i}" if i else "model", "student", p)
            for i, p in enumerate(args.model)
        ]
    else:
        exported = common.ensure_models(args.models, teacher=False)
        models = [m for m in exported if m.key != "shipped"]
    backends = args.backend or ["onnxruntime"]
    facts = common.machine_facts()
    rows, skipped = [], []
    with tempfile.TemporaryDirectory() as tmp:
        source = dagm_like_frames(args.frames)
        video = write_video(Path(tmp) / "dagm.avi", source, args.fourcc)
        frames = decode_all(video)
        if len(frames) != args.frames:
            common.log(f"note: wrote {args.frames} frames, OpenCV decodes {len(frames)}")
        video_info = {
            "frames": len(frames),
            "size": 512,
            "fourcc": args.fourcc,
            "bytes": video.stat().st_size,
        }
        combos = [
            (b, s, n)
            for b in backends
            for s in args.spin or ["auto"]
            for n in args.reader_nice or ["auto"]
            if s == "auto" or b in ("onnxruntime", "auto")  # spinning is an ONNX Runtime option
        ]
        for model in models:
            for be, spin, nice in combos:
                common.log(f"{model.key} on {be} (spin {spin}, reader nice {nice}) ...")
                try:
                    row = bench(model, be, video, frames, args, spin, nice)
                except PyInspectError as exc:
                    skipped.append({"model": model.key, "backend": be, "reason": str(exc)})
                    common.log(f"  skipped: {exc}")
                    continue
                rows.append(row)
                fps = ", ".join(f"{k} {v:.0f}" for k, v in row["fps"].items())
                common.log(f"  {fps} frames/s")
    result = {
        "machine": common.finish(facts),
        "command": common.command_line("benchmarks/throughput.py", argv),
        "video": video_info,
        "repeats": args.repeats,
        "depth": args.depth,
        "models": {
            m.key: {"title": m.title, "path": common.rel(m.path), "weights": m.weights}
            for m in models
        },
        "rows": rows,
        "skipped": skipped,
    }
    path = args.json or common.result_path("throughput", facts)
    common.write_results(result, path, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
