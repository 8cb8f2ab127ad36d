"""The DAGM reader on small trees built here, one per pitfall seen in real copies."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from train.dagm import (
    DagmError,
    DagmRecord,
    Ellipse,
    defect_bbox,
    defect_mask,
    format_dev_label,
    load_dagm,
    parse_dev_labels,
    read_image,
)

SIZE = 64


def _png(path: Path, value: int = 0, size: int = SIZE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((size, size), value, np.uint8))
    return path


def _dev_tree(
    root: Path,
    classes: tuple[int, ...] = (1, 2),
    good: int = 3,
    bad: int = 2,
    labels: str | None = None,
    ext: str = ".png",
) -> Path:
    for k in classes:
        for i in range(1, good + 1):
            _png(root / f"Class{k}" / f"{i}{ext}", value=10 * k)
        for i in range(1, bad + 1):
            _png(root / f"Class{k}_def" / f"{i}{ext}", value=10 * k + i)
        text = labels
        if text is None:
            text = "".join(
                f"{i}\t  20.00\t  10.00\t   0.50\t  30.00\t  31.00\n" for i in range(1, bad + 1)
            )
        (root / f"Class{k}_def" / "labels.txt").write_bytes(text.encode())
    return root


def _split_tree(root: Path, k: int = 1, text: str | None = None, nested: bool = False) -> Path:
    base = root / f"Class{k}" / (f"Class{k}" if nested else "")
    for split in ("Train", "Test"):
        d = base / split
        _png(d / "0000.PNG", 1)
        _png(d / "0001.PNG", 2)
        mask = np.zeros((SIZE, SIZE), np.uint8)
        mask[10:20, 30:40] = 255
        (d / "Label").mkdir(parents=True)
        assert cv2.imwrite(str(d / "Label" / "0001_label.PNG"), mask)
        body = text or "1\r\n1\t0\t0000.PNG\t0\t0\r\n2\t1\t0001.PNG\t0\t0001_label.PNG\r\n"
        (d / "Label" / "Labels.txt").write_bytes(body.encode())
    return root


# ------------------------------------------------------------------------- development release


def test_dev_release_records_sorted_with_labels_and_converted_centres(tmp_path: Path) -> None:
    recs = load_dagm(_dev_tree(tmp_path))
    assert [(r.texture, r.defective, r.index) for r in recs] == [
        (t, d, i) for t in (0, 1) for d, n in ((False, 3), (True, 2)) for i in range(1, n + 1)
    ]
    assert [r.label for r in recs] == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3]
    bad = recs[3]
    assert bad.path == tmp_path / "Class1_def" / "1.png"
    assert bad.split is None and bad.mask_path is None
    assert bad.ellipse == Ellipse(cx=29.0, cy=30.0, a=20.0, b=10.0, theta=0.5)
    assert recs[0].ellipse is None and not recs[0].defective


def test_zero_based_option_keeps_centres(tmp_path: Path) -> None:
    recs = load_dagm(_dev_tree(tmp_path), one_based=False)
    e = next(r.ellipse for r in recs if r.ellipse is not None)
    assert (e.cx, e.cy) == (30.0, 31.0)


def test_real_label_lines_parse(tmp_path: Path) -> None:
    path = tmp_path / "labels.txt"
    path.write_text(
        "1\t  60.24\t  37.55\t   0.65\t  69.04\t  87.60\n"
        "9\t  63.10\t  37.97\t  -1.00\t 119.86\t 100.36\n"
    )
    got = parse_dev_labels(path)
    assert got[1] == Ellipse(68.04, 86.6, 60.24, 37.55, 0.65)
    assert got[9].theta == -1.0 and got[9].cx == pytest.approx(118.86)


def test_crlf_bom_blank_and_trailing_junk_lines(tmp_path: Path) -> None:
    text = (
        "\ufeff1  20.00  10.00  0.50  30.00  31.00\r\n\r\n"
        "2\t5.5\t9.25\t-0.1\t12\t13\r\n  \r\n\x1a\r\n\t\r\n"
    )
    recs = load_dagm(_dev_tree(tmp_path, classes=(1,), labels=text))
    ellipses = [r.ellipse for r in recs if r.defective]
    assert ellipses == [Ellipse(29.0, 30.0, 20.0, 10.0, 0.5), Ellipse(11.0, 12.0, 5.5, 9.25, -0.1)]


def test_thumbs_db_hidden_files_and_upper_case_extension(tmp_path: Path) -> None:
    root = _dev_tree(tmp_path, classes=(1,), ext=".PNG")
    (root / "Class1" / "Thumbs.db").write_bytes(b"\x00junk")
    (root / "Class1_def" / "Thumbs.db").write_bytes(b"\x00junk")
    (root / "Class1" / "._1.png").write_bytes(b"appledouble")
    (root / "__MACOSX").mkdir()
    recs = load_dagm(root)
    assert len(recs) == 5
    assert {r.path.suffix for r in recs} == {".PNG"}


def test_mixed_case_extensions_and_leading_zeros(tmp_path: Path) -> None:
    root = tmp_path
    _png(root / "Class1" / "1.png")
    _png(root / "Class1" / "2.PNG")
    _png(root / "Class1_def" / "001.Png")
    (root / "Class1_def" / "labels.txt").write_text("1 4 3 0 10 10\n")
    recs = load_dagm(root)
    assert [(r.path.name, r.index) for r in recs] == [("1.png", 1), ("2.PNG", 2), ("001.Png", 1)]


@pytest.mark.parametrize("wrapper", [False, True])
def test_nested_class_folders_after_unzip(tmp_path: Path, wrapper: bool) -> None:
    root = tmp_path / ("DAGM" if wrapper else "")
    for k in (1, 2):
        _png(root / f"Class{k}" / f"Class{k}" / "1.png")
        _png(root / f"Class{k}_def" / f"Class{k}_def" / "1.png")
        (root / f"Class{k}_def" / f"Class{k}_def" / "labels.txt").write_text("1 4 3 0 10 10\n")
    (root / "Class1" / "Thumbs.db").write_bytes(b"x")
    recs = load_dagm(tmp_path)
    assert [(r.texture, r.defective) for r in recs] == [
        (0, False),
        (0, True),
        (1, False),
        (1, True),
    ]
    assert recs[1].path == root / "Class1_def" / "Class1_def" / "1.png"


def test_def_folder_inside_class_folder(tmp_path: Path) -> None:
    _png(tmp_path / "Class3" / "1.png")
    _png(tmp_path / "Class3" / "Class3_def" / "1.png")
    (tmp_path / "Class3" / "Class3_def" / "labels.txt").write_text("1 4 3 0 10 10\n")
    recs = load_dagm(tmp_path)
    assert [(r.texture, r.defective) for r in recs] == [(2, False), (2, True)]


def test_axis_a_smaller_than_b_mask_matches_rotated_bbox(tmp_path: Path) -> None:
    e = Ellipse(cx=31.0, cy=29.0, a=6.0, b=18.0, theta=math.radians(30))
    rec = DagmRecord(tmp_path / "x.png", 0, True, e, None, None, 1)
    mask = defect_mask(rec, (SIZE, SIZE))
    x0, y0, x1, y1 = e.bbox()
    bx = defect_bbox(mask)
    assert bx is not None
    assert abs(bx[0] - x0) <= 1.0 and abs(bx[1] - y0) <= 1.0
    assert abs(bx[2] - 1 - x1) <= 1.0 and abs(bx[3] - 1 - y1) <= 1.0
    # The long axis (b) is across θ: the bbox is taller than wide for θ = 30°.
    assert (bx[3] - bx[1]) > (bx[2] - bx[0])
    # Orientation convention: a is along θ (from +x toward +y). Pixel centres inside the ellipse
    # are in the mask; the mask adds at most a 1-pixel rim (cv2 fills the boundary).
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(float)
    u = (xx - e.cx) * math.cos(e.theta) + (yy - e.cy) * math.sin(e.theta)
    v = -(xx - e.cx) * math.sin(e.theta) + (yy - e.cy) * math.cos(e.theta)
    inside = (u / e.a) ** 2 + (v / e.b) ** 2 <= 1
    rim = (u / (e.a + 1)) ** 2 + (v / (e.b + 1)) ** 2 <= 1
    assert not (inside & ~mask).any()
    assert not (mask & ~rim).any()


def test_good_record_mask_is_empty(tmp_path: Path) -> None:
    rec = DagmRecord(tmp_path / "x.png", 1, False, None, None, None, 1)
    assert not defect_mask(rec, (8, 9)).any()
    assert defect_mask(rec, (8, 9)).shape == (8, 9)


def test_format_dev_label_matches_release_format() -> None:
    line = format_dev_label(1, Ellipse(68.04, 86.6, 60.24, 37.55, 0.65))
    assert line == "1\t  60.24\t  37.55\t   0.65\t  69.04\t  87.60"


def test_classes_filter_uses_disk_numbers(tmp_path: Path) -> None:
    recs = load_dagm(_dev_tree(tmp_path, classes=(1, 2, 3)), classes=[3])
    assert {r.texture for r in recs} == {2}
    with pytest.raises(DagmError, match=r"Class7 not found; found classes \[1, 2, 3\]"):
        load_dagm(tmp_path, classes=[7])


def test_good_only_class_without_def_folder(tmp_path: Path) -> None:
    _png(tmp_path / "Class1" / "1.png")
    assert [r.defective for r in load_dagm(tmp_path)] == [False]


# ------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ("1 20 10 0.5 30\n", r"labels.txt:1: expected 6 fields .* got 5"),
        ("1 20 10 0.5 30 31\n2 20 10 abc 30 31\n", r"labels.txt:2: field 'theta' is 'abc'"),
        ("1 20 10 0.5 30 31\n2 20 10 0.5 30 nan\n", r"labels.txt:2: field 'y' is 'nan'"),
        ("1.5 20 10 0.5 30 31\n", r"labels.txt:1: field 'idx' is '1.5', expected an integer"),
        ("1 0 10 0.5 30 31\n2 1 1 0 1 1\n", r"labels.txt:1: semi-axes must be > 0"),
        ("1 2 1 0 5 5\n1 2 1 0 5 5\n2 2 1 0 5 5\n", r"labels.txt:2: image index 1 appears twice"),
        ("1 2 1 0 5 5\n", r"labels.txt: no row for defective images \['2.png'\]"),
        ("1 2 1 0 5 5\n2 2 1 0 5 5\n3 2 1 0 5 5\n", r"rows for images \[3\] that are not in"),
        ("1 2 1 0 5 5\n2 2 1 0 5 5\ntrailing words\n", r"labels.txt:3: expected 6 fields"),
    ],
)
def test_bad_dev_labels_name_file_and_line(tmp_path: Path, labels: str, message: str) -> None:
    _dev_tree(tmp_path, classes=(1,), labels=labels)
    with pytest.raises(DagmError, match=message):
        load_dagm(tmp_path)


def test_missing_labels_file(tmp_path: Path) -> None:
    _dev_tree(tmp_path, classes=(1,))
    (tmp_path / "Class1_def" / "labels.txt").unlink()
    with pytest.raises(DagmError, match=r"Class1_def: labels.txt is missing"):
        load_dagm(tmp_path)


def test_non_numeric_image_name(tmp_path: Path) -> None:
    _dev_tree(tmp_path, classes=(1,))
    _png(tmp_path / "Class1" / "copy of 1.png")
    with pytest.raises(DagmError, match=r"copy of 1.png: cannot tell the image number"):
        load_dagm(tmp_path)


def test_no_class_folders(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with pytest.raises(DagmError, match=r"no Class<k> folders found"):
        load_dagm(tmp_path)
    with pytest.raises(DagmError, match=r"is not a directory"):
        load_dagm(tmp_path / "missing")


def test_mixed_layouts_rejected(tmp_path: Path) -> None:
    _dev_tree(tmp_path, classes=(1,))
    _split_tree(tmp_path, k=2)
    with pytest.raises(DagmError, match=r"mixes the development and 10-class layouts"):
        load_dagm(tmp_path)


def test_unreadable_image(tmp_path: Path) -> None:
    path = tmp_path / "1.png"
    path.write_bytes(b"not a png")
    with pytest.raises(DagmError, match=r"1.png: cannot be read as an image"):
        read_image(path)


# ------------------------------------------------------------------------- 10-class release


@pytest.mark.parametrize("nested", [False, True])
def test_split_release_with_header_crlf_and_masks(tmp_path: Path, nested: bool) -> None:
    recs = load_dagm(_split_tree(tmp_path, nested=nested))
    assert [(r.split, r.defective, r.index) for r in recs] == [
        ("test", False, 0), ("test", True, 1), ("train", False, 0), ("train", True, 1),
    ]  # fmt: skip
    bad = recs[3]
    assert bad.ellipse is None and bad.mask_path is not None
    assert bad.mask_path.name == "0001_label.PNG" and bad.label == 1
    mask = defect_mask(bad, (SIZE, SIZE))
    assert mask.sum() == 100 and defect_bbox(mask) == (30, 10, 40, 20)
    assert read_image(bad).shape == (SIZE, SIZE)


def test_split_release_bom_case_mismatch_and_thumbs(tmp_path: Path) -> None:
    text = "\ufeff1\n1\t0\t0000.png\t0\t0\n2\t1\t0001.png\t0\t0001_label.png\n\n\x1a"
    root = _split_tree(tmp_path, text=text)
    (root / "Class1" / "Train" / "Thumbs.db").write_bytes(b"x")
    recs = load_dagm(root)
    assert [r.path.name for r in recs] == ["0000.PNG", "0001.PNG"] * 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1\n1\t0\t0000.PNG\t0\n", r"Labels.txt:2: expected 5 fields"),
        ("1\n1\t2\t0000.PNG\t0\t0\n", r"Labels.txt:2: field 'defect' is '2', expected 0 or 1"),
        ("1\n1\t1\t0000.PNG\t0\t0\n", r"Labels.txt:2: defective image '0000.PNG' has no mask"),
        ("1\n1\t0\t0009.PNG\t0\t0\n", r"Labels.txt:2: image '0009.PNG' not found"),
        ("1\n1\t1\t0001.PNG\t0\tnope.PNG\n", r"Labels.txt:2: mask 'nope.PNG' not found"),
        ("1\n1\t0\t0000.PNG\t0\t0\n", r"Labels.txt: no row for images \['0001.PNG'\]"),
        (
            "1\n1\t0\t0000.PNG\t0\t0\n2\t0\t0000.PNG\t0\t0\n",
            r"Labels.txt:3: image '0000.PNG' listed twice",
        ),
    ],
)
def test_bad_split_labels_name_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    _split_tree(tmp_path, text=text)
    with pytest.raises(DagmError, match=message):
        load_dagm(tmp_path)


def test_mask_shape_mismatch(tmp_path: Path) -> None:
    recs = load_dagm(_split_tree(tmp_path))
    with pytest.raises(DagmError, match=r"0001_label.PNG: mask is 64×64, image is 32×32"):
        defect_mask(recs[1], (32, 32))
