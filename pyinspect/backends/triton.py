"""Triton backend: ``Inspector("grpc://host:8001/<model>")`` (or ``http://host:8000/<model>``).

The frame is tiled here, the patch batch is inferred by a patch model on a Triton Inference
Server (``pyinspect export triton`` writes one), and the vote is taken here, so the server sees
only patches and the verdict logic stays the in-process one. The sidecar comes from the model
config's ``parameters.pyinspect_sidecar`` (``remote_spec``), or from ``Inspector(spec=...)``.

A patch model with ``pyinspect_input_encoding: uint8`` (the exported ONNX: cast + normalisation
inside the graph) takes raw uint8 patches, 0.45 MB per 512×512 gray frame instead of 1.8 MB of
float32. The C++ tiler writes float only, so uint8 patches are cut by ``tile_uint8``: one NumPy
slice copy per patch (gray->3 channels broadcasts, BGR(A)->RGB reverses the channel axis). A
colour frame on a gray model is the one case that cannot be exact: its luma is rounded to uint8
(OpenCV's BGR2GRAY) where the in-process tiler keeps it in float. ``normalized`` models (a
TensorRT plan served as it is) get the float patches of the Inspector's own C++ tiler.

Every failure is a ``TritonError`` (a ``BackendError``) naming the URL, the model and the cause:
``unreachable``, ``not ready``, ``timeout``, ``mismatch`` (shape/dtype) or ``server``. Calls time
out after ``timeout`` seconds; after a server restart the same backend reconnects on its next
call (gRPC reconnects within about a second; HTTP opens a new connection).
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from pyinspect.backends.base import ClosingMixin, TensorSpec, check_batch, first_line
from pyinspect.errors import BackendError, BackendUnavailableError, InputError, SpecError

if TYPE_CHECKING:
    from pyinspect.spec import ModelSpec

__all__ = [
    "TritonBackend",
    "TritonError",
    "TritonURL",
    "is_model_url",
    "parse_model_url",
    "remote_spec",
    "tile_uint8",
]

PARAM_SIDECAR = "pyinspect_sidecar"  # the names pyinspect.export.triton writes
PARAM_ENCODING = "pyinspect_input_encoding"
DEFAULT_TIMEOUT_S = 10.0
_URL = re.compile(r"^(?P<scheme>grpc|http)://(?P<host>[^/?#]+)/(?P<model>[A-Za-z0-9_.-]+)/?$")
_TRITON_DTYPES = {"UINT8": np.dtype(np.uint8), "FP32": np.dtype(np.float32)}
_TRITON_DTYPES["FP16"] = np.dtype(np.float16)
# gRPC: messages of any size (a 64-patch RGB batch is 9.6 MB, over gRPC's 4 MB default), and a
# reconnect within a second of a restarted server instead of gRPC's backoff of up to 2 minutes.
_GRPC_CHANNEL_ARGS = [
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


class TritonError(BackendError):
    """A Triton call failed; ``cause`` is ``unreachable``, ``not ready``, ``timeout``,
    ``mismatch`` or ``server``, ``url`` and ``model`` say where."""

    def __init__(self, url: str, model: str, cause: str, detail: str) -> None:
        super().__init__(f"{url}: Triton model {model!r}: {cause}: {detail}")
        self.url, self.model, self.cause = url, model, cause


@dataclass(frozen=True)
class TritonURL:
    """``grpc://host:port/model`` split up; ``url`` is the text as given."""

    url: str
    scheme: str
    host: str
    model: str


def is_model_url(model: object) -> bool:
    """Whether ``model`` names a model on a server (``grpc://`` / ``http://``) rather than a
    file; imports nothing."""
    return isinstance(model, str) and model.startswith(("grpc://", "http://"))


def parse_model_url(model: object) -> TritonURL:
    """``grpc://HOST:PORT/MODEL`` or ``http://HOST:PORT/MODEL``, or an ``InputError`` saying
    what the form is."""
    m = _URL.match(model) if isinstance(model, str) else None
    if m is None:
        msg = (
            "the triton backend needs a model URL grpc://HOST:PORT/MODEL or"
            f" http://HOST:PORT/MODEL, got {os.fspath(model)!r}"  # type: ignore[call-overload]
        )
        raise InputError(msg)
    return TritonURL(str(model), m["scheme"], m["host"], m["model"])


def remote_spec(model: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> ModelSpec:
    """The sidecar the server holds for ``model`` (a URL), from its config's parameters."""
    url = parse_model_url(model)
    conn = _Connection(url, timeout)
    try:
        return conn.spec()
    finally:
        conn.close()


def tile_uint8(frame: np.ndarray, out: np.ndarray, boxes: np.ndarray) -> None:
    """Cut every box (x, y, w, h) of a checked uint8 frame (H×W or H×W×C, C = 1, 3 BGR, 4
    BGRA) into ``out`` uint8 [N, C_out, P, P] without normalising: gray -> 3 channels
    broadcasts, BGR(A) -> RGB reverses the channels, BGR(A) -> 1 channel is OpenCV's rounded
    luma. One slice copy per patch and plane, no per-pixel Python: 27 µs for a 512×512 gray
    frame into [9, 1, 224, 224] where the C++ float tiler takes 39 µs; 270 µs for BGR -> RGB
    (the C++ float tiler: 153 µs); ``python benchmarks/serve.py`` measures both."""
    image = frame if frame.ndim == 3 else frame[:, :, None]
    h_img, w_img, c_in = image.shape
    n, c_out, p = out.shape[0], out.shape[1], out.shape[2]
    if out.dtype != np.uint8 or out.ndim != 4 or len(boxes) != n or out.shape[3] != p:
        msg = f"out must be uint8 [{len(boxes)}, C, P, P], got {out.dtype} {out.shape}"
        raise InputError(msg)
    if c_in == 1:
        planes = [image[:, :, 0]]  # broadcast over C_out (1 or 3)
    elif c_out == 1:
        import cv2

        code = cv2.COLOR_BGR2GRAY if c_in == 3 else cv2.COLOR_BGRA2GRAY
        planes = [cv2.cvtColor(np.ascontiguousarray(image), code)]
    else:  # BGR(A) -> R, G, B planes once (contiguous rows copy faster than strided ones)
        planes = list(np.ascontiguousarray(image.transpose(2, 0, 1)[2::-1]))
    for i, (x, y, w, h) in enumerate(boxes.tolist()):
        if w != p or h != p or x < 0 or y < 0 or x + w > w_img or y + h > h_img:
            msg = f"box {i} ({x}, {y}, {w}, {h}) is not a {p}x{p} patch inside the frame"
            raise InputError(msg)
        if len(planes) == 1:
            out[i] = planes[0][y : y + p, x : x + p]
        else:
            for c, plane in enumerate(planes):
                out[i, c] = plane[y : y + p, x : x + p]


class _Connection:
    """One tritonclient client per thread (the HTTP client is not thread-safe; gRPC's is, but
    one per thread costs nothing), with the calls the backend makes and their errors."""

    def __init__(self, url: TritonURL, timeout: float) -> None:
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
            msg = f"timeout must be a number of seconds > 0, got {timeout!r}"
            raise InputError(msg)
        try:
            if url.scheme == "grpc":
                import tritonclient.grpc as module
            else:
                import tritonclient.http as module
        except ImportError as exc:
            msg = (
                f"{url.url}: the triton backend needs tritonclient[{url.scheme}]; install it"
                " with `pip install pyinspect[serve]`"
            )
            raise BackendUnavailableError(msg) from exc
        self.url, self.timeout, self.module = url, float(timeout), module
        self._local = threading.local()
        self._clients: list[Any] = []
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            if self.url.scheme == "grpc":
                client = self.module.InferenceServerClient(
                    self.url.host, channel_args=_GRPC_CHANNEL_ARGS
                )
            else:
                client = self.module.InferenceServerClient(
                    self.url.host,
                    connection_timeout=self.timeout,
                    network_timeout=self.timeout,
                )
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def error(self, exc: BaseException, started: float) -> TritonError:
        """A library exception as a ``TritonError`` with its cause."""
        text = first_line(exc) if str(exc).strip() else type(exc).__name__
        status = str(getattr(exc, "status", lambda: "")() or "")
        low = f"{status} {text}".lower()
        waited = f" (after {time.monotonic() - started:.1f} s)"
        if "deadline" in low or "timeout" in low or "timed out" in low or _is_timeout(exc):
            cause = "timeout"
            text = f"no answer within the client timeout of {self.timeout:g} s{waited}"
        elif (
            "unavailable" in low
            or "failed to connect" in low
            or "connection" in low
            or "socket closed" in low
            or isinstance(exc, ConnectionError | OSError)
        ):
            cause = "unreachable"
            text += waited
        elif "not ready" in low or "unknown model" in low or "not found" in low:
            cause = "not ready"
        elif "shape" in low or "data-type" in low or "datatype" in low or "byte size" in low:
            cause = "mismatch"
        else:
            cause = "server"
        return TritonError(self.url.url, self.url.model, cause, text)

    def call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.monotonic()
        try:
            if self.url.scheme == "grpc" and what != "ready":
                kwargs.setdefault("client_timeout", self.timeout)
            return fn(*args, **kwargs)
        except Exception as exc:  # tritonclient, grpc, gevent and socket errors alike
            raise self.error(exc, started) from exc

    def config(self) -> dict[str, Any]:
        """The model's config as JSON, after checking the model is ready."""
        client = self.client
        ready = self.call("ready", client.is_model_ready, self.url.model)
        if not ready:
            raise TritonError(
                self.url.url,
                self.url.model,
                "not ready",
                "the server answers but does not serve this model (unknown, loading or failed)",
            )
        if self.url.scheme == "grpc":
            doc = self.call("config", client.get_model_config, self.url.model, as_json=True)
            config: dict[str, Any] = doc["config"]
        else:
            config = self.call("config", client.get_model_config, self.url.model)
        return config

    def spec(self) -> ModelSpec:
        from pyinspect.spec import ModelSpec

        params = self.config().get("parameters", {})
        text = params.get(PARAM_SIDECAR, {}).get("string_value")
        if not text:
            msg = (
                f"{self.url.url}: the config of Triton model {self.url.model!r} has no"
                f" parameters.{PARAM_SIDECAR} (not written by `pyinspect export triton`);"
                " pass the sidecar: Inspector(url, spec=ModelSpec.load(PATH))"
            )
            raise SpecError(msg)
        return ModelSpec.from_json(text, source=f"{self.url.url} parameters.{PARAM_SIDECAR}")

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, []
        for c in clients:
            with contextlib.suppress(Exception):  # closing a dead server's client must not raise
                c.close()
        self._local = threading.local()


def _is_timeout(exc: BaseException) -> bool:
    if isinstance(exc, TimeoutError):
        return True
    try:
        import gevent

        return isinstance(exc, gevent.Timeout)
    except ImportError:
        return False


class TritonBackend(ClosingMixin):
    """A patch model on a Triton server behind the Backend protocol.

    ``model_path``: ``grpc://HOST:PORT/MODEL`` or ``http://HOST:PORT/MODEL``. ``spec``: the
    sidecar (``remote_spec`` reads the server's). ``timeout``: seconds per call. ``max_batch``:
    patches per request (default and upper bound: the model's ``max_batch_size``).
    ``threads`` is accepted for the Inspector's sake and unused (the compute is remote).
    """

    name = "triton"
    device = "remote"
    remote = True  # the Inspector skips its local probes (the server's model is checked here)

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        spec: ModelSpec,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        max_batch: int | None = None,
        threads: int | None = None,
    ) -> None:
        self.url = parse_model_url(model_path)
        self.model_path = self.url.url
        self.spec = spec
        self.threads = threads
        self._conn = _Connection(self.url, timeout)
        self._closed = False
        try:
            self._configure(self._conn.config(), max_batch)
        except BaseException:
            self._conn.close()
            raise

    def _configure(self, config: dict[str, Any], max_batch: int | None) -> None:
        url, model, spec = self.url.url, self.url.model, self.spec

        def mismatch(text: str) -> SpecError:
            return SpecError(f"{url}: Triton model {model!r}: {text}")

        msg: str

        inputs, outputs = config.get("input", []), config.get("output", [])
        if len(inputs) != 1 or not outputs:
            names = [t.get("name") for t in inputs]
            msg = f"a patch model has one input and an output, got inputs {names}"
            raise mismatch(msg)
        inp, out = inputs[0], outputs[0]
        top = int(config.get("max_batch_size", 0))
        if top < 1:
            msg = (
                "max_batch_size is 0: not a patch model (a frame model takes whole frames;"
                " use the *_patch model)"
            )
            raise mismatch(msg)
        c, p, k = spec.input.channels, spec.patch, spec.num_classes
        dims = [int(d) for d in inp.get("dims", [])]
        if dims != [c, p, p]:
            msg = f"input {inp.get('name')!r} dims are {dims}, the sidecar says {[c, p, p]}"
            raise mismatch(msg)
        odims = [int(d) for d in out.get("dims", [])]
        if odims != [k]:
            msg = f"output {out.get('name')!r} dims are {odims}, the sidecar says [{k}]"
            raise mismatch(msg)
        in_type = str(inp.get("data_type", "")).removeprefix("TYPE_")
        encoding = config.get("parameters", {}).get(PARAM_ENCODING, {}).get("string_value", "") or (
            "uint8" if in_type == "UINT8" else "normalized"
        )
        want = (
            "UINT8"
            if encoding == "uint8"
            else {"float32": "FP32", "float16": "FP16"}.get(spec.input.dtype, "")
        )
        if in_type != want or in_type not in _TRITON_DTYPES:
            msg = f"input {inp.get('name')!r} is {in_type}, expected {want} ({encoding})"
            raise mismatch(msg)
        self._in_name, self._in_type = str(inp["name"]), in_type
        self._out_name = str(out["name"])
        self._in_dtype = _TRITON_DTYPES[in_type]
        self.encoding = encoding
        if max_batch is not None:
            max_batch = check_batch(max_batch, 1, top, "the model's max_batch_size")
        self.max_batch = max_batch or top
        self._input = np.zeros((self.max_batch, c, p, p), dtype=self._in_dtype)
        module = self._conn.module
        if self.url.scheme == "grpc":
            self._outputs = [module.InferRequestedOutput(self._out_name)]
        else:
            self._outputs = [module.InferRequestedOutput(self._out_name, binary_data=True)]

    # ---- Backend protocol --------------------------------------------------------------------
    @property
    def input_spec(self) -> TensorSpec:
        return TensorSpec(self._in_name, (-1, *self._input.shape[1:]), self._in_dtype)

    @property
    def tiler(self) -> Any:
        """What fills ``input_buffer``: ``tile_uint8`` for a uint8 patch model; ``None``: the
        Inspector's own C++ tiler (float patches, normalised here)."""
        return tile_uint8 if self.encoding == "uint8" else None

    def input_buffer(self, batch: int) -> np.ndarray:
        self._check_open()
        n = check_batch(batch, 1, self.max_batch, "max_batch")
        return self._input[:n]

    def infer(self, batch: int) -> np.ndarray:
        """Logits float32 [batch, K] of the first ``batch`` rows, from the server."""
        self._check_open()
        n = check_batch(batch, 1, self.max_batch, "max_batch")
        conn = self._conn
        data = self._input[:n]
        tensor = conn.module.InferInput(self._in_name, list(data.shape), self._in_type)
        tensor.set_data_from_numpy(data)
        result = conn.call(
            "infer", conn.client.infer, self.url.model, [tensor], outputs=self._outputs
        )
        logits = result.as_numpy(self._out_name)
        k = self.spec.num_classes
        if logits is None or logits.shape != (n, k) or logits.dtype.kind != "f":
            got = "nothing" if logits is None else f"{logits.dtype} {list(logits.shape)}"
            raise TritonError(
                self.url.url,
                self.url.model,
                "mismatch",
                f"output {self._out_name!r} is {got}, expected float [{n}, {k}]",
            )
        return np.asarray(logits, dtype=np.float32)

    def close(self) -> None:
        """Close the connections; idempotent."""
        self._closed = True
        self._conn.close()

    def _check_open(self) -> None:
        if self._closed:
            msg = f"triton backend for {self.url.url} is closed"
            raise BackendError(msg)

    def __repr__(self) -> str:
        return (
            f"TritonBackend({self.url.url!r}, encoding={self.encoding!r},"
            f" max_batch={self.max_batch}, timeout={self._conn.timeout:g})"
        )
