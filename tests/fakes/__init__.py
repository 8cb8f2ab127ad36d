"""Recording stand-ins for ``cuda.bindings.runtime`` and ``tensorrt``.

Neither library can run on a machine without a GPU (creating a TensorRT runtime there crashes the
process), so the unit tests inject these through ``sys.modules`` (``install``). They follow the
documented API closely enough that a wrong call fails: stream work is queued and only runs at
``cudaStreamSynchronize`` (forget the synchronise and the output is stale), device and pinned host
memory are separate allocations checked on every copy, an execution context refuses to run
without its input shapes and device addresses, and every call is appended to one shared log the
tests read to assert the order.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import pytest

from fakes.cudart import FakeCudaError, FakeCudaRuntime, FakeDevice
from fakes.tensorrt import FakeTensorRT, FakeTensorRTError, reference_logits

__all__ = [
    "FakeCudaError",
    "FakeCudaRuntime",
    "FakeDevice",
    "FakeGPU",
    "FakeTensorRT",
    "FakeTensorRTError",
    "install",
    "reference_logits",
]


@dataclass
class FakeGPU:
    """The installed pair and their shared call log."""

    cuda: FakeCudaRuntime
    trt: FakeTensorRT

    @property
    def log(self) -> list[tuple[str, dict[str, Any]]]:
        return self.cuda.log

    def names(self, since: int = 0) -> list[str]:
        return [name for name, _ in self.log[since:]]

    def calls(self, name: str, since: int = 0) -> list[dict[str, Any]]:
        return [args for n, args in self.log[since:] if n == name]


def install(
    monkeypatch: pytest.MonkeyPatch,
    *,
    gpus: int = 1,
    gpu_name: str = "NVIDIA Fake GPU",
    compute_capability: tuple[int, int] = (8, 9),
    tensorrt_version: str = "10.13.0.35",
) -> FakeGPU:
    """Put a fake cuda runtime (``gpus`` devices) and a fake TensorRT into ``sys.modules``."""
    device = FakeDevice(
        name=gpu_name, major=compute_capability[0], minor=compute_capability[1], count=gpus
    )
    cuda = FakeCudaRuntime(device)
    trt = FakeTensorRT(cuda, version=tensorrt_version)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", cuda)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    return FakeGPU(cuda, trt)
