"""``pyinspect export triton MODEL --out REPO``: a Triton Inference Server model repository.

Two models per export, both carrying the sidecar JSON in their config's ``parameters``
(``pyinspect_sidecar``) so a client reads classes, grid and normalisation from the server:

- ``<name>_frame`` (Python backend): one uint8 frame (``FRAME``, ``[-1, -1]`` gray or
  ``[-1, -1, 3]`` BGR) in, the verdict out; ``model.py`` (``triton_frame_model.py``) runs
  pyinspect's own Inspector from the environment in ``EXECUTION_ENV_PATH``. ``max_batch_size: 0``:
  frames differ in size, throughput comes from instances.
- ``<name>_patch``: uint8 patches ``[N, C, P, P]`` (``PATCHES``) in, logits ``[N, K]``
  (``LOGITS``) out, dynamically batched. For ``.onnx`` the graph is rebuilt with the ``onnx``
  package so that the cast and the normalisation run inside it (0.45 MB per 512×512 gray frame on
  the wire instead of 1.8 MB of float32), and checked against the original before it is written;
  ``platform: onnxruntime_onnx``, or ``--patch-backend python`` for a Python-backend stand-in
  running the same graph through ONNX Runtime (servers with only the Python backend). A ``.plan``
  is served as it is (``tensorrt_plan``): its input stays the sidecar's float tensor, so the
  client normalises (``pyinspect_input_encoding: normalized``).

Every ``config.pbtxt`` is built through, written from and read back into Triton's own
``ModelConfig`` protobuf (``tritonclient``'s ``model_config_pb2``), so an unknown field or a wrong
type fails the export, not the deployment (``validate_config``).

Triton's Python backend fails every output when its environment has numpy >= 2, so the
environment is checked (numpy < 2, pyinspect and its compiled core importable) before anything
is written; ``make serve-env`` builds one at ``.venv-serve``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from pyinspect.cli import add_choice_argument, args_kwargs
from pyinspect.errors import BackendUnavailableError, InputError, ModelFileError, SpecError
from pyinspect.spec import ModelSpec

__all__ = [
    "FRAME_INPUT",
    "FRAME_OUTPUTS",
    "PARAM_ENCODING",
    "PARAM_SIDECAR",
    "PATCH_INPUT",
    "PATCH_OUTPUT",
    "TritonExport",
    "add_arguments",
    "check_python_env",
    "default_python_env",
    "export_triton",
    "run",
    "uint8_patch_graph",
    "validate_config",
    "validate_repository",
]

FRAME_INPUT = "FRAME"
#: The frame model's outputs: (name, Triton type, dims).
FRAME_OUTPUTS: tuple[tuple[str, str, tuple[int, ...]], ...] = (
    ("TEXTURE", "TYPE_INT32", (1,)),
    ("DEFECTIVE", "TYPE_BOOL", (1,)),
    ("LABEL", "TYPE_STRING", (1,)),
    ("MAX_DEFECT_PROB", "TYPE_FP32", (1,)),
    ("PATCH_CLASS", "TYPE_INT32", (-1,)),
    ("PATCH_DEFECT_PROB", "TYPE_FP32", (-1,)),
)
PATCH_INPUT = "PATCHES"
PATCH_OUTPUT = "LOGITS"
PARAM_SIDECAR = "pyinspect_sidecar"
PARAM_MODEL_FILE = "pyinspect_model_file"
PARAM_THREADS = "pyinspect_threads"
#: ``uint8``: the patch model takes raw uint8 patches; ``normalized``: the sidecar's float input.
PARAM_ENCODING = "pyinspect_input_encoding"
ENV_PARAM = "EXECUTION_ENV_PATH"
SERVE_ENV_VAR = "PYINSPECT_SERVE_ENV"
VERSION = "1"

PatchBackend = Literal["platform", "python"]
Device = Literal["cpu", "gpu"]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_TRITON_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16"}
_DEFAULT_FILENAMES = {"python": "model.py", "onnxruntime_onnx": "model.onnx"}
_DEFAULT_FILENAMES["tensorrt_plan"] = "model.plan"
_ENV_PROBE = """
import json, sys
out = {"python": "%d.%d.%d" % sys.version_info[:3]}
try:
    import numpy
    out["numpy"] = numpy.__version__
except Exception as exc:
    out["numpy_error"] = f"{type(exc).__name__}: {exc}"
try:
    import pyinspect, pyinspect._core
    out["pyinspect"] = pyinspect.__version__
except Exception as exc:
    out["pyinspect_error"] = f"{type(exc).__name__}: {exc}"
print(json.dumps(out))
"""


@dataclass(frozen=True)
class TritonExport:
    """What ``export_triton`` wrote: the repository, the two model names, their configs, the
    serving environment named in them and what the check of it found (``None``: not checked)."""

    repository: Path
    frame_model: str
    patch_model: str
    configs: tuple[Path, ...]
    python_env: Path
    env_report: dict[str, str] | None


# ---- the serving environment -------------------------------------------------------------------
def default_python_env() -> Path:
    """``$PYINSPECT_SERVE_ENV``, else ``.venv-serve`` of this checkout (``make serve-env``)."""
    env = os.environ.get(SERVE_ENV_VAR)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / ".venv-serve"


def check_python_env(path: str | os.PathLike[str]) -> dict[str, str]:
    """Versions found in the environment ``path`` (``python``, ``numpy``, ``pyinspect``), or an
    ``InputError`` saying why Triton's Python backend cannot use it: no interpreter, numpy
    missing or >= 2 (every output then fails), pyinspect or its compiled core not importable."""
    env = Path(path)
    python = env / "bin" / "python"
    hint = "build one with `make serve-env` or pass --python-env PATH"
    if not python.is_file():
        msg = f"{env}: not a Python environment (no bin/python); {hint}"
        raise InputError(msg)
    with tempfile.TemporaryDirectory() as cwd:  # -I and an empty cwd: only the env's packages
        try:
            proc = subprocess.run(
                [str(python), "-I", "-c", _ENV_PROBE],
                capture_output=True,
                text=True,
                timeout=120,
                cwd=cwd,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            msg = f"{env}: cannot run {python}: {exc}"
            raise InputError(msg) from exc
    try:
        found: dict[str, str] = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        msg = f"{env}: {python} did not answer the check: {proc.stderr.strip()[-300:]}"
        raise InputError(msg) from None
    if "numpy" not in found:
        msg = f"{env}: numpy is not importable ({found.get('numpy_error')}); {hint}"
        raise InputError(msg)
    if int(found["numpy"].split(".")[0]) >= 2:
        msg = (
            f"{env}: has numpy {found['numpy']}; Triton's Python backend fails every output"
            " when EXECUTION_ENV_PATH has numpy >= 2 ('output tensor shape does not match size"
            f" of output'): use an environment with numpy < 2 ({hint})"
        )
        raise InputError(msg)
    if "pyinspect" not in found:
        msg = (
            f"{env}: pyinspect with its compiled core is not importable there"
            f" ({found.get('pyinspect_error')}); the frame model runs pyinspect's Inspector in"
            f" that environment: {hint}"
        )
        raise InputError(msg)
    return found


# ---- the patch graph ----------------------------------------------------------------------------
def uint8_patch_graph(model_path: str | os.PathLike[str], spec: ModelSpec) -> Any:
    """The model's ONNX graph behind a uint8 ``PATCHES`` input: Cast -> Mul(scale) ->
    Add(offset) (-> Cast to float16 for a float16 model) in front, ``LOGITS`` after, with the
    tiler's constants (``scale = 1 / (255 std)``, ``offset = -mean / std``, float32), so it
    computes what the C++ tiler + the original graph compute. Returns an ``onnx.ModelProto``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    path = Path(model_path)
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError, OSError, ...
        msg = f"{path}: cannot read the ONNX model: {exc}"
        raise ModelFileError(msg) from exc
    graph = model.graph
    old_in, old_out = spec.input.name, spec.output.name
    inp = next((i for i in graph.input if i.name == old_in), None)
    if inp is None:
        msg = f"{path}: has no input {old_in!r} (sidecar input.name)"
        raise SpecError(msg)
    out = next((o for o in graph.output if o.name == old_out), None)
    if out is None:
        msg = f"{path}: has no output {old_out!r} (sidecar output.name)"
        raise SpecError(msg)
    c, p = spec.input.channels, spec.patch
    std = np.asarray(spec.normalization.std, dtype=np.float64)
    mean = np.asarray(spec.normalization.mean, dtype=np.float64)
    scale = (1.0 / (255.0 * std)).astype(np.float32).reshape(1, c, 1, 1)
    offset = (-mean / std).astype(np.float32).reshape(1, c, 1, 1)
    inner = "pyinspect_normalized"
    for node in graph.node:
        node.input[:] = [inner if name == old_in else name for name in node.input]
    half = spec.input.dtype == "float16"
    pre = [
        helper.make_node("Cast", [PATCH_INPUT], ["pyinspect_f32"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["pyinspect_f32", "pyinspect_scale"], ["pyinspect_scaled"]),
        helper.make_node(
            "Add",
            ["pyinspect_scaled", "pyinspect_offset"],
            ["pyinspect_norm32" if half else inner],
        ),
    ]
    if half:
        pre.append(helper.make_node("Cast", ["pyinspect_norm32"], [inner], to=TensorProto.FLOAT16))
    post = helper.make_node("Identity", [old_out], [PATCH_OUTPUT])
    nodes = [*pre, *graph.node, post]
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(
        [
            numpy_helper.from_array(scale, "pyinspect_scale"),
            numpy_helper.from_array(offset, "pyinspect_offset"),
        ]
    )
    batch = spec.input.shape[0]
    new_in = helper.make_tensor_value_info(
        PATCH_INPUT, TensorProto.UINT8, ["batch" if batch < 1 else batch, c, p, p]
    )
    new_out = helper.make_tensor_value_info(
        PATCH_OUTPUT, out.type.tensor_type.elem_type, ["batch" if batch < 1 else batch, None]
    )
    kept_inputs = [i for i in graph.input if i.name != old_in]
    del graph.input[:]
    graph.input.extend([new_in, *kept_inputs])
    del graph.output[:]
    graph.output.extend([new_out])
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        msg = f"{path}: the uint8-input graph does not pass the ONNX checker: {exc}"
        raise SpecError(msg) from exc
    return model


def _check_patch_graph(original: Path, rebuilt: Path, spec: ModelSpec) -> None:
    """The rebuilt graph on uint8 patches must give the original's logits on the same patches
    tiled by the C++ tiler (a few random patches; max |difference| <= 1e-4)."""
    import onnxruntime as ort

    from pyinspect.tiling import tile

    rng = np.random.default_rng(0)
    c, p = spec.input.channels, spec.patch
    frame = rng.integers(0, 256, (p + 7, 2 * p + 5), dtype=np.uint8)  # gray: 2 patches + overlap
    floats, boxes = tile(
        frame,
        patch=p,
        channels=c,
        dtype=spec.input.dtype,
        mean=spec.normalization.mean,
        std=spec.normalization.std,
    )
    raw = np.stack([np.broadcast_to(frame[y : y + p, x : x + p], (c, p, p)) for x, y, *_ in boxes])
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    providers = ["CPUExecutionProvider"]
    want = ort.InferenceSession(str(original), opts, providers=providers).run(
        [spec.output.name], {spec.input.name: floats}
    )[0]
    got = ort.InferenceSession(str(rebuilt), opts, providers=providers).run(
        [PATCH_OUTPUT], {PATCH_INPUT: raw}
    )[0]
    diff = float(np.max(np.abs(want.astype(np.float32) - got.astype(np.float32))))
    if not diff <= 1e-4:
        msg = (
            f"{rebuilt}: the uint8-input graph disagrees with {original.name} (max |logit"
            f" difference| {diff:.3g} > 1e-4); not written"
        )
        raise SpecError(msg)


# ---- configurations -----------------------------------------------------------------------------
def _model_config_pb2() -> Any:
    try:
        from tritonclient.grpc import model_config_pb2
    except ImportError as exc:
        msg = (
            "Triton's ModelConfig protobuf (tritonclient) is not installed; it validates every"
            " config.pbtxt the export writes. Install it with `pip install pyinspect[serve]`."
        )
        raise BackendUnavailableError(msg) from exc
    return model_config_pb2


def _config_text(doc: dict[str, Any], where: str) -> str:
    """``doc`` through Triton's ``ModelConfig`` (unknown field or wrong type: ``SpecError``),
    as protobuf text."""
    from google.protobuf import json_format, text_format

    pb2 = _model_config_pb2()
    try:
        message = json_format.ParseDict(doc, pb2.ModelConfig())
    except json_format.ParseError as exc:
        msg = f"{where}: not a valid Triton ModelConfig: {exc}"
        raise SpecError(msg) from exc
    return str(text_format.MessageToString(message))


def validate_config(path: str | os.PathLike[str]) -> Any:
    """Parse ``config.pbtxt`` with Triton's ``ModelConfig`` protobuf and check what the schema
    cannot: the name is the folder's, exactly one of platform/backend, every tensor has a type
    and dims, dynamic batching only with ``max_batch_size > 0`` and preferred sizes within it,
    and version folders hold the default model file. Returns the message; any problem is a
    ``SpecError`` naming the file (and the line, for a parse error)."""
    from google.protobuf import text_format

    pb2 = _model_config_pb2()
    path = Path(path)
    try:
        config = text_format.Parse(path.read_text(encoding="utf-8"), pb2.ModelConfig())
    except OSError as exc:
        msg = f"{path}: cannot read: {exc.strerror or exc}"
        raise SpecError(msg) from exc
    except text_format.ParseError as exc:
        msg = f"{path}: not a valid Triton ModelConfig: {exc}"
        raise SpecError(msg) from exc
    problems: list[str] = []
    folder = path.parent
    if config.name and config.name != folder.name:
        problems.append(f"name {config.name!r} is not the folder's name {folder.name!r}")
    if bool(config.platform) == bool(config.backend):
        problems.append("needs exactly one of 'platform' and 'backend'")
    if config.max_batch_size < 0:
        problems.append(f"max_batch_size must be >= 0, got {config.max_batch_size}")
    for kind, tensors in (("input", config.input), ("output", config.output)):
        if not tensors:
            problems.append(f"has no {kind}")
        for t in tensors:
            if t.data_type == pb2.DataType.TYPE_INVALID:
                problems.append(f"{kind} {t.name!r}: data_type is missing")
            if not t.dims:
                problems.append(f"{kind} {t.name!r}: dims are missing")
    if config.HasField("dynamic_batching"):
        if config.max_batch_size == 0:
            problems.append("dynamic_batching needs max_batch_size > 0")
        preferred = config.dynamic_batching.preferred_batch_size
        too_big = [s for s in preferred if s > config.max_batch_size]
        if config.max_batch_size and too_big:
            problems.append(f"preferred_batch_size {too_big} > max_batch_size")
    filename = config.default_model_filename or _DEFAULT_FILENAMES.get(
        config.platform or config.backend, ""
    )
    versions = [d for d in folder.iterdir() if d.is_dir() and d.name.isdigit()]
    if not versions:
        problems.append("no version folder (1/, 2/, ...) beside it")
    for v in versions:
        if filename and not (v / filename).is_file():
            problems.append(f"{v.name}/{filename} is missing")
    env = config.parameters.get(ENV_PARAM)
    if env is not None and not os.path.isabs(env.string_value):
        problems.append(f"{ENV_PARAM} must be an absolute path, got {env.string_value!r}")
    if problems:
        msg = f"{path}: " + "; ".join(problems)
        raise SpecError(msg)
    return config


def validate_repository(repository: str | os.PathLike[str]) -> list[Path]:
    """``validate_config`` of every ``*/config.pbtxt`` in a model repository; returns them."""
    configs = sorted(Path(repository).glob("*/config.pbtxt"))
    for c in configs:
        validate_config(c)
    return configs


def _sidecar_text(spec: ModelSpec) -> str:
    """The sidecar as one-line JSON (``ModelSpec.from_json`` reads it back)."""
    return json.dumps(spec.to_dict(), separators=(",", ":"), ensure_ascii=False)


def _frame_config(
    name: str,
    spec: ModelSpec,
    model_file: str,
    env: Path,
    instances: int,
    kind: str,
    threads: int | None,
) -> dict[str, Any]:
    dims = [-1, -1] if spec.input.channels == 1 else [-1, -1, 3]
    params = {
        ENV_PARAM: str(env),
        PARAM_SIDECAR: _sidecar_text(spec),
        PARAM_MODEL_FILE: model_file,
    }
    if threads:
        params[PARAM_THREADS] = str(threads)
    return {
        "name": name,
        "backend": "python",
        "max_batch_size": 0,
        "input": [{"name": FRAME_INPUT, "data_type": "TYPE_UINT8", "dims": dims}],
        "output": [{"name": n, "data_type": t, "dims": list(d)} for n, t, d in FRAME_OUTPUTS],
        "instance_group": [{"count": instances, "kind": kind}],
        "version_policy": {"latest": {"num_versions": 1}},
        "parameters": {k: {"string_value": v} for k, v in params.items()},
    }


def _patch_config(
    name: str,
    spec: ModelSpec,
    *,
    runtime: dict[str, str],
    io: tuple[str, str, str, str],
    encoding: str,
    max_batch: int,
    preferred: Sequence[int],
    queue_delay_us: int,
    instances: int,
    kind: str,
    env: Path | None,
) -> dict[str, Any]:
    in_name, in_type, out_name, out_type = io
    c, p = spec.input.channels, spec.patch
    params = {PARAM_SIDECAR: _sidecar_text(spec), PARAM_ENCODING: encoding}
    if env is not None:
        params[ENV_PARAM] = str(env)
    return {
        "name": name,
        **runtime,
        "max_batch_size": max_batch,
        "input": [{"name": in_name, "data_type": in_type, "dims": [c, p, p]}],
        "output": [{"name": out_name, "data_type": out_type, "dims": [spec.num_classes]}],
        "dynamic_batching": {
            "preferred_batch_size": [s for s in preferred if s <= max_batch],
            "max_queue_delay_microseconds": queue_delay_us,
        },
        "instance_group": [{"count": instances, "kind": kind}],
        "version_policy": {"latest": {"num_versions": 1}},
        "parameters": {k: {"string_value": v} for k, v in params.items()},
    }


# ---- the export ---------------------------------------------------------------------------------
def export_triton(
    model: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    python_env: str | os.PathLike[str] | None = None,
    instances: int = 1,
    name: str | None = None,
    patch_backend: PatchBackend = "platform",
    device: Device | None = None,
    max_batch: int = 64,
    preferred_batch: Sequence[int] = (18, 36),
    queue_delay_us: int = 500,
    threads: int | None = None,
    check_env: bool = True,
) -> TritonExport:
    """Write ``<name>_frame`` and ``<name>_patch`` into the repository ``out`` (created when
    missing; existing models of those names are refused, never replaced) plus its README.

    Args:
        model: ``.onnx`` or ``.plan`` with its sidecar beside it.
        python_env: the environment the frame model (and a Python patch stand-in) imports
            pyinspect from at serving time (``None``: ``default_python_env()``).
        instances: model instances of each model (``instance_group.count``).
        name: model name prefix (default: the model file's stem).
        patch_backend: ``"platform"`` (``onnxruntime_onnx`` / ``tensorrt_plan``) or ``"python"``
            (the ONNX Runtime stand-in, ``.onnx`` only).
        device: ``"cpu"``/``"gpu"`` instance kind (default: cpu for ``.onnx``, gpu for ``.plan``).
        max_batch, preferred_batch, queue_delay_us: the patch model's dynamic batching.
        threads: Inspector threads per frame-model instance (default: cores / instances).
        check_env: refuse an environment without numpy < 2 and pyinspect (off: the environment
            lives only on the serving host).
    """
    from pyinspect.errors import check_int

    src = Path(model)
    if not src.is_file():
        what = "is not a file" if src.exists() else "not found"
        msg = f"{src}: model file {what}"
        raise ModelFileError(msg)
    suffix = src.suffix.lower()
    if suffix not in (".onnx", ".plan"):
        msg = f"{src}: export triton reads .onnx or .plan models, got {suffix or 'no suffix'!r}"
        raise InputError(msg)
    spec = ModelSpec.for_model(src)
    check_int("instances", instances, 1, 64)
    check_int("max_batch", max_batch, 1, 4096)
    check_int("queue_delay_us", queue_delay_us, 0, 10_000_000)
    if threads is not None:
        check_int("threads", threads, 1)
    if patch_backend not in ("platform", "python"):
        msg = f"patch_backend must be 'platform' or 'python', got {patch_backend!r}"
        raise InputError(msg)
    if suffix == ".plan" and patch_backend == "python":
        msg = f"{src}: the Python patch stand-in runs ONNX; a .plan is served by tensorrt_plan"
        raise InputError(msg)
    device = device or ("gpu" if suffix == ".plan" else "cpu")
    if device not in ("cpu", "gpu"):
        msg = f"device must be 'cpu' or 'gpu', got {device!r}"
        raise InputError(msg)
    if suffix == ".plan" and device != "gpu":
        msg = f"{src}: a TensorRT plan runs on a GPU (device 'gpu'), got {device!r}"
        raise InputError(msg)
    base = name or src.stem
    if not _NAME.match(base):
        msg = f"name must be letters, digits, '_', '.', '-' (a folder name), got {base!r}"
        raise InputError(msg)
    env = Path(python_env) if python_env is not None else default_python_env()
    env = env.absolute()
    report = check_python_env(env) if check_env else None
    repo = Path(out)
    frame_name, patch_name = f"{base}_frame", f"{base}_patch"
    for n in (frame_name, patch_name):
        if (repo / n).exists():
            msg = f"{repo / n}: already exists; export to another --out or remove it first"
            raise InputError(msg)
    _model_config_pb2()  # fail before writing anything when tritonclient is missing
    kind = "KIND_GPU" if device == "gpu" else "KIND_CPU"
    repo.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".pyinspect-export-", dir=repo) as tmp:
        staged = Path(tmp)
        frame_dir = _write_frame_model(
            staged / frame_name, src, spec, env, instances, kind, threads
        )
        patch_dir = _write_patch_model(
            staged / patch_name,
            src,
            spec,
            patch_backend=patch_backend,
            env=env,
            max_batch=max_batch,
            preferred=preferred_batch,
            queue_delay_us=queue_delay_us,
            instances=instances,
            kind=kind,
        )
        for d in (frame_dir, patch_dir):
            validate_config(d / "config.pbtxt")
        for d in (frame_dir, patch_dir):
            d.rename(repo / d.name)
    _write_readme(repo)
    configs = (repo / frame_name / "config.pbtxt", repo / patch_name / "config.pbtxt")
    return TritonExport(repo, frame_name, patch_name, configs, env, report)


def _write_frame_model(
    folder: Path,
    src: Path,
    spec: ModelSpec,
    env: Path,
    instances: int,
    kind: str,
    threads: int | None,
) -> Path:
    version = folder / VERSION
    version.mkdir(parents=True)
    shutil.copyfile(Path(__file__).with_name("triton_frame_model.py"), version / "model.py")
    shutil.copyfile(src, version / src.name)
    shutil.copyfile(ModelSpec.sidecar_path(src), ModelSpec.sidecar_path(version / src.name))
    doc = _frame_config(folder.name, spec, src.name, env, instances, kind, threads)
    (folder / "config.pbtxt").write_text(_config_text(doc, str(folder)), encoding="utf-8")
    return folder


def _write_patch_model(
    folder: Path,
    src: Path,
    spec: ModelSpec,
    *,
    patch_backend: PatchBackend,
    env: Path,
    max_batch: int,
    preferred: Sequence[int],
    queue_delay_us: int,
    instances: int,
    kind: str,
) -> Path:
    version = folder / VERSION
    version.mkdir(parents=True)
    if src.suffix.lower() == ".plan":
        shutil.copyfile(src, version / "model.plan")
        in_type = _TRITON_TYPES[spec.input.dtype]
        io = (spec.input.name, in_type, spec.output.name, "TYPE_FP32")
        encoding, runtime, stand_in_env = "normalized", {"platform": "tensorrt_plan"}, None
        if spec.engine is not None and spec.engine.profile is not None:
            top = spec.engine.profile.max
            max_batch = min(max_batch, top if isinstance(top, int) else top[0])
    else:
        import onnx

        graph = uint8_patch_graph(src, spec)
        onnx.save(graph, str(version / "model.onnx"))
        _check_patch_graph(src, version / "model.onnx", spec)
        half_out = graph.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
        out_type = "TYPE_FP16" if half_out else "TYPE_FP32"
        io = (PATCH_INPUT, "TYPE_UINT8", PATCH_OUTPUT, out_type)
        encoding = "uint8"
        if patch_backend == "python":
            shutil.copyfile(Path(__file__).with_name("triton_patch_model.py"), version / "model.py")
            runtime, stand_in_env = {"backend": "python"}, env
        else:
            runtime, stand_in_env = {"platform": "onnxruntime_onnx"}, None
    doc = _patch_config(
        folder.name,
        spec,
        runtime=runtime,
        io=io,
        encoding=encoding,
        max_batch=max_batch,
        preferred=preferred,
        queue_delay_us=queue_delay_us,
        instances=instances,
        kind=kind,
        env=stand_in_env,
    )
    (folder / "config.pbtxt").write_text(_config_text(doc, str(folder)), encoding="utf-8")
    return folder


_README_MARK = "<!-- written by pyinspect export triton -->"


def _write_readme(repo: Path) -> None:
    """``README.md`` of the repository: written when absent or when pyinspect wrote it (then it
    lists every pyinspect model in the repository); a README of the user's is left alone."""
    readme = repo / "README.md"
    if readme.exists() and not readme.read_text(encoding="utf-8").startswith(_README_MARK):
        return
    models = sorted(
        c.parent.name
        for c in repo.glob("*/config.pbtxt")
        if PARAM_SIDECAR in c.read_text(encoding="utf-8")
    )
    lines = [
        _README_MARK,
        "# Triton model repository (pyinspect)",
        "",
        "Written by `pyinspect export triton`; see docs/serving.md of pyinspect.",
        "",
        "| model | what it does |",
        "|---|---|",
    ]
    for m in models:
        what = (
            "one uint8 frame (`FRAME`) -> TEXTURE, DEFECTIVE, LABEL, MAX_DEFECT_PROB,"
            " PATCH_CLASS, PATCH_DEFECT_PROB (Python backend running pyinspect's Inspector)"
            if m.endswith("_frame")
            else 'patches -> logits, dynamically batched: `Inspector("grpc://HOST:8001/'
            f'{m}")` tiles and votes locally'
        )
        lines.append(f"| `{m}` | {what} |")
    lines += [
        "",
        "Each model's `config.pbtxt` carries the sidecar JSON in `parameters.pyinspect_sidecar`.",
        "Python-backend models import pyinspect from `parameters.EXECUTION_ENV_PATH`, an",
        "environment with numpy < 2 (the backend fails every output with numpy >= 2).",
        "",
        "Serve it: `tritonserver --model-repository=$PWD` (NVIDIA's container has the",
        "onnxruntime_onnx and tensorrt_plan backends; the nvidia-pytriton wheel's server has only",
        "the Python backend: load the frame model and a `--patch-backend python` stand-in).",
        "",
    ]
    readme.write_text("\n".join(lines), encoding="utf-8")


# ---- command line -------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``pyinspect export FORMAT ...``; one format today: ``triton``."""
    sub = parser.add_subparsers(dest="export_format", metavar="FORMAT", required=True)
    p = sub.add_parser(
        "triton",
        help="a Triton Inference Server model repository (frame model + patch model)",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    p.add_argument("model", type=Path, help=".onnx or .plan model (its sidecar beside it)")
    p.add_argument("--out", type=Path, required=True, metavar="REPO", help="model repository")
    p.add_argument(
        "--python-env",
        type=Path,
        default=None,
        metavar="PATH",
        help="environment (numpy < 2, pyinspect) the Python-backend models import from"
        " (default: .venv-serve, built by `make serve-env`)",
    )
    p.add_argument("--instances", type=int, default=1, help="instances of each model (1)")
    p.add_argument("--name", default=None, help="model name prefix (default: the file's stem)")
    add_choice_argument(
        p,
        "--patch-backend",
        ("platform", "python"),
        help="platform: onnxruntime_onnx / tensorrt_plan (default); python: an ONNX Runtime"
        " stand-in for servers with only the Python backend",
    )
    p.add_argument("--device", choices=("cpu", "gpu"), default=None, help="instance kind")
    p.add_argument("--max-batch", type=int, default=64, help="patch model max_batch_size (64)")
    p.add_argument("--threads", type=int, default=None, help="Inspector threads per instance")
    p.add_argument(
        "--skip-env-check",
        action="store_true",
        help="do not check --python-env here (it exists only on the serving host)",
    )


def run(args: argparse.Namespace) -> int:
    """``pyinspect export triton``: export, then say what was written and with which env."""
    if args.python_env is None:
        print(
            f"using the serving environment {default_python_env()} (`make serve-env` builds it;"
            " --python-env PATH picks another)",
            file=sys.stderr,
        )
    same = ("python_env", "instances", "name", "patch_backend", "device", "max_batch", "threads")
    result = export_triton(
        args.model, args.out, **args_kwargs(args, *same), check_env=not args.skip_env_check
    )
    env = result.env_report
    found = (
        "not checked"
        if env is None
        else f"python {env['python']}, numpy {env['numpy']}, pyinspect {env['pyinspect']}"
    )
    print(
        f"wrote {result.repository}/{result.frame_model} and {result.repository}/"
        f"{result.patch_model} (configs validated against Triton's ModelConfig); "
        f"EXECUTION_ENV_PATH {result.python_env} ({found})"
    )
    return 0
