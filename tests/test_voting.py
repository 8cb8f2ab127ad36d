"""Voting rules: argmax, texture majority and its tie rule, thresholds, logits vs probabilities."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from modelzoo import reference_vote

from pyinspect import _core
from pyinspect.errors import InputError
from pyinspect.voting import VoteResult, vote

# DAGM: 6 textures x {good, defective}; class 2t is texture t good, 2t + 1 texture t defective.
TEXTURE = tuple(k // 2 for k in range(12))
DEFECTIVE = tuple(k % 2 == 1 for k in range(12))


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x.astype(np.float64) - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def reference(
    scores: np.ndarray, texture: tuple, defective: tuple, is_logits: bool, threshold: float | None
) -> dict:
    return reference_vote(
        scores,
        np.asarray(texture),
        np.asarray(defective),
        is_logits=is_logits,
        threshold=threshold,
    )


def one_hot_logits(classes: list[int], k: int = 12, high: float = 5.0) -> np.ndarray:
    x = np.zeros((len(classes), k), np.float32)
    x[np.arange(len(classes)), classes] = high
    return x


def test_majority_texture_and_any_defective() -> None:
    # 5 patches of texture 2 (one of them defective), 4 of texture 0
    r = vote(one_hot_logits([4, 4, 5, 4, 4, 0, 0, 0, 0]), TEXTURE, DEFECTIVE)
    assert isinstance(r, VoteResult)
    assert r.texture == 2
    assert r.defective is True
    assert r.patch_class.tolist() == [4, 4, 5, 4, 4, 0, 0, 0, 0]
    assert r.patch_defective.tolist() == [False, False, True] + [False] * 6
    assert r.texture_votes.tolist() == [4, 0, 5, 0, 0, 0]
    assert r.patch_class.dtype == np.int32 and r.patch_score.dtype == np.float32
    assert r.patch_defective.dtype == np.bool_ and r.texture_votes.dtype == np.int32


def test_all_good_is_not_defective() -> None:
    r = vote(one_hot_logits([6] * 9), TEXTURE, DEFECTIVE)
    assert (r.texture, r.defective) == (3, False)


def test_argmax_tie_goes_to_the_lower_class() -> None:
    r = vote(np.zeros((2, 12), np.float32), TEXTURE, DEFECTIVE)
    assert r.patch_class.tolist() == [0, 0]
    np.testing.assert_allclose(r.patch_score, 1 / 12, rtol=1e-6)


def test_texture_tie_goes_to_the_larger_probability_mass() -> None:
    # texture 1 and texture 4 get two votes each; texture 4's patches are more confident
    logits = one_hot_logits([2, 3, 8, 9], high=1.0)
    logits[2:, [8, 9]] += 3.0
    r = vote(logits, TEXTURE, DEFECTIVE)
    assert r.texture_votes.tolist() == [0, 2, 0, 0, 2, 0]
    assert r.texture == 4
    logits[:2, [2, 3]] += 6.0  # now texture 1 has the larger mass
    assert vote(logits, TEXTURE, DEFECTIVE).texture == 1


def test_texture_tie_with_equal_mass_goes_to_the_lower_id() -> None:
    probs = np.zeros((2, 12), np.float32)  # mirror-image patches, exactly equal mass 1.0 each
    probs[0, [10, 2]] = [0.75, 0.25]
    probs[1, [2, 10]] = [0.75, 0.25]
    r = vote(probs, TEXTURE, DEFECTIVE, is_logits=False)
    assert r.texture_votes.tolist() == [0, 1, 0, 0, 0, 1]
    assert r.texture == 1


def test_threshold_uses_summed_defect_probability() -> None:
    # class 0 (good) wins the argmax but the defective classes together hold 0.6
    probs = np.zeros((1, 12), np.float32)
    probs[0, [0, 1, 3, 5]] = [0.4, 0.2, 0.2, 0.2]
    assert vote(probs, TEXTURE, DEFECTIVE, is_logits=False).defective is False
    r = vote(probs, TEXTURE, DEFECTIVE, is_logits=False, threshold=0.5)
    np.testing.assert_allclose(r.patch_defect_prob, [0.6], rtol=1e-6)
    assert r.defective is True and r.patch_class.tolist() == [0]
    assert vote(probs, TEXTURE, DEFECTIVE, is_logits=False, threshold=0.61).defective is False
    assert vote(probs, TEXTURE, DEFECTIVE, is_logits=False, threshold=0.0).defective is True


def test_threshold_boundary_is_inclusive() -> None:
    """patch_defect_prob >= threshold, compared in float32 like the reported probabilities."""
    probs = np.array([[0.75, 0.25]], np.float32)
    r = vote(probs, (0, 0), (False, True), is_logits=False, threshold=0.25)
    assert r.patch_defective.tolist() == [True]
    r = vote(
        probs,
        (0, 0),
        (False, True),
        is_logits=False,
        threshold=np.nextafter(np.float32(0.25), np.float32(1)),
    )
    assert r.patch_defective.tolist() == [False]


def test_probabilities_and_logits_agree() -> None:
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(9, 12)).astype(np.float32)
    a = vote(logits, TEXTURE, DEFECTIVE, threshold=0.3)
    b = vote(softmax(logits).astype(np.float32), TEXTURE, DEFECTIVE, is_logits=False, threshold=0.3)
    np.testing.assert_array_equal(a.patch_class, b.patch_class)
    np.testing.assert_allclose(a.patch_score, b.patch_score, rtol=1e-5)
    np.testing.assert_allclose(a.patch_defect_prob, b.patch_defect_prob, rtol=1e-5)
    assert (a.texture, a.defective) == (b.texture, b.defective)


def test_probabilities_are_used_as_given() -> None:
    probs = np.array([[0.1, 0.3, 0.2, 0.1]], np.float32)  # not normalised: no softmax applied
    r = vote(probs, (0, 0, 1, 1), (False, True, False, True), is_logits=False)
    assert r.patch_score.tolist() == [np.float32(0.3)]
    np.testing.assert_allclose(r.patch_defect_prob, [0.4], rtol=1e-6)


def test_softmax_is_stable_for_huge_logits() -> None:
    logits = np.array([[1e30, 1e30 - 1e24, -1e30, 0.0]], np.float32)
    r = vote(logits, (0, 1, 1, 0), (False, True, False, False))
    assert np.isfinite(r.patch_score).all() and np.isfinite(r.patch_defect_prob).all()
    np.testing.assert_allclose(r.patch_score, [1.0])
    r = vote(np.array([[1000.0, 1001.0]], np.float32), (0, 1), (False, True))
    np.testing.assert_allclose(r.patch_score, [1 / (1 + np.exp(-1.0))], rtol=1e-6)


@settings(max_examples=200, deadline=None)
@given(
    hnp.arrays(
        np.float32,
        st.tuples(st.integers(1, 12), st.integers(1, 8)),
        elements=st.sampled_from([-2.0, -1.0, 0.0, 0.5, 1.0, 3.0]) | st.floats(-50, 50, width=32),
    ),
    st.data(),
)
def test_vote_matches_the_reference_rules(scores: np.ndarray, data: st.DataObject) -> None:
    k = scores.shape[1]
    texture = tuple(data.draw(st.lists(st.integers(0, min(4, k - 1)), min_size=k, max_size=k)))
    defective = tuple(data.draw(st.lists(st.booleans(), min_size=k, max_size=k)))
    threshold = data.draw(st.none() | st.floats(0, 1))
    r = vote(scores, texture, defective, threshold=threshold)
    want = reference(scores, texture, defective, True, threshold)
    np.testing.assert_array_equal(r.patch_class, want["patch_class"])
    np.testing.assert_allclose(r.patch_score, want["patch_score"], rtol=1e-6)
    np.testing.assert_allclose(r.patch_defect_prob, want["patch_defect_prob"], rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(r.texture_votes, want["texture_votes"])
    if threshold is None or not np.isclose(want["patch_defect_prob"], threshold, atol=1e-6).any():
        np.testing.assert_array_equal(r.patch_defective, want["patch_defective"])
    assert r.defective == bool(r.patch_defective.any())
    top = np.flatnonzero(want["texture_votes"] == want["texture_votes"].max())
    mass = np.sort(want["texture_mass"][top])[::-1]
    if len(top) == 1 or mass[0] - mass[1] > 1e-9:  # else the mass tie is decided by rounding
        assert r.texture == want["texture"]
    assert r.texture in top


def test_result_is_frozen() -> None:
    r = vote(one_hot_logits([0]), TEXTURE, DEFECTIVE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.texture = 3  # type: ignore[misc]


def test_class_tables_in_any_form_give_the_same_result() -> None:
    logits = one_hot_logits([4, 5, 4])
    expected = vote(logits, TEXTURE, DEFECTIVE)
    for texture, defective in [
        (list(TEXTURE), list(DEFECTIVE)),
        (np.array(TEXTURE, np.int64), np.array(DEFECTIVE)),
        (np.array(TEXTURE, np.int32), np.array(DEFECTIVE, np.bool_)),
    ]:
        r = vote(logits.astype(np.float64), texture, defective)  # type: ignore[arg-type]
        assert (r.texture, r.defective) == (expected.texture, expected.defective)
        np.testing.assert_array_equal(r.patch_class, expected.patch_class)


NAN_SCORES = one_hot_logits([0, 0, 0])
NAN_SCORES[2, 3] = np.nan
INF_SCORES = one_hot_logits([0, 0])
INF_SCORES[1, 0] = -np.inf


@pytest.mark.parametrize(
    ("scores", "texture", "defective", "kwargs", "match"),
    [
        (
            NAN_SCORES,
            TEXTURE,
            DEFECTIVE,
            {},
            "score of patch 2, class 3 is nan; scores must be finite",
        ),
        (INF_SCORES, TEXTURE, DEFECTIVE, {}, "score of patch 1, class 0 is -inf"),
        (np.zeros((0, 12)), TEXTURE, DEFECTIVE, {}, r"N, K >= 1, got \(0, 12\)"),
        (np.zeros(12), TEXTURE, DEFECTIVE, {}, r"scores must have shape \(N, K\) .*got \(12,\)"),
        (
            np.zeros((9, 10)),
            TEXTURE,
            DEFECTIVE,
            {},
            "scores have 10 classes but class_texture has 12",
        ),
        (np.zeros((9, 12)), TEXTURE, DEFECTIVE[:11], {}, "class_defective 11 entries"),
        (
            np.zeros((9, 12)),
            TEXTURE,
            DEFECTIVE,
            {"threshold": 1.5},
            r"threshold must be in \[0, 1\]",
        ),
        (np.zeros((9, 12)), TEXTURE, DEFECTIVE, {"threshold": np.nan}, "got nan"),
        (np.zeros((9, 12)), TEXTURE, DEFECTIVE, {"threshold": -0.1}, "got -0.1"),
        (
            np.zeros((1, 2)),
            (0, -1),
            (False, True),
            {},
            r"class 1 has texture id -1; ids must be in \[0, 2\)",
        ),
        (np.zeros((1, 2)), (0.5, 1.0), (False, True), {}, "integer texture ids, got float64"),
        (np.zeros((1, 2)), (0, 1), (0, 1), {}, "class_defective must be bool, got int64"),
        (np.zeros((1, 2)), [[0, 1]], (False, True), {}, r"must be 1-D .*got shape \(1, 2\)"),
        ([["a", "b"]], (0, 1), (False, True), {}, "scores must be a float array"),
    ],
)
def test_bad_vote_inputs_are_named(
    scores: object, texture: object, defective: object, kwargs: dict, match: str
) -> None:
    with pytest.raises(InputError, match=match):
        vote(scores, texture, defective, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((NAN_SCORES, TEXTURE, DEFECTIVE), "patch 2, class 3 is nan"),
        ((np.zeros((0, 12), np.float32), TEXTURE, DEFECTIVE), "at least one patch"),
        ((np.zeros((2, 12), np.float32), TEXTURE[:5], DEFECTIVE), "12 classes but the class table"),
        ((np.zeros((2, 12), np.float32), TEXTURE, DEFECTIVE, True, 2.0), "threshold must be in"),
        ((np.zeros(12, np.float32), TEXTURE, DEFECTIVE), r"shape \(N, K\), got \(12,\)"),
    ],
)
def test_core_vote_refuses_without_crashing(args: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _core.vote(*args)
