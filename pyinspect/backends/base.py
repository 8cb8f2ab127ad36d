"""The contract every backend meets, and the registry that picks one by name or file suffix.

A backend takes a ready input batch (NCHW, the dtype its ``input_spec`` names) and returns the
logits; tiling, voting, timing and validation live once, in the Inspector and the core.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from pyinspect.errors import BackendError, BackendUnavailableError, InputError, suggest

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
    """What the Inspector needs from an engine. Implementations live one per file."""

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
    if threads is not None and threads < 1:
        msg = f"threads must be >= 1 (or None for the physical core count), got {threads}"
        raise InputError(msg)
    if max_batch < 1:
        msg = f"max_batch must be >= 1, got {max_batch}"
        raise InputError(msg)


class HostBuffers:
    """The host input/output arrays of a CPU backend whose runtime reads and writes them in place
    (ONNX Runtime IOBinding, OpenVINO tensors wrapping NumPy memory).

    They grow rarely (doubling, capped at ``max_batch``); before they are replaced the runtime's
    views into them are dropped (``_drop_views``), so nothing ever points into freed memory. A
    subclass sets ``name``, ``model_path``, ``spec``, ``max_batch``, ``_fixed_batch``,
    ``_in_dtype`` and ``_out_dtype`` and calls ``_init_buffers()``.
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
        """Run the runtime on the first ``rows`` rows (``batch`` is what the caller asked for,
        for errors); raise ``BackendError`` naming the model on failure."""
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
        self._run(self._fixed_batch or batch, batch)
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
    """One row of the registry: drives `create_backend`, the CLI choices and `auto` selection."""

    name: str
    factory: BackendFactory
    suffixes: tuple[str, ...]
    devices: tuple[str, ...]
    module: str
    extra: str  # pip extra that installs it, for the error message
    is_available: Callable[[], bool]
    title: str = ""  # display name in messages ("TensorRT"); defaults to ``name``

    @property
    def display(self) -> str:
        return self.title or self.name


_REGISTRY: dict[str, BackendInfo] = {}

# ``backend="auto"`` rule: among registered, available backends that accept the model's suffix
# (and, for a portable ``.onnx``, run on the CPU: a GPU is used only when asked for by name or
# when the file is a GPU engine), take the first in this order; unlisted names go last,
# alphabetically. onnxruntime leads the CPU backends until a measurement (benchmarks/latency.py)
# shows another one faster on the deployment machine; change the order here, with the numbers.
AUTO_PREFERENCE: tuple[str, ...] = ("tensorrt", "onnxruntime", "openvino", "torch")

# Backends whose file suffix is known before their module is installed, so that a ``.plan``
# without the TensorRT backend says "TensorRT backend not available" rather than "unknown".
_PLANNED: dict[str, tuple[str, str, tuple[str, ...]]] = {
    # name: (display name, pip extra, suffixes)
    "tensorrt": ("TensorRT", "tensorrt", (".plan", ".engine")),
    "openvino": ("OpenVINO", "openvino", (".xml",)),
    "torch": ("PyTorch", "torch", (".pt2",)),
}


def register_backend(info: BackendInfo) -> None:
    _REGISTRY[info.name] = info


def list_backends(*, available_only: bool = False) -> list[str]:
    _load_builtin()
    return [n for n, i in _REGISTRY.items() if not available_only or i.is_available()]


def backend_info(name: str) -> BackendInfo:
    _load_builtin()
    if name not in _REGISTRY:
        if name in _PLANNED:
            title, extra, _ = _PLANNED[name]
            msg = (
                f"{title} backend not available: pyinspect.backends.{name} is not part of this"
                f" installation. Install it with `pip install pyinspect[{extra}]` on a machine"
                f" that has it; registered backends: {sorted(_REGISTRY)}"
            )
            raise BackendUnavailableError(msg)
        valid = sorted(_REGISTRY)
        msg = f"Unknown backend {name!r}.{suggest(name, valid)} Valid backends: {valid}"
        raise InputError(msg)
    return _REGISTRY[name]


def create_backend(
    name: str, model_path: str | os.PathLike[str], spec: ModelSpec, **options: Any
) -> Backend:
    """Build backend ``name`` for ``model_path``; ``None`` options are dropped so an option one
    backend lacks does not break another."""
    info = backend_info(name)
    if not info.is_available():
        raise _unavailable(info)
    kwargs = {k: v for k, v in options.items() if v is not None}
    return info.factory(model_path, spec, **kwargs)


def pick_backend(model_path: str | os.PathLike[str]) -> str:
    """The ``backend="auto"`` choice for a model file (rule: see ``AUTO_PREFERENCE``)."""
    _load_builtin()
    suffix = Path(model_path).suffix.lower()
    claims = [i for i in _REGISTRY.values() if suffix in i.suffixes]
    if suffix == ".onnx":
        claims = [i for i in claims if "cpu" in i.devices]
    usable = [i for i in claims if i.is_available()]
    if usable:
        rank = {n: k for k, n in enumerate(AUTO_PREFERENCE)}
        return min(usable, key=lambda i: (rank.get(i.name, len(rank)), i.name)).name
    if claims:  # registered but not importable here: say which and how to install
        raise _unavailable(min(claims, key=lambda i: i.name))
    for name, (_, _, suffixes) in _PLANNED.items():
        if suffix in suffixes:
            return name  # backend_info() then raises "<Title> backend not available: ..."
    known = sorted({s for i in _REGISTRY.values() for s in i.suffixes} | _planned_suffixes())
    msg = (
        f"No backend reads {suffix or 'files without a suffix'!r} ({model_path}). Known model"
        f" suffixes: {known}; or name a backend explicitly: {sorted(_REGISTRY)}"
    )
    raise InputError(msg)


def _unavailable(info: BackendInfo) -> BackendUnavailableError:
    msg = (
        f"{info.display} backend not available: {info.module!r} is not importable"
        f" (or no {'/'.join(info.devices)} device). Install it with "
        f"`pip install pyinspect[{info.extra}]`."
    )
    return BackendUnavailableError(msg)


def _planned_suffixes() -> set[str]:
    return {s for _, _, suffixes in _PLANNED.values() for s in suffixes}


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


def _load_builtin() -> None:
    """Import the built-in backend modules so they register themselves (cheap: each defers its
    heavy import to construction)."""
    import importlib

    for mod in ("onnxruntime", "openvino", "tensorrt", "torch"):
        try:
            importlib.import_module(f"pyinspect.backends.{mod}")
        except ModuleNotFoundError as exc:
            if exc.name != f"pyinspect.backends.{mod}":
                raise
