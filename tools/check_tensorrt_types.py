"""``mypy --strict`` of pyinspect's TensorRT path against the pinned tensorrt-stubs.

TensorRT cannot be installed on a machine without an NVIDIA GPU, so its Python API is checked
statically: a wrong method name, argument or return type in ``pyinspect/build/tensorrt.py``,
``pyinspect/backends/tensorrt.py`` or ``pyinspect/cuda_buffers.py`` fails here.

tensorrt-stubs 10.13.0.35.1 (generated from the bindings) has five lines that are not valid
Python: four parameters named ``in`` (a keyword) and one required parameter after optional ones
(``INetworkDefinition.add_scale_nd``). mypy stops at the first syntax error, so this script copies
the installed stubs to ``build/typings/`` with exactly those lines repaired (``in`` -> ``in_``;
the optional parameters made required), checks that the result parses, and runs mypy with
``mypy-tensorrt.ini``, which reads the stubs from there. Exit status: mypy's.

Usage: ``.venv/bin/python tools/check_tensorrt_types.py``
"""

from __future__ import annotations

import ast
import re
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "build" / "typings"
PINNED = "10.13.0.35.1"
STUB_FILES = (
    "tensorrt/__init__.pyi",
    "tensorrt_bindings/__init__.pyi",
    "tensorrt_bindings/tensorrt.pyi",
)


def repair(line: str) -> str:
    """Make one stub line valid Python without changing any signature pyinspect uses."""
    stripped = line.strip()
    if not stripped.startswith("def "):
        return line
    try:
        ast.parse(stripped + "\n    ...")
    except SyntaxError:
        pass
    else:
        return line
    fixed = re.sub(r"([(,]\s*)in:", r"\1in_:", line)
    if fixed == line:  # a required parameter after optional ones: drop the defaults
        fixed = line.replace(" = None", "")
    return fixed


def main() -> int:
    try:
        dist = metadata.distribution("tensorrt-stubs")
    except metadata.PackageNotFoundError:
        print(f"tensorrt-stubs is not installed: pip install --no-deps tensorrt-stubs=={PINNED}")
        return 2
    if dist.version != PINNED:
        print(f"tensorrt-stubs {dist.version} installed, this check is pinned to {PINNED}")
        return 2
    for rel in STUB_FILES:
        src = Path(str(dist.locate_file(rel)))
        text = "".join(repair(line) for line in src.read_text().splitlines(keepends=True))
        ast.parse(text, filename=str(src))  # any syntax error left is a new stub problem
        dst = OUT / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text(text)

    from mypy import api

    stdout, stderr, status = api.run(["--config-file", str(ROOT / "mypy-tensorrt.ini")])
    sys.stdout.write(stdout)
    sys.stderr.write(stderr)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
