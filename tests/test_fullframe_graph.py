"""The whole-frame ONNX graph of a student (pyinspect/export/fullframe.py): conv1-4 shared over
the frame, rings per patch, conv5 + FC per patch. Its logits must be the per-patch model's on
the frames it is built for (ONNX Runtime; OpenVINO where installed), and grids that cannot share
exactly are refused by name."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from modelzoo import write_tiny
from studentzoo import student_onnx

from pyinspect.errors import InputError
from pyinspect.export.fullframe import FRAME_INPUT, frame_grid, fullframe_graph
from pyinspect.runners.student import VERIFY_TOLERANCE, NotAStudentError
from pyinspect.spec import GridSpec, ModelSpec
from pyinspect.tiling import tile_into

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "student.onnx"


def per_patch_logits(path: Path, spec: ModelSpec, frame: np.ndarray) -> np.ndarray:
    """The per-patch model on the tiler's patches of ``frame`` (what every backend runs)."""
    boxes = frame_grid(spec, *frame.shape).boxes
    buf = np.empty((len(boxes), spec.input.channels, 224, 224), np.float32)
    norm = spec.normalization
    tile_into(frame, buf, boxes, norm.mean, norm.std, bit_depth=spec.input.bit_depth)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {spec.input.name: buf})[0]


def ort_logits(model: onnx.ModelProto, frame: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {FRAME_INPUT: frame})[0]


def textured(shape: tuple[int, int], seed: int, top: int = 255) -> np.ndarray:
    """A frame with structure at every scale (so a wrong ring shows in the logits)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    base = 0.5 + 0.3 * np.sin(xx / 7.0) * np.cos(yy / 11.0) + rng.normal(0, 0.15, shape)
    dtype = np.uint8 if top == 255 else np.uint16
    return np.clip(base * top, 0, top).astype(dtype)


# (widths, classes, folded, frame shape, fixed grid): the shipped shape, a 3-channel student of
# odd widths and classes on a 3x5 grid, the widest layers on one patch, a 2x2 grid that does not
# overlap, a 1x3 strip.
CASES = [
    ((4, 8, 16, 4, 4), 12, True, (512, 512), None),
    ((3, 5, 9, 7, 6), 7, False, (480, 928), None),
    ((8, 16, 32, 64, 32), 12, True, (224, 224), None),
    ((4, 8, 16, 8, 8), 10, True, (448, 448), (2, 2)),
    ((4, 8, 16, 4, 4), 12, False, (224, 480), None),
]


@pytest.mark.parametrize(("widths", "classes", "folded", "shape", "fixed"), CASES)
def test_logits_equal_the_per_patch_model(
    tmp_path: Path,
    widths: tuple[int, ...],
    classes: int,
    folded: bool,
    shape: tuple[int, int],
    fixed: tuple[int, int] | None,
) -> None:
    path = tmp_path / "student.onnx"
    grid = None if fixed is None else GridSpec(policy="fixed", rows=fixed[0], cols=fixed[1])
    spec = student_onnx(path, widths=widths, classes=classes, folded=folded, hidden=64, grid=grid)
    model = fullframe_graph(path, height=shape[0], width=shape[1])
    g = frame_grid(spec, *shape)
    for seed in range(2):
        frame = textured(shape, seed)
        want = per_patch_logits(path, spec, frame)
        got = ort_logits(model, frame)
        assert got.shape == (g.patches, classes)
        assert np.abs(got - want).max() <= VERIFY_TOLERANCE, np.abs(got - want).max()


@pytest.mark.skipif(not SHIPPED.is_file(), reason="models/student.onnx is not checked out")
def test_shipped_student_on_the_512_frame() -> None:
    spec = ModelSpec.for_model(SHIPPED)
    model = fullframe_graph(SHIPPED)  # 512 x 512, the 3x3 grid
    frame = textured((512, 512), 3)
    want = per_patch_logits(SHIPPED, spec, frame)
    assert np.abs(ort_logits(model, frame) - want).max() <= VERIFY_TOLERANCE
    assert len(model.graph.node) < 250  # gathers per level, not per patch


def test_a_pixel_outside_a_patch_never_reaches_its_logits(tmp_path: Path) -> None:
    """Row 224 lies just below the top row of patches (rows 0-223) and inside the middle row
    (144-367). The shared maps' last rows under the top patches read it; only a recomputed ring
    keeps it out of their logits."""
    path = tmp_path / "student.onnx"
    spec = student_onnx(path, hidden=64, seed=2)
    model = fullframe_graph(path)
    frame = textured((512, 512), 5)
    edited = frame.copy()
    edited[224, :] = 255 - edited[224, :]
    before, after = ort_logits(model, frame), ort_logits(model, edited)
    assert np.abs(after[:3] - before[:3]).max() <= 1e-6  # the top row of patches: unchanged
    assert np.abs(after[3:6] - before[3:6]).max(axis=1).min() > 1e-4  # the middle row: changed
    assert np.abs(after - per_patch_logits(path, spec, edited)).max() <= VERIFY_TOLERANCE


def test_uint16_frames_of_a_deep_model(tmp_path: Path) -> None:
    path = tmp_path / "student.onnx"
    spec = student_onnx(path, hidden=64, seed=4)
    doc = spec.to_dict()
    doc["input"]["bit_depth"] = 12
    spec = ModelSpec.from_dict(doc, source=str(path))
    spec.save_for_model(path)
    model = fullframe_graph(path)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT16
    frame = textured((512, 512), 6, top=4095)
    want = per_patch_logits(path, spec, frame)
    assert np.abs(ort_logits(model, frame) - want).max() <= VERIFY_TOLERANCE


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="openvino not installed")
def test_openvino_runs_the_graph_in_f32(tmp_path: Path) -> None:
    import openvino as ov

    path = tmp_path / "student.onnx"
    spec = student_onnx(path, hidden=64, seed=8, folded=False)
    model = fullframe_graph(path)
    onnx.save(model, tmp_path / "full.onnx")
    core = ov.Core()
    compiled = core.compile_model(
        str(tmp_path / "full.onnx"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
    )
    frame = textured((512, 512), 9)
    got = compiled([frame])[compiled.output(0)]
    want = per_patch_logits(path, spec, frame)
    assert np.abs(got - want).max() <= VERIFY_TOLERANCE


def test_refuses_a_grid_whose_offsets_cannot_share(tmp_path: Path) -> None:
    path = tmp_path / "student.onnx"
    student_onnx(path, hidden=16)
    with pytest.raises(InputError, match=r"600x600 frame's patch row offset 188 is 188 px .*16"):
        fullframe_graph(path, height=600, width=600)
    with pytest.raises(InputError, match="smaller than the 224x224 patch"):
        fullframe_graph(path, height=100, width=512)
    with pytest.raises(InputError, match="height must be >= 1, got 0"):
        fullframe_graph(path, height=0, width=512)


def test_refuses_a_network_that_is_not_a_student(tmp_path: Path) -> None:
    tiny = write_tiny(tmp_path, "tiny.onnx", channels=1)
    with pytest.raises(NotAStudentError, match=r"tiny\.onnx"):
        fullframe_graph(tiny.model_path)
