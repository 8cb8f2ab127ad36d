"""``python -m train data check ROOT``: the table (per group and class: images, sizes, bit
depths, masks / boxes found and missing), split feasibility, every problem with its file, exit
0 / 1 / 2, the tree's bytes unchanged; both DAGM layouts too. And ``train run --out`` at a
folder that is not a run's, or inside the data: a named error, exit 2, nothing written."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from genericset import GenericSet, snapshot

from train.data_check import check_generic
from train.data_cli import main as data_main


def check(capsys: pytest.CaptureFixture[str], root: Path, *args: str) -> tuple[int, str, str]:
    """Exit status, stdout, stderr of ``data check``; the tree is byte-identical after."""
    before = snapshot(root) if root.is_dir() else None
    status = data_main(["check", str(root), *args])
    out, err = capsys.readouterr()
    if before is not None:
        assert snapshot(root) == before
    return status, out, err


def folder_row(out: str, group: str, folder: str) -> list[str]:
    """The folder table's cells after the class name: images, W×H, bit depth (two cells),
    masks, boxes, none."""
    (line,) = re.findall(rf"^{re.escape(group)}\s+{re.escape(folder)}\s.*$", out, re.M)
    return line.split()[-7:]


def split_row(out: str, class_name: str) -> list[str]:
    """Train, val, test of one class in the split table."""
    (line,) = re.findall(rf"^  {re.escape(class_name)}\s+\d+\s+\d+\s+\d+$", out, re.M)
    return line.split()[-3:]


def copy_of(gs: GenericSet, tmp_path: Path) -> Path:
    return Path(shutil.copytree(gs.root, tmp_path / "parts"))


# ---- a usable set: exit 0 and the table -------------------------------------------------------
def test_grouped_set_table_and_split(generic_set: GenericSet, capsys) -> None:
    status, out, err = check(capsys, generic_set.root, "--defect-types", "keep")
    assert status == 0 and err == "" and out.rstrip().endswith("ok")
    assert "generic layout, 2 group(s), defect types keep: 6 classes, 32 images" in out
    assert folder_row(out, "plate", "good") == ["8", "200–512×260–512", "8", "gray", "-", "-", "-"]
    assert folder_row(out, "weave", "stain") == ["4", "300–512×260–512", "8", "gray", "4", "0", "0"]
    scratch = folder_row(out, "weave", "scratch")
    assert scratch[0] == "4" and scratch[-3:] == ["0", "4", "0"]
    assert "plate  stain    plate stain" in out  # the class each folder feeds
    assert "split (seed 0; val 0.1, test 0.2): feasible" in out
    assert split_row(out, "plate good") == ["5", "1", "2"]  # 8 images
    assert split_row(out, "plate stain") == ["2", "1", "1"]  # 4 images
    assert "2 image(s) smaller than the 224 px patch" in out


def test_merged_classes_and_seed(generic_set: GenericSet, capsys) -> None:
    status, out, _ = check(capsys, generic_set.root, "--seed", "7")
    assert status == 0 and "defect types merge: 4 classes" in out
    assert "plate  stain    plate defective" in out
    assert split_row(out, "plate defective") == ["5", "1", "2"]  # 8 = 4 stain + 4 scratch
    assert "split (seed 7;" in out


def test_single_product_and_16_bit_sets(
    generic_set_single: GenericSet, generic_set_16bit: GenericSet, capsys
) -> None:
    status, out, _ = check(capsys, generic_set_single.root)
    assert status == 0 and "one product (no group level), defect types merge: 2 classes" in out
    assert folder_row(out, "synthetic-parts", "good")[0] == "8"
    assert split_row(out, "defective") == ["5", "1", "2"]
    status, out, _ = check(capsys, generic_set_16bit.root)
    assert status == 0
    assert folder_row(out, "plate", "stain")[2:4] == ["16", "gray"]
    report = check_generic(generic_set_16bit.root)
    assert {k for f in report.folders for k in f.depths} == {"16 gray"}


def test_defective_images_without_location_are_a_note(generic_set: GenericSet, tmp_path, capsys):
    root = copy_of(generic_set, tmp_path)
    shutil.rmtree(root / "plate" / "masks")
    status, out, _ = check(capsys, root, "--verbose", "--defect-types", "keep")
    assert status == 0
    assert folder_row(out, "plate", "stain")[-3:] == ["0", "0", "4"]  # masks boxes none
    assert "note: 4 defective image(s) have no mask or boxes" in out and "--no-locations" in out
    assert str(root / "plate" / "stain" / "s03.png") in out  # --verbose lists them


# ---- problems: exit 1, each with its file ----------------------------------------------------
def _empty_class(root: Path) -> tuple[str, ...]:
    (root / "plate" / "dent").mkdir()
    return ("plate/dent: empty class folder",)


def _mask_size(root: Path) -> tuple[str, ...]:
    cv2.imwrite(str(root / "plate/masks/stain/s00.png"), np.full((10, 20), 255, np.uint8))
    return ("plate/masks/stain/s00.png: mask is 20×10, its image s00.png is 300×260",)


def _empty_mask(root: Path) -> tuple[str, ...]:
    path = root / "weave/masks/stain/s02.png"
    cv2.imwrite(str(path), np.zeros_like(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)))
    return ("weave/masks/stain/s02.png: the defect region is empty",)


def _empty_boxes(root: Path) -> tuple[str, ...]:
    (root / "weave/boxes/scratch/c03.xml").write_text("<annotation></annotation>")
    return ("weave/boxes/scratch/c03.xml: no <object> boxes",)


def _duplicate_stem(root: Path) -> tuple[str, ...]:
    shutil.copy(root / "plate/stain/s01.png", root / "plate/stain/s01.tif")
    return ("plate/stain/s01.tif: duplicate stem 's01' in one class (also s01.png)",)


def _unreadable(root: Path) -> tuple[str, ...]:
    (root / "weave/good/broken.png").write_bytes(b"\x89PNG truncated")
    return ("weave/good/broken.png: cannot be read as an image",)


def _too_few(root: Path) -> tuple[str, ...]:
    for stem in ("c00", "c01"):
        (root / f"plate/scratch/{stem}.png").unlink()
        (root / f"plate/boxes/scratch/{stem}.xml").unlink()
    return ("too few images for a train/val/test split (3 per class): 'plate scratch' has 2",)


def _bit_depth_range(root: Path) -> tuple[str, ...]:
    doc = json.loads((root / "dataset.json").read_text())
    (root / "dataset.json").write_text(json.dumps({**doc, "bit_depth": 12}))
    return ("pixel value", "exceeds the 12-bit range that dataset.json declares (max 4095)")


def _mixed_depths(root: Path) -> tuple[str, ...]:
    img = cv2.imread(str(root / "plate/good/g01.png"), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(root / "plate/good/g01.png"), (img // 257).astype(np.uint8))
    return ("mixes 8-bit (1, first", "and 16-bit (31,", "a model takes one bit depth")


def _orphan_boxes(root: Path) -> tuple[str, ...]:
    shutil.copy(root / "plate/boxes/scratch/c00.xml", root / "plate/boxes/scratch/c09.xml")
    return ("plate/boxes/scratch/c09.xml: boxes file without an image of that stem",)


@pytest.mark.hostile("training data")
@pytest.mark.parametrize(
    ("breaks", "sixteen"),
    [
        (_empty_class, False),
        (_mask_size, False),
        (_empty_mask, False),
        (_empty_boxes, False),
        (_duplicate_stem, False),
        (_unreadable, False),
        (_too_few, False),
        (_orphan_boxes, False),
        (_bit_depth_range, True),
        (_mixed_depths, True),
    ],
)
def test_each_problem_is_listed_with_its_file_and_exits_1(
    generic_set: GenericSet,
    generic_set_16bit: GenericSet,
    tmp_path: Path,
    capsys,
    breaks: Callable[[Path], tuple[str, ...]],
    sixteen: bool,
) -> None:
    root = copy_of(generic_set_16bit if sixteen else generic_set, tmp_path)
    named = breaks(root)
    status, out, err = check(capsys, root, "--defect-types", "keep")
    assert status == 1
    lines = err.strip().splitlines()
    assert lines[-1].endswith("problem(s)") and not out.rstrip().endswith("ok")
    hits = [ln for ln in lines if all(n in ln for n in named)]
    assert hits, err
    assert hits[0].startswith(str(root))  # the problem's file (or the root) comes first


@pytest.mark.hostile("training data")
def test_too_few_images_makes_the_split_infeasible(generic_set: GenericSet, tmp_path, capsys):
    root = copy_of(generic_set, tmp_path)
    _too_few(root)
    status, out, _ = check(capsys, root, "--defect-types", "keep")
    assert status == 1 and "split (seed 0; val 0.1, test 0.2): not feasible" in out
    status, out, _ = check(capsys, root)  # merged: plate defective has 2 + 4
    assert status == 0 and "feasible" in out


@pytest.mark.hostile("training data")
def test_skipped_files_are_counted_and_listed_with_verbose(
    generic_set: GenericSet, tmp_path: Path, capsys
) -> None:
    root = copy_of(generic_set, tmp_path)
    (root / "plate/good/readme.txt").write_text("camera 2")
    (root / "plate/good/Thumbs.db").write_bytes(b"\0")
    (root / "weave/stain/rejected").mkdir()
    status, out, err = check(capsys, root)
    assert status == 0 and err == ""
    assert (
        "skipped 3 file(s): 1 folders, 1 not images, 1 system files (--verbose lists them)" in out
    )
    assert "readme.txt" not in out
    status, out, _ = check(capsys, root, "--verbose")
    assert status == 0
    for name in ("plate/good/readme.txt", "plate/good/Thumbs.db", "weave/stain/rejected"):
        assert str(root / name) in out


@pytest.mark.hostile("training data")
@pytest.mark.parametrize(
    ("doc", "named"),
    [
        ({"groups": ["plate", "tiles"]}, "groups ['plate', 'tiles'] contradict the folders"),
        ({"defect_types": {"plate": ["crack"], "weave": []}}, "defect_types of 'plate'"),
        ({"bit_depth": 9}, "bit_depth: expected 8, 10, 12 or 16"),
    ],
)
def test_a_contradicting_dataset_json_is_one_named_line(
    generic_set: GenericSet, tmp_path: Path, capsys, doc: dict, named: str
) -> None:
    root = copy_of(generic_set, tmp_path)
    (root / "dataset.json").write_text(json.dumps(doc))
    status, out, err = check(capsys, root)
    assert status == 1 and out == ""
    (line,) = err.strip().splitlines()
    assert line.startswith(f"error: {root / 'dataset.json'}: ") and named in line


@pytest.mark.hostile("cli")
@pytest.mark.parametrize("what", ["missing", "file", "bad option", "bad seed"])
def test_usage_errors_exit_2(generic_set: GenericSet, tmp_path: Path, capsys, what: str) -> None:
    root, args = generic_set.root, []
    if what == "missing":
        root = tmp_path / "nope"
    elif what == "file":
        root = tmp_path / "a.png"
        root.write_bytes(b"x")
    elif what == "bad option":
        args = ["--defect-types", "split"]
    else:
        args = ["--seed", "-1"]
    status, out, err = check(capsys, root, *args)
    assert status == 2 and out == ""
    named = {
        "missing": "no such folder",
        "file": "not a folder",
        "bad option": "--defect-types",
        "bad seed": "--seed",
    }
    assert named[what] in err


@pytest.mark.hostile("training data")
def test_a_folder_of_neither_layout_is_named(tmp_path: Path, capsys) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.png").write_bytes(b"x")
    status, _, err = check(capsys, tmp_path)
    assert status == 1 and "neither the generic layout" in err and "DAGM" in err


# ---- DAGM layouts ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dagm_sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from train.synth import synthesize

    base = tmp_path_factory.mktemp("dagm")
    for layout in ("dev", "10class"):
        synthesize(base / layout, classes=2, good=2, defective=2, layout=layout, workers=1)
    return {"dev": base / "dev", "10class": base / "10class"}


@pytest.mark.parametrize("layout", ["dev", "10class"])
def test_both_dagm_layouts_are_checked(dagm_sets: dict[str, Path], capsys, layout: str) -> None:
    status, out, err = check(capsys, dagm_sets[layout], "--deep")
    assert status == 0 and err == "" and out.rstrip().endswith("ok")
    assert f"{dagm_sets[layout]}: 8 images" in out
    split = "-" if layout == "dev" else "train"
    (line,) = re.findall(rf"^Class2\s+{split}\s+\d+\s+\d+$", out, re.M)
    assert line.split()[-2:] == (["2", "2"] if layout == "dev" else ["1", "1"])


@pytest.mark.hostile("training data")
def test_a_dagm_image_of_the_wrong_size_is_named(
    dagm_sets: dict[str, Path], tmp_path: Path, capsys
) -> None:
    root = Path(shutil.copytree(dagm_sets["dev"], tmp_path / "dev"))
    cv2.imwrite(str(root / "Class1" / "1.png"), np.zeros((100, 120), np.uint8))
    status, _, err = check(capsys, root)
    assert status == 1
    assert f"{root / 'Class1' / '1.png'}: 120×100, 8-bit" in err


# ---- train run --out -----------------------------------------------------------------------------
@pytest.mark.hostile("training data")
@pytest.mark.parametrize(
    "where", ["inside the data", "the data itself", "a foreign folder", "a file"]
)
def test_run_out_that_is_not_a_run_folder_is_refused_and_nothing_written(
    generic_set: GenericSet, tmp_path: Path, capsys, where: str
) -> None:
    pytest.importorskip("torch", reason="train run needs torch (the train extra)")
    from train.run import main as run_main

    data = copy_of(generic_set, tmp_path)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    (mine / "a.bin").write_bytes(b"\0\1")
    out = {
        "inside the data": data / "plate" / "run",
        "the data itself": data,
        "a foreign folder": mine,
        "a file": mine / "a.bin",
    }[where]
    before = snapshot(tmp_path)
    status = run_main(["--data", str(data), "--out", str(out), "--preset", "smoke"])
    err = capsys.readouterr().err
    assert status == 2
    (line,) = err.strip().splitlines()
    assert line.startswith(f"error: --out {out}")
    named = {
        "inside the data": "lies inside the data",
        "the data itself": "lies inside the data",
        "a foreign folder": "not a run folder",
        "a file": "is not a folder",
    }[where]
    assert named in line
    assert snapshot(tmp_path) == before and not (data / "plate" / "run").exists()
