"""Direct student engine (pyinspect._core.StudentRunner): same logits and verdicts as ONNX
Runtime on the same ONNX + sidecar, on the shared (aligned 3×3 grid) and per-patch paths. The
whole family (random widths, class counts, grids) is in test_student_family.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from modelzoo import tiny_model, tiny_weights, write_tiny
from onnx import helper, numpy_helper
from studentzoo import WIDTHS, frames, student_onnx

from pyinspect import Inspector
from pyinspect.errors import InputError
from pyinspect.runners.student import NotAStudentError, StudentRunner
from pyinspect.spec import ModelSpec

pytestmark = pytest.mark.usefixtures("need_student_runner")  # tests/conftest.py


@pytest.fixture(scope="module")
def folded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("student") / "student.onnx"
    student_onnx(path)
    return path


@pytest.mark.parametrize(
    ("shape", "shared"),
    [
        ((512, 512), True),
        ((224, 224), False),
        ((230, 250), False),
        ((600, 600), False),
        ((224, 512), True),
    ],
)
def test_matches_onnxruntime(folded: Path, shape: tuple[int, int], shared: bool) -> None:
    runner = StudentRunner(folded, threads=2, verify=False)
    with Inspector(folded, backend="onnxruntime", threads=1) as ref:
        for frame in frames(shape, 2):
            want = ref.run(frame)
            got = runner.inspect(frame)
            assert runner.last_stages["shared"] is shared
            assert (got.texture, got.defective) == (want.texture, want.defective)
            np.testing.assert_array_equal(got.patch_class, want.patch_class)
            np.testing.assert_array_equal(got.boxes, want.boxes)
            np.testing.assert_allclose(got.patch_score, want.patch_score, atol=1e-5)


def test_logits_close_to_onnxruntime(folded: Path) -> None:
    import onnxruntime as ort

    from pyinspect.tiling import patch_grid

    runner = StudentRunner(folded, threads=1)  # with the load-time check against ONNX Runtime
    assert runner.verify_delta is not None and runner.verify_delta < 1e-4
    session = ort.InferenceSession(str(folded), providers=["CPUExecutionProvider"])
    frame = frames((512, 512), 1)[0]
    runner.inspect(frame)
    boxes = patch_grid(512, 512, 224)
    tiles = np.stack([frame[y : y + h, x : x + w] for x, y, w, h in boxes])[:, None]
    want = session.run(None, {"input": tiles.astype(np.float32)})[0]
    np.testing.assert_allclose(runner.logits(), want, rtol=1e-4, atol=1e-4)


def test_thread_counts_agree_exactly(folded: Path) -> None:
    frame = frames((512, 512), 1)[0]
    results = []
    for threads in (1, 2):
        runner = StudentRunner(folded, threads=threads, verify=False)
        runner.inspect(frame)
        results.append(runner.logits())
    np.testing.assert_array_equal(results[0], results[1])


def test_strided_frame_equals_contiguous(folded: Path) -> None:
    runner = StudentRunner(folded, threads=2, verify=False)
    big = frames((512, 1024), 1)[0]
    view = big[:, ::2]  # stride 2 along x: read in place, never copied
    assert not view.flags.c_contiguous
    runner.inspect(view)
    a = runner.logits()
    runner.inspect(np.ascontiguousarray(view))
    np.testing.assert_array_equal(a, runner.logits())
    flipped = big[::-1, -512:][:, ::-1]  # negative strides on both axes
    runner.inspect(flipped)
    b = runner.logits()
    runner.inspect(np.ascontiguousarray(flipped))
    np.testing.assert_array_equal(b, runner.logits())


def test_three_channel_paper_network(tmp_path: Path) -> None:
    """The unfolded network (gray replicated to RGB, channel-uniform normalisation)."""
    path = tmp_path / "rgb.onnx"
    student_onnx(path, folded=False, seed=3)
    runner = StudentRunner(path, threads=2, verify=False)
    with Inspector(path, backend="onnxruntime", threads=1) as ref:
        for frame in frames((512, 512), 2):
            want, got = ref.run(frame), runner.inspect(frame)
            np.testing.assert_array_equal(got.patch_class, want.patch_class)
            assert (got.texture, got.defective) == (want.texture, want.defective)


def test_gray_hw1_frame_and_threshold(folded: Path) -> None:
    runner = StudentRunner(folded, threads=1, verify=False)
    frame = frames((512, 512), 1)[0]
    a = runner.inspect(frame[:, :, None], threshold=0.0)
    assert a.defective and a.num_patches == 9


def test_refuses_color_frames(folded: Path) -> None:
    runner = StudentRunner(folded, threads=1, verify=False)
    with pytest.raises(InputError, match=r"reads gray frames; got 3 channels"):
        runner.inspect(np.zeros((512, 512, 3), np.uint8))
    assert not runner.accepts(np.zeros((512, 512, 3), np.uint8))
    assert runner.accepts(np.zeros((512, 512, 1), np.uint8))


def test_refuses_other_networks(tmp_path: Path) -> None:
    bundle = write_tiny(tmp_path, channels=1, patch=224, mean=[0.5], std=[0.25])
    with pytest.raises(NotAStudentError, match=r"conv1 must be 3×3, stride 1, zero padding 1"):
        StudentRunner(bundle.model_path)
    rgb = write_tiny(tmp_path / "rgb", channels=3, patch=224, mean=[0.4, 0.5, 0.6])
    with pytest.raises(NotAStudentError, match=r"same for every channel"):
        StudentRunner(rgb.model_path)
    softmax = tmp_path / "soft" / "tiny.onnx"
    softmax.parent.mkdir()
    onnx.save(tiny_model(tiny_weights(1), softmax=True), softmax)
    ModelSpec.for_dagm(channels=1, output_kind="probabilities").save_for_model(softmax)
    with pytest.raises(NotAStudentError, match=r"needs a logits output"):
        StudentRunner(softmax)


def test_layers_wider_than_the_kernels_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "wide.onnx"
    student_onnx(path, widths=(96, 8, 16, 4, 4), hidden=8)
    with pytest.raises(NotAStudentError, match=r"conv1 has 96 output channels, more than the 64"):
        StudentRunner(path)


def test_dead_channel_rows_are_skipped_exactly(tmp_path: Path) -> None:
    """A conv5 channel that ReLU always zeroes: its FC1 rows are skipped; logits unchanged."""
    path = tmp_path / "dead.onnx"
    student_onnx(path, seed=5)
    model = onnx.load(path)
    for init in model.graph.initializer:
        if init.name in ("w5", "b5"):
            arr = numpy_helper.to_array(init).copy()
            arr[0] = 0.0 if init.name == "w5" else -1.0
            init.CopyFrom(numpy_helper.from_array(arr, init.name))
    onnx.save(model, path)
    runner = StudentRunner(path, threads=2, verify=False)
    with Inspector(path, backend="onnxruntime", threads=1) as ref:
        frame = frames((512, 512), 1)[0]
        np.testing.assert_array_equal(runner.inspect(frame).patch_class, ref.run(frame).patch_class)


def _misread(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the graph reader return a wrong fc2 bias, as a reader bug would."""
    import pyinspect.runners.student as student

    real = student.read_student

    def misread(path: Path) -> student.StudentGraph:
        graph = real(path)
        graph.weights["fc2_b"] = graph.weights["fc2_b"] + 0.01
        return graph

    monkeypatch.setattr(student, "read_student", misread)


def test_load_time_check_refuses_a_wrong_runner(
    folded: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the graph were misread, the runner's logits would differ from the backend's: refused."""
    from pyinspect.errors import BackendError

    _misread(monkeypatch)
    with pytest.raises(BackendError, match=r"differ from the onnxruntime backend's by 0\.01"):
        StudentRunner(folded, threads=1)


def test_graph_forms_the_reader_accepts(tmp_path: Path) -> None:
    """A Gemm with transB=0 and a Reshape instead of a Flatten give the same weights."""
    from pyinspect.runners.student import read_student

    path = tmp_path / "s.onnx"
    student_onnx(path, seed=11)
    want = read_student(path)
    model = onnx.load(path)
    g = model.graph
    for node in g.node:
        if node.op_type == "Gemm" and node.input[1] == "fc2":
            del node.attribute[:]
    for init in g.initializer:
        if init.name == "fc2":
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).T.copy(), "fc2"))
    flat = next(n for n in g.node if n.op_type == "Flatten")
    g.initializer.append(numpy_helper.from_array(np.array([-1, 196], np.int64), "shape"))
    flat.CopyFrom(helper.make_node("Reshape", [flat.input[0], "shape"], list(flat.output)))
    onnx.save(model, path)
    got = read_student(path)
    for key, value in want.weights.items():
        np.testing.assert_array_equal(got.weights[key], value, err_msg=key)
    assert (got.in_channels, got.pad_value) == (want.in_channels, want.pad_value)


def test_reader_names_what_is_not_the_student(tmp_path: Path) -> None:
    from pyinspect.runners.student import read_student

    path = tmp_path / "s.onnx"
    student_onnx(path, seed=12)
    model = onnx.load(path)
    relu = next(n for n in model.graph.node if n.op_type == "Relu")
    relu.op_type = "Sigmoid"
    onnx.save(model, path)
    with pytest.raises(NotAStudentError, match=r"expected Relu after 'c1', got Sigmoid"):
        read_student(path)
    xml = tmp_path / "s.xml"
    xml.write_text("<net/>")
    with pytest.raises(NotAStudentError, match=r"reads ONNX files, not '\.xml'"):
        read_student(xml)


# ---- Inspector(runner=...) ----------------------------------------------------------------
@pytest.fixture(scope="module")
def marked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("marked") / "student.onnx"
    student_onnx(path, seed=7)
    return path


def test_stream_reader_keeps_its_priority_beside_the_busy_waiting_runner(marked: Path) -> None:
    """The runner's pool spins after a frame: a low-priority reader would starve (measured)."""
    from pyinspect.stream import auto_reader_nice

    with Inspector(marked, threads=2) as insp:
        gray = np.zeros((512, 512), np.uint8)
        assert insp.runner == "student"
        assert insp.inference_pool(gray) == (2, True)
        assert auto_reader_nice(insp, gray) == 0
        # a colour frame takes the backend: ONNX Runtime's pool, spinning off when it fills the CPUs
        assert insp.inference_pool(np.zeros((512, 512, 3), np.uint8)) == (2, insp.backend.spin)


def test_inspector_auto_uses_the_runner_with_the_backends_verdicts(marked: Path) -> None:
    with (
        Inspector(marked, threads=1) as fast,
        Inspector(marked, threads=1, runner="backend") as plain,
    ):
        assert (fast.runner, fast.runner_note) == ("student", "")
        assert plain.runner == "backend" and "runner='backend'" in plain.runner_note
        assert "runner='student'" in repr(fast)
        for frame in frames((512, 512), 3) + frames((600, 600), 1):
            got, want = fast.run(frame), plain.run(frame)
            assert (got.texture, got.defective, got.label) == (
                want.texture,
                want.defective,
                want.label,
            )
            np.testing.assert_array_equal(got.patch_class, want.patch_class)
            np.testing.assert_array_equal(got.boxes, want.boxes)
            np.testing.assert_allclose(got.patch_score, want.patch_score, atol=1e-5)
            assert got.timings.tile_ms == 0.0  # no tile buffer: the runner reads the frame


def test_inspector_runner_batch_and_stream_keep_order_and_colour_frames(marked: Path) -> None:
    gray = frames((512, 512), 3)
    bgr = np.ascontiguousarray(np.repeat(gray[1][:, :, None], 3, axis=2))
    batch = [gray[0], bgr, gray[2], gray[1][:, :, None]]
    with (
        Inspector(marked, threads=1) as fast,
        Inspector(marked, threads=1, runner="backend") as plain,
    ):
        want = [r.patch_class.tolist() for r in plain.run_batch(batch)]
        assert [r.patch_class.tolist() for r in fast.run_batch(batch)] == want
        assert [r.patch_class.tolist() for r in fast.stream(batch)] == want
        # the colour frame went to the backend (it tiles), the gray ones to the runner
        assert [r.timings.tile_ms > 0 for r in fast.run_batch(batch)] == [False, True, False, False]


def test_inspector_named_backend_or_other_network_keeps_the_backend(
    marked: Path, folded: Path, tmp_path: Path
) -> None:
    with Inspector(marked, backend="onnxruntime", threads=1) as named:
        assert named.runner == "backend" and "was named" in named.runner_note
    with Inspector(folded, threads=1) as unmarked:  # decided from the graph, not the sidecar
        assert unmarked.runner == "student"
    wide = tmp_path / "wide.onnx"
    student_onnx(wide, widths=(4, 8, 80, 4, 4), hidden=8)
    doc = json.loads(ModelSpec.sidecar_path(wide).read_text())
    doc.setdefault("provenance", {})["arch_kwargs"] = {"c": list(WIDTHS)}  # a sidecar that lies
    ModelSpec.sidecar_path(wide).write_text(json.dumps(doc))
    with Inspector(wide, threads=1) as insp:
        assert insp.runner == "backend" and "conv3 has 80 output channels" in insp.runner_note


def test_inspector_failed_parity_warns_when_automatic_and_raises_when_asked(
    marked: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from pyinspect.errors import BackendError

    _misread(monkeypatch)
    with caplog.at_level("WARNING", logger="pyinspect"), Inspector(marked, threads=1) as insp:
        assert insp.runner == "backend"
        assert "differ from the onnxruntime backend's by 0.01" in insp.runner_note
    assert any(
        "by 0.01" in r.getMessage() and "using the onnxruntime" in r.getMessage()
        for r in caplog.records
    )
    with pytest.raises(BackendError, match=r"student runner cannot run this model: .*by 0\.01"):
        Inspector(marked, threads=1, runner="student")


def test_inspector_runner_student_is_strict(folded: Path, tmp_path: Path) -> None:
    from pyinspect.errors import BackendError

    with Inspector(folded, threads=1, runner="student") as insp:
        assert insp.runner == "student"
    bundle = write_tiny(tmp_path, channels=1, patch=224, mean=[0.5], std=[0.25])
    with pytest.raises(BackendError, match=r"student runner cannot run this model: .*conv1"):
        Inspector(bundle.model_path, runner="student")
    with pytest.raises(InputError, match=r"runner must be one of \['auto', 'backend', 'student'"):
        Inspector(folded, runner="fastest")
    with pytest.raises(InputError, match=r"replaces the \['onnxruntime', 'openvino'\] backend"):
        Inspector(folded, backend="torch", runner="student")


def test_deprecated_engine_names_still_work(folded: Path) -> None:
    with pytest.warns(DeprecationWarning, match=r"engine=\.\.\.\) is deprecated"):
        insp = Inspector(folded, threads=1, engine="backend")
    with insp, pytest.warns(DeprecationWarning, match=r"Inspector\.engine is deprecated"):
        assert insp.engine == "backend" and insp.runner == "backend"
    with pytest.warns(DeprecationWarning, match=r"use pyinspect\.runners\.student"):
        import importlib
        import sys

        sys.modules.pop("pyinspect.fast_student", None)
        fs = importlib.import_module("pyinspect.fast_student")
    old = fs.FastStudentRunner(folded, threads=1, verify=False, threshold=0.0)
    assert old.run(frames((512, 512), 1)[0]).defective  # the old run(frame) call


def test_inspector_runner_errors_name_the_frame_and_closed_state(marked: Path) -> None:
    from pyinspect.errors import BackendError

    insp = Inspector(marked, threads=1)
    with pytest.raises(InputError, match=r"uint8"):
        insp.run(np.zeros((512, 512), np.float32))
    with pytest.raises(InputError, match=r"smaller than the 224"):
        insp.run(np.zeros((100, 512), np.uint8))
    insp.close()
    with pytest.raises(BackendError, match=r"closed"):
        insp.run(frames((512, 512), 1)[0])


def test_deferred_result_behaves_as_an_inspection_result(folded: Path) -> None:
    """The runner's result is decoded from the native record on first read: same fields as
    from_vote gives, read-only, and pickled or replaced as a plain InspectionResult."""
    import dataclasses
    import pickle

    from pyinspect.result import InspectionResult

    with (
        Inspector(folded, threads=1) as fast,
        Inspector(folded, threads=1, runner="backend") as ref,
    ):
        frame = frames((512, 512), 1)[0]
        got, want = fast.run(frame, threshold=0.2), ref.run(frame, threshold=0.2)
        assert isinstance(got, InspectionResult) and "_pending" in vars(got)
        assert got.ok and got.num_patches == 9 and "_pending" in vars(got)  # not decoded yet
        assert (got.texture, got.texture_name, got.defective, got.label) == (
            want.texture,
            want.texture_name,
            want.defective,
            want.label,
        )
        assert "_pending" not in vars(got)
        for name in ("patch_class", "defective_patches", "texture_votes"):
            np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
            assert not getattr(got, name).flags.writeable
        np.testing.assert_allclose(got.patch_defect_prob, want.patch_defect_prob, atol=1e-5)
        assert got.timings.tile_ms == 0.0 and got.timings.total_ms > 0
        with pytest.raises(dataclasses.FrozenInstanceError):
            got.texture = 1  # type: ignore[misc]
        with pytest.raises(AttributeError, match=r"no attribute 'nonsense'"):
            _ = got.nonsense  # type: ignore[attr-defined]
        fresh = fast.run(frame)
        copied = pickle.loads(pickle.dumps(fresh))
        assert type(copied) is InspectionResult
        assert copied.to_dict() == fresh.to_dict()
        changed = dataclasses.replace(fast.run(frame), label="x")
        assert changed.label == "x" and changed.texture == fresh.texture
        assert repr(fast.run(frame)).startswith(f"InspectionResult(label={fresh.label!r}")
