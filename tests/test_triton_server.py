"""The exported models on the real ``tritonserver`` (the nvidia-pytriton wheel's binary), one
server for the module on 127.0.0.1, random free ports: the frame model over HTTP and gRPC, its
metadata and metrics, malformed requests, and ``Inspector("grpc://...")`` on the patch model."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import numpy as np
import pytest
from tritonkit import MODEL, requires_server, same_verdict, student_server, synth_frames

from pyinspect.backends.triton import TritonError
from pyinspect.errors import SpecError
from pyinspect.export.triton import FRAME_OUTPUTS
from pyinspect.export.triton_server import LocalTritonServer
from pyinspect.inspector import Inspector
from pyinspect.result import InspectionResult
from pyinspect.spec import ModelSpec

pytestmark = [requires_server, pytest.mark.slow]

FRAME, PATCH = "student_frame", "student_py_patch"
N_FRAMES = 100


server = student_server("triton")


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return synth_frames(N_FRAMES)


@pytest.fixture(scope="module")
def in_process(frames: list[np.ndarray]) -> list[InspectionResult]:
    """What the frame model must answer: the same Inspector, in this process."""
    with Inspector(MODEL) as inspector:
        return [inspector.run(f) for f in frames]


def _frame_request(module: Any, frame: np.ndarray) -> list[Any]:
    tensor = module.InferInput("FRAME", list(frame.shape), "UINT8")
    tensor.set_data_from_numpy(frame)
    return [tensor]


def _as_result(r: Any) -> InspectionResult:
    """The frame model's outputs in the fields ``same_verdict`` compares."""

    class Answer:
        texture = int(r.as_numpy("TEXTURE")[0])
        defective = bool(r.as_numpy("DEFECTIVE")[0])
        label = r.as_numpy("LABEL")[0].decode()
        patch_class = r.as_numpy("PATCH_CLASS")
        patch_defect_prob = r.as_numpy("PATCH_DEFECT_PROB")

    return Answer()  # type: ignore[return-value]


@pytest.fixture(scope="module")
def frame_runs(server: LocalTritonServer, frames: list[np.ndarray]) -> dict[str, Any]:
    """100 frames over HTTP, then 100 over gRPC, with the success counter read around them."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    before = server.metric("nv_inference_request_success", FRAME)
    answers: dict[str, Any] = {}
    for name, module, url in (
        ("http", httpclient, server.http_url),
        ("grpc", grpcclient, server.grpc_url),
    ):
        client = module.InferenceServerClient(url)
        answers[name] = [_as_result(client.infer(FRAME, _frame_request(module, f))) for f in frames]
        client.close()
    deadline = time.monotonic() + 10  # the counter is updated as responses complete
    while time.monotonic() < deadline:
        answers["counted"] = server.metric("nv_inference_request_success", FRAME) - before
        if answers["counted"] >= 2 * N_FRAMES:
            break
        time.sleep(0.2)
    return answers


# ---- frame model ----------------------------------------------------------------------------
def test_server_is_ready_within_30_s(server: LocalTritonServer) -> None:
    assert server.ready_s < 30  # type: ignore[attr-defined]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_frame_model_verdicts_equal_in_process(
    frame_runs: dict[str, Any], in_process: list[InspectionResult], protocol: str
) -> None:
    answers = frame_runs[protocol]
    assert len(answers) == N_FRAMES
    differ = [
        i
        for i, (a, b) in enumerate(zip(answers, in_process, strict=True))
        if not same_verdict(a, b)
    ]
    assert differ == []
    assert len({a.label for a in answers}) > 3  # the frames exercise several verdicts


def test_metrics_count_the_200_frames(frame_runs: dict[str, Any]) -> None:
    assert frame_runs["counted"] == 2 * N_FRAMES


def test_frame_model_metadata_lists_inputs_and_outputs(server: LocalTritonServer) -> None:
    with urllib.request.urlopen(f"http://{server.http_url}/v2/models/{FRAME}") as r:
        meta = json.load(r)
    assert meta["inputs"] == [{"name": "FRAME", "datatype": "UINT8", "shape": [-1, -1]}]
    want = {n: t.removeprefix("TYPE_").replace("STRING", "BYTES") for n, t, _ in FRAME_OUTPUTS}
    assert {o["name"]: o["datatype"] for o in meta["outputs"]} == want


def test_frame_model_config_carries_the_sidecar(server: LocalTritonServer) -> None:
    with urllib.request.urlopen(f"http://{server.http_url}/v2/models/{FRAME}/config") as r:
        config = json.load(r)
    text = config["parameters"]["pyinspect_sidecar"]["string_value"]
    assert ModelSpec.from_json(text).to_dict() == ModelSpec.for_model(MODEL).to_dict()


# ---- malformed requests ---------------------------------------------------------------------
def _post(server: LocalTritonServer, header: dict[str, Any], data: bytes) -> tuple[int, str]:
    body = json.dumps(header).encode()
    req = urllib.request.Request(
        f"http://{server.http_url}/v2/models/{FRAME}/infer",
        data=body + data,
        method="POST",
        headers={"Inference-Header-Content-Length": str(len(body))},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _frame_input(shape: list[int], datatype: str, nbytes: int) -> dict[str, Any]:
    return {
        "name": "FRAME",
        "datatype": datatype,
        "shape": shape,
        "parameters": {"binary_data_size": nbytes},
    }


MALFORMED = {
    "wrong dtype": ([_frame_input([512, 512], "FP32", 4 * 512 * 512)], 4 * 512 * 512),
    "wrong rank": ([_frame_input([1, 512, 512], "UINT8", 512 * 512)], 512 * 512),
    "missing input": ([], 0),
    "0x0 frame": ([_frame_input([0, 0], "UINT8", 0)], 0),
    "1e5 x 1e5 declared": ([_frame_input([100_000, 100_000], "UINT8", 16)], 16),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_request_names_the_input_and_the_server_keeps_serving(
    server: LocalTritonServer, frames: list[np.ndarray], case: str
) -> None:
    inputs, nbytes = MALFORMED[case]
    status, text = _post(server, {"inputs": inputs}, b"\0" * nbytes)
    assert status in (400, 500), text
    assert "'FRAME'" in json.loads(text)["error"]
    frame = frames[0]
    status, _ = _post(
        server, {"inputs": [_frame_input([512, 512], "UINT8", frame.size)]}, frame.tobytes()
    )
    assert status == 200


def test_malformed_grpc_request_names_the_input(server: LocalTritonServer) -> None:
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    with grpc.insecure_channel(server.grpc_url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        request = service_pb2.ModelInferRequest(model_name=FRAME)
        tensor = request.inputs.add(name="FRAME", datatype="UINT8")
        tensor.shape.extend([100_000, 100_000])
        request.raw_input_contents.append(b"\0" * 16)
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'FRAME'" in info.value.details()


# ---- patch model through Inspector("grpc://...") ---------------------------------------------
@pytest.mark.parametrize("scheme", ["grpc", "http"])
def test_remote_inspector_verdicts_equal_in_process(
    server: LocalTritonServer, frames: list[np.ndarray], scheme: str
) -> None:
    count = N_FRAMES if scheme == "grpc" else 20  # HTTP: the same path, fewer frames
    with (
        Inspector(MODEL, runner="backend") as local,
        Inspector(server.model_url(PATCH, scheme)) as remote,
    ):
        assert remote.backend_name == "triton"
        assert remote.spec.to_dict() == local.spec.to_dict()  # the sidecar, from the config
        differ = [
            i for i, f in enumerate(frames[:count]) if not same_verdict(local.run(f), remote.run(f))
        ]
    assert differ == []


def test_remote_inspector_on_a_frame_model_says_it_is_not_a_patch_model(
    server: LocalTritonServer,
) -> None:
    with pytest.raises(SpecError, match=r"student_frame'.*max_batch_size is 0: not a patch model"):
        Inspector(server.model_url(FRAME))


def test_remote_inspector_on_an_unknown_model_is_not_ready(server: LocalTritonServer) -> None:
    url = server.model_url("nosuch")
    with pytest.raises(TritonError, match="nosuch") as info:
        Inspector(url)
    assert info.value.cause == "not ready"
    assert info.value.url == url


def test_remote_inspector_batches_frames(
    server: LocalTritonServer, frames: list[np.ndarray]
) -> None:
    with Inspector(MODEL, runner="backend") as local, Inspector(server.model_url(PATCH)) as remote:
        got = remote.run_batch(frames[:5])  # 45 patches: one request
        assert all(same_verdict(a, local.run(f)) for a, f in zip(got, frames[:5], strict=True))
