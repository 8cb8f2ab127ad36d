"""A stand-in for ``cuda.bindings.runtime`` (cuda-python) backed by host memory.

Calls return ``(cudaError_t, *values)`` tuples like the real module. "Device" memory is host memory
the test cannot reach through NumPy views (only through the fake's copies and the fake TensorRT's
kernels). Work queued on a stream runs at ``cudaStreamSynchronize``; between
``cudaStreamBeginCapture`` and ``cudaStreamEndCapture`` it is recorded into a graph instead.
"""

from __future__ import annotations

import ctypes
import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any


class cudaError_t(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2
    cudaErrorInsufficientDriver = 35
    cudaErrorNoDevice = 100
    cudaErrorInvalidResourceHandle = 400
    cudaErrorStreamCaptureUnsupported = 900
    cudaErrorStreamCaptureInvalidated = 901
    cudaErrorIllegalAddress = 700


class cudaMemcpyKind(enum.IntEnum):
    cudaMemcpyHostToHost = 0
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2
    cudaMemcpyDeviceToDevice = 3
    cudaMemcpyDefault = 4


class cudaStreamCaptureMode(enum.IntEnum):
    cudaStreamCaptureModeGlobal = 0
    cudaStreamCaptureModeThreadLocal = 1
    cudaStreamCaptureModeRelaxed = 2


class cudaStream_t:
    """Opaque handle; ``int()`` gives the address like the real one."""

    def __init__(self, handle: int) -> None:
        self._handle = handle

    def __int__(self) -> int:
        return self._handle

    def getPtr(self) -> int:
        return self._handle


class FakeCudaError(AssertionError):
    """A call the real runtime would reject or that breaks the documented protocol."""


@dataclass
class Allocation:
    kind: str  # "host" (pinned) or "device"
    buf: Any  # ctypes buffer that owns the bytes
    nbytes: int

    @property
    def ptr(self) -> int:
        return ctypes.addressof(self.buf)


@dataclass
class FakeStream:
    handle: int
    pending: list[tuple[str, Callable[[], None]]] = field(default_factory=list)
    capture: list[tuple[str, Callable[[], None]]] | None = None
    destroyed: bool = False


@dataclass
class FakeGraph:
    ops: list[tuple[str, Callable[[], None]]]


@dataclass
class FakeDevice:
    """What cudaGetDeviceProperties reports, and the shared call log."""

    name: str = "NVIDIA Fake GPU"
    major: int = 8
    minor: int = 9
    count: int = 1
    total_memory: int = 24 << 30
    log: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


class FakeCudaRuntime:
    """Module-like object to put in ``sys.modules['cuda.bindings.runtime']``."""

    cudaError_t = cudaError_t
    cudaMemcpyKind = cudaMemcpyKind
    cudaStreamCaptureMode = cudaStreamCaptureMode
    cudaStream_t = cudaStream_t
    cudaStreamNonBlocking = 1

    def __init__(self, device: FakeDevice | None = None) -> None:
        self.device = device or FakeDevice()
        self.allocations: dict[int, Allocation] = {}
        self.streams: dict[int, FakeStream] = {}
        self.graphs: dict[int, FakeGraph] = {}
        self.graph_execs: dict[int, FakeGraph] = {}
        self.fail: dict[str, cudaError_t] = {}  # call name -> status to return once
        self._next_handle = 0x1000

    # ---- bookkeeping -----------------------------------------------------------------------
    @property
    def log(self) -> list[tuple[str, dict[str, Any]]]:
        return self.device.log

    def _record(self, call: str, /, **args: Any) -> cudaError_t | None:
        self.log.append((call, args))
        return self.fail.pop(call, None)

    def _handle(self) -> int:
        self._next_handle += 0x10
        return self._next_handle

    def live(self, kind: str | None = None) -> list[Allocation]:
        return [a for a in self.allocations.values() if kind is None or a.kind == kind]

    def find(self, ptr: int, nbytes: int) -> Allocation:
        """The allocation holding [ptr, ptr + nbytes), or FakeCudaError."""
        for a in self.allocations.values():
            if a.ptr <= ptr and ptr + nbytes <= a.ptr + a.nbytes:
                return a
        msg = f"address 0x{ptr:x} (+{nbytes} bytes) is not inside any live allocation"
        raise FakeCudaError(msg)

    def stream(self, handle: Any) -> FakeStream:
        if not isinstance(handle, cudaStream_t | int):
            msg = f"stream must be a cudaStream_t or int handle, got {type(handle).__name__}"
            raise FakeCudaError(msg)
        s = self.streams.get(int(handle))
        if s is None or s.destroyed:
            msg = f"stream 0x{int(handle):x} does not exist"
            raise FakeCudaError(msg)
        return s

    def enqueue(self, handle: Any, name: str, op: Callable[[], None]) -> None:
        """Queue work on a stream, or record it into the stream's capture."""
        s = self.stream(handle)
        (s.capture if s.capture is not None else s.pending).append((name, op))

    def read(self, ptr: int, nbytes: int) -> bytes:
        self.find(ptr, nbytes)
        return ctypes.string_at(ptr, nbytes)

    def write(self, ptr: int, data: bytes) -> None:
        self.find(ptr, len(data))
        ctypes.memmove(ptr, data, len(data))

    # ---- the API -------------------------------------------------------------------------------
    def cudaGetErrorName(self, error: cudaError_t) -> tuple[cudaError_t, bytes]:
        return cudaError_t.cudaSuccess, cudaError_t(error).name.encode()

    def cudaGetErrorString(self, error: cudaError_t) -> tuple[cudaError_t, bytes]:
        return cudaError_t.cudaSuccess, f"fake description of {cudaError_t(error).name}".encode()

    def cudaGetDeviceCount(self) -> tuple[cudaError_t, int]:
        if (err := self._record("cudaGetDeviceCount")) is not None:
            return err, 0
        if self.device.count == 0:
            return cudaError_t.cudaErrorNoDevice, 0
        return cudaError_t.cudaSuccess, self.device.count

    def cudaGetDeviceProperties(self, device: int) -> tuple[cudaError_t, Any]:
        if (err := self._record("cudaGetDeviceProperties", device=device)) is not None:
            return err, None
        if not 0 <= device < self.device.count:
            return cudaError_t.cudaErrorInvalidValue, None
        d = self.device
        raw = d.name.encode() + b"\0" * (256 - len(d.name))
        props = SimpleNamespace(
            name=raw, major=d.major, minor=d.minor, totalGlobalMem=d.total_memory
        )
        return cudaError_t.cudaSuccess, props

    def _alloc(self, call: str, kind: str, size: int) -> tuple[cudaError_t, int]:
        if (err := self._record(call, size=size)) is not None:
            return err, 0
        if not isinstance(size, int) or size <= 0:
            return cudaError_t.cudaErrorInvalidValue, 0
        buf = ctypes.create_string_buffer(size)
        a = Allocation(kind, buf, size)
        self.allocations[a.ptr] = a
        return cudaError_t.cudaSuccess, a.ptr

    def _free(self, call: str, kind: str, ptr: int) -> tuple[cudaError_t]:
        if (err := self._record(call, ptr=ptr)) is not None:
            return (err,)
        a = self.allocations.get(ptr)
        if a is None or a.kind != kind:
            msg = f"{call}(0x{ptr:x}): not a live {kind} allocation (double free or wrong kind)"
            raise FakeCudaError(msg)
        del self.allocations[ptr]
        return (cudaError_t.cudaSuccess,)

    def cudaMallocHost(self, size: int) -> tuple[cudaError_t, int]:
        return self._alloc("cudaMallocHost", "host", size)

    def cudaMalloc(self, size: int) -> tuple[cudaError_t, int]:
        return self._alloc("cudaMalloc", "device", size)

    def cudaFreeHost(self, ptr: int) -> tuple[cudaError_t]:
        return self._free("cudaFreeHost", "host", ptr)

    def cudaFree(self, ptr: int) -> tuple[cudaError_t]:
        return self._free("cudaFree", "device", ptr)

    def cudaStreamCreateWithFlags(self, flags: int) -> tuple[cudaError_t, Any]:
        if (err := self._record("cudaStreamCreateWithFlags", flags=flags)) is not None:
            return err, None
        h = self._handle()
        self.streams[h] = FakeStream(h)
        return cudaError_t.cudaSuccess, cudaStream_t(h)

    def cudaStreamCreate(self) -> tuple[cudaError_t, Any]:
        return self.cudaStreamCreateWithFlags(0)

    def cudaStreamDestroy(self, stream: Any) -> tuple[cudaError_t]:
        s = self.stream(stream)
        if (err := self._record("cudaStreamDestroy", stream=int(stream))) is not None:
            return (err,)
        if s.pending:
            msg = f"stream destroyed with {len(s.pending)} unsynchronised operation(s)"
            raise FakeCudaError(msg)
        s.destroyed = True
        return (cudaError_t.cudaSuccess,)

    def cudaMemcpyAsync(
        self, dst: int, src: int, count: int, kind: cudaMemcpyKind, stream: Any
    ) -> tuple[cudaError_t]:
        s = self.stream(stream)
        if (
            err := self._record(
                "cudaMemcpyAsync", dst=dst, src=src, count=count, kind=kind, stream=s.handle
            )
        ) is not None:
            return (err,)
        want = {
            cudaMemcpyKind.cudaMemcpyHostToDevice: ("device", "host"),
            cudaMemcpyKind.cudaMemcpyDeviceToHost: ("host", "device"),
        }.get(kind)
        if want is None:
            msg = f"cudaMemcpyAsync kind {kind!r}: pyinspect only copies host<->device"
            raise FakeCudaError(msg)
        d, s_alloc = self.find(dst, count), self.find(src, count)
        if (d.kind, s_alloc.kind) != want:
            msg = (
                f"cudaMemcpyAsync {cudaMemcpyKind(kind).name}: dst is {d.kind} memory and src is"
                f" {s_alloc.kind} memory"
            )
            raise FakeCudaError(msg)

        def op() -> None:
            ctypes.memmove(dst, src, count)

        self.enqueue(stream, f"memcpy_{'htod' if want[0] == 'device' else 'dtoh'}", op)
        return (cudaError_t.cudaSuccess,)

    def cudaStreamSynchronize(self, stream: Any) -> tuple[cudaError_t]:
        s = self.stream(stream)
        if (err := self._record("cudaStreamSynchronize", stream=s.handle)) is not None:
            return (err,)
        if s.capture is not None:
            return (cudaError_t.cudaErrorStreamCaptureUnsupported,)
        ops, s.pending = s.pending, []
        for _name, op in ops:
            op()
        return (cudaError_t.cudaSuccess,)

    def cudaStreamBeginCapture(
        self, stream: Any, mode: cudaStreamCaptureMode
    ) -> tuple[cudaError_t]:
        s = self.stream(stream)
        if (err := self._record("cudaStreamBeginCapture", stream=s.handle, mode=mode)) is not None:
            return (err,)
        if s.capture is not None:
            return (cudaError_t.cudaErrorStreamCaptureUnsupported,)
        s.capture = []
        return (cudaError_t.cudaSuccess,)

    def cudaStreamEndCapture(self, stream: Any) -> tuple[cudaError_t, Any]:
        s = self.stream(stream)
        if (err := self._record("cudaStreamEndCapture", stream=s.handle)) is not None:
            s.capture = None
            return err, None
        if s.capture is None:
            return cudaError_t.cudaErrorInvalidValue, None
        h = self._handle()
        self.graphs[h] = FakeGraph(s.capture)
        s.capture = None
        return cudaError_t.cudaSuccess, h

    def cudaGraphInstantiate(self, graph: Any, flags: int) -> tuple[cudaError_t, Any]:
        if (err := self._record("cudaGraphInstantiate", graph=graph, flags=flags)) is not None:
            return err, None
        g = self.graphs.get(graph)
        if g is None:
            return cudaError_t.cudaErrorInvalidValue, None
        h = self._handle()
        self.graph_execs[h] = FakeGraph(list(g.ops))
        return cudaError_t.cudaSuccess, h

    def cudaGraphLaunch(self, graph_exec: Any, stream: Any) -> tuple[cudaError_t]:
        s = self.stream(stream)
        if err := self._record("cudaGraphLaunch", graph_exec=graph_exec, stream=s.handle):
            return (err,)
        g = self.graph_execs.get(graph_exec)
        if g is None:
            return (cudaError_t.cudaErrorInvalidValue,)
        s.pending.extend(g.ops)
        return (cudaError_t.cudaSuccess,)

    def cudaGraphExecDestroy(self, graph_exec: Any) -> tuple[cudaError_t]:
        self._record("cudaGraphExecDestroy", graph_exec=graph_exec)
        if self.graph_execs.pop(graph_exec, None) is None:
            return (cudaError_t.cudaErrorInvalidValue,)
        return (cudaError_t.cudaSuccess,)

    def cudaGraphDestroy(self, graph: Any) -> tuple[cudaError_t]:
        self._record("cudaGraphDestroy", graph=graph)
        if self.graphs.pop(graph, None) is None:
            return (cudaError_t.cudaErrorInvalidValue,)
        return (cudaError_t.cudaSuccess,)
