"""The contract every backend meets, and the registry that picks one by name or file suffix.

A backend takes a ready input batch (NCHW, the dtype its ``input_spec`` names) and returns the
logits; tiling, voting, timing and validation live once, in the Inspector and the core.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from pyinspect.errors import (
    BackendError,
    BackendUnavailableError,
    InputError,
    ModelFileError,
    PyInspectError,
    SpecError,
    check_int,
    suggest,
)

if TYPE_CHECKING:
    from pyinspect.spec import ModelSpec


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape (-1 for a dynamic axis) and dtype of one model input or output."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype[Any]


@runtime_checkable
class Backend(Protocol):
    """What the Inspector needs from a backend. Implementations live one per file."""

    name: str
    device: str
    max_batch: int  # largest ``batch`` input_buffer/infer accept; the Inspector chunks above it

    @property
    def input_spec(self) -> TensorSpec: ...

    def input_buffer(self, batch: int) -> np.ndarray:
        """A writable, C-contiguous [batch, C, P, P] array the tiler fills in place; the next
        ``infer(batch)`` reads exactly this memory (no copy in between)."""
        ...

    def infer(self, batch: int) -> np.ndarray:
        """Run the model on the first ``batch`` rows of the input buffer; return logits [batch, K]
        (a view valid until the next call)."""
        ...

    def close(self) -> None: ...


BackendFactory = Callable[..., Backend]


def check_cpu_options(
    name: str, devices: tuple[str, ...], device: str, threads: int | None, max_batch: int
) -> None:
    """The constructor arguments every CPU backend takes, checked with one wording."""
    if device not in (*devices, "auto"):
        msg = f"{name} backend runs on {list(devices)}, got device={device!r}"
        raise InputError(msg)
    check_threads(threads)
    if max_batch < 1:
        msg = f"max_batch must be >= 1, got {max_batch}"
        raise InputError(msg)


@dataclass(frozen=True)
class GraphTensor:
    """One graph input or output as a runtime reports it, in the runtime's own words for errors:
    ``shape`` has -1 for a dynamic axis (``None``: rank unknown); ``dtype`` is ``None`` for a
    type pyinspect does not feed (``type_name`` says which)."""

    names: tuple[str, ...]
    shape: tuple[int, ...] | None
    dtype: np.dtype[Any] | None
    type_name: str


def check_graph_io(
    path: Path, spec: ModelSpec, inputs: list[GraphTensor], outputs: list[GraphTensor]
) -> tuple[GraphTensor, GraphTensor]:
    """The graph must be the one the sidecar describes (one NCHW input of the sidecar's name,
    channels, patch, dtype and batch; an output of its name with [batch, classes] in float32 or
    float16). Returns (input, output); a ``SpecError`` names the tensor and the sidecar field."""
    from pyinspect.spec import ModelSpec

    sidecar = ModelSpec.sidecar_path(path).name

    def mismatch(tensor: str, what: str, expected: object, got: object) -> SpecError:
        msg = (
            f"{path}: tensor {tensor!r}: {what} is {got}, but {sidecar} expects {expected}"
            " (re-export the model and its sidecar together)"
        )
        return SpecError(msg)

    def listed(tensors: list[GraphTensor]) -> list[Any]:
        return [t.names[0] if len(t.names) == 1 else sorted(t.names) for t in tensors]

    if len(inputs) != 1:
        msg = f"{path}: expected exactly one input tensor, got {listed(inputs)}"
        raise SpecError(msg)
    inp = inputs[0]
    if spec.input.name not in inp.names:
        msg = (
            f"{path}: has no input tensor {spec.input.name!r} (sidecar {sidecar} input.name);"
            f" its inputs are {listed(inputs)}"
        )
        raise SpecError(msg)
    out = next((t for t in outputs if spec.output.name in t.names), None)
    if out is None:
        msg = (
            f"{path}: has no output tensor {spec.output.name!r} (sidecar {sidecar}"
            f" output.name); its outputs are {listed(outputs)}"
        )
        raise SpecError(msg)
    name, dims = spec.input.name, inp.shape
    if dims is None or len(dims) != 4:
        got = "unknown" if dims is None else f"{len(dims)} {list(dims)}"
        raise mismatch(name, "rank", f"4 (NCHW) {spec.input.shape}", got)
    for axis, what, want in (
        (1, "channels", spec.input.channels),
        (2, "height", spec.patch),
        (3, "width", spec.patch),
    ):
        if dims[axis] != want:
            raise mismatch(name, f"{what} (axis {axis})", want, dims[axis])
    if inp.dtype is None or inp.dtype.name != spec.input.dtype:
        raise mismatch(name, "dtype", spec.input.dtype, inp.type_name)
    if dims[0] != spec.input.shape[0]:
        raise mismatch(name, "batch (axis 0; -1 = dynamic)", spec.input.shape[0], dims[0])
    oshape = out.shape
    if oshape is None or len(oshape) != 2:
        got = "unknown" if oshape is None else f"{len(oshape)} {list(oshape)}"
        raise mismatch(spec.output.name, "rank", "2 ([batch, classes])", got)
    if oshape[1] not in (-1, spec.num_classes):
        raise mismatch(
            spec.output.name, "class count (axis 1)", f"{spec.num_classes} classes", oshape[1]
        )
    if out.dtype is None:
        raise mismatch(spec.output.name, "dtype", "float32 or float16", out.type_name)
    return inp, out


def check_batch(batch: object, low: int, high: int, limit: str, hint: str = "") -> int:
    """``batch`` as an int in [low, high]; ``limit`` says where the bound comes from, ``hint``
    how to raise it."""
    if isinstance(batch, bool) or not isinstance(batch, int | np.integer):
        msg = f"batch must be an int, got {type(batch).__name__}"
        raise InputError(msg)
    if not low <= batch <= high:
        msg = f"batch must be in [{low}, {high}] ({limit}), got {batch}{hint}"
        raise InputError(msg)
    return int(batch)


class ClosingMixin:
    """``with backend:`` closes it; every backend and runner has ``close()``."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class HostBuffers(ClosingMixin):
    """The host input/output arrays of a CPU backend whose runtime reads and writes them in place
    (ONNX Runtime IOBinding, OpenVINO tensors wrapping NumPy memory).

    They grow rarely (doubling, capped at ``max_batch``); before they are replaced the runtime's
    views into them are dropped (``_drop_views``), so nothing ever points into freed memory. A
    subclass sets ``name``, ``model_path``, ``spec``, ``max_batch``, ``_fixed_batch``,
    ``_in_dtype`` and ``_out_dtype`` and calls ``_init_buffers()``.

    Not safe for concurrent ``input_buffer``/``infer`` from several threads (they share the
    buffers); the Inspector serialises them with a lock.
    """

    name: str  # the registered backend name, used in errors
    model_path: Path
    spec: ModelSpec
    max_batch: int
    _fixed_batch: int | None
    _in_dtype: np.dtype[Any]
    _out_dtype: np.dtype[Any]

    def _init_buffers(self) -> None:
        self._capacity = 0
        self._input: np.ndarray = np.empty((0,), dtype=self._in_dtype)
        self._output: np.ndarray = np.empty((0,), dtype=self._out_dtype)
        self._logits32: np.ndarray | None = None
        self._closed = False

    def _drop_views(self) -> None:
        """Forget every runtime object that points into the current arrays."""
        raise NotImplementedError

    def _run(self, rows: int, batch: int) -> None:
        """Run the runtime on the first ``rows`` rows (``batch`` is what the caller asked for);
        ``infer`` turns the runtime's own exceptions into a ``BackendError`` naming the model."""
        raise NotImplementedError

    @property
    def input_spec(self) -> TensorSpec:
        return TensorSpec(self.spec.input.name, tuple(self.spec.input.shape), self._in_dtype)

    def input_buffer(self, batch: int) -> np.ndarray:
        """Writable C-contiguous [batch, C, P, P] view that the next ``infer(batch)`` reads."""
        self._ensure(batch)
        return self._input[:batch]

    def infer(self, batch: int) -> np.ndarray:
        """Logits (float32 [batch, K]) of the first ``batch`` rows of the input buffer; a view
        that the next call overwrites. A model with a fixed batch always runs all its rows."""
        self._ensure(batch)
        try:
            self._run(self._fixed_batch or batch, batch)
        except PyInspectError:
            raise
        except Exception as exc:  # the runtime's own error: say which model and batch
            msg = f"{self.name} failed on {self.model_path} (batch {batch}): {first_line(exc)}"
            raise BackendError(msg) from exc
        return self._logits(batch)

    def _ensure(self, batch: int) -> None:
        """Check ``batch`` and grow the buffers so that ``batch`` rows fit."""
        if self._closed:
            msg = f"{self.name} backend for {self.model_path} is closed"
            raise BackendError(msg)
        if not 1 <= batch <= self.max_batch:
            msg = f"batch must be in [1, {self.max_batch}] (max_batch), got {batch}"
            raise InputError(msg)
        rows = self._fixed_batch or batch
        if rows <= self._capacity:
            return
        cap = min(self.max_batch, max(rows, 2 * self._capacity))
        c, p, k = self.spec.input.channels, self.spec.patch, self.spec.num_classes
        self._drop_views()
        self._input = np.zeros((cap, c, p, p), dtype=self._in_dtype)
        self._output = np.zeros((cap, k), dtype=self._out_dtype)
        if self._out_dtype != np.float32:
            self._logits32 = np.zeros((cap, k), dtype=np.float32)
        self._capacity = cap

    def _logits(self, batch: int) -> np.ndarray:
        """The first ``batch`` output rows as float32 (a view; converted when the model's output
        is not float32)."""
        out = self._output[:batch]
        if self._logits32 is None:
            return out
        np.copyto(self._logits32[:batch], out)
        return self._logits32[:batch]


@dataclass(frozen=True)
class BackendInfo:
    """One row of ``BACKENDS``: drives ``create_backend``, the ``auto`` choice, the CLI choices
    and the install hints. Nothing is imported until the row is used."""

    name: str
    title: str  # display name in messages ("TensorRT")
    module: str  # the pyinspect module that implements it
    factory_name: str  # its class: (model_path, spec, **options) -> Backend
    library: str  # the third-party package it needs
    extra: str  # pip extra that installs it, for the error message
    suffixes: tuple[str, ...]  # model files it reads
    devices: tuple[str, ...]
    auto_for: tuple[str, ...]  # suffixes for which ``backend="auto"`` picks it

    @property
    def display(self) -> str:
        return self.title

    @property
    def factory(self) -> BackendFactory:
        factory: BackendFactory = getattr(importlib.import_module(self.module), self.factory_name)
        return factory

    def is_available(self) -> bool:
        """Its library importable (and, for TensorRT, a GPU visible); imports nothing heavy."""
        if self.name == "tensorrt":
            from pyinspect.backends.tensorrt import is_available

            return is_available()
        try:
            return importlib.util.find_spec(self.library) is not None
        except (ImportError, ValueError):
            return False


#: Every backend, in ``auto`` order: for a model file, ``backend="auto"`` takes the first row
#: whose ``auto_for`` has its suffix (and ``Inspector(runner="auto")`` may then replace it by a
#: whole-frame runner, see ``pyinspect.runners``). ONNX Runtime is the embedded default for
#: ``.onnx`` (a core dependency, always there); OpenVINO runs ``.onnx`` only when named.
BACKENDS: tuple[BackendInfo, ...] = (
    BackendInfo(
        "onnxruntime", "ONNX Runtime", "pyinspect.backends.onnxruntime", "OnnxRuntimeBackend",
        "onnxruntime", "onnxruntime", (".onnx",), ("cpu",), (".onnx",),
    ),
    BackendInfo(
        "openvino", "OpenVINO", "pyinspect.backends.openvino", "OpenVinoBackend",
        "openvino", "openvino", (".onnx", ".xml"), ("cpu",), (".xml",),
    ),
    BackendInfo(
        "tensorrt", "TensorRT", "pyinspect.backends.tensorrt", "TensorRTBackend",
        "tensorrt", "tensorrt", (".plan", ".engine"), ("cuda",), (".plan", ".engine"),
    ),
    BackendInfo(
        "torch", "PyTorch", "pyinspect.backends.torch", "TorchBackend",
        "torch", "torch", (".pt2",), ("cpu", "cuda"), (".pt2",),
    ),
    BackendInfo(  # a patch model on a Triton server: Inspector("grpc://HOST:PORT/MODEL")
        "triton", "Triton Inference Server", "pyinspect.backends.triton", "TritonBackend",
        "tritonclient", "serve", (), ("remote",), (),
    ),
)  # fmt: skip
_BY_NAME = {b.name: b for b in BACKENDS}
#: Values of ``Inspector(backend=...)`` and the CLI's ``--backend``.
BACKEND_CHOICES: tuple[str, ...] = ("auto", *_BY_NAME)


def list_backends(*, available_only: bool = False) -> list[str]:
    return [b.name for b in BACKENDS if not available_only or b.is_available()]


def backend_info(name: str) -> BackendInfo:
    if not isinstance(name, str):
        msg = f"backend must be a name, one of {list(BACKEND_CHOICES)}, got {type(name).__name__}"
        raise InputError(msg)
    if name not in _BY_NAME:
        valid = sorted(_BY_NAME)
        msg = f"Unknown backend {name!r}.{suggest(name, valid)} Valid backends: {valid}"
        raise InputError(msg)
    return _BY_NAME[name]


def require_backend(name: str) -> BackendInfo:
    """The row of backend ``name`` when it can run here, else the error saying how to install it
    (an unknown name: the valid ones)."""
    info = backend_info(name)
    if not info.is_available():
        raise _unavailable(info)
    return info


def create_backend(
    name: str, model_path: str | os.PathLike[str], spec: ModelSpec, **options: Any
) -> Backend:
    """Build backend ``name`` for ``model_path``; ``None`` options are dropped so an option one
    backend lacks does not break another."""
    info = require_backend(name)
    kwargs = {k: v for k, v in options.items() if v is not None}
    return info.factory(model_path, spec, **kwargs)


def pick_backend(model_path: str | os.PathLike[str]) -> str:
    """The ``backend="auto"`` choice for a model file: the first row of ``BACKENDS`` whose
    ``auto_for`` has the file's suffix (installed or not: ``create_backend`` says how to
    install a missing one)."""
    suffix = Path(model_path).suffix.lower()
    for info in BACKENDS:
        if suffix in info.auto_for:
            return info.name
    known = sorted({s for b in BACKENDS for s in b.suffixes})
    msg = (
        f"No backend reads {suffix or 'files without a suffix'!r} ({model_path}). Known model"
        f" suffixes: {known}; or name a backend explicitly: {sorted(_BY_NAME)}"
    )
    raise InputError(msg)


def _unavailable(info: BackendInfo) -> BackendUnavailableError:
    msg = (
        f"{info.display} backend not available: {info.library!r} is not importable"
        f" (or no {'/'.join(info.devices)} device). Install it with "
        f"`pip install pyinspect[{info.extra}]`."
    )
    return BackendUnavailableError(msg)


# ---- checks every backend and runner shares ------------------------------------------------------
def first_line(exc: BaseException) -> str:
    """The first line of an exception's text (library errors can run to pages)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def check_model_file(path: Path) -> None:
    """Missing / empty / not-a-file model (and an IR without its .bin) -> ModelFileError, before
    a library prints its own text."""
    if not path.exists():
        msg = f"{path}: model file not found"
        raise ModelFileError(msg)
    if not path.is_file():
        msg = f"{path}: not a file (a model file is expected)"
        raise ModelFileError(msg)
    if path.stat().st_size == 0:
        msg = f"{path}: model file is empty (0 bytes); re-export it"
        raise ModelFileError(msg)
    if path.suffix.lower() == ".xml" and not path.with_suffix(".bin").is_file():
        msg = (
            f"{path}: OpenVINO IR needs its weights file {path.with_suffix('.bin').name} beside it"
        )
        raise ModelFileError(msg)


def check_threads(threads: object, name: str = "threads") -> None:
    """``threads``: ``None`` (physical cores) or an int in 1..usable CPUs: more threads than
    CPUs only contend (1,000 threads ran 300× slower than 2 on two cores)."""
    if threads is not None:
        check_int(name, threads, 1)
        cpus = usable_cpus()
        if threads > cpus:  # type: ignore[operator]
            msg = f"{name} must be at most {cpus} (the CPUs this process may use), got {threads}"
            raise InputError(msg)


def usable_cpus() -> int:
    """Logical CPUs this process may run on (its affinity mask; what its threads compete for)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def physical_cores() -> int:
    """Physical cores this process may run on (hyper-threads share a core's FP units, so more
    intra-op threads than cores only adds contention). Falls back to the logical count."""
    try:
        cpus = os.sched_getaffinity(0)
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
    cores: set[tuple[str, str]] = set()
    for cpu in cpus:
        topo = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            package = (topo / "physical_package_id").read_text().strip()
            core = (topo / "core_id").read_text().strip()
        except OSError:
            return max(1, len(cpus))
        cores.add((package, core))
    return max(1, len(cores))


def check_output_kind(backend: Backend, spec: ModelSpec, path: Path) -> None:
    """The sidecar's ``output.kind`` against what the model computes: a probe batch of noise is
    run once, and rows that all lie in [0, 1] and sum to 1 are probabilities (a final Softmax),
    anything else logits. Declaring one and shipping the other gives wrong defect probabilities
    and thresholds without any error, so a mismatch is a ``SpecError`` naming the field."""
    from pyinspect.spec import ModelSpec

    rows = min(2, int(backend.max_batch))
    buf = backend.input_buffer(rows)
    buf[...] = np.random.default_rng(0).normal(0.0, 1.0, buf.shape).astype(buf.dtype)
    out = np.asarray(backend.infer(rows), dtype=np.float64)[:rows]
    if not np.isfinite(out).all():
        return  # a model that overflows on noise says nothing about its kind
    tol = 2e-2 if buf.dtype == np.float16 else 1e-3
    in_range = bool(((out >= -tol) & (out <= 1 + tol)).all())
    sums_to_one = bool((np.abs(out.sum(axis=1) - 1.0) <= tol * out.shape[1]).all())
    looks = "probabilities" if in_range and sums_to_one else "logits"
    if looks == spec.output.kind:
        return
    sidecar = ModelSpec.sidecar_path(path).name
    sums = out.sum(axis=1).round(3).tolist()
    seen = f"values {out.min():.3g} to {out.max():.3g}, row sums {sums}"
    msg = (
        f"{path}: output {spec.output.name!r} gives {looks} ({seen} on a probe batch), but"
        f" {sidecar} output.kind says {spec.output.kind!r}; set output.kind to {looks!r} or"
        " re-export the model and its sidecar together"
    )
    raise SpecError(msg)
