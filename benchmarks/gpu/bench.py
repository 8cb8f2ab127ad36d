"""GPU timings of the paper's networks with PyTorch on CUDA: batch-9 inference and a training step.

What runs on a GPU machine that has PyTorch (and timm, for the lite0 teacher) but no network and
nothing of pyinspect installed: only ``train/models.py`` (torch and timm) is imported, from this
checkout. Random-initialised weights: step and inference times do not depend on the values.

* Inference, batch 9 (one 512×512 frame's patches), 3×224×224, for VGG16 (the paper's teacher,
  57.43 ms on a TITAN Xp, Table 5), the lite0 teacher and the (4,8,16,4,4) student (paper 1.46
  ms): fp32 and fp16, each with CUDA graphs off and on. This is what ``pyinspect``'s torch
  backend does on CUDA (fp16 by default, a captured graph replayed per batch; see
  pyinspect/backends/torch.py); the model is timed alone, without tiling and voting.
* Training, one SGD step (batch 32, lr 1e-3, momentum 0.9, cross-entropy: train/fit.py's
  defaults) of each teacher in fp32.

Each row: the median and p90 over ``--iters`` timed calls after ``--warmup`` untimed ones,
synchronised per call. Results: ``OUTDIR/gpu-bench.json`` and ``OUTDIR/gpu-bench.md``, with the
GPU, driver, CUDA and torch versions.

    bash benchmarks/gpu/run.sh OUTDIR             # on the GPU machine (≤ 8 minutes)
    bash benchmarks/gpu/run.sh OUTDIR --dry-run   # on a CPU: 1 call each, tiny batches (tests)
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from train.models import NUM_CLASSES, PATCH, lite0, student, vgg16  # noqa: E402

#: The paper's Table 5 (NVIDIA TITAN Xp, batch 9), ms per frame.
PAPER_MS = {"vgg16": 57.43, "student": 1.46}
BATCH = 9
TRAIN_BATCH = 32


def build(arch: str) -> nn.Module:
    if arch == "vgg16":
        return vgg16(init="scratch")
    if arch == "lite0":
        return lite0(init="scratch")
    return student()


def timed(fn: Callable[[], Any], sync: Callable[[], None], warmup: int, iters: int) -> list[float]:
    """Milliseconds of ``iters`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    sync()
    out = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        sync()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return {"median_ms": statistics.median(times), "p90_ms": p90, "n": len(times)}


def infer_rows(
    arch: str, device: torch.device, batch: int, warmup: int, iters: int, graphs: bool
) -> list[dict[str, Any]]:
    """Inference of ``arch`` at ``batch``: fp32 and (on CUDA) fp16, CUDA graphs off / on."""
    rows = []
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for dtype in (torch.float32, torch.float16) if cuda else (torch.float32,):
        model = build(arch).eval().to(device=device, dtype=dtype)
        x = torch.randn(batch, 3, PATCH, PATCH, device=device, dtype=dtype)
        for graph in (False, True) if (cuda and graphs) else (False,):
            with torch.inference_mode():
                if graph:
                    stream = torch.cuda.Stream()
                    stream.wait_stream(torch.cuda.current_stream())
                    with torch.cuda.stream(stream):  # warm up on a side stream before capture
                        for _ in range(3):
                            model(x)
                    torch.cuda.current_stream().wait_stream(stream)
                    cuda_graph = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(cuda_graph):
                        model(x)
                    fn: Callable[[], Any] = cuda_graph.replay
                else:

                    def fn(model: nn.Module = model, x: torch.Tensor = x) -> Any:
                        return model(x)

                times = timed(fn, sync, warmup, iters)
            row = {
                "kind": "inference",
                "model": arch,
                "batch": batch,
                "dtype": str(dtype).removeprefix("torch."),
                "cuda_graph": graph,
                **summary(times),
            }
            if arch in PAPER_MS and batch == BATCH:
                row["paper_ms"] = PAPER_MS[arch]
                row["paper_over_ours"] = PAPER_MS[arch] / row["median_ms"]
            rows.append(row)
        del model
    return rows


def train_row(arch: str, device: torch.device, batch: int, warmup: int, iters: int) -> dict:
    """One SGD step (forward, cross-entropy, backward, update) of ``arch`` in fp32."""
    model = build(arch).train().to(device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.randn(batch, 3, PATCH, PATCH, device=device)
    y = torch.randint(0, NUM_CLASSES, (batch,), device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    return {"kind": "train_step", "model": arch, "batch": batch, "dtype": "float32",
            **summary(timed(step, sync, warmup, iters))}  # fmt: skip


def machine(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "host": platform.node(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            gpu=props.name,
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            compute_capability=f"{props.major}.{props.minor}",
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
        )
    else:
        info["cpu"] = platform.processor() or platform.machine()
    return info


def markdown(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    where = m.get("gpu") or f"CPU ({m.get('cpu')}), dry run"
    lines = [
        f"# GPU timings: {where}",
        "",
        f"`{doc['command']}` on {m['host']}, {doc['started']}; torch {m['torch']}"
        + (f", CUDA {m['cuda']}, cuDNN {m['cudnn']}" if "cuda" in m else "")
        + ". Random-initialised weights; medians over the timed calls.",
        "",
        "| kind | model | batch | dtype | CUDA graph | median ms | p90 ms | paper ms (TITAN Xp) |",
        "|---|---|---:|---|---|---:|---:|---:|",
    ]
    for r in doc["rows"]:
        graph = {True: "on", False: "off"}.get(r.get("cuda_graph"), "")
        paper = f"{r['paper_ms']:.2f}" if "paper_ms" in r else ""
        lines.append(
            f"| {r['kind']} | {r['model']} | {r['batch']} | {r['dtype']} | {graph} |"
            f" {r['median_ms']:.3f} | {r['p90_ms']:.3f} | {paper} |"
        )
    if doc["skipped"]:
        lines += ["", "Skipped: " + "; ".join(doc["skipped"])]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--dry-run", action="store_true", help="CPU, one call each, tiny batches")
    ap.add_argument("--iters", type=int, default=200, help="timed inference calls per row")
    ap.add_argument("--train-iters", type=int, default=30, help="timed training steps per row")
    ap.add_argument("--warmup", type=int, default=20)
    args = ap.parse_args(argv)
    if args.dry_run:
        device = torch.device("cpu")
        batch, train_batch, iters, train_iters, warmup = 2, 2, 1, 1, 0
    elif not torch.cuda.is_available():
        print("gpu bench: no CUDA device (torch.cuda.is_available() is False); use --dry-run",
              file=sys.stderr)  # fmt: skip
        return 2
    else:
        device = torch.device("cuda")
        torch.backends.cudnn.benchmark = True
        batch, train_batch = BATCH, TRAIN_BATCH
        iters, train_iters, warmup = args.iters, args.train_iters, args.warmup
    args.outdir.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {
        "command": "bash benchmarks/gpu/run.sh OUTDIR" + (" --dry-run" if args.dry_run else ""),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(device),
        "rows": [],
        "skipped": [],
    }
    for arch in ("vgg16", "lite0", "student"):
        try:
            doc["rows"] += infer_rows(arch, device, batch, warmup, iters, graphs=True)
        except ImportError as exc:  # timm missing: the lite0 teacher cannot be built
            doc["skipped"].append(f"{arch} inference: {exc}")
        print(f"inference {arch}: done", flush=True)
    for arch in ("vgg16", "lite0"):
        try:
            doc["rows"].append(train_row(arch, device, train_batch, min(warmup, 5), train_iters))
        except ImportError as exc:
            doc["skipped"].append(f"{arch} training: {exc}")
        print(f"train step {arch}: done", flush=True)
    doc["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    (args.outdir / "gpu-bench.json").write_text(json.dumps(doc, indent=1) + "\n")
    (args.outdir / "gpu-bench.md").write_text(markdown(doc))
    print(markdown(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
