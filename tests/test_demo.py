"""``scripts/demo.py`` (``make demo``): its sample comes from the generator version the shipped
student was trained on, as the model's guard record says."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _demo():
    spec = importlib.util.spec_from_file_location("demo", ROOT / "scripts" / "demo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_version_is_the_guard_records(tmp_path: Path) -> None:
    from pyinspect.precision_guard import write_synthetic_guard

    demo = _demo()
    model = tmp_path / "student.onnx"
    model.write_bytes(b"")
    assert demo.trained_on(model) == 1  # no record: the first generator
    write_synthetic_guard(model, version=4)
    assert demo.trained_on(model) == 4


def test_a_bad_record_is_named_and_nothing_is_generated(tmp_path: Path, capsys) -> None:
    from pyinspect.precision_guard import guard_path, write_synthetic_guard

    demo = _demo()
    model = tmp_path / "student.onnx"
    shutil.copyfile(ROOT / "models" / "student.onnx", model)
    record = write_synthetic_guard(model, version=4)
    doc = json.loads(record.read_text())
    doc["synth"]["version"] = "four"
    guard_path(model).write_text(json.dumps(doc))
    out = tmp_path / "demo_out"
    assert demo.main(["--model", str(model), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "student.onnx.guard.json" in err and "'synth.version' must be an int" in err
    assert not out.exists()


def test_the_sample_is_drawn_by_the_version_asked(tmp_path: Path, capsys) -> None:
    demo = _demo()
    pixels = {}
    for version in (1, 4):
        sample = demo.make_sample(tmp_path / f"v{version}", 1, 7, version)
        files = sorted(sample.glob("Class*/*.png"))
        assert len(files) == 12  # 6 textures x (1 good + 1 defective)
        pixels[version] = [f.read_bytes() for f in files]
    assert "generator version 4, seed 7" in capsys.readouterr().out
    assert pixels[1] != pixels[4]
    demo.make_sample(tmp_path / "v4", 1, 7, 4)  # the same folder again: reused, not rewritten
    assert "reusing the sample" in capsys.readouterr().out
