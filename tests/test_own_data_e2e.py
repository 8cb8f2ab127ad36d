"""Issue 20's path for one's own parts, end to end through the real commands' ``main()``:
``train data check`` → ``train run --preset smoke`` → ``pyinspect calibrate`` →
``pyinspect evaluate`` (reproduces the calibrated operating point) → ``pyinspect inspect``,
on the shared generic-layout sets (tests/genericset.py): two groups with defect types kept,
one product without the group level, and 16-bit frames. One model per set, trained once per
module; the sets are only read (their bytes are compared before and after).

The smoke preset trains for seconds and learns next to nothing (its models may give every image
the same score), so the checks hold for any model: the counts ``calibrate`` wrote, those of
``evaluate`` at the sidecar's threshold, and those at a threshold just above it all follow from
the per-image scores ``inspect`` prints.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from genericset import GenericSet, snapshot

pytest.importorskip("torch", reason="train run needs torch (the train extra)")

from pyinspect.cli import main as pyinspect_main
from pyinspect.evaluation import operating_point
from pyinspect.spec import ModelSpec
from train import run as train_run
from train.data_cli import main as data_main

#: variant -> (fixture, --defect-types)
VARIANTS = {
    "grouped-keep": ("generic_set", "keep"),
    "single-merge": ("generic_set_single", "merge"),
    "16bit-merge": ("generic_set_16bit", "merge"),
}
TARGET_TPR = "0.5"


@dataclass(frozen=True)
class Pipeline:
    gs: GenericSet
    mode: str
    run: Path
    model: Path
    before: dict[str, str]  # the data's bytes before any command ran
    check_out: str
    calibrate_out: str


def _quiet(fn, argv: list[str]) -> tuple[int, str]:
    """``fn(argv)`` with stdout captured (stderr, progress and stage lines, is left to pytest)."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        status = fn(argv)
    return status, buf.getvalue()


@pytest.fixture(scope="module", params=list(VARIANTS))
def pipeline(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    name, mode = VARIANTS[request.param]
    gs: GenericSet = request.getfixturevalue(name)
    before = snapshot(gs.root)
    status, check_out = _quiet(data_main, ["check", str(gs.root), "--defect-types", mode])
    assert status == 0, check_out
    run = tmp_path_factory.mktemp(f"run-{request.param}") / "run"
    argv = ["--data", str(gs.root), "--out", str(run), "--preset", "smoke"]
    assert train_run.main([*argv, "--defect-types", mode, "--seed", "1"]) == 0
    model = run / "student.onnx"
    status, cal_out = _quiet(
        pyinspect_main,
        ["calibrate", "--model", str(model), "--data", str(gs.root), "--target-tpr", TARGET_TPR],
    )
    assert status == 0, cal_out
    return Pipeline(gs, mode, run, model, before, check_out, cal_out)


def split_keys(p: Pipeline, part: str) -> list[str]:
    return json.loads((p.run / "split.json").read_text())[part]


def test_run_writes_model_split_report_and_leaves_the_data_alone(pipeline: Pipeline) -> None:
    p = pipeline
    assert snapshot(p.gs.root) == p.before  # check, run and calibrate only read the set
    spec = ModelSpec.for_model(p.model)
    groups = list(p.gs.groups) if p.gs.grouped else ["synthetic-parts"]
    assert list(spec.textures) == groups
    types = ["scratch", "stain"] if p.mode == "keep" else ["defective"]
    assert [c.defect_type for c in spec.classes] == [None, *types] * len(groups)
    assert spec.resize == "upscale"  # each set has a 200 px wide frame
    assert spec.bit_depth == p.gs.bit_depth
    parts = [split_keys(p, part) for part in ("train", "val", "test")]
    keys = [k for part in parts for k in part]
    assert sorted(keys) == sorted(im.key for im in p.gs.images)
    assert all(parts)
    report = (p.run / "REPORT.md").read_text()
    assert "Confusion matrix" in report
    for name in ("good", *types):
        assert name in report
    assert "ok" in p.check_out.splitlines()[-1]


def test_evaluate_on_val_reproduces_what_calibrate_wrote(pipeline: Pipeline, capsys) -> None:
    p = pipeline
    spec = ModelSpec.for_model(p.model)
    cal = spec.calibration
    assert cal is not None and spec.threshold == cal.threshold
    assert (cal.rule, cal.split, cal.target) == ("target_tpr", "val", float(TARGET_TPR))
    assert cal.tpr >= float(TARGET_TPR)
    assert f"TPR {cal.tpr:.4f} ({cal.tp}/{cal.tp + cal.fn})" in p.calibrate_out
    assert Path(f"{p.model}.calibration.png").is_file()
    argv = ["evaluate", "--model", str(p.model), "--data", str(p.gs.root), "--split", "val"]
    assert pyinspect_main([*argv, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    o = doc["overall"]
    assert doc["threshold"] == cal.threshold and doc["threshold_from"] == "sidecar"
    assert doc["defect_types"] == p.mode and doc["images"] == cal.images
    assert (o["tp"], o["fn"], o["tn"], o["fp"]) == (cal.tp, cal.fn, cal.tn, cal.fp)
    assert (o["tpr"], o["tnr"]) == (cal.tpr, cal.tnr)
    assert cal.images == len(split_keys(p, "val"))
    # the test split is judged by the same sidecar threshold
    test_argv = [*argv[:-1], "test", "--json"]
    assert pyinspect_main(test_argv) == 0
    test_doc = json.loads(capsys.readouterr().out)
    assert test_doc["threshold"] == cal.threshold
    assert test_doc["images"] == len(split_keys(p, "test"))


def test_inspect_gives_verdicts_with_defect_type_under_the_threshold(
    pipeline: Pipeline, capsys
) -> None:
    p = pipeline
    spec = ModelSpec.for_model(p.model)
    cal = spec.calibration
    assert cal is not None
    val = split_keys(p, "val")
    paths = [str(p.gs.root / k) for k in val]
    assert pyinspect_main(["inspect", *paths, "--model", str(p.model), "--json"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    records, summary = lines[:-1], lines[-1]["summary"]
    assert [r["path"] for r in records] == paths and summary["errors"] == 0
    truth = {im.key: im for im in p.gs.images}
    flagged = {True: 0, False: 0}  # truth defective -> flagged count
    for key, r in zip(val, records, strict=True):
        assert r["error"] is None and r["texture_name"] in spec.textures
        over = np.float32(r["max_defect_prob"]) >= np.float32(cal.threshold)
        assert r["defective"] == bool(over)
        if r["defective"]:
            want = {"scratch", "stain"} if p.mode == "keep" else {"defective"}
            assert r["defect_type"] in want
        else:
            assert r["defect_type"] is None
        flagged[truth[key].defect_type is not None] += r["defective"]
    assert (flagged[True], flagged[False]) == (cal.tp, cal.fp)  # calibrate's counts again
    assert flagged[True] >= 1  # some verdict names a defect type
    # evaluate at a threshold just above the calibrated one: the counts the scores predict
    scores = [r["max_defect_prob"] for r in records]
    defective = [truth[k].defect_type is not None for k in val]
    above = float(np.nextafter(np.float32(cal.threshold), np.float32(1)))
    want = operating_point(scores, defective, above)
    argv = ["evaluate", "--model", str(p.model), "--data", str(p.gs.root), "--split", "val"]
    assert pyinspect_main([*argv, "--threshold", repr(above), "--json"]) == 0
    o = json.loads(capsys.readouterr().out)["overall"]
    assert (o["tp"], o["fn"], o["tn"], o["fp"]) == (want.tp, want.fn, want.tn, want.fp)
    assert want.tp < cal.tp or want.fp < cal.fp  # it lies above at least one image's score
    # the text form names the verdict's class
    one = paths[0]
    assert pyinspect_main(["inspect", one, "--model", str(p.model)]) == 0
    text = capsys.readouterr().out.splitlines()[0]
    assert text.startswith(f"{one}  ") and "p_def=" in text


def test_running_train_run_again_keeps_the_calibrated_sidecar(pipeline: Pipeline) -> None:
    p = pipeline
    sidecar = p.model.with_name(p.model.name + ".json")
    before = sidecar.read_bytes()
    onnx_before = p.model.stat().st_mtime_ns
    argv = ["--data", str(p.gs.root), "--out", str(p.run), "--preset", "smoke"]
    status, _ = _quiet(train_run.main, [*argv, "--defect-types", p.mode, "--seed", "1"])
    assert status == 0
    assert sidecar.read_bytes() == before  # the threshold calibrate wrote is still there
    assert p.model.stat().st_mtime_ns == onnx_before
    assert ModelSpec.for_model(p.model).calibration is not None
