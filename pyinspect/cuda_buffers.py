"""Small owners of CUDA host/device memory, a stream and a CUDA graph, over cuda-python's runtime
API (``cuda.bindings.runtime``), with one status check for every call.

Why not pycuda: it builds against the local driver and has context/threading pitfalls; NVIDIA's
own TensorRT samples moved to cuda-python. Nothing here is imported by ``import pyinspect``: the
TensorRT backend and the engine builder import this module, and this module imports
``cuda.bindings.runtime`` only when an owner is created (looked up through ``sys.modules`` on
every call so the test suite can substitute a recording stand-in).

cuda-python ships no type information, so the runtime module is ``Any`` here; every value that
leaves this module is converted to a plain ``int``/``str``/``np.ndarray``.
"""

from __future__ import annotations

import ctypes
import importlib
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from pyinspect.errors import BackendError, BackendUnavailableError

__all__ = [
    "CudaGraph",
    "DeviceBuffer",
    "DeviceInfo",
    "PinnedHostBuffer",
    "Stream",
    "check",
    "device_count",
    "device_info",
    "memcpy_dtoh_async",
    "memcpy_htod_async",
    "runtime",
]


def runtime() -> Any:
    """The ``cuda.bindings.runtime`` module, or a BackendUnavailableError naming the extra."""
    try:
        return importlib.import_module("cuda.bindings.runtime")
    except ImportError as exc:
        msg = (
            "cuda-python is not installed (needed for TensorRT's GPU buffers). "
            "Install it with `pip install pyinspect[tensorrt]`."
        )
        raise BackendUnavailableError(msg) from exc


def _error_text(rt: Any, status: Any) -> str:
    """'cudaErrorInvalidValue (invalid argument)' for a status, without raising."""
    name_status, name = rt.cudaGetErrorName(status)
    str_status, text = rt.cudaGetErrorString(status)
    ok = rt.cudaError_t.cudaSuccess
    name_s = name.decode() if name_status == ok and isinstance(name, bytes) else str(status)
    text_s = text.decode() if str_status == ok and isinstance(text, bytes) else "no description"
    return f"{name_s} ({text_s})"


def check(rt: Any, call: str, result: Any) -> Any:
    """Unpack a cuda-python result ``(status, *values)``; raise BackendError naming the call and
    the CUDA error when status is not cudaSuccess. Returns None, the one value, or a tuple."""
    if isinstance(result, tuple):
        status, values = result[0], result[1:]
    else:
        status, values = result, ()
    if status != rt.cudaError_t.cudaSuccess:
        msg = f"CUDA call {call} failed: {_error_text(rt, status)}"
        raise BackendError(msg)
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def device_count() -> int:
    """Number of visible CUDA GPUs; 0 when cuda-python is missing or no driver/GPU answers.
    Creates nothing, so it is safe to call on a machine without a GPU."""
    try:
        rt = runtime()
    except BackendUnavailableError:
        return 0
    status, count = rt.cudaGetDeviceCount()
    if status != rt.cudaError_t.cudaSuccess:
        return 0
    return int(count)


@dataclass(frozen=True)
class DeviceInfo:
    """What a TensorRT plan is tied to: the GPU's name and compute capability."""

    index: int
    name: str
    compute_capability: str  # "8.9"
    total_memory: int  # bytes


def device_info(index: int = 0) -> DeviceInfo:
    """Name and compute capability of GPU ``index`` (raises BackendUnavailableError without one)."""
    count = device_count()
    if index < 0 or index >= count:
        msg = (
            f"CUDA device {index} not present: this machine has {count} CUDA GPU(s)"
            + (" (no driver or no GPU)" if count == 0 else "")
            + "."
        )
        raise BackendUnavailableError(msg)
    rt = runtime()
    prop = check(rt, "cudaGetDeviceProperties", rt.cudaGetDeviceProperties(index))
    raw_name = prop.name
    name = raw_name.split(b"\0", 1)[0].decode() if isinstance(raw_name, bytes) else str(raw_name)
    return DeviceInfo(
        index=index,
        name=name.strip(),
        compute_capability=f"{int(prop.major)}.{int(prop.minor)}",
        total_memory=int(prop.totalGlobalMem),
    )


class _Owner:
    """Shared close()/context-manager plumbing; subclasses free their one resource in _free."""

    _closed: bool = True

    def close(self) -> None:
        """Free the resource now (idempotent). Anything borrowed from it becomes invalid."""
        if not self._closed:
            self._closed = True
            self._free()

    def _free(self) -> None:
        raise NotImplementedError

    def _allocate(self, nbytes: int, what: str, call: str) -> None:
        """``call`` (cudaMalloc or cudaMallocHost) of ``nbytes``: sets ``ptr``, opens the owner."""
        if nbytes <= 0:
            msg = f"{what} size must be > 0 bytes, got {nbytes}"
            raise BackendError(msg)
        self._rt = runtime()
        self.nbytes = int(nbytes)
        self.ptr = int(check(self._rt, call, getattr(self._rt, call)(self.nbytes)))
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def _require_open(self) -> None:
        if self._closed:
            msg = f"{type(self).__name__} is closed; create a new one"
            raise BackendError(msg)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class PinnedHostBuffer(_Owner):
    """Page-locked host memory (``cudaMallocHost``): the only host memory a copy can overlap with.

    ``array()`` returns NumPy views of it; each view keeps this owner alive through its base
    object, but ``close()`` frees the memory regardless, so views must not be used after it.
    """

    def __init__(self, nbytes: int) -> None:
        self._allocate(nbytes, "pinned host buffer", "cudaMallocHost")
        # The ctypes array borrows the pinned memory; it carries a reference to this owner so
        # any NumPy view built on it keeps the owner (not the memory, see close()) alive.
        raw = (ctypes.c_ubyte * self.nbytes).from_address(self.ptr)
        raw._pyinspect_owner = self  # type: ignore[attr-defined]
        self._raw = raw

    def array(self, shape: tuple[int, ...], dtype: npt.DTypeLike) -> np.ndarray:
        """A writable C-contiguous view of the first ``prod(shape) * itemsize`` bytes."""
        self._require_open()
        dt = np.dtype(dtype)
        need = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
        if need > self.nbytes:
            msg = (
                f"tried to view {need} bytes (shape {shape}, {dt}) in pinned host memory of "
                f"{self.nbytes} bytes"
            )
            raise BackendError(msg)
        flat = np.frombuffer(memoryview(self._raw), dtype=np.uint8, count=need)
        return flat.view(dt).reshape(shape)

    def _free(self) -> None:
        check(self._rt, "cudaFreeHost", self._rt.cudaFreeHost(self.ptr))


class DeviceBuffer(_Owner):
    """Device memory (``cudaMalloc``), addressed by integer pointer for TensorRT."""

    def __init__(self, nbytes: int) -> None:
        self._allocate(nbytes, "device buffer", "cudaMalloc")

    def _free(self) -> None:
        check(self._rt, "cudaFree", self._rt.cudaFree(self.ptr))


class Stream(_Owner):
    """One non-blocking CUDA stream: it neither waits for nor blocks the legacy default stream,
    and CUDA graphs can be captured on it."""

    def __init__(self) -> None:
        self._rt = runtime()
        self._stream = check(
            self._rt,
            "cudaStreamCreateWithFlags",
            self._rt.cudaStreamCreateWithFlags(self._rt.cudaStreamNonBlocking),
        )
        self._closed = False

    @property
    def raw(self) -> Any:
        """The cuda-python ``cudaStream_t`` (for runtime calls)."""
        return self._stream

    @property
    def handle(self) -> int:
        """The stream as an integer handle (what TensorRT's ``execute_async_v3`` takes)."""
        return int(self._stream)

    def synchronize(self) -> None:
        self._require_open()
        check(self._rt, "cudaStreamSynchronize", self._rt.cudaStreamSynchronize(self._stream))

    def _free(self) -> None:
        check(self._rt, "cudaStreamDestroy", self._rt.cudaStreamDestroy(self._stream))


def memcpy_htod_async(
    dst: DeviceBuffer, src: PinnedHostBuffer, nbytes: int, stream: Stream
) -> None:
    """Queue a host→device copy of the first ``nbytes`` on ``stream``."""
    _memcpy_async(dst, src, nbytes, stream, "HostToDevice")


def memcpy_dtoh_async(
    dst: PinnedHostBuffer, src: DeviceBuffer, nbytes: int, stream: Stream
) -> None:
    """Queue a device→host copy of the first ``nbytes`` on ``stream``."""
    _memcpy_async(dst, src, nbytes, stream, "DeviceToHost")


def _memcpy_async(
    dst: DeviceBuffer | PinnedHostBuffer,
    src: DeviceBuffer | PinnedHostBuffer,
    nbytes: int,
    stream: Stream,
    kind: str,
) -> None:
    what = "host->device" if kind == "HostToDevice" else "device->host"
    _check_copy(dst.nbytes, src.nbytes, nbytes, what)
    rt = dst._rt
    check(
        rt,
        f"cudaMemcpyAsync({kind})",
        rt.cudaMemcpyAsync(
            dst.ptr, src.ptr, nbytes, getattr(rt.cudaMemcpyKind, f"cudaMemcpy{kind}"), stream.raw
        ),
    )


def _check_copy(dst_bytes: int, src_bytes: int, nbytes: int, what: str) -> None:
    if nbytes <= 0 or nbytes > dst_bytes or nbytes > src_bytes:
        msg = (
            f"{what} copy of {nbytes} bytes does not fit: source holds {src_bytes} bytes, "
            f"destination {dst_bytes}"
        )
        raise BackendError(msg)


class CudaGraph(_Owner):
    """A captured, instantiated CUDA graph of the work queued on one stream.

    Use ``begin()``, queue the work, ``end()``; then ``launch()`` replays it. On a failed
    capture, ``abort()`` ends the capture so the stream is usable again.
    """

    def __init__(self, stream: Stream) -> None:
        self._rt = stream._rt
        self._stream = stream
        self._graph: Any = None
        self._exec: Any = None
        self._capturing = False
        self._closed = False

    def begin(self) -> None:
        self._require_open()
        rt = self._rt
        check(
            rt,
            "cudaStreamBeginCapture",
            rt.cudaStreamBeginCapture(
                self._stream.raw, rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
            ),
        )
        self._capturing = True

    def end(self) -> None:
        """Stop capturing and instantiate the graph."""
        rt = self._rt
        self._capturing = False
        self._graph = check(rt, "cudaStreamEndCapture", rt.cudaStreamEndCapture(self._stream.raw))
        self._exec = check(rt, "cudaGraphInstantiate", rt.cudaGraphInstantiate(self._graph, 0))

    def abort(self) -> None:
        """End a capture that failed part-way; its status is not checked (the capture is
        already broken and the original error is the one worth reporting)."""
        if self._capturing:
            self._capturing = False
            self._rt.cudaStreamEndCapture(self._stream.raw)

    @property
    def ready(self) -> bool:
        return self._exec is not None and not self._closed

    def launch(self) -> None:
        if not self.ready:
            msg = "CUDA graph launched before it was captured"
            raise BackendError(msg)
        rt = self._rt
        check(rt, "cudaGraphLaunch", rt.cudaGraphLaunch(self._exec, self._stream.raw))

    def _free(self) -> None:
        rt = self._rt
        self.abort()
        if self._exec is not None:
            check(rt, "cudaGraphExecDestroy", rt.cudaGraphExecDestroy(self._exec))
            self._exec = None
        if self._graph is not None:
            check(rt, "cudaGraphDestroy", rt.cudaGraphDestroy(self._graph))
            self._graph = None
