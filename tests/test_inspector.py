"""Inspector end to end (tile -> ONNX Runtime -> vote) against a NumPy reference, plus errors,
batching, thread-safety and the result type."""

from __future__ import annotations

import dataclasses
import json
import shutil
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from modelzoo import (
    TinyBundle,
    reference_logits,
    reference_tiles,
    reference_vote,
    textured_frame,
    write_tiny,
)

import pyinspect
from pyinspect import InspectionResult, Inspector
from pyinspect.backends.base import list_backends
from pyinspect.errors import (
    BackendError,
    BackendUnavailableError,
    InputError,
    InputTypeError,
    ModelFileError,
    SpecError,
)
from pyinspect.result import Timings
from pyinspect.spec import GridSpec, ModelSpec


@pytest.fixture(scope="module")
def inspector(tiny: TinyBundle) -> Inspector:
    with Inspector(tiny.model_path) as insp:
        yield insp


def _reference(bundle: TinyBundle, frame: np.ndarray, boxes: np.ndarray, **vote_kwargs):
    spec = bundle.spec
    x = reference_tiles(
        frame, boxes, spec.normalization.mean, spec.normalization.std, spec.channels
    )
    logits = reference_logits(x, bundle.weights)
    return logits, reference_vote(logits, spec.class_texture, spec.class_defective, **vote_kwargs)


def _assert_matches(result: InspectionResult, ref: dict, bundle: TinyBundle) -> None:
    np.testing.assert_array_equal(result.patch_class, ref["patch_class"])
    np.testing.assert_allclose(result.patch_score, ref["patch_score"], atol=1e-4)
    np.testing.assert_allclose(result.patch_defect_prob, ref["patch_defect_prob"], atol=1e-4)
    np.testing.assert_array_equal(result.defective_patches, np.flatnonzero(ref["patch_defective"]))
    np.testing.assert_array_equal(result.texture_votes, ref["texture_votes"])
    assert (result.texture, result.defective) == (ref["texture"], ref["defective"])
    assert result.texture_name == bundle.spec.textures[ref["texture"]]
    assert result.label == bundle.spec.label(ref["texture"], ref["defective"])


# ---- end to end against NumPy --------------------------------------------------------------------
@pytest.mark.parametrize("index", range(6))
def test_run_matches_numpy_reference(
    inspector: Inspector, tiny: TinyBundle, frames: list[np.ndarray], index: int
) -> None:
    frame = frames[index]
    result = inspector.run(frame)
    assert result.boxes.shape == (9, 4)
    _, ref = _reference(tiny, frame, result.boxes)
    _assert_matches(result, ref, tiny)


def test_backend_logits_match_numpy_reference(
    inspector: Inspector, tiny: TinyBundle, frames: list[np.ndarray]
) -> None:
    """The logits the verdict is voted on (tiled by the C++ core, inferred by ORT) agree with
    the NumPy tiler + network to 1e-4."""
    from pyinspect.tiling import tile_into

    frame = frames[1]
    boxes = inspector.boxes(512, 512)
    buf = inspector.backend.input_buffer(len(boxes))
    tile_into(frame, buf, boxes, tiny.spec.normalization.mean, tiny.spec.normalization.std)
    logits = inspector.backend.infer(len(boxes)).copy()
    ref_logits, _ = _reference(tiny, frame, boxes)
    np.testing.assert_allclose(logits, ref_logits, atol=1e-4, rtol=0)


def test_verdicts_vary_across_frames(inspector: Inspector) -> None:
    """Guards the fixtures: a reference match is only meaningful if the outcomes differ."""
    results = [inspector.run(textured_frame(seed=s)) for s in range(12)]
    assert len({r.label for r in results}) >= 2
    assert len({tuple(r.patch_class) for r in results}) >= 2


def test_gray_model_on_color_and_gray_frames(tiny_gray: TinyBundle, frames: list[np.ndarray]):
    with Inspector(tiny_gray.model_path) as insp:
        for frame in frames[:3]:
            result = insp.run(frame)
            _, ref = _reference(tiny_gray, frame, result.boxes)
            _assert_matches(result, ref, tiny_gray)


def test_probability_model_gives_the_same_verdicts(tmp_path: Path, frames: list[np.ndarray]):
    logits_model = write_tiny(tmp_path / "a", "m.onnx", seed=4)
    prob_model = write_tiny(tmp_path / "b", "m.onnx", seed=4, softmax=True)
    with Inspector(logits_model.model_path) as a, Inspector(prob_model.model_path) as b:
        for frame in frames[:3]:
            ra, rb = a.run(frame, threshold=0.3), b.run(frame, threshold=0.3)
            assert (ra.label, ra.defective_patches.tolist()) == (
                rb.label,
                rb.defective_patches.tolist(),
            )
            np.testing.assert_allclose(ra.patch_defect_prob, rb.patch_defect_prob, atol=1e-5)


# ---- thresholds ----------------------------------------------------------------------------------
def test_threshold_per_call_and_default(tiny: TinyBundle, frames: list[np.ndarray]) -> None:
    frame = frames[0]
    with Inspector(tiny.model_path, threshold=0.0) as insp:
        everything = insp.run(frame)
        assert everything.defective and len(everything.defective_patches) == 9
        nothing = insp.run(frame, threshold=1.0)
        assert not nothing.defective and nothing.defective_patches.size == 0
        for t in (0.1, 0.2, 0.5):
            r = insp.run(frame, threshold=t)
            _, ref = _reference(tiny, frame, r.boxes, threshold=t)
            _assert_matches(r, ref, tiny)


@pytest.mark.parametrize(
    ("threshold", "error", "message"),
    [
        (1.5, InputError, "threshold must be in [0, 1] or None (argmax rule), got 1.5"),
        (-0.1, InputError, "threshold must be in [0, 1] or None (argmax rule), got -0.1"),
        ("0.5", InputTypeError, "threshold must be a number in [0, 1] or None, got str"),
        (True, InputTypeError, "threshold must be a number in [0, 1] or None, got bool"),
    ],
)
def test_bad_threshold(inspector: Inspector, frames, threshold, error, message) -> None:
    with pytest.raises(error) as info:
        inspector.run(frames[0], threshold=threshold)
    assert str(info.value) == message


# ---- frames of every shape -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("shape", "patches"),
    [((224, 224), 1), ((300, 700), 8), ((512, 512, 1), 9), ((225, 224, 3), 2), ((1024, 512), 15)],
)
def test_frame_shapes(inspector: Inspector, tiny: TinyBundle, shape, patches: int) -> None:
    frame = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    result = inspector.run(frame)
    assert result.num_patches == patches
    _, ref = _reference(tiny, frame, result.boxes)
    _assert_matches(result, ref, tiny)


def test_strided_frame_is_read_in_place(inspector: Inspector, frames: list[np.ndarray]) -> None:
    big = np.zeros((600, 1200, 3), dtype=np.uint8)
    big[50:562, 100:1124:2] = frames[1]
    view = big[50:562, 100:1124:2]
    assert not view.flags.c_contiguous
    a, b = inspector.run(view), inspector.run(np.ascontiguousarray(view))
    np.testing.assert_array_equal(a.patch_class, b.patch_class)
    np.testing.assert_allclose(a.patch_defect_prob, b.patch_defect_prob, atol=1e-6)


@pytest.mark.parametrize(
    ("frame", "error", "message"),
    [
        (
            np.zeros(512, np.uint8),
            InputError,
            "frame must be 2-D (H, W) or 3-D (H, W, C), got 1-D shape (512,)",
        ),
        (np.zeros((2, 512, 512, 3), np.uint8), InputError, "got 4-D shape (2, 512, 512, 3)"),
        (np.zeros((512, 512), np.float32), InputError, "frame must be uint8, got float32"),
        (np.zeros((512, 512), np.uint16), InputError, "frame must be uint8, got uint16"),
        (
            np.zeros((512, 512, 2), np.uint8),
            InputError,
            "frame must have 1 (gray), 3 (BGR) or 4 (BGRA) channels, got 2",
        ),
        (
            np.zeros((100, 600), np.uint8),
            InputError,
            "frame of 100x600 (HxW) is smaller than the 224x224 patch",
        ),
        (
            np.zeros((0, 0), np.uint8),
            InputError,
            "frame of 0x0 (HxW) is smaller than the 224x224 patch",
        ),
        (
            np.zeros((1, 1, 3), np.uint8),
            InputError,
            "frame of 1x1 (HxW) is smaller than the 224x224 patch",
        ),
        (
            [[0, 1], [2, 3]],
            InputTypeError,
            "frame must be a NumPy uint8 array or an image path, got list",
        ),
    ],
    ids=["1d", "4d", "float", "uint16", "2ch", "small", "empty", "1px", "list"],
)
def test_bad_frames(inspector: Inspector, frame, error, message: str) -> None:
    with pytest.raises(error) as info:
        inspector.run(frame)
    assert message in str(info.value)


# ---- frames from files ---------------------------------------------------------------------------
def test_run_on_paths(inspector: Inspector, frames: list[np.ndarray], tmp_path: Path) -> None:
    for i, frame in enumerate(frames[:3]):
        path = tmp_path / f"f{i}.png"
        assert cv2.imwrite(str(path), frame)
        from_array = inspector.run(frame)
        for given in (path, str(path)):
            from_file = inspector.run(given)
            np.testing.assert_array_equal(from_file.patch_class, from_array.patch_class)
            assert from_file.label == from_array.label


def test_unreadable_paths_name_the_file(inspector: Inspector, tmp_path: Path) -> None:
    missing = tmp_path / "nope.png"
    with pytest.raises(InputError, match=f"^{missing}: image not found$"):
        inspector.run(missing)
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"\x89PNG not really")
    with pytest.raises(InputError, match=r"garbage\.png: cannot decode image"):
        inspector.run(garbage)
    deep = tmp_path / "deep16.png"
    cv2.imwrite(str(deep), np.zeros((512, 512), np.uint16))
    with pytest.raises(InputError, match=f"^{deep}: frame must be uint8, got uint16"):
        inspector.run(deep)
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), np.zeros((64, 64), np.uint8))
    with pytest.raises(InputError, match=f"^{small}: frame of 64x64"):
        inspector.run(small)


# ---- batching ------------------------------------------------------------------------------------
def test_run_batch_equals_run(inspector: Inspector, frames: list[np.ndarray]) -> None:
    singles = [inspector.run(f) for f in frames]
    batched = inspector.run_batch(frames)
    assert len(batched) == len(frames)
    for a, b in zip(singles, batched, strict=True):
        assert a.label == b.label
        np.testing.assert_array_equal(a.patch_class, b.patch_class)
        np.testing.assert_allclose(a.patch_defect_prob, b.patch_defect_prob, atol=1e-5)
        assert b.timings.infer_ms > 0 and b.timings.total_ms >= b.timings.infer_ms
    assert inspector.run_batch([]) == []


def test_small_max_batch_groups_and_chunks(tiny: TinyBundle, frames: list[np.ndarray]) -> None:
    """max_batch=10: two 9-patch frames never share an inference; a 15-patch frame is split."""
    tall = textured_frame(1024, 512, seed=9)
    mixed = [frames[0], tall, textured_frame(224, 224, seed=3), frames[1]]
    with Inspector(tiny.model_path, max_batch=10) as insp:
        assert insp.max_batch == 10
        results = insp.run_batch(mixed)
        again = [insp.run(f) for f in mixed]
    for frame, r, s in zip(mixed, results, again, strict=True):
        _, ref = _reference(tiny, frame, r.boxes)
        _assert_matches(r, ref, tiny)
        np.testing.assert_array_equal(r.patch_class, s.patch_class)
    assert results[1].num_patches == 15


def test_concurrent_runs_are_correct(inspector: Inspector, frames: list[np.ndarray]) -> None:
    expected = [inspector.run(f) for f in frames]
    got: dict[tuple[int, int], InspectionResult] = {}
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            for k in range(6):
                i = (t + k) % len(frames)
                got[(t, k)] = inspector.run(frames[i])
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    for (t, k), r in got.items():
        e = expected[(t + k) % len(frames)]
        np.testing.assert_array_equal(r.patch_class, e.patch_class)
        np.testing.assert_allclose(r.patch_defect_prob, e.patch_defect_prob, atol=1e-6)


def test_hot_path_reuses_the_input_buffer(inspector: Inspector, frames: list[np.ndarray]):
    inspector.run(frames[0])
    before = inspector.backend.input_buffer(9).ctypes.data
    for f in frames:
        inspector.run(f)
    assert inspector.backend.input_buffer(9).ctypes.data == before


# ---- construction errors -------------------------------------------------------------------------
def test_missing_model_file(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match=f"^{tmp_path / 'x.onnx'}: model file not found$"):
        Inspector(tmp_path / "x.onnx")


def test_missing_sidecar(tiny: TinyBundle, tmp_path: Path) -> None:
    model = tmp_path / "lonely.onnx"
    shutil.copy(tiny.model_path, model)
    with pytest.raises(SpecError) as info:
        Inspector(model)
    assert f"expected '{model}.json'" in str(info.value)
    assert "python -m train export" in str(info.value)


def test_invalid_sidecar(tiny: TinyBundle, tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    shutil.copy(tiny.model_path, model)
    doc = tiny.spec.to_dict()
    doc["input"]["channels"] = 2
    (tmp_path / "m.onnx.json").write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(SpecError, match=r"m\.onnx\.json: input\.channels: must be 1 or 3, got 2"):
        Inspector(model)


def test_sidecar_that_does_not_match_the_model(tiny: TinyBundle, tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    shutil.copy(tiny.model_path, model)
    ModelSpec.for_dagm(patch=256, mean=[0.5] * 3, std=[0.25] * 3).save_for_model(model)
    with pytest.raises(
        SpecError, match=r"tensor 'input': height \(axis 2\) is 224, but m\.onnx\.json expects 256"
    ):
        Inspector(model)


def test_unknown_backend_suggests(tiny: TinyBundle) -> None:
    with pytest.raises(
        InputError, match=r"Unknown backend 'onnxrutnime'\. Did you mean 'onnxruntime'\?"
    ):
        Inspector(tiny.model_path, backend="onnxrutnime")


@pytest.mark.skipif(
    "tensorrt" in list_backends(available_only=True), reason="TensorRT and a GPU are present"
)
@pytest.mark.parametrize("suffix", [".plan", ".engine"])
def test_plan_without_tensorrt(tmp_path: Path, suffix: str) -> None:
    plan = tmp_path / f"student{suffix}"
    plan.write_bytes(b"\x00" * 16)
    with pytest.raises(BackendUnavailableError) as info:
        Inspector(plan)
    assert str(info.value).startswith(f"{plan}: TensorRT backend not available: ")


def test_explicit_spec_overrides_the_sidecar(tiny: TinyBundle, tmp_path: Path) -> None:
    model = tmp_path / "nosidecar.onnx"
    shutil.copy(tiny.model_path, model)
    with Inspector(model, spec=tiny.spec) as insp:
        assert insp.run(textured_frame()).num_patches == 9


def test_fixed_grid_from_the_sidecar(tiny: TinyBundle, tmp_path: Path) -> None:
    spec = ModelSpec.from_dict(
        {**tiny.spec.to_dict(), "grid": GridSpec(policy="fixed", rows=3, cols=4).model_dump()}
    )
    with Inspector(tiny.model_path, spec=spec) as insp:
        result = insp.run(textured_frame())
    assert result.num_patches == 12
    assert sorted({int(x) for x in result.boxes[:, 0]}) == [0, 96, 192, 288]


# ---- lifecycle and result type -------------------------------------------------------------------
def test_close_and_repr(tiny: TinyBundle) -> None:
    insp = Inspector(tiny.model_path)
    assert insp.backend_name == "onnxruntime" and insp.spec.num_classes == 12
    assert repr(insp).startswith(f"Inspector('{tiny.model_path}', backend='onnxruntime'")
    insp.close()
    insp.close()
    assert "closed" in repr(insp)
    with pytest.raises(BackendError, match="is closed"):
        insp.run(textured_frame())


def test_result_is_frozen_serialisable_and_readable(inspector: Inspector, frames) -> None:
    r = inspector.run(frames[0], threshold=0.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.defective = False  # type: ignore[misc]
    with pytest.raises(ValueError, match="read-only"):
        r.patch_class[0] = 3
    d = json.loads(r.to_json())
    assert d["label"] == r.label and d["defective"] is True
    assert d["boxes"][0] == [0, 0, 224, 224] and len(d["patch_class"]) == 9
    assert d["defective_patches"] == list(range(9)) and d["error"] is None
    assert set(d["timings"]) == {"tile_ms", "infer_ms", "vote_ms", "total_ms"}
    assert str(r).startswith(f"{r.label} (9/9 patches defective, max defect p=")
    assert repr(r).startswith(f"InspectionResult(label='{r.label}', texture={r.texture},")
    t = r.timings
    assert min(t.tile_ms, t.infer_ms, t.vote_ms) >= 0
    assert t.total_ms == pytest.approx(t.tile_ms + t.infer_ms + t.vote_ms, rel=1e-6)


def test_failed_result() -> None:
    r = InspectionResult.failed("camera timeout", Timings(total_ms=2.0))
    assert not r.ok and r.error == "camera timeout" and r.num_patches == 0
    assert str(r) == "error: camera timeout" and r.max_defect_prob == 0.0
    assert json.loads(r.to_json())["error"] == "camera timeout"


def test_package_exports() -> None:
    assert pyinspect.Inspector is Inspector
    assert pyinspect.ModelSpec is ModelSpec
    assert pyinspect.__version__ != "0.0.0+unknown"
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = pyinspect.Nope  # type: ignore[attr-defined]
