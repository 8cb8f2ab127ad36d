"""scripts/student_diagnostics.py: the AUC the report's student diagnosis rests on."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="the AUC uses scikit-learn (the [train] extra)")
_PATH = Path(__file__).resolve().parents[1] / "scripts" / "student_diagnostics.py"
_spec = importlib.util.spec_from_file_location("student_diagnostics", _PATH)
diag = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(diag)


def test_auc_extremes_ties_and_a_hand_count() -> None:
    y = np.array([0, 0, 1, 1])
    assert diag.auc(np.array([0.1, 0.2, 0.8, 0.9]), y) == 1.0
    assert diag.auc(np.array([0.9, 0.8, 0.2, 0.1]), y) == 0.0
    assert diag.auc(np.zeros(4), y) == 0.5  # a constant score says nothing
    # positives 0.5, 0.3 vs negatives 0.4, 0.1: pairs won 2 + 1 of 4
    assert diag.auc(np.array([0.4, 0.1, 0.5, 0.3]), y) == 0.75


def test_cli_rejects_an_unknown_loss(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        diag.main(["train", "mse"])
    assert "invalid choice: 'mse'" in capsys.readouterr().err


def test_group_mean_loss_is_eq1_of_the_group_means() -> None:
    targets = np.array([[1.0, 0.0], [3.0, 0.0], [10.0, 2.0], [10.0, 4.0]])
    # groups {0,1}: means (2,0), squared errors 1+1; {2,3}: means (10,3), errors 1+1 -> 0.5*4/4
    assert diag.group_mean_loss(targets, np.array([0, 0, 1, 1])) == 0.5
    assert diag.group_mean_loss(targets, np.arange(4)) == 0.0  # every point its own group


def test_texture_subset_picks_both_classes_of_each_texture() -> None:
    labels = np.arange(12).repeat(2)  # texture k (1-based) = classes 2k-2 (good), 2k-1 (defective)
    keep = diag.texture_subset(labels, [3, 5])
    assert sorted(set(labels[keep])) == [4, 5, 8, 9] and len(keep) == 8
    assert len(diag.texture_subset(labels, None)) == len(labels)
    with pytest.raises(ValueError, match=r"textures are 1..6, got \[0, 7\]"):
        diag.texture_subset(labels, [0, 3, 7])
