"""What every script in ``benchmarks/`` shares: the machine a number was measured on, the models
it times, the frame it times them on, and how it writes its results.

Run a script as ``python benchmarks/<name>.py``: the script's folder is then on ``sys.path``, so
``import common`` works (the tests put it there too). Library versions come from package
metadata, so nothing heavy (torch) is imported just to be named; nothing here imports pyinspect
at module level, so ``compare_base.py`` can load another pyinspect after importing this module.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import math
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MODELS = ROOT / "benchmarks" / "models"
SHIPPED = ROOT / "models" / "student.onnx"
RANDOM_NOTE = "random weights (timing only)"
LIBRARIES = (
    "pyinspect",
    "numpy",
    "onnxruntime",
    "onnxruntime-gpu",
    "openvino",
    "torch",
    "torchvision",
    "tensorrt",
    "opencv-python-headless",
    "opencv-python",
)


# ---- the machine -------------------------------------------------------------------------------
def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo``), or what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """The SIMD features that decide which kernels run (AVX2, AVX-512, AMX, ...)."""
    wanted = ("avx2", "fma", "f16c", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16")
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return [f for f in wanted if f in have]
    except OSError:
        pass
    return []


def gpus() -> list[dict[str, str]]:
    """NVIDIA GPUs as ``nvidia-smi`` reports them (empty without a GPU or driver)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run(
            [smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    rows = []
    for line in out.strip().splitlines():
        name, driver, memory = (part.strip() for part in line.split(",", 2))
        rows.append({"name": name, "driver": driver, "memory": memory})
    return rows


def library_versions() -> dict[str, str]:
    found = {}
    for name in LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def memory_gib() -> float | None:
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        return None
    m = re.search(r"MemTotal:\s+(\d+) kB", text)
    return round(int(m.group(1)) / 2**20, 1) if m else None


def load_avg() -> float | None:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def machine_facts() -> dict[str, Any]:
    """Host, date, CPU (model, logical and physical cores, SIMD flags, load), memory, GPUs,
    Python and library versions, and the tiler's kernel ISA."""
    from pyinspect.backends.base import physical_cores

    facts: dict[str, Any] = {
        "host": socket.gethostname(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "logical_cpus": os.cpu_count(),
        "physical_cores": physical_cores(),
        "load_avg_1m": load_avg(),
        "memory_gib": memory_gib(),
        "gpus": gpus(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "libraries": library_versions(),
    }
    try:
        from pyinspect import _core

        facts["core_version"] = _core.__version__
        facts["tile_kernel_isa"] = _core.tile_kernel_isa()
        # the direct student runner's kernel levels here; "auto" runs the last
        facts["student_kernel_isas"] = list(getattr(_core, "student_kernel_isas", list)())
    except ImportError:
        pass
    return facts


def finish(facts: dict[str, Any]) -> dict[str, Any]:
    """Record the load at the end too: a run is only as quiet as its noisiest minute."""
    if hasattr(os, "getloadavg"):
        facts["load_avg_1m_end"] = load_avg()
    return facts


def describe(facts: dict[str, Any]) -> str:
    """One Markdown paragraph naming the machine, for the head of a results table."""
    gpu = ", ".join(g["name"] for g in facts["gpus"]) or "no GPU"
    libs = ", ".join(f"{k} {v}" for k, v in facts["libraries"].items() if k != "pyinspect")
    load = f"load {facts['load_avg_1m']} at start"
    if facts.get("load_avg_1m_end") is not None:
        load += f", {facts['load_avg_1m_end']} at end"
    return (
        f"{facts['cpu']} ({facts['physical_cores']} physical cores, {facts['logical_cpus']}"
        f" logical; {' '.join(facts['cpu_flags']) or 'no AVX2'}), {facts['memory_gib']} GiB,"
        f" {gpu}; {load}; Python {facts['python']}; {libs}."
    )


# ---- command line --------------------------------------------------------------------------------
def arg_parser(doc: str | None) -> argparse.ArgumentParser:
    """A script's parser, described by the first paragraph of its docstring; ``--help`` shows
    the rest (the commands to run) as written."""
    head, _, rest = (doc or "").strip().partition("\n\n")
    return argparse.ArgumentParser(
        description=head, epilog=rest, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def round_args(ap: argparse.ArgumentParser, *, iters: int) -> None:
    """``--threads``, ``--rounds`` and ``--iters`` (frames a path runs per round) of a script
    that times paths in interleaved rounds (``interleaved_rounds``)."""
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--iters", type=int, default=iters)


# ---- writing results ---------------------------------------------------------------------------
def log(text: str) -> None:
    """Progress goes to stderr, so stdout holds only the report."""
    print(text, file=sys.stderr, flush=True)


def result_path(kind: str, facts: dict[str, Any], suffix: str = ".json") -> Path:
    """``benchmarks/results/<kind>-<host>-<YYYY-MM-DD>.json``."""
    day = facts["date"][:10]
    host = re.sub(r"[^A-Za-z0-9_.-]", "_", facts["host"])
    return RESULTS / f"{kind}-{host}-{day}{suffix}"


def command_line(script: str, argv: Sequence[str] | None) -> str:
    """The command that reproduces a run, as its report quotes it."""
    return " ".join(["python", script, *(sys.argv[1:] if argv is None else argv)])


def json_safe(value: Any) -> Any:
    """NaN (a figure that does not apply) -> null, so the file is strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def write_results(result: dict[str, Any], json_path: Path, report: str) -> Path:
    """Write ``result`` as strict JSON and ``report`` as the ``.md`` beside it; print the
    report (stdout) and where both went (stderr)."""
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(json_safe(result), indent=2) + "\n", encoding="utf-8")
    json_path.with_suffix(".md").write_text(report, encoding="utf-8")
    print(report)
    log(f"wrote {json_path} and {json_path.with_suffix('.md').name}")
    return json_path


def target_line(passed: bool, text: str) -> str:
    """A report's verdict on one target: ``- PASS: text`` or ``- FAIL: text``."""
    return f"- {'PASS' if passed else 'FAIL'}: {text}"


def end_report(lines: list[str], skipped: list[dict[str, str]], command: str) -> str:
    """The report's end, as text: each model and path that was skipped, with the reason, then
    the command that reproduces the run."""
    lines += [f"- skipped {s['model']} on {s['backend']}: {s['reason']}" for s in skipped]
    lines += ["", f"Command: `{command}`"]
    return "\n".join(lines) + "\n"


def rel(path: Path) -> str:
    """``path`` relative to the checkout when it lies inside it (result files stay portable)."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def fmt_ms(v: float | None) -> str:
    """Milliseconds with the digits that matter at that size; ``n/a`` for a missing figure."""
    if v is None or math.isnan(v):
        return "n/a"
    return f"{v:.3f}" if v < 10 else (f"{v:.1f}" if v < 1000 else f"{v:,.0f}")


# ---- what is timed -------------------------------------------------------------------------------
def bench_frame(seed: int = 0) -> np.ndarray:
    """A 512x512 uint8 gray frame (DAGM's size and format); content does not change timing."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (512, 512), dtype=np.uint8)


#: One timed path: the object that owns the compute (closed at the end, and whose
#: ``last_stages``, where it has them, are the layer times of its thread 0) and
#: frame -> InspectionResult.
TimedPath = tuple[Any, Callable[[np.ndarray], Any]]


class Call(NamedTuple):
    """One timed frame: wall ms, the InspectionResult, and the owner's layer times (conv1-5 then
    FC, ms, thread 0) right after the call; None where the owner has none."""

    ms: float
    result: Any
    layers: list[float] | None


def interleaved_rounds(
    paths: Mapping[str, TimedPath], frames_: list[np.ndarray], rounds: int, iters: int
) -> Iterator[tuple[str, list[Call]]]:
    """Every path once over ``frames_`` (warm-up), then ``rounds`` interleaved rounds (A, B, C,
    A, B, C): yields ``(name, calls)`` for each path in each round, ``iters`` frames (cycling
    through ``frames_``)."""
    for _, run in paths.values():
        for f in frames_:
            run(f)
    for r in range(rounds):
        for name, (owner, run) in paths.items():
            calls = []
            for i in range(iters):
                f = frames_[(r * iters + i) % len(frames_)]
                t0 = time.perf_counter_ns()
                res = run(f)
                ms = (time.perf_counter_ns() - t0) * 1e-6
                last = getattr(owner, "last_stages", None)
                layers = [*last["layers_ms"], last["fc_ms"]] if last else None
                calls.append(Call(ms, res, layers))
            yield name, calls


def median_layers(samples: list[list[float]]) -> dict[str, float]:
    """The per-layer medians of ``Call.layers`` samples: ``{"conv1": ms, ..., "fc": ms}``."""
    e = np.median(np.array(samples), axis=0)
    return {**{f"conv{i + 1}": float(e[i]) for i in range(5)}, "fc": float(e[5])}


@dataclass(frozen=True)
class Model:
    """One network to time: ``role`` is teacher or student (it sets the minimum run count)."""

    key: str
    role: str
    title: str
    path: Path
    weights: str
    parameters: int | None = None
    channels: int = 3


def model_entry(key: str, role: str, title: str, path: Path) -> Model:
    """A model file described from its sidecar (weights: random, trained or unknown)."""
    from pyinspect.spec import ModelSpec

    spec = ModelSpec.for_model(path)
    prov = spec.provenance
    if prov.preset == "benchmark-random":
        weights = RANDOM_NOTE
    else:
        weights = "trained" if prov.accuracy is not None else "weights of unknown origin"
    return Model(key, role, title, path, weights, prov.parameters, spec.input.channels)


def user_model(key: str, role: str, path: str | os.PathLike[str]) -> Model:
    p = Path(path)
    return model_entry(key, role, f"{role.title()} {p.name}", p)


def ensure_models(folder: Path, *, teacher: bool) -> list[Model]:
    """The benchmark's models, exported with random weights when absent (ONNX + sidecar + .pt2),
    and the shipped ``models/student.onnx`` when it is there."""
    wanted = [
        ("student", "student", "Student (4,8,16,4,4)", "student.onnx", False),
        ("student-folded", "student", "Student, folded 1-ch", "student_1ch.onnx", True),
    ]
    if teacher:
        wanted.insert(0, ("teacher", "teacher", "Teacher VGG16", "teacher.onnx", False))
    models = []
    for key, role, title, name, folded in wanted:
        path = folder / name
        if not (path.is_file() and path.with_name(name + ".json").is_file()):
            log(f"exporting {path} ({RANDOM_NOTE}) ...")
            t0 = time.perf_counter()
            export_random(path, arch="vgg16" if role == "teacher" else "student", folded=folded)
            log(f"  done in {time.perf_counter() - t0:.0f} s")
        models.append(model_entry(key, role, title, path))
    if SHIPPED.is_file() and SHIPPED.with_name(SHIPPED.name + ".json").is_file():
        models.append(model_entry("shipped", "student", "Shipped models/student.onnx", SHIPPED))
    return models


def export_random(path: Path, *, arch: str, folded: bool = False, pt2: bool = True) -> None:
    """Export ``arch`` with seeded random weights through ``train.export`` (the project's
    exporter, parity-checked against ONNX Runtime), plus ``<name>.pt2`` for the torch backend
    when ``pt2``. Timing and memory do not depend on the weights."""
    sys.path.insert(0, str(ROOT))
    import torch

    from train.export import export, fold
    from train.models import build_model, save_checkpoint

    torch.manual_seed(0)
    kwargs: dict[str, Any] = {"init": "scratch"} if arch == "vgg16" else {"c": [4, 8, 16, 4, 4]}
    model = build_model(arch, **kwargs).eval()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / f"{arch}.pt"
        meta = {"preset": "benchmark-random", "seed": 0}
        save_checkpoint(ckpt, model, arch, kwargs, None, meta)
        export(ckpt, path, folded=folded, provenance={"notes": f"{arch}, {RANDOM_NOTE}"})
    if pt2:
        net = fold(model, arch) if folded else model
        example = torch.zeros(2, 1 if folded else 3, 224, 224)
        batch = torch.export.Dim("batch", min=1, max=1024)
        with torch.no_grad():
            program = torch.export.export(net, (example,), dynamic_shapes=({0: batch},))
        torch.export.save(program, str(path.with_suffix(".pt2")))
        del program, net
    del model
    gc.collect()


# ---- the whole-frame runners ---------------------------------------------------------------------
#: How each runner of ``pyinspect.runners.base.RUNNERS`` says whether it can run here.
_RUNNER_CHECKS = {
    "student": ("pyinspect.runners.student", "require_runner"),
    "openvino-native": ("pyinspect.runners.openvino_native", "load_native"),
}


def runner_names() -> list[str]:
    """The whole-frame runners of ``pyinspect.runners.base.RUNNERS``, in table order."""
    from pyinspect.runners.base import RUNNERS

    return [r.name for r in RUNNERS]


def runner_unavailable(name: str) -> str:
    """Why runner ``name`` cannot run on this build and CPU (``""`` when it can)."""
    import importlib

    from pyinspect.errors import PyInspectError

    module, check = _RUNNER_CHECKS.get(name, ("", ""))
    if not module:
        return f"no availability check for runner {name!r}"
    try:
        getattr(importlib.import_module(module), check)()
    except (ImportError, PyInspectError) as exc:
        return str(exc)
    return ""


def open_runner_inspector(name: str, model_path: Path, threads: int | None) -> Any:
    """``Inspector`` with whole-frame runner ``name`` required, on the first backend the runner
    replaces (what a user who asks for that runner gets; its parity check runs at load)."""
    from pyinspect import Inspector
    from pyinspect.runners.base import runner_info

    backend = runner_info(name).replaces[0]
    return Inspector(model_path, backend=backend, runner=name, threads=threads)
