"""Frames/s and p50/p99 latency of the Triton frame model against the in-process Inspector.

The model is exported with ``pyinspect export triton`` (1 and 2 instances) and served by the
real ``tritonserver`` of the nvidia-pytriton wheel on 127.0.0.1 (``make serve-env`` unpacks it
and builds the serving environment). 1, 4 and 16 concurrent clients, each with its own
tritonclient client, send 512×512 gray frames one at a time over HTTP and gRPC; the in-process
rows run the same frames through ``Inspector.run`` in as many threads, one Inspector per thread
(threads = physical cores / clients), in the same run. Also: the patch path at one client
(``Inspector("grpc://...")`` on the ONNX Runtime stand-in) and the uint8 tiler against the C++
float tiler. Target: the gRPC frame model adds <= 1.0 ms p50 per frame over in-process at one
client.

  python benchmarks/serve.py                      # the committed run (about a minute)
  python benchmarks/serve.py --frames 200 --clients 1,4,16 --instances 1,2
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import common
import numpy as np

ROOT = common.ROOT
GOAL_MS = 1.0


def _percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def _run_clients(
    clients: int, frames_each: int, make: Callable[[], Callable[[np.ndarray], Any]]
) -> dict[str, float]:
    """``clients`` threads, each with its own ``make()`` callable, each inspecting
    ``frames_each`` frames after 3 warm-up frames; returns frames/s and latency percentiles."""
    frames = [common.bench_frame(seed) for seed in range(8)]
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[BaseException] = []
    ready = threading.Barrier(clients + 1)
    go = threading.Event()

    def worker(k: int) -> None:
        try:
            call = make()
            for f in frames[:3]:
                call(f)
        except BaseException as exc:
            errors.append(exc)
            ready.wait()
            return
        ready.wait()
        go.wait()
        try:
            for i in range(frames_each):
                t = time.perf_counter_ns()
                call(frames[i % len(frames)])
                latencies[k].append((time.perf_counter_ns() - t) * 1e-6)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    ready.wait()
    start = time.perf_counter()
    go.set()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    if errors:
        raise errors[0]
    every = [v for lat in latencies for v in lat]
    return {
        "frames": len(every),
        "frames_per_s": len(every) / wall,
        "p50_ms": statistics.median(every),
        "p99_ms": _percentile(every, 99),
    }


def _frame_client(protocol: str, url: str, model: str) -> Callable[[], Callable[[np.ndarray], Any]]:
    def make() -> Callable[[np.ndarray], Any]:
        if protocol == "grpc":
            import tritonclient.grpc as module
        else:
            import tritonclient.http as module
        client = module.InferenceServerClient(url)

        def call(frame: np.ndarray) -> Any:
            tensor = module.InferInput("FRAME", list(frame.shape), "UINT8")
            tensor.set_data_from_numpy(frame)
            return client.infer(model, [tensor]).as_numpy("DEFECTIVE")

        return call

    return make


def _in_process(model: Path, clients: int) -> Callable[[], Callable[[np.ndarray], Any]]:
    from pyinspect.backends.base import physical_cores
    from pyinspect.inspector import Inspector

    def make() -> Callable[[np.ndarray], Any]:
        return Inspector(model, threads=max(1, physical_cores() // clients)).run

    return make


def _tiling_us() -> dict[str, float]:
    """Median µs to cut a 512×512 frame into the 9 patches: uint8 (``tile_uint8``) and float32
    (the C++ tiler), gray -> 1 channel and BGR -> 3."""
    from pyinspect.backends.triton import tile_uint8
    from pyinspect.tiling import Tiler, patch_grid

    boxes = patch_grid(512, 512)
    gray = common.bench_frame(0)
    bgr = np.dstack([gray, common.bench_frame(1), common.bench_frame(2)])
    cases = {
        "uint8_gray": (lambda o: tile_uint8(gray, o, boxes), np.uint8, 1),
        "float32_gray_cpp": (lambda o: Tiler(0.0, 1 / 255, 1)(gray, o, boxes), np.float32, 1),
        "uint8_bgr": (lambda o: tile_uint8(bgr, o, boxes), np.uint8, 3),
        "float32_bgr_cpp": (lambda o: Tiler(0.0, 1 / 255, 3)(bgr, o, boxes), np.float32, 3),
    }
    out: dict[str, float] = {}
    for name, (fn, dtype, c) in cases.items():
        buf = np.empty((9, c, 224, 224), dtype=dtype)
        times = []
        for _ in range(300):
            t = time.perf_counter_ns()
            fn(buf)
            times.append((time.perf_counter_ns() - t) / 1e3)
        out[name] = statistics.median(times)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = common.arg_parser(__doc__)
    parser.add_argument("--model", type=Path, default=common.SHIPPED)
    parser.add_argument("--frames", type=int, default=40, help="frames per client (40)")
    parser.add_argument("--clients", default="1,4,16", help="concurrent clients (1,4,16)")
    parser.add_argument("--instances", default="1,2", help="frame-model instances (1,2)")
    parser.add_argument("--protocols", default="http,grpc")
    parser.add_argument("--out", type=Path, default=None, help="results JSON (.md beside it)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from pyinspect.export.triton import export_triton
    from pyinspect.export.triton_server import LocalTritonServer
    from pyinspect.inspector import Inspector

    clients = [int(c) for c in args.clients.split(",")]
    instances = [int(i) for i in args.instances.split(",")]
    protocols = args.protocols.split(",")
    facts = common.machine_facts()
    rows: list[dict[str, Any]] = []
    for c in clients:
        common.log(f"in-process, {c} client(s)")
        rows.append({"path": "in-process", "instances": None, "clients": c,
                     **_run_clients(c, args.frames, _in_process(args.model, c))})  # fmt: skip
    patch_row: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory() as tmp:
        for n in instances:
            repo = Path(tmp) / f"repo-{n}"
            export_triton(args.model, repo, instances=n, patch_backend="python")
            stem = args.model.stem
            server = LocalTritonServer([repo], models=[f"{stem}_frame", f"{stem}_patch"])
            ready_s = server.start(timeout=120)
            common.log(f"{n} instance(s): server ready in {ready_s:.1f} s")
            try:
                for protocol in protocols:
                    url = server.grpc_url if protocol == "grpc" else server.http_url
                    for c in clients:
                        common.log(f"  {protocol}, {c} client(s)")
                        make = _frame_client(protocol, url, f"{stem}_frame")
                        stats = _run_clients(c, args.frames, make)
                        path = f"frame model, {protocol}"
                        rows.append({"path": path, "instances": n, "clients": c, **stats})
                if n == instances[0]:
                    remote = server.model_url(f"{stem}_patch")
                    common.log("  patch path, grpc, 1 client")
                    stats = _run_clients(1, args.frames, lambda url=remote: Inspector(url).run)
                    path = "patch model (Inspector grpc://, ORT stand-in)"
                    patch_row = {"path": path, "instances": n, "clients": 1, **stats}
            finally:
                server.close()
    if patch_row is not None:
        rows.append(patch_row)
    tiling = _tiling_us()
    facts = common.finish(facts)
    inproc = next(r for r in rows if r["path"] == "in-process" and r["clients"] == 1)
    grpc1 = next((r for r in rows if r["path"] == "frame model, grpc" and r["clients"] == 1), None)
    added = None if grpc1 is None else grpc1["p50_ms"] - inproc["p50_ms"]
    command = common.command_line("benchmarks/serve.py", argv)
    lines = [
        "# Triton frame model vs in-process Inspector",
        "",
        common.describe(facts),
        "",
        "| path | instances | clients | frames/s | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['path']} | {r['instances'] or '-'} | {r['clients']} |"
            f" {r['frames_per_s']:.1f} | {common.fmt_ms(r['p50_ms'])} |"
            f" {common.fmt_ms(r['p99_ms'])} |"
        )
    lines += [
        "",
        "Tiling a 512×512 frame into 9 patches (median µs): "
        + ", ".join(f"{k} {v:.0f}" for k, v in tiling.items()),
        "Wire bytes per 512×512 gray frame to the patch model: uint8 451,584, float32 1,806,336.",
        "",
    ]
    if added is not None:
        lines.append(
            common.target_line(
                added <= GOAL_MS,
                f"gRPC frame model adds {added:.2f} ms p50 over in-process at 1 client"
                f" (goal <= {GOAL_MS} ms)",
            )
        )
    report = common.end_report(lines, [], command)
    result = {"machine": facts, "rows": rows, "tiling_us": tiling, "grpc_added_p50_ms": added,
              "goal_ms": GOAL_MS, "command": command}  # fmt: skip
    common.write_results(result, args.out or common.result_path("serve", facts), report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
