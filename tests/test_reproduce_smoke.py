"""The ``smoke`` preset end to end: data -> teacher -> distil -> export -> pyinspect.Inspector."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="the training pipeline needs the [train] extra")
pytest.importorskip("pyinspect._core", reason="the C++ core is not built")


def test_smoke_preset_end_to_end(tmp_path: Path) -> None:
    from pyinspect import Inspector
    from pyinspect.spec import ModelSpec
    from train.__main__ import main

    out = tmp_path / "smoke"
    assert main(["reproduce", "--preset", "smoke", "--out", str(out), "--threads", "1"]) == 0
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
    assert (out / "fig4_accuracy_vs_iteration.png").stat().st_size > 1000
