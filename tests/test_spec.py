"""ModelSpec: the sidecar schema, its validation messages, files and migrations."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pyinspect import spec as spec_mod
from pyinspect.errors import PyInspectError, SpecError
from pyinspect.spec import ModelSpec, SidecarExistsError


@pytest.fixture
def doc() -> dict[str, Any]:
    return ModelSpec.for_dagm(provenance={"preset": "smoke", "seed": 3}).to_dict()


def _load(doc: dict[str, Any]) -> ModelSpec:
    return ModelSpec.from_dict(doc, source="student.onnx.json")


# ---- the happy path -------------------------------------------------------------------------
def test_dagm_layout_columns_textures_and_labels() -> None:
    s = ModelSpec.for_dagm()
    assert s.num_classes == 12 and len(s.textures) == 6
    assert [c.name for c in s.classes[:3]] == ["Class1", "Class1_def", "Class2"]
    np.testing.assert_array_equal(s.class_texture, np.repeat(np.arange(6), 2))
    np.testing.assert_array_equal(s.class_defective, np.tile([False, True], 6))
    assert s.class_texture.dtype == np.int32 and s.class_defective.dtype == np.bool_
    assert s.label(3, True) == "Texture 4 defective"
    assert s.label(0, False) == "Texture 1 good"
    assert s.grid_rows_cols == (None, None)
    with pytest.raises(IndexError, match=r"texture id 6 out of range \[0, 6\)"):
        s.label(6, False)


def test_derived_arrays_are_cached_and_read_only() -> None:
    s = ModelSpec.for_dagm()
    assert s.class_texture is s.class_texture
    with pytest.raises(ValueError, match="read-only"):
        s.class_texture[0] = 5
    with pytest.raises(ValueError, match="read-only"):
        s.class_defective[0] = True


def test_save_load_round_trip_keeps_everything(tmp_path: Path) -> None:
    s = ModelSpec.for_dagm(
        channels=1,
        dtype="float16",
        grid=spec_mod.GridSpec(policy="fixed", rows=3, cols=3),
        provenance={"created": "2025-01-01T00:00:00Z", "notes": "γ = 0.5 ✓", "extra_key": [1, 2]},
        engine={
            "backend": "tensorrt",
            "precision": "fp16",
            "profile": {"min": 1, "opt": 9, "max": 32},
        },
    )
    path = s.save(tmp_path / "m.plan.json")
    back = ModelSpec.load(path)
    assert back.to_dict() == s.to_dict()
    assert back.provenance.notes == "γ = 0.5 ✓"
    assert back.provenance.model_extra == {"extra_key": [1, 2]}
    assert back.grid_rows_cols == (3, 3)
    assert back.engine is not None and back.engine.profile is not None
    assert back.engine.profile.opt == 9
    text = path.read_text(encoding="utf-8")
    assert "γ" in text  # written as UTF-8, not \u escapes
    assert "tensorrt_version" not in text  # unset optional fields are left out


def test_for_model_finds_the_sidecar(tmp_path: Path) -> None:
    model = tmp_path / "student.onnx"
    model.write_bytes(b"x")
    ModelSpec.for_dagm().save_for_model(model)
    assert (tmp_path / "student.onnx.json").is_file()
    assert ModelSpec.for_model(model).num_classes == 12


def test_missing_sidecar_names_expected_path_and_fix(tmp_path: Path) -> None:
    model = tmp_path / "student.onnx"
    with pytest.raises(SpecError) as info:
        ModelSpec.for_model(model)
    text = str(info.value)
    assert str(tmp_path / "student.onnx.json") in text
    assert "python -m train export" in text
    assert isinstance(info.value, ValueError) and isinstance(info.value, PyInspectError)


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx.json"
    path.write_bytes(b"\xef\xbb\xbf" + ModelSpec.for_dagm().to_json().encode())
    assert ModelSpec.load(path).num_classes == 12


# ---- unreadable files -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "file is empty; expected a JSON object"),
        (b"  \n", "file is empty"),
        (b'{"schema_version": 1,\n "classes": [', "invalid JSON at line 2 column 14"),
        (b'{"schema_version": 1,\n "classes": [', "(the file looks truncated)"),
        (b'{"schema_version": 1 "x": 2}', "invalid JSON at line 1 column 22: Expecting ','"),
        (b'{"notes": "caf\xe9"}', "not UTF-8 text (byte 0xe9 at offset 14)"),
        (b"[1, 2]", "must be a JSON object, got list"),
        (b'{"classes": []}', "schema_version: required field is missing"),
    ],
)
def test_bad_file_contents(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "student.onnx.json"
    path.write_bytes(content)
    with pytest.raises(SpecError) as info:
        ModelSpec.load(path)
    assert str(info.value).startswith(f"{path}: ")
    assert expected in str(info.value)


def test_truncated_real_sidecar_is_reported_as_truncated(tmp_path: Path) -> None:
    path = tmp_path / "student.onnx.json"
    text = ModelSpec.for_dagm().to_json()
    path.write_text(text[: len(text) // 2], encoding="utf-8")
    with pytest.raises(SpecError, match=r"invalid JSON at line \d+ column \d+: .*truncated"):
        ModelSpec.load(path)


def test_unreadable_path_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read sidecar"):
        ModelSpec.load(tmp_path)  # a directory


# ---- field validation: each bad field is named -----------------------------------------------
Mutation = Callable[[dict[str, Any]], None]


#: A BAD_FIELDS value: the field is removed instead.
DELETE = object()


def _mutation(path: str, value: Any) -> Mutation:
    """Set the field at dotted ``path`` (digits index lists) to ``value``, or remove it
    (``DELETE``)."""

    def apply(d: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = d
        for p in parents:
            target = target[int(p)] if p.isdigit() else target[p]
        key = int(last) if last.isdigit() else last
        if value is DELETE:
            del target[key]
        else:
            target[key] = value

    return apply


#: (test id, the field's dotted path, the value put there or DELETE, what the error must say)
BAD_FIELDS: list[tuple[str, str, Any, str]] = [
    ("channels", "input.channels", 2, "input.channels: must be 1 or 3, got 2"),
    ("dtype", "input.dtype", "int8", "input.dtype: must be 'float32' or 'float16', got \"int8\""),
    ("layout", "input.layout", "NHWC", "input.layout: must be 'NCHW', got \"NHWC\""),
    ("shape rank", "input.shape", [3, 224, 224], "input.shape: must have at least 4 items"),
    (
        "shape",
        "input.shape",
        [-1, 3, 200, 200],
        "input.shape: must end with patch × patch = 224×224, got [-1, 3, 200, 200]",
    ),
    (
        "shape channels",
        "input.shape",
        [-1, 1, 224, 224],
        "input.shape[1]: must equal input.channels = 3, got 1",
    ),
    (
        "batch",
        "input.shape",
        [0, 3, 224, 224],
        "input.shape[0]: batch must be -1 (dynamic) or >= 1, got 0",
    ),
    ("color", "input.color", "gray", "input.color: must be 'rgb' for 3 channel(s), got 'gray'"),
    (
        "mean length",
        "normalization.mean",
        [0.5, 0.5],
        "normalization.mean: needs one value per input channel (3), got 2",
    ),
    (
        "std length",
        "normalization.std",
        [0.2],
        "normalization.std: needs one value per input channel (3), got 1",
    ),
    (
        "std zero",
        "normalization.std",
        [0.2, 0.0, 0.2],
        "normalization.std: must be > 0, got [0.2, 0.0, 0.2]",
    ),
    (
        "mean type",
        "normalization.mean",
        [0.5, "a", 0.5],
        'normalization.mean[1]: must be a valid number, got "a"',
    ),
    ("patch", "patch", 0, "patch: must be greater than or equal to 1, got 0"),
    ("patch str", "patch", "224", 'patch: must be a valid integer, got "224"'),
    (
        "class texture",
        "classes.3.texture",
        9,
        "classes[3].texture: must be < len(textures) = 6, got 9",
    ),
    (
        "class negative",
        "classes.0.texture",
        -1,
        "classes[0].texture: must be greater than or equal to 0, got -1",
    ),
    (
        "class defective",
        "classes.1.defective",
        "yes",
        'classes[1].defective: must be a valid boolean, got "yes"',
    ),
    ("class missing", "classes", DELETE, "classes: required field is missing"),
    (
        "duplicate names",
        "classes.2.name",
        "Class1",
        "classes: class names must be unique, repeated: ['Class1']",
    ),
    (
        "textures unused",
        "textures",
        [f"T{i}" for i in range(7)],
        "textures: texture ids [6] have no class in classes",
    ),
    ("output missing", "output", DELETE, "output: required field is missing"),
    (
        "output kind",
        "output.kind",
        "softmax",
        "output.kind: must be 'logits' or 'probabilities', got \"softmax\"",
    ),
    ("unknown field", "inputs", {}, "inputs: unknown field. Did you mean 'input'?"),
    ("unknown nested", "grid.rowz", 3, "grid.rowz: unknown field. Did you mean 'rows'?"),
    ("fixed grid", "grid.policy", "fixed", "grid: policy 'fixed' needs both rows and cols"),
    (
        "cover grid",
        "grid.rows",
        2,
        "grid: policy 'cover' chooses rows and cols itself; set them to null",
    ),
    (
        "provenance seed",
        "provenance.seed",
        "7",
        'provenance.seed: must be a valid integer, got "7"',
    ),
    (
        "engine profile",
        "engine",
        {"backend": "tensorrt", "profile": {"min": 1, "opt": "x", "max": 2}},
        'engine.profile.opt: must be a valid integer or a valid list, got "x"',
    ),
    (
        "engine backend",
        "engine",
        {"precision": "fp16"},
        "engine.backend: required field is missing",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [(_mutation(path, value), expected) for _, path, value, expected in BAD_FIELDS],
    ids=[b[0] for b in BAD_FIELDS],
)
def test_each_bad_field_is_named(doc: dict[str, Any], mutate: Mutation, expected: str) -> None:
    mutate(doc)
    with pytest.raises(SpecError) as info:
        _load(doc)
    assert str(info.value).startswith("student.onnx.json: ")
    assert expected in str(info.value)
    field = expected.split(":")[0]
    assert field in [loc for loc, _ in info.value.issues]  # type: ignore[attr-defined]


def test_all_cross_field_problems_are_reported_together(doc: dict[str, Any]) -> None:
    doc["input"]["channels"] = 1
    with pytest.raises(SpecError) as info:
        _load(doc)
    fields = [loc for loc, _ in info.value.issues]  # type: ignore[attr-defined]
    assert fields == ["input.shape[1]", "input.color", "normalization.mean", "normalization.std"]


def test_gray_spec_is_valid(doc: dict[str, Any]) -> None:
    doc["input"].update(channels=1, color="gray", shape=[-1, 1, 224, 224])
    doc["normalization"] = {"mean": [0.45], "std": [0.22]}
    assert _load(doc).channels == 1


# ---- schema versions -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("version", "expected"),
    [
        (3, "schema_version: 3 is newer than this pyinspect reads (2); upgrade pyinspect"),
        (
            0,
            "schema_version: 0 is not supported (this pyinspect reads 2, and upgrades from [1])",
        ),
        ("1", 'schema_version: must be an integer, got "1"'),
        (True, "schema_version: must be an integer, got true"),
    ],
)
def test_schema_version_problems(doc: dict[str, Any], version: Any, expected: str) -> None:
    doc["schema_version"] = version
    with pytest.raises(SpecError) as info:
        _load(doc)
    assert expected in str(info.value)


def test_migration_hook_upgrades_an_older_sidecar(
    doc: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    old = copy.deepcopy(doc)
    old["schema_version"] = 0
    old["output_name"] = old.pop("output")["name"]  # pretend v0 had a flat field

    def v0_to_v1(d: dict[str, Any]) -> dict[str, Any]:
        d["output"] = {"name": d.pop("output_name"), "kind": "logits"}
        d["schema_version"] = 1
        return d

    monkeypatch.setitem(spec_mod.MIGRATIONS, 0, v0_to_v1)
    path = tmp_path / "old.onnx.json"
    path.write_text(json.dumps(old), encoding="utf-8")
    migrated = ModelSpec.load(path)
    # v0 -> v1 (the hook) -> v2 (MIGRATIONS[1]): the steps chain
    assert migrated.schema_version == 2 and migrated.output.name == "logits"
    assert json.loads(path.read_text())["schema_version"] == 0  # loading never rewrites


def test_broken_migration_is_a_bug_not_a_spec_error(
    doc: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    doc["schema_version"] = 0
    monkeypatch.setitem(
        spec_mod.MIGRATIONS, 0, lambda d: {k: v for k, v in d.items() if k != "schema_version"}
    )
    with pytest.raises(RuntimeError, match="did not set an integer schema_version"):
        _load(doc)


# ---- saving ----------------------------------------------------------------------------------
def test_save_refuses_to_overwrite_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx.json"
    path.write_text("original", encoding="utf-8")
    with pytest.raises(SidecarExistsError, match="already exists; pass overwrite=True"):
        ModelSpec.for_dagm().save(path, overwrite=False)
    assert path.read_text(encoding="utf-8") == "original"
    assert os.listdir(tmp_path) == ["m.onnx.json"]  # no temp file left behind


def test_save_overwrites_atomically_by_default(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "m.onnx.json"
    ModelSpec.for_dagm().save(path)
    ModelSpec.for_dagm(channels=1).save(path)
    assert ModelSpec.load(path).channels == 1
    assert os.listdir(path.parent) == ["m.onnx.json"]


def test_save_new_file_with_overwrite_false(tmp_path: Path) -> None:
    path = ModelSpec.for_dagm().save(tmp_path / "m.onnx.json", overwrite=False)
    assert ModelSpec.load(path).num_classes == 12
    assert os.listdir(tmp_path) == ["m.onnx.json"]


def test_spec_is_immutable() -> None:
    s = ModelSpec.for_dagm()
    with pytest.raises(ValueError, match="frozen"):
        s.patch = 100  # type: ignore[misc]
