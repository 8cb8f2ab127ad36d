"""The package layout rules a reader relies on, checked by walking the source.

No pyinspect or train module imports another module's ``_private`` name or module, or reaches
into an object's ``_private`` attribute that its own module does not define (``self._x`` of a
base class is the class's own). Allowed: the
compiled ``pyinspect._core`` / ``pyinspect._fastcpu`` (their Python wrappers are the owners).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pyinspect", "train")
COMPILED = {"pyinspect._core", "pyinspect._fastcpu"}


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def _own_private_names(tree: ast.Module) -> set[str]:
    """Private names a module defines: functions, classes, attributes it assigns."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.arg | ast.keyword) and node.arg:  # keyword: set_defaults(_x=)
            names.add(node.arg)
    return {n for n in names if _private(n)}


def violations(path: Path) -> list[str]:
    """Each reach into another module's private name in ``path``, as 'file:line: what'."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    own = _own_private_names(tree)
    where = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] not in PACKAGES:
                continue
            if any(_private(part) for part in node.module.split(".")):
                found.append(f"{where}:{node.lineno}: from {node.module} import ...")
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if _private(alias.name) and full not in COMPILED:
                    found.append(f"{where}:{node.lineno}: from {node.module} import {alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] not in PACKAGES or alias.name in COMPILED:
                    continue
                if any(map(_private, parts)):
                    found.append(f"{where}:{node.lineno}: import {alias.name}")
        elif isinstance(node, ast.Attribute) and _private(node.attr) and node.attr not in own:
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue  # a class's own or inherited attribute
            found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_module_reaches_into_another_modules_private_names() -> None:
    found = [v for path in _modules() for v in violations(path)]
    assert not found, "private names used across modules:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from pyinspect.tiling import _grid\n", "from pyinspect.tiling import _grid"),
        ("import train._cli\n", "import train._cli"),
        ("def f(insp):\n    return insp._closed\n", "insp._closed"),
    ],
)
def test_the_walker_sees_each_kind_of_reach(tmp_path: Path, source: str, expected: str) -> None:
    path = tmp_path / "probe.py"
    path.write_text(source)
    assert any(expected in v for v in violations(path))


def test_the_walker_allows_own_and_compiled_names(tmp_path: Path) -> None:
    source = (
        "from pyinspect import _core\n"
        "class A:\n    def __init__(self):\n        self._x = 1\n"
        "def f(a):\n    return a._x\n"
    )
    path = tmp_path / "probe.py"
    path.write_text(source)
    assert violations(path) == []
