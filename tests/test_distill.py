"""train.distill: Fig. 10's sweep widths, Eq. 1 training and the teacher-logit cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the training pipeline needs the [train] extra")

from train.distill import DistillConfig, distill, sweep_widths, teacher_logits  # noqa: E402
from train.models import build_model, save_checkpoint  # noqa: E402


def test_sweep_halves_all_to_one_sixteenth_then_c4_c5_to_one_128th() -> None:
    assert sweep_widths() == [
        (64, 128, 256, 512, 512),
        (32, 64, 128, 256, 256),
        (16, 32, 64, 128, 128),
        (8, 16, 32, 64, 64),
        (4, 8, 16, 32, 32),
        (4, 8, 16, 16, 16),
        (4, 8, 16, 8, 8),
        (4, 8, 16, 4, 4),
    ]


def test_teacher_logits_are_cached_and_reused(tmp_path: Path) -> None:
    torch.manual_seed(0)
    teacher = build_model("student", c=(2, 2, 2, 2, 2), fc=8)
    ck = tmp_path / "t.pt"
    save_checkpoint(ck, teacher, "student", {"c": (2, 2, 2, 2, 2), "fc": 8}, None, {})
    patches = np.random.default_rng(0).integers(0, 256, (5, 224, 224), dtype=np.uint8)
    cache = tmp_path / "t.logits.npy"
    first = teacher_logits(ck, patches, cache, batch=2, progress=False)
    assert first.shape == (5, 12) and cache.is_file()
    np.save(cache, first + 1.0)  # a cache hit must not recompute
    assert np.array_equal(teacher_logits(ck, patches, cache, progress=False), first + 1.0)


def test_distill_regresses_the_teacher_logits(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    patches = rng.integers(0, 256, (32, 224, 224), dtype=np.uint8)
    # a learnable target: logits that depend on the patch's mean brightness
    bright = patches.reshape(32, -1).mean(1) / 255.0
    targets = np.outer(bright - 0.5, np.linspace(-4, 4, 12)).astype(np.float32)
    out = distill(
        patches,
        targets,
        [],
        tmp_path / "s.pt",
        tmp_path / "s.jsonl",
        c=(2, 2, 2, 2, 2),
        fc=16,
        epochs=4,
        batch=16,
        progress=False,
    )
    losses = [
        e["loss"]
        for e in map(__import__("json").loads, (tmp_path / "s.jsonl").read_text().splitlines())
        if e.get("event") == "eval"
    ]
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert out["widths"] == [2, 2, 2, 2, 2] and (tmp_path / "s.pt").is_file()
    # the checkpoint carries its own summary (reproduce reports it when it reuses the student)
    import torch

    saved = torch.load(tmp_path / "s.pt", weights_only=False)["meta"]["summary"]
    assert saved["final_loss"] == out["final_loss"]
    assert [i for i, _ in saved["curve"]] == [i for i, _ in out["curve"]] == [2, 4, 6, 8]


def test_hard_label_term_changes_training_and_needs_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    patches = rng.integers(0, 256, (16, 224, 224), dtype=np.uint8)
    targets = rng.normal(0, 1, (16, 12)).astype(np.float32)
    kw = {"c": (2, 2, 2, 2, 2), "fc": 8, "epochs": 1, "batch": 8, "progress": False}
    with pytest.raises(ValueError, match="needs the patches' labels"):
        distill(
            patches, targets, [], tmp_path / "a.pt", tmp_path / "a.jsonl", hard_weight=1.0, **kw
        )
    labels = rng.integers(0, 12, 16)
    plain = distill(patches, targets, [], tmp_path / "p.pt", tmp_path / "p.jsonl", **kw)
    mixed = distill(
        patches,
        targets,
        [],
        tmp_path / "m.pt",
        tmp_path / "m.jsonl",
        labels=labels,
        hard_weight=5.0,
        **kw,
    )
    assert mixed["final_loss"] > plain["final_loss"]  # the CE term is added to Eq. 1


def test_batchnorm_distillation_saves_the_plain_student(tmp_path: Path) -> None:
    """Trained with BN, saved folded: the checkpoint is the Table 1 network (that folding keeps
    the eval-mode function is tested in test_models)."""
    from train.models import load_checkpoint, normalization, to_input

    rng = np.random.default_rng(1)
    patches = rng.integers(0, 256, (32, 224, 224), dtype=np.uint8)
    targets = rng.normal(0, 3, (32, 12)).astype(np.float32)
    cfg = DistillConfig(widths=(2, 2, 2, 2, 2), fc=16, epochs=2, batch=16, batchnorm=True)
    out = distill(
        patches, targets, [], tmp_path / "bn.pt", tmp_path / "bn.jsonl", cfg, progress=False
    )
    model, ckpt = load_checkpoint(tmp_path / "bn.pt")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert ckpt["arch_kwargs"] == {"c": [2, 2, 2, 2, 2], "fc": 16}
    assert ckpt["meta"]["trained_with_batchnorm"] is True
    assert set(ckpt["init_state_dict"]) == set(ckpt["state_dict"])  # w0 in the same form
    assert out["final_loss"] is not None
    # the saved network is not the untrained one
    w0 = ckpt["init_state_dict"]["features.0.weight"]
    assert not torch.equal(w0, ckpt["state_dict"]["features.0.weight"])
    with torch.no_grad():
        logits = model(to_input(patches[:4], *normalization("student")))
    assert torch.isfinite(logits).all()


def _cli(tmp_path: Path, out: Path, flags: str) -> int:
    """``python -m train distill`` from a 2-texture synthetic set and a tiny teacher (both made
    once per test folder) with the common tiny settings plus ``flags``."""
    from train.distill import main
    from train.synth import synthesize

    if not (tmp_path / "t.pt").is_file():
        synthesize(
            tmp_path / "data", classes=2, good=3, defective=2, seed=5, workers=1, progress=False
        )
        teacher = build_model("student", c=(2, 2, 2, 2, 2), fc=8)
        kwargs = {"c": (2, 2, 2, 2, 2), "fc": 8}
        save_checkpoint(tmp_path / "t.pt", teacher, "student", kwargs, None, {"iteration": 1})
    common = ["--teacher", str(tmp_path / "t.pt"), "--data", str(tmp_path / "data")]
    return main([*common, "--fc", "8", "--threads", "1", "--out", str(out), *flags.split()])


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def test_cli_passes_schedule_hard_labels_and_student_seed(tmp_path: Path) -> None:
    flags = "--widths 2,2,2,2,2 --epochs 2 --max-patches 64 --hard-weight 0.5 --student-seed 3"
    assert _cli(tmp_path, tmp_path / "out", flags + " --schedule cosine") == 0
    ck = tmp_path / "out" / "checkpoints" / "student-2x2x2x2x2-from-t-s3.pt"
    meta = _load(ck)["meta"]
    assert meta["seed"] == 3 and meta["epochs"] == 2
    assert meta["c1_init"] == "random"
    # the schedule reaches distill(): the same run at a constant rate gives another student
    assert _cli(tmp_path, tmp_path / "const", flags) == 0
    other = _load(tmp_path / "const" / "checkpoints" / ck.name)
    kept = _load(ck)
    assert not all(torch.equal(kept["state_dict"][k], v) for k, v in other["state_dict"].items())


def test_cli_c1_basis_init_reaches_the_student(tmp_path: Path) -> None:
    """--c1-init basis: the checkpoint's w0 is the basis and its meta says so; with --lr 0 nothing
    moves, so the saved C1 is still the basis (and --lr reaches Adam)."""
    from train.models import c1_basis

    flags = "--widths 4,2,2,2,2 --epochs 1 --max-patches 32 --c1-init basis --lr 0 --batch 8"
    assert _cli(tmp_path, tmp_path / "out", flags) == 0
    ck = _load(tmp_path / "out" / "checkpoints" / "student-4x2x2x2x2-from-t.pt")
    assert ck["meta"]["c1_init"] == "basis"
    w0 = ck["init_state_dict"]["features.0.weight"].sum(1)
    assert torch.allclose(w0, c1_basis(), atol=1e-6)
    assert torch.allclose(ck["state_dict"]["features.0.weight"].sum(1), c1_basis(), atol=1e-6)


def test_distill_config_is_checked_and_overridden_by_keywords(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown schedule 'linear'; expected 'constant' or"):
        DistillConfig(schedule="linear")
    assert DistillConfig(widths=[2, 2, 2, 2, 2]).widths == (2, 2, 2, 2, 2)
    rng = np.random.default_rng(2)
    patches = rng.integers(0, 256, (8, 224, 224), dtype=np.uint8)
    targets = rng.normal(0, 1, (8, 12)).astype(np.float32)
    cfg = DistillConfig(widths=(2, 2, 2, 2, 2), fc=8, epochs=3, batch=4)
    # a keyword replaces one field of the config (c= is the widths' other name)
    out = distill(
        patches,
        targets,
        [],
        tmp_path / "s.pt",
        tmp_path / "s.jsonl",
        cfg,
        progress=False,
        epochs=1,
        c=(3, 2, 2, 2, 2),
    )
    assert out["widths"] == [3, 2, 2, 2, 2]
    assert _load(tmp_path / "s.pt")["meta"]["epochs"] == 1
