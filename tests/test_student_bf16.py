"""The direct student runner's bf16 precision (cpp/student_kernels_bf16.cpp): conv2–conv5 and
FC1 as AVX512-BF16 dot products of bf16 weights and bf16 activations with f32 sums, conv1 and
FC2 in f32. Checked against a numpy emulation of exactly that rounding (tight), against the f32
runner (bf16's own error), on the shipped student's verdicts, and for determinism. Tests that
run bf16 skip, saying so, on a CPU without AVX512_BF16.

Tolerances, all relative to the largest |logit| of the frames compared:
- against the emulation, 5e-3 (fixed students) and 1e-2 (random ones): the runner rounds the
  same values to bf16 as the emulation, but its f32 sums run in another order than numpy's
  float64 ones, so now and then a stored activation rounds to the neighbouring bf16 value
  (2^-8 apart), which moves the logits by about 1e-3 of their size;
- against f32, 0.05: bf16 keeps 8 significant bits, 2^-9 relative rounding per weight and per
  stored activation over five layers, about 1 % on the logits. A logit is a difference of larger
  terms, so a random student with FC1 of 1–5 units can lose ten times more: random students are
  compared with the emulation instead.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from studentzoo import cpu_flags, frames, student_onnx

from pyinspect.backends.base import usable_cpus
from pyinspect.backends.onnxruntime import OnnxRuntimeBackend
from pyinspect.errors import BackendError, BackendUnavailableError, InputError
from pyinspect.runners.student import (
    BF16_VERIFY_TOLERANCE,
    MAX_WIDTH,
    PRECISIONS,
    VERIFY_TOLERANCE,
    StudentGraph,
    StudentRunner,
    input_transform,
    kernel_precisions,
    read_student,
    require_runner,
)
from pyinspect.spec import ModelSpec
from pyinspect.tiling import patch_grid

try:
    require_runner()
    NO_RUNNER = ""
except BackendUnavailableError as exc:
    NO_RUNNER = str(exc)

pytestmark = [
    pytest.mark.skipif(bool(NO_RUNNER), reason=f"no direct student runner: {NO_RUNNER}"),
    pytest.mark.timeout(600),
]

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "models" / "student.onnx"
HAS_BF16 = "bf16" in kernel_precisions()
needs_bf16 = pytest.mark.skipif(
    not HAS_BF16,
    reason="this CPU lacks AVX512_BF16 or AVX512VL (cpuinfo flags avx512_bf16, avx512vl): the"
    " bf16 precision cannot run here",
)
EMULATION_TOL = 5e-3
EMULATION_TOL_RANDOM = 1e-2
F32_TOL = 0.05


def run_logits(runner: StudentRunner, frame: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    runner.run(frame, boxes, None)
    return runner.logits()


# ---- a numpy emulation of the bf16 precision -----------------------------------------------------


def to_bf16(a: np.ndarray) -> np.ndarray:
    """float32 -> the nearest bf16 (ties to even), as float32."""
    u = np.ascontiguousarray(a, np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16 << 16
    return u.astype(np.uint32).view(np.float32)


def conv_relu_pool(x: np.ndarray, w: np.ndarray, b: np.ndarray, pad: float) -> np.ndarray:
    """conv3x3 (constant padding ``pad``) -> ReLU -> maxpool2 in float64; x [C, H, W]."""
    _, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1)), constant_values=pad)
    out = np.zeros((w.shape[0], h, wd))
    for ky in range(3):
        for kx in range(3):
            out += np.tensordot(w[:, :, ky, kx], xp[:, ky : ky + h, kx : kx + wd], axes=(1, 0))
    out = np.maximum(out + b[:, None, None], 0)
    return out.reshape(w.shape[0], h // 2, 2, wd // 2, 2).max(axis=(2, 4))


def emulate_bf16(graph: StudentGraph, scale: float, offset: float, patch: np.ndarray) -> np.ndarray:
    """One 224×224 patch's logits as the bf16 precision defines them: conv1 exact on the tiler's
    float32 input, its output rounded to bf16; conv2–conv5 and FC1 with bf16 weights over bf16
    inputs, every conv output rounded to bf16; FC2 in f32 weights. Sums in float64."""
    wts = graph.weights
    u = patch.astype(np.float32) * np.float32(scale) + np.float32(offset)
    w1 = wts["conv1_w"].astype(np.float64).sum(axis=1, keepdims=True)  # replicated gray
    x = conv_relu_pool(u.astype(np.float64)[None], w1, wts["conv1_b"], graph.pad_value)
    x = to_bf16(x).astype(np.float64)
    for layer in range(2, 6):
        w = to_bf16(wts[f"conv{layer}_w"]).astype(np.float64)
        x = to_bf16(conv_relu_pool(x, w, wts[f"conv{layer}_b"], 0.0)).astype(np.float64)
    fc1 = to_bf16(wts["fc1_w"]).astype(np.float64)
    y = np.maximum(fc1 @ x.reshape(-1) + wts["fc1_b"], 0)
    return wts["fc2_w"].astype(np.float64) @ y + wts["fc2_b"]


def emulated_logits(
    path: Path, spec: ModelSpec, frame: np.ndarray, boxes: np.ndarray
) -> np.ndarray:
    """``emulate_bf16`` for every box of a frame."""
    graph = read_student(path)
    scale, offset = input_transform(spec)
    crops = [frame[y : y + h, x : x + w] for x, y, w, h in boxes]
    return np.array([emulate_bf16(graph, scale, offset, crop) for crop in crops])


# ---- refusals and names (every CPU) --------------------------------------------------------------


def test_precisions_follow_the_cpu() -> None:
    precisions = kernel_precisions()
    assert precisions[0] == "f32" and set(precisions) <= set(PRECISIONS)
    flags = cpu_flags()
    if flags:  # Linux: the kernel's view of the CPU
        assert ("bf16" in precisions) == ({"avx512_bf16", "avx512vl", "avx512f"} <= flags)


def test_the_default_is_f32(tmp_path: Path) -> None:
    path = tmp_path / "s.onnx"
    student_onnx(path, hidden=16)
    with StudentRunner(path, verify=False) as default, StudentRunner(path, precision="f32") as f32:
        assert (default.precision, f32.precision) == ("f32", "f32")
        assert "precision='f32'" in repr(default)
        frame = frames((512, 512), n=1)[0]
        boxes = patch_grid(512, 512)
        assert np.array_equal(run_logits(default, frame, boxes), run_logits(f32, frame, boxes))
        assert default.last_stages["precision"] == "f32"


@pytest.mark.parametrize("bad", ["fp16", "BF16", "", "auto", 16, None])
def test_a_precision_that_is_not_one_is_refused(tmp_path: Path, bad: object) -> None:
    path = tmp_path / "s.onnx"
    student_onnx(path, hidden=16)
    with pytest.raises(InputError, match=r"precision must be one of \['f32', 'bf16'\], got "):
        StudentRunner(path, precision=bad)  # type: ignore[arg-type]


@pytest.mark.skipif(HAS_BF16, reason="this CPU has AVX512_BF16: nothing to refuse")
def test_bf16_on_a_cpu_without_it_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.onnx"
    student_onnx(path, hidden=16)
    with pytest.raises(BackendUnavailableError, match="bf16 kernels need a CPU with AVX512_BF16"):
        StudentRunner(path, precision="bf16")


# ---- bf16 ----------------------------------------------------------------------------------------


@needs_bf16
def test_bf16_names_itself(tmp_path: Path) -> None:
    path = tmp_path / "s.onnx"
    student_onnx(path, hidden=16)
    with StudentRunner(path, precision="bf16") as r:  # verified against ONNX Runtime at load
        assert r.precision == "bf16" and r.isa == "avx512f"
        assert repr(r).endswith("isa='avx512f', precision='bf16')")
        assert r.last_stages == {}
        r.inspect(frames((512, 512), n=1)[0])
        assert r.last_stages["precision"] == "bf16" and r.last_stages["shared"] is True


# Every bf16 kernel: blocks of 16 (pairs: 1, 2, 4, 8 compiled in, others at run time), of 8
# (quads: 1, 2, 4 and run time), of 4 over 4-channel input and over 8k channels (octets: 1, 2,
# run time); odd channel counts (zero-padded pairs); conv1 over dup4 and plain rows.
FIXED = [
    ((4, 8, 16, 4, 4), True),  # the shipped widths
    ((4, 8, 16, 32, 32), True),
    ((16, 16, 16, 16, 16), True),
    ((3, 5, 9, 7, 6), False),
    ((1, 2, 3, 5, 7), True),
    ((5, 9, 17, 6, 3), True),
    ((8, 24, 4, 20, 2), False),
    ((2, 16, 8, 32, 16), True),
]


@needs_bf16
@pytest.mark.parametrize(("widths", "folded"), FIXED)
def test_bf16_computes_the_bf16_network(tmp_path: Path, widths: tuple, folded: bool) -> None:
    """The runner against the emulation, shared (512) and patch by patch (600)."""
    path = tmp_path / "s.onnx"
    spec = student_onnx(path, widths=widths, folded=folded, hidden=24, classes=7, seed=sum(widths))
    with StudentRunner(path, precision="bf16", threads=2, verify=False) as r:
        for shape in ((512, 512), (600, 600)):
            frame = frames(shape, n=1, seed=len(widths) + shape[0])[0]
            boxes = patch_grid(*shape)
            got = run_logits(r, frame, boxes)
            want = emulated_logits(path, spec, frame, boxes)
            scale = np.abs(want).max()
            assert np.abs(got - want).max() <= EMULATION_TOL * scale, (shape, widths)


# the ISA tests' students (every f32 kernel they reach, now in bf16) and one of each block width
VS_F32 = [
    ((4, 8, 16, 4, 4), True),
    ((4, 8, 16, 32, 32), True),
    ((16, 16, 16, 16, 16), True),
    ((8, 16, 32, 64, 32), False),
    ((3, 5, 9, 7, 6), False),
    ((4, 8, 16, 8, 8), True),
    ((64, 64, 64, 64, 64), True),
    ((5, 9, 17, 33, 63), True),
]


@needs_bf16
@pytest.mark.parametrize(("widths", "folded"), VS_F32)
def test_bf16_logits_are_close_to_f32(tmp_path: Path, widths: tuple, folded: bool) -> None:
    path = tmp_path / "s.onnx"
    student_onnx(path, widths=widths, folded=folded, hidden=32, classes=10, seed=sum(widths))
    with (
        StudentRunner(path, threads=2) as f32,
        StudentRunner(path, threads=2, precision="bf16") as b16,
    ):
        # 512 and 480x928: shared; 600: patch by patch; 224: one patch
        for shape in ((512, 512), (600, 600), (224, 224), (480, 928)):
            boxes = patch_grid(*shape)
            for frame in frames(shape, n=2):
                want = run_logits(f32, frame, boxes)
                got = run_logits(b16, frame, boxes)
                assert not np.array_equal(got, want)  # bf16 really ran
                assert np.abs(got - want).max() <= F32_TOL * np.abs(want).max(), (shape, widths)


@st.composite
def random_students(draw: st.DrawFn) -> dict:
    """Any widths up to MAX_WIDTH, class count and FC1 width; conv1 on 1 or 3 channels."""
    return {
        "widths": tuple(draw(st.lists(st.integers(1, MAX_WIDTH), min_size=5, max_size=5))),
        "folded": draw(st.booleans()),
        "classes": draw(st.integers(2, 16)),
        "hidden": draw(st.sampled_from([1, 5, 8, 13, 24])),
        "seed": draw(st.integers(0, 2**16)),
    }


@needs_bf16
@settings(
    max_examples=int(os.environ.get("PYINSPECT_BF16_EXAMPLES", "12")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(random_students())
def test_bf16_runs_the_whole_family(case: dict) -> None:
    """One 224×224 patch and the four of a 240×240 frame on a 2×2 grid (offsets 0 and 16: the
    shared path), against the emulation."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.onnx"
        spec = student_onnx(path, **case)
        with StudentRunner(path, precision="bf16", threads=2, verify=False) as r:
            for shape, rows in (((224, 224), 1), ((240, 240), 2)):
                frame = frames(shape, n=1, seed=case["seed"])[0]
                boxes = patch_grid(*shape, 224, rows, rows)
                got = run_logits(r, frame, boxes)
                assert r.last_stages["shared"] is (rows == 2)
                want = emulated_logits(path, spec, frame, boxes)
                limit = EMULATION_TOL_RANDOM * np.abs(want).max() + 1e-6
                assert np.abs(got - want).max() <= limit, (shape, case)


@needs_bf16
def test_the_shipped_student_keeps_its_verdicts_in_bf16() -> None:
    """240 synthetic DAGM frames (train.synth, version 2: 6 textures, good and defective):
    the image verdicts (texture, defective) of bf16 against f32. Measured on an AMD Zen 5: 239
    of 240 agree (one defective verdict flips, on a frame whose f32 verdict is the wrong one),
    and 2154 of 2160 patch classes."""
    from train.synth import synth_image

    with (
        StudentRunner(SHIPPED, threads=2) as f32,
        StudentRunner(SHIPPED, threads=2, precision="bf16") as b16,
    ):
        agree = patches = total = 0
        for seed in range(20):
            for texture in range(6):
                for defective in (False, True):
                    image, _ = synth_image(seed, texture, seed, defective, version=2)
                    want, got = f32.inspect(image), b16.inspect(image)
                    agree += (want.texture, want.defective) == (got.texture, got.defective)
                    patches += int((want.patch_class == got.patch_class).sum())
                    total += 1
    assert total == 240
    assert agree >= 0.99 * total, f"{agree} of {total} image verdicts agree ({patches} patches)"
    assert patches >= 0.99 * 9 * total


@needs_bf16
@pytest.mark.parametrize("widths", [(4, 8, 16, 4, 4), (5, 9, 17, 33, 64), (1, 2, 3, 5, 7)])
def test_bf16_is_deterministic(tmp_path: Path, widths: tuple) -> None:
    """Same bits twice, from a second runner, with 1 and 2 threads and on either f32 level
    for conv1 (both give conv1 the same bits)."""
    path = tmp_path / "s.onnx"
    student_onnx(path, widths=widths, classes=10, hidden=20, seed=4)
    two_threads = usable_cpus() >= 2
    for shape in ((512, 512), (600, 600)):
        frame = frames(shape, 1)[0]
        boxes = patch_grid(*shape)
        out = []
        for threads, isa in ((2, "auto"), (2, "auto"), (1, "auto"), (2, "avx2")):
            if threads == 2 and not two_threads:
                threads = 1
            with StudentRunner(path, threads=threads, isa=isa, precision="bf16", verify=False) as r:
                out.append(run_logits(r, frame, boxes))
                out.append(run_logits(r, frame, boxes))
        for logits in out[1:]:
            assert np.array_equal(logits, out[0]), shape


@needs_bf16
@pytest.mark.skipif(usable_cpus() < 2, reason="one CPU: no second thread count to compare")
def test_bf16_thread_counts_agree_exactly() -> None:
    frame = frames((512, 512), 1)[0]
    boxes = patch_grid(512, 512)
    out = []
    for threads in (1, 2):
        with StudentRunner(SHIPPED, threads=threads, precision="bf16", verify=False) as r:
            out.append(run_logits(r, frame, boxes))
    assert np.array_equal(out[0], out[1])


class Skewed:
    """A reference backend whose logits are its inner backend's times ``factor``."""

    def __init__(self, inner: OnnxRuntimeBackend, factor: float) -> None:
        self.inner, self.factor, self.name = inner, factor, "skewed"

    def input_buffer(self, n: int) -> np.ndarray:
        return self.inner.input_buffer(n)

    def infer(self, n: int) -> np.ndarray:
        return self.inner.infer(n) * np.float32(self.factor)


@needs_bf16
def test_bf16_load_check_takes_bf16_error_but_not_a_wrong_network() -> None:
    """The shipped student in bf16 is ~1 % off the fp32 backend: more than the f32 check's 1e-3,
    within BF16_VERIFY_TOLERANCE; a reference 30 % off is refused."""
    spec = ModelSpec.for_model(SHIPPED)
    ref = OnnxRuntimeBackend(SHIPPED, spec, threads=1)
    try:
        with StudentRunner(SHIPPED, precision="bf16", reference=ref) as r:
            assert r.verify_delta is not None and r.verify_delta > VERIFY_TOLERANCE
        with StudentRunner(SHIPPED, precision="f32", reference=ref) as r:
            assert r.verify_delta is not None and r.verify_delta <= VERIFY_TOLERANCE
        skewed = Skewed(ref, 1.0 + 3 * BF16_VERIFY_TOLERANCE)
        with pytest.raises(BackendError, match="bf16 logits differ from the skewed backend's"):
            StudentRunner(SHIPPED, precision="bf16", reference=skewed)  # type: ignore[arg-type]
    finally:
        ref.close()


@needs_bf16
def test_bf16_reads_uint16_frames(tmp_path: Path) -> None:
    path = tmp_path / "s.onnx"
    doc = student_onnx(path, hidden=32, seed=6).to_dict()
    doc["input"]["bit_depth"] = 12
    ModelSpec.from_dict(doc, source=str(path)).save_for_model(path)
    rng = np.random.default_rng(7)
    frame = rng.integers(0, 4096, (512, 600), dtype=np.uint16)[:, ::-1]  # strided
    boxes = patch_grid(*frame.shape)
    with StudentRunner(path) as f32, StudentRunner(path, precision="bf16") as b16:
        want = run_logits(f32, frame, boxes)
        got = run_logits(b16, frame, boxes)
    assert np.abs(got - want).max() <= F32_TOL * np.abs(want).max()
