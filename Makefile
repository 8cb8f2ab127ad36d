# Newcomer entry points: `make demo` (see README) and `make test`.
# The environment lives in .venv at the repo root; a stamp file records that it is installed,
# so a second `make test` only runs the checks (it reinstalls when pyproject.toml, CMakeLists.txt
# or the C++ sources change, which also rebuilds pyinspect._core).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.pyinspect-installed
# tensorrt-stubs pins tensorrt wheels that cannot install without NVIDIA's index and a GPU;
# only its .pyi files are wanted (mypy), so it is installed without dependencies.
TENSORRT_STUBS := tensorrt-stubs==10.13.0.35.1
# OpenVINO must be installed before the build so CMake finds it and compiles pyinspect._fastcpu
# (the whole-frame OpenVINO runner); the direct student runner is in pyinspect._core either way.
OPENVINO := openvino==2026.4.1

.PHONY: test lint pytest install demo sanitize clean-venv

test: lint pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python tools/check_tensorrt_types.py

pytest: $(STAMP)
	$(BIN)/pytest

install: $(STAMP)

# The C++ core under AddressSanitizer + UBSan, in its own build dir (CI runs it after `make test`).
sanitize: $(STAMP)
	bash scripts/sanitize.sh

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml $(wildcard CMakeLists.txt) $(wildcard cpp/*) | $(BIN)/python
	$(BIN)/pip install scikit-build-core pybind11 $(OPENVINO)
	$(BIN)/pip install --no-build-isolation -e '.[train,dev,openvino]'
	$(BIN)/pip install --no-deps $(TENSORRT_STUBS)
	touch $@

# demo: runtime only (no torch, no OpenVINO): creates .venv if absent, installs pyinspect when its
# core is missing (pyinspect._core holds the direct C++ student runner), then inspects a fresh
# synthetic sample with the shipped models/student.onnx.
demo: | $(BIN)/python
	@$(BIN)/python -c "import onnx, onnxruntime, cv2, tqdm, pydantic; from pyinspect._core import student_engine_supported" 2>/dev/null || \
	  { $(BIN)/pip install scikit-build-core pybind11 && \
	    $(BIN)/pip install --no-build-isolation -e . ; }
	$(BIN)/python scripts/demo.py

clean-venv:
	rm -rf $(VENV)
