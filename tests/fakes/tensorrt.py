"""A stand-in for the ``tensorrt`` Python module (TensorRT 10 API), wired to a FakeCudaRuntime.

Builder side: ``OnnxParser.parse`` reads a real ONNX file (with the ``onnx`` package) into network
inputs/outputs and reports unsupported operators as parser errors with node names, like the real
parser. ``build_serialized_network`` refuses a network whose dynamic inputs have no optimisation
profile, drives an INT8 calibrator through device memory, fills the timing cache, and returns a
"plan": JSON describing the engine's I/O tensors and profile.

Runtime side: ``Runtime.deserialize_cuda_engine`` reads such a plan (None for anything else, like
the real one), and an execution context runs a known "network" on fake device memory:
``logits[b, k] = (k + 1) * mean(x[b]) + x[b].flat[k]``, queued on the stream it is given.
"""

from __future__ import annotations

import enum
import json
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from fakes.cudart import FakeCudaError, FakeCudaRuntime

PLAN_MAGIC = b"FAKEPLAN\n"
CACHE_MAGIC = b"FAKETC|"


class FakeTensorRTError(AssertionError):
    """A call the real TensorRT would reject, or one that breaks the documented order."""


def reference_logits(x: np.ndarray, num_classes: int) -> np.ndarray:
    """What the fake engine computes for input ``x`` [B, ...] (float64 math, float32 result)."""
    flat = x.reshape(x.shape[0], -1).astype(np.float64)
    k = np.arange(num_classes)
    return ((k + 1) * flat.mean(axis=1, keepdims=True) + flat[:, :num_classes]).astype(np.float32)


def _enum(name: str, base: type[enum.Enum] = enum.Enum, **members: int) -> Any:
    """An enum of the real module's members and values (the ones the backend and tests use)."""
    return base(name, members, module=__name__)


DataType = _enum(
    "DataType", FLOAT=0, HALF=1, INT8=2, INT32=3, BOOL=4, UINT8=5, FP8=6, BF16=7, INT64=8
)


_NP = {
    DataType.FLOAT: np.float32,
    DataType.HALF: np.float16,
    DataType.INT8: np.int8,
    DataType.INT32: np.int32,
    DataType.BOOL: np.bool_,
    DataType.UINT8: np.uint8,
    DataType.INT64: np.int64,
}


TensorIOMode = _enum("TensorIOMode", NONE=0, INPUT=1, OUTPUT=2)
BuilderFlag = _enum(
    "BuilderFlag",
    FP16=0,
    INT8=1,
    DEBUG=2,
    GPU_FALLBACK=3,
    REFIT=5,
    TF32=7,
    VERSION_COMPATIBLE=13,
    EXCLUDE_LEAN_RUNTIME=14,
    BF16=17,
)
MemoryPoolType = _enum("MemoryPoolType", WORKSPACE=0)
ErrorCode = _enum("ErrorCode", SUCCESS=0, INVALID_GRAPH=4, UNSUPPORTED_NODE=8)
Severity = _enum("Severity", enum.IntEnum, INTERNAL_ERROR=0, ERROR=1, WARNING=2, INFO=3, VERBOSE=4)


class Logger:
    Severity = Severity
    INTERNAL_ERROR = Severity.INTERNAL_ERROR
    ERROR = Severity.ERROR
    WARNING = Severity.WARNING
    INFO = Severity.INFO
    VERBOSE = Severity.VERBOSE

    def __init__(self, min_severity: Severity = Severity.WARNING) -> None:
        self.min_severity = min_severity


class Dims(tuple):  # type: ignore[type-arg]
    """TensorRT's Dims: a sequence of ints (-1 = dynamic)."""


def _dims(value: Any, what: str) -> tuple[int, ...]:
    """Accept what the real binding accepts for a shape (Dims, tuple, list of ints)."""
    if not isinstance(value, tuple | list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        msg = f"{what}: expected a tuple/list/Dims of ints, got {value!r}"
        raise FakeTensorRTError(msg)
    return tuple(int(v) for v in value)


@dataclass
class FakeTensor:
    name: str
    shape: Dims
    dtype: DataType


@dataclass
class ParserError:
    _code: ErrorCode
    _desc: str
    _node: int = -1
    _node_name: str = ""
    _node_operator: str = ""

    def code(self) -> ErrorCode:
        return self._code

    def desc(self) -> str:
        return self._desc

    def node(self) -> int:
        return self._node

    def node_name(self) -> str:
        return self._node_name

    def node_operator(self) -> str:
        return self._node_operator

    def __str__(self) -> str:
        return f"{self._code.name}: {self._desc}"


SUPPORTED_OPS = {
    "Add", "AveragePool", "BatchNormalization", "Cast", "Concat", "Constant", "Conv", "Div",
    "Flatten", "Gemm", "GlobalAveragePool", "Identity", "MatMul", "MaxPool", "Mul", "Relu",
    "Reshape", "Shape", "Sigmoid", "Softmax", "Sub", "Transpose", "Unsqueeze", "Gather",
    "ReduceMean", "Squeeze", "Slice",
}  # fmt: skip


class FakeNetwork:
    def __init__(self, trt: FakeTensorRT, flags: int) -> None:
        self.trt, self.flags = trt, flags
        self.inputs: list[FakeTensor] = []
        self.outputs: list[FakeTensor] = []
        self.parsed = False

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    @property
    def num_outputs(self) -> int:
        return len(self.outputs)

    def get_input(self, index: int) -> FakeTensor:
        return self.inputs[index]

    def get_output(self, index: int) -> FakeTensor:
        return self.outputs[index]


class OnnxParser:
    def __init__(self, network: FakeNetwork, logger: Logger) -> None:
        if not isinstance(network, FakeNetwork) or not isinstance(logger, Logger):
            msg = "OnnxParser(network, logger): wrong argument types"
            raise FakeTensorRTError(msg)
        self.network = network
        self.errors: list[ParserError] = []
        network.trt.record("OnnxParser")

    @property
    def num_errors(self) -> int:
        return len(self.errors)

    def get_error(self, index: int) -> ParserError:
        return self.errors[index]

    def parse(self, model: Any, path: str | None = None) -> bool:
        import onnx

        self.network.trt.record("parse", path=path, nbytes=len(model))
        if not isinstance(model, bytes | bytearray | memoryview):
            msg = f"parse(model): expected a buffer of ONNX bytes, got {type(model).__name__}"
            raise FakeTensorRTError(msg)
        try:
            proto = onnx.load_from_string(bytes(model))
        except Exception as exc:  # onnx raises several types for garbage
            self.errors.append(ParserError(ErrorCode.INVALID_GRAPH, f"bad ONNX: {exc}"))
            return False
        if len(proto.graph.node) == 0:
            self.errors.append(ParserError(ErrorCode.INVALID_GRAPH, "graph has no nodes"))
            return False
        for i, node in enumerate(proto.graph.node):
            if node.op_type not in SUPPORTED_OPS:
                self.errors.append(
                    ParserError(
                        ErrorCode.UNSUPPORTED_NODE,
                        f"No importer registered for op: {node.op_type}",
                        i,
                        node.name,
                        node.op_type,
                    )
                )
        if self.errors:
            return False
        inits = {t.name for t in proto.graph.initializer}
        elem = {1: DataType.FLOAT, 10: DataType.HALF, 7: DataType.INT64}

        def tensor(v: Any) -> FakeTensor:
            dims = [d.dim_value if d.dim_value > 0 else -1 for d in v.type.tensor_type.shape.dim]
            return FakeTensor(v.name, Dims(dims), elem[v.type.tensor_type.elem_type])

        self.network.inputs = [tensor(v) for v in proto.graph.input if v.name not in inits]
        self.network.outputs = [tensor(v) for v in proto.graph.output]
        self.network.parsed = True
        return True


class FakeProfile:
    def __init__(self, trt: FakeTensorRT) -> None:
        self.trt = trt
        self.shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = {}

    def set_shape(self, input: str, min: Any, opt: Any, max: Any) -> None:
        lo, mid, hi = (_dims(v, f"set_shape({input!r})") for v in (min, opt, max))
        self.trt.record("set_shape", input=input, min=lo, opt=mid, max=hi)
        self.shapes[input] = (lo, mid, hi)

    def get_shape(self, input: str) -> list[Dims]:
        return [Dims(s) for s in self.shapes[input]]

    @property
    def valid(self) -> bool:
        return bool(self.shapes) and all(
            len(lo) == len(mid) == len(hi)
            and all(a <= b <= c for a, b, c in zip(lo, mid, hi, strict=True))
            for lo, mid, hi in self.shapes.values()
        )

    def __bool__(self) -> bool:
        return self.valid


class FakeTimingCache:
    def __init__(self, key: str, entries: int, valid: bool) -> None:
        self.key, self.entries, self.valid = key, entries, valid

    def serialize(self) -> bytes:
        return CACHE_MAGIC + f"{self.key}|{self.entries}".encode()

    def combine(self, input_cache: FakeTimingCache, ignore_mismatch: bool) -> bool:
        self.entries += input_cache.entries
        return True


class FakeHostMemory(bytes):
    """IHostMemory: a buffer (the real one exposes the buffer protocol too)."""

    @property
    def nbytes(self) -> int:
        return len(self)


class FakeConfig:
    def __init__(self, trt: FakeTensorRT) -> None:
        self.trt = trt
        self.flags: set[BuilderFlag] = set()
        self.pool_limits: dict[MemoryPoolType, int] = {}
        self.profiles: list[FakeProfile] = []
        self.timing_cache: FakeTimingCache | None = None
        self.int8_calibrator: Any = None
        self.calibration_profile: FakeProfile | None = None

    def set_flag(self, flag: BuilderFlag) -> None:
        if not isinstance(flag, BuilderFlag):
            msg = f"set_flag: expected a BuilderFlag, got {flag!r}"
            raise FakeTensorRTError(msg)
        self.trt.record("set_flag", flag=flag.name)
        self.flags.add(flag)

    def get_flag(self, flag: BuilderFlag) -> bool:
        return flag in self.flags

    def set_memory_pool_limit(self, pool: MemoryPoolType, pool_size: int) -> None:
        if not isinstance(pool, MemoryPoolType) or not isinstance(pool_size, int) or pool_size <= 0:
            msg = f"set_memory_pool_limit({pool!r}, {pool_size!r}): bad arguments"
            raise FakeTensorRTError(msg)
        self.trt.record("set_memory_pool_limit", pool=pool.name, size=pool_size)
        self.pool_limits[pool] = pool_size

    def add_optimization_profile(self, profile: FakeProfile) -> int:
        self.trt.record("add_optimization_profile")
        if not profile.valid:
            return -1
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def set_calibration_profile(self, profile: FakeProfile) -> bool:
        self.trt.record("set_calibration_profile")
        self.calibration_profile = profile
        return profile.valid

    def create_timing_cache(self, serialized_timing_cache: Any) -> FakeTimingCache:
        data = bytes(serialized_timing_cache)
        self.trt.record("create_timing_cache", nbytes=len(data))
        if not data:
            return FakeTimingCache(self.trt.device_key, 0, True)
        if not data.startswith(CACHE_MAGIC):
            return FakeTimingCache("garbage", 0, False)
        key, entries = data[len(CACHE_MAGIC) :].decode().rsplit("|", 1)
        return FakeTimingCache(key, int(entries), True)

    def set_timing_cache(self, cache: FakeTimingCache, ignore_mismatch: bool) -> bool:
        if not isinstance(ignore_mismatch, bool):
            msg = "set_timing_cache(cache, ignore_mismatch): ignore_mismatch must be a bool"
            raise FakeTensorRTError(msg)
        self.trt.record("set_timing_cache", entries=cache.entries, ignore_mismatch=ignore_mismatch)
        if not cache.valid or (cache.key != self.trt.device_key and not ignore_mismatch):
            return False
        self.timing_cache = cache
        return True

    def get_timing_cache(self) -> FakeTimingCache | None:
        return self.timing_cache


class Builder:
    def __init__(self, logger: Logger) -> None:
        self.trt = _created("Builder")
        self.platform_has_fast_fp16 = True
        self.platform_has_fast_int8 = True

    def create_network(self, flags: int = 0) -> FakeNetwork:
        if not isinstance(flags, int):
            msg = f"create_network(flags): expected int, got {flags!r}"
            raise FakeTensorRTError(msg)
        self.trt.record("create_network", flags=flags)
        return FakeNetwork(self.trt, flags)

    def create_builder_config(self) -> FakeConfig:
        self.trt.record("create_builder_config")
        return FakeConfig(self.trt)

    def create_optimization_profile(self) -> FakeProfile:
        self.trt.record("create_optimization_profile")
        return FakeProfile(self.trt)

    def build_serialized_network(
        self, network: FakeNetwork, config: FakeConfig
    ) -> FakeHostMemory | None:
        trt = self.trt
        trt.record("build_serialized_network")
        if not network.parsed:
            msg = "build_serialized_network before a successful parse"
            raise FakeTensorRTError(msg)
        if len(config.profiles) == 0 and any(-1 in t.shape for t in network.inputs):
            trt.logged.append("Network has dynamic or shape inputs, but no optimization profile")
            return None
        profile_shapes: dict[str, list[list[int]]] = {}
        for t in network.inputs:
            if t.name not in config.profiles[0].shapes:
                trt.logged.append(f"no profile shapes for input {t.name}")
                return None
            lo, mid, hi = config.profiles[0].shapes[t.name]
            for shape in (lo, mid, hi):
                if len(shape) != len(t.shape) or any(
                    d != -1 and d != s for d, s in zip(t.shape, shape, strict=True)
                ):
                    trt.logged.append(f"profile {shape} does not match {t.name} {t.shape}")
                    return None
            profile_shapes[t.name] = [list(lo), list(mid), list(hi)]
        if BuilderFlag.INT8 in config.flags and not self._calibrate(network, config):
            return None
        if config.timing_cache is not None:
            config.timing_cache.entries += 1
        out = network.outputs[0]
        io = [
            {"name": t.name, "mode": "INPUT", "dtype": t.dtype.name, "shape": list(t.shape)}
            for t in network.inputs
        ] + [
            {"name": out.name, "mode": "OUTPUT", "dtype": out.dtype.name, "shape": list(out.shape)}
        ]
        plan = {
            "tensorrt_version": trt.__version__,
            "device": trt.device_key,
            "io": io,
            "profile": profile_shapes,
            "flags": sorted(f.name for f in config.flags),
            "version_compatible": BuilderFlag.VERSION_COMPATIBLE in config.flags,
        }
        return FakeHostMemory(PLAN_MAGIC + json.dumps(plan).encode())

    def _calibrate(self, network: FakeNetwork, config: FakeConfig) -> bool:
        cal = config.int8_calibrator
        if cal is None:
            self.trt.logged.append("INT8 without a calibrator or dynamic ranges")
            return False
        cache = cal.read_calibration_cache()
        self.trt.record("read_calibration_cache", hit=bool(cache))
        if cache:
            return True
        names = [t.name for t in network.inputs]
        batch = cal.get_batch_size()
        t = network.inputs[0]
        per_item = int(np.prod(t.shape[1:])) * np.dtype(_NP[t.dtype]).itemsize
        seen = 0
        while True:
            ptrs = cal.get_batch(names)
            if not ptrs:
                break
            if len(ptrs) != len(names) or not all(isinstance(p, int) for p in ptrs):
                msg = f"get_batch must return one int device pointer per input, got {ptrs!r}"
                raise FakeTensorRTError(msg)
            alloc = self.trt.cuda.find(ptrs[0], batch * per_item)
            if alloc.kind != "device":
                msg = "calibration batch pointer is not device memory"
                raise FakeCudaError(msg)
            seen += 1
        self.trt.record("calibrated", batches=seen, batch_size=batch)
        if seen == 0:
            self.trt.logged.append("calibrator returned no batches")
            return False
        cal.write_calibration_cache(b"FAKECAL|" + str(seen).encode())
        return True


class IInt8EntropyCalibrator2:
    def __init__(self) -> None:
        pass


# ---- runtime ---------------------------------------------------------------------------------
class FakeEngine:
    def __init__(self, trt: FakeTensorRT, plan: dict[str, Any]) -> None:
        self.trt, self.plan = trt, plan
        self.io = {t["name"]: t for t in plan["io"]}
        self.order = [t["name"] for t in plan["io"]]

    @property
    def num_io_tensors(self) -> int:
        return len(self.order)

    @property
    def num_optimization_profiles(self) -> int:
        return 1

    def get_tensor_name(self, index: int) -> str:
        return self.order[index]

    def _t(self, name: str) -> dict[str, Any]:
        if name not in self.io:
            msg = f"no tensor named {name!r}"
            raise FakeTensorRTError(msg)
        return self.io[name]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return TensorIOMode[self._t(name)["mode"]]

    def get_tensor_dtype(self, name: str) -> DataType:
        return DataType[self._t(name)["dtype"]]

    def get_tensor_shape(self, name: str) -> Dims:
        return Dims(self._t(name)["shape"])

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[Dims]:
        if profile_index != 0 or self.get_tensor_mode(name) != TensorIOMode.INPUT:
            msg = f"get_tensor_profile_shape({name!r}, {profile_index})"
            raise FakeTensorRTError(msg)
        return [Dims(s) for s in self.plan["profile"][name]]

    def create_execution_context(self) -> FakeContext:
        self.trt.record("create_execution_context")
        return FakeContext(self)


class FakeContext:
    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine
        self.trt = engine.trt
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}
        self.ran_since_reshape = False

    def set_input_shape(self, name: str, shape: Any) -> bool:
        dims = _dims(shape, f"set_input_shape({name!r})")
        self.trt.record("set_input_shape", name=name, shape=dims)
        if self.engine.get_tensor_mode(name) != TensorIOMode.INPUT:
            return False
        lo, _, hi = self.engine.plan["profile"][name]
        if len(dims) != len(lo) or not all(
            a <= d <= b for a, d, b in zip(lo, dims, hi, strict=True)
        ):
            self.trt.logged.append(f"shape {dims} outside profile [{lo}, {hi}]")
            return False
        if self.shapes.get(name) != dims:
            self.ran_since_reshape = False
        self.shapes[name] = dims
        return True

    def set_tensor_address(self, name: str, memory: int) -> bool:
        if not isinstance(memory, int):
            msg = f"set_tensor_address({name!r}, ...): expected an int pointer, got {memory!r}"
            raise FakeTensorRTError(msg)
        self.trt.record("set_tensor_address", name=name, ptr=memory)
        self.engine._t(name)
        if self.trt.cuda.find(memory, 1).kind != "device":
            msg = f"set_tensor_address({name!r}): 0x{memory:x} is host memory, not device memory"
            raise FakeCudaError(msg)
        self.addresses[name] = memory
        return True

    def get_tensor_shape(self, name: str) -> Dims:
        t = self.engine._t(name)
        if t["mode"] == "INPUT":
            return Dims(self.shapes.get(name, t["shape"]))
        batch = next(iter(self.shapes.values()), (-1,))[0]
        return Dims([batch, *t["shape"][1:]])

    def execute_async_v3(self, stream_handle: int) -> bool:
        if type(stream_handle) is not int:
            msg = f"execute_async_v3(stream_handle): expected an int, got {stream_handle!r}"
            raise FakeTensorRTError(msg)
        trt, cuda, eng = self.trt, self.trt.cuda, self.engine
        stream = cuda.stream(stream_handle)
        trt.record("execute_async_v3", stream=stream_handle, capturing=stream.capture is not None)
        inputs = [n for n in eng.order if eng.io[n]["mode"] == "INPUT"]
        output = next(n for n in eng.order if eng.io[n]["mode"] == "OUTPUT")
        missing = [n for n in inputs if n not in self.shapes]
        if missing:
            trt.logged.append(f"input shapes not set: {missing}")
            return False
        unbound = [n for n in eng.order if n not in self.addresses]
        if unbound:
            trt.logged.append(f"tensor addresses not set: {unbound}")
            return False
        if stream.capture is not None and not self.ran_since_reshape:
            trt.logged.append("enqueue during capture before a first run with these shapes")
            return False
        x_name = inputs[0]
        x_shape = self.shapes[x_name]
        x_dtype = np.dtype(_NP[DataType[eng.io[x_name]["dtype"]]])
        y_dtype = np.dtype(_NP[DataType[eng.io[output]["dtype"]]])
        num_classes = eng.io[output]["shape"][1]
        x_bytes = int(np.prod(x_shape)) * x_dtype.itemsize
        y_bytes = x_shape[0] * num_classes * y_dtype.itemsize
        x_ptr, y_ptr = self.addresses[x_name], self.addresses[output]
        cuda.find(x_ptr, x_bytes)  # address ranges must hold the current shapes
        cuda.find(y_ptr, y_bytes)

        def kernel() -> None:
            x = np.frombuffer(cuda.read(x_ptr, x_bytes), dtype=x_dtype).reshape(x_shape)
            y = reference_logits(x, num_classes).astype(y_dtype)
            cuda.write(y_ptr, y.tobytes())

        cuda.enqueue(stream_handle, "execute", kernel)
        self.ran_since_reshape = True
        return True


class Runtime:
    def __init__(self, logger: Logger) -> None:
        self.trt = _created("Runtime")
        self.engine_host_code_allowed = False

    def deserialize_cuda_engine(self, serialized_engine: Any) -> FakeEngine | None:
        data = bytes(serialized_engine)
        self.trt.record("deserialize_cuda_engine", nbytes=len(data))
        if not data.startswith(PLAN_MAGIC):
            self.trt.logged.append("Serialization assertion failed: magic tag does not match")
            return None
        plan = json.loads(data[len(PLAN_MAGIC) :])
        if plan["tensorrt_version"] != self.trt.__version__ and not plan["version_compatible"]:
            self.trt.logged.append("plan built by another TensorRT version")
            return None
        if plan["version_compatible"] and not self.engine_host_code_allowed:
            self.trt.logged.append("version-compatible plan needs engine_host_code_allowed")
            return None
        return FakeEngine(self.trt, plan)


# ---- the module object -----------------------------------------------------------------------
def _current() -> FakeTensorRT:
    """The fake installed as ``sys.modules['tensorrt']`` (classes reach their module this way)."""
    trt = sys.modules.get("tensorrt")
    if not isinstance(trt, FakeTensorRT):
        msg = "no FakeTensorRT installed in sys.modules['tensorrt']"
        raise FakeTensorRTError(msg)
    return trt


def _created(what: str) -> FakeTensorRT:
    """The fake module, for a new ``trt.<what>``: refused without a GPU, recorded otherwise."""
    trt = _current()
    trt.require_gpu(what)
    trt.record(what)
    return trt


class FakeTensorRT:
    """Module-like object to put in ``sys.modules['tensorrt']``."""

    Builder = Builder
    Runtime = Runtime
    Logger = Logger
    ILogger = Logger
    OnnxParser = OnnxParser
    IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2
    DataType = DataType
    TensorIOMode = TensorIOMode
    BuilderFlag = BuilderFlag
    MemoryPoolType = MemoryPoolType
    ErrorCode = ErrorCode
    Dims = Dims

    def __init__(self, cuda: FakeCudaRuntime, version: str = "10.13.0.35") -> None:
        self.cuda = cuda
        self.__version__ = version
        self.logged: list[str] = []

    @property
    def log(self) -> list[tuple[str, dict[str, Any]]]:
        return self.cuda.log

    @property
    def device_key(self) -> str:
        d = self.cuda.device
        return f"{d.name}|{d.major}.{d.minor}|{self.__version__}"

    def record(self, call: str, /, **args: Any) -> None:
        self.cuda.log.append((f"trt.{call}", args))

    def require_gpu(self, what: str) -> None:
        if self.cuda.device.count == 0:
            msg = f"trt.{what} created without a GPU (the real one crashes the process)"
            raise FakeTensorRTError(msg)

    def nptype(self, trt_type: DataType) -> type:
        return _NP[trt_type]
