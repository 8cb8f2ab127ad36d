"""Machine facts recorded beside every benchmark number (a timing means nothing without them).

Shared by the scripts in ``benchmarks/``; run one as ``python benchmarks/<name>.py`` (the script's
folder is then on ``sys.path``, so ``import _machine`` works). Library versions come from package
metadata, so nothing heavy (torch) is imported just to be named.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import shutil
import socket
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
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
        "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
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
    except ImportError:
        pass
    return facts


def finish(facts: dict[str, Any]) -> dict[str, Any]:
    """Record the load at the end too: a run is only as quiet as its noisiest minute."""
    if hasattr(os, "getloadavg"):
        facts["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
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


def result_path(kind: str, facts: dict[str, Any], suffix: str = ".json") -> Path:
    """``benchmarks/results/<kind>-<host>-<YYYY-MM-DD>.json``."""
    day = facts["date"][:10]
    host = re.sub(r"[^A-Za-z0-9_.-]", "_", facts["host"])
    return RESULTS / f"{kind}-{host}-{day}{suffix}"
