"""ONNX → TensorRT plan: ``pyinspect build MODEL.onnx -o MODEL.plan``.

TensorRT compiles a network for the GPU it runs on, so the build happens on the deployment
machine. This module drives TensorRT's Builder and ONNX parser (explicit batch), with FP16 by
default (FP32, or INT8 with an entropy calibrator over patches tiled from a folder of images), one
optimisation profile over the batch size (min 1, opt 9 = one 512×512 image, max configurable), an
optional workspace limit, a timing cache reused across builds, and optional version
compatibility. It writes the plan and its sidecar: the ONNX model's sidecar plus an ``engine``
block naming the TensorRT version, GPU, compute capability, precision and profile, which the
TensorRT backend checks before it loads the plan.

``tensorrt`` is imported only when a build starts; nothing TensorRT is created before a GPU is
confirmed (a TensorRT builder created without a GPU crashes the process).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np

from pyinspect import cuda_buffers
from pyinspect.backends.tensorrt import dims_tuple, import_tensorrt, require_gpu
from pyinspect.cli import args_kwargs
from pyinspect.inputs import IMAGE_SUFFIXES
from pyinspect.outputs import replace_file
from pyinspect.errors import BackendError, InputError, ModelFileError, SpecError
from pyinspect.spec import ModelSpec

if TYPE_CHECKING:
    import tensorrt as trt

__all__ = [
    "BuildOptions",
    "BuildResult",
    "EngineBuildError",
    "add_arguments",
    "build_engine",
    "calibration_images",
    "default_timing_cache",
    "profile_shapes",
    "run",
]

log = logging.getLogger(__name__)

Precision = Literal["fp16", "fp32", "int8"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
MIB = 1 << 20


class EngineBuildError(BackendError):
    """TensorRT could not parse the ONNX model or build a plan from it."""


@dataclass(frozen=True)
class BuildOptions:
    """Everything ``build_engine`` can be told; the defaults are the deployment defaults."""

    precision: Precision = "fp16"
    min_batch: int = 1
    opt_batch: int = 9  # one 512×512 frame = a 3×3 grid of patches
    max_batch: int = 32
    workspace_mib: int | None = None  # None: TensorRT's default (the GPU's memory)
    timing_cache: Path | None = None  # None: default_timing_cache(...)
    use_timing_cache: bool = True
    version_compatible: bool = False
    calib_dir: Path | None = None
    calib_cache: Path | None = None  # None: <plan>.calib.cache
    calib_images: int = 64  # at most this many images from calib_dir
    verbose: bool = False

    def validate(self) -> None:
        """Check what can be checked without TensorRT (fails before any GPU work)."""
        if self.precision not in PRECISIONS:
            msg = f"precision must be one of {list(PRECISIONS)}, got {self.precision!r}"
            raise InputError(msg)
        profile_shapes((-1, 1, 1, 1), self.min_batch, self.opt_batch, self.max_batch)
        if self.workspace_mib is not None and self.workspace_mib < 1:
            msg = f"workspace must be >= 1 MiB, got {self.workspace_mib}"
            raise InputError(msg)
        if self.calib_images < 1:
            msg = f"calib_images must be >= 1, got {self.calib_images}"
            raise InputError(msg)
        if self.precision != "int8" and self.calib_dir is not None:
            msg = f"--calib is only used with --int8 (precision is {self.precision})"
            raise InputError(msg)
        has_cache = self.calib_cache is not None and self.calib_cache.is_file()
        if self.precision == "int8" and self.calib_dir is None and not has_cache:
            msg = (
                "INT8 needs calibration data: pass --calib DIR (a folder of representative"
                " images), or --calib-cache FILE from an earlier calibration"
            )
            raise InputError(msg)
        if self.calib_dir is not None and not self.calib_dir.is_dir():
            msg = f"{self.calib_dir}: calibration folder not found"
            raise InputError(msg)


@dataclass(frozen=True)
class BuildResult:
    plan: Path
    sidecar: Path
    spec: ModelSpec
    seconds: float
    timing_cache: Path | None
    warnings: list[str] = field(default_factory=list)


# ---- pure helpers --------------------------------------------------------------------------------
def profile_shapes(
    input_shape: Sequence[int], min_batch: int, opt_batch: int, max_batch: int
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(min, opt, max) input shapes of the optimisation profile for a [batch, C, H, W] input.

    The batch axis must be dynamic (-1), or fixed at a size equal to all three batches; every
    other axis must be static, since the tiler always writes whole P×P patches.
    """
    for label, value in (("min", min_batch), ("opt", opt_batch), ("max", max_batch)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            msg = f"{label} batch must be an int >= 1, got {value!r}"
            raise InputError(msg)
    if not min_batch <= opt_batch <= max_batch:
        msg = (
            f"profile batches must satisfy min <= opt <= max, got min={min_batch},"
            f" opt={opt_batch}, max={max_batch}"
        )
        raise InputError(msg)
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 4:
        msg = f"input must be 4-D [batch, C, H, W], got shape {list(shape)}"
        raise SpecError(msg)
    if any(d < 1 for d in shape[1:]):
        msg = f"input axes 1..3 must be static, got shape {list(shape)} (re-export the model)"
        raise SpecError(msg)
    if shape[0] > 0 and not min_batch == opt_batch == max_batch == shape[0]:
        msg = (
            f"the ONNX input has a fixed batch of {shape[0]}; re-export it with a dynamic batch"
            f" axis, or pass --min-batch {shape[0]} --opt-batch {shape[0]} --max-batch {shape[0]}"
        )
        raise InputError(msg)
    rest = shape[1:]
    return (min_batch, *rest), (opt_batch, *rest), (max_batch, *rest)


def default_timing_cache(tensorrt_version: str, gpu: cuda_buffers.DeviceInfo) -> Path:
    """One timing cache per TensorRT version and GPU, shared by every model built there (layer
    timings are keyed by layer configuration, so one model's timings speed up another's build).
    ``$PYINSPECT_CACHE_DIR`` or ``$XDG_CACHE_HOME/pyinspect`` (``~/.cache/pyinspect``)."""
    base = os.environ.get("PYINSPECT_CACHE_DIR")
    if base:
        root = Path(base)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = (Path(xdg) if xdg else Path.home() / ".cache") / "pyinspect"
    gpu_slug = "".join(c if c.isalnum() else "-" for c in gpu.name).strip("-").lower()
    sm = gpu.compute_capability.replace(".", "")
    return root / f"tensorrt-{tensorrt_version}-{gpu_slug}-sm{sm}.timing-cache"


def calibration_images(folder: Path, limit: int) -> list[Path]:
    """Up to ``limit`` image files from ``folder`` (sorted, so a calibration is repeatable)."""
    files = sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not files:
        msg = f"{folder}: no images for INT8 calibration (looked for {', '.join(sorted(IMAGE_SUFFIXES))})"
        raise InputError(msg)
    return files[:limit]


def parser_errors(parser: trt.OnnxParser) -> list[str]:
    """Each ONNX parser error as 'node 3 'conv1' (Conv): <description>'."""
    lines = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        node, name, op = int(err.node()), str(err.node_name()), str(err.node_operator())
        where = f"node {node} {name!r} ({op})" if node >= 0 else "model"
        lines.append(f"{where}: {err.desc()}")
    return lines


def engine_block(
    *,
    tensorrt_version: str,
    gpu: cuda_buffers.DeviceInfo,
    options: BuildOptions,
) -> dict[str, Any]:
    """The sidecar's ``engine`` section for a plan built with ``options`` on ``gpu``."""
    block: dict[str, Any] = {
        "backend": "tensorrt",
        "tensorrt_version": tensorrt_version,
        "gpu_name": gpu.name,
        "compute_capability": gpu.compute_capability,
        "precision": options.precision,
        "profile": {"min": options.min_batch, "opt": options.opt_batch, "max": options.max_batch},
        "version_compatible": options.version_compatible,
        "built": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if options.workspace_mib is not None:
        block["workspace_mib"] = options.workspace_mib
    return block


def plan_spec(
    onnx_spec: ModelSpec, engine: dict[str, Any], *, onnx_bytes: bytes, plan_bytes: bytes
) -> ModelSpec:
    """The plan's sidecar: the ONNX sidecar, its provenance pointing at the ONNX source, plus
    the engine block."""
    doc = onnx_spec.to_dict()
    prov = dict(doc.get("provenance") or {})
    prov["source_sha256"] = hashlib.sha256(onnx_bytes).hexdigest()
    prov["model_sha256"] = hashlib.sha256(plan_bytes).hexdigest()
    doc["provenance"] = prov
    doc["engine"] = engine
    return ModelSpec.from_dict(doc, source="plan sidecar")


def _write_atomic(path: Path, data: bytes) -> None:
    """Temp file in the same folder, then rename: a reader never sees half a plan."""
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_file(path, data)


# ---- INT8 calibration ----------------------------------------------------------------------------
class CalibrationData:
    """Batches of normalised patches tiled from calibration images, staged in pinned memory and
    copied to one device buffer that TensorRT's calibrator reads. A trailing partial batch is
    dropped (TensorRT calibrates with a fixed batch size)."""

    def __init__(self, images: list[Path], spec: ModelSpec, batch: int) -> None:
        self.images, self.spec, self.batch = images, spec, batch
        c, p = spec.input.channels, spec.patch
        self._shape = (batch, c, p, p)
        nbytes = int(np.prod(self._shape)) * 4
        self._host = cuda_buffers.PinnedHostBuffer(nbytes)
        self._device = cuda_buffers.DeviceBuffer(nbytes)
        self._stream = cuda_buffers.Stream()
        self._staged = self._host.array(self._shape, np.float32)  # borrowed until close()
        self._patches = self._iter_patches()
        self.batches = 0

    def _iter_patches(self) -> Any:
        import cv2

        from pyinspect.tiling import patch_grid, tile_into

        spec = self.spec
        c, p = spec.input.channels, spec.patch
        rows, cols = spec.grid_rows_cols
        for path in self.images:
            flag = cv2.IMREAD_GRAYSCALE if c == 1 else cv2.IMREAD_UNCHANGED
            frame = cv2.imread(str(path), flag)
            if frame is None:
                msg = f"{path}: not a readable image (calibration)"
                raise InputError(msg)
            boxes = patch_grid(frame.shape[0], frame.shape[1], p, rows, cols)
            tiles = np.empty((len(boxes), c, p, p), dtype=np.float32)
            tile_into(frame, tiles, boxes, spec.normalization.mean, spec.normalization.std)
            yield from tiles

    def next_batch(self) -> int | None:
        """Device pointer of the next full batch, or None when the images are used up."""
        for i in range(self.batch):
            patch = next(self._patches, None)
            if patch is None:
                return None
            self._staged[i] = patch
        nbytes = self._host.nbytes
        cuda_buffers.memcpy_htod_async(self._device, self._host, nbytes, self._stream)
        self._stream.synchronize()
        self.batches += 1
        return self._device.ptr

    def close(self) -> None:
        self._stream.close()
        self._device.close()
        self._host.close()


def _make_calibrator(data: CalibrationData | None, cache: Path) -> trt.IInt8EntropyCalibrator2:
    """An ``IInt8EntropyCalibrator2`` over ``data`` that reads/writes ``cache`` (a cache that
    exists is used as is, and TensorRT then asks for no batches)."""
    import tensorrt as trt

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            # The pybind11 trampoline must be initialised explicitly (TensorRT's samples do too).
            trt.IInt8EntropyCalibrator2.__init__(self)

        def get_batch_size(self) -> int:
            return data.batch if data is not None else 1

        def get_batch(self, names: list[str]) -> list[int]:
            if data is None:
                return []
            ptr = data.next_batch()
            return [] if ptr is None else [ptr]

        def read_calibration_cache(self) -> bytes | None:  # documented: "a cache or None"
            return cache.read_bytes() if cache.is_file() else None

        def write_calibration_cache(self, blob: Any) -> None:
            _write_atomic(cache, bytes(blob))

    return EntropyCalibrator()


# ---- the build ---------------------------------------------------------------------------------
def build_engine(
    onnx_path: str | os.PathLike[str],
    plan_path: str | os.PathLike[str] | None = None,
    options: BuildOptions | None = None,
) -> BuildResult:
    """Build a TensorRT plan from ``onnx_path`` (which needs its sidecar ``.onnx.json``) and write
    it with its sidecar to ``plan_path`` (default: the ONNX path with ``.plan``)."""
    opts = options or BuildOptions()
    onnx_file = Path(onnx_path)
    plan = Path(plan_path) if plan_path is not None else onnx_file.with_suffix(".plan")
    if not onnx_file.is_file():
        msg = f"{onnx_file}: ONNX model not found"
        raise ModelFileError(msg)
    if plan.resolve() == onnx_file.resolve():
        msg = f"output {plan} would overwrite the ONNX model; choose another -o path"
        raise InputError(msg)
    opts.validate()
    onnx_spec = ModelSpec.for_model(onnx_file)
    onnx_bytes = onnx_file.read_bytes()

    import_tensorrt()  # a clear error when TensorRT is missing, before the typed import below
    import tensorrt as trt

    gpu = require_gpu("building a TensorRT plan")  # before any TensorRT object exists
    t0 = time.perf_counter()
    warnings: list[str] = []

    logger = trt.Logger(trt.Logger.VERBOSE if opts.verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    # The path lets the parser find external weight files next to the model.
    if not parser.parse(onnx_bytes, str(onnx_file)):
        lines = parser_errors(parser) or ["(the parser gave no details)"]
        msg = f"{onnx_file}: TensorRT's ONNX parser failed:\n  " + "\n  ".join(lines)
        raise EngineBuildError(msg)

    inp = _network_input(network, onnx_spec, onnx_file)
    _check_network_output(network, onnx_spec, onnx_file)
    lo, mid, hi = profile_shapes(
        dims_tuple(inp.shape), opts.min_batch, opts.opt_batch, opts.max_batch
    )
    want = (onnx_spec.input.channels, onnx_spec.patch, onnx_spec.patch)
    if lo[1:] != want:
        msg = (
            f"{onnx_file}: input {inp.name!r} is [batch, {', '.join(map(str, lo[1:]))}], but its"
            f" sidecar says [batch, {', '.join(map(str, want))}]"
        )
        raise SpecError(msg)

    config = builder.create_builder_config()
    if opts.workspace_mib is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, opts.workspace_mib * MIB)
    if opts.precision in ("fp16", "int8"):
        if not hasattr(trt.BuilderFlag, "FP16"):  # deprecated in 10.12 for strong typing
            msg = (
                f"TensorRT {trt.__version__} has no BuilderFlag.FP16 (weakly typed precision was"
                " removed): export the model in FP16 and build it with --fp32"
            )
            raise EngineBuildError(msg)
        if not builder.platform_has_fast_fp16:
            warnings.append(f"{gpu.name} has no fast FP16; the FP16 plan may not be faster")
        config.set_flag(trt.BuilderFlag.FP16)
    if opts.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)

    profile = builder.create_optimization_profile()
    profile.set_shape(inp.name, trt.Dims(list(lo)), trt.Dims(list(mid)), trt.Dims(list(hi)))
    if config.add_optimization_profile(profile) < 0:
        msg = f"{onnx_file}: TensorRT rejected the optimisation profile {lo} / {mid} / {hi}"
        raise EngineBuildError(msg)

    cache_path = None
    if opts.use_timing_cache:
        cache_path = opts.timing_cache or default_timing_cache(trt.__version__, gpu)
        _load_timing_cache(config, cache_path, warnings)

    calib: CalibrationData | None = None
    try:
        if opts.precision == "int8":
            calib = _setup_int8(builder, config, profile, onnx_spec, plan, opts)
        serialized = builder.build_serialized_network(network, config)
    finally:
        if calib is not None:
            calib.close()
    if serialized is None:
        msg = (
            f"{onnx_file}: TensorRT could not build a {opts.precision} plan (its log above says"
            " why; --verbose shows more)"
        )
        raise EngineBuildError(msg)
    plan_bytes = bytes(memoryview(serialized))

    engine = engine_block(tensorrt_version=trt.__version__, gpu=gpu, options=opts)
    spec = plan_spec(onnx_spec, engine, onnx_bytes=onnx_bytes, plan_bytes=plan_bytes)
    _write_atomic(plan, plan_bytes)
    sidecar = spec.save_for_model(plan)
    if cache_path is not None:
        timing = config.get_timing_cache()
        if timing is not None:
            _write_atomic(cache_path, bytes(memoryview(timing.serialize())))
    for w in warnings:
        log.warning(w)
    return BuildResult(plan, sidecar, spec, time.perf_counter() - t0, cache_path, warnings)


def _network_input(
    network: trt.INetworkDefinition, spec: ModelSpec, onnx_file: Path
) -> trt.ITensor:
    names = [network.get_input(i).name for i in range(network.num_inputs)]
    if names != [spec.input.name]:
        msg = (
            f"{onnx_file}: network inputs are {names}, but its sidecar expects exactly one input"
            f" named {spec.input.name!r}"
        )
        raise SpecError(msg)
    return network.get_input(0)


def _check_network_output(network: trt.INetworkDefinition, spec: ModelSpec, onnx: Path) -> None:
    names = [network.get_output(i).name for i in range(network.num_outputs)]
    if spec.output.name not in names:
        msg = (
            f"{onnx}: network has no output {spec.output.name!r} (sidecar output.name); its"
            f" outputs are {names}"
        )
        raise SpecError(msg)


def _load_timing_cache(config: trt.IBuilderConfig, path: Path, warnings: list[str]) -> None:
    """Attach the cache at ``path`` (or a new one). A cache from another GPU or TensorRT is
    refused by TensorRT (ignore_mismatch=False); then a fresh one replaces it after the build."""
    data = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(data)
    if config.set_timing_cache(cache, ignore_mismatch=False):
        return
    warnings.append(f"{path}: timing cache is from another GPU/TensorRT; starting a new one")
    fresh = config.create_timing_cache(b"")
    if not config.set_timing_cache(fresh, ignore_mismatch=False):
        msg = "TensorRT refused an empty timing cache"
        raise EngineBuildError(msg)


def _setup_int8(
    builder: trt.Builder,
    config: trt.IBuilderConfig,
    profile: trt.IOptimizationProfile,
    spec: ModelSpec,
    plan: Path,
    opts: BuildOptions,
) -> CalibrationData | None:
    """INT8 with FP16 fallback for layers TensorRT keeps in float, calibrated by entropy."""
    import tensorrt as trt

    if not hasattr(config, "int8_calibrator"):
        msg = (
            f"TensorRT {trt.__version__} has no INT8 calibrator API (implicit quantization"
            " was removed); quantize the ONNX model explicitly (Q/DQ nodes) instead"
        )
        raise EngineBuildError(msg)
    if not builder.platform_has_fast_int8:
        log.warning("this GPU has no fast INT8; the INT8 plan may not be faster")
    cache = opts.calib_cache or plan.with_name(plan.name + ".calib.cache")
    data = None
    if opts.calib_dir is not None and not cache.is_file():
        data = CalibrationData(
            calibration_images(opts.calib_dir, opts.calib_images), spec, opts.opt_batch
        )
    config.set_flag(trt.BuilderFlag.INT8)
    config.int8_calibrator = _make_calibrator(data, cache)
    if not config.set_calibration_profile(profile):
        msg = "TensorRT rejected the calibration profile"
        raise EngineBuildError(msg)
    return data


# ---- command line --------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``pyinspect build`` (the CLI calls this, then ``run``)."""
    parser.add_argument("model", type=Path, help="ONNX model (its sidecar MODEL.onnx.json too)")
    parser.add_argument(
        "-o", "--output", type=Path, default=None, help="plan to write (default: MODEL.plan)"
    )
    prec = parser.add_mutually_exclusive_group()
    prec.add_argument(
        "--fp16", dest="precision", action="store_const", const="fp16", help="FP16 (default)"
    )
    prec.add_argument("--fp32", dest="precision", action="store_const", const="fp32")
    prec.add_argument(
        "--int8",
        dest="precision",
        action="store_const",
        const="int8",
        help="INT8, calibrated on --calib DIR (FP16 where INT8 does not pay)",
    )
    parser.set_defaults(precision="fp16")
    parser.add_argument(
        "--calib",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder of representative images for --int8",
    )
    parser.add_argument(
        "--calib-cache",
        type=Path,
        default=None,
        metavar="FILE",
        help="INT8 calibration cache (default: PLAN.calib.cache)",
    )
    parser.add_argument(
        "--calib-images",
        type=int,
        default=64,
        metavar="N",
        help="use at most N calibration images (default 64)",
    )
    parser.add_argument("--min-batch", type=int, default=1, help="profile minimum (default 1)")
    parser.add_argument("--opt-batch", type=int, default=9, help="profile optimum (default 9)")
    parser.add_argument("--max-batch", type=int, default=32, help="profile maximum (default 32)")
    parser.add_argument(
        "--workspace",
        type=int,
        default=None,
        metavar="MIB",
        help="builder workspace limit in MiB (default: TensorRT's)",
    )
    cache = parser.add_mutually_exclusive_group()
    cache.add_argument(
        "--timing-cache",
        type=Path,
        default=None,
        metavar="FILE",
        help="timing cache to reuse and update (default: per GPU, in ~/.cache/pyinspect)",
    )
    cache.add_argument("--no-timing-cache", action="store_true", help="build without one")
    parser.add_argument(
        "--version-compatible",
        action="store_true",
        help="plan that also runs on a newer TensorRT of the same major version",
    )
    parser.add_argument("--verbose", action="store_true", help="TensorRT's verbose log")


def options_from_args(args: argparse.Namespace) -> BuildOptions:
    same = ("precision", "min_batch", "opt_batch", "max_batch", "timing_cache",
            "version_compatible", "calib_cache", "calib_images", "verbose")  # fmt: skip
    return BuildOptions(
        **args_kwargs(args, *same, workspace_mib="workspace", calib_dir="calib"),
        use_timing_cache=not args.no_timing_cache,
    )


def run(args: argparse.Namespace) -> int:
    """``pyinspect build``: build, then print one line saying what was written."""
    result = build_engine(args.model, args.output, options_from_args(args))
    eng = result.spec.engine
    if eng is None:  # plan_spec always sets it
        msg = f"{result.sidecar}: written without an engine block"
        raise EngineBuildError(msg)
    size = result.plan.stat().st_size / MIB
    print(
        f"wrote {result.plan} ({size:.1f} MiB, {eng.precision}, batch"
        f" {args.min_batch}/{args.opt_batch}/{args.max_batch}, TensorRT {eng.tensorrt_version}"
        f" on {eng.gpu_name}) and {result.sidecar.name} in {result.seconds:.1f} s"
    )
    for w in result.warnings:
        print(f"warning: {w}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pyinspect.build.tensorrt`` (the same as ``pyinspect build``)."""
    parser = argparse.ArgumentParser(prog="pyinspect build", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
