"""Kernel levels of the direct student runner (cpp/student_kernels_avx2.cpp, _avx512.cpp): every
level is compiled in and picked from the CPU's features; the AVX-512F level gives the AVX2
level's bits on every kernel it replaces (conv1 over dup4 rows, 4-to-8-channel convs, blocks of
16 output channels, odd ends), shared and patch by patch. Tests of a level this CPU lacks skip,
saying so."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from studentzoo import cpu_flags, frames, student_onnx

from pyinspect.backends.base import usable_cpus
from pyinspect.errors import BackendUnavailableError, InputError
from pyinspect.runners.student import ISAS, StudentRunner, kernel_isas, require_runner
from pyinspect.spec import ModelSpec
from pyinspect.tiling import patch_grid

try:
    require_runner()
    NO_RUNNER = ""
except BackendUnavailableError as exc:
    NO_RUNNER = str(exc)

pytestmark = pytest.mark.skipif(bool(NO_RUNNER), reason=f"no direct student runner: {NO_RUNNER}")


HAS_512 = "avx512f" in kernel_isas()
needs_512 = pytest.mark.skipif(
    not HAS_512, reason="this CPU has no AVX-512F: the avx512f kernel level cannot run here"
)


def test_levels_follow_the_cpu() -> None:
    levels = kernel_isas()
    assert levels[0] == "avx2" and set(levels) <= set(ISAS)
    flags = cpu_flags()
    if flags:  # Linux: the kernel's view of the CPU
        assert ("avx512f" in levels) == ("avx512f" in flags)


def test_auto_takes_the_highest_level(tmp_path: Path) -> None:
    path = tmp_path / "s.onnx"
    student_onnx(path, hidden=16)
    with StudentRunner(path, verify=False) as auto, StudentRunner(path, isa="avx2") as low:
        assert auto.isa == kernel_isas()[-1]
        assert low.isa == "avx2"
        assert "isa='avx2'" in repr(low)


def test_a_level_that_is_not_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.onnx"
    student_onnx(path, hidden=16)
    with pytest.raises(InputError, match=r"isa must be one of \['auto', 'avx2', 'avx512f'\]"):
        StudentRunner(path, isa="sse2")


@pytest.mark.skipif(HAS_512, reason="this CPU has AVX-512F: nothing to refuse")
def test_a_level_this_cpu_lacks_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.onnx"
    student_onnx(path, hidden=16)
    with pytest.raises(BackendUnavailableError, match="avx512f kernels need a CPU with AVX512F"):
        StudentRunner(path, isa="avx512f")


# widths that reach every AVX-512 kernel: conv1 dup4 (C1 = 4), conv1 of 16 channels over plain
# rows (a block of 16 with one input channel), 4 -> 8 (conv2), 8 -> 16 and 16 -> 16 blocks,
# 32-wide conv5 (blocks of 16 over an odd 7-pixel row), and layers the AVX2 level keeps
# (3 -> 5 -> 9 ...: run-time channel counts, blocks of 4 and 8).
FAMILY = [
    ((4, 8, 16, 4, 4), True),
    ((4, 8, 16, 32, 32), True),
    ((16, 16, 16, 16, 16), True),
    ((8, 16, 32, 64, 32), False),
    ((3, 5, 9, 7, 6), False),
    ((4, 8, 16, 8, 8), True),
]


@needs_512
@pytest.mark.parametrize(("widths", "folded"), FAMILY)
def test_avx512_gives_the_avx2_bits(tmp_path: Path, widths: tuple[int, ...], folded: bool) -> None:
    path = tmp_path / "s.onnx"
    student_onnx(path, widths=widths, folded=folded, hidden=32, seed=sum(widths))
    with (
        StudentRunner(path, isa="avx2", threads=2) as low,
        StudentRunner(path, isa="avx512f", threads=2) as high,
    ):
        assert (low.isa, high.isa) == ("avx2", "avx512f")
        # 512 and 480x928: shared; 600: patch by patch; 224: one patch
        for shape in ((512, 512), (600, 600), (224, 224), (480, 928)):
            boxes = patch_grid(*shape)
            for frame in frames(shape, n=2):
                a = low.run(frame, boxes, None)
                want = low.logits()
                b = high.run(frame, boxes, None)
                got = high.logits()
                assert np.array_equal(got, want), (shape, np.abs(got - want).max())
                assert a.label == b.label and np.array_equal(a.patch_class, b.patch_class)
        assert high.last_stages["shared"] is True  # the last frame, 480x928: shared


@needs_512
@pytest.mark.skipif(usable_cpus() < 2, reason="one CPU: no second thread count to compare")
def test_avx512_thread_counts_agree(tmp_path: Path) -> None:
    path = tmp_path / "s.onnx"
    student_onnx(path, hidden=32, seed=5)
    frame = frames((512, 512), n=1)[0]
    boxes = patch_grid(512, 512)
    out = []
    for threads in (1, 2):
        with StudentRunner(path, isa="avx512f", threads=threads, verify=False) as r:
            r.run(frame, boxes, None)
            out.append(r.logits())
    assert np.array_equal(out[0], out[1])


@needs_512
def test_avx512_reads_uint16_frames_like_avx2(tmp_path: Path) -> None:
    path = tmp_path / "s.onnx"
    doc = student_onnx(path, hidden=32, seed=6).to_dict()
    doc["input"]["bit_depth"] = 12
    ModelSpec.from_dict(doc, source=str(path)).save_for_model(path)
    rng = np.random.default_rng(7)
    frame = rng.integers(0, 4096, (512, 600), dtype=np.uint16)[:, ::-1]  # strided: not contiguous
    boxes = patch_grid(*frame.shape)
    logits = []
    for isa in ("avx2", "avx512f"):
        with StudentRunner(path, isa=isa) as r:  # verified against ONNX Runtime at load
            r.run(frame, boxes, None)
            logits.append(r.logits())
    assert np.array_equal(logits[0], logits[1])
