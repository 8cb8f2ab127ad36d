"""10-, 12- and 16-bit mono frames (uint16, as Mono12/Mono16 cameras deliver them): the tiler
normalises them by 2^bits - 1 in place, the Inspector takes them for a model whose sidecar
declares ``input.bit_depth`` and refuses a dtype that does not match it, and the direct student
runner reads them itself with the same numerics as the ONNX Runtime path."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
from studentzoo import frames as gray_frames
from studentzoo import student_onnx

from pyinspect import Inspector, _core
from pyinspect.errors import InputError
from pyinspect.frames import check_frame
from pyinspect.spec import InputSpec, ModelSpec
from pyinspect.tiling import Tiler, patch_grid, tile, tile_into

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "models" / "student.onnx"
DEPTHS = (10, 12, 16)
RNG = np.random.default_rng(16)


def full_scale(bits: int) -> int:
    return 2**bits - 1


def deep_frame(shape: tuple[int, ...], bits: int, seed: int = 0) -> np.ndarray:
    """Random pixels over the whole range of a ``bits``-bit camera, including 0 and full scale."""
    f = np.random.default_rng(seed).integers(0, 2**bits, shape, dtype=np.uint16)
    f.flat[0], f.flat[-1] = 0, full_scale(bits)
    return f


def ideal(frame: np.ndarray, boxes: np.ndarray, bits: int, channels: int, mean, std) -> np.ndarray:
    """(x / (2^bits - 1) - mean) / std in float64: the formula users think of."""
    f = (frame if frame.ndim == 2 else frame[:, :, 0]).astype(np.float64) / full_scale(bits)
    crops = np.stack([f[y : y + h, x : x + w] for x, y, w, h in boxes.tolist()])[:, None]
    m = np.broadcast_to(np.asarray(mean, np.float64), (channels,))[None, :, None, None]
    s = np.broadcast_to(np.asarray(std, np.float64), (channels,))[None, :, None, None]
    return (np.repeat(crops, channels, axis=1) - m) / s


def op_by_op(frame: np.ndarray, boxes: np.ndarray, bits: int, channels: int, mean, std):
    """The documented float32 arithmetic: v * float(1 / (M std)) + float(-mean / std), the
    product and the sum rounded separately; the tiler must give these bits on every CPU path."""
    m = np.broadcast_to(np.asarray(mean, np.float64), (channels,))
    s = np.broadcast_to(np.asarray(std, np.float64), (channels,))
    scale = (1.0 / (full_scale(bits) * s)).astype(np.float32)
    offset = (-m / s).astype(np.float32)
    f = (frame if frame.ndim == 2 else frame[:, :, 0]).astype(np.float32)
    out = []
    for x, y, w, h in boxes.tolist():
        crop = f[y : y + h, x : x + w]
        out.append(
            np.stack([(crop * scale[c]).astype(np.float32) + offset[c] for c in range(channels)])
        )
    return np.stack(out).astype(np.float32)


def assert_bits_equal(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape
    view = np.uint16 if got.dtype == np.float16 else np.uint32
    bad = got.view(view) != want.view(view)
    assert not bad.any(), f"{bad.sum()} values differ, first at {np.argwhere(bad)[0]}"


# ---- the tiler -----------------------------------------------------------------------------------
@pytest.mark.parametrize("bits", DEPTHS)
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize(
    ("mean", "std"), [(0.0, 1.0), (0.45, 0.226), ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))]
)
def test_tile_matches_the_float_reference(bits: int, channels: int, mean, std) -> None:
    if channels == 1 and isinstance(mean, tuple):
        mean, std = mean[0], std[0]
    frame = deep_frame((512, 600), bits, seed=bits)
    patches, boxes = tile(frame, bit_depth=bits, channels=channels, mean=mean, std=std)
    want = ideal(frame, boxes, bits, channels, mean, std)
    assert patches.dtype == np.float32 and patches.shape == want.shape
    assert np.abs(patches - want).max() <= 1e-6
    assert_bits_equal(patches, op_by_op(frame, boxes, bits, channels, mean, std))


@pytest.mark.parametrize("bits", DEPTHS)
def test_hw1_frames_and_float16_output(bits: int) -> None:
    frame = deep_frame((300, 260), bits, seed=3)
    mean, std = 0.4, 0.3
    want, _ = tile(frame, bit_depth=bits, mean=mean, std=std)
    got, _ = tile(frame[:, :, None], bit_depth=bits, mean=mean, std=std)
    assert_bits_equal(got, want)
    half, _ = tile(frame, bit_depth=bits, mean=mean, std=std, dtype=np.float16)
    assert_bits_equal(half, want.astype(np.float16))  # round-to-nearest-even of the float32


def views(base: np.ndarray) -> dict[str, np.ndarray]:
    """Non-contiguous uint16 views of ``base`` (H×W) with the same pixels as ``base``."""
    h, w = base.shape
    big = np.zeros((2 * h + 3, 2 * w + 5), np.uint16)
    big[1 : 1 + 2 * h : 2, 2 : 2 + 2 * w : 2] = base
    raw = bytearray(base.nbytes + 1)  # one byte in: every pixel at an odd address
    odd = np.frombuffer(raw, np.uint16, count=base.size, offset=1).reshape(h, w)
    odd[...] = base
    transposed = np.ascontiguousarray(base.T).T
    flipped = np.ascontiguousarray(base[::-1, ::-1])[::-1, ::-1]
    planar = np.ascontiguousarray(base[None]).transpose(1, 2, 0)  # H×W×1, channel stride 2·H·W
    return {
        "strided_crop": big[1 : 1 + 2 * h : 2, 2 : 2 + 2 * w : 2],
        "transposed": transposed,
        "flipped": flipped,
        "unaligned": odd,
        "planar_hw1": planar,
    }


@pytest.mark.parametrize(
    "kind", ["strided_crop", "transposed", "flipped", "unaligned", "planar_hw1"]
)
def test_strided_views_read_in_place(kind: str) -> None:
    base = deep_frame((260, 300), 12, seed=5)
    view = views(base)[kind]
    assert np.array_equal(view.reshape(base.shape), base)
    if kind != "planar_hw1":
        assert not view.flags.c_contiguous or not view.flags.aligned
    want, _ = tile(base, bit_depth=12, channels=3, mean=0.5, std=0.25)
    got, _ = tile(view, bit_depth=12, channels=3, mean=0.5, std=0.25)
    assert_bits_equal(got, want)


def test_broadcast_rows_are_read_in_place() -> None:
    row = deep_frame((1, 300), 16, seed=6)
    view = np.broadcast_to(row, (240, 300))  # row stride 0
    got, boxes = tile(view, bit_depth=16, channels=1, mean=0.2, std=0.7)
    assert_bits_equal(got, op_by_op(np.ascontiguousarray(view), boxes, 16, 1, 0.2, 0.7))


def test_values_above_full_scale_pass_through() -> None:
    """Documented: a 12-bit model's frame with garbage in the top bits is not clipped."""
    frame = np.full((224, 224), 65535, np.uint16)
    got, _ = tile(frame, bit_depth=12, mean=0.5, std=0.5)
    want = np.float32(65535 / 4095 - 0.5) / np.float32(0.5)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_thread_counts_agree_and_tile_into_writes_in_place() -> None:
    frame = deep_frame((900, 700), 16, seed=7)
    boxes = patch_grid(900, 700)
    outs = []
    for threads in (1, 2, 3):
        out = np.empty((len(boxes), 3, 224, 224), np.float32)
        tile_into(frame, out, boxes, 0.3, 0.2, threads, bit_depth=16)
        outs.append(out)
    for out in outs[1:]:
        assert_bits_equal(out, outs[0])


def test_tiler_object_matches_tile() -> None:
    frame = deep_frame((512, 512), 10, seed=8)
    want, boxes = tile(frame, bit_depth=10, channels=1, mean=0.1, std=0.4)
    out = np.empty_like(want)
    Tiler(0.1, 0.4, 1, bit_depth=10)(frame, out, boxes)
    assert_bits_equal(out, want)


def test_eight_bit_tiling_is_unchanged() -> None:
    """uint8 frames keep 1 / (255 std), bit for bit, with or without bit_depth=8."""
    frame = RNG.integers(0, 256, (512, 512), dtype=np.uint8)
    want, boxes = tile(frame, channels=3, mean=0.45, std=0.226)
    got, _ = tile(frame, channels=3, mean=0.45, std=0.226, bit_depth=8)
    assert_bits_equal(got, want)
    assert_bits_equal(want, op_by_op(frame, boxes, 8, 3, 0.45, 0.226))


def test_baseline_and_simd_paths_agree_on_uint16(tmp_path: Path) -> None:
    """The portable kernel (forced) gives the same bits as the AVX2 one for uint16 frames."""
    script = textwrap.dedent(
        """
        import sys
        import numpy as np
        from pyinspect import _core
        from pyinspect.tiling import tile
        rng = np.random.default_rng(9)
        frame = rng.integers(0, 4096, (300, 500), dtype=np.uint16)
        outs = [_core.tile_kernel_isa()]
        for view in (frame, frame[:, ::-1], frame.T):
            for dtype in (np.float32, np.float16):
                for channels in (1, 3):
                    p, _ = tile(view, bit_depth=12, channels=channels, dtype=dtype, mean=0.5,
                                std=0.25)
                    outs.append(p)
        np.savez(sys.argv[1], *outs[1:], isa=np.array(outs[0]))
        """
    )
    paths = {}
    for isa in ("native", "baseline"):
        env = {**os.environ}
        env.pop("PYINSPECT_TILE_ISA", None)
        if isa == "baseline":
            env["PYINSPECT_TILE_ISA"] = "baseline"
        paths[isa] = tmp_path / f"{isa}.npz"
        subprocess.run([sys.executable, "-c", script, str(paths[isa])], check=True, env=env)
    native, baseline = np.load(paths["native"]), np.load(paths["baseline"])
    assert str(baseline["isa"]) == "baseline"
    names = [k for k in native.files if k != "isa"]
    assert len(names) == 12
    for k in names:
        assert_bits_equal(native[k], baseline[k])


# ---- the tiler's refusals ------------------------------------------------------------------------
DEEP = np.zeros((256, 256), np.uint16)
OUT = np.empty((1, 1, 224, 224), np.float32)
BOX = np.array([[0, 0, 224, 224]], np.int32)


@pytest.mark.parametrize(
    ("frame", "kwargs", "match"),
    [
        (DEEP, {}, r"frame must be uint8, got uint16 without a bit depth: pass bit_depth=10, 12"),
        (DEEP, {"bit_depth": 8}, "bit_depth=8 needs a uint8 frame, got uint16"),
        (DEEP.astype(np.uint8), {"bit_depth": 12}, "bit_depth=12 needs a uint16 frame, got uint8"),
        (DEEP, {"bit_depth": 9}, r"bit_depth must be one of \[8, 10, 12, 16\], got 9"),
        (DEEP, {"bit_depth": "12"}, r"bit_depth must be one of \[8, 10, 12, 16\], got '12'"),
        (DEEP, {"bit_depth": True}, r"bit_depth must be one of .*got True"),
        (
            np.zeros((256, 256, 3), np.uint16),
            {"bit_depth": 16},
            r"a uint16 frame must be mono, 2-D \(H, W\) or 3-D \(H, W, 1\), got uint16 of shape"
            r" \(256, 256, 3\)",
        ),
        (np.zeros(256, np.uint16), {"bit_depth": 16}, r"got uint16 of shape \(256,\)"),
        (DEEP.astype(">u2"), {"bit_depth": 16}, "frame must be uint8, got >u2"),
        (DEEP.astype(np.int16), {"bit_depth": 16}, "frame must be uint8, got int16"),
        (DEEP.astype(np.float32), {"bit_depth": 16}, "frame must be uint8, got float32"),
    ],
    ids=[
        "no-depth",
        "depth8",
        "uint8-depth12",
        "depth9",
        "depth-str",
        "depth-bool",
        "colour",
        "1d",
        "big-endian",
        "int16",
        "float",
    ],
)
def test_tile_refusals_name_dtype_and_depth(frame: np.ndarray, kwargs: dict, match: str) -> None:
    with pytest.raises(InputError, match=match):
        tile(frame, **kwargs)
    with pytest.raises(InputError, match=match):
        tile_into(frame, OUT, BOX, 0.0, 1.0, **kwargs)


@pytest.mark.parametrize(
    ("frame", "max_value", "match"),
    [
        (
            DEEP,
            255.0,
            r"max_value of a uint16 frame must be 2\^bits - 1 in \[256, 65535\].*got 255",
        ),
        (DEEP, 65536.0, "got 65536"),
        (DEEP, float("nan"), "got nan"),
        (DEEP.astype(np.uint8), 4095.0, "max_value 4095 does not fit a uint8 frame"),
        (
            np.zeros((256, 256, 3), np.uint16),
            4095.0,
            r"a uint16 frame must be gray \(H x W or H x W x 1\), got 256 x 256 x 3",
        ),
        (DEEP.astype(np.int16), 4095.0, r"frame must be uint8 \(or uint16 gray\), got int16"),
    ],
)
def test_core_refuses_a_mismatched_scale(frame: np.ndarray, max_value: float, match: str) -> None:
    """The core's own guard: a direct call cannot mis-scale a frame either."""
    with pytest.raises(ValueError, match=match):
        _core.tile_into(frame, OUT, BOX, [0.0], [1.0], 1, max_value)
    if frame.dtype == np.uint16 and frame.ndim == 2:
        with pytest.raises(ValueError, match="max_value of a uint16 frame"):
            _core.tile_into(frame, OUT, BOX, [0.0], [1.0], 1)  # the default is uint8's 255


def test_tiler_object_refuses_the_other_dtype() -> None:
    with pytest.raises(InputError, match=r"max_value of a uint16 frame .*got 255"):
        Tiler(0.0, 1.0, 1)(DEEP, OUT, BOX)
    with pytest.raises(InputError, match="max_value 4095 does not fit a uint8 frame"):
        Tiler(0.0, 1.0, 1, bit_depth=12)(DEEP.astype(np.uint8), OUT, BOX)
    with pytest.raises(InputError, match=r"bit_depth must be one of \[8, 10, 12, 16\], got 11"):
        Tiler(0.0, 1.0, 1, bit_depth=11)


def test_check_frame_pairs_dtype_and_depth() -> None:
    assert check_frame(DEEP) is DEEP  # no depth asked: uint16 mono is a frame
    assert check_frame(DEEP, 12) is DEEP
    with pytest.raises(InputError, match="model expects 8-bit frames") as info:
        check_frame(DEEP, 8)
    assert "declare input.bit_depth" in str(info.value)
    assert "frame must be uint8, got uint16" in str(info.value)
    with pytest.raises(
        InputError, match=r"frame must be uint16 .*got uint8: the model expects 12-bit"
    ):
        check_frame(DEEP.astype(np.uint8), 12)


# ---- the Inspector on a model whose sidecar declares the bit depth ------------------------------
needs_bit_depth = pytest.mark.skipif(
    "bit_depth" not in InputSpec.model_fields,
    reason="pyinspect.spec.InputSpec has no bit_depth field yet (the sidecar cannot declare it)",
)


def deep_model(folder: Path, bits: int, source: Path = SHIPPED) -> Path:
    """A copy of ``source`` whose sidecar declares ``input.bit_depth = bits``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / source.name
    shutil.copyfile(source, path)
    doc = json.loads(ModelSpec.sidecar_path(source).read_text())
    doc["input"]["bit_depth"] = bits
    ModelSpec.from_dict(doc, source=str(path)).save_for_model(path)
    return path


@pytest.fixture(scope="module")
def deep_models(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    if "bit_depth" not in InputSpec.model_fields:
        pytest.skip("pyinspect.spec.InputSpec has no bit_depth field yet")
    root = tmp_path_factory.mktemp("deep")
    return {bits: deep_model(root / str(bits), bits) for bits in DEPTHS}


@needs_bit_depth
@pytest.mark.parametrize("bits", DEPTHS)
def test_inspector_tiles_uint16_like_the_formula(deep_models: dict[int, Path], bits: int) -> None:
    """Through the backend path, the patches the model sees are (x / (2^b - 1) - mean) / std:
    within 1e-6 of the full scale of the normalised values (the shipped model's std is 1/255)."""
    frame = deep_frame((512, 512), bits, seed=bits)
    with Inspector(deep_models[bits], backend="onnxruntime", runner="backend", threads=1) as insp:
        assert insp.spec.input.bit_depth == bits
        result = insp.run(frame)
        seen = insp.backend.input_buffer(result.num_patches)
        norm = insp.spec.normalization
        want = ideal(frame, result.boxes, bits, 1, norm.mean, norm.std)
        full = (1 + abs(norm.mean[0])) / norm.std[0]
        assert np.abs(seen - want).max() <= 1e-6 * full
        assert_bits_equal(
            np.array(seen), op_by_op(frame, result.boxes, bits, 1, norm.mean, norm.std)
        )


def verdicts(result) -> tuple:
    return (result.texture, result.defective, result.label, result.patch_class.tolist())


@needs_bit_depth
@pytest.mark.parametrize("runner", ["backend", "auto"])
def test_sixteen_bit_frame_of_an_eight_bit_one_gives_its_verdict(
    deep_models: dict[int, Path], runner: str
) -> None:
    """x · 257 / 65535 == x / 255: a uint16 copy of a uint8 frame on the 16-bit sidecar gives the
    uint8 frame's verdict on the 8-bit sidecar, on the backend path and on the direct runner."""
    with (
        Inspector(SHIPPED, runner=runner, threads=1) as eight,
        Inspector(deep_models[16], runner=runner, threads=1) as sixteen,
    ):
        assert eight.runner == sixteen.runner
        for frame in gray_frames((512, 512), 3, seed=11) + gray_frames((600, 600), 1, seed=12):
            want = eight.run(frame)
            got = sixteen.run(frame.astype(np.uint16) * 257)
            assert verdicts(got) == verdicts(want)
            np.testing.assert_allclose(got.patch_score, want.patch_score, atol=1e-5)


@needs_bit_depth
def test_uint16_png_files_are_read_as_uint16(deep_models: dict[int, Path], tmp_path: Path) -> None:
    frame = deep_frame((512, 512), 12, seed=13)
    path = tmp_path / "mono12.png"
    assert cv2.imwrite(str(path), frame)
    with Inspector(deep_models[12], runner="backend", threads=1) as insp:
        assert verdicts(insp.run(path)) == verdicts(insp.run(frame))


@needs_bit_depth
def test_inspector_refuses_a_frame_of_the_other_depth(deep_models: dict[int, Path]) -> None:
    with Inspector(SHIPPED, runner="backend", threads=1) as eight:
        with pytest.raises(InputError) as info:
            eight.run(np.zeros((512, 512), np.uint16))
        text = str(info.value)
        assert "model expects 8-bit frames" in text and "declare input.bit_depth" in text
        with pytest.raises(InputError, match=r"^frames\[1\]: frame must be uint8, got uint16"):
            eight.run_batch([np.zeros((512, 512), np.uint8), np.zeros((512, 512), np.uint16)])
    with Inspector(deep_models[12], runner="backend", threads=1) as twelve:
        with pytest.raises(InputError, match=r"frame must be uint16 .*got uint8") as info:
            twelve.run(np.zeros((512, 512), np.uint8))
        assert "12-bit" in str(info.value) and "mis-scaled" in str(info.value)
        with pytest.raises(InputError, match="frame must be uint8, got float32"):
            twelve.run(np.zeros((512, 512), np.float32))
        with pytest.raises(InputError, match=r"uint16 frame must be mono.*\(512, 512, 3\)"):
            twelve.run(np.zeros((512, 512, 3), np.uint16))
        results = list(twelve.stream([np.zeros((512, 512), np.uint8), deep_frame((512, 512), 12)]))
        assert [r.ok for r in results] == [False, True]
        assert "frame must be uint16" in str(results[0].error)


# ---- the direct student runner ---------------------------------------------------------------
@needs_bit_depth
@pytest.mark.usefixtures("need_student_runner")
@pytest.mark.parametrize("bits", [12, 16])
def test_direct_runner_matches_onnxruntime_on_uint16(
    deep_models: dict[int, Path], bits: int
) -> None:
    with (
        Inspector(deep_models[bits], threads=2) as fast,
        Inspector(deep_models[bits], runner="backend", threads=1) as ref,
    ):
        assert fast.runner == "student", fast.runner_note
        for shape in ((512, 512), (600, 600)):  # shared conv1-4, then patch by patch
            for seed in range(2):
                frame = deep_frame(shape, bits, seed=seed)
                got, want = fast.run(frame), ref.run(frame)
                assert verdicts(got) == verdicts(want)
                np.testing.assert_allclose(got.patch_score, want.patch_score, atol=1e-5)


@needs_bit_depth
@pytest.mark.usefixtures("need_student_runner")
@pytest.mark.parametrize("folded", [True, False])
def test_direct_runner_logits_on_uint16(tmp_path: Path, folded: bool) -> None:
    """Random students (folded 1-channel and 3-channel normalised) on 10-bit frames: logits as
    ONNX Runtime's on the tiler's patches, any strides, 1 and 2 threads bit-identical."""
    import onnxruntime as ort

    from pyinspect.runners.student import StudentRunner

    source = tmp_path / "src" / "student.onnx"
    source.parent.mkdir()
    student_onnx(source, folded=folded, seed=3)
    path = deep_model(tmp_path / "deep", 10, source)
    spec = ModelSpec.for_model(path)
    norm = spec.normalization
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    runners = [StudentRunner(path, threads=t) for t in (1, 2)]
    assert runners[0].verify_delta is not None and runners[0].verify_delta < 1e-4
    for shape in ((512, 512), (600, 600)):
        frame = deep_frame(shape, 10, seed=4)
        patches, _ = tile(
            frame, bit_depth=10, channels=spec.input.channels, mean=norm.mean, std=norm.std
        )
        want = session.run(None, {spec.input.name: patches})[0]
        logits = []
        for r in runners:
            r.inspect(frame)
            logits.append(r.logits())
        np.testing.assert_allclose(logits[0], want, rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(logits[0], logits[1])
        for kind, view in views(frame).items():
            runners[0].inspect(view)
            np.testing.assert_array_equal(runners[0].logits(), logits[0], err_msg=kind)


@needs_bit_depth
@pytest.mark.usefixtures("need_student_runner")
def test_direct_runner_reads_only_its_own_dtype(deep_models: dict[int, Path]) -> None:
    from pyinspect.runners.student import StudentRunner

    twelve = StudentRunner(deep_models[12], threads=1)
    eight = StudentRunner(SHIPPED, threads=1)
    assert (twelve.bit_depth, eight.bit_depth) == (12, 8)
    gray8 = np.zeros((512, 512), np.uint8)
    deep = np.zeros((512, 512), np.uint16)
    with pytest.raises(InputError, match=r"frame must be uint16 .*got uint8"):
        twelve.inspect(gray8)
    with pytest.raises(InputError, match="model expects 8-bit frames"):
        eight.inspect(deep)
    boxes = patch_grid(512, 512)  # past the Python checks, the core refuses too
    with pytest.raises(InputError, match=r"this runner reads uint16 frames .*got a uint8 frame"):
        twelve.run(gray8, boxes, None)
    with pytest.raises(InputError, match=r"this runner reads uint8 frames .*got a uint16 frame"):
        eight.run(deep, boxes, None)


@needs_bit_depth
def test_openvino_native_runner_refuses_a_deep_model(deep_models: dict[int, Path]) -> None:
    """Its C++ call reads uint8 frames only: refused at load, before OpenVINO is needed."""
    from pyinspect.errors import SpecError
    from pyinspect.runners.openvino_native import OpenVinoFrameRunner

    with pytest.raises(SpecError, match=r"reads uint8 frames, and the sidecar declares input\.bit"):
        OpenVinoFrameRunner(deep_models[12])
