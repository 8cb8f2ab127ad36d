"""The contract every backend meets, and the registry that picks one by name or file suffix.

A backend takes a ready input batch (NCHW, the dtype its ``input_spec`` names) and returns the
logits; tiling, voting, timing and validation live once, in the Inspector and the core.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from pyinspect.errors import BackendUnavailableError, InputError, suggest

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


_REGISTRY: dict[str, BackendInfo] = {}


def register_backend(info: BackendInfo) -> None:
    _REGISTRY[info.name] = info


def list_backends(*, available_only: bool = False) -> list[str]:
    _load_builtin()
    return [n for n, i in _REGISTRY.items() if not available_only or i.is_available()]


def backend_info(name: str) -> BackendInfo:
    _load_builtin()
    if name not in _REGISTRY:
        msg = f"Unknown backend {name!r}.{suggest(name, _REGISTRY)} Valid backends: {sorted(_REGISTRY)}"
        raise InputError(msg)
    return _REGISTRY[name]


def create_backend(name: str, model_path: str, spec: ModelSpec, **options: Any) -> Backend:
    """Build backend ``name`` for ``model_path``; ``None`` options are dropped so an option one
    backend lacks does not break another."""
    info = backend_info(name)
    if not info.is_available():
        msg = (
            f"{name} backend not available: {info.module!r} is not importable"
            f" (or no {'/'.join(info.devices)} device). Install it with "
            f"`pip install pyinspect[{info.extra}]`."
        )
        raise BackendUnavailableError(msg)
    kwargs = {k: v for k, v in options.items() if v is not None}
    return info.factory(model_path, spec, **kwargs)


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
