"""Triton Python-backend stand-in for the patch model: the exported uint8-input ONNX through
ONNX Runtime, behind the same interface as the ``onnxruntime_onnx`` patch model.

``pyinspect export triton --patch-backend python`` copies this file to
``<name>_patch/1/model.py`` beside ``model.onnx``, for servers that have only the Python backend
(the ``nvidia-pytriton`` wheel's). The dynamic batcher hands ``execute`` several requests; their
patches run as one batch and the logits are split back per request.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

from pyinspect.backends.base import physical_cores


class TritonPythonModel:
    """The patch model; Triton calls ``initialize`` once per instance, then ``execute``."""

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        instances = sum(int(g.get("count", 1)) for g in config.get("instance_group", [])) or 1
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, physical_cores() // instances)
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.input = config["input"][0]["name"]
        self.output = config["output"][0]["name"]

    def execute(self, requests: list[Any]) -> list[Any]:
        """All requests' patches in one ONNX Runtime run; one response per request, in order."""
        try:
            arrays = [pb_utils.get_input_tensor_by_name(r, self.input).as_numpy() for r in requests]
            batch = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
            logits = self.session.run([self.output], {self.input: batch})[0]
        except Exception as exc:  # every request of the batch gets the reason
            error = pb_utils.TritonError(f"input '{self.input}': {exc}")
            return [pb_utils.InferenceResponse(error=error) for _ in requests]
        responses, row = [], 0
        for a in arrays:
            part = np.ascontiguousarray(logits[row : row + len(a)])
            responses.append(
                pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(self.output, part)])
            )
            row += len(a)
        return responses
