"""``pyinspect export triton`` without a server: the repository layout, Triton's own
``ModelConfig`` validation of every config, the uint8-input patch graph against the original, the
serving environment check, the uint8 tiler and the model URL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from modelzoo import textured_frame, write_tiny
from tritonkit import MODEL, ROOT, SERVE_ENV

from pyinspect.backends.triton import is_model_url, parse_model_url, tile_uint8
from pyinspect.cli import main
from pyinspect.errors import InputError, SpecError
from pyinspect.export.triton import (
    PATCH_INPUT,
    PATCH_OUTPUT,
    check_python_env,
    export_triton,
    uint8_patch_graph,
    validate_config,
)
from pyinspect.inspector import Inspector
from pyinspect.spec import ModelSpec
from pyinspect.tiling import Tiler, patch_grid

RGB_MODEL = ROOT / "models" / "student_rgb.onnx"
needs_env = pytest.mark.skipif(
    not (SERVE_ENV / "bin" / "python").is_file(),
    reason=f"no serving environment at {SERVE_ENV}: run `make serve-env` (`make test` does)",
)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "repo"
    export_triton(RGB_MODEL, out, check_env=False, instances=2)
    return out


def test_layout_and_configs(repo: Path) -> None:
    frame, patch = repo / "student_rgb_frame", repo / "student_rgb_patch"
    assert sorted(p.name for p in (frame / "1").iterdir()) == [
        "model.py",
        "student_rgb.onnx",
        "student_rgb.onnx.json",
    ]
    assert (patch / "1" / "model.onnx").is_file()
    assert (repo / "README.md").read_text().count("student_rgb_") >= 2
    f, p = validate_config(frame / "config.pbtxt"), validate_config(patch / "config.pbtxt")
    assert (f.backend, f.max_batch_size, list(f.input[0].dims)) == ("python", 0, [-1, -1, 3])
    assert [o.name for o in f.output] == [
        "TEXTURE",
        "DEFECTIVE",
        "LABEL",
        "MAX_DEFECT_PROB",
        "PATCH_CLASS",
        "PATCH_DEFECT_PROB",
    ]
    assert f.instance_group[0].count == 2
    assert (p.platform, p.max_batch_size, list(p.input[0].dims)) == (
        "onnxruntime_onnx",
        64,
        [3, 224, 224],
    )
    assert list(p.dynamic_batching.preferred_batch_size) == [18, 36]
    assert p.parameters["pyinspect_input_encoding"].string_value == "uint8"
    spec = ModelSpec.for_model(RGB_MODEL).to_dict()
    for config in (f, p):
        assert (
            ModelSpec.from_json(config.parameters["pyinspect_sidecar"].string_value).to_dict()
            == spec
        )


def test_an_existing_model_folder_is_refused_and_left_alone(repo: Path) -> None:
    config = repo / "student_rgb_frame" / "config.pbtxt"
    before = config.read_bytes()
    with pytest.raises(InputError, match="student_rgb_frame: already exists"):
        export_triton(RGB_MODEL, repo, check_env=False)
    assert config.read_bytes() == before


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda t: t + "\nmax_batch_sise: 4\n",
            r"config.pbtxt: not a valid Triton ModelConfig: \d+:\d+ .*max_batch_sise",
        ),
        (lambda t: t.replace("max_batch_size: 64", 'max_batch_size: "many"'), "max_batch_size"),
        (
            lambda t: t.replace('name: "student_rgb_patch"', 'name: "other"'),
            "is not the folder's name",
        ),
        (
            lambda t: t.replace("max_batch_size: 64", "max_batch_size: 0"),
            "dynamic_batching needs max_batch_size > 0",
        ),
        (lambda t: t.replace("data_type: TYPE_UINT8", "data_type: TYPE_UINT9"), "TYPE_UINT9"),
    ],
)
def test_validate_config_rejects(tmp_path: Path, repo: Path, edit, message: str) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "student_rgb_patch"
    (folder / "1").mkdir(parents=True)
    (folder / "1" / "model.onnx").write_bytes(b"x")
    text = (repo / "student_rgb_patch" / "config.pbtxt").read_text()
    (folder / "config.pbtxt").write_text(edit(text))
    with pytest.raises(SpecError, match=message):
        validate_config(folder / "config.pbtxt")


def test_validate_config_names_a_missing_model_file(tmp_path: Path, repo: Path) -> None:
    folder = tmp_path / "student_rgb_patch"
    (folder / "1").mkdir(parents=True)
    (folder / "config.pbtxt").write_text((repo / "student_rgb_patch" / "config.pbtxt").read_text())
    with pytest.raises(SpecError, match=r"1/model\.onnx is missing"):
        validate_config(folder / "config.pbtxt")


# ---- the uint8-input patch graph -------------------------------------------------------------
@pytest.mark.parametrize(
    ("channels", "dtype", "frame_channels"),
    [(3, "float32", 3), (3, "float32", 0), (1, "float32", 0), (3, "float16", 4)],
)
def test_uint8_graph_on_uint8_patches_equals_the_tiler_and_the_original(
    tmp_path: Path, channels: int, dtype: str, frame_channels: int
) -> None:
    bundle = write_tiny(tmp_path, channels=channels, dtype=dtype)  # type: ignore[arg-type]
    graph = uint8_patch_graph(bundle.model_path, bundle.spec)
    rebuilt = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    frame = textured_frame(channels=frame_channels, seed=channels)
    boxes = patch_grid(*frame.shape[:2])
    raw = np.empty((len(boxes), channels, 224, 224), dtype=np.uint8)
    tile_uint8(frame, raw, boxes)
    got = rebuilt.run([PATCH_OUTPUT], {PATCH_INPUT: raw})[0]
    with Inspector(bundle.model_path, runner="backend") as local:
        buf = local.backend.input_buffer(len(boxes))
        norm = bundle.spec.normalization
        Tiler(norm.mean, norm.std, channels)(frame, buf, boxes)
        want = local.backend.infer(len(boxes))
    np.testing.assert_array_equal(got.astype(np.float32), want)


def test_export_of_a_float16_model_checks_its_graph(tmp_path: Path) -> None:
    bundle = write_tiny(tmp_path / "m", dtype="float16")
    out = export_triton(bundle.model_path, tmp_path / "repo", check_env=False)
    config = validate_config(out.configs[1])
    assert config.input[0].data_type == 2  # TYPE_UINT8
    assert config.output[0].data_type == 10  # TYPE_FP16: the graph's own output type


# ---- tile_uint8 --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("frame_channels", "out_channels"), [(0, 1), (0, 3), (1, 3), (3, 3), (4, 3)]
)
def test_tile_uint8_equals_the_cpp_tiler(frame_channels: int, out_channels: int) -> None:
    frame = textured_frame(300, 470, channels=frame_channels, seed=5)
    boxes = patch_grid(300, 470)
    raw = np.empty((len(boxes), out_channels, 224, 224), dtype=np.uint8)
    tile_uint8(frame, raw, boxes)
    floats = np.empty(raw.shape, dtype=np.float32)
    Tiler(0.0, 1 / 255, out_channels)(frame, floats, boxes)  # v * 1 + 0: the pixel values
    np.testing.assert_array_equal(raw.astype(np.float32), floats)


def test_tile_uint8_colour_to_gray_is_the_rounded_luma() -> None:
    frame = textured_frame(channels=3, seed=6)
    boxes = patch_grid(512, 512)
    raw = np.empty((9, 1, 224, 224), dtype=np.uint8)
    tile_uint8(frame, raw, boxes)
    floats = np.empty(raw.shape, dtype=np.float32)
    Tiler(0.0, 1 / 255, 1)(frame, floats, boxes)
    assert np.abs(raw - floats).max() <= 0.51


def test_tile_uint8_refuses_a_box_outside_the_frame() -> None:
    frame = textured_frame(seed=7)
    boxes = np.array([[300, 0, 224, 224]], dtype=np.int32)
    with pytest.raises(
        InputError, match=r"box 0 \(300, 0, 224, 224\) is not a 224x224 patch inside"
    ):
        tile_uint8(frame, np.empty((1, 1, 224, 224), np.uint8), boxes)


# ---- the serving environment -------------------------------------------------------------------
def test_an_environment_with_numpy_2_is_refused() -> None:
    with pytest.raises(InputError, match=r"has numpy 2\.\d+.*fails every output"):
        check_python_env(Path(sys.prefix))  # the test environment: numpy >= 2


def test_a_folder_without_python_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"not a Python environment.*make serve-env"):
        export_triton(MODEL, tmp_path / "repo", python_env=tmp_path)
    assert not (tmp_path / "repo").exists()  # nothing written


def test_an_environment_without_numpy_is_refused(tmp_path: Path) -> None:
    env = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    with pytest.raises(InputError, match="numpy is not importable"):
        check_python_env(env)


@needs_env
def test_the_serve_env_passes() -> None:
    found = check_python_env(SERVE_ENV)
    assert int(found["numpy"].split(".")[0]) < 2 and found["pyinspect"]


@needs_env
def test_cli_export_with_no_flag_says_which_env(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "repo"
    assert main(["export", "triton", str(MODEL), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "make serve-env" in captured.err and str(SERVE_ENV) in captured.err
    assert "numpy 1." in captured.out
    config = validate_config(out / "student_frame" / "config.pbtxt")
    assert config.parameters["EXECUTION_ENV_PATH"].string_value == str(SERVE_ENV.absolute())


def test_cli_export_with_a_numpy_2_env_fails_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "export",
        "triton",
        str(MODEL),
        "--out",
        str(tmp_path / "r"),
        "--python-env",
        sys.prefix,
    ]
    assert main(args) == 2
    assert "numpy >= 2" in capsys.readouterr().err


# ---- model URLs --------------------------------------------------------------------------------
def test_model_urls() -> None:
    url = parse_model_url("grpc://host:8001/student_patch")
    assert (url.scheme, url.host, url.model) == ("grpc", "host:8001", "student_patch")
    assert is_model_url("http://h:8000/m") and not is_model_url("models/student.onnx")
    for bad in ("grpc://host:8001", "grpc://host:8001/a/b", "ftp://h/m"):
        with pytest.raises(InputError, match="grpc://HOST:PORT/MODEL"):
            parse_model_url(bad)


def test_backend_triton_on_a_file_asks_for_a_url() -> None:
    with pytest.raises(InputError, match="needs a model URL grpc://HOST:PORT/MODEL"):
        Inspector(MODEL, backend="triton")


def test_sidecar_json_is_one_line(repo: Path) -> None:
    config = validate_config(repo / "student_rgb_patch" / "config.pbtxt")
    text = config.parameters["pyinspect_sidecar"].string_value
    assert "\n" not in text and json.loads(text)["patch"] == 224
