"""Triton Python-backend model: one uint8 frame in, pyinspect's verdict out.

``pyinspect export triton`` copies this file to ``<name>_frame/1/model.py``; the model file and
its sidecar sit beside it. It runs ``pyinspect.Inspector`` (the C++ tiler, the direct student
runner where it applies, the voter) in the backend's stub process, which imports pyinspect from
the environment named by the config's ``EXECUTION_ENV_PATH``. One request is one frame
(``max_batch_size: 0``: frames differ in size); throughput comes from instances, and each
instance gets ``physical cores / instances`` threads unless ``pyinspect_threads`` says otherwise.
A frame pyinspect refuses gets an error response naming the input; the model keeps serving.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

from pyinspect.backends.base import physical_cores
from pyinspect.inspector import Inspector

INPUT = "FRAME"


class TritonPythonModel:
    """The frame model; Triton calls ``initialize`` once per instance, then ``execute``."""

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        instances = sum(int(g.get("count", 1)) for g in config.get("instance_group", [])) or 1
        threads = int(params.get("pyinspect_threads") or 0)
        threads = threads or max(1, physical_cores() // instances)
        model_file = Path(args["model_repository"]) / args["model_version"]
        model_file /= params["pyinspect_model_file"]
        self.inspector = Inspector(model_file, threads=threads)

    def execute(self, requests: list[Any]) -> list[Any]:
        """One response per request, in order; a failed frame fails only its own request."""
        responses = []
        for request in requests:
            try:
                responses.append(self._inspect(request))
            except Exception as exc:  # the client gets the reason, the model lives
                text = f"input '{INPUT}': {exc}"
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(text)))
        return responses

    def _inspect(self, request: Any) -> Any:
        frame = pb_utils.get_input_tensor_by_name(request, INPUT).as_numpy()
        r = self.inspector.run(frame)
        outputs = (
            ("TEXTURE", np.array([r.texture], dtype=np.int32)),
            ("DEFECTIVE", np.array([r.defective], dtype=np.bool_)),
            ("LABEL", np.array([r.label.encode()], dtype=np.object_)),
            ("MAX_DEFECT_PROB", np.array([r.max_defect_prob], dtype=np.float32)),
            ("PATCH_CLASS", np.ascontiguousarray(r.patch_class, dtype=np.int32)),
            ("PATCH_DEFECT_PROB", np.ascontiguousarray(r.patch_defect_prob, dtype=np.float32)),
        )
        return pb_utils.InferenceResponse(
            output_tensors=[pb_utils.Tensor(name, value) for name, value in outputs]
        )

    def finalize(self) -> None:
        self.inspector.close()
