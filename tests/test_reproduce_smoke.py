"""The ``smoke`` preset end to end: data -> teacher -> distil -> export -> pyinspect.Inspector."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="the training pipeline needs the [train] extra")
pytest.importorskip("pyinspect._core", reason="the C++ core is not built")


def test_smoke_preset_end_to_end(tmp_path: Path) -> None:
    from pyinspect import Inspector
    from pyinspect.spec import ModelSpec

    out = tmp_path / "smoke"
    # A fresh interpreter, as a user runs it: the pipeline must not depend on (or be disturbed
    # by) thread pools that earlier tests' ONNX Runtime / OpenVINO sessions left in this process.
    repo = Path(__file__).resolve().parents[1]
    cmd = [
        sys.executable,
        "-m",
        "train",
        "reproduce",
        "--preset",
        "smoke",
        "--out",
        str(out),
        "--threads",
        "1",
    ]
    proc = subprocess.run(
        cmd,
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHONPATH": str(repo)},
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    assert res["data"]["test_images"] == 12 and res["data"]["train_images"] == 36
    teacher = res["teachers"]["scratch"]
    assert teacher["fit"]["iterations"] == 12
    assert [it for it, _ in teacher["fit"]["curve"]] == [10, 12]
    assert len(teacher["test"]["confusion"]) == 12
    student = res["students"]["scratch"]
    assert student["widths"] == [2, 2, 2, 2, 2]
    # train/deploy parity: the exported models decide every test image like PyTorch does
    for variant in ("folded", "rgb"):
        assert res["export"]["inspector"][variant]["parity"]["mismatches"] == 0
        assert res["export"]["files"][variant]["max_abs_logit_diff"] < 1e-4
        assert res["export"]["inspector"][variant]["parity"]["images"] == 12
    onnx = Path(res["export"]["files"]["folded"]["onnx"])
    spec = ModelSpec.load(res["export"]["files"]["folded"]["sidecar"])
    assert spec.channels == 1
    assert spec.provenance.accuracy == pytest.approx(student["test"]["accuracy"])
    assert spec.provenance.preset == "smoke"
    with Inspector(str(onnx)) as insp:
        import numpy as np

        r = insp.run(np.full((512, 512), 128, np.uint8))
        assert r.num_patches == 9
    report = (out / "REPORT.md").read_text()
    assert "Table 2" in report and "Table 3" in report and "Table 5" in report
    assert f"{res['wall_seconds'] / 60:.1f} min in all" in report  # the total, once it is known
    assert (out / "fig4_accuracy_vs_iteration.png").stat().st_size > 1000
    assert "![Fig. 4](fig4_accuracy_vs_iteration.png)" in report
    assert f"python -m train report {out}" in report
    # rewriting the report (a later run, --report-only) keeps what `train analyze` spliced in
    from train.report import END_MARK, START_MARK, splice_report, write_report

    (out / "REPORT.md").write_text(splice_report(report, "Fig. 5: analysed"))
    write_report(res, out)
    again = (out / "REPORT.md").read_text()
    assert f"{START_MARK}\nFig. 5: analysed\n{END_MARK}" in again and "Table 5" in again
    # `python -m train report DIR` rewrites it from results.json alone, every figure embedded
    # (an analysis section that names its figure files gets them shown)
    from train.report import main as report_main

    ref = "**Fig. 6** — `figures/fig6_sparsity.png`."
    named = again.replace("Fig. 5: analysed", ref)
    (out / "REPORT.md").write_text(named)
    (out / "fig4_accuracy_vs_iteration.png").unlink()
    assert report_main([str(out)]) == 0
    rebuilt = (out / "REPORT.md").read_text()
    assert (out / "fig4_accuracy_vs_iteration.png").stat().st_size > 1000  # redrawn
    assert rebuilt == named.replace(ref, ref + "\n\n![Fig. 6](figures/fig6_sparsity.png)")
    assert report_main([str(out)]) == 0
    assert (out / "REPORT.md").read_text() == rebuilt  # embedding happens once
    assert report_main([str(tmp_path / "nowhere")]) == 2


def test_a_retrained_teacher_never_reuses_stale_logits_or_summary(tmp_path: Path) -> None:
    """``reproduce`` resumes from what exists; a teacher trained further (same name) must get
    fresh aug-set logits and its own Table 2 summary, not the shorter run's."""
    import torch

    from train.distill import logits_cache
    from train.fit import summary_from_checkpoint

    ck = tmp_path / "checkpoints" / "teacher-transfer.pt"
    ck.parent.mkdir()
    curve = [(10, 0.5), (100, 0.9), (500, 0.903)]
    torch.save(
        {
            "meta": {
                "run": "teacher-transfer",
                "iteration": 500,
                "curve": curve,
                "sec_per_iter": 2.0,
            }
        },
        ck,
    )
    first = logits_cache(tmp_path, ck, 6000)
    assert first != logits_cache(tmp_path, ck, 24000)  # another aug set size
    assert first != logits_cache(tmp_path, ck, 6000, "-d0246")  # other orientations
    s = summary_from_checkpoint(ck)
    assert (s["iterations"], s["convergence_iteration"]) == (500, 100)
    torch.save(
        {"meta": {"run": "teacher-transfer", "iteration": 2000, "curve": [*curve, (2000, 0.99)]}},
        ck,
    )
    assert logits_cache(tmp_path, ck, 6000) != first
    s = summary_from_checkpoint(ck)
    assert (s["iterations"], s["convergence_iteration"]) == (2000, 2000)


def test_restarts_keep_the_lowest_loss_and_are_reused(tmp_path: Path) -> None:
    """``distill_restarts``: one checkpoint per seed, the lowest final Eq. 1 loss is the student,
    every restart's numbers are recorded, and a second run reuses them all."""
    import torch

    from train.presets import get_preset
    from train.reproduce import run_preset

    out = tmp_path / "smoke"
    preset = get_preset("smoke", distill_restarts=2, teacher_test_images=None)
    res = run_preset(preset, out, threads=1, skip_sweep=True)
    restarts = res["students"]["scratch"]["restarts"]
    assert [r["seed"] for r in restarts] == [0, 1]
    assert sum(r["chosen"] for r in restarts) == 1
    chosen = next(r for r in restarts if r["chosen"])
    assert chosen["final_loss"] == min(r["final_loss"] for r in restarts)
    assert all(0.0 <= r["test_accuracy"] <= 1.0 for r in restarts)
    ck = out / "checkpoints"
    kept = torch.load(ck / "student-scratch.pt", map_location="cpu", weights_only=False)
    picked = torch.load(ck / chosen["checkpoint"], map_location="cpu", weights_only=False)
    assert all(torch.equal(kept["state_dict"][k], v) for k, v in picked["state_dict"].items())
    assert kept["meta"]["seed"] == chosen["seed"] == res["students"]["scratch"]["seed"]
    logs = {p.name: p.read_text() for p in (out / "logs").glob("student-scratch-r*.jsonl")}
    assert sorted(logs) == ["student-scratch-r0.jsonl", "student-scratch-r1.jsonl"]
    again = run_preset(preset, out, threads=1, skip_sweep=True)
    assert {p.name: p.read_text() for p in (out / "logs").glob("student-scratch-r*.jsonl")} == logs
    assert again["students"]["scratch"]["restarts"] == restarts
    kept = torch.load(ck / "student-scratch.pt", map_location="cpu", weights_only=False)
    assert kept["meta"]["seed"] == chosen["seed"]  # a reuse does not rewrite the checkpoint
    first, second = res["students"]["scratch"]["test"], again["students"]["scratch"]["test"]
    assert (second["accuracy"], second["confusion"]) == (first["accuracy"], first["confusion"])
    # the report says what was reused, and the reused stages keep their first measured times
    assert res["reused_stages"] == []
    assert again["reused_stages"] == [
        "teacher-scratch-fit",
        "teacher-scratch-eval",
        "student-scratch",
    ]
    for name in ("teacher-scratch-fit", "student-scratch"):
        assert again["timings"][name] == res["timings"][name]
    report = (out / "REPORT.md").read_text()
    total = sum(again["timings"].values()) / 60
    assert (
        "Taken from this directory's checkpoints instead of recomputed: teacher-scratch-fit, "
        "teacher-scratch-eval, student-scratch"
    ) in report
    assert f"add up to {total:.1f} min." in report
    # a run directory made from other data refuses to resume (its checkpoints do not fit)
    from train.dagm import DagmError

    saved = json.loads((out / "results.json").read_text())
    assert saved["data"]["fingerprint"]
    saved["data"]["fingerprint"] = "0000000000000000"
    (out / "results.json").write_text(json.dumps(saved))
    with pytest.raises(DagmError, match="holds a run on other data"):
        run_preset(preset, out, threads=1, skip_sweep=True)
    assert json.loads((out / "results.json").read_text()) == saved  # left as it was
    # ... and so does one whose good patches were sampled otherwise (reproduce --good-grid-share)
    import dataclasses

    saved["data"]["fingerprint"] = res["data"]["fingerprint"]
    (out / "results.json").write_text(json.dumps(saved))
    gridded = dataclasses.replace(preset, good_grid_share=0.25)
    with pytest.raises(DagmError, match=r"sampled with grid share 0\.0, not 0\.25"):
        run_preset(gridded, out, threads=1, skip_sweep=True)
    assert json.loads((out / "results.json").read_text()) == saved


def test_a_sweep_point_is_reused_only_with_the_same_settings(tmp_path: Path) -> None:
    """A Fig. 10 row is kept on a resume with the same settings and recomputed when the sweep's
    epochs or the student's C1 init change (a stale row would otherwise stand in the report)."""
    from train.presets import get_preset
    from train.reproduce import run_preset

    out = tmp_path / "smoke"
    preset = get_preset("smoke", sweep=((2, 2, 2, 2, 2),), sweep_epochs=1)
    log = out / "logs" / "sweep-scratch-2x2x2x2x2.jsonl"
    res = run_preset(preset, out, threads=1)
    first, took = res["sweep"]["scratch:2x2x2x2x2"], res["timings"]["sweep-scratch:2x2x2x2x2"]
    lines = log.read_text()
    assert first["c1_init"] == "random" and first["epochs"] == 1 and took >= 0
    again = run_preset(preset, out, threads=1)
    assert again["sweep"]["scratch:2x2x2x2x2"] == first
    assert log.read_text() == lines  # not distilled again
    # the reused point keeps its measured time, and the report says it was reused
    assert again["timings"]["sweep-scratch:2x2x2x2x2"] == took
    assert "sweep-scratch:2x2x2x2x2" in again["reused_stages"]
    basis = run_preset(
        get_preset("smoke", sweep=((2, 2, 2, 2, 2),), sweep_epochs=1, student_c1_init="basis"),
        out,
        threads=1,
    )
    assert basis["sweep"]["scratch:2x2x2x2x2"]["c1_init"] == "basis"
    longer = run_preset(
        get_preset("smoke", sweep=((2, 2, 2, 2, 2),), sweep_epochs=2, student_c1_init="basis"),
        out,
        threads=1,
    )
    assert longer["sweep"]["scratch:2x2x2x2x2"]["epochs"] == 2
    assert log.read_text().count('"event": "start"') == 3
    report = (out / "REPORT.md").read_text()
    assert "| scratch | (2, 2, 2, 2, 2) |" in report  # the sweep's point
    assert "| scratch | (2, 2, 2, 2, 2) (the preset's student) |" in report
    assert (out / "fig10_compression_sweep.png").stat().st_size > 0


def test_trials_give_mean_and_standard_error_over_splits(tmp_path: Path) -> None:
    """``Preset.trials``: the run itself is trial 1, the others run on split seeds seed+1, ...
    into trials/seed-<seed>/ on the same data; the report gives mean ± standard error."""
    from train.presets import get_preset
    from train.report import mean_se
    from train.reproduce import run_preset

    out = tmp_path / "smoke"
    res = run_preset(get_preset("smoke", trials=2), out, threads=1, skip_sweep=True)
    trials = res["trials"]
    assert trials["seeds"] == [0, 1]
    assert (out / "trials" / "seed-1" / "results.json").is_file()
    assert not (out / "trials" / "seed-1" / "data" / "synth").exists()  # the same images
    other = json.loads((out / "trials" / "seed-1" / "results.json").read_text())
    assert other["data"]["split_seed"] == 1 and other["data"]["root"] == res["data"]["root"]
    for role, name in (("teachers", "scratch"), ("students", "scratch")):
        accs = trials[role][name]
        assert accs == [res[role][name]["test"]["accuracy"], other[role][name]["test"]["accuracy"]]
        mean, se = mean_se(accs)
        row = f"| {role[:-1]} {name} | 2 | {100 * mean:.2f} ± {100 * se:.2f} |"
        assert row in (out / "REPORT.md").read_text()


def test_mean_and_standard_error() -> None:
    from train.report import mean_se

    assert mean_se([0.5]) == (0.5, 0.0)
    mean, se = mean_se([0.9, 1.0, 0.95, 0.85, 0.8])
    assert mean == pytest.approx(0.9) and se == pytest.approx(0.0353553, rel=1e-5)
    with pytest.raises(ValueError, match="at least one value"):
        mean_se([])


def test_fig10_rows_go_widest_first_and_end_at_the_preset_student() -> None:
    from train.reproduce import sweep_rows

    def point(teacher: str, params: int) -> dict[str, object]:
        return {
            "teacher": teacher,
            "widths": [1] * 5,
            "parameters": params,
            "epochs": 3,
            "accuracy": 0.5,
        }

    results = {
        "config": {"distill_epochs": 16},
        "sweep": {
            "t:a": point("transfer", 1_000),
            "t:b": point("transfer", 5_000),
            "s:a": point("scratch", 1_000),
        },
        "students": {
            "transfer": {"widths": [4, 8, 16, 4, 4], "parameters": 800, "test": {"accuracy": 0.99}},
            "other": {"widths": [4, 8, 16, 4, 4], "parameters": 800, "test": {"accuracy": 0.9}},
        },
    }
    rows = sweep_rows(results)
    assert [(r["teacher"], r["parameters"], r.get("preset_student", False)) for r in rows] == [
        ("transfer", 5_000, False),
        ("transfer", 1_000, False),
        ("transfer", 800, True),
        ("scratch", 1_000, False),
    ]
    assert rows[2]["epochs"] == 16 and rows[2]["accuracy"] == 0.99


def test_the_sweep_can_compare_a_teacher_that_ships_no_student(tmp_path: Path) -> None:
    """``sweep_from`` names the teachers of Fig. 10 apart from the ones distilled for shipping
    (the cpu preset sweeps the scratch teacher it does not distil); unset, it is distill_from."""
    from train.presets import get_preset
    from train.reproduce import run_preset

    assert get_preset("smoke").sweep_teachers == ("scratch",)
    preset = get_preset(
        "smoke",
        distill_from=(),
        ship=None,
        sweep=((2, 2, 2, 2, 2),),
        sweep_epochs=1,
        sweep_from=("scratch",),
    )
    res = run_preset(preset, tmp_path / "smoke", threads=1)
    assert res["students"] == {}
    assert list(res["sweep"]) == ["scratch:2x2x2x2x2"]
    assert res["sweep"]["scratch:2x2x2x2x2"]["teacher"] == "scratch"
    # its logits were computed for the sweep (times round to 0.1 s, so only presence is sure)
    assert "sweep-logits-scratch" in res["timings"]


@pytest.mark.parametrize("field", ["distill_from", "sweep_from"])
def test_a_preset_naming_an_unknown_teacher_is_refused(field: str) -> None:
    from train.presets import get_preset

    with pytest.raises(
        ValueError,
        match=f"{field} names 'transfr', not one of its teachers "
        r"\(transfer, scratch\)",
    ):
        get_preset("cpu", **{field: ("transfr",)})


def test_a_preset_shipping_a_student_it_does_not_distil_is_refused() -> None:
    from train.presets import get_preset

    with pytest.raises(
        ValueError,
        match=r"ships the student of 'scratch', which it does not "
        r"distil \(distill_from: transfer\)",
    ):
        get_preset("cpu", ship="scratch")
    with pytest.raises(ValueError, match=r"ships the student of 'transfr'"):
        get_preset("cpu", ship="transfr")  # a misspelt teacher cannot be distilled either


def test_the_eta_counts_restarts_and_every_sweep_teacher() -> None:
    from train.presets import get_preset
    from train.reproduce import estimate_seconds

    def eta(**over: object) -> float:
        return estimate_seconds(get_preset("cpu", **over), 1.5, 0.15, 0.012, 1380, 5520)

    assert eta(distill_restarts=2) > eta(distill_restarts=1)
    assert eta(sweep_from=("transfer", "scratch")) > eta(sweep_from=("transfer",))
    assert eta(sweep=()) < eta()


@pytest.mark.parametrize("share", [-0.25, 1.25])
def test_a_good_grid_share_outside_0_1_is_refused(share: float) -> None:
    from train.presets import get_preset

    with pytest.raises(ValueError, match=r"good_grid_share must be in 0\.\.1"):
        get_preset("cpu", good_grid_share=share)
    proc = subprocess.run(
        [sys.executable, "-m", "train", "reproduce", "--preset", "smoke", "--good-grid-share",
         str(share), "--out", "/nonexistent/never-written"],
        cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and "--good-grid-share must be in 0..1" in proc.stderr


def test_a_texture_repeat_that_is_not_whole_factors_is_refused_before_any_stage() -> None:
    from train.presets import get_preset

    with pytest.raises(ValueError, match=r"'cpu': aug_texture_repeat\[3\] \(class 4\)"):
        get_preset("cpu", aug_texture_repeat=(1, 1, 1, 0, 1, 1))
    for text, says in (
        ("1,1,x", "--aug-texture-repeat must be whole numbers separated by commas"),
        ("1,0", "aug_texture_repeat[1] (class 2) must be a whole number >= 1"),
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "train", "reproduce", "--preset", "smoke",
             "--aug-texture-repeat", text, "--out", "/nonexistent/never-written"],
            cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert proc.returncode == 2 and says in proc.stderr, proc.stderr
    assert not Path("/nonexistent/never-written").exists()


def test_the_report_names_the_generator_and_the_command_that_reruns_the_run() -> None:
    """A run's header says which generator version made its data and gives the ``reproduce``
    line with the overrides it ran with (pure functions of results.json)."""
    from train.presets import get_preset
    from train.report import data_text, rerun_command

    cpu = get_preset("cpu")  # the preset's own values give no flags, whatever they are
    preset_teachers = [{"name": t.name, "iters": t.iters} for t in cpu.teachers]
    config = {"data_root": cpu.data_root, "good_grid_share": cpu.good_grid_share,
              "teachers": preset_teachers}  # fmt: skip
    results = {"preset": "cpu", "config": config, "data": {"fingerprint": "abc"}}
    assert rerun_command(results) == "python -m train reproduce --preset cpu"
    assert data_text(results).startswith(", synthetic generator version 1 (fingerprint `abc`)")
    config.pop("good_grid_share")
    assert data_text(results) == ", synthetic generator version 1 (fingerprint `abc`)"
    other = [{"name": t.name, "iters": 7} for t in cpu.teachers]
    config.update(data_root="data/elsewhere", synth_version=3, good_grid_share=0.4, teachers=other)
    assert rerun_command({**results, "out": "results/cpu"}) == (
        "python -m train reproduce --preset cpu --data data/elsewhere --synth-version 3"
        " --good-grid-share 0.4 --teacher-iters 7 --out results/cpu"
    )
    assert data_text(results) == (
        ", synthetic generator version 3 (fingerprint `abc`), 40% of the good training patches"
        " at test-grid positions"
    )
    assert rerun_command({"preset": "nope"}) == "python -m train reproduce --preset nope"
    config.update(distill_epochs=3, distill_hard_weight=2.5, distill_restarts=5)
    assert rerun_command(results).endswith(
        "--distill-epochs 3 --distill-hard-weight 2.5 --distill-restarts 5 --teacher-iters 7"
    )
    config.update(aug_texture_repeat=[1, 1, 1, 1, 5, 1], aug_max_patches=1000)
    assert " --aug-texture-repeat 1,1,1,1,5,1 --aug-max-patches 1000 " in rerun_command(results)
    assert data_text(results).endswith(", distillation patches per image class 5 ×5")
    config.update(  # the preset's own values, as results.json holds them
        aug_texture_repeat=list(cpu.aug_texture_repeat), aug_max_patches=cpu.aug_max_patches
    )
    assert "--aug-" not in rerun_command(results)


@pytest.mark.parametrize(
    ("flag", "value", "bound"),
    [("--distill-epochs", "0", "1"), ("--distill-hard-weight", "-1", "0"),
     ("--distill-hard-weight", "nan", "0"), ("--distill-hard-weight", "inf", "0"),
     ("--distill-restarts", "0", "1")],
)  # fmt: skip
def test_a_distillation_override_out_of_range_is_refused(flag: str, value: str, bound: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "train", "reproduce", "--preset", "smoke", flag, value,
         "--out", "/nonexistent/never-written"],
        cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and f"{flag} must be a finite number >= {bound}" in proc.stderr
    assert not Path("/nonexistent/never-written").exists()


def test_a_run_without_its_sweep_says_so(tmp_path: Path) -> None:
    """A report of a run made with --skip-sweep names the missing Fig. 10 instead of dropping it
    silently (the committed results/cpu/results.json, its sweep rows removed)."""
    from train.report import render_report

    repo = Path(__file__).resolve().parents[1]
    results = json.loads((repo / "results" / "cpu" / "results.json").read_text())
    results.pop("sweep", None)
    text = render_report(results, tmp_path, draw=False)
    assert (
        "## Fig. 10: compression sweep\n\nNot run on this data (`reproduce --skip-sweep`)" in text
    )
    results["config"]["sweep"] = []
    assert "Fig. 10" not in render_report(results, tmp_path, draw=False)


def test_defect_offsets_are_chosen_folded_reused_and_undone(tmp_path: Path) -> None:
    """``--defect-offsets-seed``: offsets chosen on a fresh synthetic set land in the student's
    checkpoint, results and report; a rerun reuses them; ``none`` restores the distilled bias."""
    import numpy as np
    import torch

    from train.defect_offsets import class_offsets
    from train.evaluate import CLASS_DEFECTIVE, CLASS_TEXTURE

    out = tmp_path / "smoke"
    repo = Path(__file__).resolve().parents[1]

    def reproduce(seed: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "train", "reproduce", "--preset", "smoke", "--out", str(out),
             "--threads", "1", "--defect-offsets-seed", seed],
            cwd=repo, capture_output=True, text=True, timeout=900, check=False,
            env={**os.environ, "PYTHONPATH": str(repo)},
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc.stdout

    def last_bias() -> np.ndarray:
        blob = torch.load(out / "checkpoints" / "student-scratch.pt", weights_only=False)
        return blob["state_dict"]["classifier.3.bias"].numpy()

    assert "defect offsets for student-scratch" in reproduce("7")
    res = json.loads((out / "results.json").read_text())
    off = res["students"]["scratch"]["defect_offsets"]
    assert off["key"]["seed"] == 7 and off["images"] == 6 * (5 + 3)
    assert len(list((out / "data" / "calibration-v1-s7").glob("Class*/*.png"))) == 48
    assert 0 <= off["errors_after"] <= off["errors_before"]
    shift = class_offsets(off["offsets"], CLASS_TEXTURE, CLASS_DEFECTIVE)
    np.testing.assert_allclose(last_bias(), np.asarray(off["bias_before"]) - shift, atol=1e-6)
    assert "per-texture defect offsets" in (out / "REPORT.md").read_text()
    assert "--defect-offsets-seed 7" in (out / "REPORT.md").read_text()
    # the same settings again: reused, not chosen anew
    assert "defect offsets for" not in reproduce("7")
    # 'none' puts back the bias the record says was there before any offsets
    ck = out / "checkpoints" / "student-scratch.pt"
    blob = torch.load(ck, weights_only=False)
    marked = (np.asarray(off["bias_before"]) + 1.0).tolist()
    blob["meta"]["defect_offsets"]["bias_before"] = marked
    torch.save(blob, ck)
    reproduce("none")
    np.testing.assert_allclose(last_bias(), marked, atol=1e-6)
    res = json.loads((out / "results.json").read_text())
    assert "defect_offsets" not in res["students"]["scratch"]
    assert "defect_offsets" not in torch.load(ck, weights_only=False)["meta"]


def test_defect_offsets_seed_must_not_be_the_training_seed() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "train", "reproduce", "--preset", "smoke",
         "--defect-offsets-seed", "101", "--out", "/nonexistent/never-written"],
        cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and "is the training set's synth_seed" in proc.stderr
    assert not Path("/nonexistent/never-written").exists()


def test_defect_offsets_on_data_train_synth_did_not_write_are_refused(tmp_path: Path) -> None:
    """A real copy (no ``synth.json``) has no generator to draw a fresh set from: refused by
    name before any stage runs."""
    from train.synth import synthesize

    data = tmp_path / "copy"
    synthesize(data, good=2, defective=1, seed=5, progress=False)
    (data / "synth.json").unlink()
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "train", "reproduce", "--preset", "smoke", "--data", str(data),
         "--defect-offsets-seed", "7", "--out", str(out), "--threads", "1"],
        cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "was not written by train.synth: run without --defect-offsets-seed" in proc.stderr
    assert not (out / "checkpoints").exists()
