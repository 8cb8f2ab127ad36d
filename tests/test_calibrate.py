"""``pyinspect calibrate``: the threshold rule, the sidecar it writes, the plot it keeps, and the
acceptance that ``pyinspect evaluate`` on the calibration split reproduces the operating point.

Most tests use tests/scorezoo.py's model (score = top-half brightness / 255), so the threshold
each rule picks is known; one runs the shipped student model through the direct runner.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from modelzoo import textured_frame
from scorezoo import write_score_model, write_set

from pyinspect.calibrate import UnreachableTargetError, choose_threshold, render_plot
from pyinspect.cli import main
from pyinspect.dataset import load_dataset, split_samples, write_split
from pyinspect.evaluation import OperatingPoint, operating_points
from pyinspect.spec import ModelSpec

ROOT = Path(__file__).resolve().parents[1]

# scores: good 0.039 0.235 0.510 | 0.078 0.353; defective 0.392 0.784 0.980 | 0.549 0.706
LAYOUT = {
    "alpha": {"good": [10, 60, 130], "crack": [100, 200, 250]},
    "beta": {"good": [20, 90], "crack": [140, 180]},
}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_set(tmp_path_factory.mktemp("data"), LAYOUT)


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return write_score_model(tmp_path / "model")


def sidecar(model: Path) -> Path:
    return ModelSpec.sidecar_path(model)


def calibrate(model: Path, data: Path, *rule: str, split: str = "all") -> int:
    return main(["calibrate", "--model", str(model), "--data", str(data), "--split", split, *rule])


def evaluate(model: Path, data: Path, capsys, split: str = "all") -> dict:
    status = main(
        ["evaluate", "--model", str(model), "--data", str(data), "--split", split, "--json"]
    )
    assert status == 0
    return json.loads(capsys.readouterr().out)


# ---- the rule ----------------------------------------------------------------------------------
def pt(t: float, tp: int, fn: int, tn: int, fp: int) -> OperatingPoint:
    return OperatingPoint(t, tp, fn, tn, fp)


POINTS = [  # ascending threshold; 4 defective, 4 good images
    pt(0.1, 4, 0, 0, 4),
    pt(0.2, 4, 0, 2, 2),
    pt(0.3, 4, 0, 2, 2),  # same rates as 0.2: the larger threshold wins a tie
    pt(0.5, 3, 1, 3, 1),
    pt(0.8, 1, 3, 4, 0),
]


@pytest.mark.parametrize(
    ("rule", "target", "threshold"),
    [
        ("target_tpr", 1.0, 0.3),
        ("target_tpr", 0.75, 0.5),
        ("target_tpr", 0.2, 0.8),
        ("max_false_alarm", 0.0, 0.8),
        ("max_false_alarm", 0.25, 0.5),
        ("max_false_alarm", 0.5, 0.3),  # TPR 1 at 0.2 and 0.3, same TNR: the larger
        ("max_false_alarm", 1.0, 0.3),  # 0.1 has TPR 1 too but a lower TNR
    ],
)
def test_choose_threshold(rule: str, target: float, threshold: float) -> None:
    assert choose_threshold(POINTS, rule, target).threshold == threshold


def test_unreachable_targets_name_the_best_value() -> None:
    low = [pt(0.4, 2, 2, 3, 1), pt(0.9, 1, 3, 3, 1)]
    with pytest.raises(UnreachableTargetError, match=r"TPR >= 0.9 .* best is 0.5000 \(2/4"):
        choose_threshold(low, "target_tpr", 0.9)
    with pytest.raises(UnreachableTargetError, match=r"false-alarm rate <= 0 .* best is 0.2500"):
        choose_threshold(low, "max_false_alarm", 0.0)
    with pytest.raises(UnreachableTargetError, match="every image scores 0"):
        choose_threshold([], "target_tpr", 0.5)


# ---- the command -------------------------------------------------------------------------------
def test_calibrate_writes_threshold_calibration_and_history(
    model: Path, data: Path, capsys
) -> None:
    assert calibrate(model, data, "--target-tpr", "0.8") == 0
    out = capsys.readouterr().out
    spec = ModelSpec.for_model(model)
    cal = spec.calibration
    assert cal is not None and spec.threshold == cal.threshold
    assert spec.threshold == pytest.approx(140 / 255, abs=1e-3)  # the 4th defective score
    assert (cal.rule, cal.target, cal.split, cal.tpr, cal.tnr) == (
        "target_tpr",
        0.8,
        "all",
        0.8,
        1.0,
    )
    assert (cal.tp, cal.fn, cal.tn, cal.fp) == (4, 1, 5, 0)
    assert cal.data == str(data.resolve()) and cal.created
    assert spec.history == []
    assert "TPR 0.8000 (4/5)" in out and "TNR 1.0000 (5/5)" in out
    first = spec.threshold

    assert calibrate(model, data, "--max-false-alarm", "0.2") == 0
    spec = ModelSpec.for_model(model)
    assert spec.threshold == pytest.approx(100 / 255, abs=1e-3)  # catches all, 130 flagged
    assert (spec.calibration.tp, spec.calibration.fp) == (5, 1)
    assert spec.calibration.rule == "max_false_alarm"
    (old,) = spec.history
    assert old["threshold"] == first and old["calibration"]["rule"] == "target_tpr"
    assert old["replaced"]
    assert "previous one is kept in history" in capsys.readouterr().out


@pytest.mark.parametrize("rule", [("--target-tpr", "1"), ("--max-false-alarm", "0")])
def test_evaluate_reproduces_the_calibrated_operating_point(
    model: Path, data: Path, capsys, rule: tuple[str, str]
) -> None:
    ds = load_dataset(data)
    parts = split_samples(ds, seed=3, val=0.5, test=0.0)
    write_split(model.parent / "split.json", ds, parts, seed=3, val=0.5, test=0.0)
    assert calibrate(model, data, *rule, split="val") == 0
    capsys.readouterr()
    cal = ModelSpec.for_model(model).calibration
    doc = evaluate(model, data, capsys, split="val")
    o = doc["overall"]
    assert doc["threshold"] == cal.threshold and doc["threshold_from"] == "sidecar"
    assert (o["tp"], o["fn"], o["tn"], o["fp"]) == (cal.tp, cal.fn, cal.tn, cal.fp)
    assert (o["tpr"], o["tnr"]) == (cal.tpr, cal.tnr)
    assert cal.images == doc["images"] == len(parts["val"])


def test_the_shipped_student_reproduces_its_operating_point(tmp_path: Path, capsys) -> None:
    """The real model through the direct student runner, on 6 groups named as its textures."""
    model = tmp_path / "run" / "student.onnx"
    model.parent.mkdir()
    shutil.copy(ROOT / "models" / "student.onnx", model)
    shutil.copy(ROOT / "models" / "student.onnx.json", sidecar(model))
    data = tmp_path / "data"
    for t in range(6):
        for folder in ("good", "defective"):
            d = data / f"Texture {t + 1}" / folder
            d.mkdir(parents=True)
            for i in range(3):
                img = textured_frame(224, 224, seed=100 * t + 10 * (folder == "good") + i)
                if folder == "defective":
                    cv2.ellipse(img, (112, 112), (40, 12), 30 * i, 0, 360, 30, -1)
                cv2.imwrite(str(d / f"{i}.png"), img)
    ds = load_dataset(data)
    parts = split_samples(ds, seed=0)
    write_split(model.parent / "split.json", ds, parts, seed=0, val=0.1, test=0.2)
    assert calibrate(model, data, "--target-tpr", "0.5", split="val") == 0
    capsys.readouterr()
    cal = ModelSpec.for_model(model).calibration
    doc = evaluate(model, data, capsys, split="val")
    o = doc["overall"]
    assert doc["images"] == 12 and cal.images == 12
    assert (o["tp"], o["fn"], o["tn"], o["fp"], o["tpr"], o["tnr"]) == (
        cal.tp,
        cal.fn,
        cal.tn,
        cal.fp,
        cal.tpr,
        cal.tnr,
    )
    assert cal.tpr >= 0.5
    assert doc["runner"] == cal.runner  # type: ignore[attr-defined]  # "student" where built


@pytest.mark.parametrize(
    ("layout", "rule", "best"),
    [
        (  # a good image scores highest: no false-alarm-free threshold catches anything
            {"alpha": {"good": [250, 10], "crack": [100]}, "beta": {"good": [5], "crack": [60]}},
            ("--max-false-alarm", "0"),
            "best is 0.3333",
        ),
        (  # a defective image scores 0: TPR 1 is out of reach
            {"alpha": {"good": [10], "crack": [0]}, "beta": {"good": [5], "crack": [200]}},
            ("--target-tpr", "1"),
            "best is 0.5000",
        ),
    ],
)
def test_unreachable_target_leaves_the_sidecar_byte_identical(
    model: Path, tmp_path: Path, capsys, layout: dict, rule: tuple[str, str], best: str
) -> None:
    root = write_set(tmp_path / "d", layout)
    before = sidecar(model).read_bytes()
    assert calibrate(model, root, *rule) == 1
    err = capsys.readouterr().err
    assert best in err and "not changed" in err
    assert sidecar(model).read_bytes() == before
    assert not Path(f"{model}.calibration.png").exists()


def test_plot_is_written_and_a_users_file_is_never_replaced(
    model: Path, data: Path, capsys
) -> None:
    plot = Path(f"{model}.calibration.png")
    assert calibrate(model, data, "--target-tpr", "0.8") == 0
    first = plot.read_bytes()
    assert cv2.imdecode(np.frombuffer(first, np.uint8), cv2.IMREAD_COLOR) is not None
    cal = ModelSpec.for_model(model).calibration
    assert cal.plot_sha256 == hashlib.sha256(first).hexdigest()  # type: ignore[attr-defined]
    # calibrate replaces its own plot
    assert calibrate(model, data, "--target-tpr", "1") == 0
    assert plot.read_bytes() != first
    capsys.readouterr()
    # a file someone changed (or put there) is theirs: refused up front, nothing written
    plot.write_bytes(b"my annotated copy")
    before = sidecar(model).read_bytes()
    assert calibrate(model, data, "--target-tpr", "0.8") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(plot) in err[0] and "never replaces" in err[0]
    assert plot.read_bytes() == b"my annotated copy"
    assert sidecar(model).read_bytes() == before
    # --plot elsewhere works
    other = model.parent / "elsewhere" / "roc.png"
    assert calibrate(model, data, "--target-tpr", "0.8", "--plot", str(other)) == 0
    assert other.is_file() and plot.read_bytes() == b"my annotated copy"


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--target-tpr", "0"], "--target-tpr must be in (0, 1]"),
        (["--target-tpr", "1.5"], "--target-tpr must be in (0, 1]"),
        (["--target-tpr", "nan"], "--target-tpr must be in (0, 1]"),
        (["--target-tpr", "high"], "--target-tpr must be a number"),
        (["--max-false-alarm", "1"], "--max-false-alarm must be in [0, 1)"),
        (["--max-false-alarm", "-0.1"], "--max-false-alarm must be in [0, 1)"),
        (["--target-tpr", "0.9", "--max-false-alarm", "0.1"], "both were given"),
        ([], "neither was given"),
    ],
)
def test_bad_rule_arguments_are_one_line_usage_errors(
    model: Path, data: Path, capsys, argv: list[str], named: str
) -> None:
    before = sidecar(model).read_bytes()
    assert calibrate(model, data, *argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pyinspect: error:") and named in err[0]
    assert sidecar(model).read_bytes() == before


def test_unreadable_images_or_a_one_sided_split_change_nothing(
    model: Path, tmp_path: Path, capsys
) -> None:
    root = write_set(tmp_path / "d", LAYOUT)
    (root / "alpha" / "good" / "zz.png").write_bytes(b"broken")
    before = sidecar(model).read_bytes()
    assert calibrate(model, root, "--target-tpr", "0.8") == 1
    assert "zz.png" in capsys.readouterr().err
    (root / "alpha" / "good" / "zz.png").unlink()
    ds = load_dataset(root)
    goods = [s for s in ds.samples if not s.defective]
    parts = {"train": [s for s in ds.samples if s.defective], "val": goods, "test": goods}
    write_split(model.parent / "split.json", ds, parts, seed=0, val=0.5, test=0.2)
    assert calibrate(model, root, "--target-tpr", "0.8", split="val") == 1
    assert "holds no defective images" in capsys.readouterr().err
    assert sidecar(model).read_bytes() == before
    assert not Path(f"{model}.calibration.png").exists()


# ---- the plot ----------------------------------------------------------------------------------
def test_plot_without_matplotlib_is_drawn_with_opencv(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    scores = np.r_[rng.beta(5, 2, 30), rng.beta(2, 5, 40)]
    defective = np.r_[np.ones(30, bool), np.zeros(40, bool)]
    points = operating_points(scores, defective)
    chosen = choose_threshold(points, "target_tpr", 0.9)
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)  # import raises ImportError
    png, drawn_by = render_plot(points, chosen, "t")
    assert drawn_by == "opencv"
    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None and img.shape[1] > img.shape[0] > 200
    assert (img[..., 2] > 180).sum() > 20 and ((img[..., 2] > 180) & (img[..., 0] < 80)).any()
    with pytest.raises(ImportError):
        render_plot(points, chosen, "t", use_matplotlib=True)


def test_plot_with_matplotlib() -> None:
    pytest.importorskip("matplotlib", reason="matplotlib is optional (the train extra)")
    points = operating_points([0.2, 0.4, 0.6, 0.8], [False, True, False, True])
    png, drawn_by = render_plot(points, points[1], "t")
    assert drawn_by == "matplotlib"
    assert cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR) is not None
