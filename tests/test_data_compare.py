"""``python -m train data compare``: statistics, verdicts, exit codes and refused inputs."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from train.dagm import Ellipse, draw_ellipse
from train.data_cli import main as data_main
from train.data_compare import (
    CompareError,
    fit_ellipse,
    log_spectrum_rms,
    measure_texture,
    total_variation,
    wasserstein_hist,
    wasserstein_samples,
)
from train.synth import synthesize

ROOT = Path(__file__).resolve().parents[1]
TEXTURE = {"grey histogram", "mean", "std", "power spectrum", "orientation energy"}


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two small synthetic sets of classes 1 and 2 that differ only in their seed."""
    base = tmp_path_factory.mktemp("compare")
    for seed in (0, 1):
        synthesize(
            base / f"s{seed}", classes=2, good=4, defective=6, seed=seed, workers=1, progress=False
        )
    return base / "s0", base / "s1"


def _run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = data_main(["compare", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_two_seeds_are_close_with_json_and_a_sheet(
    sets: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real, synth = sets
    sheet = tmp_path / "sheet.png"
    code, out, _ = _run(capsys, real, synth, "--json", "--sheet", sheet)
    assert code == 0
    result = json.loads(out)
    assert result["close"] is True
    assert [c["class"] for c in result["classes"]] == [1, 2]
    for c in result["classes"]:
        assert (c["real_good"], c["real_defective"]) == (4, 6)
        names = {s["name"] for s in c["statistics"]}
        assert TEXTURE | {"local contrast", "defect size", "defect mean contrast"} <= names
        for s in c["statistics"]:
            assert s["verdict"] == "close", (c["class"], s)
            assert 0 <= s["distance"] <= s["bar"]
    img = cv2.imread(str(sheet))
    assert img is not None and img.shape[0] > 2 * 192  # a row per class


def test_a_swapped_texture_is_far_for_that_class_only(
    sets: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real, synth = sets
    swapped = tmp_path / "swapped"
    shutil.copytree(real, swapped)
    for name in ("Class1", "Class1_def"):
        shutil.rmtree(swapped / name)
        shutil.copytree(real / name.replace("1", "2"), swapped / name)
    code, out, _ = _run(capsys, swapped, synth)
    assert code == 1
    assert "Class1: far (" in out and "Class2: close" in out
    assert out.rstrip().endswith("far: Class1")
    code, out, _ = _run(capsys, swapped, synth, "--json")
    assert code == 1
    by_class = {c["class"]: c for c in json.loads(out)["classes"]}
    assert by_class[2]["close"] and not by_class[2]["far"]
    assert not by_class[1]["close"]
    assert set(by_class[1]["far"]) >= TEXTURE | {"local contrast"}


def test_bad_inputs_are_named_and_exit_2(
    sets: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real, synth = sets
    code, out, err = _run(capsys, tmp_path / "nowhere", synth)
    assert code == 2 and "REAL" in err and "nowhere" in err and not out

    other = tmp_path / "other"
    for name in ("Class3", "Class3_def"):
        shutil.copytree(real / name.replace("3", "1"), other / name)
    code, _, err = _run(capsys, other, synth)
    assert code == 2
    assert "no class in both" in err and "Class3" in err and "Class1, Class2" in err

    lone = tmp_path / "lone"
    (lone / "Class2").mkdir(parents=True)
    shutil.copy(real / "Class2" / "1.png", lone / "Class2" / "1.png")
    code, _, err = _run(capsys, lone, synth)
    assert code == 2
    assert "Class2: only 1 real image" in err and "at least 2" in err

    broken = tmp_path / "broken"
    shutil.copytree(real, broken)
    (broken / "Class1_def" / "labels.txt").write_text("1 2 3\n")
    code, _, err = _run(capsys, broken, synth)
    assert code == 2 and "labels.txt:1" in err


def test_the_sheet_never_replaces_a_file_nor_lands_in_the_tracked_tree(
    sets: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real, synth = sets
    taken = tmp_path / "taken.png"
    taken.write_bytes(b"mine")
    code, out, err = _run(capsys, real, synth, "--sheet", taken)
    assert code == 2 and "already exists" in err and not out
    assert taken.read_bytes() == b"mine"

    inside = ROOT / "docs" / "compare-sheet-test.png"
    code, _, err = _run(capsys, real, synth, "--sheet", inside)
    assert code == 2 and "not git-ignored" in err
    assert not inside.exists()

    code, _, err = _run(capsys, real, synth, "--sheet", tmp_path / "no" / "such" / "s.png")
    assert code == 2 and "does not exist" in err


def test_distances() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, 500)
    assert wasserstein_samples(x, x + 3.0) == pytest.approx(3.0)
    assert wasserstein_samples([1.0], [1.0, 3.0]) == pytest.approx(1.0)
    h = np.zeros(256)
    h[10] = 5
    g = np.zeros(256)
    g[14] = 2
    assert wasserstein_hist(h, g) == pytest.approx(4.0)
    assert wasserstein_hist(h, g, 0.5) == pytest.approx(2.0)
    assert total_variation([1, 0, 0], [0, 0, 7]) == pytest.approx(1.0)
    assert total_variation([1, 1], [2, 2]) == pytest.approx(0.0)
    p = rng.uniform(0.1, 1, 63)
    assert log_spectrum_rms(p, 40 * p) == pytest.approx(0.0, abs=1e-9)  # shape, not power
    assert log_spectrum_rms(p, p * np.r_[10.0, np.ones(62)]) > 0.5


def test_fit_ellipse_recovers_a_drawn_ellipse() -> None:
    canvas = np.zeros((256, 256), np.uint8)
    draw_ellipse(canvas, Ellipse(120.0, 90.0, 40.0, 15.0, 0.6))
    e = fit_ellipse(canvas > 0)
    assert e is not None
    assert (e.cx, e.cy) == pytest.approx((120.0, 90.0), abs=0.2)
    # cv2's fill includes the boundary pixels: about half a pixel more per semi-axis
    assert (e.a, e.b) == pytest.approx((40.0, 15.0), abs=0.7)
    assert math.isclose(e.theta, 0.6, abs_tol=0.02)
    assert fit_ellipse(np.zeros((8, 8), bool)) is None


def test_texture_skips_the_defect_and_refuses_a_tiny_image() -> None:
    img = np.random.default_rng(1).integers(0, 256, (256, 256), dtype=np.uint8)
    whole = measure_texture(img)
    assert whole is not None and whole.pixels == 256 * 256 and whole.spectrum_w == 9
    corner = np.zeros(img.shape, bool)
    corner[:20, :20] = True
    part = measure_texture(img, corner)
    assert part is not None and part.spectrum_w == 9 - 1
    assert measure_texture(img, np.ones(img.shape, bool)) is None
    with pytest.raises(CompareError, match="at least 128"):
        measure_texture(img[:100])


def test_imports_neither_torch_nor_scipy() -> None:
    code = (
        "import sys, train.data_compare; "
        "print(sorted(m for m in ('torch', 'scipy') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "[]"
