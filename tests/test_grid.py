"""Patch-grid geometry: covering, even spacing, first at 0, last flush, minimal count."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyinspect import _core
from pyinspect.errors import InputError, InputTypeError
from pyinspect.tiling import patch_grid

patch_sizes = st.integers(min_value=1, max_value=600)


def round_half_up(num: int, den: int) -> int:
    return (2 * num + den) // (2 * den)


@st.composite
def axis_cases(draw: st.DrawFn) -> tuple[int, int]:
    patch = draw(patch_sizes)
    length = patch + draw(st.integers(min_value=0, max_value=4000))
    return length, patch


@given(axis_cases())
def test_auto_positions_cover_evenly_and_minimally(case: tuple[int, int]) -> None:
    length, patch = case
    pos = _core.axis_positions(length, patch)
    n = len(pos)
    assert pos[0] == 0
    assert pos[-1] == length - patch  # last patch flush with the border
    steps = np.diff(pos)
    assert (steps <= patch).all()  # no gap between consecutive patches
    if n > 1:
        assert (steps >= 1).all()
        assert steps.max() - steps.min() <= 1  # even spacing, rounding only
    # minimal: one patch fewer cannot cover the axis
    assert (n - 1) * patch < length
    assert n * patch >= length
    assert pos == [round_half_up(i * (length - patch), max(n - 1, 1)) for i in range(n)]


@given(axis_cases(), st.integers(min_value=0, max_value=5))
def test_explicit_count_keeps_the_formula(case: tuple[int, int], extra: int) -> None:
    length, patch = case
    needed = len(_core.axis_positions(length, patch))
    count = min(needed + extra, length)
    pos = _core.axis_positions(length, patch, count)
    assert len(pos) == count
    assert pos[0] == 0
    assert pos[-1] == (length - patch if count > 1 else 0)
    if count > 1:
        assert pos == [round_half_up(i * (length - patch), count - 1) for i in range(count)]


def test_known_grids() -> None:
    assert _core.axis_positions(512, 224) == [0, 144, 288]
    assert _core.axis_positions(224, 224) == [0]
    assert _core.axis_positions(225, 224) == [0, 1]
    assert _core.axis_positions(448, 224) == [0, 224]
    assert _core.axis_positions(449, 224) == [0, 113, 225]  # 112.5 rounds half up
    assert _core.axis_positions(10, 4, 4) == [0, 2, 4, 6]
    assert _core.axis_positions(11, 4, 3) == [0, 4, 7]  # 3.5 rounds half up


def test_dagm_grid_is_3x3_row_major() -> None:
    boxes = patch_grid(512, 512)
    assert boxes.dtype == np.int32
    assert boxes.shape == (9, 4)
    xs, ys = [0, 144, 288], [0, 144, 288]
    expected = [(x, y, 224, 224) for y in ys for x in xs]
    assert [tuple(b) for b in boxes.tolist()] == expected


@settings(deadline=None)
@given(
    st.integers(min_value=8, max_value=64),
    st.integers(min_value=0, max_value=300),
    st.integers(min_value=0, max_value=300),
)
def test_grid_boxes_lie_inside_and_cover_every_pixel(patch: int, dh: int, dw: int) -> None:
    height, width = patch + dh, patch + dw
    boxes = patch_grid(height, width, patch)
    x, y, w, h = boxes.T
    assert (w == patch).all() and (h == patch).all()
    assert (x >= 0).all() and (y >= 0).all()
    assert (x + w <= width).all() and (y + h <= height).all()
    covered = np.zeros((height, width), bool)
    for bx, by, bw, bh in boxes:
        covered[by : by + bh, bx : bx + bw] = True
    assert covered.all()
    rows = len(_core.axis_positions(height, patch))
    cols = len(_core.axis_positions(width, patch))
    assert boxes.shape == (rows * cols, 4)
    # row-major: y never decreases, x increases within a row
    assert (np.diff(y) >= 0).all()
    assert (np.diff(x.reshape(rows, cols), axis=1) > 0).all() or cols == 1


def test_explicit_rows_and_cols() -> None:
    boxes = patch_grid(512, 600, 224, rows=4, cols=3)
    assert boxes.shape == (12, 4)
    assert sorted(set(boxes[:, 1].tolist())) == [0, 96, 192, 288]
    assert sorted(set(boxes[:, 0].tolist())) == [0, 188, 376]


def test_grid_is_cached_and_read_only() -> None:
    a = patch_grid(512, 512)
    assert a is patch_grid(512, 512)
    with pytest.raises(ValueError, match="read-only"):
        a[0, 0] = 5


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((100, 300), {}, InputError, r"frame of 100x300 \(HxW\) is smaller than the 224x224 patch"),
        ((0, 0), {}, InputError, r"frame of 0x0 \(HxW\) is smaller than the 224x224 patch"),
        (
            (512, 512),
            {"rows": 2},
            InputError,
            "2 patches of 224 px leave gaps along 512 px; at least 3",
        ),
        ((512, 512), {"cols": 0}, InputError, "cols must be >= 1, got 0"),
        ((512, 512), {"patch": 0}, InputError, "patch must be >= 1, got 0"),
        ((512, 512), {"rows": 600}, InputError, "patch count 600 exceeds the image size 512"),
        ((512.0, 512), {}, InputTypeError, "height must be an int, got float"),
        ((512, True), {}, InputTypeError, "width must be an int, got bool"),
    ],
)
def test_bad_grid_arguments(
    args: tuple[object, ...], kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        patch_grid(*args, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((100, 224), "image size 100 is smaller than the patch size 224"),
        ((512, 0), "patch size must be >= 1, got 0"),
        ((512, 224, -1), "patch count must be >= 0"),
        ((512, 224, 1), "1 patches of 224 px leave gaps"),
    ],
)
def test_core_axis_positions_rejects(args: tuple[int, ...], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _core.axis_positions(*args)
