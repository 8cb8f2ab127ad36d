"""train.fit: log-spaced evaluation points, convergence, and a deterministic resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the training pipeline needs the [train] extra")

from train.fit import FitConfig, JsonLog, convergence_iteration, fit, log_iters  # noqa: E402
from train.models import load_checkpoint  # noqa: E402
from train.torchdata import batch_indices, epoch_order, materialize  # noqa: E402


def test_log_iters_are_log_spaced_and_end_at_total() -> None:
    assert log_iters(1000, 4) == [10, 46, 215, 1000]
    assert log_iters(5, 3, first=10) == [5]
    assert log_iters(0) == []


def test_convergence_is_first_point_within_half_a_point_of_the_best() -> None:
    assert convergence_iteration([(10, 0.5), (20, 0.992), (40, 0.996), (80, 0.99)]) == 20
    assert convergence_iteration([]) is None


def test_batches_depend_only_on_seed_and_iteration() -> None:
    a = batch_indices(100, 32, seed=3, iteration=4)  # epoch 1 (3 batches per epoch), step 1
    assert np.array_equal(a, epoch_order(100, 3, 1)[32:64])
    assert np.array_equal(a, batch_indices(100, 32, seed=3, iteration=4))
    assert not np.array_equal(a, batch_indices(100, 32, seed=4, iteration=4))


def test_materialize_accepts_batches_and_pairs_and_caps() -> None:
    batches = [(np.zeros((3, 4, 4), np.uint8), np.array([1, 2, 3]))]
    x, y = materialize(batches, max_patches=2)
    assert x.shape == (2, 4, 4) and y.tolist() == [1, 2]
    x, y = materialize([(np.ones((4, 4), np.uint8), 7)])
    assert x.shape == (1, 4, 4) and y.tolist() == [7]
    with pytest.raises(ValueError, match="no patches"):
        materialize([])


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (16, 224, 224), dtype=np.uint8), rng.integers(0, 12, 16)


def test_resumed_run_equals_uninterrupted_run(tmp_path: Path) -> None:
    x, y = _data()
    kw = {"c": (2, 2, 2, 2, 2), "fc": 8}
    full = FitConfig(arch="student", arch_kwargs=kw, iters=4, batch=4, eval_at=[2, 4])
    fit(full, x, y, [], tmp_path / "a.pt", tmp_path / "a.jsonl", progress=False)
    half = FitConfig(arch="student", arch_kwargs=kw, iters=2, batch=4, eval_at=[2])
    fit(half, x, y, [], tmp_path / "b.pt", tmp_path / "b.jsonl", progress=False)
    fit(full, x, y, [], tmp_path / "b.pt", tmp_path / "b.jsonl", progress=False)  # resumes at 2
    a, ca = load_checkpoint(tmp_path / "a.pt")
    b, cb = load_checkpoint(tmp_path / "b.pt")
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb), ka
    assert ca["meta"]["iteration"] == cb["meta"]["iteration"] == 4
    # the init weights (w0) survive the resume, for the γ analysis
    for k, v in ca["init_state_dict"].items():
        assert torch.equal(v, cb["init_state_dict"][k])
    events = [e["event"] for e in JsonLog(tmp_path / "b.jsonl").read()]
    assert events.count("resume") == 1 and events[-1] == "done"
    lines = (tmp_path / "a.jsonl").read_text().splitlines()
    assert [json.loads(s)["iteration"] for s in lines if '"eval"' in s] == [2, 4]


def test_data_fraction_subset_is_stratified_and_deterministic() -> None:
    """Fig. 8's smaller training sets keep every label's share (5,520 → 1,104 at 0.2)."""
    from collections import Counter
    from types import SimpleNamespace

    from train.fit import subset_records

    sizes = {k: 460 if k % 2 == 0 else 60 for k in range(12)}  # good / defective per texture
    recs = [SimpleNamespace(label=k, i=i) for k in range(12) for i in range(sizes[k])]
    sub = subset_records(recs, 0.2, seed=0)
    counts = Counter(r.label for r in sub)
    assert all(counts[k] == (92 if k % 2 == 0 else 12) for k in range(12))
    assert [r.i for r in sub] == [r.i for r in subset_records(recs, 0.2, seed=0)]
    assert [r.i for r in sub] != [r.i for r in subset_records(recs, 0.2, seed=1)]
    assert subset_records(recs, 1.0, seed=0) == recs
