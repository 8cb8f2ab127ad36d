"""``python -m train data import mtd|ksdd|dagm``: layouts, policies, refusals, SRC never touched.

Every source tree here is synthetic, made in the format's own layout (MTD's ``MT_*/Imgs``,
KolektorSDD's ``kosNN/PartK.jpg`` + ``PartK_label.bmp``, both DAGM releases from
``train.synth``); no real set is read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from genericset import snapshot

from pyinspect.dataset import DatasetError, defect_mask, load_dataset, read_image
from train import data_import
from train.dagm import defect_mask as dagm_mask
from train.dagm import load_dagm
from train.dagm import read_image as dagm_image
from train.data_cli import main as data_main
from train.data_import import MTD_CLASSES, import_dagm, import_ksdd, import_mtd
from train.synth import synthesize


def _noise(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    return np.clip(cv2.GaussianBlur(rng.normal(128, 30, (h, w)), (0, 0), 1.5), 0, 255).astype(
        np.uint8
    )


def build_mtd(root: Path, *, per_class: int = 3, empty_uneven: int = 1) -> Path:
    """An MTD-shaped tree: ``MT_*/Imgs/*.jpg`` with same-stem grey-level ``.png`` masks
    (anti-aliased, blurred: values between 0 and 255); ``empty_uneven`` MT_Uneven masks are
    all zero, as four real ones are."""
    rng = np.random.default_rng(0)
    for folder, dtype in MTD_CLASSES.items():
        d = root / folder / "Imgs"
        d.mkdir(parents=True)
        for i in range(per_class):
            h, w = (220 + 30 * i, 110 + 100 * i)
            stem = f"exp{i}_num_{1000 + i}"
            assert cv2.imwrite(str(d / f"{stem}.jpg"), _noise(rng, h, w))
            mask = np.zeros((h, w), np.uint8)
            if dtype is not None and not (dtype == "uneven" and i < empty_uneven):
                cv2.circle(mask, (w // 2, h // 2), 15 + 3 * i, 255, -1, cv2.LINE_AA)
                mask = cv2.GaussianBlur(mask, (0, 0), 2.0)
            elif dtype is not None:
                mask[h // 2, w // 2] = 90  # faint, below the > 127 threshold: empty
            assert cv2.imwrite(str(d / f"{stem}.png"), mask)
    (root / "README.md").write_text("Magnetic tile defect datasets.\n")
    return root


def build_ksdd(root: Path, *, kos: int = 3, parts: int = 4) -> Path:
    """A KolektorSDD-shaped tree: ``kosNN/PartK.jpg`` + ``PartK_label.bmp``; Part1 of every
    folder is defective (a filled rectangle), Part2 of kos01 only by one pixel of value 1."""
    rng = np.random.default_rng(1)
    for k in range(1, kos + 1):
        d = root / f"kos{k:02d}"
        d.mkdir(parents=True)
        for p in range(parts):
            h, w = 300, 120
            assert cv2.imwrite(str(d / f"Part{p}.jpg"), _noise(rng, h, w))
            label = np.zeros((h, w), np.uint8)
            if p == 1:
                label[100:160, 30:70] = 255
            if p == 2 and k == 1:
                label[10, 10] = 1
            assert cv2.imwrite(str(d / f"Part{p}_label.bmp"), label)
    return root


def run(*args: str | Path) -> int:
    return data_main([str(a) for a in args])


# ---- MTD ---------------------------------------------------------------------------------------


def test_mtd_import_copies_images_and_thresholds_masks(tmp_path: Path, capsys) -> None:
    src = build_mtd(tmp_path / "MTD")
    before = snapshot(src)
    root = tmp_path / "tiles"
    assert run("import", "mtd", src, root) == 0
    out, err = capsys.readouterr()
    assert snapshot(src) == before
    assert "imported 18 images" in out
    assert err.count("warning:") == 1 and "exp0_num_1000.jpg: empty mask" in err
    ds = load_dataset(root, defect_types="keep")
    assert [c.name for c in ds.classes] == [
        "good", "blowhole", "break", "crack", "fray", "uneven"
    ]  # fmt: skip
    for s in ds.samples:
        folder = next(f for f, t in MTD_CLASSES.items() if (t or "good") == s.path.parts[0])
        source = src / folder / "Imgs" / s.path.name
        assert ds.absolute(s).read_bytes() == source.read_bytes()  # byte for byte
        if not s.defective:
            continue
        grey = cv2.imread(str(source.with_suffix(".png")), cv2.IMREAD_GRAYSCALE)
        if not (grey > 127).any():
            assert s.mask_path is None  # image-level, as documented
            continue
        region = defect_mask(ds, s, grey.shape)
        assert region is not None and np.array_equal(region, grey > 127)
        assert set(np.unique(cv2.imread(str(ds.root / s.mask_path), -1))) == {0, 255}
    notes = json.loads((root / "dataset.json").read_text())["notes"]
    assert "MT_Uneven/exp0_num_1000.jpg" in notes


def test_mtd_import_result_passes_data_check(tmp_path: Path, capsys) -> None:
    root = tmp_path / "tiles"
    import_mtd(build_mtd(tmp_path / "MTD"), root)
    assert run("check", root, "--defect-types", "keep") == 0
    out = capsys.readouterr().out
    assert "1 defective image(s) have no mask or boxes" in out  # a note, not a problem
    assert out.rstrip().endswith("ok")


@pytest.mark.hostile("training data")
def test_mtd_strict_refuses_empty_masks_and_writes_nothing(tmp_path: Path, capsys) -> None:
    src = build_mtd(tmp_path / "MTD", empty_uneven=2)
    before = snapshot(src)
    root = tmp_path / "tiles"
    assert run("import", "mtd", src, root, "--strict") == 1
    err = capsys.readouterr().err
    assert "2 defective image(s) with an empty mask (--strict refuses them)" in err
    assert "MT_Uneven/Imgs/exp0_num_1000.jpg" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not root.exists() and snapshot(src) == before


@pytest.mark.hostile("training data")
@pytest.mark.parametrize("fault", ["missing mask", "mask size", "no MT_Crack", "empty class"])
def test_mtd_broken_source_is_refused_by_name(tmp_path: Path, capsys, fault: str) -> None:
    src = build_mtd(tmp_path / "MTD")
    crack = src / "MT_Crack" / "Imgs"
    if fault == "missing mask":
        (crack / "exp1_num_1001.png").unlink()
        expect = "exp1_num_1001.png: mask missing or unreadable"
    elif fault == "mask size":
        cv2.imwrite(str(crack / "exp1_num_1001.png"), np.zeros((10, 20), np.uint8))
        expect = "exp1_num_1001.png: mask is 20×10, its image exp1_num_1001.jpg is 210×250"
    elif fault == "no MT_Crack":
        for p in crack.iterdir():
            p.unlink()
        crack.rmdir()
        expect = "not a Magnetic Tile Defect copy: no MT_Crack/Imgs"
    else:
        for p in crack.glob("*.jpg"):
            p.unlink()
        expect = "MT_Crack/Imgs: no .jpg images"
    before = snapshot(src)
    root = tmp_path / "tiles"
    assert run("import", "mtd", src, root) == 1
    err = capsys.readouterr().err
    assert expect in err and "Traceback" not in err
    assert not root.exists() and snapshot(src) == before


# ---- KolektorSDD format ------------------------------------------------------------------------


def test_ksdd_import_prefixes_stems_and_labels_by_any_nonzero_pixel(tmp_path: Path) -> None:
    src = build_ksdd(tmp_path / "KolektorSDD")
    before = snapshot(src)
    result = import_ksdd(src, tmp_path / "ksdd")
    assert snapshot(src) == before and result.warnings == []
    assert result.counts == {"defect": 4, "good": 8}
    ds = load_dataset(tmp_path / "ksdd", defect_types="keep")
    assert ds.grouped is False and [c.name for c in ds.classes] == ["good", "defect"]
    keys = {s.key for s in ds.samples}
    assert {"defect/kos01_Part1.jpg", "defect/kos01_Part2.jpg", "good/kos02_Part2.jpg"} <= keys
    assert len(keys) == 12  # PartK repeats across kosNN; the prefix keeps them apart
    for s in ds.samples:
        kos, part = s.path.stem.split("_")
        source = src / kos / f"{part}.jpg"
        assert ds.absolute(s).read_bytes() == source.read_bytes()
        label = cv2.imread(str(src / kos / f"{part}_label.bmp"), cv2.IMREAD_GRAYSCALE)
        assert s.defective == bool(label.any())
        if s.defective:
            region = defect_mask(ds, s, label.shape)
            assert region is not None and np.array_equal(region, label > 0)


def test_ksdd_import_looks_through_one_wrapper_folder(tmp_path: Path) -> None:
    build_ksdd(tmp_path / "download" / "KolektorSDD", kos=1, parts=3)
    result = import_ksdd(tmp_path / "download", tmp_path / "ksdd")
    assert result.counts == {"defect": 2, "good": 1}


@pytest.mark.hostile("training data")
def test_ksdd_stray_files_warn_and_strict_refuses(tmp_path: Path, capsys) -> None:
    src = build_ksdd(tmp_path / "KolektorSDD", kos=1)
    (src / "kos01" / "notes.txt").write_text("shift 2\n")
    (src / "kos01" / "Thumbs.db").write_bytes(b"\0")  # junk: ignored silently
    before = snapshot(src)
    assert run("import", "ksdd", src, tmp_path / "strict", "--strict") == 1
    err = capsys.readouterr().err
    assert "1 file(s) that are not parts (--strict refuses them)" in err and "notes.txt" in err
    assert not (tmp_path / "strict").exists()
    assert run("import", "ksdd", src, tmp_path / "ksdd") == 0
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "notes.txt: not a PartK.jpg" in err
    assert snapshot(src) == before


@pytest.mark.hostile("training data")
@pytest.mark.parametrize("fault", ["no label", "label size", "not ksdd", "all defective"])
def test_ksdd_broken_source_is_refused_by_name(tmp_path: Path, capsys, fault: str) -> None:
    src = build_ksdd(tmp_path / "KolektorSDD", kos=2, parts=2)
    if fault == "no label":
        (src / "kos02" / "Part0_label.bmp").unlink()
        expect = "kos02/Part0.jpg: its label Part0_label.bmp is missing"
    elif fault == "label size":
        cv2.imwrite(str(src / "kos02" / "Part0_label.bmp"), np.zeros((30, 12), np.uint8))
        expect = "Part0_label.bmp: mask is 12×30, its image Part0.jpg is 120×300"
    elif fault == "not ksdd":
        for d in src.iterdir():
            d.rename(src / f"folder{d.name[3:]}")
        expect = "not a KolektorSDD copy: no kosNN/ folders"
    else:
        for lab in src.glob("kos*/Part0_label.bmp"):
            cv2.imwrite(str(lab), np.full((300, 120), 255, np.uint8))
        expect = "no good part (every label has a defect)"
    before = snapshot(src)
    assert run("import", "ksdd", src, tmp_path / "ksdd") == 1
    err = capsys.readouterr().err
    assert expect in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "ksdd").exists() and snapshot(src) == before


# ---- DAGM --------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["dev", "10class"])
def test_dagm_import_keeps_stems_and_draws_the_label_region(tmp_path: Path, layout: str) -> None:
    src = tmp_path / "dagm"
    synthesize(
        src, classes=2, good=3, defective=2, seed=0, layout=layout, workers=1, progress=False
    )
    before = snapshot(src)
    result = import_dagm(src, tmp_path / "out")
    assert snapshot(src) == before and result.warnings == []
    ds = load_dataset(tmp_path / "out", defect_types="keep")
    assert ds.groups == ["Class1", "Class2"]
    assert [c.name for c in ds.classes] == [
        "Class1 good", "Class1 defect", "Class2 good", "Class2 defect"
    ]  # fmt: skip
    by_key = ds.by_key()
    records = load_dagm(src)
    assert len(by_key) == len(records) == 10
    for r in records:
        stem = f"{r.split}_{r.path.stem}" if r.split else r.path.stem
        folder = "defect" if r.defective else "good"
        s = by_key[f"Class{r.texture + 1}/{folder}/{stem}.png"]
        assert ds.absolute(s).read_bytes() == r.path.read_bytes()
        img = read_image(ds.absolute(s))
        region = defect_mask(ds, s, img.shape[:2])
        assert region is not None
        assert np.array_equal(region, dagm_mask(r, dagm_image(r).shape))
    if layout == "dev":
        assert "Class1/good/1.png" in by_key  # the release's own stem
    else:
        assert any(k.startswith("Class1/good/train_") for k in by_key)
        assert any(k.startswith("Class1/good/test_") for k in by_key)


@pytest.mark.hostile("training data")
def test_dagm_class_without_good_images_is_refused(tmp_path: Path, capsys) -> None:
    src = tmp_path / "dagm"
    synthesize(src, classes=2, good=2, defective=1, seed=0, workers=1, progress=False)
    for p in (src / "Class2").iterdir():
        p.unlink()
    before = snapshot(src)
    assert run("import", "dagm", src, tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert "Class2 has no good image" in err and not (tmp_path / "out").exists()
    assert snapshot(src) == before


@pytest.mark.hostile("training data")
def test_dagm_unreadable_tree_is_one_line(tmp_path: Path, capsys) -> None:
    src = tmp_path / "dagm"
    synthesize(src, classes=1, good=2, defective=1, seed=0, workers=1, progress=False)
    (src / "Class1_def" / "labels.txt").write_text("1 2 3\n")
    assert run("import", "dagm", src, tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert "labels.txt:1: expected 6 fields" in err and len(err.strip().splitlines()) == 1


# ---- ROOT: never over anything, never inside SRC -----------------------------------------------


@pytest.mark.hostile("training data")
@pytest.mark.parametrize("where", ["non-empty folder", "a file", "inside SRC", "SRC itself"])
def test_import_never_writes_over_or_into_the_users_files(
    tmp_path: Path, capsys, where: str
) -> None:
    src = build_mtd(tmp_path / "MTD", per_class=1)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("my notes")
    (tmp_path / "file").write_text("a file")
    root = {
        "non-empty folder": mine,
        "a file": tmp_path / "file",
        "inside SRC": src / "MT_Free" / "imported",
        "SRC itself": src,
    }[where]
    before = snapshot(tmp_path)
    assert run("import", "mtd", src, root) == 1
    err = capsys.readouterr().err
    expect = "may not lie inside the source" if "SRC" in where else "nothing is replaced"
    assert expect in err and "Traceback" not in err
    assert snapshot(tmp_path) == before
    assert not (src / "MT_Free" / "imported").exists()


def test_import_into_an_existing_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = import_mtd(build_mtd(tmp_path / "MTD", per_class=1), tmp_path / "empty")
    assert sum(result.counts.values()) == 6


@pytest.mark.hostile("training data")
@pytest.mark.parametrize("fault", [OSError(28, "No space left on device"), KeyboardInterrupt()])
@pytest.mark.parametrize("existed", [False, True])
def test_import_failing_midway_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, fault: BaseException, existed: bool
) -> None:
    src = build_mtd(tmp_path / "MTD", per_class=2)
    before = snapshot(src)
    root = tmp_path / "tiles"
    if existed:
        root.mkdir()
    real, calls = data_import.shutil.copyfile, []

    def failing(a: Any, b: Any) -> Any:
        calls.append(a)
        if len(calls) == 4:
            raise fault
        return real(a, b)

    monkeypatch.setattr(data_import.shutil, "copyfile", failing)
    rc = run("import", "mtd", src, root)
    err = capsys.readouterr().err
    if isinstance(fault, KeyboardInterrupt):
        assert rc == 130
    else:
        assert rc == 1 and "writing the import failed, nothing kept: No space left" in err
    assert (root.is_dir() and not any(root.iterdir())) if existed else not root.exists()
    assert snapshot(src) == before
    monkeypatch.setattr(data_import.shutil, "copyfile", real)
    assert run("import", "mtd", src, root) == 0  # nothing blocks the rerun


@pytest.mark.hostile("training data")
@pytest.mark.parametrize(
    "args",
    [
        ["import"],
        ["import", "voc", "a", "b"],
        ["import", "mtd", "only-src"],
        ["import", "mtd", "a", "b", "--lenient"],
    ],
)
def test_import_usage_errors_exit_2(tmp_path: Path, capsys, args: list[str]) -> None:
    assert run(*args) == 2
    assert "usage:" in capsys.readouterr().err


def test_import_of_a_missing_source_names_it(tmp_path: Path, capsys) -> None:
    assert run("import", "ksdd", tmp_path / "nowhere", tmp_path / "out") == 1
    assert f"{tmp_path / 'nowhere'}: no such folder" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_library_errors_are_dataset_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not a KolektorSDD copy"):
        import_ksdd(tmp_path, tmp_path.parent / f"{tmp_path.name}-out")
