"""The fused tiler against a plain NumPy reference over layouts, strides and views; its errors."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyinspect import _core
from pyinspect.errors import InputError, InputTypeError
from pyinspect.tiling import patch_grid, tile, tile_into

RNG = np.random.default_rng(1234)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def reference(
    frame: np.ndarray,
    boxes: npt.NDArray[np.int32],
    channels: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    dtype: npt.DTypeLike = np.float32,
) -> np.ndarray:
    """The documented arithmetic, op by op in float32: v * scale + offset, luma then normalise."""
    f = frame if frame.ndim == 3 else frame[:, :, None]
    m, s = np.asarray(mean, np.float64), np.asarray(std, np.float64)
    scale = (1.0 / (255.0 * s)).astype(np.float32)
    offset = (-m / s).astype(np.float32)
    patches = []
    for x, y, w, h in boxes.tolist():
        crop = f[y : y + h, x : x + w].astype(np.float32)
        if crop.shape[2] == 1:
            planes = [crop[..., 0]] * channels
        elif channels == 3:
            planes = [crop[..., 2], crop[..., 1], crop[..., 0]]
        else:
            r, g, b = crop[..., 2], crop[..., 1], crop[..., 0]
            planes = [(np.float32(0.299) * r + np.float32(0.587) * g) + np.float32(0.114) * b]
        patches.append(np.stack([p * scale[c] + offset[c] for c, p in enumerate(planes)]))
    with np.errstate(over="ignore"):  # float16 overflow to inf is part of the contract
        return np.stack(patches).astype(np.float32).astype(dtype)


def ideal(
    frame: np.ndarray, boxes: np.ndarray, channels: int, mean: tuple, std: tuple
) -> np.ndarray:
    """(x/255 - mean)/std in float64, the formula users think of."""
    f = (frame if frame.ndim == 3 else frame[:, :, None]).astype(np.float64)
    if f.shape[2] == 1:
        f = np.repeat(f, channels, axis=2)
    elif channels == 3:
        f = f[..., 2::-1]
    else:
        f = (0.299 * f[..., 2] + 0.587 * f[..., 1] + 0.114 * f[..., 0])[..., None]
    crops = np.stack([f[y : y + h, x : x + w] for x, y, w, h in boxes.tolist()])
    return (crops.transpose(0, 3, 1, 2) / 255.0 - np.asarray(mean)[:, None, None]) / np.asarray(
        std
    )[:, None, None]


def assert_bits_equal(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape
    view = np.uint16 if got.dtype == np.float16 else np.uint32
    bad = got.view(view) != want.view(view)
    assert not bad.any(), f"{bad.sum()} values differ, first at {np.argwhere(bad)[0]}"


# --- frames in every layout the tiler must read in place ---

LAYOUTS = ["hw", "hw1", "bgr", "bgra"]
VIEWS = ["contiguous", "transposed", "flipped", "strided_crop", "planar", "broadcast"]


def make_frame(
    height: int, width: int, layout: str, view: str, rng: np.random.Generator
) -> np.ndarray:
    c = {"hw": 0, "hw1": 1, "bgr": 3, "bgra": 4}[layout]
    tail = (c,) if c else ()
    if view == "contiguous":
        return rng.integers(0, 256, (height, width, *tail), dtype=np.uint8)
    if view == "transposed":  # stored W x H, viewed H x W
        base = rng.integers(0, 256, (width, height, *tail), dtype=np.uint8)
        return base.transpose(1, 0, 2) if c else base.T
    if view == "flipped":  # negative strides on every axis
        base = rng.integers(0, 256, (height, width, *tail), dtype=np.uint8)
        return base[::-1, ::-1, ::-1] if c else base[::-1, ::-1]
    if view == "strided_crop":  # a cropped, every-other-pixel view of a larger image
        base = rng.integers(0, 256, (2 * height + 3, 2 * width + 5, *tail), dtype=np.uint8)
        return base[3::2, 5::2][:height, :width]
    if view == "planar":  # C x H x W storage viewed as H x W x C (channel stride = H*W)
        if not c:
            return rng.integers(0, 256, (height, width), dtype=np.uint8)
        return rng.integers(0, 256, (c, height, width), dtype=np.uint8).transpose(1, 2, 0)
    # broadcast: zero strides, read-only
    row = rng.integers(0, 256, (1, width, *tail), dtype=np.uint8)
    return np.broadcast_to(row, (height, width, *tail))


@st.composite
def tiling_cases(draw: st.DrawFn) -> dict:
    patch = draw(st.integers(min_value=1, max_value=40))
    height = patch + draw(st.integers(min_value=0, max_value=50))
    width = patch + draw(st.integers(min_value=0, max_value=50))
    rows = len(_core.axis_positions(height, patch)) + draw(st.integers(0, 2))
    cols = len(_core.axis_positions(width, patch)) + draw(st.integers(0, 2))
    channels = draw(st.sampled_from([1, 3]))
    log_std = st.floats(min_value=-4, max_value=6)  # 1e-4 .. 1e6: overflow and subnormal fp16
    return {
        "patch": patch,
        "height": height,
        "width": width,
        "rows": min(rows, height),
        "cols": min(cols, width),
        "layout": draw(st.sampled_from(LAYOUTS)),
        "view": draw(st.sampled_from(VIEWS)),
        "channels": channels,
        "mean": tuple(draw(st.floats(-300, 300)) for _ in range(channels)),
        "std": tuple(10 ** draw(log_std) * draw(st.sampled_from([1, -1])) for _ in range(channels)),
        "threads": draw(st.sampled_from([0, 1, 2, 3])),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


@settings(max_examples=300, deadline=None)
@given(tiling_cases())
def test_tiler_matches_reference_bit_for_bit(case: dict) -> None:
    frame = make_frame(
        case["height"],
        case["width"],
        case["layout"],
        case["view"],
        np.random.default_rng(case["seed"]),
    )
    boxes = patch_grid(case["height"], case["width"], case["patch"], case["rows"], case["cols"])
    n, c, p = boxes.shape[0], case["channels"], case["patch"]
    for dtype in (np.float32, np.float16):
        out = np.full((n, c, p, p), np.nan, dtype=dtype)
        tile_into(frame, out, boxes, case["mean"], case["std"], threads=case["threads"])
        assert_bits_equal(out, reference(frame, boxes, c, case["mean"], case["std"], dtype))


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(LAYOUTS),
    st.sampled_from(VIEWS),
    st.sampled_from([1, 3]),
    st.tuples(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1)),
    st.tuples(st.floats(0.25, 1), st.floats(0.25, 1), st.floats(0.25, 1)),
    st.integers(0, 2**32 - 1),
)
def test_fp32_within_1e6_of_the_formula(
    layout: str, view: str, channels: int, mean: tuple, std: tuple, seed: int
) -> None:
    frame = make_frame(45, 38, layout, view, np.random.default_rng(seed))
    boxes = patch_grid(45, 38, 16)
    m, s = mean[:channels], std[:channels]
    out = np.empty((len(boxes), channels, 16, 16), np.float32)
    tile_into(frame, out, boxes, m, s)
    luma = channels == 1 and layout in ("bgr", "bgra")  # float32 luma adds its own rounding
    atol = 2e-6 if luma else 1e-6
    np.testing.assert_allclose(out, ideal(frame, boxes, channels, m, s), rtol=0, atol=atol)


def test_dagm_frame_every_output_format() -> None:
    gray = RNG.integers(0, 256, (512, 512), dtype=np.uint8)
    bgr = RNG.integers(0, 256, (512, 512, 3), dtype=np.uint8)
    for frame in (gray, bgr):
        for channels in (1, 3):
            mean, std = IMAGENET_MEAN[:channels], IMAGENET_STD[:channels]
            for dtype in (np.float32, np.float16):
                patches, boxes = tile(frame, channels=channels, dtype=dtype, mean=mean, std=std)
                assert patches.shape == (9, channels, 224, 224) and patches.dtype == dtype
                assert_bits_equal(patches, reference(frame, boxes, channels, mean, std, dtype))


def test_threads_do_not_change_the_result() -> None:
    frame = RNG.integers(0, 256, (700, 530, 4), dtype=np.uint8)
    boxes = patch_grid(700, 530)
    outs = []
    for threads in (0, 1, 2, 7):
        out = np.empty((len(boxes), 3, 224, 224), np.float16)
        tile_into(frame, out, boxes, IMAGENET_MEAN, IMAGENET_STD, threads=threads)
        outs.append(out)
    for out in outs[1:]:
        assert_bits_equal(out, outs[0])


def test_baseline_and_simd_paths_agree(tmp_path: os.PathLike[str]) -> None:
    """The AVX2/F16C path (when this CPU has it) and the portable path give identical bits."""
    script = textwrap.dedent(
        """
        import sys, numpy as np
        from pyinspect import _core
        from pyinspect.tiling import tile
        rng = np.random.default_rng(7)
        parts = [_core.tile_kernel_isa().encode()]
        for shape in [(300, 260), (300, 260, 3), (300, 260, 4)]:
            frame = rng.integers(0, 256, shape, dtype=np.uint8)
            for c in (1, 3):
                for dt in (np.float32, np.float16):
                    p, _ = tile(frame, patch=100, channels=c, dtype=dt, mean=0.3, std=1e-3 * c)
                    parts.append(p.tobytes())
                    p, _ = tile(frame[::-1, ::2], patch=99, channels=c, dtype=dt, std=3e5)
                    parts.append(p.tobytes())
        sys.stdout.buffer.write(b"|".join(parts))
        """
    )
    runs = {}
    for isa in ("", "baseline"):
        env = {**os.environ, "PYINSPECT_TILE_ISA": isa}
        done = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, check=True
        )
        name, _, data = done.stdout.partition(b"|")
        runs[name.decode()] = data
    assert "baseline" in runs
    if len(runs) == 1:
        pytest.skip("this CPU has no AVX2+F16C, so there is only the baseline path")
    first, second = runs.values()
    assert first == second


def test_tile_into_writes_into_the_given_memory() -> None:
    frame = RNG.integers(0, 256, (512, 512), dtype=np.uint8)
    boxes = patch_grid(512, 512)
    big = np.zeros((11, 3, 224, 224), np.float32)
    window = big[1:10]  # a C-contiguous view inside a larger buffer
    address = window.__array_interface__["data"][0]
    tile_into(frame, window, boxes, 0.5, 0.25)
    assert window.__array_interface__["data"][0] == address
    assert_bits_equal(big[1:10], reference(frame, boxes, 3, (0.5,) * 3, (0.25,) * 3))
    assert not big[0].any() and not big[10].any()  # neighbours untouched


def test_frame_is_read_in_place_not_copied() -> None:
    """A 2.5 GB virtual frame (zero strides) would not survive a copy."""
    row = (np.arange(50_000) % 251).astype(np.uint8)
    frame = np.broadcast_to(row[None, :], (50_000, 50_000))
    boxes = np.array([[49_000, 49_500, 224, 224], [0, 0, 224, 224]], dtype=np.int32)
    out = np.empty((2, 1, 224, 224), np.float32)
    tile_into(frame, out, boxes, 0.0, 1.0)
    assert out[0, 0, 5, 0] == np.float32(49_000 % 251) * np.float32(1 / 255)
    assert_bits_equal(out, reference(frame, boxes, 1, (0.0,), (1.0,)))


def test_buffer_protocol_frames_are_accepted() -> None:
    arr = RNG.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    patches, boxes = tile(memoryview(arr), patch=20, channels=3)  # type: ignore[arg-type]
    assert_bits_equal(patches, reference(arr, boxes, 3, (0.0,) * 3, (1.0,) * 3))


def test_empty_inputs() -> None:
    frame = np.zeros((0, 0), np.uint8)
    none = np.zeros((0, 4), np.int32)
    tile_into(frame, np.empty((0, 3, 224, 224), np.float32), none, 0.0, 1.0)  # nothing to do
    _core.tile_into(frame, np.empty((0, 1, 5, 5), np.float16), none, [0.0], [1.0])
    with pytest.raises(InputError, match=r"frame of 0x0 \(HxW\) is smaller than the 224x224 patch"):
        tile(frame)
    with pytest.raises(InputError, match="lies outside the frame of 0x7"):
        tile_into(
            np.zeros((0, 7, 3), np.uint8),
            np.empty((1, 3, 1, 1), np.float32),
            np.array([[0, 0, 1, 1]], np.int32),
            0.0,
            1.0,
        )


def test_signed_zero_mean_is_not_confused_by_caching() -> None:
    """(0.0,) == (-0.0,) in Python, but the zero's sign reaches the output."""
    frame, boxes = np.zeros((1, 1), np.uint8), np.array([[0, 0, 1, 1]], np.int32)
    out = np.empty((1, 1, 1, 1), np.float32)
    tile_into(frame, out, boxes, (0.0,), (-1.0,))
    assert not np.signbit(out).any()
    tile_into(frame, out, boxes, (-0.0,), (-1.0,))
    assert np.signbit(out).all()


def test_one_pixel_frame_and_patch() -> None:
    frame = np.array([[[10, 20, 30]]], np.uint8)
    patches, boxes = tile(frame, patch=1, channels=3)
    assert boxes.tolist() == [[0, 0, 1, 1]]
    np.testing.assert_array_equal(
        patches[0, :, 0, 0], np.array([30, 20, 10], np.float32) * np.float32(1 / 255)
    )


# --- errors: the wrapper names the problem; the core never crashes -------------------------------

FRAME = np.zeros((512, 512, 3), np.uint8)
BOXES = patch_grid(512, 512)
OUT = np.empty((9, 3, 224, 224), np.float32)


def readonly(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a.flags.writeable = False
    return a


BAD_TILE_INTO = [
    # (frame, out, boxes, mean, std, error, wrapper message, core message)
    (
        FRAME.astype(np.float32),
        OUT,
        BOXES,
        0.0,
        1.0,
        InputError,
        "frame must be uint8, got float32",
        r"frame must be uint8 \(or uint16 gray\), got float32",
    ),
    (
        FRAME.view(np.int8),
        OUT,
        BOXES,
        0.0,
        1.0,
        InputError,
        "frame must be uint8, got int8",
        r"frame must be uint8 \(or uint16 gray\), got int8",
    ),
    (
        np.zeros(512, np.uint8),
        OUT,
        BOXES,
        0.0,
        1.0,
        InputError,
        r"frame must be 2-D \(H, W\) or 3-D \(H, W, C\), got 1-D",
        "got 1-D with shape \\(512,\\)",
    ),
    (np.zeros((1, 512, 512, 3), np.uint8), OUT, BOXES, 0.0, 1.0, InputError, "got 4-D", "got 4-D"),
    (
        np.zeros((512, 512, 2), np.uint8),
        OUT,
        BOXES,
        0.0,
        1.0,
        InputError,
        r"1 \(gray\), 3 \(BGR\) or 4 \(BGRA\) channels, got 2",
        "channels, got 2",
    ),
    (
        np.zeros((512, 512, 5), np.uint8),
        OUT,
        BOXES,
        0.0,
        1.0,
        InputError,
        "channels, got 5",
        "channels, got 5",
    ),
    (
        FRAME,
        np.empty((9, 3, 200, 200), np.float32),
        BOXES,
        0.0,
        1.0,
        InputError,
        r"out must have shape \(9, 1 or 3, 224, 224\) \(N, C_out, P, P\), got \(9, 3, 200, 200\)",
        r"box 0 \(x=0, y=0, w=224, h=224\) is not 200x200",
    ),
    (
        FRAME,
        np.empty((8, 3, 224, 224), np.float32),
        BOXES,
        0.0,
        1.0,
        InputError,
        r"got \(8, 3, 224, 224\)",
        "out has 8 patches .* but there are 9 boxes",
    ),
    (
        FRAME,
        np.empty((9, 2, 224, 224), np.float32),
        BOXES,
        0.0,
        1.0,
        InputError,
        r"got \(9, 2, 224, 224\)",
        "out must have 1 or 3 channels",
    ),
    (
        FRAME,
        np.empty((9, 3, 224), np.float32),
        BOXES,
        0.0,
        1.0,
        InputError,
        r"got \(9, 3, 224\)",
        r"out must have shape \(N, C_out, P, P\), got \(9, 3, 224\)",
    ),
    (
        FRAME,
        OUT.astype(np.float64),
        BOXES,
        0.0,
        1.0,
        InputError,
        "out must be float32 or float16, got float64",
        "out must be float32 or float16, got float64",
    ),
    (
        FRAME,
        readonly(OUT),
        BOXES,
        0.0,
        1.0,
        InputError,
        "out is not writable",
        "out is not writable",
    ),
    *[  # a strided view and a transposed one
        (
            FRAME,
            out,
            BOXES,
            0.0,
            1.0,
            InputError,
            "out is not C-contiguous",
            "out is not C-contiguous",
        )
        for out in (
            np.empty((9, 3, 224, 448), np.float32)[..., ::2],
            np.empty((224, 224, 3, 9), np.float32).T,
        )
    ],
    (
        FRAME,
        OUT,
        BOXES,
        (0.0, 0.0),
        1.0,
        InputError,
        "mean needs 3 values .*got 2",
        "mean and std need 3 values .*got 2 and 3",
    ),
    (
        FRAME,
        OUT,
        BOXES,
        0.0,
        (1.0, 0.0, 1.0),
        InputError,
        r"std must be non-zero, got \(1.0, 0.0, 1.0\)",
        "std non-zero; channel 1",
    ),
    (
        FRAME,
        OUT,
        BOXES,
        0.0,
        (1.0, 1e-42, 1.0),
        InputError,
        r"std of channel 1 is too small \(1e-42\): 1 / \(255 std\) or mean / std overflows float32",
        "std of channel 1 is too small",
    ),
    (
        FRAME,
        OUT,
        BOXES,
        (0.0, float("nan"), 0.0),
        1.0,
        InputError,
        "mean must be finite",
        "must be finite",
    ),
    (
        FRAME,
        OUT[:1],
        np.array([[300, 0, 224, 224]], np.int32),
        0.0,
        1.0,
        InputError,
        r"box 0 \(x=300, y=0, w=224, h=224\) lies outside the frame of 512x512 \(HxW\)",
        "lies outside",
    ),
    (
        FRAME,
        OUT[:1],
        np.array([[-1, 0, 224, 224]], np.int32),
        0.0,
        1.0,
        InputError,
        r"box 0 \(x=-1, y=0, w=224, h=224\) lies outside",
        "lies outside",
    ),
    (
        FRAME,
        OUT[:2],
        np.array([[0, 0, 224, 224], [0, 0, 224, 100]], np.int32),
        0.0,
        1.0,
        InputError,
        r"box 1 \(x=0, y=0, w=224, h=100\) is not 224x224",
        "is not 224x224",
    ),
    (
        FRAME,
        OUT,
        np.ascontiguousarray(BOXES[:, :3]),
        0.0,
        1.0,
        InputError,
        r"boxes must have shape \(N, 4\) of \(x, y, w, h\), got \(9, 3\)",
        r"boxes must have shape \(N, 4\), got \(9, 3\)",
    ),
]


@pytest.mark.parametrize(
    ("frame", "out", "boxes", "mean", "std", "error", "match", "core"), BAD_TILE_INTO
)
def test_bad_tile_into_arguments_are_named(
    frame: np.ndarray,
    out: np.ndarray,
    boxes: np.ndarray,
    mean: object,
    std: object,
    error: type[Exception],
    match: str,
    core: str,
) -> None:
    with pytest.raises(error, match=match):
        tile_into(frame, out, boxes, mean, std)  # type: ignore[arg-type]
    m = [mean] * out.shape[1] if isinstance(mean, float) and out.ndim > 1 else mean
    s = [std] * out.shape[1] if isinstance(std, float) and out.ndim > 1 else std
    with pytest.raises(ValueError, match=core):  # the core alone also refuses, and never crashes
        _core.tile_into(frame, out, boxes, m, s, 1)  # type: ignore[arg-type]


def test_bad_argument_types() -> None:
    with pytest.raises(InputTypeError, match=r"frame must be a NumPy array .*got list"):
        tile_into([[1, 2], [3, 4]], OUT, BOXES, 0.0, 1.0)  # type: ignore[arg-type]
    with pytest.raises(InputTypeError, match="out must be a NumPy array, got memoryview"):
        tile_into(FRAME, memoryview(OUT), BOXES, 0.0, 1.0)  # type: ignore[arg-type]
    with pytest.raises(InputTypeError, match="threads must be an int, got str"):
        tile_into(FRAME, OUT, BOXES, 0.0, 1.0, threads="2")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="threads must be >= 0, got -1"):
        tile_into(FRAME, OUT, BOXES, 0.0, 1.0, threads=-1)
    with pytest.raises(ValueError, match="threads must be >= 0"):
        _core.tile_into(FRAME, OUT, BOXES, [0.0] * 3, [1.0] * 3, -1)
    with pytest.raises(TypeError, match="incompatible function arguments"):
        _core.tile_into(
            FRAME, OUT, BOXES.astype(np.int64), [0.0] * 3, [1.0] * 3, 1
        )  # no silent copy


def test_tile_argument_errors() -> None:
    with pytest.raises(InputError, match="channels must be 1 or 3, got 2"):
        tile(FRAME, channels=2)
    with pytest.raises(InputError, match="dtype must be float32 or float16, got float64"):
        tile(FRAME, dtype=np.float64)
    with pytest.raises(InputTypeError, match="dtype must be float32 or float16, got 'banana'"):
        tile(FRAME, dtype="banana")
    with pytest.raises(InputError, match=r"frame of 100x600 \(HxW\) is smaller than the 224x224"):
        tile(np.zeros((100, 600), np.uint8))
    with pytest.raises(InputError, match=r"std needs 1 values .*got 3"):
        tile(FRAME, channels=1, std=(1.0, 1.0, 1.0))


def test_float_to_half_matches_numpy() -> None:
    """Every float16 value, the midpoints between neighbours (ties) and one ulp either side."""
    halves = np.arange(0x7C01, dtype=np.uint16).view(np.float16).astype(np.float32)  # 0 .. inf
    nxt = np.nextafter(halves[:-1].astype(np.float64), np.inf).astype(np.float32)
    mids = ((halves[:-1].astype(np.float64) + halves[1:].astype(np.float64)) / 2).astype(np.float32)
    probes = np.concatenate(
        [
            halves,
            mids,
            np.nextafter(mids, np.float32(np.inf)),
            np.nextafter(mids, np.float32(0)),
            nxt,
            np.array(
                [65519.99, 65520, 65536, 1e10, 3e-8, 2.9802322e-08, 1e-40, np.nan, np.inf],
                np.float32,
            ),
            RNG.integers(0, 2**32, 20_000, dtype=np.uint64).astype(np.uint32).view(np.float32),
        ]
    )
    probes = np.concatenate([probes, -probes])
    probes = probes[~np.isnan(probes)]
    got = np.array([_core.float_to_half(float(v)) for v in probes], np.uint16)
    with np.errstate(over="ignore"):
        want = probes.astype(np.float16).view(np.uint16)
    bad = got != want
    assert not bad.any(), f"{probes[bad][:5]} -> {got[bad][:5]} vs {want[bad][:5]}"
    assert np.isnan(np.uint16(_core.float_to_half(float("nan"))).view(np.float16))
