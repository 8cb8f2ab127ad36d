"""``python -m train run --data``: the smoke preset end to end on a small generic-layout set."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("torch", reason="train run needs torch (the train extra)")

from pyinspect import Inspector
from pyinspect.dataset import DatasetError
from pyinspect.spec import ModelSpec
from train.run import DATA_PRESETS, train_on_data


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    noise = rng.normal(128, 20, size=(h, w)).astype(np.float32)
    return np.clip(cv2.GaussianBlur(noise, (0, 0), 2.0), 0, 255).astype(np.uint8)


def build_set(root: Path, *, masks: bool = True) -> Path:
    """One product: 8 good, 4 'spot' (masks) and 4 'scratch' (VOC boxes) images, mixed sizes,
    one narrower than the 224 patch."""
    rng = np.random.default_rng(0)
    sizes = [(300, 260), (256, 256), (240, 200), (320, 300)]
    for folder in ("good", "spot", "scratch"):
        (root / folder).mkdir(parents=True)
    (root / "masks" / "spot").mkdir(parents=True)
    (root / "boxes" / "scratch").mkdir(parents=True)
    for i in range(8):
        h, w = sizes[i % 4]
        cv2.imwrite(str(root / "good" / f"g{i}.png"), _texture(rng, h, w))
    for kind in ("spot", "scratch"):
        for i in range(4):
            h, w = sizes[i]
            img = _texture(rng, h, w)
            region = np.zeros((h, w), np.uint8)
            cv2.circle(region, (w // 2, h // 2), 20, 255, -1)
            img[region > 0] = 250 if kind == "spot" else 10
            cv2.imwrite(str(root / kind / f"{kind}{i}.png"), img)
            if kind == "spot" and masks:
                cv2.imwrite(str(root / "masks" / "spot" / f"spot{i}.png"), region)
            elif kind == "scratch":
                xml = (
                    f"<annotation><object><bndbox><xmin>{w // 2 - 19}</xmin>"
                    f"<ymin>{h // 2 - 19}</ymin><xmax>{w // 2 + 20}</xmax>"
                    f"<ymax>{h // 2 + 20}</ymax></bndbox></object></annotation>"
                )
                (root / "boxes" / "scratch" / f"scratch{i}.xml").write_text(xml)
    return root


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    base = tmp_path_factory.mktemp("run")
    data = build_set(base / "parts")
    out = base / "run"
    state = train_on_data(data, out, preset=DATA_PRESETS["smoke"], defect_types="keep", seed=3)
    return data, out, state


def test_a_run_writes_model_split_and_report(smoke_run: tuple[Path, Path, dict]) -> None:
    _, out, state = smoke_run
    spec = ModelSpec.for_model(out / "student.onnx")
    assert [c.name for c in spec.classes] == ["good", "scratch", "spot"]
    assert [c.defect_type for c in spec.classes] == [None, "scratch", "spot"]
    assert spec.resize == "upscale"  # one image is 200 px wide
    split = json.loads((out / "split.json").read_text())
    keys = split["train"] + split["val"] + split["test"]
    assert len(keys) == len(set(keys)) == 16
    for kind in ("good/", "spot/", "scratch/"):  # stratified: every class in every part
        assert all(any(k.startswith(kind) for k in split[p]) for p in ("train", "val", "test"))
    report = (out / "REPORT.md").read_text()
    assert "Confusion matrix" in report and "| spot |" in report
    assert state["test"]["overall"]["images"] == len(split["test"])
    assert sum(map(sum, state["test"]["confusion"]["matrix"])) == len(split["test"])
    counts = state["data"]["patches"]["per_class"]
    assert counts["good"]["patches_each"] < counts["spot"]["patches_each"]  # rare oversampled
    assert len(set(state["test"]["scores"])) > 1  # the smoke model's output depends on its input


def test_a_run_records_its_validation_images_for_the_precision_guard(
    smoke_run: tuple[Path, Path, dict],
) -> None:
    from pyinspect.precision_guard import guard_frames, guard_path, run_guard

    data, out, _ = smoke_run
    model = out / "student.onnx"
    doc = json.loads(guard_path(model).read_text())
    split = json.loads((out / "split.json").read_text())
    assert doc["split"] == "val"
    assert [(out / p).resolve() for p in doc["images"]] == [
        (data / k).resolve() for k in split["val"]
    ]
    assert all(not Path(p).is_absolute() for p in doc["images"])  # beside the data: relative
    assert doc["orientations"] == list(DATA_PRESETS["smoke"].orientations)
    frames = guard_frames(model)
    assert frames.count == len(split["val"]) * len(doc["orientations"])

    def backend() -> Inspector:
        return Inspector(str(model), runner="backend", threads=1)

    report = run_guard(model, "f32-again", backend, backend)  # the same path: nothing differs
    assert report.frames == frames.count and report.accepted, report.summary()


def test_the_model_runs_on_frames_smaller_than_the_patch(smoke_run: tuple) -> None:
    data, out, _ = smoke_run
    with Inspector(str(out / "student.onnx")) as insp:
        result = insp.run(str(data / "good" / "g2.png"))  # 200 px wide: upscaled
    assert result.ok and result.texture == 0


def test_a_finished_run_resumes_without_training_again(smoke_run: tuple) -> None:
    data, out, _ = smoke_run
    teacher = out / "checkpoints" / "teacher.pt"
    before = teacher.stat().st_mtime_ns
    train_on_data(data, out, preset=DATA_PRESETS["smoke"], defect_types="keep", seed=3)
    assert teacher.stat().st_mtime_ns == before


@pytest.mark.hostile("training data")
def test_out_inside_the_data_or_a_foreign_folder_is_refused(
    smoke_run: tuple, tmp_path: Path
) -> None:
    data, _, _ = smoke_run
    with pytest.raises(DatasetError, match="inside the data"):
        train_on_data(data, data / "run", preset=DATA_PRESETS["smoke"])
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(DatasetError, match="not a run folder"):
        train_on_data(data, foreign, preset=DATA_PRESETS["smoke"])
    assert (foreign / "notes.txt").read_text() == "keep me"


@pytest.mark.hostile("training data")
def test_a_defective_image_without_location_is_named(tmp_path: Path) -> None:
    data = build_set(tmp_path / "parts", masks=False)
    with pytest.raises(DatasetError, match=r"no mask or boxes.*--no-locations"):
        train_on_data(data, tmp_path / "run", preset=DATA_PRESETS["smoke"], defect_types="keep")


@pytest.mark.hostile("training data")
def test_a_run_folder_of_other_settings_is_refused(smoke_run: tuple) -> None:
    data, out, _ = smoke_run
    with pytest.raises(DatasetError, match="made with"):
        train_on_data(data, out, preset=DATA_PRESETS["smoke"], defect_types="keep", seed=4)


def _colourise(root: Path) -> None:
    """Turn every image of a ``build_set`` tree into BGR with a different tint per channel."""
    for folder in ("good", "spot", "scratch"):
        for p in sorted((root / folder).glob("*.png")):
            g = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
            bgr = np.dstack([g // 2, g, 255 - g // 3]).astype(np.uint8)
            cv2.imwrite(str(p), bgr)


@pytest.fixture(scope="module")
def colour_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = build_set(tmp_path_factory.mktemp("colour") / "parts")
    _colourise(root)
    return root


@pytest.mark.parametrize(("gray", "channels"), [(False, 3), (True, 1)])
def test_colour_images_train_a_three_channel_student_unless_gray(
    colour_set: Path, tmp_path: Path, gray: bool, channels: int
) -> None:
    out = tmp_path / "run"
    state = train_on_data(colour_set, out, preset=DATA_PRESETS["smoke"], seed=1, gray=gray)
    assert state["data"]["channels"] == channels
    spec = ModelSpec.for_model(out / "student.onnx")
    assert spec.input.channels == channels
    with Inspector(str(out / "student.onnx")) as insp:
        result = insp.run(str(colour_set / "spot" / "spot0.png"))
    assert result.ok, result.error
    assert result.texture == 0


def test_good_gets_as_many_patches_as_all_defect_types_of_its_group() -> None:
    from types import SimpleNamespace

    from pyinspect.dataset import ClassEntry
    from train.run import class_targets

    table = SimpleNamespace(
        classes=[
            ClassEntry("a/good", 0, False, None),
            ClassEntry("a/crack", 0, True, "crack"),
            ClassEntry("a/hole", 0, True, "hole"),
            ClassEntry("a/dent", 0, True, "dent"),
            ClassEntry("b/good", 1, False, None),
            ClassEntry("b/defective", 1, True, "defective"),
        ]
    )
    assert class_targets(table, 10) == [30, 10, 10, 10, 10, 10]  # type: ignore[arg-type]
