"""Broken model files through ``Inspector``: each is an error at load time that names the file.

A line that loads a half-copied engine at 3 a.m. must fail then, with the path in the message,
not at the first frame and not with a silently wrong verdict. Every CPU backend that reads
``.onnx`` gets the same cases; the TensorRT plan cases that need a GPU live in
``test_backend_tensorrt.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from modelzoo import TinyBundle, textured_frame, tiny_model, tiny_weights, write_tiny

from pyinspect import Inspector, ModelSpec
from pyinspect.backends.base import backend_info
from pyinspect.errors import ModelFileError, PyInspectError, SpecError

pytestmark = pytest.mark.hostile("model files")  # counted in docs/reliability.md


def _onnx_backends() -> list[object]:
    """CPU backends that read ``.onnx``; one not installed here is skipped, saying so."""
    params: list[object] = []
    for name in ("onnxruntime", "openvino"):
        try:
            ok = backend_info(name).is_available()
        except PyInspectError:
            ok = False
        mark = pytest.mark.skipif(not ok, reason=f"{name} is not installed here")
        params.append(pytest.param(name, marks=mark, id=name))
    return params


BACKENDS = _onnx_backends()


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> TinyBundle:
    return write_tiny(tmp_path_factory.mktemp("good"), "m.onnx")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _place(folder: Path, data: bytes | None, spec: ModelSpec, name: str = "m.onnx") -> Path:
    """``folder/name`` holding ``data`` (None: leave it absent) and a sidecar from ``spec``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if data is not None:
        path.write_bytes(data)
    spec.save_for_model(path)
    return path


def _with_digest(spec: ModelSpec, data: bytes) -> ModelSpec:
    """``spec`` recording ``data``'s SHA-256 as export does (``provenance.model_sha256``)."""
    doc = spec.to_dict()
    doc["provenance"]["model_sha256"] = _sha256(data)
    return ModelSpec.from_dict(doc)


def _load_fails(path: Path, backend: str, error: type[Exception], *needles: str) -> str:
    """Constructing the Inspector raises ``error`` whose message starts with the file's path."""
    with pytest.raises(error) as info:
        Inspector(path, backend=backend)
    text = str(info.value)
    assert text.startswith(f"{path}: "), text
    for needle in needles:
        assert needle in text, text
    return text


# ---- unreadable bytes ---------------------------------------------------------------------------
CUTS = [1, 16, 0.25, 0.5, 0.75, -1]  # bytes kept: absolute, or a fraction; -1 = all but the last


def _cut(raw: bytes, cut: float) -> bytes:
    n = len(raw) - 1 if cut == -1 else (int(cut) if cut >= 1 else int(len(raw) * cut))
    return raw[:n]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cut", CUTS, ids=[f"keep-{c}" for c in CUTS])
def test_truncated_onnx(good: TinyBundle, tmp_path: Path, backend: str, cut: float) -> None:
    """A half-copied file, even without a recorded digest, does not parse."""
    path = _place(tmp_path, _cut(good.model_path.read_bytes(), cut), good.spec)
    _load_fails(path, backend, ModelFileError, "not a loadable")


GARBAGE: dict[str, Callable[[bytes], bytes]] = {
    "empty": lambda raw: b"",
    "zeros": lambda raw: bytes(len(raw)),
    "random": lambda raw: np.random.default_rng(0).bytes(len(raw)),
    "text": lambda raw: b"this is not a model\n",
    "json": lambda raw: b'{"schema_version": 1}',
    "tensorrt-plan": lambda raw: b"ftrt" + np.random.default_rng(1).bytes(4096),
    "header-only": lambda raw: raw[:8],
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", list(GARBAGE))
def test_not_an_onnx_model(good: TinyBundle, tmp_path: Path, backend: str, kind: str) -> None:
    path = _place(tmp_path, GARBAGE[kind](good.model_path.read_bytes()), good.spec)
    want = "model file is empty (0 bytes)" if kind == "empty" else "not a loadable"
    _load_fails(path, backend, ModelFileError, want)


@pytest.mark.parametrize("backend", BACKENDS)
def test_plan_file_given_to_an_onnx_backend(good: TinyBundle, tmp_path: Path, backend: str) -> None:
    """A TensorRT plan (magic ``ftrt``) named explicitly with a CPU backend: refused at load."""
    plan = _place(tmp_path, GARBAGE["tensorrt-plan"](b""), good.spec, name="m.plan")
    _load_fails(plan, backend, ModelFileError, "not a loadable")


# ---- corrupted but still parsable: only the recorded digest can tell ----------------------------
def _flip(raw: bytes, at: int) -> bytes:
    return raw[:at] + bytes([raw[at] ^ 0x5A]) + raw[at + 1 :]


def test_a_flipped_weight_byte_still_parses(good: TinyBundle, tmp_path: Path) -> None:
    """Why the digest check exists: a flip inside a weight tensor is a valid model that gives
    different verdicts, so parsing alone cannot catch it."""
    raw = good.model_path.read_bytes()
    weights = good.weights.fc_w.tobytes()
    at = raw.index(weights) + len(weights) // 2  # inside the classifier's weights
    path = _place(tmp_path, _flip(raw, at), good.spec)
    frame = textured_frame(seed=3)
    with Inspector(path) as broken, Inspector(good.model_path) as intact:
        a, b = broken.run(frame), intact.run(frame)
    assert not np.array_equal(a.patch_defect_prob, b.patch_defect_prob)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("where", [0, 0.1, 0.3, 0.5, 0.7, 0.9, -1])
def test_any_changed_byte_is_refused_when_the_sidecar_records_a_digest(
    good: TinyBundle, tmp_path: Path, backend: str, where: float
) -> None:
    raw = good.model_path.read_bytes()
    at = len(raw) - 1 if where == -1 else int(len(raw) * where)
    path = _place(tmp_path, _flip(raw, at), _with_digest(good.spec, raw))
    _load_fails(path, backend, ModelFileError, "does not match its sidecar m.onnx.json")


@pytest.mark.parametrize("backend", BACKENDS)
def test_truncation_is_named_as_such_when_a_digest_is_recorded(
    good: TinyBundle, tmp_path: Path, backend: str
) -> None:
    raw = good.model_path.read_bytes()
    path = _place(tmp_path, raw[: len(raw) // 2], _with_digest(good.spec, raw))
    _load_fails(path, backend, ModelFileError, "only partly copied", "provenance.model_sha256")


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_intact_file_with_its_digest_loads_and_runs(
    good: TinyBundle, tmp_path: Path, backend: str
) -> None:
    raw = good.model_path.read_bytes()
    path = _place(tmp_path, raw, _with_digest(good.spec, raw))
    frame = textured_frame(seed=4, channels=3)
    with Inspector(path, backend=backend) as insp, Inspector(good.model_path) as ref:
        got, want = insp.run(frame), ref.run(frame)
    assert got.ok and got.label == want.label
    np.testing.assert_array_equal(got.patch_class, want.patch_class)


def test_exported_sidecars_record_the_digest_the_check_uses() -> None:
    """The check only protects models whose exporter writes the field; both exporters do."""
    root = Path(__file__).resolve().parents[1]
    for tool in ("train/export.py", "pyinspect/build/tensorrt.py"):
        assert '"model_sha256"' in (root / tool).read_text(encoding="utf-8"), tool


# ---- valid ONNX that is not a runnable model ----------------------------------------------------
def _unknown_op_model() -> onnx.ModelProto:
    model = tiny_model(tiny_weights())
    model.graph.node[-1].op_type = "NoSuchOp"  # Identity -> an op no runtime has
    return model


def _future_opset_model() -> onnx.ModelProto:
    model = tiny_model(tiny_weights())
    model.opset_import[0].version = 999
    return model


@pytest.mark.parametrize("backend", BACKENDS)
def test_unknown_operator(good: TinyBundle, tmp_path: Path, backend: str) -> None:
    path = _place(tmp_path, _unknown_op_model().SerializeToString(), good.spec)
    _load_fails(path, backend, ModelFileError, "not a loadable")


@pytest.mark.parametrize("backend", BACKENDS)
def test_future_opset_is_refused_or_runs_correctly(
    good: TinyBundle, tmp_path: Path, backend: str
) -> None:
    """Opset 999 with only old operators: ONNX Runtime refuses it, OpenVINO reads the operators
    it knows. Either is acceptable; loading and then giving other verdicts would not be."""
    path = _place(tmp_path, _future_opset_model().SerializeToString(), good.spec)
    try:
        insp = Inspector(path, backend=backend)
    except ModelFileError as exc:
        assert str(exc).startswith(f"{path}: ") and "not a loadable" in str(exc)
        return
    frame = textured_frame(seed=6)
    with insp, Inspector(good.model_path, backend=backend) as ref:
        got, want = insp.run(frame), ref.run(frame)
    np.testing.assert_array_equal(got.patch_class, want.patch_class)
    np.testing.assert_allclose(got.patch_defect_prob, want.patch_defect_prob, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_missing_external_weights(good: TinyBundle, tmp_path: Path, backend: str) -> None:
    """Weights stored beside the graph (``onnx`` external data) and not copied along."""
    model = tiny_model(tiny_weights())
    path = tmp_path / "m.onnx"
    onnx.save(model, path, save_as_external_data=True, location="m.weights", size_threshold=0)
    (tmp_path / "m.weights").unlink()
    good.spec.save_for_model(path)
    _load_fails(path, backend, ModelFileError, "not a loadable")


# ---- the sidecar does not describe this model ---------------------------------------------------
MISMATCHES: dict[str, tuple[dict[str, object], str]] = {
    "patch": ({"patch": 256}, "height (axis 2) is 224, but m.onnx.json expects 256"),
    "channels": ({"channels": 1}, "channels (axis 1) is 3, but m.onnx.json expects 1"),
    "classes": ({"n_textures": 5}, "class count (axis 1) is 12, but m.onnx.json expects 10"),
    "dtype": ({"dtype": "float16"}, "expects float16"),
    "input-name": ({"input_name": "image"}, "no input tensor 'image'"),
    "output-name": ({"output_name": "scores"}, "no output tensor 'scores'"),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", list(MISMATCHES))
def test_sidecar_does_not_match_the_model(
    good: TinyBundle, tmp_path: Path, backend: str, case: str
) -> None:
    overrides, needle = MISMATCHES[case]
    args: dict[str, object] = {"mean": None, "std": None, **overrides}
    if "channels" not in overrides:
        args["mean"], args["std"] = [0.5] * 3, [0.25] * 3
    spec = ModelSpec.for_dagm(**args)  # type: ignore[arg-type]
    path = _place(tmp_path, good.model_path.read_bytes(), spec)
    text = _load_fails(path, backend, SpecError)
    assert "m.onnx.json" in text, text
    if backend == "onnxruntime":  # its wording is pinned here; other backends word it their way
        assert needle in text, text


# ---- wrong kind of path ------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_directory_instead_of_a_model(good: TinyBundle, tmp_path: Path, backend: str) -> None:
    path = tmp_path / "m.onnx"
    path.mkdir()
    good.spec.save_for_model(path)
    _load_fails(path, backend, ModelFileError, "is not a file")


@pytest.mark.parametrize("backend", BACKENDS)
def test_dangling_symlink(good: TinyBundle, tmp_path: Path, backend: str) -> None:
    """A link whose target was deleted or not mounted yet."""
    path = tmp_path / "m.onnx"
    path.symlink_to(tmp_path / "gone" / "m.onnx")
    good.spec.save_for_model(path)
    _load_fails(path, backend, ModelFileError, "not found")


@pytest.mark.parametrize("backend", BACKENDS)
def test_unreadable_model_file(good: TinyBundle, tmp_path: Path, backend: str) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads files whatever their mode, so no permission error can occur")
    path = _place(tmp_path, good.model_path.read_bytes(), good.spec)
    path.chmod(0)
    try:
        with pytest.raises(ModelFileError, match=str(path)):
            Inspector(path, backend=backend)
    finally:
        path.chmod(0o600)


SIDECAR_FAULTS: dict[str, tuple[Callable[[Path, str], None], str]] = {
    "missing": (lambda p, text: p.unlink(), "No sidecar for model"),
    "directory": (lambda p, text: (p.unlink(), p.mkdir()), "No sidecar for model"),
    "empty": (lambda p, text: p.write_bytes(b""), "file is empty"),
    "truncated": (lambda p, text: p.write_text(text[: len(text) // 2]), "looks truncated"),
    "not-utf8": (lambda p, text: p.write_bytes(text.encode("utf-16")), "not UTF-8 text"),
    "wrong-field": (
        lambda p, text: p.write_text(text.replace('"patch": 224', '"patch": "224"')),
        "patch: must be a valid integer",
    ),
    "newer-schema": (
        lambda p, text: p.write_text(
            re.sub(r'"schema_version": \d+', '"schema_version": 7', text, count=1)
        ),
        "schema_version: 7 is newer",
    ),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fault", list(SIDECAR_FAULTS))
def test_broken_sidecar(good: TinyBundle, tmp_path: Path, backend: str, fault: str) -> None:
    path = _place(tmp_path, good.model_path.read_bytes(), good.spec)
    sidecar = ModelSpec.sidecar_path(path)
    damage, needle = SIDECAR_FAULTS[fault]
    damage(sidecar, sidecar.read_text(encoding="utf-8"))
    with pytest.raises(SpecError) as info:
        Inspector(path, backend=backend)
    assert str(sidecar) in str(info.value) and needle in str(info.value), str(info.value)


# ---- after a successful load -----------------------------------------------------------------
def test_model_replaced_after_load_is_not_reread(good: TinyBundle, tmp_path: Path) -> None:
    """A running line keeps the model it loaded: overwriting the file (a redeploy in progress)
    does not break the session that is already inspecting."""
    raw = good.model_path.read_bytes()
    path = _place(tmp_path, raw, _with_digest(good.spec, raw))
    frame = textured_frame(seed=5)
    with Inspector(path) as insp:
        before = insp.run(frame)
        path.write_bytes(raw[:10])
        after = insp.run(frame)
    np.testing.assert_array_equal(before.patch_class, after.patch_class)
    with pytest.raises(ModelFileError):
        Inspector(path)


def test_sidecar_digest_can_be_written_in_upper_case(good: TinyBundle, tmp_path: Path) -> None:
    raw = good.model_path.read_bytes()
    doc = good.spec.to_dict()
    doc["provenance"]["model_sha256"] = _sha256(raw).upper()
    path = tmp_path / "m.onnx"
    path.write_bytes(raw)
    ModelSpec.sidecar_path(path).write_text(json.dumps(doc), encoding="utf-8")
    with Inspector(path) as insp:
        assert insp.run(textured_frame()).ok
