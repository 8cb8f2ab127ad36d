"""train.evaluate: the §4 metrics (accuracy, TPR/TNR, confusion) and the runtime voter glue."""

from __future__ import annotations

import numpy as np
import pytest

from train.evaluate import (
    CLASS_DEFECTIVE,
    CLASS_TEXTURE,
    EvalResult,
    compute_metrics,
    format_table3,
    parity,
    vote_label,
)


def test_class_tables_follow_2t_plus_defective() -> None:
    assert CLASS_TEXTURE.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert CLASS_DEFECTIVE.tolist() == [False, True] * 6


def test_metrics_tpr_tnr_and_confusion() -> None:
    # texture 0: 2 defective (1 found), 2 good (both passed); texture 1: 1 good flagged defective
    labels = np.array([1, 1, 0, 0, 2])
    preds = np.array([1, 0, 0, 2, 3])  # good texture-0 image predicted as good texture 1
    m = compute_metrics(labels, preds)
    assert m["images"] == 5
    assert m["accuracy"] == pytest.approx(2 / 5)
    assert m["texture_accuracy"] == pytest.approx(4 / 5)
    assert m["tpr"][0] == pytest.approx(0.5)
    assert m["tnr"][0] == pytest.approx(1.0)  # TNR counts the good verdict, not the texture
    assert m["tnr"][1] == pytest.approx(0.0)
    assert m["tpr"][1] is None and m["tpr"][5] is None
    conf = np.array(m["confusion"])
    assert conf.shape == (12, 12) and conf.sum() == 5
    assert conf[1, 0] == 1 and conf[0, 2] == 1 and conf[2, 3] == 1
    table = format_table3(m)
    assert "| 1 | 50.00 | 100.00 |" in table and "| 6 | - | - |" in table


def _logits(classes: list[int]) -> np.ndarray:
    out = np.full((len(classes), 12), -5.0, np.float32)
    out[np.arange(len(classes)), classes] = 5.0
    return out


def test_vote_label_majority_texture_and_any_defective() -> None:
    pytest.importorskip("pyinspect._core", reason="the C++ core is not built")
    label, pc = vote_label(_logits([4, 4, 4, 4, 4, 4, 4, 4, 4]))
    assert label == 4 and pc.tolist() == [4] * 9
    # one defective patch of another texture: texture by majority (2), defective by any
    label, _ = vote_label(_logits([4, 4, 4, 4, 4, 4, 4, 4, 7]))
    assert label == 2 * 2 + 1


def test_parity_counts_mismatching_verdicts() -> None:
    a = EvalResult(np.array([0, 1]), np.array([0, 1]), paths=["a.png", "b.png"])
    b = EvalResult(np.array([0, 1]), np.array([0, 0]), paths=["a.png", "b.png"])
    assert parity(a, b) == {"images": 2, "mismatches": 1, "examples": ["b.png"]}
    assert a.accuracy == 1.0 and b.accuracy == 0.5
