"""ONNX Runtime on the CPU: the default backend (onnxruntime is a core dependency).

One session, intra-op threads = physical cores, all graph optimisations, sequential execution.
Input and output live in numpy buffers bound once per batch size through IOBinding, so ``infer``
allocates nothing: the tiler writes the input in place and ORT writes the logits in place.

ORT's pool threads spin (busy-wait) after each parallel section so the next one starts sooner.
When those threads fill every core the process may use, the spin takes the core from the
caller's other threads (a camera loop's decoder, the tiler), so by default it is off then and
on when a core is left over (``spin=None``); ``spin=True/False`` forces it.
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
    physical_cores,
    usable_cpus,
)
from pyinspect.errors import InputError, ModelFileError
from pyinspect.spec import ModelSpec

_ORT_DTYPES: dict[str, np.dtype[Any]] = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(float16)": np.dtype(np.float16),
}
_DEVICES = ("cpu",)


class OnnxRuntimeBackend(HostBuffers):
    """CPU inference of one ONNX model whose sidecar is ``spec`` (threads: see ``HostBuffers``)."""

    name = "onnxruntime"

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        spec: ModelSpec,
        *,
        threads: int | None = None,
        device: str = "cpu",
        max_batch: int = 64,
        spin: bool | None = None,
    ) -> None:
        check_cpu_options("onnxruntime", _DEVICES, device, threads, max_batch)
        if spin is not None and not isinstance(spin, bool):
            msg = f"spin must be True, False or None, got {spin!r}"
            raise InputError(msg)
        self.device = "cpu"
        self.model_path = Path(model_path)
        self.spec = spec
        self.threads = threads or physical_cores()
        self.spin = default_spin(self.threads) if spin is None else spin
        check_model_file(self.model_path)

        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3  # errors only: ORT's warnings go to stderr, not to callers
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.spin else "0")
        try:
            self._session = ort.InferenceSession(
                str(self.model_path), opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ORT raises its own pybind types (InvalidProtobuf, Fail, ...)
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            msg = f"{self.model_path}: not a loadable ONNX model ({detail})"
            raise ModelFileError(msg) from exc
        self._ort = ort
        in_dtype, fixed_batch = _check_against_spec(self._session, spec, self.model_path)
        self._out_dtype = _ORT_DTYPES[self._find(self._session.get_outputs(), "output").type]
        self._fixed_batch = fixed_batch
        self.max_batch = fixed_batch or max_batch
        self._in_dtype = in_dtype
        self._bindings: dict[int, Any] = {}
        self._run_options = ort.RunOptions()
        self._init_buffers()

    # ---- Backend protocol (input_spec, input_buffer, infer: HostBuffers) -----------------------
    def _run(self, rows: int, batch: int) -> None:
        binding = self._bindings.get(rows)
        if binding is None:
            binding = self._bind(rows)
        self._session.run_with_iobinding(binding, self._run_options)

    def close(self) -> None:
        """Drop the session and buffers; idempotent."""
        self._closed = True
        self._bindings.clear()
        self._session = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"OnnxRuntimeBackend({str(self.model_path)!r}, threads={self.threads},"
            f" spin={self.spin}, max_batch={self.max_batch}, dtype={self._in_dtype.name})"
        )

    # ---- buffers -------------------------------------------------------------------------------
    def _drop_views(self) -> None:
        # The OrtValues bound in ``_bind`` point into the buffers (and hold a reference to them).
        self._bindings.clear()

    def _bind(self, rows: int) -> Any:
        ort = self._ort
        binding = self._session.io_binding()
        binding.bind_ortvalue_input(
            self.spec.input.name, ort.OrtValue.ortvalue_from_numpy(self._input[:rows])
        )
        binding.bind_ortvalue_output(
            self.spec.output.name, ort.OrtValue.ortvalue_from_numpy(self._output[:rows])
        )
        self._bindings[rows] = binding
        return binding

    def _find(self, tensors: list[Any], which: str) -> Any:
        name = getattr(self.spec, which).name
        return next(t for t in tensors if t.name == name)


def default_spin(threads: int, cpus: int | None = None) -> bool:
    """Spin only when ``threads`` leave at least one of the ``cpus`` this process may use (its
    affinity; default: measured) for the caller's other threads."""
    return threads < (usable_cpus() if cpus is None else cpus)


def _check_against_spec(session: Any, spec: ModelSpec, model: Path) -> tuple[np.dtype[Any], int]:
    """The graph must be the one the sidecar describes. Returns (input dtype, fixed batch or 0)."""

    def tensor(t: Any) -> GraphTensor:
        shape = tuple(d if isinstance(d, int) and d > 0 else -1 for d in t.shape)
        return GraphTensor((t.name,), shape, _ORT_DTYPES.get(t.type), t.type)

    inputs = [tensor(t) for t in session.get_inputs()]
    inp, _ = check_graph_io(model, spec, inputs, [tensor(t) for t in session.get_outputs()])
    assert inp.dtype is not None and inp.shape is not None  # checked above
    return inp.dtype, max(inp.shape[0], 0)
