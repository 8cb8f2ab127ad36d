"""Training on a chosen device: ``--device`` resolution, inputs that follow the model, the GPU
path (marked ``gpu``; skipped without CUDA), and the restart choice of a distilled student."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the training pipeline needs the [train] extra")

from train.distill import DistillConfig, distill, full_fp32  # noqa: E402
from train.fit import FitConfig, fit  # noqa: E402
from train.models import (  # noqa: E402
    ModelError,
    build_model,
    load_checkpoint,
    model_device,
    resolve_device,
    to_input,
)
from train.presets import get_preset  # noqa: E402
from train.stages import distill_key, pick_restart, record_other_machine  # noqa: E402


def _need_cuda() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU: torch.cuda.is_available() is False")


def test_cpu_and_auto_resolve_on_a_machine_without_a_gpu() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == want
    assert resolve_device(" CPU ").type == "cpu"


@pytest.mark.parametrize("name", ["tpu", "gpu0", "cuda:x", "meta"])
def test_unknown_devices_are_named_in_the_error(name: str) -> None:
    with pytest.raises(ModelError, match=name.strip()):
        resolve_device(name)


def test_cuda_without_a_gpu_says_so() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU: the no-GPU error cannot happen here")
    for name in ("cuda", "cuda:1"):
        with pytest.raises(ModelError, match=r"sees no CUDA GPU.*--device cpu"):
            resolve_device(name)


def test_cli_device_error_is_one_line_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU: --device cuda is valid here")
    from train.evaluate import main

    ck = tmp_path / "s.pt"
    from train.models import save_checkpoint

    save_checkpoint(
        ck,
        build_model("student", c=(2, 2, 2, 2, 2), fc=8),
        "student",
        {"c": (2, 2, 2, 2, 2), "fc": 8},
        None,
        {},
    )
    from train.synth import synthesize

    synthesize(tmp_path / "data", classes=1, good=2, defective=1, seed=3, workers=1, progress=False)
    code = main(["--checkpoint", str(ck), "--data", str(tmp_path / "data"), "--device", "cuda"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: device 'cuda'") and "Traceback" not in err


def test_to_input_moves_pixels_to_the_device_before_converting() -> None:
    patches = np.random.default_rng(0).integers(0, 256, (3, 8, 8), dtype=np.uint8)
    plain = to_input(patches, (0.5,) * 3, (0.25,) * 3)
    moved = to_input(patches, (0.5,) * 3, (0.25,) * 3, device="cpu")
    assert moved.device.type == "cpu" and torch.equal(plain, moved)
    assert float(moved[0, 0, 0, 0]) == pytest.approx((patches[0, 0, 0] / 255 - 0.5) / 0.25)


def test_model_device_is_where_the_weights_are() -> None:
    assert model_device(build_model("student", c=(2, 2, 2, 2, 2), fc=8)).type == "cpu"
    assert model_device(torch.nn.ReLU()).type == "cpu"  # no parameters: the CPU


def test_full_fp32_turns_tf32_off_on_cuda_only_and_restores_it() -> None:
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    with full_fp32(torch.device("cpu")):
        assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == before
    torch.backends.cudnn.allow_tf32 = True
    try:
        with full_fp32(torch.device("cuda")):  # flags only: no GPU is touched
            assert not torch.backends.cudnn.allow_tf32
            assert not torch.backends.cuda.matmul.allow_tf32
        assert torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


# ------------------------------------------------------------------ restarts of a student


def test_the_restart_with_the_lowest_final_loss_is_kept() -> None:
    assert pick_restart([26.4, 15.5, 22.9]) == 1
    assert pick_restart([None, 30.0]) == 1  # a restart without a loss ranks last
    assert pick_restart([15.5, 15.5]) == 0  # ties: the first seed
    with pytest.raises(ValueError, match="no restarts"):
        pick_restart([])


def test_distill_key_names_restarts_hard_labels_and_c1_init_only_when_used() -> None:
    base = distill_key(get_preset("smoke"), 12, 96)
    assert "restarts" not in base and "hard_weight" not in base and "c1_init" not in base
    key = distill_key(
        get_preset("smoke", distill_restarts=3, distill_hard_weight=0.5, student_c1_init="basis"),
        12,
        96,
    )
    assert key == {**base, "restarts": 3, "hard_weight": 0.5, "c1_init": "basis"}
    ones = distill_key(get_preset("smoke", aug_texture_repeat=(1,) * 6), 12, 96)
    assert ones == base  # all-ones factors are the plain sampler: old checkpoints still match
    more = distill_key(get_preset("smoke", aug_texture_repeat=(1, 1, 1, 3, 1, 1)), 12, 96)
    assert more == {**base, "texture_repeat": [1, 1, 1, 3, 1, 1]}


def test_a_run_resumed_elsewhere_records_the_first_machine_once() -> None:
    gpu = {"platform": "linux", "device": "NVIDIA H200", "torch_threads": 2}
    cpu = {"platform": "linux", "device": "cpu", "torch_threads": 2}
    results: dict = {"machine": gpu, "wall_seconds": 296.0, "timings": {"student": 84.8}}
    record_other_machine(results, cpu)
    assert results["timings"] == {}  # this machine's stages start afresh
    results["machine"] = cpu
    record_other_machine(results, cpu)  # a second resume on the same machine changes nothing
    assert results["other_machines"] == [
        {"machine": gpu, "wall_seconds": 296.0, "timings": {"student": 84.8}}
    ]
    same: dict = {"machine": cpu}
    record_other_machine(same, cpu)
    assert "other_machines" not in same


# ------------------------------------------------------------------ the GPU path


@pytest.mark.gpu
def test_fit_and_distill_run_on_cuda_and_save_cpu_checkpoints(tmp_path: Path) -> None:
    _need_cuda()
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (16, 224, 224), dtype=np.uint8)
    y = rng.integers(0, 12, 16).astype(np.int64)
    cfg = FitConfig(
        arch="student",
        arch_kwargs={"c": (2, 2, 2, 2, 2), "fc": 8},
        iters=3,
        batch=4,
        eval_at=[],
        threads=1,
        device="cuda",
    )
    summary = fit(cfg, x, y, [], tmp_path / "t.pt", tmp_path / "t.jsonl", progress=False)
    assert summary["iterations"] == 3
    _, ckpt = load_checkpoint(tmp_path / "t.pt")  # readable on the CPU
    assert all(v.device.type == "cpu" for v in ckpt["state_dict"].values())
    targets = rng.normal(size=(16, 12)).astype(np.float32)
    cfg = DistillConfig(widths=(2,) * 5, fc=8, epochs=1, batch=4, batchnorm=True, device="cuda")
    distill(x, targets, [], tmp_path / "s.pt", tmp_path / "s.jsonl", cfg, progress=False)
    meta = torch.load(tmp_path / "s.pt", map_location="cpu", weights_only=False)["meta"]
    assert meta["device"] == torch.cuda.get_device_name()
    events = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert events[-1]["event"] == "done"
