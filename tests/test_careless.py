"""A careless or hostile user: nothing they gave is lost, overwritten or misreported.

Each test is one class of mistake (a name that collides with an input, a folder that cannot be
written, a sidecar that contradicts itself, a number out of range, Ctrl-C, a closed pipe), tried
with the names, values and paths a user would type. Every test is marked ``hostile(group)``;
``tools/hostile_table.py`` counts them into docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from modelzoo import TinyBundle, textured_frame, tiny_model, tiny_weights, write_tiny

from pyinspect import Inspector, errors
from pyinspect.backends.base import usable_cpus
from pyinspect.cli import main
from pyinspect.spec import ModelSpec

ROOT = Path(__file__).resolve().parents[1]
PATCH = 32  # small model, small frames: every CLI call here runs in milliseconds
SIZE = 64


def hostile(group: str) -> pytest.MarkDecorator:
    return pytest.mark.hostile(group)


# ---- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> TinyBundle:
    """A 3-channel tiny model with 32-pixel patches (a 64×64 frame has 4 patches)."""
    return write_tiny(tmp_path_factory.mktemp("small"), "small.onnx", patch=PATCH)


def frame(seed: int = 0) -> np.ndarray:
    return textured_frame(SIZE, SIZE, seed=seed)


def put(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), frame(seed))
    return path


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (links not followed) and the SHA-256 of its bytes."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def json_summary(out: str) -> dict[str, Any]:
    return json.loads(out.splitlines()[-1])["summary"]


@contextlib.contextmanager
def undone_after(command: list[str], undo: list[str], unsupported: str) -> Iterator[None]:
    """Run ``command`` for the ``with`` block and ``undo`` after it; the test is skipped (saying
    ``unsupported`` and why) where ``command`` fails."""
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"{unsupported} ({done.stderr.strip() or done.returncode})")
    try:
        yield
    finally:
        subprocess.run(undo, check=False)


@contextlib.contextmanager
def mounted_tmpfs(where: Path, options: str) -> Iterator[Path]:
    """A tmpfs mounted at ``where`` (read-only, or tiny to fill up); skipped where mounting is
    not permitted (not root, no CAP_SYS_ADMIN)."""
    where.mkdir(parents=True, exist_ok=True)
    mount = ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)]
    with undone_after(mount, ["umount", "-l", str(where)], "cannot mount a tmpfs here"):
        yield where


@contextlib.contextmanager
def immutable(path: Path) -> Iterator[Path]:
    """``chattr +i``: not even root may add a file; skipped where the filesystem lacks it."""
    chattr = ["chattr", "+i", str(path)]
    with undone_after(chattr, ["chattr", "-i", str(path)], "chattr +i is not supported here"):
        yield path


# ---- files: overlays never replace anything ------------------------------------------------------
@hostile("files")
def test_overlay_into_the_input_folder_is_refused(small: TinyBundle, tmp_path: Path, capsys):
    """`<parent>_<stem>.png` of d/a.png is d/d_a.png: another input, which was overwritten and
    then inspected."""
    d = tmp_path / "d"
    put(d / "a.png", 1)
    put(d / "d_a.png", 2)
    before = snapshot(tmp_path)
    rc, out, err = cli(capsys, "inspect", d, "--model", small.model_path, "--overlay", d)
    assert rc == 2, (out, err)
    assert f"--overlay {d}: is the input folder {d}" in err
    assert snapshot(tmp_path) == before


@hostile("files")
def test_overlay_name_taken_by_an_input_is_refused(small: TinyBundle, tmp_path: Path, capsys):
    """A single file: its overlay name is an existing image of the user's."""
    d = tmp_path / "d"
    a = put(d / "a.png", 1)
    put(d / "d_a.png", 2)
    before = snapshot(tmp_path)
    rc, _, err = cli(capsys, "inspect", a, "--model", small.model_path, "--overlay", d)
    assert rc == 2
    assert f"{d / 'd_a.png'}" in err and "never replaces a file" in err
    assert snapshot(tmp_path) == before


@hostile("files")
@pytest.mark.parametrize("kind", ["file", "folder", "symlink"])
def test_overlay_name_taken_by_anything_is_refused(
    small: TinyBundle, tmp_path: Path, capsys, kind: str
) -> None:
    inputs = tmp_path / "Class1"
    put(inputs / "0000.PNG")
    out = tmp_path / "out"
    out.mkdir()
    taken = out / "Class1_0000.png"
    if kind == "file":
        taken.write_bytes(b"the user's own picture")
    elif kind == "folder":
        taken.mkdir()
    else:
        taken.symlink_to(tmp_path / "elsewhere.png")
    before = snapshot(tmp_path)
    rc, _, err = cli(capsys, "inspect", inputs, "--model", small.model_path, "--overlay", out)
    assert rc == 2 and str(taken) in err
    assert snapshot(tmp_path) == before and os.path.lexists(taken)


@hostile("files")
def test_overlay_folder_inside_the_inputs_is_left_out(small: TinyBundle, tmp_path: Path, capsys):
    """Its files are not inputs (a rerun would inspect the last run's overlays), and a rerun
    into it is refused rather than replacing them."""
    d = tmp_path / "d"
    for i in range(3):
        put(d / f"{i}.png", i)
    put(d / "out" / "kept-1.png", 5)  # the user's files already in the overlay folder
    put(d / "out" / "kept-2.png", 6)
    before = snapshot(d)
    args = ["inspect", d, "--model", small.model_path, "--overlay", d / "out", "--json"]
    rc, out, err = cli(capsys, *args)
    summary = json_summary(out)
    assert rc == 0 and summary["images"] == 3 and summary["excluded"] == 2
    assert summary["overlays"] == 3 and "is inside the input folder" in err
    assert all(snapshot(d)[k] == v for k, v in before.items())
    after = snapshot(d)
    rc, out, err = cli(capsys, *args)
    assert rc == 2 and "3 file(s) this run would write already exist" in err
    assert snapshot(d) == after


def _unwritable(kind: str, tmp_path: Path, stack: contextlib.ExitStack) -> Path:
    if kind == "existing file":
        (tmp_path / "taken").write_bytes(b"x")
        return tmp_path / "taken"
    if kind == "under a regular file":
        (tmp_path / "plain").write_bytes(b"x")
        return tmp_path / "plain" / "overlays"
    if kind == "/dev/full":
        return Path("/dev/full")
    if kind == "/proc":
        return Path("/proc/pyinspect-overlays")
    if kind == "/sys":
        return Path("/sys")
    if kind == "read-only tmpfs":
        return stack.enter_context(mounted_tmpfs(tmp_path / "ro", "ro,size=1m"))
    if kind == "chattr +i":
        (tmp_path / "frozen").mkdir()
        return stack.enter_context(immutable(tmp_path / "frozen"))
    raise AssertionError(kind)


UNWRITABLE = [
    "existing file",
    "under a regular file",
    "/dev/full",
    "/proc",
    "/sys",
    "read-only tmpfs",
    "chattr +i",
]


@hostile("files")
@pytest.mark.parametrize("kind", UNWRITABLE)
def test_unwritable_overlay_folder_is_refused_up_front(
    small: TinyBundle, tmp_path: Path, capsys, kind: str
) -> None:
    image = put(tmp_path / "in" / "a.png")
    before = snapshot(tmp_path / "in")
    with contextlib.ExitStack() as stack:
        target = _unwritable(kind, tmp_path, stack)
        rc, out, err = cli(capsys, "inspect", image, "--model", small.model_path, "--overlay",
                           target)  # fmt: skip
    assert rc == 2, (out, err)
    assert f"pyinspect: error: --overlay {target}: " in err and "Traceback" not in err
    assert out == ""  # nothing inspected: the folder is checked before the first image
    assert snapshot(tmp_path / "in") == before


@hostile("files")
@pytest.mark.parametrize("problem", ["missing input", "missing model"])
def test_a_refused_run_creates_no_overlay_folder(
    small: TinyBundle, tmp_path: Path, capsys, problem: str
) -> None:
    image = put(tmp_path / "a.png") if problem == "missing model" else tmp_path / "gone.png"
    model = small.model_path if problem == "missing input" else tmp_path / "gone.onnx"
    rc, _, _ = cli(capsys, "inspect", image, "--model", model, "--overlay", tmp_path / "new" / "o")
    assert rc == 2 and not (tmp_path / "new").exists()


@hostile("files")
def test_full_disk_names_every_overlay_not_written(small: TinyBundle, tmp_path: Path, capsys):
    """A disk that fills up mid-run: each overlay that failed is named and counted, exit 1, and
    no half-written PNG or temporary file is left behind."""
    d = tmp_path / "d"
    for i in range(6):
        put(d / f"{i}.png", i)
    with mounted_tmpfs(tmp_path / "full", "size=40k") as full:
        rc, out, err = cli(capsys, "inspect", d, "--model", small.model_path, "--overlay", full,
                           "--json")  # fmt: skip
        written = sorted(p.name for p in full.iterdir())
        for name in written:
            assert cv2.imread(str(full / name)) is not None, f"{name} is not a whole PNG"
    summary = json_summary(out)
    assert rc == 1 and summary["images"] == 6
    assert summary["overlay_errors"] >= 1
    assert summary["overlays"] + summary["overlay_errors"] == 6
    assert len(written) == summary["overlays"] and not any(n.startswith(".") for n in written)
    assert err.count("cannot write: No space left on device") == summary["overlay_errors"]


# ---- files: which images a folder means ---------------------------------------------------------
@hostile("files")
def test_label_folders_outside_a_dataset_layout_are_inspected(small: TinyBundle, tmp_path, capsys):
    """A folder named `label` or a file `*_label.png` is an image like any other, unless it is
    in a dataset layout's mask folder."""
    put(tmp_path / "line" / "label" / "a.png")
    put(tmp_path / "line" / "b_label.png")
    put(tmp_path / "line" / "Label" / "c_label.png")  # a Label folder, but not in ClassK/
    rc, out, _ = cli(capsys, "inspect", tmp_path / "line", "--model", small.model_path, "--json")
    summary = json_summary(out)
    assert rc == 0 and summary["images"] == 3 and summary["masks_skipped"] == 0


@hostile("files")
def test_masks_of_recognised_layouts_are_skipped_and_counted(small: TinyBundle, tmp_path, capsys):
    root = tmp_path / "sets"
    put(root / "dagm10" / "Class1" / "Train" / "0000.PNG")
    put(root / "dagm10" / "Class1" / "Train" / "Label" / "0000_label.PNG")
    put(root / "dagm10" / "Class1" / "Test" / "Label" / "0003_label.PNG")
    put(root / "dev" / "Class2_def" / "1.png")
    put(root / "dev" / "Class2_def" / "Label" / "1_label.PNG")
    put(root / "generic" / "bolt" / "good" / "a.png")
    put(root / "generic" / "bolt" / "crack" / "b.png")
    put(root / "generic" / "bolt" / "masks" / "crack" / "b.png")
    rc, out, _ = cli(capsys, "inspect", root, "--model", small.model_path, "--json")
    records = [json.loads(line) for line in out.splitlines()[:-1]]
    assert rc == 0 and json_summary(out)["masks_skipped"] == 4
    assert len(records) == 4 and not any("label" in r["path"].lower() for r in records)
    rc, out, _ = cli(capsys, "inspect", root, "--model", small.model_path)
    assert out.splitlines()[-1].endswith(", 4 mask files skipped [onnxruntime]")


@hostile("files")
@pytest.mark.parametrize("kind", ["dangling", "loop"])
def test_broken_links_in_a_folder_are_named_and_counted(
    small: TinyBundle, tmp_path: Path, capsys, kind: str
) -> None:
    put(tmp_path / "d" / "a.png")
    link = tmp_path / "d" / "b.png"
    link.symlink_to(tmp_path / "gone.png" if kind == "dangling" else link)
    rc, out, err = cli(capsys, "inspect", tmp_path / "d", "--model", small.model_path, "--json")
    want = "is a dangling symlink to" if kind == "dangling" else "is a symlink loop"
    assert rc == 1 and f"pyinspect: error: {link}: image {want}" in err
    assert json_summary(out) | {"images": 1, "errors": 1} == json_summary(out)


@hostile("files")
def test_symlinked_folders_are_followed_once(small: TinyBundle, tmp_path: Path, capsys):
    put(tmp_path / "d" / "sub" / "a.png")
    (tmp_path / "d" / "sub" / "up").symlink_to(tmp_path / "d")  # a loop back up the tree
    (tmp_path / "d" / "again").symlink_to(tmp_path / "d" / "sub")
    rc, out, _ = cli(capsys, "inspect", tmp_path / "d", "--model", small.model_path, "--json")
    assert rc == 0 and json_summary(out)["images"] == 1


@hostile("files")
@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "no such file or folder"),
        ("dangling", "is a dangling symlink to"),
        ("loop", "is a symlink loop"),
        ("device", "is not a regular file"),
    ],
)
def test_inputs_that_are_not_images_say_why(
    small: TinyBundle, tmp_path: Path, capsys, kind: str, message: str
) -> None:
    path = tmp_path / "x.png"
    if kind == "dangling":
        path.symlink_to(tmp_path / "gone.png")
    elif kind == "loop":
        path.symlink_to(path)
    elif kind == "device":
        path = Path("/dev/null")
    rc, _, err = cli(capsys, "inspect", path, "--model", small.model_path)
    assert rc == 2 and f"pyinspect: error: {path}: {message}" in err


# ---- CLI: interrupts, pipes, stdout --------------------------------------------------------------
@hostile("cli")
def test_ctrl_c_prints_the_partial_summary(small: TinyBundle, tmp_path, capsys, monkeypatch):
    for i in range(4):
        put(tmp_path / "d" / f"{i}.png", i)
    real = Inspector.run
    calls = []

    def interrupted(self: Inspector, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Inspector, "run", interrupted)
    rc, out, err = cli(capsys, "inspect", tmp_path / "d", "--model", small.model_path, "--json")
    summary = json_summary(out)
    assert rc == 130 and summary["images"] == 2 and summary["interrupted"] is True
    assert "interrupted" in err and "Traceback" not in err


def _pyinspect(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "pyinspect", *(str(a) for a in args)]


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2,000 links to one 1024×1024 frame (1,024 patches): seconds of work, so a signal or a
    closed pipe always lands mid-run (the tests stop it after the first line)."""
    d = tmp_path_factory.mktemp("many")
    big = put(d.parent / f"{d.name}-frame.png")
    assert cv2.imwrite(str(big), textured_frame(1024, 1024, seed=3))
    for i in range(2000):
        (d / f"{i:04d}.png").symlink_to(big)
    return d


def _sigint_as_at_a_terminal() -> None:
    """A shell starts background jobs with SIGINT ignored, and the ignore is inherited (CI run
    as ``.ci/run &``): the child gets SIGINT's default back, as a command typed at a terminal
    has it, so Python turns it into KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@hostile("cli")
def test_sigint_in_a_real_process(small: TinyBundle, many: Path) -> None:
    proc = subprocess.Popen(
        _pyinspect("inspect", many, "--model", small.model_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        preexec_fn=_sigint_as_at_a_terminal,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()  # the first verdict: the loop is running
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    lines = [first, *out.splitlines()]
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    assert lines[-1].endswith(", interrupted [onnxruntime]")
    assert int(lines[-1].split()[0]) == len(lines) - 1 < 2000


@hostile("cli")
def test_json_into_head_has_no_traceback(small: TinyBundle, many: Path) -> None:
    cmd = " ".join(f"'{a}'" for a in _pyinspect("inspect", many, "--model", small.model_path))
    done = subprocess.run(
        ["bash", "-c", f'{cmd} --json | head -1; echo "rc=${{PIPESTATUS[0]}}" >&2'],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert json.loads(done.stdout.splitlines()[0])["path"].endswith("0000.png")
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines()[-1] in {"rc=141", "rc=0"}  # 0: all written in time


@hostile("cli")
def test_closed_stdout_in_process(small: TinyBundle, tmp_path, monkeypatch, capsys) -> None:
    for i in range(3):
        put(tmp_path / "d" / f"{i}.png", i)

    class ClosedAfterOne:
        def __init__(self) -> None:
            self.lines = 0

        def write(self, text: str) -> int:
            self.lines += text.count("\n")
            if self.lines > 1:
                raise BrokenPipeError(32, "Broken pipe")
            return len(text)

        def flush(self) -> None: ...

    monkeypatch.setattr(sys, "stdout", ClosedAfterOne())
    rc = main(["inspect", str(tmp_path / "d"), "--model", str(small.model_path), "--json"])
    assert rc == 141 and "Traceback" not in capsys.readouterr().err


@hostile("cli")
def test_stdout_on_a_full_disk_is_an_error(small: TinyBundle, tmp_path: Path) -> None:
    put(tmp_path / "a.png")
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            _pyinspect("inspect", tmp_path / "a.png", "--model", small.model_path),
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            timeout=120,
            check=False,
        )
    assert done.returncode == 1, done.stderr
    assert "cannot write results to stdout: No space left on device" in done.stderr
    assert "Traceback" not in done.stderr


@hostile("cli")
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--threads", "1000"], "threads must be at most"),
        (["--threads", "0"], "threads must be >= 1"),
        (["--threshold", "nan"], "threshold"),
        (["--model", "/dev/null"], "/dev/null"),
        (["--model", "{tmp}"], "model file is not a file; the path is a folder"),
    ],
)
def test_bad_flags_are_one_line_errors(
    small: TinyBundle, tmp_path: Path, capsys, args: list[str], message: str
) -> None:
    image = put(tmp_path / "a.png")
    argv = ["inspect", str(image), "--model", str(small.model_path)]
    argv += [a.replace("{tmp}", str(tmp_path)) for a in args]
    rc, _, err = cli(capsys, *argv)
    assert rc == 2 and message in err and "Traceback" not in err, err


# ---- model files: the sidecar must not contradict itself or the model ---------------------------
def _sidecar_doc(**changes: Any) -> dict[str, Any]:
    doc = ModelSpec.for_dagm(mean=[0.5] * 3, std=[0.25] * 3).to_dict()
    for dotted, value in changes.items():
        section, field = dotted.split("__")
        doc[section][field] = value
    return doc


@hostile("model files")
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("std", [1e300] * 3),  # every frame "good"
        ("mean", [1e30] * 3),  # every patch defective
        ("std", [1e-300] * 3),  # every run() failed blaming the image
        ("mean", [-5.0, 0.5, 0.5]),
        ("std", [0.25, 0.25, 100.0]),
    ],
)
def test_insane_normalisation_is_refused_at_load(field: str, value: list[float]) -> None:
    doc = _sidecar_doc(**{f"normalization__{field}": value})
    with pytest.raises(errors.SpecError, match=rf"^m\.json: normalization\.{field}: must lie in "):
        ModelSpec.from_dict(doc, source="m.json")


@hostile("model files")
def test_float16_input_that_overflows_is_refused() -> None:
    doc = _sidecar_doc(
        normalization__mean=[2.0] * 3, normalization__std=[2e-5] * 3, input__dtype="float16"
    )
    with pytest.raises(errors.SpecError, match=r"normalization\.std: .* beyond float16"):
        ModelSpec.from_dict(doc, source="m.json")


def test_raw_pixel_normalisation_still_loads() -> None:
    """The shipped folded student reads raw pixel values: mean 0, std 1/255."""
    spec = ModelSpec.load(ROOT / "models" / "student.onnx.json")
    assert spec.normalization.std == [pytest.approx(1 / 255)]


CLASS_TABLES = {
    "all-good": (lambda c: False, "no class is defective"),
    "all-defective": (lambda c: True, "every class is defective"),
    "texture-without-good": (
        lambda c: c["defective"] or c["texture"] == 1,
        "textures [1] (['Texture 2']) have no good class",
    ),
}


@hostile("model files")
@pytest.mark.parametrize("table", list(CLASS_TABLES))
def test_contradictory_class_table_is_refused(table: str) -> None:
    """Such a table fixes the verdict before any frame is seen (all good, or all defective)."""
    defective, message = CLASS_TABLES[table]
    doc = _sidecar_doc()
    for c in doc["classes"]:
        c["defective"] = bool(defective(c))
    with pytest.raises(errors.SpecError) as info:
        ModelSpec.from_dict(doc, source="m.json")
    assert str(info.value).startswith(f"m.json: classes: {message}")


@hostile("model files")
@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
@pytest.mark.parametrize(
    ("graph_softmax", "declared"), [(False, "probabilities"), (True, "logits")]
)
def test_output_kind_is_checked_against_the_model(
    tmp_path: Path, backend: str, graph_softmax: bool, declared: str
) -> None:
    pytest.importorskip(backend)
    path = tmp_path / "m.onnx"
    import onnx

    onnx.save(tiny_model(tiny_weights(), patch=PATCH, softmax=graph_softmax), path)
    ModelSpec.for_dagm(patch=PATCH, mean=[0.5] * 3, std=[0.25] * 3,
                       output_kind=declared).save_for_model(path)  # fmt: skip
    with pytest.raises(errors.SpecError) as info:
        Inspector(path, backend=backend)
    text = str(info.value)
    assert text.startswith(f"{path}: output 'logits' gives ")
    assert f"m.onnx.json output.kind says {declared!r}" in text


def test_output_kind_that_matches_loads(tmp_path: Path) -> None:
    bundle = write_tiny(tmp_path, "p.onnx", patch=PATCH, softmax=True)
    with Inspector(bundle.model_path) as insp:
        assert insp.spec.output.kind == "probabilities"


@hostile("model files")
def test_missing_tensorrt_names_the_plan(tmp_path: Path) -> None:
    from pyinspect.backends.base import backend_info

    if backend_info("tensorrt").is_available():
        pytest.skip("TensorRT is importable here: the plan would load")
    plan = tmp_path / "x.plan"
    plan.write_bytes(b"ftrt")
    with pytest.raises(
        errors.BackendUnavailableError, match=rf"^{plan}: TensorRT backend not available"
    ):
        Inspector(plan)


@hostile("model files")
def test_model_symlink_loop_says_so(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    path.symlink_to(path)
    with pytest.raises(
        errors.ModelFileError, match="model file not found; the path is a symlink loop"
    ):
        Inspector(path)


# ---- frames and arguments of the API -------------------------------------------------------------
@hostile("frames")
@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"threads": 1000},
            errors.InputError,
            "threads must be at most {cpus} (the CPUs this process",
        ),
        ({"threads": 2.5}, errors.InputTypeError, "threads must be an int >= 1, got float 2.5"),
        ({"threads": "2"}, errors.InputTypeError, "threads must be an int >= 1, got str '2'"),
        ({"threads": True}, errors.InputTypeError, "threads must be an int >= 1, got bool True"),
        ({"tile_threads": -1}, errors.InputError, "tile_threads must be >= 0, got -1"),
        ({"tile_threads": 1000}, errors.InputError, "tile_threads must be at most {cpus}"),
        ({"tile_threads": 1.5}, errors.InputTypeError, "tile_threads must be an int >= 0"),
        ({"backend": None}, errors.InputError, "backend must be a name, one of ['auto'"),
    ],
)
def test_bad_arguments_name_the_parameter(
    small: TinyBundle, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as info:
        Inspector(small.model_path, **kwargs)
    assert message.format(cpus=usable_cpus()) in str(info.value)


@pytest.fixture(scope="module")
def insp(small: TinyBundle) -> Iterator[Inspector]:
    with Inspector(small.model_path) as inspector:
        yield inspector


def _frame_path(kind: str, tmp_path: Path) -> Any:
    if kind == "empty path":
        return ""
    if kind == "symlink loop":
        (tmp_path / "loop.png").symlink_to(tmp_path / "loop.png")
        return str(tmp_path / "loop.png")
    if kind == "dangling symlink":
        (tmp_path / "d.png").symlink_to(tmp_path / "gone.png")
        return tmp_path / "d.png"
    if kind == "folder":
        return tmp_path
    if kind == "numpy scalar":
        return np.uint8(3)
    raise AssertionError(kind)


FRAME_CASES = [
    ("empty path", errors.InputError, "image path is empty ('')"),
    ("symlink loop", errors.InputError, "image is a symlink loop"),
    ("dangling symlink", errors.InputError, "image is a dangling symlink to"),
    ("folder", errors.InputError, "image is a folder"),
    ("numpy scalar", errors.InputTypeError, "got a NumPy uint8 scalar (0-D)"),
]


@hostile("frames")
@pytest.mark.parametrize(("kind", "error", "message"), FRAME_CASES)
def test_bad_frames_say_what_they_are(
    insp: Inspector, tmp_path: Path, kind: str, error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as info:
        insp.run(_frame_path(kind, tmp_path))
    assert message in str(info.value)
    if kind == "numpy scalar":  # it asked for uint8 and was given uint8: say what was wrong
        assert "must be uint8, got uint8" not in str(info.value)


@hostile("frames")
def test_run_batch_names_the_frames_an_inference_failed_on(insp: Inspector, monkeypatch):
    def broken(batch: int) -> np.ndarray:
        msg = "the runtime gave up"
        raise errors.BackendError(msg)

    monkeypatch.setattr(insp.backend, "infer", broken)
    with pytest.raises(errors.BackendError, match=r"^frames\[0, 1\]: the runtime gave up"):
        insp.run_batch([frame(1), frame(2)])
    with pytest.raises(errors.BackendError, match=r"^frames\[0\]: the runtime gave up"):
        insp.run_batch([frame(1)])


@hostile("frames")
@pytest.mark.parametrize("frames", ["x.png", None, b"bytes", 3])
def test_run_batch_wants_an_iterable_of_frames(insp: Inspector, frames: Any) -> None:
    with pytest.raises(errors.InputTypeError, match="frames must be an iterable"):
        insp.run_batch(frames)


@hostile("frames")
def test_run_batch_names_the_bad_index(insp: Inspector) -> None:
    with pytest.raises(errors.InputError, match=r"^frames\[2\]: frame must be uint8, got float32"):
        insp.run_batch([frame(0), frame(1), frame(2).astype(np.float32)])


# ---- streams -----------------------------------------------------------------------------------
@hostile("streams")
@pytest.mark.parametrize(("kind", "error", "message"), FRAME_CASES)
def test_stream_names_each_bad_frame_and_goes_on(
    insp: Inspector, tmp_path: Path, kind: str, error: type[Exception], message: str
) -> None:
    results = list(insp.stream([frame(0), _frame_path(kind, tmp_path), frame(1)]))
    assert [r.error is None for r in results] == [True, False, True]
    assert message in str(results[1].error)


# ---- training data: `python -m train data synth` -----------------------------------------------
def _data(*args: str | Path) -> int:
    from train.data_cli import main as data_main

    return data_main([str(a) for a in args])


@hostile("training data")
def test_synth_never_replaces_a_users_recipe(tmp_path: Path, capsys) -> None:
    (tmp_path / "synth.json").write_text('{"my": "notes"}\n')
    before = snapshot(tmp_path)
    rc = _data("synth", "--out", tmp_path, "--classes", "1", "--good", "1", "--defective", "0",
               "--workers", "1")  # fmt: skip
    assert rc == 2 and "synth.json already exists" in capsys.readouterr().err
    assert snapshot(tmp_path) == before and not any(tmp_path.glob("Class*"))


@hostile("training data")
@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--good", "-1"),
        ("--defective", "-3"),
        ("--classes", "0"),
        ("--classes", "7"),
        ("--seed", "-5"),
        ("--seed", "x"),
        ("--workers", "0"),
    ],
)
def test_synth_bad_numbers_are_usage_errors(tmp_path: Path, capsys, flag: str, value: str):
    out = tmp_path / "set"
    rc = _data("synth", "--out", out, "--classes", "1", "--good", "1", "--defective", "0", flag,
               value)  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and f"argument {flag}: must be" in err and "Traceback" not in err
    assert not out.exists()  # nothing made, so a corrected rerun is not blocked


@hostile("training data")
@pytest.mark.parametrize("kind", ["a file", "under a file"])
def test_synth_out_that_is_not_a_folder(tmp_path: Path, capsys, kind: str) -> None:
    (tmp_path / "f").write_bytes(b"user data")
    out = tmp_path / "f" if kind == "a file" else tmp_path / "f" / "set"
    rc = _data("synth", "--out", out, "--classes", "1", "--good", "1", "--defective", "0")
    err = capsys.readouterr().err
    assert rc == 2 and f"--out {out}: " in err and "Traceback" not in err
    assert (tmp_path / "f").read_bytes() == b"user data"


@hostile("training data")
@pytest.mark.parametrize("fault", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_synth_failing_midway_leaves_nothing_behind(tmp_path, monkeypatch, capsys, fault) -> None:
    import train.synth as synth

    real, calls = synth._run, []

    def failing(job: Any) -> Any:
        calls.append(job)
        if len(calls) == 3:
            raise fault
        return real(job)

    monkeypatch.setattr(synth, "_run", failing)
    (tmp_path / "mine.txt").write_text("keep me")
    args = ["synth", "--out", tmp_path, "--classes", "2", "--good", "2", "--defective", "1",
            "--workers", "1"]  # fmt: skip
    rc = _data(*args)
    assert rc == (130 if isinstance(fault, KeyboardInterrupt) else 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]
    monkeypatch.setattr(synth, "_run", real)
    assert _data(*args) == 0 and (tmp_path / "synth.json").is_file()
    capsys.readouterr()


def test_hostile_table_is_current() -> None:
    """docs/reliability.md's table is generated from the marks; a new or removed case without
    `python tools/hostile_table.py --write` fails here."""
    done = subprocess.run(
        [sys.executable, "tools/hostile_table.py", "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
