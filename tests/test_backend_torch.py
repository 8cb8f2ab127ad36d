"""PyTorch backend: backend conformance against ONNX Runtime on the CPU (same model weights as an
ONNX graph and as a ``torch.export`` program: same logits within 1e-4, same verdicts), file and
option handling, and CUDA tests (FP16, pinned staging, CUDA graphs) marked ``gpu``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from modelzoo import TinyBundle, TinyWeights, reference_logits, write_tiny

from pyinspect.backends.base import pick_backend
from pyinspect.backends.onnxruntime import OnnxRuntimeBackend
from pyinspect.errors import BackendUnavailableError, InputError, ModelFileError

torch = pytest.importorskip("torch", reason="torch not installed (pip install pyinspect[torch])")

from pyinspect.backends.torch import (  # noqa: E402 (after the importorskip)
    TorchBackend,
    program_path,
    resolve_device,
    resolve_precision,
)

STRIDE = 4  # modelzoo's tiny network: Conv3x3/4 -> ReLU -> GAP -> Linear


class Tiny(torch.nn.Module):
    """modelzoo's tiny ONNX network, in PyTorch, with the same weights."""

    def __init__(self, w: TinyWeights) -> None:
        super().__init__()
        f, c = w.conv_w.shape[:2]
        self.conv = torch.nn.Conv2d(c, f, 3, stride=STRIDE)
        self.fc = torch.nn.Linear(f, w.fc_w.shape[0])
        with torch.no_grad():
            self.conv.weight.copy_(torch.from_numpy(w.conv_w))
            self.conv.bias.copy_(torch.from_numpy(w.conv_b))
            self.fc.weight.copy_(torch.from_numpy(w.fc_w))
            self.fc.bias.copy_(torch.from_numpy(w.fc_b))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x)).mean(dim=(2, 3))
        return self.fc(h)


def export_pt2(bundle: TinyBundle) -> Path:
    """Write ``<model>.pt2`` (dynamic batch) and its sidecar beside the bundle's ONNX model."""
    model = Tiny(bundle.weights).eval()
    p, c = bundle.spec.patch, bundle.spec.input.channels
    example = torch.zeros(2, c, p, p)
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(model, (example,), dynamic_shapes={"x": {0: batch}})
    path = bundle.model_path.with_suffix(".pt2")
    torch.export.save(program, str(path))
    bundle.spec.save_for_model(path)
    return path


@pytest.fixture(scope="session")
def pair(tiny: TinyBundle) -> tuple[TinyBundle, Path]:
    """The session's tiny ONNX model and the same network exported as model.pt2."""
    return tiny, export_pt2(tiny)


# ---- conformance with ONNX Runtime (CPU, FP32) -------------------------------------------------
@pytest.mark.parametrize("batch", [1, 9, 20])
def test_logits_match_onnxruntime(pair: tuple[TinyBundle, Path], batch: int) -> None:
    bundle, pt2 = pair
    x = np.random.default_rng(batch).normal(size=(batch, 3, 224, 224)).astype(np.float32)
    ort = OnnxRuntimeBackend(bundle.model_path, bundle.spec)
    ort.input_buffer(batch)[:] = x
    want = ort.infer(batch).copy()
    with TorchBackend(pt2, bundle.spec, device="cpu") as backend:
        assert (backend.device, backend.precision) == ("cpu", "fp32")
        backend.input_buffer(batch)[:] = x
        got = backend.infer(batch)
    assert got.shape == (batch, 12) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got, reference_logits(x, bundle.weights), rtol=1e-4, atol=1e-4)


def test_verdicts_match_onnxruntime(
    pair: tuple[TinyBundle, Path], frames: list[np.ndarray]
) -> None:
    from pyinspect import Inspector

    bundle, pt2 = pair
    with Inspector(bundle.model_path) as ort, Inspector(pt2, device="cpu") as pt:
        assert (ort.backend_name, pt.backend_name) == ("onnxruntime", "torch")
        for i, frame in enumerate(frames):
            a, b = ort.run(frame), pt.run(frame)
            assert (a.texture, a.defective) == (b.texture, b.defective), f"frame {i}"
            np.testing.assert_array_equal(a.patch_class, b.patch_class)
            np.testing.assert_allclose(a.patch_score, b.patch_score, atol=1e-4)
            np.testing.assert_allclose(a.patch_defect_prob, b.patch_defect_prob, atol=1e-4)
        both = ort.run_batch(frames), pt.run_batch(frames)
        assert [r.defective for r in both[0]] == [r.defective for r in both[1]]


def test_input_buffer_is_what_infer_reads(pair: tuple[TinyBundle, Path]) -> None:
    bundle, pt2 = pair
    with TorchBackend(pt2, bundle.spec, device="cpu", max_batch=8) as backend:
        buf = backend.input_buffer(3)
        assert buf.flags.c_contiguous and buf.flags.writeable and buf.dtype == np.float32
        buf[:] = 0.5
        first = backend.infer(3).copy()
        backend.input_buffer(3)[1] = -1.0  # in place: only row 1 changes
        second = backend.infer(3)
        np.testing.assert_array_equal(second[[0, 2]], first[[0, 2]])
        assert not np.allclose(second[1], first[1])
        spec = backend.input_spec
        assert (spec.name, spec.shape, spec.dtype) == ("input", (-1, 3, 224, 224), np.float32)


def test_onnx_path_runs_sibling_program(pair: tuple[TinyBundle, Path]) -> None:
    bundle, pt2 = pair
    assert program_path(bundle.model_path) == pt2
    with TorchBackend(bundle.model_path, bundle.spec, device="cpu") as backend:
        assert backend.program == pt2


# ---- files and options ---------------------------------------------------------------------------
def test_missing_empty_and_bad_programs(tmp_path: Path) -> None:
    bundle = write_tiny(tmp_path, "m.onnx")
    with pytest.raises(ModelFileError, match=r"m.pt2: not found; the torch backend runs the"):
        TorchBackend(bundle.model_path, bundle.spec)
    pt2 = tmp_path / "m.pt2"
    pt2.write_bytes(b"")
    with pytest.raises(ModelFileError, match=r"exported program is empty"):
        TorchBackend(pt2, bundle.spec)
    pt2.write_bytes(b"not a zip archive")
    with pytest.raises(ModelFileError, match=r"m.pt2: not a loadable torch.export program"):
        TorchBackend(pt2, bundle.spec, device="cpu")


def test_resolve_device() -> None:
    assert resolve_device("auto", True) == "cuda" and resolve_device("auto", False) == "cpu"
    assert resolve_device("cuda:1", True) == "cuda:1" and resolve_device("cpu", True) == "cpu"
    with pytest.raises(BackendUnavailableError, match=r"device='cuda' but PyTorch sees no CUDA"):
        resolve_device("cuda", False)
    with pytest.raises(InputError, match=r"got device='tpu'"):
        resolve_device("tpu", True)


def test_resolve_precision() -> None:
    assert resolve_precision(None, "cuda") == "fp16" and resolve_precision(None, "cpu") == "fp32"
    assert resolve_precision("fp32", "cuda:0") == "fp32"
    with pytest.raises(InputError, match=r"precision='fp16' needs a CUDA device"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(InputError, match=r"must be 'fp16' or 'fp32', got 'int8'"):
        resolve_precision("int8", "cuda")


def test_batch_bounds_and_close(pair: tuple[TinyBundle, Path]) -> None:
    bundle, pt2 = pair
    backend = TorchBackend(pt2, bundle.spec, device="cpu", max_batch=4)
    with pytest.raises(InputError, match=r"batch must be in \[1, 4\] \(max_batch\), got 5"):
        backend.infer(5)
    with pytest.raises(InputError, match=r"got 0"):
        backend.input_buffer(0)
    backend.close()
    backend.close()
    from pyinspect.errors import BackendError

    with pytest.raises(BackendError, match=r"is closed"):
        backend.infer(1)
    with pytest.raises(InputError, match=r"max_batch must be an int >= 1"):
        TorchBackend(pt2, bundle.spec, max_batch=0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_cuda_requested_without_gpu_is_an_error(pair: tuple[TinyBundle, Path]) -> None:
    bundle, pt2 = pair
    with pytest.raises(BackendUnavailableError, match=r"no CUDA GPU"):
        TorchBackend(pt2, bundle.spec, device="cuda")


def test_registered_for_pt2() -> None:
    assert pick_backend("model.pt2") == "torch"
    assert pick_backend("model.onnx") == "onnxruntime"  # torch runs .onnx only when named


def test_import_does_not_import_torch() -> None:
    code = "import sys, pyinspect.backends.torch;sys.exit(1 if 'torch' in sys.modules else 0)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


# ---- CUDA ----------------------------------------------------------------------------------------
def _need_cuda() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")


@pytest.mark.gpu
def test_cuda_fp16_matches_onnxruntime(pair: tuple[TinyBundle, Path]) -> None:
    _need_cuda()
    bundle, pt2 = pair
    x = np.random.default_rng(0).normal(size=(9, 3, 224, 224)).astype(np.float32)
    ort = OnnxRuntimeBackend(bundle.model_path, bundle.spec)
    ort.input_buffer(9)[:] = x
    want = ort.infer(9).copy()
    with TorchBackend(pt2, bundle.spec, device="cuda", cuda_graph=False) as backend:
        assert backend.precision == "fp16" and backend.input_spec.dtype == np.float16
        assert backend._pinned_in.is_pinned()
        backend.input_buffer(9)[:] = x
        np.testing.assert_allclose(backend.infer(9), want, rtol=2e-2, atol=2e-2)


@pytest.mark.gpu
def test_cuda_graph_replays_new_inputs(pair: tuple[TinyBundle, Path]) -> None:
    _need_cuda()
    bundle, pt2 = pair
    rng = np.random.default_rng(1)
    with TorchBackend(pt2, bundle.spec, device="cuda", precision="fp32") as backend:
        for call in range(6):
            x = rng.normal(size=(9, 3, 224, 224)).astype(np.float32)
            backend.input_buffer(9)[:] = x
            got = backend.infer(9)
            np.testing.assert_allclose(
                got, reference_logits(x, bundle.weights), rtol=1e-3, atol=1e-3
            )
            assert (9 in backend._graphs) == (call >= 2), f"call {call}"
        x = rng.normal(size=(4, 3, 224, 224)).astype(np.float32)
        backend.input_buffer(4)[:] = x
        np.testing.assert_allclose(
            backend.infer(4), reference_logits(x, bundle.weights), rtol=1e-3, atol=1e-3
        )
