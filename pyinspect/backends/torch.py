"""PyTorch: runs the program that export writes with ``torch.export`` (``model.pt2``, with the same
sidecar as the ONNX model), on a CUDA GPU in FP16 or on the CPU in FP32.

On CUDA this is the GPU path that can be measured without TensorRT, and a fallback for users who
do not have it: the tiler writes into a pinned FP16 staging buffer, one non-blocking copy moves it
to the GPU, and after two eager calls at one batch size the forward pass is captured as a
``torch.cuda.CUDAGraph`` and replayed (one launch instead of one per layer). On the CPU the tiler
writes into a float32 NumPy buffer that the model reads without a copy.

``torch`` is imported when a backend is created, never by ``import pyinspect``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import numpy as np

from pyinspect.backends.base import ClosingMixin, TensorSpec, check_batch
from pyinspect.errors import (
    BackendError,
    BackendUnavailableError,
    InputError,
    ModelFileError,
    SpecError,
)
from pyinspect.spec import ModelSpec

_DEVICES = ("cuda", "cpu")
WARMUP_CALLS = 2  # eager calls at one batch size before its CUDA graph is captured


def program_path(model_path: str | os.PathLike[str]) -> Path:
    """The exported program for ``model_path``: itself for ``.pt2``, the sibling ``.pt2`` that
    export writes beside an ``.onnx`` (``student.onnx`` -> ``student.pt2``)."""
    p = Path(model_path)
    return p.with_suffix(".pt2") if p.suffix.lower() == ".onnx" else p


def resolve_device(device: str, cuda_available: bool) -> str:
    """``auto`` -> ``cuda`` when a GPU is usable, else ``cpu``; an explicit CUDA device without a
    GPU is an error, never a silent CPU fallback."""
    if device == "auto":
        return "cuda" if cuda_available else "cpu"
    if device == "cpu":
        return "cpu"
    if device == "cuda" or device.startswith("cuda:"):
        if not cuda_available:
            msg = (
                f"torch backend: device={device!r} but PyTorch sees no CUDA GPU"
                " (torch.cuda.is_available() is False); use device='cpu'"
            )
            raise BackendUnavailableError(msg)
        return device
    msg = f"torch backend runs on ['cuda', 'cuda:N', 'cpu', 'auto'], got device={device!r}"
    raise InputError(msg)


def resolve_precision(precision: str | None, device: str) -> Literal["fp16", "fp32"]:
    """Default FP16 on CUDA, FP32 on the CPU (where FP16 convolutions are slow or missing)."""
    on_cuda = device.startswith("cuda")
    if precision is None:
        return "fp16" if on_cuda else "fp32"
    if precision not in ("fp16", "fp32"):
        msg = f"torch backend precision must be 'fp16' or 'fp32', got {precision!r}"
        raise InputError(msg)
    if precision == "fp16" and not on_cuda:
        msg = "torch backend: precision='fp16' needs a CUDA device; the CPU path runs FP32"
        raise InputError(msg)
    return "fp16" if precision == "fp16" else "fp32"


class TorchBackend(ClosingMixin):
    """Inference of one exported PyTorch program (``.pt2``) whose sidecar is ``spec``.

    Options: ``device`` ("auto", "cuda", "cuda:N", "cpu"), ``precision`` ("fp16" default on
    CUDA, "fp32"), ``cuda_graph`` (capture the steady-state call on CUDA, default True),
    ``max_batch`` (buffer rows, default 64), ``threads`` (CPU intra-op threads; this sets
    PyTorch's process-wide ``torch.set_num_threads``). Not safe for concurrent calls from several
    threads (shared buffers); the Inspector serialises them.
    """

    name = "torch"

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        spec: ModelSpec,
        *,
        device: str = "auto",
        precision: str | None = None,
        cuda_graph: bool = True,
        max_batch: int = 64,
        threads: int | None = None,
    ) -> None:
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            msg = f"max_batch must be an int >= 1, got {max_batch!r}"
            raise InputError(msg)
        if threads is not None and threads < 1:
            msg = f"threads must be >= 1 (or None for PyTorch's default), got {threads}"
            raise InputError(msg)
        self.model_path = Path(model_path)
        self.program = program_path(self.model_path)
        self.spec = spec
        _check_program_file(self.program, self.model_path)
        if spec.input.layout != "NCHW":
            msg = f"{self.program}: input layout {spec.input.layout} is not supported (NCHW only)"
            raise SpecError(msg)

        try:
            import torch
        except ImportError as exc:
            msg = (
                f"PyTorch is not installed ({exc}). Install it with `pip install pyinspect[torch]`."
            )
            raise BackendUnavailableError(msg) from exc

        self._torch = torch
        self.device = resolve_device(device, torch.cuda.is_available())
        self.precision = resolve_precision(precision, self.device)
        self.cuda_graph = bool(cuda_graph) and self.device.startswith("cuda")
        if threads is not None and not self.device.startswith("cuda"):
            torch.set_num_threads(threads)
        fixed = spec.input.shape[0]
        self._fixed_batch = fixed if fixed > 0 else 0
        self.max_batch = self._fixed_batch or max_batch
        dtype = torch.float16 if self.precision == "fp16" else torch.float32
        self._dtype = dtype
        self._module = self._load(torch, dtype)

        c, p, k = spec.input.channels, spec.patch, spec.num_classes
        shape = (self.max_batch, c, p, p)
        self._graphs: dict[int, tuple[Any, Any]] = {}
        self._runs_at_batch = 0
        self._last_batch = 0
        if self.device.startswith("cuda"):
            dev = torch.device(self.device)
            # Borrowed views: the NumPy arrays share the pinned tensors' memory and are valid as
            # long as this backend holds the tensors (until close()).
            self._pinned_in = torch.empty(shape, dtype=dtype, pin_memory=True)
            self._pinned_out = torch.empty(
                (self.max_batch, k), dtype=torch.float32, pin_memory=True
            )
            self._dev_in = torch.zeros(shape, dtype=dtype, device=dev)
            self._stream = torch.cuda.Stream(device=dev)
            self._in_view = self._pinned_in.numpy()
            self._out_view = self._pinned_out.numpy()
        else:
            self._in_view = np.zeros(shape, dtype=np.float32)
            self._in_tensor = torch.from_numpy(self._in_view)  # shares the NumPy memory
        self._closed = False

    def _load(self, torch: Any, dtype: Any) -> Any:
        try:
            program = torch.export.load(str(self.program))
        except Exception as exc:  # torch raises several types for a bad archive
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            msg = f"{self.program}: not a loadable torch.export program ({detail})"
            raise ModelFileError(msg) from exc
        module = program.module()
        module.to(device=torch.device(self.device), dtype=dtype)
        return module

    # ---- Backend protocol ----------------------------------------------------------------------
    @property
    def input_spec(self) -> TensorSpec:
        return TensorSpec(self.spec.input.name, tuple(self.spec.input.shape), self._in_view.dtype)

    def input_buffer(self, batch: int) -> np.ndarray:
        """Writable C-contiguous [batch, C, P, P] view (pinned FP16 on CUDA, float32 on the
        CPU) that the next ``infer(batch)`` reads."""
        self._check_batch(batch)
        return self._in_view[:batch]

    def infer(self, batch: int) -> np.ndarray:
        """Logits (float32 [batch, K]) of the first ``batch`` rows of the input buffer; a view
        that the next call overwrites."""
        self._check_batch(batch)
        rows = self._fixed_batch or batch
        torch = self._torch
        try:
            with torch.inference_mode():
                if self.device.startswith("cuda"):
                    return self._infer_cuda(rows)[:batch]
                out = self._module(self._in_tensor[:rows])
                return np.asarray(out.float().numpy())[:batch]
        except (InputError, BackendError):
            raise
        except Exception as exc:  # torch raises RuntimeError/AssertionError/... from the graph
            msg = f"torch failed on {self.program} (batch {batch}, {self.device}): {exc}"
            raise BackendError(msg) from exc

    def close(self) -> None:
        """Drop graphs, buffers and the module; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self.device.startswith("cuda"):
            self._stream.synchronize()
        self._graphs.clear()
        self._module = None

    def __repr__(self) -> str:
        return (
            f"TorchBackend({str(self.program)!r}, device={self.device!r},"
            f" precision={self.precision!r}, cuda_graph={self.cuda_graph},"
            f" max_batch={self.max_batch})"
        )

    # ---- internals -----------------------------------------------------------------------------
    def _check_batch(self, batch: int) -> None:
        if self._closed:
            msg = f"torch backend for {self.program} is closed"
            raise BackendError(msg)
        check_batch(batch, 1, self.max_batch, "max_batch")

    def _infer_cuda(self, rows: int) -> np.ndarray:
        torch = self._torch
        stream = self._stream
        with torch.cuda.stream(stream):
            x = self._dev_in[:rows]
            x.copy_(self._pinned_in[:rows], non_blocking=True)
            graph = self._graphs.get(rows)
            if graph is None and self.cuda_graph:
                self._runs_at_batch = self._runs_at_batch + 1 if rows == self._last_batch else 1
                self._last_batch = rows
                if self._runs_at_batch > WARMUP_CALLS:
                    graph = self._capture(rows)
            if graph is not None:
                graph[0].replay()
                out = graph[1]
            else:
                out = self._module(x).float()
            self._pinned_out[:rows].copy_(out, non_blocking=True)
        stream.synchronize()
        return self._out_view[:rows]

    def _capture(self, rows: int) -> tuple[Any, Any]:
        """Capture ``module(dev_in[:rows]).float()`` on the backend's stream; the eager calls
        before it were the warm-up (cuDNN autotuning, lazy init) that capture requires."""
        torch = self._torch
        graph = torch.cuda.CUDAGraph()
        try:
            # A private memory pool per graph: no graph can overwrite another's output.
            with torch.cuda.graph(graph, stream=self._stream):
                static_out = self._module(self._dev_in[:rows]).float()
        except Exception as exc:
            msg = (
                f"{self.program}: CUDA graph capture failed ({exc}). To resolve: create the"
                " backend with cuda_graph=False."
            )
            raise BackendError(msg) from exc
        self._graphs[rows] = (graph, static_out)
        return graph, static_out


def _check_program_file(program: Path, given: Path) -> None:
    if program.is_file():
        if program.stat().st_size == 0:
            msg = f"{program}: exported program is empty (0 bytes); re-export it"
            raise ModelFileError(msg)
        return
    if program != given:
        msg = (
            f"{program}: not found; the torch backend runs the torch.export program that export"
            f" writes beside {given.name} (re-export to create it)"
        )
    else:
        msg = f"{program}: exported program {'not a file' if program.exists() else 'not found'}"
    raise ModelFileError(msg)
