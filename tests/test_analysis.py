"""Tests for train/analysis_math.py (γ, sparsity, d, TV, inversion, embedding) and ``analyze``."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="analysis needs the [train] extra (torch)")
from torch import nn  # noqa: E402

from train import analysis_math as am  # noqa: E402


# --------------------------------------------------------------------------- γ
def _tiny_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1), nn.ReLU()
    )


def test_weight_change_rate_untouched_is_zero() -> None:
    net = _tiny_net()
    sd = {k: v.clone() for k, v in net.state_dict().items()}
    gamma = am.weight_change_rate(sd, net.state_dict(), ["0", "2"])
    np.testing.assert_array_equal(gamma, [0.0, 0.0])


def test_weight_change_rate_known_perturbation() -> None:
    net = _tiny_net()
    w0 = {k: v.double() for k, v in net.state_dict().items()}  # float64: exact closed form
    w1 = {k: v.clone() for k, v in w0.items()}
    w1["0.weight"] = w0["0.weight"] * 1.5  # γ = 0.5 exactly
    delta = torch.zeros_like(w0["2.weight"])
    delta[0, 0, 0, 0] = 3.0
    delta[1, 1, 1, 1] = 4.0  # ‖Δ‖ = 5
    w1["2.weight"] = w0["2.weight"] + delta
    w1["2.bias"] = w0["2.bias"] + 100.0  # biases do not count
    gamma = am.weight_change_rate(w0, w1, ["0", "2"])
    expected = 5.0 / float(torch.linalg.vector_norm(w0["2.weight"].double()))
    np.testing.assert_allclose(gamma, [0.5, expected], rtol=1e-12)


def test_weight_change_rate_missing_key_names_it() -> None:
    net = _tiny_net()
    with pytest.raises(am.AnalysisError, match=r"no 'conv9.weight'"):
        am.weight_change_rate(net.state_dict(), net.state_dict(), ["conv9"])


# --------------------------------------------------------------------------- sparsity
def test_dead_channel_fraction_hand_built() -> None:
    act = torch.zeros(2, 4, 3, 3)
    act[0, 1, 2, 2] = 0.1  # input 0: channel 1 alive -> 3/4 dead
    act[1, :3, 0, 0] = 1.0  # input 1: channels 0..2 alive -> 1/4 dead
    np.testing.assert_allclose(am.dead_channel_fraction(act).numpy(), [0.75, 0.25])


def test_sparsity_accumulator_streams_batches_like_one_batch() -> None:
    gen = torch.Generator().manual_seed(1)
    act = torch.relu(torch.randn(10, 8, 2, 2, generator=gen) - 1.0)
    whole = am.SparsityAccumulator()
    whole.update("l", act)
    parts = am.SparsityAccumulator()
    for chunk in (act[:3], act[3:4], act[4:]):
        parts.update("l", chunk)
    expected = float(am.dead_channel_fraction(act).mean())
    assert parts.sparsity("l") == pytest.approx(expected, rel=1e-12)
    assert whole.sparsity("l") == pytest.approx(expected, rel=1e-12)
    assert parts.counts["l"] == 10
    assert 0.0 < expected < 1.0  # the data really has a mix of dead and live channels
    np.testing.assert_array_equal(parts.dead_per_channel["l"], whole.dead_per_channel["l"])


def test_sparsity_hooks_on_a_network_with_known_dead_channels() -> None:
    net = _tiny_net()
    with torch.no_grad():
        net[2].weight[:3] = 0.0
        net[2].bias[:3] = -1.0  # channels 0..2 of layer 2 are dead for every input
        net[2].bias[3:] = 50.0  # channels 3..5 always alive
    pairs = am.post_activation_modules(net, torch.zeros(1, 1, 5, 5))
    assert pairs == [("0", "1"), ("2", "3")]
    acc = am.SparsityAccumulator()
    handles = [net[int(a)].register_forward_hook(acc.hook(c)) for c, a in pairs]
    with torch.no_grad():
        net(torch.randn(7, 1, 5, 5))
    for h in handles:
        h.remove()
    assert acc.sparsity("2") == pytest.approx(0.5)
    assert acc.counts == {"0": 7, "2": 7}


def test_post_activation_modules_lite0_skips_linear_projections() -> None:
    timm = pytest.importorskip("timm", reason="lite0 comes from timm")
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=12).eval()
    pairs = dict(am.post_activation_modules(model, torch.zeros(1, 3, 64, 64)))
    assert pairs["conv_stem"] == "bn1.act"
    assert pairs["conv_head"] == "bn2.act"
    assert pairs["blocks.1.0.conv_pw"] == "blocks.1.0.bn1.act"
    assert pairs["blocks.1.0.conv_pwl"] is None  # BN with Identity act: no ReLU, no dead channel


# --------------------------------------------------------------------------- disentanglement
def _brute_force_d(x: np.ndarray, k: int) -> float:
    """Eq. 6 by the book: full D_E, k-NN graph, Floyd–Warshall O(N³)."""
    n = x.shape[0]
    de = np.linalg.norm(x[:, None, :] - x[None, :, :], axis=2)
    g = np.full((n, n), np.inf)
    np.fill_diagonal(g, 0.0)
    for i in range(n):
        order = [j for j in np.argsort(de[i], kind="stable") if j != i][:k]
        for j in order:
            g[i, j] = g[j, i] = de[i, j]
    for m in range(n):
        g = np.minimum(g, g[:, m : m + 1] + g[m : m + 1, :])
    iu = np.triu_indices(n, 1)
    return float(np.mean(np.abs(g[iu] - de[iu]) / de[iu]))


def test_disentanglement_zero_on_a_straight_line() -> None:
    rng = np.random.default_rng(0)
    t = np.linspace(0.0, 10.0, 200) ** 1.5  # uneven but smooth spacing keeps the graph connected
    direction = rng.normal(size=16)
    x = t[:, None] * direction[None, :] + rng.normal(size=16)[None, :]
    res = am.disentanglement(x, k=5, block=37)
    assert res.pairs == 200 * 199 // 2
    assert res.disconnected_pairs == 0 and res.duplicate_pairs == 0
    assert res.d < 1e-9


def test_disentanglement_positive_on_a_swiss_roll() -> None:
    from sklearn.datasets import make_swiss_roll

    x, _ = make_swiss_roll(600, noise=0.0, random_state=0)
    res = am.disentanglement(x, k=5)
    assert res.disconnected_pairs == 0
    assert res.d > 0.3  # geodesics along the roll are far longer than the chords


def test_disentanglement_equals_floyd_warshall() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(45, 6)) * np.array([5, 3, 1, 1, 0.5, 0.2])
    expected = _brute_force_d(x, k=5)
    for block in (7, 45, 500):
        res = am.disentanglement(x, k=5, block=block)
        assert res.d == pytest.approx(expected, rel=1e-9)
    assert expected > 0.01


def test_disentanglement_counts_disconnected_and_duplicate_pairs() -> None:
    rng = np.random.default_rng(4)
    a = rng.normal(size=(10, 3))
    b = rng.normal(size=(8, 3)) + 1000.0  # far away: its own component
    x = np.vstack([a, b, a[:1]])  # one duplicate of a[0]
    res = am.disentanglement(x, k=3)
    n = 19
    assert res.duplicate_pairs == 1
    assert res.disconnected_pairs == 11 * 8
    assert res.pairs == n * (n - 1) // 2 - 1 - 88
    assert math.isfinite(res.d)


def test_disentanglement_rejects_bad_input() -> None:
    with pytest.raises(am.AnalysisError, match=r"\[N >= 2, P\]"):
        am.disentanglement(np.zeros(5))
    with pytest.raises(am.AnalysisError, match="k must be in"):
        am.disentanglement(np.random.default_rng(0).normal(size=(4, 2)), k=4)


# --------------------------------------------------------------------------- TV and inversion
def test_total_variation_constant_is_exactly_zero_with_finite_gradient() -> None:
    x = torch.full((1, 1, 9, 7), 0.3, requires_grad=True)
    tv = am.total_variation(x)
    tv.backward()
    assert float(tv.detach()) == 0.0
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize(("h", "w", "col"), [(9, 7, 3), (5, 12, 1), (4, 4, 3)])
def test_total_variation_vertical_step(h: int, w: int, col: int) -> None:
    x = torch.zeros(h, w, dtype=torch.float64)
    x[:, col:] = 2.0  # a step of height 2 between column col-1 and col
    # one term per row i < H-1 at j = col-1 (needs col-1 <= W-2), each sqrt(2²) = 2
    assert float(am.total_variation(x)) == pytest.approx(2.0 * (h - 1))


def test_total_variation_single_pixel_and_channels_sum() -> None:
    x = torch.zeros(2, 4, 4, dtype=torch.float64)
    x[0, 1, 1] = 1.0  # contributes at (1,1): sqrt(1+1); at (0,1): dy=1; at (1,0): dx=1
    x[1] = x[0] * 3.0
    one = math.sqrt(2.0) + 2.0
    assert float(am.total_variation(x)) == pytest.approx(one * 4.0)


def test_inversion_reduces_the_objective_on_a_tiny_conv_net() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2))
    for p in net.parameters():
        p.requires_grad_(False)
    image = torch.rand(1, 1, 16, 16)
    with torch.no_grad():
        target = net(image)
    res = am.invert(
        net, target, (1, 1, 16, 16), tv_weight=1e-3, steps=80, lr=0.05, bounds=(0.0, 1.0)
    )
    start = float(am.inversion_objective(net, torch.full((1, 1, 16, 16), 0.5), target, 1e-3))
    final = float(am.inversion_objective(net, res.x, target, 1e-3))
    assert len(res.history) == 81  # the start and every step
    assert final == pytest.approx(min(res.history), rel=1e-5)  # x is the best iterate
    assert final < 0.3 * res.history[0]
    assert final < 0.3 * start
    assert float(res.x.min()) >= 0.0 and float(res.x.max()) <= 1.0


def test_inversion_batch_is_independent_per_image() -> None:
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU())
    images = torch.rand(2, 1, 8, 8)
    with torch.no_grad():
        targets = net(images)
    x0 = torch.full((2, 1, 8, 8), 0.5)
    both = am.invert(net, targets, (2, 1, 8, 8), steps=5, x0=x0, tv_weight=0.1)
    alone = [
        am.invert(net, targets[b : b + 1], (1, 1, 8, 8), steps=5, x0=x0[b : b + 1], tv_weight=0.1)
        for b in range(2)
    ]
    # exactly, not nearly: TV's gradient jumps where neighbours are equal, so any rounding
    # difference between a batched and a single-image pass would show as ~1e-3 after 5 steps
    assert torch.equal(both.x, torch.cat([r.x for r in alone]))
    assert both.best == [r.best[0] for r in alone]
    assert both.history == pytest.approx(
        [a + b for a, b in zip(alone[0].history, alone[1].history, strict=True)]
    )
    with pytest.raises(am.AnalysisError, match="target has 2 images, shape asks for 1"):
        am.invert(net, targets, (1, 1, 8, 8), steps=1)


def test_interpolate_endpoints_and_midpoint() -> None:
    a, b = torch.zeros(3), torch.ones(3) * 7.0
    steps = am.interpolate(a, b, 8)
    assert len(steps) == 8
    torch.testing.assert_close(steps[0], a)
    torch.testing.assert_close(steps[-1], b)
    torch.testing.assert_close(steps[1], torch.full((3,), 1.0))
    with pytest.raises(am.AnalysisError, match="shapes differ"):
        am.interpolate(a, torch.zeros(4))


# --------------------------------------------------------------------------- embedding
def test_embed_2d_separates_two_clusters() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(30, 20)) + np.eye(20)[0] * 20
    b = rng.normal(size=(30, 20)) + np.eye(20)[1] * 20
    pca, tsne = am.embed_2d(np.vstack([a, b]), seed=0)
    assert pca.shape == (60, 2) and tsne.shape == (60, 2)
    for emb in (pca, tsne):
        ca, cb = emb[:30].mean(0), emb[30:].mean(0)
        spread = max(emb[:30].std(0).max(), emb[30:].std(0).max())
        assert np.linalg.norm(ca - cb) > 3 * spread


def test_knn_agreement_separated_vs_mixed() -> None:
    rng = np.random.default_rng(0)
    groups = np.r_[np.zeros(40, int), np.ones(40, int)]
    apart = np.vstack([rng.normal(size=(40, 2)), rng.normal(size=(40, 2)) + 50])
    mixed = rng.normal(size=(80, 2))
    assert am.knn_agreement(apart, groups) == 1.0
    assert am.knn_agreement(mixed, groups) < 0.75


def test_nonzero_columns_keeps_distances() -> None:
    x = np.array([[0.0, 1.0, 0.0, 2.0], [0.0, 3.0, 0.0, -1.0], [0.0, 0.0, 0.0, 5.0]])
    r = am.nonzero_columns(x)
    assert r.shape == (3, 2)
    np.testing.assert_array_equal(r, x[:, [1, 3]])


# --------------------------------------------------------------------------- analyze command
def test_splice_report_replaces_only_between_markers() -> None:
    from train.analysis import END_MARK, START_MARK, splice_report

    text = f"# Report\n\nintro\n\n{START_MARK}\nold\n{END_MARK}\n\n## Later\nkept\n"
    new = splice_report(text, "## Analysis\n\nnew text")
    assert new == (
        f"# Report\n\nintro\n\n{START_MARK}\n## Analysis\n\nnew text\n{END_MARK}"
        "\n\n## Later\nkept\n"
    )
    assert splice_report(new, "## Analysis\n\nnew text") == new  # idempotent
    appended = splice_report("# Report\n", "## Analysis")
    assert appended == f"# Report\n\n{START_MARK}\n## Analysis\n{END_MARK}\n"


def test_carry_section_keeps_the_analysis_block_across_rewrites() -> None:
    from train.analysis import END_MARK, START_MARK, carry_section

    old = f"# v1\n\n{START_MARK}\n## Analysis\n\nd = 3\n{END_MARK}\n"
    block = f"{START_MARK}\n## Analysis\n\nd = 3\n{END_MARK}\n"
    assert carry_section(old, "# v2\n") == "# v2\n\n" + block
    assert carry_section("# v1\n", "# v2\n") == "# v2\n"


def test_classify_roles_and_kinds() -> None:
    from train.analysis import classify

    info = {"transfer": {"init": "imagenet", "patches": "noaug"}}
    t = classify("teacher-transfer", {"arch": "student", "arch_kwargs": {}, "meta": {}}, info)
    assert t is not None and (t.role, t.kind, t.patches) == ("teacher", "transfer", "noaug")
    v = classify(
        "teacher-x",
        {"arch": "vgg16", "arch_kwargs": {"init": "scratch"}, "meta": {"data_fraction": 0.2}},
        {},
    )
    assert v is not None and (v.role, v.kind, v.fraction) == ("teacher", "scratch", 0.2)
    s = classify(
        "student-a",
        {"arch": "student", "meta": {"teacher": "teacher-t"}},
        {"teacher-t": {"kind": "transfer"}},
    )
    assert s is not None and (s.role, s.kind) == ("student", "transfer")
    sweep = classify("sweep-scratch-4x8x16x8x8", {"arch": "student", "meta": {}}, {})
    assert sweep is not None and (sweep.role, sweep.kind) == ("student", "scratch")
    assert classify("mystery", {"arch": "student", "meta": {}}, {}) is None


def test_the_preset_teacher_is_analysed_not_a_fig8_run() -> None:
    """A Fig. 8 run on 100 % of the data (shorter, no patch info in its meta) must not replace
    the preset's teacher in Figs. 5-7, 9 and Table 4."""
    from train.analysis import classify, pick_teacher

    info = {"transfer": {"init": "imagenet", "patches": "noaug"}}
    main = classify(
        "teacher-transfer",
        {"arch": "lite0", "arch_kwargs": {"init": "imagenet"}, "meta": {"iteration": 2000}},
        info,
    )
    full = classify(
        "teacher-transfer-frac1.0",
        {
            "arch": "lite0",
            "arch_kwargs": {"init": "imagenet"},
            "meta": {"iteration": 300, "data_fraction": 1.0},
        },
        info,
    )
    assert main is not None and full is not None and full.fraction == 1.0
    assert pick_teacher([full, main]).name == "teacher-transfer"
    imagenet = {"arch": "lite0", "arch_kwargs": {"init": "imagenet"}}
    longer = classify("teacher-transfer-long", {**imagenet, "meta": {"iteration": 5000}}, info)
    assert longer is not None and pick_teacher([main, longer, full]).name == "teacher-transfer-long"
    aug = classify(
        "teacher-scratch-aug",
        {"arch": "lite0", "arch_kwargs": {"init": "scratch"}, "meta": {"iteration": 10}},
        {},
    )
    plain = classify(
        "teacher-scratch",
        {"arch": "lite0", "arch_kwargs": {"init": "scratch"}, "meta": {"iteration": 500}},
        {},
    )
    assert pick_teacher([plain, aug]).name == "teacher-scratch-aug"  # the paper's comparison


def _tiny_run(tmp_path):  # type: ignore[no-untyped-def]
    """A run directory shaped like ``reproduce``'s: tiny synthetic data, 2 teachers, 2 students."""
    import json

    from train.models import save_checkpoint, student
    from train.synth import synthesize

    run = tmp_path / "run"
    data = tmp_path / "data"
    synthesize(data, good=2, defective=2, seed=3, workers=1, progress=False)
    for i, kind in enumerate(("transfer", "scratch")):
        torch.manual_seed(i)
        kw = {"c": (4, 4, 8, 8, 8), "fc": 32}
        model = student(**kw)
        init = {k: v.clone() for k, v in model.state_dict().items()}
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(1.1)  # γ = 0.1 exactly for every conv
        save_checkpoint(
            run / "checkpoints" / f"teacher-{kind}.pt",
            model,
            "student",
            kw,
            init,
            {"run": f"teacher-{kind}", "seed": 0},
        )
        skw = {"c": (2, 2, 2, 2, 2), "fc": 16}
        save_checkpoint(
            run / "checkpoints" / f"student-{kind}.pt",
            student(**skw),
            "student",
            skw,
            None,
            {"run": f"student-{kind}", "teacher": f"teacher-{kind}"},
        )
    results = {
        "data": {"root": str(data), "split_seed": 0},
        "teachers": {
            "transfer": {"init": "imagenet", "patches": "noaug"},
            "scratch": {"init": "scratch", "patches": "noaug"},
        },
    }
    (run / "results.json").write_text(json.dumps(results))
    (run / "REPORT.md").write_text("# Smoke report\n\nTraining numbers.\n")
    return run


def test_analyze_quick_on_a_tiny_run(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from train.analysis import END_MARK, START_MARK, main

    run = _tiny_run(tmp_path)
    assert main(["--run", str(run), "--quick", "--threads", "1"]) == 0
    figs = {p.name for p in (run / "figures").glob("*.png")}
    assert {
        "fig5_weight_change.png",
        "fig6_sparsity.png",
        "fig7_teacher_channels.png",
        "fig11_student_channels.png",
        "fig9_interpolation.png",
    } <= figs
    out = json.loads((run / "analysis.json").read_text())
    assert out["teachers"] == {"transfer": "teacher-transfer", "scratch": "teacher-scratch"}
    assert out["images"] == 24
    np.testing.assert_allclose(out["gamma"]["transfer"]["gamma"], [0.1] * 5, rtol=1e-5)
    assert len(out["sparsity"]["student:scratch"]["sparsity"]) == 5
    assert math.isfinite(out["disentanglement"]["transfer"]["d"])
    report = (run / "REPORT.md").read_text()
    assert report.startswith("# Smoke report\n\nTraining numbers.\n")
    assert report.count(START_MARK) == 1 and report.count(END_MARK) == 1
    assert "Fig. 8 (target data size)**: not run" in report


def test_analyze_without_checkpoints_names_the_directory(  # type: ignore[no-untyped-def]
    tmp_path, capsys
) -> None:
    from train.analysis import main

    assert main(["--run", str(tmp_path)]) == 2
    assert f"{tmp_path}/checkpoints has no *.pt files" in capsys.readouterr().err


def test_dead_channels_any_sign_and_memory_format() -> None:
    """Dead = exactly zero everywhere: a negative-only channel (a non-ReLU activation) is alive,
    and a channels-last tensor gives the same answer as a contiguous one."""
    a = torch.zeros(2, 4, 5, 6)
    a[0, 1, 2, 3] = 0.5  # input 0: channel 1 alive
    a[0, 2] = -1.0  # input 0: channel 2 negative everywhere: alive
    a[1, 3, 0, 0], a[1, 3, 4, 5] = -2.0, 2.0  # input 1: channel 3 alive
    want = torch.tensor([[True, False, False, True], [True, True, True, False]])
    assert torch.equal(am.dead_channels(a), want)
    assert torch.equal(am.dead_channels(a.to(memory_format=torch.channels_last)), want)
    np.testing.assert_allclose(am.dead_channel_fraction(a).numpy(), [0.5, 0.75])
    assert torch.equal(am.dead_channels(torch.tensor([[0.0, -1.0]])), torch.tensor([[True, False]]))
