"""``tools/fit_synth_v2.py --write`` rewrites one table's entry and nothing else: version 2's
pixels must not move when version 4's class-4 table is fitted (both tables hold a class 4)."""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

from train import synth

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def fit_tool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        "fit_synth_v2", ROOT / "tools" / "fit_synth_v2.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "fit_synth_v2", module)
    spec.loader.exec_module(module)
    copy = tmp_path / "synth.py"
    shutil.copy(ROOT / "train" / "synth.py", copy)
    monkeypatch.setattr(module, "SYNTH_PY", copy)
    return module, copy


def _entry_text(text: str, table: str, texture: int) -> str:
    head = text.index(f"\n{table}: dict[int, TextureLook] = {{\n")
    start = text.index(f"    {texture}: TextureLook(\n", head)
    return text[start : text.index("\n    ),\n", start)]


@pytest.mark.parametrize(("table", "other"), [("V4_LOOKS", "V2_LOOKS"), ("V2_LOOKS", "V4_LOOKS")])
def test_write_replaces_the_named_tables_entry_only(fit_tool, table: str, other: str) -> None:  # type: ignore[no-untyped-def]
    module, copy = fit_tool
    before = copy.read_text()
    look = dataclasses.replace(synth.V4_LOOKS[3], aniso=(0.5, -0.25, 0.125, -0.0625))
    module.write(table, 3, look)
    after = copy.read_text()
    assert _entry_text(after, other, 3) == _entry_text(before, other, 3)
    assert "0.5000, -0.2500, 0.1250, -0.0625," in _entry_text(after, table, 3)
    assert len(after.splitlines()) == len(before.splitlines())


def test_write_names_a_missing_table(fit_tool) -> None:  # type: ignore[no-untyped-def]
    module, _ = fit_tool
    with pytest.raises(SystemExit, match="no V9_LOOKS table"):
        module.write("V9_LOOKS", 3, synth.V4_LOOKS[3])
