"""What ``pyinspect watch`` adds per frame over a bare ``Inspector.run`` loop on the same frames.

The station runs one in-memory source (every frame copied at grab, as for a camera) into JSONL +
MQTT (a mosquitto started here on 127.0.0.1, QoS 1, every batch acknowledged) + metrics (served
on a port). A watch block is timed from its first record until the last record is delivered by
every sink (the station's start is not a per-frame cost); a bare block is the loop
``for f in frames[1:]: inspector.run(f)`` after one untimed frame. Blocks alternate (bare,
watch, bare, ...), each ``--frames`` frames, and the report gives the median per-frame wall time
and process CPU time of each, and their difference: the target is at most 0.10 ms of wall time
per frame. A block's clock starts at the station's first hand-over of records to its sinks, so
its time per frame counts the frames inspected after that one; ``added (paired)`` is the median
over back-to-back (bare, watch) pairs of their difference, which cancels slow drifts in load.

Wall time is what the target is about, but it moves with whatever else the machine runs, and the
process CPU time of these loops does too: the direct runner's threads spin while they wait, so
they burn both cores whatever the station does. The ``cpu`` rows measure the station's own work
instead, robust to other load: the same two loops with inference replaced by a stub that sleeps
for the first bare block's time per frame (or ``--stub-period-ms``; how many records go to the
sinks at once depends on it) and returns the first frame's verdict, so the process CPU time
per frame is what the station's Python does (grab and copy, hand-offs, record and JSON, sinks,
MQTT, metrics), with the stub's own cost subtracted (``cpu`` = watch stub - bare stub; the stub
returns a decoded verdict, so the lazy decode, ~5 us, is not in it). The same blocks give the
CPU time per frame of each station thread and of the local mosquitto, which takes cores from the
runner here as it would not with a broker on another machine, the wake-ups per frame of each
thread (voluntary context switches: waits, locks, the GIL; each costs CPU) and how many records
the station hands over to the sinks at once. It also times the frame copy
``stream``/``IterableSource`` make (row ``frame_copy``). A result never replaces an earlier one
of the same name (``-2``, ``-3``, ... are added).

    python benchmarks/watch.py                      # models/student.onnx, 500 frames x 3 blocks
    python benchmarks/watch.py --frames 200 --blocks 2 --model path/to/model.onnx
    python benchmarks/watch.py --threads 1          # the station's runner on one thread
    python benchmarks/watch.py --sinks jsonl        # one sink (jsonl, mqtt or both)
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
import timeit
from dataclasses import fields
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


def thread_cpu() -> dict[str, float]:
    """CPU seconds of every live Python thread, by name (``pthread_getcpuclockid``)."""
    out: dict[str, float] = {}
    for t in threading.enumerate():
        if t.ident is None:
            continue
        try:
            clock = time.pthread_getcpuclockid(t.ident)
            out[t.name] = out.get(t.name, 0.0) + time.clock_gettime(clock)
        except (OSError, AttributeError):
            continue
    return out


def thread_wakeups() -> dict[str, int]:
    """Voluntary context switches of every live Python thread, by name (Linux ``/proc``): how
    often each went to sleep and was woken (a wait, a lock or the GIL)."""
    out: dict[str, int] = {}
    for t in threading.enumerate():
        try:
            status = Path(f"/proc/self/task/{t.native_id}/status").read_text()
            n = int(status.split("\nvoluntary_ctxt_switches:", 1)[1].split()[0])
        except (OSError, IndexError, ValueError, TypeError):
            continue
        out[t.name] = out.get(t.name, 0) + n
    return out


def stamp(broker: Broker) -> tuple[float, float, dict[str, float], float, dict[str, int]]:
    """Wall clock, process CPU, per-thread CPU, broker CPU and per-thread wake-ups, now."""
    return (time.perf_counter(), time.process_time(), thread_cpu(), broker.cpu(),
            thread_wakeups())  # fmt: skip


def _thread_group(name: str) -> str:
    for key in ("infer", "source", "sink-", "metrics", "paho"):
        if key in name:
            return name.split("pyinspect-watch-", 1)[-1] if key != "paho" else "paho"
    return "other"


class Stub:
    """Inference replaced by a sleep of ``period_s`` per frame (paced like the runner) that returns
    a copy of one verdict: what is left of a loop's CPU time is the loop's own work."""

    def __init__(self, result: Any, period_s: float) -> None:
        from pyinspect.result import InspectionResult

        self.cls = InspectionResult
        self.values = {f.name: getattr(result, f.name) for f in fields(InspectionResult)}
        self.period_s = period_s
        self.next = 0.0

    def __call__(self, prepared: Any, **kwargs: Any) -> Any:
        now = time.perf_counter()
        self.next = max(self.next + self.period_s, now)
        if self.next > now:
            time.sleep(self.next - now)
        return self.cls(**self.values)


def bare_stub_block(insp: Any, frames: list[np.ndarray], stub: Stub) -> tuple[float, float]:
    stub.next = 0.0
    stub(insp.prepare(frames[0]))
    w0, c0 = time.perf_counter(), time.process_time()
    for f in frames[1:]:
        stub(insp.prepare(f))
    return time.perf_counter() - w0, time.process_time() - c0


class Broker:
    """The local mosquitto's CPU time (``/proc/<pid>/schedstat``: nanoseconds on a CPU)."""

    def __init__(self, proc: Any) -> None:
        self.path = Path(f"/proc/{proc.pid}/schedstat") if proc is not None else None

    def cpu(self) -> float:
        if self.path is None:
            return 0.0
        try:
            return int(self.path.read_text().split()[0]) * 1e-9
        except (OSError, ValueError, IndexError):
            return 0.0


def make_probe(n: int, broker: Broker) -> Any:
    """A sink that only stamps the first record and sets ``done`` at the ``n``-th (no thread, no
    queue): the benchmark's clock, at the cost of one method call per record."""
    from pyinspect.sinks.base import Sink

    class Probe(Sink):
        kind = "probe"

        def __init__(self) -> None:
            super().__init__("probe")
            self.count = 0
            self.handovers = 0
            self.first_count = 0  # records of the first hand-over (made before the clock starts)
            self.first: tuple[float, float, dict[str, float], float, dict[str, int]] | None = None
            self.done = threading.Event()

        def offer(self, record: Any) -> None:
            self.offer_many([record])

        def offer_many(self, records: list[Any]) -> None:
            if not self.count:
                self.first = stamp(broker)
                self.first_count = len(records)
            self.count += len(records)
            self.handovers += 1
            if self.count >= n:
                self.done.set()

        def start(self) -> None:
            pass

        def stop(self, deadline: float) -> None:
            pass

        @property
        def pending(self) -> int:
            return 0

    return Probe()


def watch_block(model: Path, frames: list[np.ndarray], mqtt_url: str | None, folder: Path,
                sinks_wanted: set[str], threads: int | None, broker: Broker,
                stub: Stub | None = None) -> dict[str, Any]:  # fmt: skip
    from pyinspect.sources import IterableSource
    from pyinspect.watch import Station

    sinks: list[dict[str, Any]] = []
    if "jsonl" in sinks_wanted:
        sinks.append({"type": "jsonl", "path": str(folder / "records.jsonl")})
    if mqtt_url and "mqtt" in sinks_wanted:
        sinks.append({"type": "mqtt", "url": mqtt_url})
    model_cfg: dict[str, Any] = {"path": str(model)}
    if threads is not None:
        model_cfg["threads"] = threads
    cfg = {"station": {"run_dir": str(folder / "run")}, "model": model_cfg,
           "metrics": {"listen": "127.0.0.1:0"}, "sink": sinks}  # fmt: skip
    probe = make_probe(len(frames), broker)
    release = threading.Event()

    def feed() -> Any:  # the source and inference threads live on until measured
        yield from frames
        release.wait()

    station = Station(cfg, sources=[IterableSource(feed(), "cam", queue=4)], sinks=[probe])
    if stub is not None:
        stub.next = 0.0
        station.inspector.run_prepared = stub  # type: ignore[method-assign]
    try:
        station.start()
        probe.done.wait(600)
        while any(s.pending for s in station.sinks):
            time.sleep(0.001)
        wall, cpu, threads_end, b_end, wakes_end = stamp(broker)
    finally:
        release.set()
        station.stop()
        station.run()  # joins what start() began and closes
    assert probe.first is not None
    w0, c0, threads0, b0, wakes0 = probe.first
    per_thread: dict[str, float] = {}
    for name, end in threads_end.items():
        group = _thread_group(name)
        per_thread[group] = per_thread.get(group, 0.0) + end - threads0.get(name, 0.0)
    wakes: dict[str, int] = {}
    for name, end_n in wakes_end.items():
        group = _thread_group(name)
        wakes[group] = wakes.get(group, 0) + end_n - wakes0.get(name, 0)
    return {"wall": wall - w0, "cpu": cpu - c0, "frames": len(frames) - probe.first_count,
            "threads": per_thread, "wakeups": wakes, "broker": b_end - b0,
            "handovers": probe.handovers}  # fmt: skip


def copy_cost_us(shape: tuple[int, ...]) -> float:
    a = np.zeros(shape, np.uint8)
    n = 2000
    return min(timeit.repeat(a.copy, number=n, repeat=5)) / n * 1e6


def main(argv: list[str] | None = None) -> int:
    p = common.arg_parser(__doc__)
    p.add_argument("--model", type=Path, default=common.SHIPPED)
    p.add_argument("--frames", type=int, default=500)
    p.add_argument("--blocks", type=int, default=3)
    p.add_argument("--threads", type=int, help="the station's runner threads (default: its own)")
    p.add_argument("--sinks", default="jsonl,mqtt", help="comma-separated: jsonl, mqtt")
    p.add_argument("--no-cpu", action="store_true", help="skip the stub blocks (cpu rows)")
    p.add_argument("--stub-period-ms", type=float,
                   help="the stub's time per frame (default: the first bare block's)")  # fmt: skip
    p.add_argument("--out", type=Path, help="result JSON path (default benchmarks/results/...)")
    args = p.parse_args(argv)
    sinks_wanted = {s.strip() for s in args.sinks.split(",") if s.strip()}
    if not sinks_wanted <= {"jsonl", "mqtt"}:
        p.error(f"--sinks: expected jsonl and/or mqtt, got {args.sinks!r}")
    sys.path.insert(0, str(common.ROOT / "tests"))
    from line_helpers import MOSQUITTO, Mosquitto

    from pyinspect import Inspector

    facts = common.machine_facts()
    frames = [common.bench_frame(seed=s) for s in range(10)] * (args.frames // 10 + 1)
    frames = frames[: args.frames]
    rows: dict[str, list[dict[str, Any]]] = {"bare": [], "watch": [], "bare_stub": [],
                                             "watch_stub": []}  # fmt: skip
    use_mqtt = MOSQUITTO is not None and "mqtt" in sinks_wanted
    with tempfile.TemporaryDirectory() as tmp:
        mq = None
        if use_mqtt:
            mq = Mosquitto(Path(tmp) / "mosquitto")
            mq.start()
        broker = Broker(mq.proc if mq else None)
        url = mq.url if mq else None
        try:
            with Inspector(args.model) as insp:
                insp.run(frames[0])  # warm-up
                stub: Stub | None = None
                for b in range(args.blocks):
                    common.log(f"block {b + 1}/{args.blocks}: bare")
                    w, c = bare_block(insp, frames)
                    rows["bare"].append({"wall": w, "cpu": c, "frames": len(frames) - 1})
                    common.log(f"block {b + 1}/{args.blocks}: watch")
                    folder = Path(tmp) / f"w{b}"
                    rows["watch"].append(
                        watch_block(args.model, frames, url, folder, sinks_wanted, args.threads,
                                    broker)
                    )  # fmt: skip
                    if args.no_cpu:
                        continue
                    if stub is None:
                        first = rows["bare"][0]
                        period = first["wall"] / first["frames"]
                        if args.stub_period_ms:
                            period = args.stub_period_ms * 1e-3
                        stub = Stub(insp.run(frames[0]), period)
                    common.log(f"block {b + 1}/{args.blocks}: stubs")
                    w, c = bare_stub_block(insp, frames, stub)
                    rows["bare_stub"].append({"wall": w, "cpu": c, "frames": len(frames) - 1})
                    rows["watch_stub"].append(
                        watch_block(args.model, frames, url, Path(tmp) / f"s{b}", sinks_wanted,
                                    args.threads, broker, stub)
                    )  # fmt: skip
        finally:
            if mq is not None:
                mq.stop()
    facts = common.finish(facts)
    n = args.frames

    def per_frame(r: dict[str, Any], what: str) -> float:
        """ms per frame of one block (each block's clock covers ``r["frames"]`` frames)."""
        return r[what] / r["frames"] * 1e3

    def med(key: str, what: str) -> float:
        vals = [per_frame(r, what) for r in rows[key]]
        return statistics.median(vals) if vals else float("nan")

    def paired(a: str, b: str, what: str) -> float:
        """Median over block pairs of b - a (each pair ran back to back: drifts cancel)."""
        d = [per_frame(y, what) - per_frame(x, what) for x, y in zip(rows[a], rows[b], strict=True)]
        return statistics.median(d) if d else float("nan")

    per = {k: {"wall_ms": med(k, "wall"), "cpu_ms": med(k, "cpu"), "blocks": v}
           for k, v in rows.items()}  # fmt: skip
    added_wall = per["watch"]["wall_ms"] - per["bare"]["wall_ms"]
    added_cpu = per["watch"]["cpu_ms"] - per["bare"]["cpu_ms"]
    added_wall_paired = paired("bare", "watch", "wall")
    station_cpu = per["watch_stub"]["cpu_ms"] - per["bare_stub"]["cpu_ms"]
    stub_rows = rows["watch_stub"]
    groups = sorted({g for r in stub_rows for g in r["threads"]})
    thread_ms = {g: statistics.median(r["threads"].get(g, 0.0) / r["frames"] for r in stub_rows)
                 * 1e3 for g in groups}  # fmt: skip
    wakeups = {g: statistics.median(r["wakeups"].get(g, 0) / r["frames"] for r in stub_rows)
               for g in sorted({g for r in stub_rows for g in r["wakeups"]})}  # fmt: skip
    broker_ms = {k: statistics.median(r["broker"] / r["frames"] for r in rows[k]) * 1e3
                 if rows[k] else float("nan") for k in ("watch", "watch_stub")}  # fmt: skip
    per_handover = {k: statistics.median(len(frames) / r["handovers"] for r in rows[k])
                    if rows[k] else float("nan") for k in ("watch", "watch_stub")}  # fmt: skip
    period_ms = stub.period_s * 1e3 if stub is not None else float("nan")
    copies = {"512x512": copy_cost_us((512, 512)), "1024x1040": copy_cost_us((1024, 1040))}
    command = common.command_line("benchmarks/watch.py", argv)
    sink_names = sorted(s for s in sinks_wanted if s != "mqtt" or use_mqtt)
    result = {"facts": facts, "model": common.rel(args.model), "frames": n,
              "blocks": args.blocks, "sinks": [*sink_names, "metrics"], "threads": args.threads,
              "per_frame": per, "added_wall_ms": added_wall,
              "added_wall_paired_ms": added_wall_paired, "added_cpu_ms": added_cpu,
              "station_cpu_ms": station_cpu, "station_thread_cpu_ms": thread_ms,
              "station_thread_wakeups_per_frame": wakeups, "stub_period_ms": period_ms,
              "records_per_handover": per_handover, "broker_cpu_ms": broker_ms,
              "frame_copy_us": copies, "target_ms": TARGET_MS,
              "machine_idle": machine_idle(facts), "command": command}  # fmt: skip
    lines = [
        "# pyinspect watch: added cost per frame", "", common.describe(facts), "",
        f"Model `{common.rel(args.model)}`, {n} frames per block, {args.blocks} blocks of each,"
        f" alternating; sinks: {' + '.join(sink_names)} + metrics; station runner threads:"
        f" {args.threads or 'default'}.", "",
        "| loop | wall ms/frame (median) | CPU ms/frame (median) |", "|---|---|---|",
        f"| bare `Inspector.run` | {per['bare']['wall_ms']:.3f} | {per['bare']['cpu_ms']:.3f} |",
        f"| `watch` | {per['watch']['wall_ms']:.3f} | {per['watch']['cpu_ms']:.3f} |",
        f"| added | {added_wall:+.3f} | {added_cpu:+.3f} |", "",
        f"Added wall time, median of the {len(rows['watch'])} back-to-back block pairs:"
        f" {added_wall_paired:+.3f} ms/frame; records per hand-over to the sinks (median):"
        f" {per_handover['watch']:.1f}.", "",
    ]  # fmt: skip
    if rows["watch_stub"]:
        lines += [
            f"Station's own CPU time (inference stubbed, {per['bare_stub']['cpu_ms']:.3f} ms/frame"
            f" of the bare stub loop subtracted): **{station_cpu:.3f} ms/frame**; by thread (ms"
            "/frame): " + ", ".join(f"{g} {v:.3f}" for g, v in thread_ms.items()) + "; local"
            f" mosquitto {broker_ms['watch_stub']:.3f} ms/frame (real blocks:"
            f" {broker_ms['watch']:.3f}). The stub takes {period_ms:.3f} ms per frame; records"
            f" per hand-over {per_handover['watch_stub']:.1f}; wake-ups per frame by thread: "
            + ", ".join(f"{g} {v:.2f}" for g, v in wakeups.items()) + ".", "",
        ]  # fmt: skip
    lines += [
        f"frame_copy: {copies['512x512']:.1f} us (512x512), {copies['1024x1040']:.1f} us"
        " (1024x1040)", "",
        verdict(facts, added_wall),
    ]  # fmt: skip
    report = common.end_report(lines, [], command)
    common.write_results(result, args.out or fresh(common.result_path("watch", facts)), report)
    return 0


def machine_idle(facts: dict[str, Any]) -> bool:
    """Whether the machine was free enough for wall time to mean anything: a load average below
    half its CPUs at the start and at the end. (On a loaded machine the station's extra
    threads can even win the runner CPU time from the other load, so ``watch`` beats the bare
    loop: a PASS there would be no evidence.)"""
    cpus = facts.get("logical_cpus") or 1
    loads = [facts.get("load_avg_1m"), facts.get("load_avg_1m_end")]
    return all(x is not None and x < cpus / 2 for x in loads)


def verdict(facts: dict[str, Any], added_wall: float) -> str:
    what = f"added wall time {added_wall:+.3f} ms/frame <= {TARGET_MS} ms"
    if machine_idle(facts):
        return common.target_line(added_wall <= TARGET_MS, what)
    return (f"- NOT MEASURED: {what}: the machine was loaded (load {facts.get('load_avg_1m')}"
            f" at start, {facts.get('load_avg_1m_end')} at end, {facts.get('logical_cpus')}"
            " CPUs), so wall time says nothing about the target; see the station's own CPU"
            " time above")  # fmt: skip


def fresh(path: Path) -> Path:
    """``path``, or ``<stem>-2``, ``-3``, ... when a result of that name is there already."""
    out, k = path, 1
    while out.exists() or out.with_suffix(".md").exists():
        k += 1
        out = path.with_name(f"{path.stem}-{k}{path.suffix}")
    return out


if __name__ == "__main__":
    sys.exit(main())
