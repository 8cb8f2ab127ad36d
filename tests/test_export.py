"""train.export: exact folding of gray->RGB + mean/std into conv1, ONNX parity, the sidecar."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the training pipeline needs the [train] extra")
pytest.importorskip("onnxruntime", reason="export parity runs the model in ONNX Runtime")

from train.export import FoldedConv, export, fold  # noqa: E402
from train.models import ModelError, build_model, save_checkpoint, to_input  # noqa: E402

WIDTHS = (3, 4, 4, 4, 4)


def _patches() -> np.ndarray:
    p = np.random.default_rng(1).integers(0, 256, (4, 224, 224), dtype=np.uint8)
    p[0], p[1] = 0, 255  # constant patches: any border error shows up in full
    p[2, :, :5] = 255  # a bright left border
    return p


@pytest.mark.parametrize(
    ("mean", "std"),
    [
        ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),  # uniform: pad with the pixel value 127.5
        ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ],  # per channel: bias map
)
def test_folded_conv_equals_normalised_rgb_conv(mean: Any, std: Any) -> None:
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 5, 3, padding=1)
    p = _patches()
    with torch.no_grad():
        ref = conv(to_input(p, mean, std))
        got = FoldedConv(conv, mean, std)(torch.as_tensor(p)[:, None].float())
    assert got.shape == ref.shape
    assert float((got - ref).abs().max()) <= 1e-4


def test_fold_whole_student_is_equivalent() -> None:
    torch.manual_seed(0)
    net = build_model("student", c=WIDTHS, fc=16).eval()
    p = _patches()
    with torch.no_grad():
        ref = net(to_input(p, (0.5,) * 3, (0.5,) * 3))
        got = fold(net, "student")(torch.as_tensor(p)[:, None].float())
    assert float((got - ref).abs().max()) <= 1e-4


def test_fold_refuses_what_it_cannot_fold_exactly() -> None:
    with pytest.raises(ModelError, match="folding supports the student and vgg16"):
        fold(build_model("student", c=WIDTHS, fc=16), "lite0")
    with pytest.raises(ModelError, match="symmetric zero padding"):
        FoldedConv(torch.nn.Conv2d(3, 2, 3, padding=(1, 0)), (0.5,) * 3, (0.5,) * 3)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    net = build_model("student", c=WIDTHS, fc=16)
    ck = d / "s.pt"
    save_checkpoint(
        ck,
        net,
        "student",
        {"c": WIDTHS, "fc": 16},
        None,
        {"accuracy": 0.875, "seed": 7, "preset": "test"},
    )
    return {
        "folded": export(ck, d / "s.onnx", folded=True),
        "rgb": export(ck, d / "s_rgb.onnx"),
        "ckpt": ck,
        "dir": d,
    }


def test_export_parity_and_sidecar_of_the_folded_variant(exported: dict[str, Any]) -> None:
    from pyinspect.spec import ModelSpec

    info = exported["folded"]
    assert info["max_abs_logit_diff"] < 1e-4
    spec = ModelSpec.load(info["sidecar"])
    assert spec.channels == 1
    assert spec.input.color == "gray" and spec.input.shape[0] == -1
    assert spec.normalization.mean == [0.0]
    assert spec.normalization.std == pytest.approx([1 / 255])
    assert spec.provenance.accuracy == 0.875 and spec.provenance.seed == 7
    assert spec.num_classes == 12 and spec.classes[5].name == "Class3_def"


def test_export_rgb_variant_and_dynamic_batch(exported: dict[str, Any]) -> None:
    import onnxruntime as ort

    from pyinspect.spec import ModelSpec

    info = exported["rgb"]
    spec = ModelSpec.load(info["sidecar"])
    assert spec.channels == 3 and spec.normalization.mean == [0.5, 0.5, 0.5]
    sess = ort.InferenceSession(info["onnx"], providers=["CPUExecutionProvider"])
    for n in (1, 5):
        out = sess.run(None, {"input": np.zeros((n, 3, 224, 224), np.float32)})[0]
        assert out.shape == (n, 12)


def test_export_refuses_old_opsets(exported: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="opset must be >= 17, got 13"):
        export(exported["ckpt"], tmp_path / "x.onnx", opset=13)


def test_export_provenance_overrides_the_checkpoint_meta(
    exported: dict[str, Any], tmp_path: Path
) -> None:
    """A caller that measured the model passes its numbers; the checkpoint is not rewritten."""
    from pyinspect.spec import ModelSpec

    before = exported["ckpt"].read_bytes()
    prov = {"accuracy": 0.5, "dataset": "held-out 20 %", "distill_seed": 3}
    info = export(exported["ckpt"], tmp_path / "p.onnx", folded=True, provenance=prov)
    spec = ModelSpec.load(info["sidecar"])
    assert (spec.provenance.accuracy, spec.provenance.dataset) == (0.5, "held-out 20 %")
    assert spec.provenance.seed == 7 and spec.provenance.preset == "test"  # from the meta
    assert spec.to_dict()["provenance"]["distill_seed"] == 3  # unknown keys are kept
    assert exported["ckpt"].read_bytes() == before


def test_the_shipped_sidecars_are_what_the_one_builder_writes() -> None:
    """The sidecar has one builder (``ModelSpec.for_dagm`` via ``train.export.sidecar``), one
    schema version, and the committed models' sidecars load unchanged and match it."""
    import pyinspect.spec
    import train.export
    from pyinspect.spec import ModelSpec
    from train.export import sidecar

    assert train.export.SCHEMA_VERSION is pyinspect.spec.SCHEMA_VERSION
    models = Path(__file__).resolve().parents[1] / "models"
    for name, channels, mean, std in (
        ("student.onnx", 1, [0.0], [1 / 255]),
        ("student_rgb.onnx", 3, [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]),  # the student's statistics
    ):
        path = models / f"{name}.json"
        if not path.is_file():
            pytest.skip(f"{path} is not in this checkout")
        shipped = ModelSpec.load(path).to_dict()
        built = sidecar(channels=channels, mean=mean, std=std, provenance={}).to_dict()
        assert {k: v for k, v in shipped.items() if k not in ("provenance", "normalization")} == {
            k: v for k, v in built.items() if k not in ("provenance", "normalization")
        }
        assert shipped["normalization"]["mean"] == pytest.approx(mean)
        assert shipped["normalization"]["std"] == pytest.approx(std)
        assert ModelSpec.from_json(path.read_text()).to_dict() == shipped  # loads unchanged
