"""The generic layout reader (``pyinspect.dataset``): what it reads from the shared fixture
(tests/genericset.py: masks, VOC boxes, mixed sizes, 16-bit, one product) and every bad input of
issue 20, each a ``DatasetError`` or a listed ``Problem`` naming its file, with the tree's bytes
unchanged."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from genericset import DEFECT_TYPES, GROUPS, GenericSet, snapshot

from pyinspect.dataset import (
    DatasetError,
    Problem,
    defect_mask,
    load_dataset,
    read_boxes,
    read_image,
    read_split,
    split_samples,
    write_split,
)


def copy_of(gs: GenericSet, tmp_path: Path) -> Path:
    """A private copy of a session fixture's tree, to break."""
    return Path(shutil.copytree(gs.root, tmp_path / "parts"))


def problems_of(root: Path, **kw: str) -> list[Problem]:
    """``load_dataset(strict=False)``'s problems, checking the strict call raises them all and
    that reading changed nothing."""
    before = snapshot(root)
    ds = load_dataset(root, strict=False, **kw)
    with pytest.raises(DatasetError) as info:
        load_dataset(root, strict=True, **kw)
    for p in ds.problems:
        assert str(p) in str(info.value)
    assert snapshot(root) == before
    return ds.problems


# ---- what is read --------------------------------------------------------------------------
def test_grouped_set_class_tables_in_both_modes(generic_set: GenericSet) -> None:
    merged = load_dataset(generic_set.root)
    assert merged.grouped and merged.groups == list(GROUPS) and merged.problems == []
    assert [c.name for c in merged.classes] == [
        "plate good",
        "plate defective",
        "weave good",
        "weave defective",
    ]
    assert [c.defect_type for c in merged.classes] == [None, "defective", None, "defective"]
    assert merged.defect_types == {g: sorted(DEFECT_TYPES) for g in GROUPS}
    kept = load_dataset(generic_set.root, defect_types="keep")
    assert [(c.name, c.group, c.defect_type) for c in kept.classes] == [
        ("plate good", 0, None),
        ("plate scratch", 0, "scratch"),
        ("plate stain", 0, "stain"),
        ("weave good", 1, None),
        ("weave scratch", 1, "scratch"),
        ("weave stain", 1, "stain"),
    ]
    counts = kept.class_counts()
    for i, c in enumerate(kept.classes):
        assert counts[i] == generic_set.count(kept.groups[c.group], c.defect_type)
    assert {s.key for s in kept.samples} == {im.key for im in generic_set.images}
    assert merged.name == "synthetic-parts" and merged.notes


def test_every_defective_image_gets_its_mask_or_boxes(generic_set: GenericSet) -> None:
    ds = load_dataset(generic_set.root, defect_types="keep")
    by_key = ds.by_key()
    for im in generic_set.images:
        s = by_key[im.key]
        assert s.texture == s.group == ds.groups.index(im.group)
        stem = Path(im.key).stem
        if im.location == "mask":
            assert s.mask_path is not None and s.mask_path.stem == stem and s.boxes_path is None
        elif im.location == "boxes":
            assert s.boxes_path is not None and s.boxes_path.name == f"{stem}.xml"
            assert s.mask_path is None
        else:
            assert not s.defective and not s.has_location


def test_masks_and_voc_boxes_give_the_written_regions(generic_set: GenericSet) -> None:
    ds = load_dataset(generic_set.root, defect_types="keep")
    by_key = ds.by_key()
    for im in generic_set.images:
        s = by_key[im.key]
        img = read_image(ds.absolute(s))
        assert img.shape == (im.height, im.width) and img.dtype == np.uint8
        region = defect_mask(ds, s, img.shape)
        assert region is not None and region.shape == img.shape
        if im.location is None:
            assert not region.any()
        elif im.location == "mask":
            mask = cv2.imread(str(ds.root / s.mask_path), cv2.IMREAD_GRAYSCALE)
            assert np.array_equal(region, mask > 0) and region.any()
        else:
            x0, y0, x1, y1 = im.box  # type: ignore[misc]
            assert read_boxes(ds.root / s.boxes_path) == [(x0, y0, x1, y1)]
            want = np.zeros_like(region)
            want[y0:y1, x0:x1] = True
            assert np.array_equal(region, want)


def test_voc_coordinates_are_one_based_inclusive(tmp_path: Path) -> None:
    xml = tmp_path / "a.xml"
    xml.write_text(
        "<annotation><object><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>10</xmax>"
        "<ymax>20</ymax></bndbox></object><object><bndbox><xmin>5.4</xmin><ymin>5</ymin>"
        "<xmax>5.6</xmax><ymax>5</ymax></bndbox></object></annotation>"
    )
    assert read_boxes(xml) == [(0, 1, 10, 20), (4, 4, 6, 5)]


def test_single_product_layout(generic_set_single: GenericSet) -> None:
    ds = load_dataset(generic_set_single.root)
    assert not ds.grouped and len(ds.groups) == 1 and ds.problems == []
    assert [c.name for c in ds.classes] == ["good", "defective"]
    assert {s.group for s in ds.samples} == {0}
    assert len(ds.samples) == len(generic_set_single.images)
    kept = load_dataset(generic_set_single.root, defect_types="keep")
    assert [c.name for c in kept.classes] == ["good", "scratch", "stain"]


def test_16_bit_frames_are_read_as_stored(
    generic_set_16bit: GenericSet, generic_set: GenericSet
) -> None:
    ds = load_dataset(generic_set_16bit.root)
    assert ds.bit_depth == 16
    s = next(x for x in ds.samples if x.defective and x.mask_path is not None)
    img = read_image(ds.absolute(s))
    assert img.dtype == np.uint16 and img.ndim == 2
    eight = read_image(generic_set.root / s.path)
    assert np.array_equal(img, eight.astype(np.uint16) * 257)
    assert defect_mask(ds, s, img.shape).any()  # the 8-bit mask of a 16-bit frame


def test_split_is_stratified_disjoint_and_seeded(generic_set: GenericSet, tmp_path: Path) -> None:
    ds = load_dataset(generic_set.root, defect_types="keep")
    parts = split_samples(ds, seed=5)
    keys = [s.key for p in parts.values() for s in p]
    assert sorted(keys) == sorted(s.key for s in ds.samples)  # every image, once
    for label in range(len(ds.classes)):
        sizes = [sum(s.label == label for s in parts[p]) for p in ("train", "val", "test")]
        n = sum(sizes)
        assert sizes[1] == max(1, round(n * 0.1)) and sizes[2] == max(1, round(n * 0.2))
    again = split_samples(ds, seed=5)
    assert {p: [s.key for s in v] for p, v in again.items()} == {
        p: [s.key for s in v] for p, v in parts.items()
    }
    other = split_samples(ds, seed=6)
    assert {s.key for s in other["test"]} != {s.key for s in parts["test"]}
    path = tmp_path / "split.json"
    write_split(path, ds, parts, seed=5, val=0.1, test=0.2)
    for p in ("train", "val", "test"):
        assert read_split(path, ds, p) == parts[p]


def test_large_fractions_leave_every_class_a_training_image(generic_set: GenericSet) -> None:
    ds = load_dataset(generic_set.root, defect_types="keep")  # classes of 4 and 8 images
    parts = split_samples(ds, seed=0, val=0.49, test=0.49)
    for label in range(len(ds.classes)):
        assert sum(s.label == label for s in parts["train"]) >= 1
        assert sum(s.label == label for s in parts["val"]) >= 1
        assert sum(s.label == label for s in parts["test"]) >= 1


# ---- bad input: each named, nothing changed -----------------------------------------------
def _empty_class(root: Path) -> str:
    (root / "plate" / "dent").mkdir()
    return "plate/dent: empty class folder"


def _duplicate_stem(root: Path) -> str:
    shutil.copy(root / "weave" / "good" / "g01.png", root / "weave" / "good" / "g01.bmp")
    return "duplicate stem 'g01' in one class (also g01.bmp)"


def _orphan_mask(root: Path) -> str:
    shutil.copy(root / "plate" / "masks" / "stain" / "s00.png", root / "plate/masks/stain/zz.png")
    return "plate/masks/stain/zz.png: mask file without an image of that stem"


def _two_masks(root: Path) -> str:
    shutil.copy(root / "plate" / "masks" / "stain" / "s01.png", root / "plate/masks/stain/s01.bmp")
    return "two mask files for the stem 's01'"


def _two_box_files(root: Path) -> str:
    shutil.copy(root / "plate/boxes/scratch/c01.xml", root / "plate/boxes/scratch/c01.XML")
    return "two boxes files for the stem 'c01'"


def _masks_without_images(root: Path) -> str:
    (root / "plate" / "masks" / "dent").mkdir()
    return "plate/masks/dent: masks/ for 'dent', which has no image folder"


def _group_without_good(root: Path) -> str:
    (root / "extra" / "crack").mkdir(parents=True)
    return "extra: group folder without a good/ folder"


@pytest.mark.hostile("training data")
@pytest.mark.parametrize(
    "breaks",
    [
        _empty_class,
        _duplicate_stem,
        _orphan_mask,
        _two_masks,
        _two_box_files,
        _masks_without_images,
        _group_without_good,
    ],
)
def test_tree_problems_are_listed_with_their_file(
    generic_set: GenericSet, tmp_path: Path, breaks: Callable[[Path], str]
) -> None:
    root = copy_of(generic_set, tmp_path)
    named = breaks(root)
    (problem,) = problems_of(root)
    assert named in str(problem)
    assert problem.path.is_relative_to(root)


@pytest.mark.hostile("training data")
def test_a_mask_in_upper_case_is_found_not_silently_dropped(
    generic_set: GenericSet, tmp_path: Path
) -> None:
    root = copy_of(generic_set, tmp_path)
    masks = root / "plate" / "masks" / "stain"
    (masks / "s00.png").rename(masks / "s00.Png")
    (root / "plate" / "boxes" / "scratch" / "c00.xml").rename(
        root / "plate" / "boxes" / "scratch" / "c00.Xml"
    )
    ds = load_dataset(root, defect_types="keep")
    by_key = ds.by_key()
    assert by_key["plate/stain/s00.png"].mask_path == Path("plate/masks/stain/s00.Png")
    assert by_key["plate/scratch/c00.png"].boxes_path == Path("plate/boxes/scratch/c00.Xml")


@pytest.mark.hostile("training data")
def test_non_image_and_system_files_are_skipped_and_counted(
    generic_set: GenericSet, tmp_path: Path
) -> None:
    root = copy_of(generic_set, tmp_path)
    good = root / "plate" / "good"
    (good / "notes.txt").write_text("shift 2")
    (good / "Thumbs.db").write_bytes(b"\0\1")
    (good / "old").mkdir()
    (root / "plate" / "masks" / "stain" / "README").write_text("masks by hand")
    (root / "plate" / "boxes" / "scratch" / "c00.json").write_text("{}")
    before = snapshot(root)
    ds = load_dataset(root)
    assert ds.problems == [] and len(ds.samples) == len(generic_set.images)
    skipped = {p.path.relative_to(root).as_posix(): p.what for p in ds.skipped}
    assert skipped == {
        "plate/good/notes.txt": "not an image file (.txt)",
        "plate/good/Thumbs.db": "system file, not read",
        "plate/good/old": "a folder inside a class folder is not read",
        "plate/masks/stain/README": "not an image file (no suffix)",
        "plate/boxes/scratch/c00.json": "not a VOC .xml file (.json)",
    }
    assert snapshot(root) == before


@pytest.mark.hostile("training data")
def test_an_unreadable_image_is_named_when_read(generic_set: GenericSet, tmp_path: Path) -> None:
    root = copy_of(generic_set, tmp_path)
    (root / "plate" / "good" / "zz.png").write_bytes(b"not a png")
    ds = load_dataset(root)  # listing does not decode: the reader names it
    s = ds.by_key()["plate/good/zz.png"]
    with pytest.raises(DatasetError, match=r"zz\.png: cannot be read as an image"):
        read_image(ds.absolute(s))


@pytest.mark.hostile("training data")
def test_a_mask_of_another_size_is_named_with_both_sizes(
    generic_set: GenericSet, tmp_path: Path
) -> None:
    root = copy_of(generic_set, tmp_path)
    mask = root / "plate" / "masks" / "stain" / "s00.png"  # its image is 300×260
    cv2.imwrite(str(mask), np.full((10, 20), 255, np.uint8))
    before = snapshot(root)
    ds = load_dataset(root)
    s = ds.by_key()["plate/stain/s00.png"]
    with pytest.raises(
        DatasetError, match=r"s00\.png: mask is 20×10, its image s00\.png is 300×260"
    ):
        defect_mask(ds, s, read_image(ds.absolute(s)).shape)
    assert snapshot(root) == before


@pytest.mark.hostile("training data")
@pytest.mark.parametrize("kind", ["mask", "boxes outside", "no boxes"])
def test_an_empty_defect_region_is_named(
    generic_set: GenericSet, tmp_path: Path, kind: str
) -> None:
    root = copy_of(generic_set, tmp_path)
    if kind == "mask":
        target = root / "weave" / "masks" / "stain" / "s01.png"
        img = cv2.imread(str(target), cv2.IMREAD_GRAYSCALE)
        cv2.imwrite(str(target), np.zeros_like(img))
        key, named = "weave/stain/s01.png", "no pixel above the mask threshold 0"
    else:
        target = root / "weave" / "boxes" / "scratch" / "c01.xml"
        box = "<xmin>900</xmin><ymin>900</ymin><xmax>950</xmax><ymax>950</ymax>"
        body = f"<object><bndbox>{box}</bndbox></object>" if kind == "boxes outside" else ""
        target.write_text(f"<annotation>{body}</annotation>")
        key = "weave/scratch/c01.png"
        named = "the boxes cover no pixel" if body else "no <object> boxes"
    ds = load_dataset(root)
    s = ds.by_key()[key]
    with pytest.raises(DatasetError, match=rf"{target.name}: .*{named}"):
        defect_mask(ds, s, read_image(ds.absolute(s)).shape)


@pytest.mark.hostile("training data")
@pytest.mark.parametrize(
    ("xml", "named"),
    [
        ("<annotation><object>", "not a readable VOC XML file"),
        ("<annotation><object><name>x</name></object></annotation>", "object 0 has no <bndbox>"),
        (
            "<annotation><object><bndbox><xmin>a</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2"
            "</ymax></bndbox></object></annotation>",
            "<xmin> missing or not a number",
        ),
        (
            "<annotation><object><bndbox><xmin>9</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2"
            "</ymax></bndbox></object></annotation>",
            "xmax/ymax below xmin/ymin",
        ),
    ],
)
def test_broken_voc_files_are_named(tmp_path: Path, xml: str, named: str) -> None:
    path = tmp_path / "c00.xml"
    path.write_text(xml)
    with pytest.raises(DatasetError, match=rf"c00\.xml: .*{named}"):
        read_boxes(path)


@pytest.mark.hostile("training data")
def test_a_class_too_small_for_the_split_is_named_with_its_count(
    generic_set: GenericSet, tmp_path: Path
) -> None:
    root = copy_of(generic_set, tmp_path)
    for stem in ("s00", "s01"):
        (root / "weave" / "stain" / f"{stem}.png").unlink()
        (root / "weave" / "masks" / "stain" / f"{stem}.png").unlink()
    kept = load_dataset(root, defect_types="keep")
    with pytest.raises(
        DatasetError, match=r"too few images .*\(3 per class\): 'weave stain' has 2$"
    ):
        split_samples(kept, seed=0)
    merged = load_dataset(root)  # 2 stain + 4 scratch = 6 'weave defective': enough
    assert sum(s.label == 3 for s in split_samples(merged, seed=0)["test"]) == 1


@pytest.mark.hostile("training data")
@pytest.mark.parametrize(
    ("doc", "named"),
    [
        ({"groups": ["plate", "wave"]}, r"groups \['plate', 'wave'\] contradict the folders"),
        ({"groups": ["plate"]}, r"not listed: \['weave'\]"),
        (
            {"defect_types": {"plate": ["stain"], "weave": ["scratch", "stain"]}},
            r"defect_types of 'plate' are \['stain'\], the folders hold \['scratch', 'stain'\]",
        ),
        ({"defect_types": {"plate": ["scratch", "stain"], "tile": []}}, r"groups \['tile'\]"),
        ({"bit_depth": 14}, "bit_depth: expected 8, 10, 12 or 16, got 14"),
        ({"mask_threshold": -1}, r"mask_threshold: expected an integer in \[0, 65534\]"),
        ({"colour": True}, r"unknown keys \['colour'\]"),
        ([1, 2], "expected a JSON object, got list"),
        ("{not json", "not valid JSON"),
    ],
)
def test_a_dataset_json_that_contradicts_the_folders_is_named(
    generic_set: GenericSet, tmp_path: Path, doc: object, named: str
) -> None:
    root = copy_of(generic_set, tmp_path)
    text = doc if isinstance(doc, str) else json.dumps(doc)
    (root / "dataset.json").write_text(text)
    before = snapshot(root)
    with pytest.raises(DatasetError, match=rf"dataset\.json: .*{named}"):
        load_dataset(root, strict=False)  # not a listed problem: the set cannot be read
    assert snapshot(root) == before


@pytest.mark.hostile("training data")
def test_a_split_file_of_other_data_is_named(generic_set: GenericSet, tmp_path: Path) -> None:
    ds = load_dataset(generic_set.root)
    path = tmp_path / "split.json"
    path.write_text(json.dumps({"train": [], "val": ["plate/good/nope.png"], "test": []}))
    with pytest.raises(DatasetError, match=r"split 'val' are not in .*first: plate/good/nope"):
        read_split(path, ds, "val")
    path.write_text(json.dumps({"train": []}))
    with pytest.raises(DatasetError, match=r"split\.json: no list 'test' in the split file"):
        read_split(path, ds, "test")


@pytest.mark.hostile("training data")
@pytest.mark.parametrize("what", ["missing", "file", "empty"])
def test_a_root_that_is_no_dataset_is_named(tmp_path: Path, what: str) -> None:
    root = tmp_path / "root"
    if what == "file":
        root.write_text("x")
    elif what == "empty":
        root.mkdir()
    named = {"missing": "no such folder", "file": "not a folder", "empty": "no good/ folder"}
    with pytest.raises(DatasetError, match=named[what]):
        load_dataset(root)
