"""OpenVINO on the CPU: the same ONNX (or OpenVINO IR ``.xml``) and sidecar as ONNX Runtime.

Why a second CPU backend: on the student, OpenVINO's CPU plugin is faster than ONNX Runtime
(docs/fast_cpu.md has the numbers), and it can run bf16 on CPUs with native bf16 units.

* One compiled model per batch size, each with a static shape (the CPU plugin picks its kernels
  for that shape once); all of them read the same input buffer and write the same output
  buffer, wrapped as OpenVINO tensors without a copy, so ``infer`` allocates nothing.
* Precision is always set explicitly: ``INFERENCE_PRECISION_HINT`` defaults to bf16 on CPUs that
  have it, which would silently change the numbers. ``precision="bf16"`` is refused (not
  degraded) on a CPU without native bf16; verdict parity with f32 is checked by
  ``pyinspect.precision_guard`` before a reduced precision is trusted.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from pyinspect.backends.base import (
    GraphTensor,
    HostBuffers,
    check_cpu_options,
    check_graph_io,
    check_model_file,
    first_line,
    physical_cores,
)
from pyinspect.errors import (
    BackendError,
    BackendUnavailableError,
    InputError,
    ModelFileError,
    SpecError,
)
from pyinspect.spec import ModelSpec

_DEVICES = ("cpu",)
_SUFFIXES = (".onnx", ".xml")
#: Public precision name -> OpenVINO element type name of ``INFERENCE_PRECISION_HINT``.
PRECISIONS: dict[str, str] = {"f32": "f32", "bf16": "bf16"}
#: Compiled batch sizes kept at once (each holds its own kernels and scratch memory).
_MAX_COMPILED = 4


class OpenVinoBackend(HostBuffers):
    """CPU inference of one model with OpenVINO; ``spec`` is its sidecar.

    Args:
        model_path: ``.onnx`` or OpenVINO IR ``.xml`` (its ``.bin`` beside it).
        spec: the model's sidecar.
        precision: ``"f32"`` (default, exact) or ``"bf16"`` (CPUs with AVX512-BF16 / AMX only).
        threads: inference threads (``None``: physical cores).
        max_batch: largest batch ``input_buffer``/``infer`` accept.
        config: extra OpenVINO CPU properties (e.g. ``{"ENABLE_CPU_PINNING": True}``); they
            override the defaults above except the precision, which is checked after compiling.
    """

    name = "openvino"

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        spec: ModelSpec,
        *,
        precision: str = "f32",
        threads: int | None = None,
        device: str = "cpu",
        max_batch: int = 64,
        config: dict[str, Any] | None = None,
    ) -> None:
        check_cpu_options("openvino", _DEVICES, device, threads, max_batch)
        if precision not in PRECISIONS:
            msg = f"precision must be one of {list(PRECISIONS)}, got {precision!r}"
            raise InputError(msg)
        self.device = "cpu"
        self.model_path = Path(model_path)
        self.spec = spec
        self.precision = precision
        self.threads = threads or physical_cores()
        check_model_file(self.model_path)

        import openvino as ov

        self._ov = ov
        self._core = ov.Core()
        if precision != "f32":
            require_precision(self._core, precision)
        try:
            self._model = self._core.read_model(str(self.model_path))
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses with long traces
            msg = f"{self.model_path}: not a loadable model ({first_line(exc)})"
            raise ModelFileError(msg) from exc
        in_dtype, out_dtype, fixed_batch = check_against_spec(self._model, spec, self.model_path)
        self._in_dtype, self._out_dtype = in_dtype, out_dtype
        self._fixed_batch = fixed_batch
        self.max_batch = fixed_batch or max_batch
        self._config: dict[str, Any] = {
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
            "INFERENCE_NUM_THREADS": self.threads,
            **(config or {}),
            "INFERENCE_PRECISION_HINT": PRECISIONS[precision],
        }
        self._requests: dict[int, Any] = {}  # rows -> InferRequest bound to the buffers
        self._compiled: dict[int, Any] = {}  # rows -> CompiledModel (most recently used last)
        self._init_buffers()
        # Compile the sidecar's batch (or the 3×3 grid's 9) now, so the first frame is not slow
        # and a precision the plugin ignores is caught here rather than at the first infer.
        first = fixed_batch or min(self.max_batch, 9)
        self._ensure(first)
        self._request(first)

    # ---- Backend protocol (input_spec, input_buffer, infer: HostBuffers) -----------------------
    def _run(self, rows: int, batch: int) -> None:
        request = self._requests.get(rows)
        if request is None:
            request = self._request(rows)
        request.infer()

    def close(self) -> None:
        """Drop the compiled models and buffers; idempotent."""
        self._closed = True
        self._requests.clear()
        self._compiled.clear()

    def __repr__(self) -> str:
        return (
            f"OpenVinoBackend({str(self.model_path)!r}, precision={self.precision!r},"
            f" threads={self.threads}, max_batch={self.max_batch}, dtype={self._in_dtype.name})"
        )

    # ---- introspection (benchmarks, docs) ------------------------------------------------------
    def compiled_properties(self, batch: int = 9) -> dict[str, Any]:
        """What the CPU plugin actually chose for ``batch`` (precision, threads, streams)."""
        self._ensure(batch)
        rows = self._fixed_batch or batch
        if rows not in self._compiled:
            self._request(rows)
        compiled = self._compiled[rows]
        keys = ("INFERENCE_PRECISION_HINT", "INFERENCE_NUM_THREADS", "NUM_STREAMS")
        values = {k: compiled.get_property(k) for k in keys}
        return {
            k: v.get_type_name() if hasattr(v, "get_type_name") else v for k, v in values.items()
        }

    # ---- buffers -------------------------------------------------------------------------------
    def _drop_views(self) -> None:
        # The tensors set on the requests point into the buffers (and keep a reference to them).
        self._requests.clear()

    def _request(self, rows: int) -> Any:
        """An infer request for batch ``rows`` whose input and output tensors wrap the first
        ``rows`` rows of the buffers (compiling that batch size on first use)."""
        ov = self._ov
        compiled = self._compiled.pop(rows, None)
        if compiled is None:
            compiled = self._compile(rows)
        self._compiled[rows] = compiled  # re-insert: most recently used last
        while len(self._compiled) > _MAX_COMPILED:
            oldest = next(iter(self._compiled))
            del self._compiled[oldest]
            self._requests.pop(oldest, None)
        request = compiled.create_infer_request()
        request.set_input_tensor(ov.Tensor(self._input[:rows], shared_memory=True))
        out_index = _output_index(compiled.outputs, self.spec.output.name)
        request.set_output_tensor(out_index, ov.Tensor(self._output[:rows], shared_memory=True))
        self._requests[rows] = request
        return request

    def _compile(self, rows: int) -> Any:
        model = self._model.clone()
        c, p = self.spec.input.channels, self.spec.patch
        try:
            model.reshape({self.spec.input.name: [rows, c, p, p]})
            compiled = self._core.compile_model(model, "CPU", self._config)
        except Exception as exc:
            msg = (
                f"openvino could not compile {self.model_path} for batch {rows}: {first_line(exc)}"
            )
            raise BackendError(msg) from exc
        got = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        if got != PRECISIONS[self.precision]:  # never run another precision than the one asked
            msg = (
                f"openvino compiled {self.model_path} with inference precision {got}, not"
                f" {self.precision} as asked; refusing to run it silently at another precision"
            )
            raise BackendUnavailableError(msg)
        return compiled


# ---- checks shared with the native runner ------------------------------------------------------
def cpu_precisions(core: Any) -> list[str]:
    """Precisions the CPU plugin reports natively (e.g. ['FP32', 'INT8', 'BF16'])."""
    return [str(c) for c in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")]


def require_precision(core: Any, precision: str) -> None:
    """Refuse a reduced precision the CPU cannot run natively (OpenVINO would quietly use f32)."""
    caps = cpu_precisions(core)
    if precision.upper() not in caps:
        name = str(core.get_property("CPU", "FULL_DEVICE_NAME"))
        msg = (
            f"precision={precision!r} needs a CPU with native {precision} support (AVX512-BF16 or"
            f" AMX); this CPU ({name}) offers {caps}. Use precision='f32'."
        )
        raise BackendUnavailableError(msg)


def _output_index(outputs: list[Any], name: str) -> int:
    for i, port in enumerate(outputs):
        if name in port.get_names():
            return i
    names = [sorted(p.get_names()) for p in outputs]
    msg = f"model has no output tensor {name!r}; its outputs are {names}"
    raise SpecError(msg)


_OV_DTYPES: dict[str, np.dtype[Any]] = {"f32": np.dtype(np.float32), "f16": np.dtype(np.float16)}


def check_against_spec(
    model: Any, spec: ModelSpec, path: Path
) -> tuple[np.dtype[Any], np.dtype[Any], int]:
    """The graph must be the one the sidecar describes.

    Returns (input dtype, output dtype, fixed batch or 0 for a dynamic one).
    """

    def tensor(port: Any) -> GraphTensor:
        pshape = port.get_partial_shape()
        shape = None
        if pshape.rank.is_static:
            shape = tuple(d.get_length() if d.is_static else -1 for d in pshape)
        kind = port.get_element_type().get_type_name()
        return GraphTensor(tuple(sorted(port.get_names())), shape, _OV_DTYPES.get(kind), kind)

    inputs, outputs = [tensor(p) for p in model.inputs], [tensor(p) for p in model.outputs]
    inp, out = check_graph_io(path, spec, inputs, outputs)
    assert inp.dtype is not None and out.dtype is not None and inp.shape is not None
    return inp.dtype, out.dtype, max(inp.shape[0], 0)
