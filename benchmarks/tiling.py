"""Tiling benchmark: the C++ tiler into a preallocated buffer vs a vectorised NumPy reference.

One 512x512 frame (gray, as DAGM, and BGR), the 3x3 grid of 224 px patches, every output format
(float32/float16 x 1/3 channels), C++ with 1 and 2 threads; median of ``--runs`` timed calls
after a warm-up. Writes ``benchmarks/results/tiling-<host>-<date>.json`` and
``benchmarks/results/tiling.md`` and prints the Markdown table.

    .venv/bin/python benchmarks/tiling.py [--runs 300]

Acceptance (the issue): C++ float32, 3 channels, 1 thread >= 3x faster than NumPy.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common, when imported from tests
import common

from pyinspect import _core
from pyinspect.tiling import patch_grid, tile_into

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
LUMA = np.array([0.114, 0.587, 0.299], np.float32)  # weights of B, G, R


def numpy_tiler(
    frame: np.ndarray, boxes: np.ndarray, out: np.ndarray, mean: tuple, std: tuple
) -> Callable[[], None]:
    """The vectorised NumPy version: windows, one fancy-index gather, one broadcast
    multiply-add written into the preallocated ``out`` (float32 scratch first for float16)."""
    p = int(boxes[0, 2])
    xs, ys = boxes[:, 0], boxes[:, 1]
    c_out = out.shape[1]
    scale = (1.0 / (255.0 * np.asarray(std[:c_out]))).astype(np.float32)[:, None, None]
    offset = (-np.asarray(mean[:c_out]) / np.asarray(std[:c_out])).astype(np.float32)[:, None, None]
    acc = out if out.dtype == np.float32 else np.empty(out.shape, np.float32)

    def crops() -> np.ndarray:
        if frame.ndim == 2:
            return sliding_window_view(frame, (p, p))[ys, xs][:, None]  # (N, 1, P, P)
        bgr = sliding_window_view(frame, (p, p), axis=(0, 1))[ys, xs]  # (N, 3, P, P)
        if c_out == 3:
            return bgr[:, ::-1]  # RGB
        return np.einsum("ncij,c->nij", bgr, LUMA)[:, None]

    def run() -> None:
        np.multiply(crops(), scale, out=acc)
        np.add(acc, offset, out=acc)
        if acc is not out:
            out[...] = acc

    return run


def cpp_tiler(
    frame: np.ndarray, boxes: np.ndarray, out: np.ndarray, threads: int
) -> Callable[[], None]:
    c_out = out.shape[1]
    mean, std = list(MEAN[:c_out]), list(STD[:c_out])
    return lambda: _core.tile_into(frame, out, boxes, mean, std, threads)


def wrapper_tiler(frame: np.ndarray, boxes: np.ndarray, out: np.ndarray) -> Callable[[], None]:
    c_out = out.shape[1]
    mean, std = MEAN[:c_out], STD[:c_out]
    return lambda: tile_into(frame, out, boxes, mean, std)


def median_ms(fn: Callable[[], None], runs: int, warmup: int = 20) -> float:
    for _ in range(warmup):
        fn()
    times = np.empty(runs)
    for i in range(runs):
        t0 = time.perf_counter_ns()
        fn()
        times[i] = time.perf_counter_ns() - t0
    return float(np.median(times)) / 1e6


def thread_start_us(runs: int) -> float:
    """What a second thread costs: a 1-pixel tile with 2 threads minus with 1."""
    frame = np.zeros((1, 1), np.uint8)
    boxes = np.zeros((2, 4), np.int32)
    boxes[:, 2:] = 1
    out = np.empty((2, 1, 1, 1), np.float32)

    def call(threads: int) -> Callable[[], None]:
        return lambda: _core.tile_into(frame, out, boxes, [0.0], [1.0], threads)

    ms = [median_ms(call(t), runs) for t in (1, 2)]
    return (ms[1] - ms[0]) * 1e3


def machine_facts() -> dict[str, object]:
    """The machine (``common.machine_facts``) and what a second tiler thread costs on it."""
    return {**common.machine_facts(), "thread_start_us": round(thread_start_us(200), 1)}


def run(runs: int) -> dict[str, object]:
    rng = np.random.default_rng(0)
    frames = {
        "gray": rng.integers(0, 256, (512, 512), dtype=np.uint8),
        "bgr": rng.integers(0, 256, (512, 512, 3), dtype=np.uint8),
    }
    boxes = patch_grid(512, 512)
    rows = []
    for frame_name, frame in frames.items():
        for dtype in (np.float32, np.float16):
            for c_out in (3, 1):
                out = np.empty((len(boxes), c_out, 224, 224), dtype)
                ref = np.empty_like(out)
                numpy_ms = median_ms(numpy_tiler(frame, boxes, ref, MEAN, STD), runs)
                cpp_tiler(frame, boxes, out, 1)()
                np.testing.assert_allclose(
                    out, ref, rtol=0, atol=2e-3 if dtype == np.float16 else 1e-5
                )
                row: dict[str, object] = {
                    "frame": frame_name,
                    "dtype": np.dtype(dtype).name,
                    "channels": c_out,
                    "numpy_ms": numpy_ms,
                }
                for threads in (1, 2):
                    row[f"cpp_{threads}t_ms"] = median_ms(
                        cpp_tiler(frame, boxes, out, threads), runs
                    )
                row["wrapper_auto_ms"] = median_ms(wrapper_tiler(frame, boxes, out), runs)
                row["speedup_1t"] = numpy_ms / float(row["cpp_1t_ms"])  # type: ignore[arg-type]
                rows.append(row)
    return {"machine": machine_facts(), "runs": runs, "patches": len(boxes), "rows": rows}


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [
        f"# Tiling benchmark ({m['host']}, {m['date']})",
        "",
        common.describe(m),
        "",
        f"Tiling kernel `{m['tile_kernel_isa']}`; a second thread costs {m['thread_start_us']}"
        f" us. 512x512 frame, 9 patches of 224, median of {result['runs']} runs, "
        "ms per frame (lower is better). 'wrapper, auto' is `pyinspect.tiling.tile_into` with "
        "threads=0.",
        "",
        "| frame | out | C | NumPy | C++ 1 thread | C++ 2 threads | wrapper, auto | speed-up 1t |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['frame']} | {r['dtype']} | {r['channels']} | {r['numpy_ms']:.3f} | "
            f"{r['cpp_1t_ms']:.3f} | {r['cpp_2t_ms']:.3f} | {r['wrapper_auto_ms']:.3f} | "
            f"{r['speedup_1t']:.1f}x |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = common.arg_parser(__doc__)
    parser.add_argument("--runs", type=int, default=300, help="timed calls per row (>= 200)")
    parser.add_argument("--out-dir", type=Path, default=common.RESULTS)
    args = parser.parse_args()
    result = run(args.runs)
    text = markdown(result)
    print(text)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    name = common.result_path("tiling", result["machine"]).name  # type: ignore[arg-type]
    (args.out_dir / name).write_text(json.dumps(result, indent=2) + "\n")
    (args.out_dir / "tiling.md").write_text(text)


if __name__ == "__main__":
    main()
