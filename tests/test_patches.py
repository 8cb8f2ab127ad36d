"""Paper §3.3 samplers, the stratified split and the §4 test grid."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from train.dagm import DagmError, DagmRecord, Ellipse, defect_bbox, defect_mask
from train.patches import (
    AXIS_PRESERVING,
    PATCH,
    PatchBatch,
    collect,
    defect_core,
    dihedral,
    patch_position_range,
    sample_aug,
    sample_noaug,
    split_records,
    test_grid_patches,
)


def _rec(texture: int, defective: bool, index: int, ellipse: Ellipse | None = None) -> DagmRecord:
    return DagmRecord(
        Path(f"t{texture}/{int(defective)}/{index}.png"),
        texture,
        defective,
        ellipse,
        None,
        None,
        index,
    )


# Defects of every size and place: small, at each border/corner, wider and taller than a patch.
ELLIPSES = [
    Ellipse(256.0, 256.0, 10.0, 6.0, 0.3),
    Ellipse(3.0, 200.0, 20.0, 12.0, 1.2),
    Ellipse(508.0, 509.0, 30.0, 9.0, -0.7),
    Ellipse(100.0, 2.0, 14.0, 40.0, 0.0),
    Ellipse(300.0, 260.0, 180.0, 15.0, 0.05),
    Ellipse(250.0, 480.0, 12.0, 200.0, 0.1),
    Ellipse(256.0, 256.0, 300.0, 300.0, 0.0),
]


def _records() -> list[DagmRecord]:
    recs = [_rec(t, False, i) for t in range(3) for i in range(4)]
    recs += [_rec(t, True, i, e) for t in range(3) for i, e in enumerate(ELLIPSES)]
    return recs


def _painted(rec: DagmRecord) -> np.ndarray:
    """The defect region painted 255 on 0 (good images: a constant per record)."""
    if rec.defective:
        return defect_mask(rec, (512, 512)).astype(np.uint8) * 255
    return np.full((512, 512), 10 + rec.index, np.uint8)


# ------------------------------------------------------------------------- split


def test_split_is_stratified_deterministic_and_disjoint() -> None:
    recs = [
        _rec(t, d, i) for t in range(6) for d, n in ((False, 1000), (True, 150)) for i in range(n)
    ]
    train, test = split_records(recs, seed=3)
    assert (len(train), len(test)) == (5520, 1380)
    assert Counter(r.label for r in test) == {lab: 200 if lab % 2 == 0 else 30 for lab in range(12)}
    assert set(train).isdisjoint(test) and set(train) | set(test) == set(recs)
    test_set = set(test)
    assert [r for r in recs if r in test_set] == test  # input order kept
    assert split_records(recs, seed=3) == (train, test)
    assert split_records(recs, seed=4)[1] != test


def test_split_rejects_bad_fraction() -> None:
    with pytest.raises(ValueError, match=r"test_fraction must be in \[0, 1\], got 1.5"):
        split_records([], test_fraction=1.5, seed=0)


# ------------------------------------------------------------------------- containment


def test_defect_core_keeps_small_boxes_and_centres_large_ones() -> None:
    mask = np.zeros((512, 512), bool)
    mask[40:90, 500:512] = True
    assert defect_core(mask) == (500, 40, 512, 90)
    mask[:] = False
    mask[10:20, 0:400] = True  # 400 wide: keep the central 112 columns
    assert defect_core(mask) == (144, 10, 256, 20)
    with pytest.raises(DagmError, match=r"defect region is empty"):
        defect_core(np.zeros((8, 8), bool))


def test_position_range_holds_the_core() -> None:
    assert patch_position_range((500, 40, 512, 90), (512, 512)) == (288, 288, 0, 40)
    assert patch_position_range((100, 100, 110, 110), (512, 512)) == (0, 100, 0, 100)
    with pytest.raises(DagmError, match=r"no 224×224 patch inside a 200×200 image"):
        patch_position_range((0, 0, 10, 10), (200, 200))


def _check_contains(recs: list[DagmRecord], batch: PatchBatch) -> int:
    checked = 0
    for p, lab, i, (x, y), k in zip(*batch, strict=True):
        rec = recs[i]
        assert lab == rec.label
        img = _painted(rec)
        # The reported corner/orientation reproduce the patch exactly.
        assert np.array_equal(p, dihedral(img[y : y + PATCH, x : x + PATCH], int(k)))
        if not rec.defective:
            continue
        mask = img > 0
        x0, y0, x1, y1 = defect_core(mask)
        assert x <= x0 and x1 <= x + PATCH and y <= y0 and y1 <= y + PATCH
        bx = defect_bbox(mask)
        assert bx is not None
        in_patch = int((p == 255).sum())
        if bx[2] - bx[0] <= PATCH and bx[3] - bx[1] <= PATCH:
            assert in_patch == int(mask.sum()), "a small defect must be whole inside its patch"
        else:
            assert in_patch >= int(mask[y0:y1, x0:x1].sum()) > 0
        checked += 1
    return checked


def test_noaug_one_patch_per_image_each_defect_inside() -> None:
    recs = _records()
    batch = collect(sample_noaug(recs, np.random.default_rng(0), batch_size=5, loader=_painted))
    assert sorted(batch.record_index.tolist()) == list(range(len(recs)))
    assert not batch.orientation.any()
    assert _check_contains(recs, batch) == 3 * len(ELLIPSES)
    assert batch.patches.dtype == np.uint8 and batch.labels.dtype == np.int64


def test_aug_counts_orientations_and_every_defect_inside() -> None:
    recs = _records()
    batches = list(
        sample_aug(recs, np.random.default_rng(1), batch_size=64, window=4, loader=_painted)
    )
    assert all(len(b.labels) <= 64 for b in batches) and len(batches[0].labels) == 64
    batch = collect(iter(batches))
    counts = Counter(batch.record_index.tolist())
    assert counts == {i: 20 if r.defective else 3 for i, r in enumerate(recs)}
    assert len(set(batch.orientation.tolist())) == 8  # random rotations/flips
    assert _check_contains(recs, batch) == 20 * 3 * len(ELLIPSES)
    # Shuffled: one batch mixes several images.
    assert len(set(batches[0].record_index.tolist())) > 4


def test_aug_all_orientations_and_no_rotation() -> None:
    recs = _records()[:2] + _records()[-1:]
    full = collect(sample_aug(recs, np.random.default_rng(2), orientations=8, loader=_painted))
    assert len(full.labels) == 8 * (3 + 3 + 20)
    for i in range(len(recs)):
        per = Counter(full.orientation[full.record_index == i].tolist())
        assert set(per) == set(range(8)) and len(set(per.values())) == 1
    plain = collect(sample_aug(recs, np.random.default_rng(2), rotate_flip=False, loader=_painted))
    assert len(plain.labels) == 26 and not plain.orientation.any()


def test_aug_orientations_drawn_only_from_members() -> None:
    recs = _records()
    axis = collect(
        sample_aug(recs, np.random.default_rng(3), members=AXIS_PRESERVING, loader=_painted)
    )
    assert set(axis.orientation.tolist()) == set(AXIS_PRESERVING)
    img = _painted(recs[0])
    for p, i, (x, y), k in zip(
        axis.patches, axis.record_index, axis.corner, axis.orientation, strict=True
    ):
        if i == 0:  # the emitted pixels are the crop turned/flipped by the recorded member
            assert np.array_equal(p, dihedral(img[y : y + 224, x : x + 224], int(k)))
    all4 = collect(
        sample_aug(
            recs[:1],
            np.random.default_rng(3),
            members=AXIS_PRESERVING,
            orientations=4,
            loader=_painted,
        )
    )
    assert sorted(all4.orientation.tolist()) == sorted(AXIS_PRESERVING * 3)
    # the default draws exactly what it drew before ``members`` existed (caches stay valid)
    a = collect(sample_aug(recs, np.random.default_rng(4), loader=_painted))
    b = collect(sample_aug(recs, np.random.default_rng(4), members=range(8), loader=_painted))
    assert np.array_equal(a.orientation, b.orientation) and np.array_equal(a.patches, b.patches)
    for bad, message in (((0, 0), "distinct"), ((8,), "0..7"), ((), "0..7")):
        with pytest.raises(ValueError, match=message):
            list(sample_aug(recs, np.random.default_rng(0), members=bad, loader=_painted))
    with pytest.raises(ValueError, match=r"orientations must be in 1..4, got 5"):
        list(
            sample_aug(
                recs,
                np.random.default_rng(0),
                members=AXIS_PRESERVING,
                orientations=5,
                loader=_painted,
            )
        )


def test_samplers_are_deterministic_and_capped() -> None:
    recs = _records()
    a = collect(sample_aug(recs, np.random.default_rng(5), loader=_painted, max_patches=100))
    b = collect(sample_aug(recs, np.random.default_rng(5), loader=_painted, max_patches=100))
    assert len(a.labels) == 100
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x, y)
    c = collect(sample_aug(recs, np.random.default_rng(6), loader=_painted, max_patches=100))
    assert not np.array_equal(a.corner, c.corner)
    assert len(collect(sample_noaug([], np.random.default_rng(0))).labels) == 0


def test_sampler_rejects_small_images_and_bad_arguments() -> None:
    recs = [_rec(0, False, 0)]
    with pytest.raises(DagmError, match=r"image 100×100 is smaller than the 224 patch"):
        list(
            sample_noaug(
                recs, np.random.default_rng(0), loader=lambda r: np.zeros((100, 100), np.uint8)
            )
        )
    with pytest.raises(ValueError, match=r"orientations must be in 1..8, got 9"):
        list(sample_aug(recs, np.random.default_rng(0), orientations=9, loader=_painted))


# ------------------------------------------------------------------------- test grid


def test_grid_equals_runtime_and_labels_overlap() -> None:
    tiling = pytest.importorskip("pyinspect.tiling", reason="needs the built pyinspect._core")
    rec = _rec(4, True, 0, Ellipse(150.0, 60.0, 8.0, 5.0, 0.0))  # x 142..158, y 55..65
    img = (np.arange(512 * 512) % 251).astype(np.uint8).reshape(512, 512)
    patches, boxes, labels = test_grid_patches(rec, img)
    assert np.array_equal(boxes, tiling.patch_grid(512, 512))
    assert boxes.dtype == np.int32 and boxes.shape == (9, 4)
    assert sorted({int(v) for v in boxes[:, 0]}) == [0, 144, 288]
    for p, (x, y, w, h) in zip(patches, boxes.tolist(), strict=True):
        assert np.array_equal(p, img[y : y + h, x : x + w])
    # Columns starting at 0 (x < 224) and 144 both overlap x 142..158; only the top row does.
    assert labels.tolist() == [9, 9, 8, 8, 8, 8, 8, 8, 8]
    good = _rec(4, False, 1)
    assert test_grid_patches(good, img)[2].tolist() == [8] * 9


def test_patch_set_cache_is_keyed_by_its_cap(tmp_path) -> None:
    """A set cached with one cap is never read back for another (a larger run would silently
    train on the smaller set)."""
    pytest.importorskip("torch", reason="train.torchdata needs the [train] extra")
    from train.torchdata import patch_set

    recs = _records()
    small, _ = patch_set("aug", recs, 0, tmp_path / "aug-0", max_patches=40, loader=_painted)
    large, _ = patch_set("aug", recs, 0, tmp_path / "aug-0", max_patches=90, loader=_painted)
    again, _ = patch_set("aug", recs, 0, tmp_path / "aug-0", max_patches=40, loader=_painted)
    assert (len(small), len(large)) == (40, 90)
    assert np.array_equal(again, small)  # read back from its own cache


def test_patch_set_caches_of_fractions_never_collide(tmp_path) -> None:
    """Fig. 8's sets are cached as ``noaug-0-frac0.2`` and ``noaug-0-frac0.5``: the dot must not
    be taken for a suffix (both once landed in ``noaug-0-frac0.patches.npy``)."""
    pytest.importorskip("torch", reason="train.torchdata needs the [train] extra")
    from train.torchdata import patch_set

    recs = _records()
    a, _ = patch_set("noaug", recs[:2], 0, tmp_path / "noaug-0-frac0.2", loader=_painted)
    b, _ = patch_set("noaug", recs, 0, tmp_path / "noaug-0-frac0.5", loader=_painted)
    assert (len(a), len(b)) == (2, len(recs))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "noaug-0-frac0.2.patches.npy" in names and "noaug-0-frac0.5.patches.npy" in names


def test_orientation_tag_names_restricted_sets() -> None:
    pytest.importorskip("torch", reason="train.torchdata needs the [train] extra")
    from train.torchdata import orientation_tag

    assert orientation_tag(range(8)) == ""  # the paper's set keeps its old cache names
    assert orientation_tag(AXIS_PRESERVING) == "-d0246"
    assert orientation_tag((6, 0)) == "-d06"


GRID_CORNERS = {(x, y) for x in (0, 144, 288) for y in (0, 144, 288)}


def test_grid_share_puts_good_patches_at_test_grid_positions_only() -> None:
    """With ``grid_share=1`` every good patch sits where a test-grid patch does (corners and edges
    touch the image border, as deployed); defective patches still hold their defect."""
    recs = _records()
    rng = np.random.default_rng(4)
    batch = collect(sample_aug(recs, rng, batch_size=64, loader=_painted, grid_share=1.0))
    good = ~np.array([recs[i].defective for i in batch.record_index.tolist()])
    assert {tuple(c) for c in batch.corner[good].tolist()} <= GRID_CORNERS
    assert len({tuple(c) for c in batch.corner[good].tolist()}) > 4
    assert _check_contains(recs, batch) == int((~good).sum())


def test_grid_share_zero_is_the_papers_sampler_and_a_share_mixes() -> None:
    recs = _records()
    plain = collect(sample_aug(recs, np.random.default_rng(5), loader=_painted))
    zero = collect(sample_aug(recs, np.random.default_rng(5), loader=_painted, grid_share=0.0))
    assert np.array_equal(plain.corner, zero.corner) and np.array_equal(plain.patches, zero.patches)
    half = collect(sample_aug(recs * 20, np.random.default_rng(5), loader=_painted, grid_share=0.5))
    good = ~np.array([(recs * 20)[i].defective for i in half.record_index.tolist()])
    on_grid = np.array([tuple(c) in GRID_CORNERS for c in half.corner[good].tolist()])
    assert 0.35 < on_grid.mean() < 0.65


@pytest.mark.parametrize("share", [-0.1, 1.5])
def test_grid_share_outside_0_1_is_refused(share: float) -> None:
    with pytest.raises(ValueError, match=r"grid_share must be in 0\.\.1"):
        collect(sample_noaug(_records(), np.random.default_rng(0), grid_share=share))


def test_texture_repeat_multiplies_one_textures_patches_and_keeps_the_others() -> None:
    """A factor of 3 on texture 1 gives its good and defective images 3× the patches, each still
    holding its defect; the other textures' patches are the plain sampler's counts."""
    recs = _records()
    plain = collect(sample_aug(recs, np.random.default_rng(6), loader=_painted))
    more = collect(
        sample_aug(recs, np.random.default_rng(6), loader=_painted, texture_repeat=(1, 3, 1))
    )
    a, b = Counter(plain.labels.tolist()), Counter(more.labels.tolist())
    assert (b[2], b[3]) == (3 * a[2], 3 * a[3]) and a[2] > 0 and a[3] > 0
    assert all(b[k] == a[k] for k in (0, 1, 4, 5))
    defective = np.array([recs[i].defective for i in more.record_index.tolist()])
    assert _check_contains(recs, more) == int(defective.sum())
    ones = collect(
        sample_aug(recs, np.random.default_rng(6), loader=_painted, texture_repeat=(1, 1, 1))
    )
    assert np.array_equal(ones.patches, plain.patches)


@pytest.mark.parametrize("bad", [(1, 0, 1), (1, 1.5, 1), (1, True, 1), (1, -2, 1)])
def test_a_texture_repeat_that_is_not_a_whole_factor_is_refused(bad: tuple[object, ...]) -> None:
    with pytest.raises(ValueError, match=r"texture_repeat\[1\] \(class 2\) must be a whole number"):
        collect(sample_aug(_records(), np.random.default_rng(0), texture_repeat=bad))  # type: ignore[arg-type]


def test_a_texture_repeat_too_short_for_the_data_names_the_image_and_class() -> None:
    with pytest.raises(
        ValueError, match=r"t2/.*factors for classes 1-2, but this image is of class 3"
    ):
        collect(
            sample_aug(_records(), np.random.default_rng(0), loader=_painted, texture_repeat=(1, 2))
        )


def test_repeat_tag_names_only_a_changed_set() -> None:
    pytest.importorskip("torch", reason="train.torchdata needs the [train] extra")
    from train.torchdata import repeat_tag

    assert repeat_tag(()) == "" and repeat_tag((1,) * 6) == ""  # old cache names stay valid
    assert repeat_tag((1, 1, 1, 3, 1, 1)) == "-r1_1_1_3_1_1"
    assert repeat_tag((1, 12, 1)) != repeat_tag((1, 1, 21))
