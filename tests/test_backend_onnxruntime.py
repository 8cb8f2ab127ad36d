"""ONNX Runtime backend: numerics against NumPy, buffer reuse, load-time checks, registry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from modelzoo import TinyBundle, reference_logits, tiny_model, tiny_weights, write_tiny

from pyinspect.backends.base import (
    Backend,
    backend_info,
    create_backend,
    list_backends,
    physical_cores,
    pick_backend,
)
from pyinspect.backends.onnxruntime import OnnxRuntimeBackend, default_spin
from pyinspect.errors import BackendError, InputError, ModelFileError, SpecError
from pyinspect.spec import ModelSpec


def _random_input(buf: np.ndarray, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(0, 1, buf.shape).astype(buf.dtype)
    buf[...] = x
    return x.astype(np.float32)


@pytest.fixture
def backend(tiny: TinyBundle) -> OnnxRuntimeBackend:
    be = OnnxRuntimeBackend(tiny.model_path, tiny.spec)
    yield be
    be.close()


# ---- numerics ---------------------------------------------------------------------------------
@pytest.mark.parametrize("batch", [1, 9, 17])
def test_logits_match_numpy_reference(backend: OnnxRuntimeBackend, tiny: TinyBundle, batch: int):
    x = _random_input(backend.input_buffer(batch), seed=batch)
    out = backend.infer(batch)
    assert out.shape == (batch, 12) and out.dtype == np.float32
    np.testing.assert_allclose(out, reference_logits(x, tiny.weights), atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    ("kwargs", "atol"),
    [
        ({"channels": 1}, 1e-4),
        ({"dtype": "float16"}, 3e-2),  # fp16 input and output; arithmetic is fp32 inside
        ({"batch": 9}, 1e-4),
        ({"softmax": True}, 1e-5),
    ],
    ids=["gray", "float16", "fixed-batch", "probabilities"],
)
def test_model_variants(tmp_path: Path, kwargs: dict, atol: float) -> None:
    bundle = write_tiny(tmp_path, "v.onnx", **kwargs)
    be = OnnxRuntimeBackend(bundle.model_path, bundle.spec)
    buf = be.input_buffer(9)
    assert buf.dtype == np.dtype(bundle.spec.input.dtype)
    assert buf.shape == (9, bundle.spec.channels, 224, 224)
    x = _random_input(buf)
    out = be.infer(9)
    assert out.dtype == np.float32  # float16 outputs are widened for the voter
    ref = reference_logits(x, bundle.weights, softmax=kwargs.get("softmax", False))
    np.testing.assert_allclose(out, ref, atol=atol, rtol=0)


def test_fixed_batch_model_accepts_fewer_rows(tmp_path: Path) -> None:
    bundle = write_tiny(tmp_path, "b9.onnx", batch=9)
    be = OnnxRuntimeBackend(bundle.model_path, bundle.spec, max_batch=64)
    assert be.max_batch == 9
    x = _random_input(be.input_buffer(4))
    np.testing.assert_allclose(be.infer(4), reference_logits(x, bundle.weights), atol=1e-4)
    with pytest.raises(InputError, match=r"batch must be in \[1, 9\] \(max_batch\), got 10"):
        be.input_buffer(10)


# ---- buffers: bound once, reused, no copy ------------------------------------------------------
def test_buffers_are_reused_across_calls(backend: OnnxRuntimeBackend, tiny: TinyBundle) -> None:
    buf1 = backend.input_buffer(9)
    _random_input(buf1, 1)
    out1 = backend.infer(9)
    buf2 = backend.input_buffer(9)
    x2 = _random_input(buf2, 2)
    out2 = backend.infer(9)
    assert buf1.ctypes.data == buf2.ctypes.data  # same input memory
    assert out1.ctypes.data == out2.ctypes.data  # logits written in place
    assert buf2.flags.c_contiguous and buf2.flags.writeable
    # Writing into the buffer after binding is seen by ORT: the binding is zero-copy.
    np.testing.assert_allclose(out2, reference_logits(x2, tiny.weights), atol=1e-4)


def test_smaller_batch_is_a_view_of_the_same_memory(backend: OnnxRuntimeBackend) -> None:
    big = backend.input_buffer(16)
    small = backend.input_buffer(3)
    assert np.shares_memory(big, small) and small.shape[0] == 3


def test_buffers_grow_and_stay_correct(backend: OnnxRuntimeBackend, tiny: TinyBundle) -> None:
    for batch in (2, 9, 33, 5):
        x = _random_input(backend.input_buffer(batch), seed=batch)
        np.testing.assert_allclose(
            backend.infer(batch), reference_logits(x, tiny.weights), atol=1e-4
        )


@pytest.mark.parametrize("batch", [0, 65, -1])
def test_batch_out_of_range(backend: OnnxRuntimeBackend, batch: int) -> None:
    with pytest.raises(InputError, match=rf"batch must be in \[1, 64\] \(max_batch\), got {batch}"):
        backend.infer(batch)


# ---- options ----------------------------------------------------------------------------------
def test_threads_default_to_physical_cores(tiny: TinyBundle) -> None:
    assert OnnxRuntimeBackend(tiny.model_path, tiny.spec).threads == physical_cores()
    assert OnnxRuntimeBackend(tiny.model_path, tiny.spec, threads=1).threads == 1
    assert 1 <= physical_cores() <= (__import__("os").cpu_count() or 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"threads": 0}, "threads must be >= 1, got 0"),
        ({"device": "cuda"}, "onnxruntime backend runs on ['cpu'], got device='cuda'"),
        ({"max_batch": 0}, "max_batch must be >= 1, got 0"),
        ({"spin": "no"}, "spin must be True, False or None, got 'no'"),
    ],
)
def test_bad_options(tiny: TinyBundle, kwargs: dict, message: str) -> None:
    with pytest.raises(InputError) as info:
        OnnxRuntimeBackend(tiny.model_path, tiny.spec, **kwargs)
    assert str(info.value) == message


def test_spin_default_leaves_a_core_for_the_caller() -> None:
    assert default_spin(threads=2, cpus=2) is False  # ORT fills every core: no busy-wait
    assert default_spin(threads=1, cpus=2) is True
    assert default_spin(threads=4, cpus=16) is True


@pytest.mark.parametrize("spin", [True, False, None])
def test_spin_reaches_the_session(tiny: TinyBundle, spin: bool | None) -> None:
    be = OnnxRuntimeBackend(tiny.model_path, tiny.spec, threads=1, spin=spin)
    expected = default_spin(1) if spin is None else spin
    assert be.spin is expected
    entry = be._session.get_session_options().get_session_config_entry(
        "session.intra_op.allow_spinning"
    )
    assert entry == ("1" if expected else "0")
    assert f"spin={expected}" in repr(be)
    buf = be.input_buffer(2)
    buf[...] = 0.5
    assert np.isfinite(be.infer(2)).all()


def test_close_is_idempotent_and_final(tiny: TinyBundle) -> None:
    be = OnnxRuntimeBackend(tiny.model_path, tiny.spec)
    be.close()
    be.close()
    with pytest.raises(BackendError, match="is closed"):
        be.infer(1)


def test_meets_the_backend_protocol(backend: OnnxRuntimeBackend) -> None:
    assert isinstance(backend, Backend)
    spec = backend.input_spec
    assert (spec.name, spec.shape, spec.dtype) == ("input", (-1, 3, 224, 224), np.float32)
    assert "threads=" in repr(backend)


# ---- bad model files ----------------------------------------------------------------------------
def _valid_bytes(tiny: TinyBundle) -> bytes:
    return tiny.model_path.read_bytes()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p, b: None, "model file not found"),
        (lambda p, b: p.write_bytes(b""), "model file is empty (0 bytes)"),
        (lambda p, b: p.write_bytes(b[: len(b) // 2]), "not a loadable ONNX model"),
        (lambda p, b: p.write_text("not a model", encoding="utf-8"), "not a loadable ONNX model"),
        (lambda p, b: p.mkdir(), "not a file"),
    ],
    ids=["missing", "empty", "truncated", "text", "directory"],
)
def test_bad_model_file(tiny: TinyBundle, tmp_path: Path, make, message: str) -> None:
    path = tmp_path / "broken.onnx"
    make(path, _valid_bytes(tiny))
    with pytest.raises(ModelFileError) as info:
        OnnxRuntimeBackend(path, tiny.spec)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)


# ---- the model must match its sidecar ----------------------------------------------------------
def _save(tmp_path: Path, model: onnx.ModelProto) -> Path:
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    return path


@pytest.mark.parametrize(
    ("model_kwargs", "spec_kwargs", "message"),
    [
        ({"channels": 1}, {}, "tensor 'input': channels (axis 1) is 1, but m.onnx.json expects 3"),
        ({"patch": 200}, {}, "tensor 'input': height (axis 2) is 200, but m.onnx.json expects 224"),
        (
            {"dtype": "float16"},
            {},
            "tensor 'input': dtype is tensor(float16), but m.onnx.json expects float32",
        ),
        (
            {"classes": 10},
            {},
            "tensor 'logits': class count (axis 1) is 10, but m.onnx.json expects 12 classes",
        ),
        ({"batch": 9}, {}, "batch (axis 0; -1 = dynamic) is 9, but m.onnx.json expects -1"),
        (
            {},
            {"input_name": "image"},
            "has no input tensor 'image' (sidecar m.onnx.json input.name);"
            " its inputs are ['input']",
        ),
        (
            {},
            {"output_name": "scores"},
            "has no output tensor 'scores' (sidecar m.onnx.json output.name);"
            " its outputs are ['logits']",
        ),
    ],
    ids=["channels", "patch", "dtype", "classes", "batch", "input-name", "output-name"],
)
def test_model_sidecar_mismatch(
    tmp_path: Path, model_kwargs: dict, spec_kwargs: dict, message: str
):
    channels = model_kwargs.pop("channels", 3)
    classes = model_kwargs.pop("classes", 12)
    weights = tiny_weights(channels=channels, classes=classes)
    path = _save(tmp_path, tiny_model(weights, **model_kwargs))
    spec = ModelSpec.for_dagm(**spec_kwargs)
    with pytest.raises(SpecError) as info:
        OnnxRuntimeBackend(path, spec)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)


# ---- registry ---------------------------------------------------------------------------------
def test_registered_with_its_table_row() -> None:
    info = backend_info("onnxruntime")
    assert info.suffixes == (".onnx",) and info.devices == ("cpu",)
    assert info.extra == "onnxruntime" and info.is_available()
    assert info.display == "ONNX Runtime"
    assert "onnxruntime" in list_backends(available_only=True)


def test_auto_picks_onnxruntime_for_onnx() -> None:
    assert pick_backend("models/student.onnx") == "onnxruntime"
    assert pick_backend("MODEL.ONNX") == "onnxruntime"


def test_unknown_suffix_and_name() -> None:
    with pytest.raises(
        InputError, match=r"No backend reads '\.bin' \(m\.bin\)\. Known model suffixes"
    ):
        pick_backend("m.bin")
    with pytest.raises(
        InputError, match=r"Unknown backend 'onnxrutnime'\. Did you mean 'onnxruntime'\?"
    ):
        backend_info("onnxrutnime")


def test_create_backend_drops_none_options(tiny: TinyBundle) -> None:
    be = create_backend("onnxruntime", tiny.model_path, tiny.spec, threads=None, max_batch=8)
    assert isinstance(be, OnnxRuntimeBackend) and be.max_batch == 8
    be.close()
