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

# The serving environment (`make serve-env`): what a Triton Python-backend model imports through
# EXECUTION_ENV_PATH. That backend fails every output when the environment has numpy >= 2, so it
# is its own venv with numpy < 2 and pyinspect installed editable (the Python follows the tree; the
# compiled core is built in build/serve-*, rebuilt when the C++ changes).
SERVE_VENV := .venv-serve
SERVE_STAMP := $(SERVE_VENV)/.pyinspect-installed
# The real tritonserver binary (Python backend only) from the nvidia-pytriton wheel, unpacked under
# .venv without installing the package (its metadata pins numpy < 2).
PYTRITON := nvidia-pytriton==0.7.0
TRITON_DIR := $(VENV)/tritonserver
TRITON_STAMP := $(TRITON_DIR)/.unpacked
PY_MINOR = $(shell $(BIN)/python -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')

.PHONY: test lint pytest install demo sanitize clean-venv serve-env mosquitto

test: lint pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python tools/check_tensorrt_types.py

pytest: $(STAMP) $(SERVE_STAMP) $(TRITON_STAMP) mosquitto
	$(BIN)/pytest

install: $(STAMP)

# The MQTT broker the station's tests start (tests/line_helpers.py); CI runs this as root.
mosquitto:
	@command -v mosquitto >/dev/null || test -x /usr/sbin/mosquitto || \
	  (apt-get update && apt-get install -y mosquitto)

# The C++ core under AddressSanitizer + UBSan, in its own build dir (CI runs it after `make test`).
sanitize: $(STAMP)
	bash scripts/sanitize.sh

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml $(wildcard CMakeLists.txt) $(wildcard cpp/*) | $(BIN)/python
	$(BIN)/pip install scikit-build-core pybind11 $(OPENVINO)
	$(BIN)/pip install --no-build-isolation -e '.[train,dev,openvino,serve,line]'
	$(BIN)/pip install --no-deps $(TENSORRT_STUBS)
	touch $@

serve-env: $(SERVE_STAMP) $(TRITON_STAMP)

$(SERVE_STAMP): pyproject.toml $(wildcard CMakeLists.txt) $(wildcard cpp/*) | $(BIN)/python
	$(BIN)/python -m venv $(SERVE_VENV)
	$(SERVE_VENV)/bin/pip install 'numpy<2' scikit-build-core pybind11
	$(SERVE_VENV)/bin/pip install --no-build-isolation -C build-dir=build/serve-{wheel_tag} -e . 'numpy<2'
	touch $@

$(TRITON_STAMP): | $(BIN)/python
	rm -rf $(TRITON_DIR) && mkdir -p $(TRITON_DIR)/wheel
	$(BIN)/pip download --no-deps --only-binary=:all: -d $(TRITON_DIR)/wheel $(PYTRITON)
	cd $(TRITON_DIR) && $(abspath $(BIN))/python -m zipfile -e wheel/nvidia_pytriton-*.whl unpacked
	mkdir -p $(TRITON_DIR)/server && mv $(TRITON_DIR)/unpacked/pytriton/tritonserver $(TRITON_DIR)/server/ \
	  && mv $(TRITON_DIR)/unpacked/nvidia_pytriton.libs $(TRITON_DIR)/server/libs
	cp $(TRITON_DIR)/server/tritonserver/python_backend_stubs/$(PY_MINOR)/triton_python_backend_stub \
	  $(TRITON_DIR)/server/tritonserver/backends/python/
	chmod +x $(TRITON_DIR)/server/tritonserver/bin/* $(TRITON_DIR)/server/tritonserver/backends/python/triton_python_backend_stub
	rm -rf $(TRITON_DIR)/wheel $(TRITON_DIR)/unpacked
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
	rm -rf $(VENV) $(SERVE_VENV)
