"""TensorRT backend and the cuda-python owners (pyinspect.cuda_buffers), against the recording
stand-ins in tests/fakes: plans come from the real builder driven through the fake TensorRT, and
the fake engine computes known logits on fake device memory, so a wrong pointer, size, order or a
missing synchronise changes the numbers. Real-GPU tests are marked ``gpu`` and skip here."""

from __future__ import annotations

import gc
import sys
import weakref
from pathlib import Path

import numpy as np
import pytest
from fakes import FakeGPU, install, reference_logits
from fakes.cudart import cudaError_t
from modelzoo import TinyBundle, textured_frame, write_tiny

from pyinspect import cuda_buffers
from pyinspect.backends.base import backend_info, pick_backend
from pyinspect.backends.tensorrt import (
    IOTensor,
    TensorRTBackend,
    check_plan_compatible,
    is_available,
    numpy_dtype,
    tensorrt_importable,
)
from pyinspect.build.tensorrt import BuildOptions, build_engine
from pyinspect.errors import (
    BackendError,
    BackendUnavailableError,
    InputError,
    ModelFileError,
    SpecError,
)
from pyinspect.spec import ModelSpec

PATCH = 32
K = 12


@pytest.fixture
def gpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeGPU:
    monkeypatch.setenv("PYINSPECT_CACHE_DIR", str(tmp_path / "cache"))
    return install(monkeypatch)


def _plan(folder: Path, *, dtype: str = "float32", **options: object) -> tuple[Path, ModelSpec]:
    bundle: TinyBundle = write_tiny(folder, "student.onnx", patch=PATCH, dtype=dtype)  # type: ignore[arg-type]
    result = build_engine(bundle.model_path, None, BuildOptions(**options))  # type: ignore[arg-type]
    return result.plan, ModelSpec.for_model(result.plan)


@pytest.fixture
def plan(gpu: FakeGPU, tmp_path: Path) -> tuple[Path, ModelSpec]:
    return _plan(tmp_path / "m", max_batch=16)


def _fill(backend: TensorRTBackend, batch: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(batch, 3, PATCH, PATCH))
    buf = backend.input_buffer(batch)
    buf[:] = x
    return buf.copy()


# ---- inference through the fake GPU --------------------------------------------------------------
@pytest.mark.parametrize("batch", [1, 9, 16])
def test_logits_match_the_engine(gpu: FakeGPU, plan: tuple[Path, ModelSpec], batch: int) -> None:
    with TensorRTBackend(*plan) as backend:
        x = _fill(backend, batch, seed=batch)
        got = backend.infer(batch)
        assert got.shape == (batch, K) and got.dtype == np.float32
        np.testing.assert_allclose(got, reference_logits(x, K), rtol=1e-6)


def test_call_order_per_infer(gpu: FakeGPU, plan: tuple[Path, ModelSpec]) -> None:
    with TensorRTBackend(*plan) as backend:
        _fill(backend, 9, seed=0)
        since = len(gpu.log)
        backend.infer(9)
        assert gpu.names(since) == [
            "trt.set_input_shape",
            "trt.set_tensor_address",
            "trt.set_tensor_address",
            "cudaMemcpyAsync",
            "trt.execute_async_v3",
            "cudaMemcpyAsync",
            "cudaStreamSynchronize",
        ]
        shape, addr_in, addr_out, h2d, run, d2h, sync = (a for _, a in gpu.log[since:])
        assert shape == {"name": "input", "shape": (9, 3, PATCH, PATCH)}
        assert (addr_in["name"], addr_out["name"]) == ("input", "logits")
        assert h2d["kind"] == gpu.cuda.cudaMemcpyKind.cudaMemcpyHostToDevice
        assert h2d["count"] == 9 * 3 * PATCH * PATCH * 4  # only the rows in use
        assert h2d["dst"] == addr_in["ptr"]
        assert d2h["kind"] == gpu.cuda.cudaMemcpyKind.cudaMemcpyDeviceToHost
        assert d2h["count"] == 9 * K * 4 and d2h["src"] == addr_out["ptr"]
        assert h2d["stream"] == run["stream"] == d2h["stream"] == sync["stream"]
        assert not run["capturing"]


def test_buffers_sized_from_engine_tensors(gpu: FakeGPU, plan: tuple[Path, ModelSpec]) -> None:
    with TensorRTBackend(*plan) as backend:
        host = sorted(a.nbytes for a in gpu.cuda.live("host"))
        device = sorted(a.nbytes for a in gpu.cuda.live("device"))
        sizes = sorted([16 * 3 * PATCH * PATCH * 4, 16 * K * 4])  # max batch of the profile
        assert host == sizes and device == sizes
        assert (backend.min_batch, backend.max_batch) == (1, 16)
        spec = backend.input_spec
        assert (spec.name, spec.shape, spec.dtype) == ("input", (-1, 3, PATCH, PATCH), np.float32)


def test_input_buffer_is_pinned_memory_the_copy_reads(
    gpu: FakeGPU, plan: tuple[Path, ModelSpec]
) -> None:
    with TensorRTBackend(*plan) as backend:
        buf = backend.input_buffer(4)
        assert buf.flags.c_contiguous and buf.flags.writeable and buf.shape == (4, 3, PATCH, PATCH)
        ptr = buf.__array_interface__["data"][0]
        assert gpu.cuda.find(ptr, buf.nbytes).kind == "host"
        since = len(gpu.log)
        backend.infer(4)
        assert gpu.calls("cudaMemcpyAsync", since)[0]["src"] == ptr


def test_fp16_plan(gpu: FakeGPU, tmp_path: Path) -> None:
    path, spec = _plan(tmp_path, dtype="float16", max_batch=9)
    with TensorRTBackend(path, spec) as backend:
        assert backend.input_spec.dtype == np.float16
        assert sorted(a.nbytes for a in gpu.cuda.live("host")) == sorted(
            [9 * 3 * PATCH * PATCH * 2, 9 * K * 2]
        )
        x = _fill(backend, 9, seed=1)
        got = backend.infer(9)
        assert got.dtype == np.float32  # fp16 logits are widened for the voter
        np.testing.assert_allclose(got, reference_logits(x, K).astype(np.float16), rtol=1e-3)


@pytest.mark.parametrize("batch", [0, 17, -1])
def test_batch_outside_profile(gpu: FakeGPU, plan: tuple[Path, ModelSpec], batch: int) -> None:
    with TensorRTBackend(*plan) as backend:
        msg = rf"batch must be in \[1, 16\] \(the plan's optimisation profile\), got {batch}"
        with pytest.raises(InputError, match=msg):
            backend.infer(batch)
        with pytest.raises(InputError, match=msg):
            backend.input_buffer(batch)


def test_max_batch_option(gpu: FakeGPU, plan: tuple[Path, ModelSpec]) -> None:
    with TensorRTBackend(*plan, max_batch=9) as backend:
        assert backend.max_batch == 9
        assert max(a.nbytes for a in gpu.cuda.live("host")) == 9 * 3 * PATCH * PATCH * 4
    with pytest.raises(InputError, match=r"max_batch must be within the plan's profile \[1, 16\]"):
        TensorRTBackend(*plan, max_batch=17)


def test_close_frees_everything_and_is_idempotent(
    gpu: FakeGPU, plan: tuple[Path, ModelSpec]
) -> None:
    backend = TensorRTBackend(*plan, cuda_graph=True)
    for _ in range(3):
        _fill(backend, 9, seed=0)
        backend.infer(9)
    backend.close()
    backend.close()
    assert gpu.cuda.live() == []
    assert not gpu.cuda.graph_execs and not gpu.cuda.graphs
    assert all(s.destroyed for s in gpu.cuda.streams.values())
    with pytest.raises(BackendError, match=r"is closed"):
        backend.infer(9)


def test_failed_allocation_frees_earlier_ones(gpu: FakeGPU, plan: tuple[Path, ModelSpec]) -> None:
    gpu.cuda.fail["cudaMalloc"] = cudaError_t.cudaErrorMemoryAllocation
    with pytest.raises(
        BackendError,
        match=r"CUDA call cudaMalloc failed: cudaErrorMemoryAllocation \(fake description",
    ):
        TensorRTBackend(*plan)
    assert gpu.cuda.live() == []


# ---- CUDA graphs -------------------------------------------------------------------------------
def test_cuda_graph_captured_after_warmup_and_replayed(
    gpu: FakeGPU, plan: tuple[Path, ModelSpec]
) -> None:
    with TensorRTBackend(*plan, cuda_graph=True) as backend:
        x = _fill(backend, 9, seed=0)
        backend.infer(9)  # first run at this shape: no capture (TensorRT needs one run first)
        assert "cudaStreamBeginCapture" not in gpu.names()
        since = len(gpu.log)
        np.testing.assert_allclose(backend.infer(9), reference_logits(x, K), rtol=1e-6)
        names = gpu.names(since)
        assert names[names.index("cudaStreamBeginCapture") :] == [
            "cudaStreamBeginCapture",
            "cudaMemcpyAsync",
            "trt.execute_async_v3",
            "cudaMemcpyAsync",
            "cudaStreamEndCapture",
            "cudaGraphInstantiate",
        ]
        assert gpu.calls("trt.execute_async_v3", since)[-1]["capturing"] is True
        for seed in (5, 6):  # replays copy in the new input and copy out the new logits
            x = _fill(backend, 9, seed=seed)
            since = len(gpu.log)
            np.testing.assert_allclose(backend.infer(9), reference_logits(x, K), rtol=1e-6)
            assert gpu.names(since) == ["cudaGraphLaunch", "cudaStreamSynchronize"]


def test_cuda_graph_dropped_when_batch_changes(gpu: FakeGPU, plan: tuple[Path, ModelSpec]) -> None:
    with TensorRTBackend(*plan, cuda_graph=True) as backend:
        for _ in range(3):
            _fill(backend, 9, seed=0)
            backend.infer(9)
        x = _fill(backend, 4, seed=1)
        since = len(gpu.log)
        np.testing.assert_allclose(backend.infer(4), reference_logits(x, K), rtol=1e-6)
        names = gpu.names(since)
        assert names[:2] == ["cudaGraphExecDestroy", "cudaGraphDestroy"]
        assert "trt.execute_async_v3" in names and "cudaGraphLaunch" not in names


def test_cuda_graph_off_by_default(gpu: FakeGPU, plan: tuple[Path, ModelSpec]) -> None:
    with TensorRTBackend(*plan) as backend:
        for _ in range(4):
            _fill(backend, 9, seed=0)
            backend.infer(9)
    assert "cudaStreamBeginCapture" not in gpu.names()


def test_failed_capture_names_the_fix_and_leaves_stream_usable(
    gpu: FakeGPU, plan: tuple[Path, ModelSpec]
) -> None:
    with TensorRTBackend(*plan, cuda_graph=True) as backend:
        _fill(backend, 9, seed=0)
        backend.infer(9)
        gpu.cuda.fail["cudaStreamEndCapture"] = cudaError_t.cudaErrorStreamCaptureInvalidated
        fix = (
            r"CUDA graph capture failed \(CUDA call cudaStreamEndCapture failed: .*\)\. To resolve"
        )
        with pytest.raises(BackendError, match=fix):
            backend.infer(9)
        assert all(s.capture is None for s in gpu.cuda.streams.values())
        assert not backend.cuda_graph  # off after a failure: later calls run and are correct
        x = _fill(backend, 9, seed=2)
        since = len(gpu.log)
        np.testing.assert_allclose(backend.infer(9), reference_logits(x, K), rtol=1e-6)
        assert "cudaStreamBeginCapture" not in gpu.names(since)


# ---- refusing plans from elsewhere -------------------------------------------------------------
def _with_engine(spec: ModelSpec, **engine: object) -> ModelSpec:
    doc = spec.to_dict()
    doc["engine"].update(engine)
    return ModelSpec.from_dict(doc)


def test_refuses_other_tensorrt_version(gpu: FakeGPU, plan: tuple[Path, ModelSpec]) -> None:
    path, spec = plan
    since = len(gpu.log)
    with pytest.raises(SpecError) as info:
        TensorRTBackend(path, _with_engine(spec, tensorrt_version="10.3.0.26"))
    assert str(info.value) == (
        f"{path}: not portable to this machine: built with TensorRT 10.3.0.26, this machine has"
        " TensorRT 10.13.0.35 (a plan runs only on the TensorRT that built it). Rebuild it"
        " here: `pyinspect build MODEL.onnx -o student.plan`."
    )
    assert not [n for n in gpu.names(since) if n.startswith("trt.")], "refused before loading"


def test_refuses_other_gpu(gpu: FakeGPU, plan: tuple[Path, ModelSpec]) -> None:
    path, spec = plan
    other = _with_engine(spec, gpu_name="NVIDIA A100-SXM4-40GB", compute_capability="8.0")
    want = (
        r"built on 'NVIDIA A100-SXM4-40GB' \(compute capability 8.0\), this machine has"
        r" 'NVIDIA Fake GPU' \(compute capability 8.9\)"
    )
    with pytest.raises(SpecError, match=want):
        TensorRTBackend(path, other)


def test_version_compatible_plan(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PYINSPECT_CACHE_DIR", str(tmp_path / "cache"))
    install(monkeypatch, tensorrt_version="10.8.0.43")
    path, spec = _plan(tmp_path, version_compatible=True)
    gpu = install(monkeypatch, tensorrt_version="10.13.0.35")  # a newer TensorRT
    with TensorRTBackend(path, spec) as backend:
        x = _fill(backend, 2, seed=0)
        np.testing.assert_allclose(backend.infer(2), reference_logits(x, K), rtol=1e-6)
    assert "trt.deserialize_cuda_engine" in gpu.names()
    install(monkeypatch, tensorrt_version="10.7.0.23")  # older: refused
    with pytest.raises(SpecError, match=r"same major version, same or newer"):
        TensorRTBackend(path, spec)
    install(monkeypatch, tensorrt_version="11.0.0.1")  # other major: refused
    with pytest.raises(SpecError, match=r"built with TensorRT 10.8.0.43"):
        TensorRTBackend(path, spec)


def test_check_plan_compatible_needs_engine_block() -> None:
    gpu = cuda_buffers.DeviceInfo(0, "G", "8.9", 1)
    spec = ModelSpec.for_dagm()
    with pytest.raises(SpecError, match=r"m.plan.json has no engine block, so nothing says"):
        check_plan_compatible(spec.engine, plan=Path("m.plan"), tensorrt_version="10", gpu=gpu)
    onnx_engine = ModelSpec.for_dagm(engine={"backend": "openvino"}).engine
    with pytest.raises(SpecError, match=r"has engine.backend 'openvino'"):
        check_plan_compatible(onnx_engine, plan=Path("m.plan"), tensorrt_version="10", gpu=gpu)
    partial = ModelSpec.for_dagm(engine={"backend": "tensorrt", "tensorrt_version": "10"}).engine
    with pytest.raises(SpecError, match=r"engine.gpu_name, engine.compute_capability"):
        check_plan_compatible(partial, plan=Path("m.plan"), tensorrt_version="10", gpu=gpu)


# ---- plan/sidecar mismatches and bad files -----------------------------------------------------
def test_engine_io_must_match_sidecar(gpu: FakeGPU, plan: tuple[Path, ModelSpec]) -> None:
    path, spec = plan
    doc = spec.to_dict()
    doc["input"]["name"] = "images"
    with pytest.raises(SpecError, match=r"engine inputs are \['input'\], .* named 'images'"):
        TensorRTBackend(path, ModelSpec.from_dict(doc))
    doc = spec.to_dict()
    doc["output"]["name"] = "probs"
    with pytest.raises(SpecError, match=r"no output tensor 'probs' .* outputs are \['logits'\]"):
        TensorRTBackend(path, ModelSpec.from_dict(doc))
    assert gpu.cuda.live() == []


def test_corrupt_missing_empty_plan(gpu: FakeGPU, plan: tuple[Path, ModelSpec]) -> None:
    path, spec = plan
    path.write_bytes(b"not a plan")
    with pytest.raises(ModelFileError, match=r"could not deserialise this plan"):
        TensorRTBackend(path, spec)
    path.write_bytes(b"")
    with pytest.raises(ModelFileError, match=r"plan is empty \(0 bytes\)"):
        TensorRTBackend(path, spec)
    with pytest.raises(ModelFileError, match=r"TensorRT plan not found"):
        TensorRTBackend(path.with_name("none.plan"), spec)


def test_device_argument(gpu: FakeGPU, plan: tuple[Path, ModelSpec]) -> None:
    with pytest.raises(InputError, match=r"runs on \['cuda'\], got device='cpu'"):
        TensorRTBackend(*plan, device="cpu")
    with pytest.raises(InputError, match=r"CUDA_VISIBLE_DEVICES"):
        TensorRTBackend(*plan, device="cuda:1")
    TensorRTBackend(*plan, device="auto").close()


# ---- availability --------------------------------------------------------------------------------
def test_no_gpu_creates_no_tensorrt_object(
    monkeypatch: pytest.MonkeyPatch, plan: tuple[Path, ModelSpec]
) -> None:
    gpu = install(monkeypatch, gpus=0)
    assert not is_available()
    with pytest.raises(BackendUnavailableError, match=r"tensorrt backend needs an NVIDIA GPU"):
        TensorRTBackend(*plan)
    assert not [n for n in gpu.names() if n.startswith("trt.")]


def test_available_with_tensorrt_and_gpu(gpu: FakeGPU) -> None:
    assert tensorrt_importable() and is_available()


def test_not_available_without_tensorrt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    assert not tensorrt_importable() and not is_available()


def test_type_stubs_folder_is_not_tensorrt(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # tensorrt-stubs installs tensorrt/__init__.pyi only: an empty namespace package.
    (tmp_path / "tensorrt").mkdir()
    (tmp_path / "tensorrt" / "__init__.pyi").write_text("")
    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert not tensorrt_importable()


def test_no_cuda_python_means_no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", None)
    assert cuda_buffers.device_count() == 0
    with pytest.raises(BackendUnavailableError, match=r"pip install pyinspect\[tensorrt\]"):
        cuda_buffers.DeviceBuffer(8)


def test_registered_for_plan_files(gpu: FakeGPU) -> None:
    info = backend_info("tensorrt")
    assert info.suffixes == (".plan", ".engine") and info.devices == ("cuda",)
    assert info.extra == "tensorrt" and info.factory is TensorRTBackend
    assert pick_backend("x.plan") == "tensorrt"


def test_inspector_runs_a_plan(gpu: FakeGPU, plan: tuple[Path, ModelSpec]) -> None:
    from pyinspect import Inspector
    from pyinspect.tiling import tile
    from pyinspect.voting import vote

    path, spec = plan
    frame = textured_frame(64, 96, seed=3)
    with Inspector(path, threads=2, cuda_graph=True) as insp:  # options reach the backend
        assert insp.backend_name == "tensorrt" and insp.backend.cuda_graph  # type: ignore[attr-defined]
        results = [insp.run(frame) for _ in range(3)]  # plain, plain + capture, graph replay
    assert "cudaGraphLaunch" in gpu.names()
    result = results[-1]
    assert all((r.texture, r.defective) == (result.texture, result.defective) for r in results)
    norm = spec.normalization
    x, _ = tile(frame, patch=PATCH, channels=3, mean=norm.mean, std=norm.std)
    want = vote(reference_logits(x, K), spec.class_texture, spec.class_defective)
    assert result.texture == want.texture and result.defective == want.defective


# ---- pure helpers and owners ---------------------------------------------------------------------
def test_numpy_dtype() -> None:
    class DT:
        def __init__(self, name: str) -> None:
            self.name = name

    assert numpy_dtype(DT("FLOAT")) == np.float32 and numpy_dtype(DT("HALF")) == np.float16
    with pytest.raises(SpecError, match=r"TensorRT data type BF16 has no NumPy dtype"):
        numpy_dtype(DT("BF16"))


def test_io_tensor_nbytes() -> None:
    t = IOTensor("x", True, np.dtype(np.float16), (-1, 3, 224, 224))
    assert t.nbytes(9) == 9 * 3 * 224 * 224 * 2
    with pytest.raises(SpecError, match=r"dynamic non-batch axes"):
        IOTensor("x", True, np.dtype(np.float32), (-1, 3, -1, 224)).nbytes(1)


def test_pinned_view_keeps_owner_alive(gpu: FakeGPU) -> None:
    buf = cuda_buffers.PinnedHostBuffer(64)
    ref = weakref.ref(buf)
    view = buf.array((4, 4), np.float32)
    del buf
    gc.collect()
    assert ref() is not None, "a view must keep its pinned buffer alive"
    view[:] = 1.0
    owner = ref()
    assert owner is not None
    owner.close()
    assert gpu.cuda.live() == []
    with pytest.raises(BackendError, match=r"PinnedHostBuffer is closed"):
        owner.array((1,), np.float32)


def test_pinned_view_too_large(gpu: FakeGPU) -> None:
    with (
        cuda_buffers.PinnedHostBuffer(64) as buf,
        pytest.raises(
            BackendError, match=r"tried to view 128 bytes \(shape \(32,\), float32\) in pinned host"
        ),
    ):
        buf.array((32,), np.float32)


def test_copy_size_checked(gpu: FakeGPU) -> None:
    with (
        cuda_buffers.PinnedHostBuffer(64) as h,
        cuda_buffers.DeviceBuffer(32) as d,
        cuda_buffers.Stream() as s,
    ):
        with pytest.raises(BackendError, match=r"host->device copy of 64 bytes does not fit"):
            cuda_buffers.memcpy_htod_async(d, h, 64, s)
        cuda_buffers.memcpy_htod_async(d, h, 32, s)
        s.synchronize()


def test_device_info(gpu: FakeGPU) -> None:
    info = cuda_buffers.device_info(0)
    assert (info.name, info.compute_capability) == ("NVIDIA Fake GPU", "8.9")
    with pytest.raises(
        BackendUnavailableError, match=r"CUDA device 1 not present: this machine has 1"
    ):
        cuda_buffers.device_info(1)


# ---- real TensorRT and GPU ---------------------------------------------------------------------
def _need_real_tensorrt() -> None:
    if not tensorrt_importable():
        pytest.skip("tensorrt not importable")
    if cuda_buffers.device_count() == 0:
        pytest.skip("no CUDA GPU")


@pytest.mark.gpu
def test_real_pinned_roundtrip() -> None:
    if cuda_buffers.device_count() == 0:
        pytest.skip("no CUDA GPU")
    with (
        cuda_buffers.PinnedHostBuffer(1024) as h,
        cuda_buffers.PinnedHostBuffer(1024) as back,
        cuda_buffers.DeviceBuffer(1024) as d,
        cuda_buffers.Stream() as s,
    ):
        h.array((256,), np.float32)[:] = np.arange(256)
        cuda_buffers.memcpy_htod_async(d, h, 1024, s)
        cuda_buffers.memcpy_dtoh_async(back, d, 1024, s)
        s.synchronize()
        np.testing.assert_array_equal(back.array((256,), np.float32), np.arange(256))


@pytest.mark.gpu
def test_real_plan_refuses_other_version(tmp_path: Path) -> None:
    _need_real_tensorrt()
    bundle = write_tiny(tmp_path, "tiny.onnx")
    result = build_engine(bundle.model_path, None, BuildOptions(use_timing_cache=False))
    spec = _with_engine(ModelSpec.for_model(result.plan), tensorrt_version="0.0.0")
    with pytest.raises(SpecError, match=r"not portable to this machine"):
        TensorRTBackend(result.plan, spec)
