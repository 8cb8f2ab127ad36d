"""``pyinspect evaluate`` and the metrics behind it (``pyinspect.evaluation``).

The CLI tests use tests/scorezoo.py's model, whose defect score is the brightness of the top
half of the frame, so every verdict, count and rate below is known in advance.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scorezoo import write_score_model, write_set

from pyinspect.cli import main
from pyinspect.dataset import ClassEntry, load_dataset, write_split
from pyinspect.evaluation import (
    OTHER_TYPE,
    ClassTableError,
    ImageOutcome,
    image_metrics,
    match_class_table,
    operating_point,
    operating_points,
)
from pyinspect.spec import ModelSpec

# alpha: good 10, 60, 130 (130 > 127: a false alarm under argmax); crack 100 (missed), 200, 250
# beta: good 20, 90; crack 140, 180
LAYOUT = {
    "alpha": {"good": [10, 60, 130], "crack": [100, 200, 250]},
    "beta": {"good": [20, 90], "crack": [140, 180]},
}


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_score_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_set(tmp_path_factory.mktemp("data"), LAYOUT)


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict, str]:
    status = main(["evaluate", *argv, "--json"])
    captured = capsys.readouterr()
    doc = json.loads(captured.out) if captured.out.strip() else {}
    return status, doc, captured.err


# ---- pure metrics ------------------------------------------------------------------------------
KEEP_TABLE = [
    ClassEntry("a good", 0, False, None),
    ClassEntry("a crack", 0, True, "crack"),
    ClassEntry("a dent", 0, True, "dent"),
    ClassEntry("b good", 1, False, None),
    ClassEntry("b crack", 1, True, "crack"),
]


def outcome(truth: int, predicted: int, group: int, dtype: str | None) -> ImageOutcome:
    return ImageOutcome("k", truth, predicted, group, dtype is not None, dtype, 0.5)


def test_image_metrics_on_known_outcomes() -> None:
    outcomes = [
        outcome(0, 0, 0, None),  # a good passed
        outcome(0, 1, 0, "crack"),  # a good: false alarm
        outcome(1, 1, 0, "crack"),  # a crack: caught, right type
        outcome(1, 2, 0, "dent"),  # a crack: caught, wrong type
        outcome(2, 0, 0, None),  # a dent: missed
        outcome(3, 3, 1, None),  # b good passed
        outcome(3, 0, 0, None),  # b good: passed, wrong group
        outcome(4, OTHER_TYPE, 1, "dent"),  # b crack: caught, a type b has no column for
    ]
    m = image_metrics(KEEP_TABLE, ["a", "b"], outcomes, mode="keep")
    o = m["overall"]
    assert (o["tp"], o["fn"], o["tn"], o["fp"]) == (3, 1, 3, 1)
    assert o["tpr"] == 0.75 and o["tnr"] == 0.75 and o["images"] == 8
    assert o["accuracy"] == 3 / 8  # the first, third and sixth outcome
    assert o["group_accuracy"] == 7 / 8
    assert o["defect_type_caught"] == 3 and o["defect_type_accuracy"] == 1 / 3
    a, b = m["groups"]
    assert (a["group"], a["images"], a["tp"], a["fn"], a["tn"], a["fp"]) == ("a", 5, 2, 1, 1, 1)
    assert (b["tpr"], b["tnr"], b["group_accuracy"]) == (1.0, 1.0, 2 / 3)
    by_name = {c["class"]: c for c in m["classes"]}
    assert by_name["a good"]["tnr"] == 0.5 and by_name["a good"]["correct"] == 1
    assert by_name["a crack"]["tpr"] == 1.0 and by_name["a crack"]["recall"] == 0.5
    assert by_name["a dent"]["tpr"] == 0.0 and "tnr" not in by_name["a dent"]
    conf = m["confusion"]
    assert conf["columns"][-1] == "(other defect type)" and conf["rows"] == [
        c.name for c in KEEP_TABLE
    ]
    assert np.array(conf["matrix"]).sum() == 8
    assert conf["matrix"][4] == [0, 0, 0, 0, 0, 1]
    assert conf["matrix"][1] == [0, 1, 1, 0, 0, 0]


def test_merge_mode_has_no_defect_type_accuracy_and_empty_input_gives_no_rates() -> None:
    table = [ClassEntry("good", 0, False, None), ClassEntry("defective", 0, True, "defective")]
    m = image_metrics(table, ["p"], [outcome(1, 1, 0, "defective")], mode="merge")
    assert m["overall"]["defect_type_accuracy"] is None and m["overall"]["tpr"] == 1.0
    assert m["overall"]["tnr"] is None  # no good image: no rate, not 0
    empty = image_metrics(table, ["p"], [], mode="merge")["overall"]
    assert (empty["images"], empty["accuracy"], empty["tpr"]) == (0, None, None)
    assert "other" not in " ".join(image_metrics(table, ["p"], [], mode="merge")["confusion"])


def test_operating_points_sweep_distinct_positive_scores() -> None:
    scores = [0.0, 0.2, 0.2, 0.5, 0.9, 0.9]
    defective = [False, False, True, False, True, True]
    points = operating_points(scores, defective)
    assert [p.threshold for p in points] == pytest.approx([0.2, 0.5, 0.9])  # 0 is no threshold
    first = points[0]
    assert (first.tp, first.fn, first.tn, first.fp) == (3, 0, 1, 2)
    last = points[-1]
    assert (last.tp, last.fn, last.tn, last.fp) == (2, 1, 3, 0)
    for p in points:  # the sweep and the per-threshold count agree (float32 comparison)
        assert operating_point(scores, defective, p.threshold) == p


def test_operating_points_refuse_mismatched_inputs() -> None:
    with pytest.raises(ValueError, match="same length"):
        operating_points([0.1, 0.2], [True])
    with pytest.raises(ValueError, match="finite"):
        operating_points([float("nan")], [True])


# ---- class tables ------------------------------------------------------------------------------
def test_class_table_mismatch_names_the_difference(model: Path, tmp_path: Path) -> None:
    spec = ModelSpec.for_model(model)
    other = write_set(
        tmp_path / "o", {"alpha": {"good": [1], "crack": [200]}, "gamma": {"good": [1]}}
    )
    with pytest.raises(ClassTableError, match=r"only in the data: \['gamma'\]") as info:
        match_class_table(spec, load_dataset(other))
    assert "only in the model: ['beta']" in str(info.value)
    # same groups, but beta has no defect folder: the class beta/defective is the model's only
    partial = write_set(
        tmp_path / "p", {"alpha": {"good": [1], "crack": [200]}, "beta": {"good": [1]}}
    )
    with pytest.raises(
        ClassTableError, match=r"only in the model: \['beta/defective \(beta defective\)'\]"
    ):
        match_class_table(spec, load_dataset(partial))


def test_keep_data_on_a_merged_model_suggests_merge(model: Path, data: Path) -> None:
    spec = ModelSpec.for_model(model)
    with pytest.raises(ClassTableError, match="use --defect-types merge"):
        match_class_table(spec, load_dataset(data, defect_types="keep"))
    match = match_class_table(spec, load_dataset(data, defect_types="merge"))
    assert match.texture_to_group == (0, 1)


def test_groups_match_by_name_not_order(model: Path, tmp_path: Path) -> None:
    spec = ModelSpec.for_model(model)
    ds = load_dataset(write_set(tmp_path / "d", LAYOUT))
    doc = {"groups": ["beta", "alpha"]}
    (ds.root / "dataset.json").write_text(json.dumps(doc))
    swapped = load_dataset(ds.root)
    match = match_class_table(spec, swapped)
    assert match.texture_to_group == (1, 0)
    assert swapped.classes[match.predicted(0, True, "defective")].name == "alpha defective"


# ---- the command -------------------------------------------------------------------------------
def test_evaluate_json_all_images_argmax(model: Path, data: Path, capsys) -> None:
    status, doc, err = run_json(
        capsys, "--model", str(model), "--data", str(data), "--split", "all"
    )
    assert status == 0, err
    assert doc["images"] == 10 and doc["failed"] == [] and doc["split_file"] is None
    assert (doc["rule"], doc["threshold"], doc["defect_types"]) == ("argmax", None, "merge")
    o = doc["overall"]
    assert (o["tp"], o["fn"], o["tn"], o["fp"]) == (4, 1, 4, 1)
    assert o["group_accuracy"] == 1.0 and o["accuracy"] == 0.8
    alpha = doc["groups"][0]
    assert (alpha["group"], alpha["tp"], alpha["fn"], alpha["tn"], alpha["fp"]) == (
        "alpha",
        2,
        1,
        2,
        1,
    )
    assert doc["confusion"]["rows"] == [
        "alpha good",
        "alpha defective",
        "beta good",
        "beta defective",
    ]
    assert doc["confusion"]["matrix"][0] == [2, 1, 0, 0]
    assert [c["images"] for c in doc["classes"]] == [3, 3, 2, 2]


def test_evaluate_threshold_option_and_sidecar_threshold(
    model: Path, data: Path, tmp_path: Path, capsys
) -> None:
    args = ["--data", str(data), "--split", "all"]
    status, doc, _ = run_json(capsys, "--model", str(model), *args, "--threshold", "0.3")
    o = doc["overall"]  # scores >= 0.3: goods 130 (0.51), 90 (0.35); every crack but none below
    assert status == 0 and (o["tp"], o["fn"], o["tn"], o["fp"]) == (5, 0, 3, 2)
    assert doc["threshold_from"] == "--threshold" and doc["threshold"] == 0.3
    # a sidecar threshold is the default; --threshold argmax overrides it
    copy = tmp_path / "m" / model.name
    copy.parent.mkdir()
    copy.write_bytes(model.read_bytes())
    ModelSpec.for_model(model).with_threshold(0.6).save_for_model(copy)
    _, doc, _ = run_json(capsys, "--model", str(copy), *args)
    o = doc["overall"]  # >= 0.6: cracks 200, 250, 180; no good image
    assert (doc["threshold"], doc["threshold_from"]) == (0.6, "sidecar")
    assert (o["tp"], o["fn"], o["tn"], o["fp"]) == (3, 2, 5, 0)
    _, doc, _ = run_json(capsys, "--model", str(copy), *args, "--threshold", "argmax")
    assert doc["rule"] == "argmax" and doc["overall"]["fp"] == 1


def test_evaluate_reads_the_split_beside_the_model(
    model: Path, data: Path, tmp_path: Path, capsys
) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    copy = folder / model.name
    copy.write_bytes(model.read_bytes())
    ModelSpec.for_model(model).save_for_model(copy)
    ds = load_dataset(data)
    index = ds.by_key()
    test = ["alpha/crack/00.png", "alpha/good/02.png", "beta/good/01.png"]
    parts = {
        "test": [index[k] for k in test],
        "val": [index["beta/crack/00.png"]],
        "train": [s for s in ds.samples if s.key not in test and s.key != "beta/crack/00.png"],
    }
    write_split(folder / "split.json", ds, parts, seed=0, val=0.1, test=0.2)
    status, doc, _ = run_json(capsys, "--model", str(copy), "--data", str(data))
    assert status == 0 and doc["split"] == "test" and doc["split_file"].endswith("split.json")
    assert doc["images"] == 3
    o = doc["overall"]  # alpha crack 100 missed, alpha good 130 flagged, beta good 90 passed
    assert (o["tp"], o["fn"], o["tn"], o["fp"]) == (0, 1, 1, 1)
    # --split-file elsewhere, another part
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_bytes((folder / "split.json").read_bytes())
    status, doc, _ = run_json(
        capsys,
        "--model",
        str(model),
        "--data",
        str(data),
        "--split",
        "val",
        "--split-file",
        str(elsewhere),
    )
    assert status == 0 and doc["images"] == 1 and doc["overall"]["tp"] == 1


def test_missing_split_file_is_a_usage_error(model: Path, data: Path, capsys) -> None:
    assert main(["evaluate", "--model", str(model), "--data", str(data)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "split.json" in err[0] and "--split all" in err[0]
    status = main(
        [
            "evaluate",
            "--model",
            str(model),
            "--data",
            str(data),
            "--split",
            "all",
            "--split-file",
            "x.json",
        ]
    )
    assert status == 2 and "--split all uses every image" in capsys.readouterr().err


def test_class_table_mismatch_exits_2(model: Path, tmp_path: Path, capsys) -> None:
    other = write_set(tmp_path / "o", {"alpha": {"good": [1], "crack": [200]}})
    assert main(["evaluate", "--model", str(model), "--data", str(other), "--split", "all"]) == 2
    err = capsys.readouterr().err
    assert "pyinspect: error:" in err and "only in the model: ['beta']" in err


def test_unreadable_images_are_listed_and_exit_1(model: Path, tmp_path: Path, capsys) -> None:
    root = write_set(tmp_path / "d", LAYOUT)
    bad = root / "beta" / "good" / "zz.png"
    bad.write_bytes(b"not a png")
    status, doc, err = run_json(
        capsys, "--model", str(model), "--data", str(root), "--split", "all"
    )
    assert status == 1
    assert [f["path"] for f in doc["failed"]] == [str(bad)]
    assert str(bad) in err and doc["images"] == 10  # the rest are measured
    assert doc["overall"]["tn"] + doc["overall"]["fp"] == 5


def test_keep_model_reports_defect_type_accuracy(tmp_path: Path, capsys) -> None:
    model = write_score_model(tmp_path / "m", defect_types=("crack", "dent"))
    data = write_set(
        tmp_path / "d",
        {"alpha": {"good": [10], "crack": [200, 30]}, "beta": {"good": [5], "dent": [220]}},
    )
    status, doc, _ = run_json(capsys, "--model", str(model), "--data", str(data), "--split", "all")
    assert status == 0 and doc["defect_types"] == "keep"  # the model's own mode by default
    o = doc["overall"]
    assert (o["defect_type_caught"], o["defect_type_accuracy"], o["tp"], o["fn"]) == (2, 1.0, 2, 1)
    assert [c["class"] for c in doc["classes"]] == [
        "alpha good",
        "alpha crack",
        "beta good",
        "beta dent",
    ]


def test_text_report(model: Path, data: Path, capsys) -> None:
    assert main(["evaluate", "--model", str(model), "--data", str(data), "--split", "all"]) == 0
    out = capsys.readouterr().out
    assert "TPR 0.8000 (4/5)" in out and "TNR 0.8000 (4/5)" in out
    assert "confusion (rows = truth" in out and "alpha defective" in out
