"""ONNX → TensorRT plan builder: option handling and profile shapes (pure), and the build driven
against the recording TensorRT/cuda-python stand-ins (tests/fakes), which check the documented
call order and arguments. A real build runs in the ``gpu`` test at the end, where TensorRT and a
GPU exist."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from fakes import FakeGPU, install
from modelzoo import TinyBundle, textured_frame, write_tiny

from pyinspect import cuda_buffers
from pyinspect.backends.tensorrt import tensorrt_importable
from pyinspect.build.tensorrt import (
    BuildOptions,
    EngineBuildError,
    add_arguments,
    build_engine,
    calibration_images,
    default_timing_cache,
    options_from_args,
    profile_shapes,
    run,
)
from pyinspect.errors import (
    BackendUnavailableError,
    InputError,
    ModelFileError,
    SpecError,
)
from pyinspect.spec import ModelSpec

PATCH = 32


@pytest.fixture
def gpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeGPU:
    monkeypatch.setenv("PYINSPECT_CACHE_DIR", str(tmp_path / "cache"))
    return install(monkeypatch)


@pytest.fixture
def onnx_model(tmp_path: Path) -> TinyBundle:
    return write_tiny(tmp_path / "m", "student.onnx", patch=PATCH)


# ---- pure helpers ------------------------------------------------------------------------------
def test_profile_shapes_dynamic_batch() -> None:
    assert profile_shapes((-1, 3, 224, 224), 1, 9, 32) == (
        (1, 3, 224, 224),
        (9, 3, 224, 224),
        (32, 3, 224, 224),
    )


def test_profile_shapes_equal_batches_allowed() -> None:
    assert profile_shapes((-1, 1, 8, 8), 4, 4, 4) == ((4, 1, 8, 8),) * 3


@pytest.mark.parametrize(
    ("lo", "opt", "hi"), [(2, 1, 4), (1, 9, 8), (5, 5, 4)], ids=["min>opt", "opt>max", "min>max"]
)
def test_profile_shapes_rejects_unordered(lo: int, opt: int, hi: int) -> None:
    with pytest.raises(InputError, match=rf"min <= opt <= max, got min={lo}, opt={opt}, max={hi}"):
        profile_shapes((-1, 3, 8, 8), lo, opt, hi)


@pytest.mark.parametrize("bad", [0, -1, True, 2.0])
def test_profile_shapes_rejects_non_positive_or_non_int(bad: object) -> None:
    with pytest.raises(InputError, match=r"min batch must be an int >= 1"):
        profile_shapes((-1, 3, 8, 8), bad, 9, 32)  # type: ignore[arg-type]


def test_profile_shapes_fixed_batch_must_match() -> None:
    assert profile_shapes((1, 3, 8, 8), 1, 1, 1)[2] == (1, 3, 8, 8)
    with pytest.raises(InputError, match=r"fixed batch of 1; .*--min-batch 1 --opt-batch 1"):
        profile_shapes((1, 3, 8, 8), 1, 9, 32)


def test_profile_shapes_needs_static_patch_axes() -> None:
    with pytest.raises(SpecError, match=r"axes 1..3 must be static, got shape \[-1, 3, -1, -1\]"):
        profile_shapes((-1, 3, -1, -1), 1, 9, 32)
    with pytest.raises(SpecError, match=r"4-D"):
        profile_shapes((-1, 3, 8), 1, 9, 32)


def test_options_validate(tmp_path: Path) -> None:
    BuildOptions().validate()
    with pytest.raises(InputError, match=r"precision must be one of \['fp16', 'fp32', 'int8'\]"):
        BuildOptions(precision="bf16").validate()  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"INT8 needs calibration data: pass --calib DIR"):
        BuildOptions(precision="int8").validate()
    with pytest.raises(InputError, match=r"--calib is only used with --int8"):
        BuildOptions(calib_dir=tmp_path).validate()
    with pytest.raises(InputError, match=r"calibration folder not found"):
        BuildOptions(precision="int8", calib_dir=tmp_path / "nope").validate()
    with pytest.raises(InputError, match=r"workspace must be >= 1 MiB, got 0"):
        BuildOptions(workspace_mib=0).validate()
    cache = tmp_path / "c.cache"
    cache.write_bytes(b"x")
    BuildOptions(precision="int8", calib_cache=cache).validate()  # a cache alone is enough


def test_default_timing_cache_is_per_trt_and_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYINSPECT_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "/x")
    gpu = cuda_buffers.DeviceInfo(0, "NVIDIA GeForce RTX 4090", "8.9", 1)
    path = default_timing_cache("10.13.0.35", gpu)
    assert path == Path(
        "/x/pyinspect/tensorrt-10.13.0.35-nvidia-geforce-rtx-4090-sm89.timing-cache"
    )
    monkeypatch.setenv("PYINSPECT_CACHE_DIR", "/y")
    assert default_timing_cache("10.13.0.35", gpu).parent == Path("/y")


def test_calibration_images_sorted_and_limited(tmp_path: Path) -> None:
    for name in ("b.png", "a.bmp", "c.txt", "d.JPG"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in calibration_images(tmp_path, 10)] == ["a.bmp", "b.png", "d.JPG"]
    assert [p.name for p in calibration_images(tmp_path, 1)] == ["a.bmp"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match=r"empty: no images for INT8 calibration"):
        calibration_images(empty, 1)


# ---- the build against the recording stand-ins -------------------------------------------------
def test_build_call_order_and_arguments(gpu: FakeGPU, onnx_model: TinyBundle) -> None:
    plan = onnx_model.model_path.with_suffix(".plan")
    result = build_engine(onnx_model.model_path, plan)
    relevant = [
        n
        for n in gpu.names()
        if n.startswith("trt.") and n not in ("trt.set_shape", "trt.set_timing_cache")
    ]
    assert relevant == [
        "trt.Builder",
        "trt.create_network",
        "trt.OnnxParser",
        "trt.parse",
        "trt.create_builder_config",
        "trt.set_flag",
        "trt.create_optimization_profile",
        "trt.add_optimization_profile",
        "trt.create_timing_cache",
        "trt.build_serialized_network",
    ]
    # the GPU was confirmed (device count, properties) before the first TensorRT object
    first_trt = gpu.names().index("trt.Builder")
    assert "cudaGetDeviceProperties" in gpu.names()[:first_trt]
    assert gpu.calls("trt.create_network") == [{"flags": 0}]
    assert gpu.calls("trt.parse")[0]["path"] == str(onnx_model.model_path)
    assert gpu.calls("trt.set_flag") == [{"flag": "FP16"}]
    assert gpu.calls("trt.set_shape") == [
        {
            "input": "input",
            "min": (1, 3, PATCH, PATCH),
            "opt": (9, 3, PATCH, PATCH),
            "max": (32, 3, PATCH, PATCH),
        }
    ]
    assert gpu.calls("trt.set_timing_cache")[0]["ignore_mismatch"] is False
    assert result.plan == plan and plan.read_bytes().startswith(b"FAKEPLAN")
    assert not gpu.cuda.live(), "the build leaks no CUDA memory"


def test_build_writes_plan_sidecar(gpu: FakeGPU, onnx_model: TinyBundle) -> None:
    plan = onnx_model.model_path.parent / "out" / "student.plan"
    result = build_engine(onnx_model.model_path, plan, BuildOptions(max_batch=16))
    spec = ModelSpec.for_model(plan)
    assert result.sidecar == plan.with_name("student.plan.json")
    assert spec.engine is not None
    assert spec.engine.backend == "tensorrt"
    assert spec.engine.tensorrt_version == "10.13.0.35"
    assert spec.engine.gpu_name == "NVIDIA Fake GPU"
    assert spec.engine.compute_capability == "8.9"
    assert spec.engine.precision == "fp16"
    assert spec.engine.profile is not None
    assert (spec.engine.profile.min, spec.engine.profile.opt, spec.engine.profile.max) == (1, 9, 16)
    assert (spec.engine.model_extra or {})["version_compatible"] is False
    # everything else is the ONNX sidecar's
    onnx_doc = onnx_model.spec.to_dict()
    plan_doc = spec.to_dict()
    for key in ("classes", "textures", "patch", "grid", "input", "normalization", "output"):
        assert plan_doc[key] == onnx_doc[key], key
    import hashlib

    prov = spec.provenance
    assert prov.source_sha256 == hashlib.sha256(onnx_model.model_path.read_bytes()).hexdigest()
    assert prov.model_sha256 == hashlib.sha256(plan.read_bytes()).hexdigest()
    assert prov.model == "tiny"  # the ONNX provenance is kept


def test_build_fp32_workspace_version_compatible(gpu: FakeGPU, onnx_model: TinyBundle) -> None:
    opts = BuildOptions(precision="fp32", workspace_mib=256, version_compatible=True)
    build_engine(onnx_model.model_path, None, opts)
    assert gpu.calls("trt.set_flag") == [{"flag": "VERSION_COMPATIBLE"}]
    assert gpu.calls("trt.set_memory_pool_limit") == [{"pool": "WORKSPACE", "size": 256 << 20}]
    spec = ModelSpec.for_model(onnx_model.model_path.with_suffix(".plan"))
    assert spec.engine is not None and spec.engine.precision == "fp32"
    assert (spec.engine.model_extra or {})["version_compatible"] is True


def test_timing_cache_is_reused_across_builds(gpu: FakeGPU, onnx_model: TinyBundle) -> None:
    cache = onnx_model.model_path.parent / "t.cache"
    opts = BuildOptions(timing_cache=cache)
    build_engine(onnx_model.model_path, None, opts)
    assert cache.read_bytes().endswith(b"|1")  # one build's timings
    since = len(gpu.log)
    build_engine(onnx_model.model_path, onnx_model.model_path.with_name("b.plan"), opts)
    assert gpu.calls("trt.create_timing_cache", since)[0]["nbytes"] == len(cache.read_bytes())
    assert gpu.calls("trt.set_timing_cache", since)[0]["entries"] == 1  # loaded, not fresh
    assert cache.read_bytes().endswith(b"|2")


def test_timing_cache_from_other_gpu_is_replaced(gpu: FakeGPU, onnx_model: TinyBundle) -> None:
    cache = onnx_model.model_path.parent / "t.cache"
    cache.write_bytes(b"FAKETC|NVIDIA Other|7.5|10.13.0.35|40")
    result = build_engine(onnx_model.model_path, None, BuildOptions(timing_cache=cache))
    assert any("timing cache is from another GPU/TensorRT" in w for w in result.warnings)
    assert [c["entries"] for c in gpu.calls("trt.set_timing_cache")] == [40, 0]
    assert cache.read_bytes().startswith(f"FAKETC|{gpu.trt.device_key}|".encode())


def test_no_timing_cache(gpu: FakeGPU, onnx_model: TinyBundle) -> None:
    result = build_engine(onnx_model.model_path, None, BuildOptions(use_timing_cache=False))
    assert result.timing_cache is None
    assert "trt.create_timing_cache" not in gpu.names()


def test_default_timing_cache_location_used(gpu: FakeGPU, onnx_model: TinyBundle) -> None:
    result = build_engine(onnx_model.model_path)
    assert result.timing_cache is not None and result.timing_cache.is_file()
    assert result.timing_cache.name.startswith("tensorrt-10.13.0.35-nvidia-fake-gpu-sm89")


def test_parser_errors_name_the_node(gpu: FakeGPU, tmp_path: Path) -> None:
    bundle = write_tiny(tmp_path, "odd.onnx", patch=PATCH)
    model = onnx.load(bundle.model_path)
    relu = next(n for n in model.graph.node if n.op_type == "Relu")
    relu.op_type, relu.name = "Celu", "act1"  # valid ONNX, not in the fake parser's op set
    onnx.save(model, bundle.model_path)
    with pytest.raises(EngineBuildError) as info:
        build_engine(bundle.model_path)
    text = str(info.value)
    assert "TensorRT's ONNX parser failed" in text
    assert "node 1 'act1' (Celu): No importer registered for op: Celu" in text
    assert "trt.build_serialized_network" not in gpu.names()


def test_build_failure_is_reported(
    gpu: FakeGPU, onnx_model: TinyBundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    # TensorRT returns None from build_serialized_network when it cannot build a plan.
    monkeypatch.setattr(gpu.trt.Builder, "build_serialized_network", lambda *a: None)
    with pytest.raises(EngineBuildError, match=r"could not build a fp16 plan"):
        build_engine(onnx_model.model_path)
    assert not onnx_model.model_path.with_suffix(".plan").exists()


def test_sidecar_input_name_must_match(gpu: FakeGPU, tmp_path: Path) -> None:
    bundle = write_tiny(tmp_path, "m.onnx", patch=PATCH, input_name="images")
    with pytest.raises(SpecError, match=r"network inputs are \['input'\], .* named 'images'"):
        build_engine(bundle.model_path)


def test_sidecar_patch_must_match(gpu: FakeGPU, tmp_path: Path) -> None:
    bundle = write_tiny(tmp_path, "m.onnx", patch=PATCH, sidecar=False)
    ModelSpec.for_dagm(patch=16, mean=[0.5] * 3, std=[0.25] * 3).save_for_model(bundle.model_path)
    with pytest.raises(SpecError, match=r"is \[batch, 3, 32, 32\], but its sidecar says"):
        build_engine(bundle.model_path)


def test_fixed_batch_model_needs_matching_profile(gpu: FakeGPU, tmp_path: Path) -> None:
    bundle = write_tiny(tmp_path, "m.onnx", patch=PATCH, batch=1)
    with pytest.raises(InputError, match=r"fixed batch of 1"):
        build_engine(bundle.model_path)
    result = build_engine(
        bundle.model_path, None, BuildOptions(min_batch=1, opt_batch=1, max_batch=1)
    )
    assert result.plan.is_file()


def test_no_gpu_creates_no_tensorrt_object(
    monkeypatch: pytest.MonkeyPatch, onnx_model: TinyBundle
) -> None:
    gpu = install(monkeypatch, gpus=0)
    with pytest.raises(
        BackendUnavailableError, match=r"building a TensorRT plan needs an NVIDIA GPU"
    ):
        build_engine(onnx_model.model_path)
    assert not [n for n in gpu.names() if n.startswith("trt.")]


def test_no_tensorrt(monkeypatch: pytest.MonkeyPatch, onnx_model: TinyBundle) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(BackendUnavailableError, match=r"pip install pyinspect\[tensorrt\]"):
        build_engine(onnx_model.model_path)


def test_missing_inputs(gpu: FakeGPU, tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match=r"ONNX model not found"):
        build_engine(tmp_path / "nope.onnx")
    bundle = write_tiny(tmp_path, "m.onnx", patch=PATCH, sidecar=False)
    with pytest.raises(SpecError, match=r"No sidecar for model"):
        build_engine(bundle.model_path)
    with pytest.raises(InputError, match=r"would overwrite the ONNX model"):
        build_engine(bundle.model_path, bundle.model_path)


# ---- INT8 ----------------------------------------------------------------------------------------
def _calib_dir(tmp_path: Path, n: int) -> Path:
    d = tmp_path / "calib"
    d.mkdir()
    for i in range(n):
        cv2.imwrite(str(d / f"{i:02d}.png"), textured_frame(64, 64, seed=i))
    return d


def test_int8_calibrates_through_device_memory(
    gpu: FakeGPU, onnx_model: TinyBundle, tmp_path: Path
) -> None:
    calib = _calib_dir(tmp_path, 5)  # 64x64 frames, 32-px patches: 2x2 grid -> 20 patches
    opts = BuildOptions(precision="int8", calib_dir=calib)
    result = build_engine(onnx_model.model_path, None, opts)
    assert [c["flag"] for c in gpu.calls("trt.set_flag")] == ["FP16", "INT8"]
    assert gpu.calls("trt.calibrated") == [{"batches": 2, "batch_size": 9}]  # 20 // 9
    cache = result.plan.with_name(result.plan.name + ".calib.cache")
    assert cache.read_bytes() == b"FAKECAL|2"
    assert not gpu.cuda.live(), "calibration buffers are freed"
    # the calibration batches went host -> device through the pinned staging buffer
    copies = gpu.calls("cudaMemcpyAsync")
    assert len(copies) == 2 and all(c["count"] == 9 * 3 * PATCH * PATCH * 4 for c in copies)
    # a second build reuses the cache and reads no images
    since = len(gpu.log)
    build_engine(onnx_model.model_path, None, opts)
    assert gpu.calls("trt.read_calibration_cache", since) == [{"hit": True}]
    assert gpu.calls("trt.calibrated", since) == []


def test_int8_calibration_patches_are_the_tiler_output(
    gpu: FakeGPU, onnx_model: TinyBundle, tmp_path: Path
) -> None:
    from pyinspect.build.tensorrt import CalibrationData
    from pyinspect.tiling import tile

    calib = _calib_dir(tmp_path, 3)
    data = CalibrationData(sorted(calib.iterdir()), onnx_model.spec, 4)
    try:
        ptr = data.next_batch()
        assert ptr is not None
        gpu.cuda.find(ptr, 1)
        got = np.frombuffer(gpu.cuda.read(ptr, 4 * 3 * PATCH * PATCH * 4), dtype=np.float32)
        frame = cv2.imread(str(calib / "00.png"), cv2.IMREAD_UNCHANGED)
        norm = onnx_model.spec.normalization
        want, _ = tile(frame, patch=PATCH, channels=3, mean=norm.mean, std=norm.std)
        np.testing.assert_array_equal(got.reshape(want.shape), want)
        assert data.next_batch() is not None  # patches 4..7 (image 1 and 2)
        assert data.next_batch() is not None  # patches 8..11
        assert data.next_batch() is None  # 12 patches -> 3 full batches of 4
    finally:
        data.close()
    assert not gpu.cuda.live()


# ---- command line --------------------------------------------------------------------------------
def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_cli_arguments_map_to_options() -> None:
    args = _parse(["m.onnx", "-o", "m.plan", "--int8", "--calib", "imgs", "--max-batch", "64",
                   "--workspace", "512", "--no-timing-cache", "--version-compatible"])  # fmt: skip
    opts = options_from_args(args)
    assert opts.precision == "int8" and opts.calib_dir == Path("imgs")
    assert (opts.min_batch, opts.opt_batch, opts.max_batch) == (1, 9, 64)
    assert opts.workspace_mib == 512 and not opts.use_timing_cache and opts.version_compatible
    assert options_from_args(_parse(["m.onnx"])) == BuildOptions(timing_cache=None)


def test_cli_precision_flags_exclusive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parse(["m.onnx", "--fp16", "--fp32"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_cli_run_prints_summary(
    gpu: FakeGPU, onnx_model: TinyBundle, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = onnx_model.model_path.with_name("x.plan")
    assert run(_parse([str(onnx_model.model_path), "-o", str(plan), "--fp32"])) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"wrote {plan} (")
    assert "fp32, batch 1/9/32, TensorRT 10.13.0.35 on NVIDIA Fake GPU" in out


def test_cli_registers_build_subcommand(gpu: FakeGPU, onnx_model: TinyBundle) -> None:
    from pyinspect import cli

    plan = onnx_model.model_path.with_name("y.plan")
    assert cli.main(["build", str(onnx_model.model_path), "-o", str(plan)]) == 0
    assert json.loads(plan.with_name("y.plan.json").read_text())["engine"]["precision"] == "fp16"


def test_importing_builder_imports_no_gpu_library() -> None:
    code = (
        "import sys, pyinspect.build.tensorrt, pyinspect.backends.tensorrt;"
        "bad = [m for m in ('tensorrt', 'cuda.bindings.runtime', 'torch') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ---- real TensorRT -----------------------------------------------------------------------------
@pytest.mark.gpu
def test_real_build_and_run(tmp_path: Path) -> None:
    if not tensorrt_importable():
        pytest.skip("tensorrt not importable")
    if cuda_buffers.device_count() == 0:
        pytest.skip("no CUDA GPU")
    from pyinspect.backends.onnxruntime import OnnxRuntimeBackend
    from pyinspect.backends.tensorrt import TensorRTBackend

    bundle = write_tiny(tmp_path, "tiny.onnx")
    result = build_engine(
        bundle.model_path, None, BuildOptions(timing_cache=tmp_path / "t.cache", max_batch=16)
    )
    spec = ModelSpec.for_model(result.plan)
    x = np.random.default_rng(0).normal(size=(9, 3, 224, 224)).astype(np.float32)
    ref_backend = OnnxRuntimeBackend(bundle.model_path, bundle.spec)
    ref_backend.input_buffer(9)[:] = x
    ref = ref_backend.infer(9).copy()
    with TensorRTBackend(result.plan, spec, cuda_graph=True) as trt_backend:
        for _ in range(4):  # plain, plain + capture, graph, graph
            trt_backend.input_buffer(9)[:] = x
            got = trt_backend.infer(9)
            np.testing.assert_allclose(got, ref, rtol=2e-2, atol=2e-2)  # FP16 plan
