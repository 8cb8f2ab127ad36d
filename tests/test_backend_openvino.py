"""OpenVINO backend: numbers, buffers, sidecar checks, precision refusal, registry, Inspector."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

ov = pytest.importorskip("openvino", reason="the openvino extra is not installed")

from modelzoo import reference_logits, reference_tiles, textured_frame, write_tiny  # noqa: E402

from pyinspect.backends.base import backend_info, create_backend, list_backends  # noqa: E402
from pyinspect.backends.openvino import OpenVinoBackend, cpu_precisions  # noqa: E402
from pyinspect.errors import (  # noqa: E402
    BackendError,
    BackendUnavailableError,
    InputError,
    ModelFileError,
    SpecError,
)
from pyinspect.spec import ModelSpec  # noqa: E402

PATCH = 32  # small patches keep every test in milliseconds


def _fill(backend: OpenVinoBackend, batch: int, seed: int = 0) -> np.ndarray:
    buf = backend.input_buffer(batch)
    buf[...] = np.random.default_rng(seed).normal(0, 1, buf.shape).astype(buf.dtype)
    return buf.copy()


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("batch", [1, 9, 10])
def test_logits_match_reference(tmp_path: Path, channels: int, batch: int) -> None:
    bundle = write_tiny(tmp_path, channels=channels, patch=PATCH)
    backend = OpenVinoBackend(bundle.model_path, bundle.spec, threads=1)
    x = _fill(backend, batch)
    got = backend.infer(batch)
    assert got.shape == (batch, 12) and got.dtype == np.float32
    np.testing.assert_allclose(got, reference_logits(x, bundle.weights), rtol=1e-4, atol=1e-4)


def test_input_buffer_is_the_memory_infer_reads(tmp_path: Path) -> None:
    """Writing the buffer in place (as the tiler does) changes the logits: no hidden copy."""
    bundle = write_tiny(tmp_path, channels=1, patch=PATCH)
    backend = OpenVinoBackend(bundle.model_path, bundle.spec, threads=1)
    buf = backend.input_buffer(9)
    assert buf.flags.c_contiguous and buf.flags.writeable
    assert buf.shape == (9, 1, PATCH, PATCH)
    buf[...] = 0.0
    first = backend.infer(9).copy()
    buf[3] = 5.0
    second = backend.infer(9)
    assert not np.allclose(first[3], second[3])
    np.testing.assert_array_equal(first[[0, 1, 2, 4]], second[[0, 1, 2, 4]])
    x = np.zeros((9, 1, PATCH, PATCH), np.float32)
    x[3] = 5.0
    np.testing.assert_allclose(second, reference_logits(x, bundle.weights), rtol=1e-4, atol=1e-4)


def test_batch_sizes_switch_and_buffer_grows(tmp_path: Path) -> None:
    bundle = write_tiny(tmp_path, channels=1, patch=PATCH)
    backend = OpenVinoBackend(bundle.model_path, bundle.spec, threads=1, max_batch=40)
    for batch in (9, 2, 33, 9, 1):  # 33 > initial capacity: buffers are re-allocated
        x = _fill(backend, batch, seed=batch)
        np.testing.assert_allclose(
            backend.infer(batch), reference_logits(x, bundle.weights), rtol=1e-4, atol=1e-4
        )


@pytest.mark.parametrize("batch", [0, 41])
def test_batch_out_of_range(tmp_path: Path, batch: int) -> None:
    bundle = write_tiny(tmp_path, channels=1, patch=PATCH)
    backend = OpenVinoBackend(bundle.model_path, bundle.spec, max_batch=40)
    with pytest.raises(InputError, match=rf"batch must be in \[1, 40\] \(max_batch\), got {batch}"):
        backend.input_buffer(batch)


def test_fixed_batch_model(tmp_path: Path) -> None:
    bundle = write_tiny(tmp_path, channels=1, patch=PATCH, batch=9)
    backend = OpenVinoBackend(bundle.model_path, bundle.spec, threads=1)
    assert backend.max_batch == 9
    x = _fill(backend, 4)
    np.testing.assert_allclose(
        backend.infer(4), reference_logits(x, bundle.weights), rtol=1e-4, atol=1e-4
    )


def test_float16_model(tmp_path: Path) -> None:
    bundle = write_tiny(tmp_path, channels=3, patch=PATCH, dtype="float16")
    backend = OpenVinoBackend(bundle.model_path, bundle.spec, threads=1)
    assert backend.input_spec.dtype == np.float16
    x = _fill(backend, 9)
    got = backend.infer(9)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, reference_logits(x, bundle.weights), rtol=2e-2, atol=2e-2)


def test_openvino_ir_model(tmp_path: Path) -> None:
    """An .xml/.bin IR converted from the ONNX reads the same sidecar and gives the same logits."""
    bundle = write_tiny(tmp_path, channels=1, patch=PATCH)
    xml = tmp_path / "tiny.xml"
    # compress_to_fp16 defaults to True: it would round the weights and break the comparison.
    ov.save_model(ov.Core().read_model(str(bundle.model_path)), str(xml), compress_to_fp16=False)
    bundle.spec.save_for_model(xml)
    backend = OpenVinoBackend(xml, ModelSpec.for_model(xml), threads=1)
    x = _fill(backend, 9)
    np.testing.assert_allclose(
        backend.infer(9), reference_logits(x, bundle.weights), rtol=1e-4, atol=1e-4
    )
    xml.with_suffix(".bin").unlink()
    with pytest.raises(ModelFileError, match=r"tiny\.xml: OpenVINO IR needs its weights file"):
        OpenVinoBackend(xml, bundle.spec)


def test_f32_is_set_explicitly(tmp_path: Path) -> None:
    bundle = write_tiny(tmp_path, channels=1, patch=PATCH)
    backend = OpenVinoBackend(bundle.model_path, bundle.spec, threads=1)
    props = backend.compiled_properties(9)
    assert props["INFERENCE_PRECISION_HINT"] == "f32"
    assert props["INFERENCE_NUM_THREADS"] == 1


@pytest.mark.skipif(
    "BF16" in cpu_precisions(ov.Core()), reason="this CPU runs bf16 natively (refusal untestable)"
)
def test_bf16_refused_without_native_support(tmp_path: Path) -> None:
    """OpenVINO would quietly run f32 here; the backend says so instead."""
    bundle = write_tiny(tmp_path, channels=1, patch=PATCH)
    with pytest.raises(BackendUnavailableError, match=r"precision='bf16' needs a CPU with native"):
        OpenVinoBackend(bundle.model_path, bundle.spec, precision="bf16")


@pytest.mark.skipif(
    "BF16" not in cpu_precisions(ov.Core()), reason="this CPU has no native bf16 (AVX512-BF16/AMX)"
)
def test_bf16_runs_close_to_f32(tmp_path: Path) -> None:
    bundle = write_tiny(tmp_path, channels=1, patch=PATCH)
    backend = OpenVinoBackend(bundle.model_path, bundle.spec, precision="bf16", threads=1)
    assert backend.compiled_properties(9)["INFERENCE_PRECISION_HINT"] == "bf16"
    x = _fill(backend, 9)
    np.testing.assert_allclose(
        backend.infer(9), reference_logits(x, bundle.weights), rtol=5e-2, atol=5e-2
    )


def test_bad_options(tmp_path: Path) -> None:
    bundle = write_tiny(tmp_path, channels=1, patch=PATCH)
    with pytest.raises(InputError, match=r"precision must be one of \['f32', 'bf16'\], got 'fp8'"):
        OpenVinoBackend(bundle.model_path, bundle.spec, precision="fp8")
    with pytest.raises(InputError, match=r"threads must be >= 1"):
        OpenVinoBackend(bundle.model_path, bundle.spec, threads=0)
    with pytest.raises(InputError, match=r"runs on \['cpu'\], got device='cuda'"):
        OpenVinoBackend(bundle.model_path, bundle.spec, device="cuda")


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        ({"channels": 3}, r"channels \(axis 1\) is 1, but tiny\.onnx\.json expects 3"),
        ({"patch": 64}, r"height \(axis 2\) is 32, but tiny\.onnx\.json expects 64"),
        ({"input_name": "x"}, r"has no input tensor 'x' .*its inputs are \['input'\]"),
        ({"output_name": "y"}, r"has no output tensor 'y'"),
        ({"dtype": "float16"}, r"dtype is f32, but tiny\.onnx\.json expects float16"),
        ({"batch": 4}, r"batch \(axis 0; -1 = dynamic\) is -1, but tiny\.onnx\.json expects 4"),
        ({"n_textures": 5}, r"class count \(axis 1\) is 12, but tiny\.onnx\.json expects 10"),
    ],
)
def test_sidecar_mismatch_is_named(tmp_path: Path, override: dict, pattern: str) -> None:
    bundle = write_tiny(tmp_path, channels=1, patch=PATCH)
    args = {"patch": PATCH, "channels": 1, "mean": [0.5], "std": [0.25], **override}
    if "channels" in override:
        args["mean"], args["std"] = [0.5] * 3, [0.25] * 3
    wrong = ModelSpec.for_dagm(**args)
    with pytest.raises(SpecError, match=pattern):
        OpenVinoBackend(bundle.model_path, wrong)


@pytest.mark.parametrize(
    ("content", "pattern"),
    [(None, r"model file not found"), (b"", r"model file is empty"), (b"junk", r"not a loadable")],
)
def test_bad_model_files(tmp_path: Path, content: bytes | None, pattern: str) -> None:
    spec = write_tiny(tmp_path, channels=1, patch=PATCH).spec
    path = tmp_path / "bad.onnx"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelFileError, match=pattern):
        OpenVinoBackend(path, spec)


def test_closed_backend_refuses(tmp_path: Path) -> None:
    bundle = write_tiny(tmp_path, channels=1, patch=PATCH)
    backend = OpenVinoBackend(bundle.model_path, bundle.spec)
    backend.close()
    backend.close()  # idempotent
    with pytest.raises(BackendError, match=r"openvino backend for .*tiny\.onnx is closed"):
        backend.infer(9)


def test_registered_with_suffixes(tmp_path: Path) -> None:
    assert "openvino" in list_backends(available_only=True)
    info = backend_info("openvino")
    assert info.suffixes == (".onnx", ".xml") and info.devices == ("cpu",)
    assert info.extra == "openvino"
    bundle = write_tiny(tmp_path, channels=1, patch=PATCH)
    backend = create_backend("openvino", bundle.model_path, bundle.spec, threads=None)
    assert isinstance(backend, OpenVinoBackend) and backend.threads >= 1


def test_inspector_end_to_end_matches_reference(tmp_path: Path) -> None:
    from pyinspect import Inspector
    from pyinspect.tiling import patch_grid
    from pyinspect.voting import vote

    bundle = write_tiny(tmp_path, channels=1, patch=PATCH, mean=[0.5], std=[0.25])
    frame = textured_frame(80, 96)
    with Inspector(bundle.model_path, backend="openvino", threads=1) as insp:
        result = insp.run(frame)
    boxes = patch_grid(80, 96, PATCH)
    tiles = reference_tiles(frame, boxes, [0.5], [0.25], 1)
    expected = vote(
        reference_logits(tiles, bundle.weights),
        bundle.spec.class_texture,
        bundle.spec.class_defective,
    )
    assert result.texture == expected.texture and result.defective == expected.defective
    np.testing.assert_array_equal(result.patch_class, expected.patch_class)


def test_sidecar_file_is_what_inspector_reads(tmp_path: Path) -> None:
    """A sidecar edited on disk to disagree with the graph is refused by name."""
    from pyinspect import Inspector

    bundle = write_tiny(tmp_path, channels=1, patch=PATCH)
    side = ModelSpec.sidecar_path(bundle.model_path)
    doc = json.loads(side.read_text())
    doc["output"]["name"] = "scores"
    side.write_text(json.dumps(doc))
    with pytest.raises(SpecError, match=r"has no output tensor 'scores'"):
        Inspector(bundle.model_path, backend="openvino")


# ---- native whole-frame runner (pyinspect._fastcpu.FrameRunner) ---------------------------------
def _native() -> object:
    from pyinspect.runners.openvino_native import load_native

    try:
        return load_native()
    except BackendUnavailableError as exc:
        pytest.skip(f"native OpenVINO runner not built here: {exc}")


@pytest.mark.parametrize(
    ("channels", "frame_channels", "shape"),
    [(1, 0, (80, 96)), (3, 3, (64, 64)), (1, 3, (32, 70)), (3, 0, (100, 33))],
)
def test_native_matches_inspector(
    tmp_path: Path, channels: int, frame_channels: int, shape: tuple[int, int]
) -> None:
    """Same patches, logits and verdict as the Python path, for gray and BGR frames."""
    _native()
    from pyinspect import Inspector
    from pyinspect.runners.openvino_native import OpenVinoFrameRunner

    bundle = write_tiny(tmp_path, channels=channels, patch=PATCH)
    frame = textured_frame(*shape, channels=frame_channels, seed=3)
    with Inspector(bundle.model_path, backend="onnxruntime", threads=1) as insp:
        want = insp.run(frame)
    runner = OpenVinoFrameRunner(bundle.model_path, frame_shape=shape, threads=1)
    got = runner.inspect(frame)
    assert (got.texture, got.defective, got.label) == (want.texture, want.defective, want.label)
    np.testing.assert_array_equal(got.boxes, want.boxes)
    np.testing.assert_array_equal(got.patch_class, want.patch_class)
    np.testing.assert_allclose(got.patch_score, want.patch_score, rtol=1e-4, atol=1e-5)
    mean, std = bundle.spec.normalization.mean, bundle.spec.normalization.std
    tiles = reference_tiles(frame, want.boxes, mean, std, channels)
    np.testing.assert_allclose(
        runner.logits(shape), reference_logits(tiles, bundle.weights), rtol=1e-4, atol=1e-4
    )
    t = got.timings
    assert min(t.tile_ms, t.infer_ms, t.vote_ms) >= 0 and t.total_ms >= t.infer_ms


def test_native_threshold_and_new_frame_size(tmp_path: Path) -> None:
    _native()
    from pyinspect.runners.openvino_native import OpenVinoFrameRunner

    bundle = write_tiny(tmp_path, channels=1, patch=PATCH)
    runner = OpenVinoFrameRunner(bundle.model_path, frame_shape=(64, 64), threads=1)
    small, large = textured_frame(64, 64), textured_frame(40, 100, seed=1)
    assert runner.inspect(large).num_patches == 2 * 4  # another size: compiled on first use
    assert runner.inspect(small, threshold=0.0).defective  # every patch has defect prob >= 0
    none = runner.inspect(small, threshold=1.0)
    assert none.defective == bool((none.patch_defect_prob >= 1.0).any())


def test_native_rejects_bad_frames(tmp_path: Path) -> None:
    _native()
    from pyinspect.runners.openvino_native import OpenVinoFrameRunner

    bundle = write_tiny(tmp_path, channels=1, patch=PATCH)
    runner = OpenVinoFrameRunner(bundle.model_path, frame_shape=(64, 64), threads=1)
    with pytest.raises(InputError, match=r"uint8"):
        runner.inspect(np.zeros((64, 64), np.float32))
    with pytest.raises(InputError, match=r"smaller than"):
        runner.inspect(np.zeros((16, 64), np.uint8))


def test_native_checks_the_sidecar_like_the_backend(tmp_path: Path) -> None:
    _native()
    from pyinspect.runners.openvino_native import OpenVinoFrameRunner

    bundle = write_tiny(tmp_path, channels=1, patch=PATCH)
    wrong = ModelSpec.for_dagm(patch=PATCH, channels=1, input_name="x", mean=[0.5], std=[0.25])
    with pytest.raises(SpecError, match=r"has no input tensor 'x'"):
        OpenVinoFrameRunner(bundle.model_path, wrong, frame_shape=(64, 64))


def test_native_refuses_another_openvino_release(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    native = _native()
    from pyinspect.runners.openvino_native import OpenVinoFrameRunner

    built = native.build_version()  # type: ignore[attr-defined]
    assert ov.get_version().startswith(built)
    monkeypatch.setattr(ov, "get_version", lambda: "2099.1.0-1-abc-releases/2099/1")
    bundle = write_tiny(tmp_path, channels=1, patch=PATCH)
    with pytest.raises(
        BackendUnavailableError,
        match=rf"built against OpenVINO {built} but 2099\.1\.0-1-abc-releases/2099/1 is installed",
    ):
        OpenVinoFrameRunner(bundle.model_path, frame_shape=(64, 64))
