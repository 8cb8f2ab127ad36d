"""TensorRT on an NVIDIA GPU: runs a serialized plan built by ``pyinspect build``.

A plan is compiled for one TensorRT version and one GPU, so the sidecar records both and this
backend refuses a plan built elsewhere (TensorRT would otherwise fail deep inside deserialisation,
or run a plan tuned for another GPU). Memory is allocated once, for the largest batch of the
plan's optimisation profile: pinned host input/output (the tiler writes straight into the pinned
input), device input/output, one non-blocking stream. Per call: set the input shape and tensor
addresses, copy in, ``execute_async_v3``, copy out, synchronise; optionally, after a warm-up run,
that sequence is captured once as a CUDA graph and replayed.

Importing this module imports neither ``tensorrt`` nor cuda-python, and nothing creates a
TensorRT or CUDA object before a GPU has been confirmed: a TensorRT runtime created without a GPU
crashes the process.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from pyinspect import cuda_buffers
from pyinspect.backends.base import ClosingMixin, TensorSpec, check_batch
from pyinspect.errors import (
    BackendError,
    BackendUnavailableError,
    InputError,
    ModelFileError,
    SpecError,
)
from pyinspect.spec import EngineSpec, ModelSpec

if TYPE_CHECKING:
    import tensorrt as trt

__all__ = [
    "IOTensor",
    "TensorRTBackend",
    "check_plan_compatible",
    "dims_tuple",
    "import_tensorrt",
    "io_tensors",
    "is_available",
    "numpy_dtype",
    "tensorrt_importable",
]

INSTALL_HINT = "Install it with `pip install pyinspect[tensorrt]` on a machine with an NVIDIA GPU."
_DEVICES = ("cuda",)
_Owned = TypeVar(
    "_Owned",
    bound="cuda_buffers.PinnedHostBuffer | cuda_buffers.DeviceBuffer | cuda_buffers.Stream",
)

# TensorRT DataType name -> NumPy dtype. Spelled out (rather than ``trt.nptype``) so the mapping
# is typed, testable without TensorRT, and an unsupported type (BF16, FP8, INT4) gets a clear error.
_NUMPY_DTYPES: dict[str, np.dtype[Any]] = {
    "FLOAT": np.dtype(np.float32),
    "HALF": np.dtype(np.float16),
    "INT8": np.dtype(np.int8),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "UINT8": np.dtype(np.uint8),
    "BOOL": np.dtype(np.bool_),
}


# ---- availability (cheap, creates nothing) -------------------------------------------------------
def tensorrt_importable() -> bool:
    """True when a real ``tensorrt`` package is importable. ``tensorrt-stubs`` installs a bare
    ``tensorrt/`` folder of type stubs, which Python sees as an empty namespace package: that
    does not count (it has no origin file)."""
    if "tensorrt" in sys.modules:
        return sys.modules["tensorrt"] is not None
    try:
        spec = importlib.util.find_spec("tensorrt")
    except (ImportError, ValueError):
        return False
    return spec is not None and spec.origin is not None


def is_available() -> bool:
    """TensorRT importable and at least one CUDA GPU visible (checked with cuda-python's
    ``cudaGetDeviceCount``, which creates no context on failure)."""
    return tensorrt_importable() and cuda_buffers.device_count() > 0


def import_tensorrt() -> ModuleType:
    """The ``tensorrt`` module, or BackendUnavailableError that says how to install it."""
    if not tensorrt_importable():
        msg = f"TensorRT is not installed (the `tensorrt` module is not importable). {INSTALL_HINT}"
        raise BackendUnavailableError(msg)
    try:
        module = importlib.import_module("tensorrt")
    except ImportError as exc:  # e.g. libnvinfer.so missing behind the Python package
        msg = f"TensorRT is installed but fails to import ({exc}). {INSTALL_HINT}"
        raise BackendUnavailableError(msg) from exc
    if not hasattr(module, "Runtime"):
        msg = f"the `tensorrt` module found has no TensorRT runtime (stubs only?). {INSTALL_HINT}"
        raise BackendUnavailableError(msg)
    return module


def require_gpu(what: str) -> cuda_buffers.DeviceInfo:
    """Device 0's name and compute capability, or BackendUnavailableError. Call before creating
    any TensorRT object."""
    try:
        return cuda_buffers.device_info(0)
    except BackendUnavailableError as exc:
        msg = f"{what} needs an NVIDIA GPU: {exc}"
        raise BackendUnavailableError(msg) from exc


# ---- pure helpers (unit-tested without TensorRT) -------------------------------------------------
def numpy_dtype(trt_dtype: Any) -> np.dtype[Any]:
    """NumPy dtype of a TensorRT ``DataType`` (by its name), or SpecError for one NumPy lacks."""
    name = str(getattr(trt_dtype, "name", trt_dtype))
    dt = _NUMPY_DTYPES.get(name)
    if dt is None:
        msg = f"TensorRT data type {name} has no NumPy dtype; supported: {sorted(_NUMPY_DTYPES)}"
        raise SpecError(msg)
    return dt


@dataclass(frozen=True)
class IOTensor:
    """One engine I/O tensor: name, direction, NumPy dtype and shape (-1 = dynamic)."""

    name: str
    is_input: bool
    dtype: np.dtype[Any]
    shape: tuple[int, ...]

    def nbytes(self, batch: int) -> int:
        """Bytes of this tensor for ``batch`` rows (all non-batch axes must be static)."""
        rest = self.shape[1:]
        if any(d < 0 for d in rest):
            msg = f"tensor {self.name!r} has dynamic non-batch axes {self.shape}; not supported"
            raise SpecError(msg)
        return batch * int(np.prod(rest, dtype=np.int64)) * self.dtype.itemsize


def io_tensors(engine: trt.ICudaEngine) -> list[IOTensor]:
    """The engine's I/O tensors by name, in engine order."""
    import tensorrt as trt

    out: list[IOTensor] = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        mode = engine.get_tensor_mode(name)
        if mode not in (trt.TensorIOMode.INPUT, trt.TensorIOMode.OUTPUT):
            continue
        out.append(
            IOTensor(
                name=name,
                is_input=mode == trt.TensorIOMode.INPUT,
                dtype=numpy_dtype(engine.get_tensor_dtype(name)),
                shape=dims_tuple(engine.get_tensor_shape(name)),
            )
        )
    return out


def dims_tuple(dims: trt.Dims) -> tuple[int, ...]:
    """A TensorRT ``Dims`` as a tuple of ints (-1 = dynamic)."""
    return tuple(int(dims[i]) for i in range(len(dims)))


def check_plan_compatible(
    engine: EngineSpec | None,
    *,
    plan: Path,
    tensorrt_version: str,
    gpu: cuda_buffers.DeviceInfo,
) -> None:
    """Refuse a plan whose sidecar says it was built for another TensorRT or another GPU.

    A plan is not portable: TensorRT checks its own version at load (unless the plan was built
    version-compatible, which allows a newer TensorRT of the same major version) and a plan tuned
    for one GPU model may fail or run slowly on another.
    """
    sidecar = ModelSpec.sidecar_path(plan).name
    rebuild = f"Rebuild it here: `pyinspect build MODEL.onnx -o {plan.name}`."
    if engine is None or engine.backend != "tensorrt":
        got = "no engine block" if engine is None else f"engine.backend {engine.backend!r}"
        msg = (
            f"{plan}: {sidecar} has {got}, so nothing says which TensorRT and GPU this plan was"
            f" built for. {rebuild}"
        )
        raise SpecError(msg)
    missing = [
        f"engine.{k}"
        for k in ("tensorrt_version", "gpu_name", "compute_capability")
        if getattr(engine, k) is None
    ]
    if missing:
        msg = f"{plan}: {sidecar}: required for a TensorRT plan: {', '.join(missing)}. {rebuild}"
        raise SpecError(msg)
    built_trt = str(engine.tensorrt_version)
    extra = engine.model_extra or {}
    version_compatible = bool(extra.get("version_compatible", False))
    if version_compatible:
        ok = _major(built_trt) == _major(tensorrt_version) and _version_tuple(
            tensorrt_version
        ) >= _version_tuple(built_trt)
    else:
        ok = built_trt == tensorrt_version
    problems = []
    if not ok:
        rule = (
            "a version-compatible plan needs the same major version, same or newer"
            if version_compatible
            else "a plan runs only on the TensorRT that built it"
        )
        problems.append(
            f"built with TensorRT {built_trt}, this machine has TensorRT {tensorrt_version}"
            f" ({rule})"
        )
    if engine.compute_capability != gpu.compute_capability or engine.gpu_name != gpu.name:
        problems.append(
            f"built on {engine.gpu_name!r} (compute capability {engine.compute_capability}),"
            f" this machine has {gpu.name!r} (compute capability {gpu.compute_capability})"
        )
    if problems:
        msg = f"{plan}: not portable to this machine: {'; '.join(problems)}. {rebuild}"
        raise SpecError(msg)


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for p in version.split("."):
        if not p.isdigit():
            break
        parts.append(int(p))
    return tuple(parts)


def _major(version: str) -> int:
    t = _version_tuple(version)
    return t[0] if t else -1


def _device_index(device: str) -> int:
    if device in ("auto", "cuda", "cuda:0", "gpu"):
        return 0
    if device.startswith("cuda:"):
        msg = (
            f"tensorrt backend: device={device!r}: only the first visible GPU is used; choose it"
            " with CUDA_VISIBLE_DEVICES and pass device='cuda'"
        )
        raise InputError(msg)
    msg = f"tensorrt backend runs on {list(_DEVICES)}, got device={device!r}"
    raise InputError(msg)


# ---- the backend ---------------------------------------------------------------------------------
class TensorRTBackend(ClosingMixin):
    """Inference of one TensorRT plan whose sidecar is ``spec`` (see the module docstring).

    ``cuda_graph=True`` captures the steady-state call (same batch size twice in a row) as a CUDA
    graph and replays it; a change of batch size drops the graph and captures again later. If a
    capture fails, that call raises BackendError and graphs stay off for this backend.
    ``threads`` is accepted (the Inspector passes it to every backend) and ignored.
    Not safe for concurrent calls from several threads (one stream, shared buffers); the
    Inspector serialises them. Views returned by ``input_buffer``/``infer`` are invalid after
    ``close()``.
    """

    name = "tensorrt"

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        spec: ModelSpec,
        *,
        device: str = "cuda",
        cuda_graph: bool = False,
        max_batch: int | None = None,
        threads: int | None = None,
    ) -> None:
        del threads  # accepted for the Inspector's common options; the GPU needs no CPU threads
        _device_index(device)
        self.device = "cuda"
        self.model_path = Path(model_path)
        self.spec = spec
        self.cuda_graph = bool(cuda_graph)
        self._closed = True
        self._owners: list[
            cuda_buffers.PinnedHostBuffer | cuda_buffers.DeviceBuffer | cuda_buffers.Stream
        ] = []
        plan_bytes = _read_plan(self.model_path)

        # Order matters: nothing TensorRT/CUDA is created until a GPU is confirmed.
        import_tensorrt()  # a clear error when TensorRT is missing, before the typed import
        import tensorrt as trt

        gpu = require_gpu("the tensorrt backend")
        check_plan_compatible(
            spec.engine, plan=self.model_path, tensorrt_version=trt.__version__, gpu=gpu
        )
        self.gpu = gpu

        verbose = os.environ.get("PYINSPECT_TRT_VERBOSE") == "1"
        self._logger = trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        extra = spec.engine.model_extra if spec.engine is not None else None
        if extra and extra.get("version_compatible"):
            # A version-compatible plan embeds its own lean runtime, which TensorRT only runs
            # when host code is explicitly allowed.
            self._runtime.engine_host_code_allowed = True
        engine = self._runtime.deserialize_cuda_engine(plan_bytes)
        if engine is None:
            msg = (
                f"{self.model_path}: TensorRT {trt.__version__} could not deserialise this plan"
                " (corrupt, or built by another TensorRT/GPU; its log above says which)."
                f" Rebuild it with `pyinspect build MODEL.onnx -o {self.model_path.name}`."
            )
            raise ModelFileError(msg)
        self._engine = engine
        self._input, self._output = self._check_io(io_tensors(engine))
        lo, hi = self._profile_batches()
        if max_batch is not None:
            if not lo <= max_batch <= hi:
                msg = f"max_batch must be within the plan's profile [{lo}, {hi}], got {max_batch}"
                raise InputError(msg)
            hi = max_batch
        self.min_batch, self.max_batch = lo, hi

        try:
            self._allocate()
        except BaseException:
            self._free_owners()
            raise
        self._closed = False

    # ---- construction helpers ------------------------------------------------------------------
    def _check_io(self, tensors: list[IOTensor]) -> tuple[IOTensor, IOTensor]:
        """The engine must have exactly the sidecar's input and output, shaped as it says."""
        spec, plan = self.spec, self.model_path
        inputs = [t for t in tensors if t.is_input]
        outputs = [t for t in tensors if not t.is_input]
        names = [t.name for t in tensors]
        if len(inputs) != 1 or inputs[0].name != spec.input.name:
            msg = (
                f"{plan}: engine inputs are {[t.name for t in inputs]}, but the sidecar expects"
                f" exactly one input named {spec.input.name!r} (all I/O tensors: {names})"
            )
            raise SpecError(msg)
        out = next((t for t in outputs if t.name == spec.output.name), None)
        if out is None:
            msg = (
                f"{plan}: engine has no output tensor {spec.output.name!r} (sidecar output.name);"
                f" its outputs are {[t.name for t in outputs]}"
            )
            raise SpecError(msg)
        inp = inputs[0]
        want = (spec.input.channels, spec.patch, spec.patch)
        if len(inp.shape) != 4 or inp.shape[1:] != want:
            msg = (
                f"{plan}: input {inp.name!r} has shape {list(inp.shape)}, but the sidecar"
                f" expects [batch, {want[0]}, {want[1]}, {want[2]}]"
            )
            raise SpecError(msg)
        if inp.dtype not in (np.dtype(np.float32), np.dtype(np.float16)):
            msg = f"{plan}: input {inp.name!r} is {inp.dtype}; the tiler writes float32 or float16"
            raise SpecError(msg)
        if len(out.shape) != 2 or out.shape[1] != spec.num_classes:
            msg = (
                f"{plan}: output {out.name!r} has shape {list(out.shape)}, but the sidecar has"
                f" {spec.num_classes} classes ([batch, {spec.num_classes}] expected)"
            )
            raise SpecError(msg)
        if out.dtype.kind != "f":
            msg = f"{plan}: output {out.name!r} is {out.dtype}; logits must be floating point"
            raise SpecError(msg)
        return inp, out

    def _profile_batches(self) -> tuple[int, int]:
        """(min, max) batch of optimisation profile 0; a static batch B gives (B, B)."""
        name = self._input.name
        if self._input.shape[0] > 0:
            return self._input.shape[0], self._input.shape[0]
        lo, _, hi = self._engine.get_tensor_profile_shape(name, 0)
        return int(lo[0]), int(hi[0])

    def _allocate(self) -> None:
        """Pinned host + device buffers for ``max_batch`` rows, a stream, an execution context."""
        inp, out = self._input, self._output
        in_bytes, out_bytes = inp.nbytes(self.max_batch), out.nbytes(self.max_batch)
        self._h_in = self._own(cuda_buffers.PinnedHostBuffer(in_bytes))
        self._h_out = self._own(cuda_buffers.PinnedHostBuffer(out_bytes))
        self._d_in = self._own(cuda_buffers.DeviceBuffer(in_bytes))
        self._d_out = self._own(cuda_buffers.DeviceBuffer(out_bytes))
        self._stream = self._own(cuda_buffers.Stream())
        # Borrowed views of the pinned buffers (valid until close()); the tiler writes into
        # ``_in_view`` and ``infer`` returns rows of ``_out_view``.
        self._in_view = self._h_in.array((self.max_batch, *inp.shape[1:]), inp.dtype)
        self._out_view = self._h_out.array((self.max_batch, *out.shape[1:]), out.dtype)
        self._logits32 = (
            None
            if out.dtype == np.float32
            else np.empty((self.max_batch, *out.shape[1:]), dtype=np.float32)
        )
        context = self._engine.create_execution_context()
        if context is None:
            msg = f"{self.model_path}: TensorRT could not create an execution context (GPU memory?)"
            raise BackendError(msg)
        self._context: trt.IExecutionContext = context
        self._graph: cuda_buffers.CudaGraph | None = None
        self._graph_batch = 0
        self._last_batch = 0
        self._runs_at_batch = 0

    def _own(self, owner: _Owned) -> _Owned:
        self._owners.append(owner)
        return owner

    # ---- Backend protocol ----------------------------------------------------------------------
    @property
    def input_spec(self) -> TensorSpec:
        inp = self._input
        return TensorSpec(inp.name, (-1, *inp.shape[1:]), inp.dtype)

    def input_buffer(self, batch: int) -> np.ndarray:
        """Writable C-contiguous [batch, C, P, P] view of the pinned input buffer; the next
        ``infer(batch)`` copies exactly these bytes to the GPU."""
        self._check_batch(batch)
        return self._in_view[:batch]

    def infer(self, batch: int) -> np.ndarray:
        """Logits (float32 [batch, K]) of the first ``batch`` rows of the input buffer: a view
        of pinned memory that the next call overwrites."""
        self._check_batch(batch)
        if self._graph is not None and self._graph_batch == batch:
            self._graph.launch()
            self._stream.synchronize()
        else:
            self._drop_graph()
            self._set_shape_and_addresses(batch)
            self._enqueue(batch)
            self._stream.synchronize()
            self._runs_at_batch = self._runs_at_batch + 1 if batch == self._last_batch else 1
            self._last_batch = batch
            if self.cuda_graph and self._runs_at_batch >= 2:
                # TensorRT needs one ordinary run with these shapes before a capture; capturing
                # on the second consecutive call at one batch size also skips one-off sizes.
                self._capture(batch)
        return self._logits(batch)

    def close(self) -> None:
        """Free the graph, buffers and stream, then the context, engine and runtime (that
        order); idempotent. Views handed out earlier become invalid."""
        if self._closed:
            return
        self._closed = True
        self._stream.synchronize()
        self._drop_graph()
        self._free_owners()
        del self._context
        del self._engine
        del self._runtime

    def __repr__(self) -> str:
        return (
            f"TensorRTBackend({str(self.model_path)!r}, gpu={self.gpu.name!r},"
            f" batch=[{self.min_batch}, {self.max_batch}], cuda_graph={self.cuda_graph})"
        )

    # ---- per call ------------------------------------------------------------------------------
    def _check_batch(self, batch: int) -> None:
        if self._closed:
            msg = f"tensorrt backend for {self.model_path} is closed"
            raise BackendError(msg)
        check_batch(
            batch,
            self.min_batch,
            self.max_batch,
            "the plan's optimisation profile",
            "; rebuild with `pyinspect build --max-batch N` for more",
        )

    def _set_shape_and_addresses(self, batch: int) -> None:
        ctx, inp, out = self._context, self._input, self._output
        shape = (int(batch), *inp.shape[1:])
        if not ctx.set_input_shape(inp.name, shape):
            msg = f"{self.model_path}: TensorRT rejected input shape {shape} for {inp.name!r}"
            raise BackendError(msg)
        for t, buf in ((inp, self._d_in), (out, self._d_out)):
            if not ctx.set_tensor_address(t.name, buf.ptr):
                msg = f"{self.model_path}: TensorRT rejected the device address of {t.name!r}"
                raise BackendError(msg)

    def _enqueue(self, batch: int) -> None:
        """Queue copy-in, execution and copy-out on the stream (no synchronisation)."""
        cuda_buffers.memcpy_htod_async(
            self._d_in, self._h_in, self._input.nbytes(batch), self._stream
        )
        if not self._context.execute_async_v3(self._stream.handle):
            msg = (
                f"{self.model_path}: TensorRT execute_async_v3 failed (batch {batch});"
                " its log above says why"
            )
            raise BackendError(msg)
        cuda_buffers.memcpy_dtoh_async(
            self._h_out, self._d_out, self._output.nbytes(batch), self._stream
        )

    def _capture(self, batch: int) -> None:
        graph = cuda_buffers.CudaGraph(self._stream)
        graph.begin()
        try:
            self._enqueue(batch)
            graph.end()
        except BackendError as exc:
            graph.abort()
            graph.close()
            self.cuda_graph = False  # reported once; later calls run without a graph
            msg = (
                f"{self.model_path}: CUDA graph capture failed ({exc}). To resolve: create the"
                " backend with cuda_graph=False."
            )
            raise BackendError(msg) from exc
        self._graph, self._graph_batch = graph, batch

    def _drop_graph(self) -> None:
        if self._graph is not None:
            self._graph.close()
            self._graph, self._graph_batch = None, 0

    def _logits(self, batch: int) -> np.ndarray:
        out = self._out_view[:batch]
        if self._logits32 is None:
            return out
        np.copyto(self._logits32[:batch], out)
        return self._logits32[:batch]

    def _free_owners(self) -> None:
        """Close in reverse order of creation (stream last-created, first closed)."""
        while self._owners:
            self._owners.pop().close()


def _read_plan(path: Path) -> bytes:
    if not path.is_file():
        what = "not found" if not path.exists() else "not a file"
        msg = f"{path}: TensorRT plan {what}"
        raise ModelFileError(msg)
    data = path.read_bytes()
    if not data:
        msg = f"{path}: TensorRT plan is empty (0 bytes); rebuild it with `pyinspect build`"
        raise ModelFileError(msg)
    return data
