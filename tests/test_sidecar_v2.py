"""Sidecar schema v2 (issue 20): defect types, bit depth, the resize policy, a calibrated
threshold with its history, and how the runtime applies each: the same verdicts on every path
(tile -> ONNX Runtime -> vote, the direct student runner, run_batch, stream, the CLI)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from modelzoo import TinyBundle, textured_frame, write_tiny
from studentzoo import frames as student_frames
from studentzoo import student_onnx

from pyinspect import Inspector
from pyinspect import spec as spec_mod
from pyinspect.cli import main
from pyinspect.errors import InputError, InputTypeError, SpecError
from pyinspect.records import SCHEMA_VERSION as RECORD_VERSION
from pyinspect.records import ModelIdentity, record_dict
from pyinspect.resize import fit_to_patch, resized_shape
from pyinspect.result import InspectionResult, Timings, frame_defect_type
from pyinspect.spec import CalibrationSpec, ModelSpec
from pyinspect.voting import vote

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "models" / "student.onnx.json"

#: 4 textures x (good, crack, scratch): 12 columns, as the tiny model's output.
TYPED_CLASSES = [
    {"name": f"T{t}_{kind}", "texture": t, "defective": kind != "good"}
    | ({"defect_type": kind} if kind != "good" else {})
    for t in range(4)
    for kind in ("good", "crack", "scratch")
]
TEXTURES = [f"Surface {t}" for t in range(4)]


def _typed_spec(**options: Any) -> ModelSpec:
    base = {"mean": [0.5] * 3, "std": [0.25] * 3}
    return ModelSpec.for_classes(TYPED_CLASSES, TEXTURES, **(base | options))


def _v1_doc() -> dict[str, Any]:
    """A v1 document: today's DAGM sidecar without any v2 field."""
    doc = ModelSpec.for_dagm().to_dict()
    doc["schema_version"] = 1
    for key in ("resize", "threshold", "calibration", "history"):
        del doc[key]
    del doc["input"]["bit_depth"]
    for c in doc["classes"]:
        del c["defect_type"]
    return doc


def _calibration(threshold: float, **extra: Any) -> dict[str, Any]:
    return {"threshold": threshold, "rule": "target_tpr", "target": 0.95} | extra


# ---- migration -----------------------------------------------------------------------------------
def test_v1_document_reads_as_v2_with_defaults() -> None:
    spec = ModelSpec.from_dict(_v1_doc(), source="old.json")
    assert spec.schema_version == spec_mod.SCHEMA_VERSION == 2
    assert (spec.resize, spec.threshold, spec.calibration, spec.history) == ("none", None, None, [])
    assert spec.input.bit_depth == 8 and spec.max_value == 255
    assert all(c.defect_type is None for c in spec.classes)
    assert spec == ModelSpec.for_dagm()  # the defaults describe the v1 model exactly


def test_shipped_v1_sidecar_loads_and_saves_as_v2(tmp_path: Path) -> None:
    text = SHIPPED.read_text(encoding="utf-8")
    assert json.loads(text)["schema_version"] == 1  # shipped as v1; loading never rewrites it
    spec = ModelSpec.load(SHIPPED)
    assert spec.schema_version == 2 and spec.threshold is None and spec.resize == "none"
    assert spec.defect_types == ["defective"]
    assert SHIPPED.read_text(encoding="utf-8") == text
    out = spec.save(tmp_path / "s.onnx.json")
    written = json.loads(out.read_text(encoding="utf-8"))
    assert written["schema_version"] == 2 and written["input"]["bit_depth"] == 8
    assert ModelSpec.load(out) == spec


# ---- the new fields and their checks -------------------------------------------------------------
def test_defect_types_and_bit_depth_views() -> None:
    spec = _typed_spec(bit_depth=12)
    assert spec.class_defect_type[:3] == (None, "crack", "scratch")
    assert spec.defect_types == ["crack", "scratch"]
    assert spec.texture_defect_type == ("defective",) * 4  # two types per texture
    assert spec.max_value == 4095 and spec.bit_depth == 12
    merged = ModelSpec.for_dagm(n_textures=2)  # v1-style: defective classes name no type
    assert merged.classes[1].defect_type is None and merged.classes[1].defect_name == "defective"
    assert merged.classes[0].defect_name is None
    assert merged.texture_defect_type == ("defective", "defective")
    one = [
        {"name": "good", "texture": 0, "defective": False},
        {"name": "dent", "texture": 0, "defective": True, "defect_type": "dent"},
    ]
    assert ModelSpec.for_classes(one, ["part"]).texture_defect_type == ("dent",)


@pytest.mark.parametrize("bits", [8, 10, 12, 16])
def test_max_value_per_bit_depth(bits: int) -> None:
    assert ModelSpec.for_dagm(bit_depth=bits).max_value == 2**bits - 1


def _bad(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    *parents, last = path.split(".")
    node: Any = doc
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    node[int(last) if last.isdigit() else last] = value
    return doc


@pytest.mark.parametrize(
    ("path", "value", "field", "text"),
    [
        ("classes.0.defect_type", "crack", "classes[0].defect_type", "must be null for a good"),
        ("classes.1.defect_type", "", "classes[1].defect_type", "at least 1 character"),
        ("classes.1.defect_type", 3, "classes[1].defect_type", "valid string"),
        ("input.bit_depth", 9, "input.bit_depth", "must be 8, 10, 12 or 16, got 9"),
        ("input.bit_depth", "16", "input.bit_depth", 'got "16"'),
        ("resize", "stretch", "resize", "must be 'none', 'upscale' or 'reflect'"),
        ("threshold", 0, "threshold", "greater than 0"),
        ("threshold", 1.5, "threshold", "less than or equal to 1"),
        ("threshold", "0.5", "threshold", "valid number"),
        ("history", {"threshold": 0.5}, "history", "valid list"),
        ("history", [0.5], "history[0]", "valid dictionary"),
    ],
)
def test_new_field_errors_name_the_field(path: str, value: Any, field: str, text: str) -> None:
    doc = _bad(_typed_spec().to_dict(), path, value)
    with pytest.raises(SpecError) as info:
        ModelSpec.from_dict(doc, source="m.onnx.json")
    issues = dict(info.value.issues)  # type: ignore[attr-defined]
    assert field in issues, issues
    assert text in issues[field]
    assert str(info.value).startswith("m.onnx.json: ")


@pytest.mark.parametrize(
    ("threshold", "calibration", "field", "text"),
    [
        (0.4, _calibration(0.3), "calibration.threshold", "must equal threshold = 0.4, got 0.3"),
        (None, _calibration(0.3), "calibration.threshold", "but threshold is null"),
        (0.4, _calibration(0.4, rule="best"), "calibration.rule", "'target_tpr' or"),
        (0.4, _calibration(0.4, tpr=1.5), "calibration.tpr", "less than or equal to 1"),
        (0.4, _calibration(0.4, fp=-1), "calibration.fp", "greater than or equal to 0"),
        (0.4, {"rule": "target_tpr"}, "calibration.threshold", "required field is missing"),
    ],
)
def test_calibration_errors_name_the_field(
    threshold: float | None, calibration: dict[str, Any], field: str, text: str
) -> None:
    doc = _typed_spec().to_dict() | {"threshold": threshold, "calibration": calibration}
    with pytest.raises(SpecError) as info:
        ModelSpec.from_dict(doc)
    issues = dict(info.value.issues)  # type: ignore[attr-defined]
    assert field in issues and text in issues[field], issues


def test_calibration_keeps_unknown_keys_and_round_trips(tmp_path: Path) -> None:
    cal = _calibration(0.4, tpr=0.97, tnr=0.9, tp=97, fn=3, tn=90, fp=10, split="val", tool="x")
    spec = _typed_spec(threshold=0.4, calibration=cal, resize="reflect", bit_depth=16)
    again = ModelSpec.load(spec.save(tmp_path / "m.onnx.json"))
    assert again == spec and again.calibration is not None
    assert again.calibration.model_extra == {"tool": "x"} and again.calibration.tp == 97


# ---- with_threshold and atomic save --------------------------------------------------------------
def test_with_threshold_keeps_every_earlier_calibration() -> None:
    base = _typed_spec()
    first = base.with_threshold(0.4, _calibration(0.4, tpr=0.9))
    assert base.threshold is None and first.threshold == 0.4 and first.history == []
    second = first.with_threshold(0.6, CalibrationSpec(threshold=0.6, rule="max_false_alarm"))
    third = second.with_threshold(None)  # back to the argmax rule
    assert (second.threshold, third.threshold, third.calibration) == (0.6, None, None)
    assert [h["threshold"] for h in third.history] == [0.4, 0.6]  # oldest first
    assert third.history[0]["calibration"] == _calibration(0.4, tpr=0.9)
    assert third.history[1]["calibration"]["rule"] == "max_false_alarm"
    assert all(h["replaced"].endswith("Z") for h in third.history)
    assert first.history == [] and len(second.history) == 1  # copies; nothing changed in place
    with pytest.raises(SpecError, match=r"calibration.threshold: must equal threshold = 0.5"):
        first.with_threshold(0.5, _calibration(0.7))
    with pytest.raises(SpecError, match=r"threshold: must be greater than 0"):
        first.with_threshold(0.0)


@pytest.mark.parametrize("fail_at", ["fsync", "replace"])
def test_save_failure_leaves_the_old_sidecar_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_at: str
) -> None:
    path = tmp_path / "m.onnx.json"
    old = _typed_spec().save(path).read_bytes()
    new = ModelSpec.load(path).with_threshold(0.5, _calibration(0.5))

    def boom(*args: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(spec_mod.os, fail_at, boom)
    with pytest.raises(OSError, match="No space left"):
        new.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == old
    assert os.listdir(tmp_path) == ["m.onnx.json"]  # no temp file left behind
    new.save(path)  # and a working save replaces it whole
    assert ModelSpec.load(path) == new


# ---- the threshold rule on the tile -> ONNX Runtime -> vote path ---------------------------------
@pytest.fixture(scope="module")
def tiny_argmax(tmp_path_factory: pytest.TempPathFactory) -> TinyBundle:
    return write_tiny(tmp_path_factory.mktemp("v2"), "tiny.onnx", seed=7)


@pytest.fixture(scope="module")
def scenes() -> list[np.ndarray]:
    return [textured_frame(seed=s, channels=3) for s in range(8)]


def _between(values: np.ndarray) -> float:
    """A threshold in the middle of ``values``, at least 1e-3 from every one of them, so a
    last-digit difference between two paths cannot flip a patch."""
    v = np.unique(values.astype(np.float64))
    gaps = np.flatnonzero(np.diff(v) > 2e-3)
    mid = gaps[np.argmin(np.abs(gaps - len(v) // 2))]
    return float((v[mid] + v[mid + 1]) / 2)


def _with_threshold_sidecar(bundle: TinyBundle, folder: Path, threshold: float) -> Path:
    path = folder / "thr.onnx"
    path.write_bytes(bundle.model_path.read_bytes())
    bundle.spec.with_threshold(threshold, _calibration(threshold)).save_for_model(path)
    return path


def test_sidecar_threshold_decides_verdicts(
    tiny_argmax: TinyBundle, scenes: list[np.ndarray], tmp_path: Path
) -> None:
    with Inspector(tiny_argmax.model_path) as plain:
        base = [plain.run(f) for f in scenes]
    thr = _between(np.concatenate([r.patch_defect_prob for r in base]))
    model = _with_threshold_sidecar(tiny_argmax, tmp_path, thr)
    changed = 0
    with Inspector(model) as insp:
        assert insp.threshold == thr
        for frame, before in zip(scenes, base, strict=True):
            r = insp.run(frame)
            pdp = r.patch_defect_prob
            np.testing.assert_array_equal(pdp, before.patch_defect_prob)  # same evidence
            assert r.defective == bool(pdp.max() >= np.float32(thr))
            np.testing.assert_array_equal(r.defective_patches, np.flatnonzero(pdp >= thr))
            argmax = insp.run(frame, threshold="argmax")
            want = np.flatnonzero(tiny_argmax.spec.class_defective[argmax.patch_class])
            np.testing.assert_array_equal(argmax.defective_patches, want)
            assert argmax.defective == before.defective
            changed += r.defective_patches.tolist() != argmax.defective_patches.tolist()
    assert changed >= 1  # the threshold made a difference on these frames


def test_threshold_choice_precedence_and_errors(
    tiny_argmax: TinyBundle, scenes: list[np.ndarray], tmp_path: Path
) -> None:
    model = _with_threshold_sidecar(tiny_argmax, tmp_path, 0.35)
    with Inspector(model) as insp:
        assert insp.threshold == 0.35 and "threshold=0.35" in repr(insp)
        assert insp.resolve_threshold(None) == 0.35
        assert insp.resolve_threshold("argmax") is None
        assert insp.resolve_threshold(0.0) == 0.0
        everything = insp.run(scenes[0], threshold=0.0)
        assert everything.defective and len(everything.defective_patches) == 9
        for bad, error, text in [
            ("argmx", InputTypeError, "threshold must be a number in [0, 1] or None, got str"),
            ("ARGMAX", InputTypeError, "'argmax' or None, got str 'ARGMAX'"),
            (1.5, InputError, "threshold must be in [0, 1]"),
            (float("nan"), InputError, "threshold must be in [0, 1]"),
        ]:
            with pytest.raises(error) as info:
                insp.run(scenes[0], threshold=bad)
            assert text in str(info.value)
    with Inspector(model, threshold="argmax") as forced:
        assert forced.threshold is None
    with Inspector(model, threshold=0.9) as override:
        assert override.threshold == 0.9
    with pytest.raises(InputTypeError, match="got str"):
        Inspector(model, threshold="0.5")


def test_batch_and_stream_apply_the_sidecar_threshold(
    tiny_argmax: TinyBundle, scenes: list[np.ndarray], tmp_path: Path
) -> None:
    with Inspector(tiny_argmax.model_path) as plain:
        pdp = np.concatenate([plain.run(f).patch_defect_prob for f in scenes])
    model = _with_threshold_sidecar(tiny_argmax, tmp_path, _between(pdp))
    with Inspector(model) as insp:
        one = [(r.defective, r.defective_patches.tolist()) for r in map(insp.run, scenes)]
        batch = [(r.defective, r.defective_patches.tolist()) for r in insp.run_batch(scenes)]
        streamed = [(r.defective, r.defective_patches.tolist()) for r in insp.stream(scenes)]
        assert one == batch == streamed
        argmax = [insp.run(f, threshold="argmax").defective_patches.tolist() for f in scenes]
        s_argmax = [r.defective_patches.tolist() for r in insp.stream(scenes, threshold="argmax")]
        b_argmax = [
            r.defective_patches.tolist() for r in insp.run_batch(scenes, threshold="argmax")
        ]
        assert argmax == s_argmax == b_argmax and argmax != [p for _, p in one]


# ---- the same rule on the direct student runner and on ONNX Runtime ------------------------------
@pytest.mark.usefixtures("need_student_runner")
def test_threshold_is_the_same_on_the_student_runner_and_onnxruntime(tmp_path: Path) -> None:
    model = tmp_path / "student.onnx"
    spec = student_onnx(model, seed=3)
    gray = student_frames((512, 512), 6, seed=11) + student_frames((300, 700), 2, seed=12)
    with Inspector(model, backend="onnxruntime") as ort:
        pdp = np.concatenate([ort.run(f).patch_defect_prob for f in gray])
    thr = _between(pdp)
    spec.with_threshold(thr, _calibration(thr)).save_for_model(model)
    with Inspector(model) as fast, Inspector(model, backend="onnxruntime") as ref:
        assert fast.runner == "student" and ref.runner == "backend"
        assert fast.threshold == ref.threshold == thr
        for frame in gray:
            for rule in (None, "argmax"):
                got, want = fast.run(frame, threshold=rule), ref.run(frame, threshold=rule)
                assert (got.defective, got.defect_type) == (want.defective, want.defect_type)
                np.testing.assert_array_equal(got.defective_patches, want.defective_patches)
                np.testing.assert_allclose(got.patch_defect_prob, want.patch_defect_prob, atol=1e-5)
            got = fast.run(frame)
            np.testing.assert_array_equal(
                got.defective_patches, np.flatnonzero(got.patch_defect_prob >= thr)
            )
        assert got.to_dict()["defect_type"] == got.defect_type  # the deferred decoder sets it


# ---- defect_type ---------------------------------------------------------------------------------
def _result(logits: list[list[float]], spec: ModelSpec, threshold: float | None) -> Any:
    verdict = vote(
        np.asarray(logits, np.float32),
        spec.class_texture,
        spec.class_defective,
        threshold=threshold,
    )
    boxes = np.zeros((len(logits), 4), np.int32)
    return InspectionResult.from_vote(verdict, spec, boxes, Timings())


def test_defect_type_of_the_most_confident_defective_patch() -> None:
    spec = _typed_spec()
    # columns: T0_good, T0_crack, T0_scratch, T1_good, ...
    crack_weak = [0.0, 1.0, 0.0] + [-9.0] * 9  # argmax crack, score ~0.58
    scratch_sure = [0.0, 0.0, 4.0] + [-9.0] * 9  # argmax scratch, score ~0.96
    good = [4.0, 0.0, 0.0] + [-9.0] * 9
    r = _result([crack_weak, scratch_sure, good], spec, None)
    assert r.defective and r.defective_patches.tolist() == [0, 1]
    assert r.defect_type == "scratch" and r.to_dict()["defect_type"] == "scratch"
    r = _result([crack_weak, good], spec, None)
    assert r.defect_type == "crack"
    r = _result([good, good], spec, None)
    assert not r.defective and r.defect_type is None and r.to_dict()["defect_type"] is None


def test_defect_type_when_the_threshold_flags_a_patch_whose_argmax_is_good() -> None:
    spec = _typed_spec()
    # argmax good (p ~0.42), defect probability ~0.58 split over crack and scratch
    leaning = [0.5, 0.25, 0.25] + [-9.0] * 9
    r = _result([leaning], spec, 0.5)
    assert r.defective and r.patch_class.tolist() == [0]
    assert r.defect_type == "defective"  # two types in that texture: not named
    one_type = ModelSpec.for_classes(
        [
            {"name": "ok", "texture": 0, "defective": False},
            {"name": "dent", "texture": 0, "defective": True, "defect_type": "dent"},
        ],
        ["part"],
    )
    r = _result([[0.1, 0.0], [0.05, 0.0]], one_type, 0.45)
    assert r.defective and r.patch_class.tolist() == [0, 0] and r.defect_type == "dent"
    # a patch whose argmax is defective wins over a higher defect probability of a good argmax
    mixed = [[0.5, 0.25, 0.25] + [-9.0] * 9, [0.0, 0.2, 0.0] + [-1.0] * 9]
    r = _result(mixed, spec, 0.3)
    assert r.defective_patches.tolist() == [0, 1] and r.defect_type == "crack"


def test_frame_defect_type_ties_take_the_lower_patch() -> None:
    spec = _typed_spec()
    patches = np.array([0, 1], np.int64)
    cls = np.array([1, 2], np.int32)  # crack, scratch
    score = np.array([0.7, 0.7], np.float32)
    pdp = np.array([0.8, 0.8], np.float32)
    assert frame_defect_type(spec, patches, cls, score, pdp) == "crack"
    assert frame_defect_type(spec, patches[:0], cls, score, pdp) is None


def test_defect_type_is_in_the_record(tiny: TinyBundle, tmp_path: Path) -> None:
    frame = textured_frame(seed=3, channels=3)
    with Inspector(tiny.model_path, threshold=0.0) as insp:
        result = insp.run(frame)
    record = record_dict(
        result, model=ModelIdentity.of(tiny.model_path), run_id="r", source="t", frame_id=1
    )
    assert record["schema_version"] == RECORD_VERSION == 1  # a new field does not bump it
    assert record["defect_type"] == result.defect_type == "defective"  # DAGM: no named types
    assert InspectionResult.failed("broken").to_dict()["defect_type"] is None


# ---- resize --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("shape", "upscale", "reflect"),
    [
        ((100, 300), (224, 672), (224, 300)),
        ((300, 100), (672, 224), (300, 224)),
        ((200, 200), (224, 224), (224, 224)),
        ((500, 100), (1120, 224), (500, 224)),
        ((223, 1000), (224, 1004), (224, 1000)),  # 1000 * 224 / 223 = 1004.48 -> 1004
        ((2, 3), (224, 336), (224, 224)),  # 3 * 224 / 2 = 336 exactly
        ((3, 2), (336, 224), (224, 224)),
        ((448, 300), (448, 300), (448, 300)),  # large enough: unchanged
    ],
)
def test_resized_shape(
    shape: tuple[int, int], upscale: tuple[int, int], reflect: tuple[int, int]
) -> None:
    assert resized_shape(*shape, 224, "upscale") == upscale
    assert resized_shape(*shape, 224, "reflect") == reflect
    frame = textured_frame(*shape)
    assert fit_to_patch(frame, 224, "upscale").shape == upscale
    assert fit_to_patch(frame, 224, "reflect").shape == reflect


def test_fit_to_patch_contents_and_the_input_kept() -> None:
    frame = textured_frame(100, 150, channels=3)
    before = frame.copy()
    padded = fit_to_patch(frame, 224, "reflect")
    # BORDER_REFLECT_101 is numpy's "reflect" (the edge pixel is not repeated), applied again
    # when the pad is longer than the frame
    want = np.pad(frame, ((0, 124), (0, 74), (0, 0)), mode="reflect")
    np.testing.assert_array_equal(padded, want)
    up = fit_to_patch(frame[:, ::-1], 224, "upscale")  # negative strides are read too
    np.testing.assert_array_equal(
        up, cv2.resize(np.ascontiguousarray(frame[:, ::-1]), (336, 224), cv2.INTER_LINEAR)
    )
    np.testing.assert_array_equal(frame, before)
    big = textured_frame(300, 300)
    assert fit_to_patch(big, 224, "upscale") is big and fit_to_patch(big, 224, "none") is big
    for channels in (1, 4):
        small = textured_frame(50, 60, channels=channels)
        for policy in ("upscale", "reflect"):
            assert fit_to_patch(small, 224, policy).shape[2] == channels
    deep = (textured_frame(50, 60).astype(np.uint16) * 257)[:, :, None]
    out = fit_to_patch(deep, 224, "upscale")
    assert out.dtype == np.uint16 and out.shape == (224, 269, 1) and out.max() > 255


@pytest.mark.parametrize(
    ("args", "error", "text"),
    [
        ((np.zeros((100, 300), np.uint8), 224, "none"), InputError, "frame of 100x300 (HxW)"),
        ((np.zeros((100, 300), np.uint8), 224, "none"), InputError, "the 224x224 patch"),
        ((np.zeros((0, 300), np.uint8), 224, "upscale"), InputError, "is empty"),
        ((np.zeros((10, 30), np.uint8), 224, "stretch"), InputError, "resize policy must be"),
        ((np.zeros((10, 30), np.uint8), 0, "reflect"), InputError, "patch must be >= 1"),
        (([[1, 2]], 224, "reflect"), InputTypeError, "frame must be a numpy array"),
    ],
)
def test_fit_to_patch_errors(args: tuple[Any, ...], error: type[Exception], text: str) -> None:
    with pytest.raises(error) as info:
        fit_to_patch(*args)
    assert text in str(info.value)


@pytest.mark.parametrize("policy", ["upscale", "reflect"])
def test_inspector_resizes_small_frames_like_fit_to_patch(
    tmp_path: Path, policy: str, scenes: list[np.ndarray]
) -> None:
    bundle = write_tiny(tmp_path, "r.onnx", seed=7, resize=policy)
    small = [f[:150, :400] for f in scenes[:3]] + [scenes[3][:200, :100]]
    with Inspector(bundle.model_path) as insp:
        for frame in small:
            before = frame.copy()
            got = insp.run(frame)
            fitted = fit_to_patch(frame, 224, policy)
            want = insp.run(fitted)
            assert insp.inspected_shape(*frame.shape[:2]) == fitted.shape[:2]
            np.testing.assert_array_equal(got.boxes, want.boxes)
            np.testing.assert_array_equal(got.patch_class, want.patch_class)
            np.testing.assert_array_equal(got.patch_defect_prob, want.patch_defect_prob)
            assert (got.label, got.defect_type) == (want.label, want.defect_type)
            h, w = fitted.shape[:2]
            assert (got.boxes[:, 0] + got.boxes[:, 2]).max() == w
            assert (got.boxes[:, 1] + got.boxes[:, 3]).max() == h
            np.testing.assert_array_equal(frame, before)  # the caller's frame is kept
        batch = insp.run_batch(small)
        streamed = list(insp.stream(small))
        for r, s, frame in zip(batch, streamed, small, strict=True):
            want = insp.run(frame)
            assert s.ok and r.label == s.label == want.label
            np.testing.assert_array_equal(r.patch_defect_prob, want.patch_defect_prob)
            np.testing.assert_array_equal(s.boxes, want.boxes)


def test_policy_none_keeps_the_small_frame_error(tiny: TinyBundle) -> None:
    with Inspector(tiny.model_path) as insp, pytest.raises(InputError) as info:
        insp.run(np.zeros((100, 300, 3), np.uint8))
    assert (
        str(info.value)
        == "frame of 100x300 (HxW) is smaller than the 224x224 patch (never resized)"
    )


@pytest.mark.usefixtures("need_student_runner")
def test_student_runner_resizes_as_the_backend(tmp_path: Path) -> None:
    model = tmp_path / "student.onnx"
    spec = student_onnx(model, seed=5)
    doc = spec.to_dict() | {"resize": "upscale"}
    ModelSpec.from_dict(doc).save_for_model(model)
    with Inspector(model) as fast, Inspector(model, backend="onnxruntime") as ref:
        assert fast.runner == "student"
        for frame in student_frames((120, 500), 2, seed=4):
            got, want = fast.run(frame), ref.run(frame)
            assert got.boxes.shape == want.boxes.shape and got.label == want.label
            np.testing.assert_array_equal(got.boxes, want.boxes)
            np.testing.assert_allclose(got.patch_defect_prob, want.patch_defect_prob, atol=1e-5)


# ---- the CLI -------------------------------------------------------------------------------------
def test_cli_threshold_option(
    tiny_argmax: TinyBundle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for s in range(3):
        cv2.imwrite(str(folder / f"{s}.png"), textured_frame(seed=s, channels=3))
    model = _with_threshold_sidecar(tiny_argmax, tmp_path, 0.999)

    def records(*extra: str) -> list[dict[str, Any]]:
        assert main(["inspect", str(folder), "--model", str(model), "--json", *extra]) == 0
        return [json.loads(line) for line in capsys.readouterr().out.splitlines()][:-1]

    sidecar = records()  # 0.999: nothing reaches it
    assert not any(r["defective"] for r in sidecar)
    assert all(r["defect_type"] is None for r in sidecar)
    low = records("--threshold", "0")
    assert all(r["defective"] and r["defect_type"] == "defective" for r in low)
    with Inspector(model, threshold="argmax") as insp:
        want = [insp.run(str(folder / f"{s}.png")).defective for s in range(3)]
    assert [r["defective"] for r in records("--threshold", "argmax")] == want
    assert main(["inspect", str(folder), "--model", str(model), "--threshold", "high"]) == 2
    assert "must be a number in [0, 1] or 'argmax', got 'high'" in capsys.readouterr().err
