#!/usr/bin/env bash
# `make sanitize`: build pyinspect._core with AddressSanitizer + UndefinedBehaviorSanitizer, drive
# its direct student engine through every code path, and run the core's tests against it.
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

# The files built with -mavx2 or -mavx512f must define no weak (inline or template) function: the
# linker keeps one copy of each for the whole module, and an AVX2 (AVX-512) copy would then also run
# in baseline code, which crashes on an x86-64 CPU without it (see cpp/student_kernels_avx2.cpp).
NM=$(command -v gcc-nm || command -v nm || true)
if [[ -n "$NM" ]]; then
    for obj in $(find "$BUILD/CMakeFiles" -name '*_avx2.cpp.o' -o -name '*_avx512.cpp.o'); do
        weak=$("$NM" -C --defined-only "$obj" | awk '$2 ~ /^[VvWwu]$/')
        if [[ -n "$weak" ]]; then
            printf 'sanitize: %s defines weak symbols:\n%s\n' "$obj" "$weak" >&2
            exit 1
        fi
    done
fi

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

echo "== sanitize: the direct student engine (random weights, every code path)"
# The student runner's tests need a model file and a reference backend; this drives the engine
# itself: the shared path (aligned grid) against the per-patch path (one box per call) on the same
# patches, strided and offset frames, 1 to 3 threads (more threads than cores on a small machine).
"$PY" - <<'EOF'
import numpy as np

import pyinspect._core as core
from pyinspect.runners.student import RECORD_HEAD

if not core.student_engine_supported():
    print("== sanitize: no AVX2+FMA on this CPU, student engine not exercised")
    raise SystemExit(0)
rng = np.random.default_rng(0)
texture, defective = [0, 0, 1, 1, 2, 2], [False, True] * 3


def weights(widths, cin, hidden):
    w = {}
    for i, cout in enumerate(widths, start=1):
        w[f"conv{i}_w"] = rng.normal(0, (2 / (9 * cin)) ** 0.5, (cout, cin, 3, 3)).astype(np.float32)
        w[f"conv{i}_b"] = rng.normal(0, 0.1, cout).astype(np.float32)
        cin = cout
    flat = widths[-1] * 49
    w["fc1_w"] = rng.normal(0, (2 / flat) ** 0.5, (hidden, flat)).astype(np.float32)
    w["fc1_b"] = rng.normal(0, 0.1, hidden).astype(np.float32)
    w["fc2_w"] = rng.normal(0, (1 / hidden) ** 0.5, (6, hidden)).astype(np.float32)
    w["fc2_b"] = np.zeros(6, np.float32)
    return w


# the paper's widths (channel counts compiled into the kernels), then padded widths read at run
# time with 3 input channels and an FC1 width that is not a multiple of 8
for widths, in_ch, hidden, thread_counts in (
    ((4, 8, 16, 4, 4), 1, 64, (1, 2, 3)),
    ((5, 9, 17, 33, 64), 3, 20, (2,)),
):
    w = weights(widths, in_ch, hidden)
    for threads in thread_counts:
        runner = core.StudentRunner(w, in_ch, 1 / 255, -0.5, 0.0, threads, texture, defective, True)
        for height, width in ((512, 512), (600, 600), (224, 224), (480, 640)):
            base = rng.integers(0, 256, (height + 3, 2 * width + 5), dtype=np.uint8)
            views = (
                base[:height, :width], base[3:, 5::2], np.ascontiguousarray(base[:height, :width])
            )
            for frame in views:
                boxes = core.patch_grid(height, width)
                decisions = RECORD_HEAD.unpack_from(runner.run(frame, boxes, 0.5))[10]
                if decisions != len(boxes):
                    raise SystemExit(f"{len(boxes)} boxes but {decisions} decisions")
                got = runner.logits()
                one = []
                for box in boxes:  # one box per call: the per-patch path
                    runner.run(frame, box[None], -1.0)
                    one.append(runner.logits()[0])
                delta = float(np.abs(got - np.stack(one)).max())
                if not delta <= 1e-4 * max(1.0, float(np.abs(got).max())):
                    msg = f"{widths} {height}x{width}, {threads} threads: shared vs per-patch {delta}"
                    raise SystemExit(msg)
print("== sanitize: student engine ok (shared == per-patch path, 2 widths, 1 to 3 threads)")
EOF

echo "== sanitize: pytest $TESTS"
# --capture=sys: the sanitisers write their report to file descriptor 2 and then abort; pytest's
# default fd-level capture would swallow it.
# shellcheck disable=SC2086  # TESTS and PYTEST_ARGS are word lists
"$PY" -m pytest -p no:cacheprovider --capture=sys -q $TESTS ${PYTEST_ARGS:-}
echo "== sanitize: passed (ASan + UBSan, no reports)"
