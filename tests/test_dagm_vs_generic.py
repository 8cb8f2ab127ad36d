"""One model, one small DAGM set, two readers: ``train.evaluate`` on the DAGM tree
(``load_dagm`` + ``evaluate_inspector``, the paper's protocol) and ``pyinspect evaluate`` on the
same set imported into the generic layout (``python -m train data import dagm``) give every
image the same truth and the same verdict (texture and defective), and the same confusion
matrix; both DAGM releases.

The model is the shipped student (6 textures × good/defective, the DAGM class table); its
sidecar's texture names become the imported groups' (``Class1`` ... ``Class6``) in a copy, since
``pyinspect evaluate`` matches groups by name.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from genericset import snapshot

from pyinspect import Inspector
from pyinspect.cli import main as pyinspect_main
from pyinspect.dataset import load_dataset
from pyinspect.evaluation import match_class_table, run_samples
from pyinspect.spec import ModelSpec
from train.dagm import load_dagm
from train.data_cli import main as data_main
from train.data_import import DAGM_DEFECT
from train.evaluate import compute_metrics, evaluate_inspector
from train.synth import synthesize

ROOT = Path(__file__).resolve().parents[1]
COUNTS = {"dev": (3, 2), "10class": (2, 2)}  # good, defective per class


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped student, its sidecar's textures named as the imported groups."""
    path = tmp_path_factory.mktemp("model") / "student.onnx"
    shutil.copy(ROOT / "models" / "student.onnx", path)
    doc = json.loads((ROOT / "models" / "student.onnx.json").read_text())
    doc["textures"] = [f"Class{t + 1}" for t in range(len(doc["textures"]))]
    ModelSpec.sidecar_path(path).write_text(json.dumps(doc))
    return path


@pytest.fixture(scope="module", params=list(COUNTS))
def trees(request: pytest.FixtureRequest, tmp_path_factory) -> tuple[str, Path, Path]:
    """(layout, the synthetic DAGM tree, its import into the generic layout)."""
    layout = request.param
    base = tmp_path_factory.mktemp(f"dagm-{layout}")
    good, defective = COUNTS[layout]
    src = base / "dagm"
    synthesize(src, classes=6, good=good, defective=defective, seed=4, layout=layout, workers=1)
    before = snapshot(src)
    assert data_main(["import", "dagm", str(src), str(base / "generic")]) == 0
    assert snapshot(src) == before
    return layout, src, base / "generic"


def generic_key(layout: str, rec) -> str:
    """Where the importer puts a DAGM image: ``ClassK/good|defect/<stem>``, the 10-class
    release's stems prefixed with their split."""
    stem = f"{rec.split}_{rec.path.stem}" if layout == "10class" else rec.path.stem
    folder = DAGM_DEFECT if rec.defective else "good"
    return f"Class{rec.texture + 1}/{folder}/{stem}{rec.path.suffix.lower()}"


def test_same_images_same_truth_same_verdicts(
    trees: tuple[str, Path, Path], model: Path, capsys
) -> None:
    layout, src, generic = trees
    records = load_dagm(src)
    good, defective = COUNTS[layout]
    assert len(records) == 6 * (good + defective)
    dagm = evaluate_inspector(model, records)

    ds = load_dataset(generic)
    with Inspector(str(model)) as insp:
        outcomes, failures = run_samples(insp, ds, ds.samples, match_class_table(insp.spec, ds))
    assert failures == []
    by_key = {o.key: o for o in outcomes}
    assert sorted(by_key) == sorted(generic_key(layout, r) for r in records)  # same images

    flagged = 0
    for rec, label, pred in zip(records, dagm.labels, dagm.predictions, strict=True):
        o = by_key[generic_key(layout, rec)]
        truth = ds.classes[o.truth]
        assert (truth.group, truth.defective) == (label // 2, bool(label % 2)), rec.path
        assert (o.group, o.defective) == (pred // 2, bool(pred % 2)), rec.path
        flagged += o.defective
    assert 0 < flagged < len(records)  # both verdicts occur: the comparison can tell

    # the command line's confusion matrix is train.evaluate's (class k = 2 × texture + defective)
    argv = ["evaluate", "--model", str(model), "--data", str(generic), "--split", "all", "--json"]
    assert pyinspect_main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["confusion"]["rows"] == [
        f"Class{t + 1} {kind}" for t in range(6) for kind in ("good", "defective")
    ]
    assert doc["confusion"]["matrix"] == compute_metrics(dagm.labels, dagm.predictions)["confusion"]
