"""What ``pyinspect watch`` adds per frame over a bare ``Inspector.run`` loop on the same frames.

The station runs one in-memory source (every frame copied at grab, as for a camera) into JSONL +
MQTT (a mosquitto started here on 127.0.0.1, QoS 1, every batch acknowledged) + metrics (served
on a port). A watch block is timed from its first record until the last record is delivered by
every sink (the station's start is not a per-frame cost); a bare block is the loop
``for f in frames[1:]: inspector.run(f)`` after one untimed frame. Blocks alternate (bare,
watch, bare, ...), each ``--frames`` frames, and the report gives the median per-frame wall time
and process CPU time of each, and their difference: the target is at most 0.10 ms of wall time
per frame. It also times the frame copy ``stream``/``IterableSource`` make (row ``frame_copy``).

    python benchmarks/watch.py                      # models/student.onnx, 500 frames x 3 blocks
    python benchmarks/watch.py --frames 200 --blocks 2 --model path/to/model.onnx
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
import timeit
from pathlib import Path
from typing import Any

import common
import numpy as np

TARGET_MS = 0.10


def bare_block(insp: Any, frames: list[np.ndarray]) -> tuple[float, float]:
    """Both loops are timed from their first verdict to their last (the station's start up is
    not a per-frame cost), so each times ``len(frames) - 1`` frames."""
    insp.run(frames[0])
    w0, c0 = time.perf_counter(), time.process_time()
    for f in frames[1:]:
        insp.run(f)
    return time.perf_counter() - w0, time.process_time() - c0


def watch_block(model: Path, frames: list[np.ndarray], mqtt_url: str | None,
                folder: Path) -> tuple[float, float]:  # fmt: skip
    from pyinspect.sources import IterableSource
    from pyinspect.watch import Station

    sinks: list[dict[str, Any]] = [{"type": "jsonl", "path": str(folder / "records.jsonl")}]
    if mqtt_url:
        sinks.append({"type": "mqtt", "url": mqtt_url})
    cfg = {"station": {"run_dir": str(folder / "run")}, "model": {"path": str(model)},
           "metrics": {"listen": "127.0.0.1:0"}, "sink": sinks}  # fmt: skip
    done = threading.Event()
    count = [0]
    first: list[float] = []  # (wall, CPU) at the first record: the station's start is not timed

    def on_record(doc: dict[str, Any]) -> None:
        count[0] += 1
        if count[0] == 1:
            first.extend((time.perf_counter(), time.process_time()))
        if count[0] == len(frames):
            done.set()

    station = Station(cfg, sources=[IterableSource(frames, "cam", queue=4)], on_record=on_record)
    try:
        station.start()
        done.wait(600)
        while any(s.pending for s in station.sinks):
            time.sleep(0.0002)
        wall, cpu = time.perf_counter() - first[0], time.process_time() - first[1]
    finally:
        station.stop()
        station.run()  # joins what start() began and closes
    return wall, cpu


def copy_cost_us(shape: tuple[int, ...]) -> float:
    a = np.zeros(shape, np.uint8)
    n = 2000
    return min(timeit.repeat(a.copy, number=n, repeat=5)) / n * 1e6


def main(argv: list[str] | None = None) -> int:
    p = common.arg_parser(__doc__)
    p.add_argument("--model", type=Path, default=common.SHIPPED)
    p.add_argument("--frames", type=int, default=500)
    p.add_argument("--blocks", type=int, default=3)
    args = p.parse_args(argv)
    sys.path.insert(0, str(common.ROOT / "tests"))
    from line_helpers import MOSQUITTO, Mosquitto

    from pyinspect import Inspector

    facts = common.machine_facts()
    frames = [common.bench_frame(seed=s) for s in range(10)] * (args.frames // 10 + 1)
    frames = frames[: args.frames]
    rows: dict[str, list[tuple[float, float]]] = {"bare": [], "watch": []}
    with tempfile.TemporaryDirectory() as tmp:
        broker = None
        if MOSQUITTO is not None:
            broker = Mosquitto(Path(tmp) / "mosquitto")
            broker.start()
        try:
            with Inspector(args.model) as insp:
                insp.run(frames[0])  # warm-up
                for b in range(args.blocks):
                    common.log(f"block {b + 1}/{args.blocks}: bare")
                    rows["bare"].append(bare_block(insp, frames))
                    common.log(f"block {b + 1}/{args.blocks}: watch")
                    folder = Path(tmp) / f"w{b}"
                    url = broker.url if broker else None
                    rows["watch"].append(watch_block(args.model, frames, url, folder))
        finally:
            if broker is not None:
                broker.stop()
    facts = common.finish(facts)
    per = {k: {"wall_ms": statistics.median(w for w, _ in v) / args.frames * 1e3,
               "cpu_ms": statistics.median(c for _, c in v) / args.frames * 1e3,
               "blocks": [[w, c] for w, c in v]} for k, v in rows.items()}  # fmt: skip
    added_wall = per["watch"]["wall_ms"] - per["bare"]["wall_ms"]
    added_cpu = per["watch"]["cpu_ms"] - per["bare"]["cpu_ms"]
    copies = {"512x512": copy_cost_us((512, 512)), "1024x1040": copy_cost_us((1024, 1040))}
    command = common.command_line("benchmarks/watch.py", argv)
    result = {"facts": facts, "model": common.rel(args.model), "frames": args.frames,
              "blocks": args.blocks, "sinks": ["jsonl", "mqtt" if MOSQUITTO else None, "metrics"],
              "per_frame": per, "added_wall_ms": added_wall, "added_cpu_ms": added_cpu,
              "frame_copy_us": copies, "target_ms": TARGET_MS, "command": command}  # fmt: skip
    lines = [
        "# pyinspect watch: added cost per frame", "", common.describe(facts), "",
        f"Model `{common.rel(args.model)}`, {args.frames} frames per block, {args.blocks} blocks"
        " of each, alternating; sinks: JSONL + MQTT (QoS 1, local mosquitto) + metrics.", "",
        "| loop | wall ms/frame (median) | CPU ms/frame (median) |", "|---|---|---|",
        f"| bare `Inspector.run` | {per['bare']['wall_ms']:.3f} | {per['bare']['cpu_ms']:.3f} |",
        f"| `watch` | {per['watch']['wall_ms']:.3f} | {per['watch']['cpu_ms']:.3f} |",
        f"| added | {added_wall:+.3f} | {added_cpu:+.3f} |", "",
        f"frame_copy: {copies['512x512']:.1f} us (512x512), {copies['1024x1040']:.1f} us"
        " (1024x1040)", "",
        common.target_line(added_wall <= TARGET_MS,
                           f"added wall time {added_wall:+.3f} ms/frame <= {TARGET_MS} ms"),
    ]  # fmt: skip
    report = common.end_report(lines, [], command)
    common.write_results(result, common.result_path("watch", facts), report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
