"""train.defect_offsets: the numpy voter matches the runtime's, offsets cut errors where a
texture's defect margin is shifted, and folding them changes the network's logits exactly."""

from __future__ import annotations

import numpy as np
import pytest

from pyinspect.voting import vote
from train.defect_offsets import (
    choose_offsets,
    class_offsets,
    fold_offsets,
    image_errors,
    vote_labels,
)
from train.evaluate import CLASS_DEFECTIVE, CLASS_TEXTURE


def runtime_labels(logits: np.ndarray) -> np.ndarray:
    out = []
    for z in logits:
        r = vote(np.ascontiguousarray(z, np.float32), CLASS_TEXTURE, CLASS_DEFECTIVE)
        out.append(2 * int(r.texture) + int(bool(r.defective)))
    return np.asarray(out)


@pytest.mark.parametrize("scale", [0.3, 3.0])
def test_numpy_vote_is_the_runtime_voter(scale: float) -> None:
    rng = np.random.default_rng(1)
    logits = (rng.standard_normal((400, 9, 12)) * scale).astype(np.float32)
    # texture ties (4 + 4 + 1 patches) and exact logit ties, where the tie rules decide
    logits[:50, :4, 0] += 6.0
    logits[:50, 4:8, 2] += 6.0
    logits[50:80] = np.round(logits[50:80])
    expect = runtime_labels(logits)
    assert np.array_equal(vote_labels(logits, CLASS_TEXTURE, CLASS_DEFECTIVE), expect)


def test_class_offsets_touch_only_defective_classes() -> None:
    off = class_offsets([1, 2, 3, 4, 5, 6], CLASS_TEXTURE, CLASS_DEFECTIVE)
    assert off.tolist() == [0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6]


def synthetic_logits(rng: np.random.Generator, n: int, bias_t3: float) -> tuple[np.ndarray, ...]:
    """Images of 6 textures whose defect logit separates good from defective patches, except
    that texture 3's defective logit is shifted up by ``bias_t3`` (false alarms there)."""
    labels = np.repeat(np.arange(12), n)
    logits = rng.standard_normal((len(labels), 9, 12)).astype(np.float32)
    for i, y in enumerate(labels):
        t, d = divmod(int(y), 2)
        logits[i, :, 2 * t] += 7.0  # texture t, good
        logits[i, :, 2 * t + 1] += 2.0 + (bias_t3 if t == 3 else 0.0)
        if d:
            logits[i, rng.integers(9), 2 * t + 1] += 9.0  # one defective patch
    return logits, labels


def test_offsets_remove_a_textures_false_alarms_and_leave_the_others_at_zero() -> None:
    rng = np.random.default_rng(0)
    logits, labels = synthetic_logits(rng, 30, bias_t3=3.5)
    offsets, rec = choose_offsets(logits, labels, CLASS_TEXTURE, CLASS_DEFECTIVE)
    assert rec["errors_before_per_texture"][3] > 20  # texture 3's good images flagged
    assert rec["errors_after"] < rec["errors_before"]
    assert rec["errors_after_per_texture"][3] <= 1
    assert offsets[3] > 2.0
    # textures without errors keep the paper's rule (ties go to 0)
    clean = [t for t in range(6) if rec["errors_before_per_texture"][t] == 0]
    assert clean and all(offsets[t] == 0 for t in clean)
    assert rec["errors_after"] == image_errors(
        logits, labels, offsets, CLASS_TEXTURE, CLASS_DEFECTIVE
    )
    # the record's errors are what the runtime voter makes on the shifted logits
    shifted = logits - class_offsets(offsets, CLASS_TEXTURE, CLASS_DEFECTIVE)
    assert int((runtime_labels(shifted) != labels).sum()) == rec["errors_after"]


def test_choose_offsets_names_a_bad_shape() -> None:
    with pytest.raises(ValueError, match=r"logits must be \[N, P, 12\]"):
        choose_offsets(np.zeros((3, 9, 10)), np.zeros(3), CLASS_TEXTURE, CLASS_DEFECTIVE)


def test_fold_offsets_shifts_the_models_defective_logits() -> None:
    torch = pytest.importorskip("torch", reason="folding needs the [train] extra")
    from train.models import build_model

    torch.manual_seed(0)
    model = build_model("student", c=(2, 2, 2, 2, 2), fc=8).eval()
    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        before = model(x).numpy()
    offsets = np.array([0.5, 0, 1.5, 0, 0, -1.0], np.float32)
    fold_offsets(model, offsets, CLASS_TEXTURE, CLASS_DEFECTIVE)
    with torch.no_grad():
        after = model(x).numpy()
    expect = before - class_offsets(offsets, CLASS_TEXTURE, CLASS_DEFECTIVE)
    np.testing.assert_allclose(after, expect, atol=1e-5)
