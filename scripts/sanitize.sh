#!/usr/bin/env bash
# `make sanitize`: build pyinspect._core with AddressSanitizer + UndefinedBehaviorSanitizer and run
# the core's tests against it.
#
# Why a separate build: the sanitised module is slow and needs libasan preloaded into Python, so it
# must never replace the module that `pip install -e .` put in the environment. It is built with
# cmake straight into build/sanitize/ and staged with a copy of the pure-Python package in
# build/sanitize/stage/, which goes first on PYTHONPATH. A sitecustomize.py there drops
# scikit-build-core's editable-install import hook, which would otherwise send `import pyinspect`
# back to the normal build (it sits in front of sys.path on sys.meta_path), and PYTHONSAFEPATH keeps
# the checkout's own pyinspect/ (sources without a built _core) off sys.path. The same environment
# reaches the subprocesses the tests start.
#
# ASAN_OPTIONS=detect_leaks=0: CPython keeps interned objects and arenas until exit, which
#   LeakSanitizer reports as leaks in every run; leaks in the core are covered by the soak
#   (benchmarks/soak.py) instead.
# -fno-sanitize-recover + halt_on_error=1: the first undefined behaviour fails the run.
#
# Environment: PYTHON (default .venv/bin/python), CXX (default c++; GCC or Clang),
# SANITIZE_TESTS (default: the core's test files), PYTEST_ARGS (extra pytest arguments).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

PY=${PYTHON:-$ROOT/.venv/bin/python}
CXX=${CXX:-c++}
BUILD=$ROOT/build/sanitize
STAGE=$BUILD/stage
TESTS=${SANITIZE_TESTS:-tests/test_grid.py tests/test_tiling.py tests/test_voting.py tests/test_fuzz.py}
SAN_FLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g"

[[ "$PY" == */* ]] && PY=$(realpath -s "$PY")  # absolute, but keep the venv's symlink
CMAKE=$(command -v cmake || true)
[[ -z "$CMAKE" && -x "$(dirname "$PY")/cmake" ]] && CMAKE=$(dirname "$PY")/cmake
[[ -n "$CMAKE" ]] || { echo "sanitize: cmake not found (pip install cmake)" >&2; exit 2; }
"$PY" -c "import pybind11, pytest, hypothesis" || {
    echo "sanitize: $PY lacks pybind11/pytest/hypothesis (run make install first)" >&2
    exit 2
}

# The sanitiser runtime that this compiler links against; preloaded because python itself is not
# instrumented (ASan must interpose malloc before any other library is loaded).
ASAN_LIB=$("$CXX" -print-file-name=libasan.so)
if [[ ! -e "$ASAN_LIB" ]]; then  # Clang names it libclang_rt.asan-<arch>.so
    ASAN_LIB=$("$CXX" -print-file-name="libclang_rt.asan-$(uname -m).so")
fi
[[ -e "$ASAN_LIB" ]] || { echo "sanitize: no ASan runtime for $CXX" >&2; exit 2; }
# python does not link libstdc++, so without it preloaded as well ASan cannot find the real
# __cxa_throw and aborts on the core's first exception ("real___cxa_throw != 0").
STDCXX_LIB=$("$CXX" -print-file-name=libstdc++.so)

VERSION=$("$PY" -c "import tomllib; print(tomllib.load(open('pyproject.toml', 'rb'))['project']['version'])")
GENERATOR=()
command -v ninja >/dev/null && GENERATOR=(-G Ninja)
[[ -f "$BUILD/CMakeCache.txt" ]] && GENERATOR=()  # keep whatever generator the cache has

echo "== sanitize: configure + build _core ($CXX, $SAN_FLAGS) in $BUILD"
"$CMAKE" -S "$ROOT" -B "$BUILD" "${GENERATOR[@]}" \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_COMPILER="$CXX" \
    -DCMAKE_CXX_FLAGS="$SAN_FLAGS" \
    -DCMAKE_MODULE_LINKER_FLAGS="$SAN_FLAGS" \
    -DCMAKE_SHARED_LINKER_FLAGS="$SAN_FLAGS" \
    -DSKBUILD_PROJECT_VERSION="$VERSION" \
    -DPYINSPECT_WITH_OPENVINO=OFF \
    -DPython_EXECUTABLE="$PY" \
    -Dpybind11_DIR="$("$PY" -m pybind11 --cmakedir)" >/dev/null
"$CMAKE" --build "$BUILD" --target _core -j "$(nproc 2>/dev/null || echo 2)"

SO=$(find "$BUILD" -maxdepth 1 -name '_core*.so' -print -quit)
[[ -n "$SO" ]] || { echo "sanitize: the build produced no _core*.so" >&2; exit 1; }

echo "== sanitize: stage the package with the sanitised _core in $STAGE"
rm -rf "$STAGE"
mkdir -p "$STAGE"
cp -r "$ROOT/pyinspect" "$STAGE/pyinspect"
find "$STAGE/pyinspect" \( -name '*.so' -o -name '__pycache__' \) -prune -exec rm -rf {} +
cp "$SO" "$STAGE/pyinspect/"
cat >"$STAGE/sitecustomize.py" <<'EOF'
"""Staged by scripts/sanitize.sh: drop the editable-install import hook so that the pyinspect
package found first on sys.path (this folder, with the sanitised _core) is the one imported."""
import sys

sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != "ScikitBuildRedirectingFinder"]
EOF

export PYTHONPATH="$STAGE${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONSAFEPATH=1  # no cwd on sys.path: ./pyinspect (sources, no _core) must not win
export LD_PRELOAD="$ASAN_LIB $STDCXX_LIB${LD_PRELOAD:+ $LD_PRELOAD}"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:check_initialization_order=1:strict_string_checks=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"

# Refuse to report a pass that did not exercise the sanitised build.
"$PY" - "$STAGE" <<'EOF'
import sys
from pathlib import Path

import pyinspect._core as core

stage = Path(sys.argv[1]).resolve()
where = Path(core.__file__).resolve()
if stage not in where.parents:
    sys.exit(f"sanitize: imported {where}, not the sanitised build under {stage}")
if b"__asan_init" not in where.read_bytes() or b"__ubsan_handle" not in where.read_bytes():
    sys.exit(f"sanitize: {where} is not instrumented with ASan + UBSan")
print(f"== sanitize: using {where}")
EOF

echo "== sanitize: pytest $TESTS"
# --capture=sys: the sanitisers write their report to file descriptor 2 and then abort; pytest's
# default fd-level capture would swallow it.
# shellcheck disable=SC2086  # TESTS and PYTEST_ARGS are word lists
"$PY" -m pytest -p no:cacheprovider --capture=sys -q $TESTS ${PYTEST_ARGS:-}
echo "== sanitize: passed (ASan + UBSan, no reports)"
