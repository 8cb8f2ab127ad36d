"""The measured rule behind ``backend="auto"`` for CPU models: time the candidates, keep the rule.

Rule (applied by :func:`fastest_cpu_backend` on the machine at hand, and used once on the
reference machine to set :data:`CPU_ORDER`):

1. Candidates: the installed backends that read the model's suffix and run on the CPU, at fp32
   (a reduced precision is never picked automatically; it must pass ``pyinspect.precision_guard``
   and be asked for by name).
2. Each candidate runs the model at the production batch (one frame's patches, 9 for 512×512)
   with the same thread count, in *interleaved* rounds (A, B, A, B, ...) so that load from other
   processes hits all candidates alike; a round's figure is the median of its iterations, and a
   candidate's figure is the median over rounds.
3. The portable default (ONNX Runtime) is kept unless another backend is faster by at least
   ``margin`` (10 %): a smaller lead is within the run-to-run noise of a shared CPU and not
   worth a second dependency.

:data:`CPU_ORDER` records the outcome on the reference machine (2-core AMD EPYC, AVX2, student
model; docs/fast_cpu.md has the numbers): OpenVINO first, then ONNX Runtime.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pyinspect.backends.base import backend_info, create_backend, list_backends
from pyinspect.errors import InputError
from pyinspect.spec import ModelSpec

#: Portable default: kept unless another backend wins by ``DEFAULT_MARGIN``.
DEFAULT_BACKEND = "onnxruntime"
DEFAULT_MARGIN = 0.10
#: Outcome of the rule on the reference machine, fastest first (see module docstring).
CPU_ORDER: tuple[str, ...] = ("openvino", "onnxruntime")


@dataclass(frozen=True)
class BackendTiming:
    """Median milliseconds per ``infer`` of one backend, and the per-round medians behind it."""

    name: str
    median_ms: float
    rounds_ms: tuple[float, ...]


def cpu_candidates(model_path: str | os.PathLike[str]) -> list[str]:
    """Installed CPU backends that read this model's suffix, in :data:`CPU_ORDER` order."""
    suffix = Path(model_path).suffix.lower()
    names = []
    for name in list_backends(available_only=True):
        info = backend_info(name)
        if suffix in info.suffixes and "cpu" in info.devices:
            names.append(name)
    rank = {n: i for i, n in enumerate(CPU_ORDER)}
    return sorted(names, key=lambda n: (rank.get(n, len(rank)), n))


def preferred_cpu_backend(model_path: str | os.PathLike[str]) -> str:
    """The static, measured choice: the first installed backend of :data:`CPU_ORDER`."""
    names = cpu_candidates(model_path)
    if not names:
        msg = f"no installed CPU backend reads {Path(model_path).suffix!r} ({model_path})"
        raise InputError(msg)
    return names[0]


def measure(
    model_path: str | os.PathLike[str],
    spec: ModelSpec | None = None,
    backends: Sequence[str] | None = None,
    *,
    batch: int = 9,
    threads: int | None = None,
    rounds: int = 7,
    iters: int = 10,
    warmup: int = 5,
) -> list[BackendTiming]:
    """Time ``infer(batch)`` of each backend in interleaved rounds (rule step 2)."""
    if rounds < 1 or iters < 1:
        msg = f"rounds and iters must be >= 1, got {rounds} and {iters}"
        raise InputError(msg)
    spec = spec if spec is not None else ModelSpec.for_model(model_path)
    names = list(backends) if backends is not None else cpu_candidates(model_path)
    live: dict[str, Any] = {}
    try:
        for name in names:
            backend = create_backend(name, model_path, spec, threads=threads)
            buf = backend.input_buffer(batch)
            buf[...] = np.random.default_rng(0).uniform(-1, 1, buf.shape).astype(buf.dtype)
            for _ in range(warmup):
                backend.infer(batch)
            live[name] = backend
        per_round: dict[str, list[float]] = {n: [] for n in live}
        for _ in range(rounds):
            for name, backend in live.items():
                times = []
                for _ in range(iters):
                    t0 = time.perf_counter_ns()
                    backend.infer(batch)
                    times.append(time.perf_counter_ns() - t0)
                per_round[name].append(float(np.median(times)) * 1e-6)
    finally:
        for backend in live.values():
            backend.close()
    return [BackendTiming(n, float(np.median(v)), tuple(v)) for n, v in per_round.items()]


def choose(
    timings: Sequence[BackendTiming],
    *,
    default: str = DEFAULT_BACKEND,
    margin: float = DEFAULT_MARGIN,
) -> str:
    """Rule step 3: the fastest backend, unless ``default`` is within ``margin`` of it."""
    if not timings:
        msg = "no timings to choose from"
        raise InputError(msg)
    best = min(timings, key=lambda t: t.median_ms)
    base = next((t for t in timings if t.name == default), None)
    if base is not None and best.median_ms > base.median_ms * (1.0 - margin):
        return default
    return best.name


def fastest_cpu_backend(
    model_path: str | os.PathLike[str], spec: ModelSpec | None = None, **measure_options: Any
) -> tuple[str, list[BackendTiming]]:
    """Apply the whole rule on this machine: measure the candidates, then choose."""
    timings = measure(model_path, spec, **measure_options)
    return choose(timings), timings
