"""The ``pyinspect`` command line, driven through ``main([...])``."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from modelzoo import TinyBundle, textured_frame

from pyinspect import __version__, cli
from pyinspect.cli import Command, collect_images, dagm_truth, main, register_command


@pytest.fixture(scope="module")
def dagm_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Class1, Class1_def, Class2 with two frames each, and a DAGM Label folder with a mask."""
    root = tmp_path_factory.mktemp("dagm")
    for k, folder in enumerate(("Class1", "Class1_def", "Class2")):
        (root / folder).mkdir()
        for i in range(2):
            cv2.imwrite(str(root / folder / f"{i:04d}.PNG"), textured_frame(seed=10 * k + i))
    (root / "Class1_def" / "Label").mkdir()
    cv2.imwrite(
        str(root / "Class1_def" / "Label" / "0000_label.PNG"), np.zeros((512, 512), np.uint8)
    )
    (root / "notes.txt").write_text("not an image", encoding="utf-8")
    return root


@pytest.mark.parametrize(
    ("path", "truth"),
    [
        ("data/Class1/0001.PNG", (0, False)),
        ("data/Class4_def/17.png", (3, True)),
        ("data/class10_DEF/1.png", (9, True)),
        ("data/Class4/Train/0001.PNG", None),
        ("data/Class0/1.png", None),
        ("data/Class4_defect/1.png", None),
        ("img.png", None),
    ],
)
def test_dagm_truth(path: str, truth: tuple[int, bool] | None) -> None:
    assert dagm_truth(path) == truth


def test_collect_images_skips_labels_and_other_files(dagm_tree: Path) -> None:
    found = collect_images([dagm_tree])
    paths = found.paths
    assert found.any_dir and found.masks_skipped == 1 and not found.problems
    assert [p.relative_to(dagm_tree).as_posix() for p in paths] == [
        "Class1/0000.PNG",
        "Class1/0001.PNG",
        "Class1_def/0000.PNG",
        "Class1_def/0001.PNG",
        "Class2/0000.PNG",
        "Class2/0001.PNG",
    ]
    single = collect_images([paths[0]])
    assert single.paths == [paths[0]] and not single.any_dir


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"pyinspect {__version__}"


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "the following arguments are required: COMMAND" in capsys.readouterr().err


def test_inspect_one_image(tiny: TinyBundle, dagm_tree: Path, capsys) -> None:
    image = dagm_tree / "Class1" / "0000.PNG"
    assert main(["inspect", str(image), "--model", str(tiny.model_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2
    assert out[0].startswith(f"{image}  Texture ")
    assert " p_def=" in out[0] and out[0].rstrip().split("  ")[3].endswith(" ms")
    assert out[1].startswith("1 images, ") and "accuracy" in out[1]


def test_inspect_folder_text_summary_matches_the_lines(tiny: TinyBundle, dagm_tree: Path, capsys):
    assert main(["inspect", str(dagm_tree), "--model", str(tiny.model_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    per_image, summary = lines[:-1], lines[-1]
    assert len(per_image) == 6
    wrong = sum("WRONG (truth: " in line for line in per_image)
    defective = sum(" defective  p_def=" in line for line in per_image)
    assert summary.startswith(f"6 images, {defective} defective, median ")
    assert f"accuracy {(6 - wrong) / 6:.2%} ({6 - wrong}/6 with DAGM truth)" in summary


def test_inspect_json_lines(tiny: TinyBundle, dagm_tree: Path, capsys) -> None:
    args = ["inspect", str(dagm_tree / "Class1_def"), str(dagm_tree / "Class2" / "0000.PNG")]
    assert main([*args, "--model", str(tiny.model_path), "--json", "--threshold", "0.0"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    images, summary = records[:-1], records[-1]["summary"]
    assert [Path(r["path"]).name for r in images] == ["0000.PNG", "0001.PNG", "0000.PNG"]
    # the record schema every sink shares (pyinspect.records): one run, frame ids 1..3
    assert {r["schema"] for r in images} == {"pyinspect.record"}
    assert len({r["run_id"] for r in images}) == 1
    assert [r["frame_id"] for r in images] == [1, 2, 3]
    assert images[0]["model_sha256"] == hashlib.sha256(tiny.model_path.read_bytes()).hexdigest()
    assert all(r["source"] == "cli" and r["latency_ms"] >= 0 for r in images)
    assert all(r["defective"] and len(r["defective_patches"]) == 9 for r in images)
    assert images[0]["truth"] == {"texture": 0, "defective": True}
    assert images[2]["truth"] == {"texture": 1, "defective": False}
    correct = sum((r["texture"], r["defective"]) == tuple(r["truth"].values()) for r in images)
    assert summary == {
        "images": 3,
        "defective": 3,
        "errors": 0,
        "median_ms": summary["median_ms"],
        "accuracy": round(correct / 3, 6),
        "with_truth": 3,
        "masks_skipped": 1,  # Class1_def/Label/0000_label.PNG
        "excluded": 0,
        "overlays": 0,
        "overlay_errors": 0,
        "interrupted": False,
        "backend": "onnxruntime",
        "runner": "backend",  # the tiny model is not the paper's student
        "precision": "f32",  # --precision f32 by default; the backend is f32 anyway
        "engine": "backend",  # the deprecated name of the same fact
    }
    assert summary["median_ms"] > 0


def test_inspect_writes_overlays(tiny: TinyBundle, dagm_tree: Path, tmp_path: Path, capsys):
    out = tmp_path / "overlays"
    model = str(tiny.model_path)
    assert main(["inspect", str(dagm_tree / "Class1"), "--model", model, "--overlay", str(out),
                 "--threshold", "0.0"]) == 0  # fmt: skip
    assert main(["inspect", str(dagm_tree / "Class2"), "--model", model, "--overlay", str(out),
                 "--threshold", "1.0"]) == 0  # fmt: skip
    capsys.readouterr()
    names = sorted(p.name for p in out.iterdir())
    assert names == ["Class1_0000.png", "Class1_0001.png", "Class2_0000.png", "Class2_0001.png"]
    flagged = cv2.imread(str(out / "Class1_0000.png"), cv2.IMREAD_UNCHANGED)
    passed = cv2.imread(str(out / "Class2_0000.png"), cv2.IMREAD_UNCHANGED)
    assert flagged.shape == passed.shape == (512, 512, 3)

    def red_pixels(img: np.ndarray) -> int:
        b, g, r = (img[..., i].astype(int) for i in range(3))
        return int(((r > 200) & (g < 60) & (b < 60)).sum())

    assert red_pixels(flagged) > 1000  # every patch outlined red
    assert red_pixels(passed[40:]) == 0  # below the verdict text: no red at all


def test_inspect_reports_bad_images_and_goes_on(
    tiny: TinyBundle, dagm_tree: Path, tmp_path, capsys
):
    folder = tmp_path / "Class3"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), textured_frame(seed=1))
    (folder / "b.png").write_bytes(b"broken")
    cv2.imwrite(str(folder / "c.png"), np.zeros((100, 100), np.uint8))
    assert main(["inspect", str(folder), "--model", str(tiny.model_path)]) == 1
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 2
    assert captured.out.splitlines()[-1].endswith(", 2 failed [onnxruntime]")
    assert f"pyinspect: error: {folder / 'b.png'}: cannot decode image" in captured.err
    assert f"pyinspect: error: {folder / 'c.png'}: frame of 100x100 (HxW)" in captured.err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope.png"], "pyinspect: error: nope.png: no such file or folder"),
        (
            ["{tree}", "--backend", "onnxrutnime"],
            "invalid choice: 'onnxrutnime' (choose from 'auto', 'onnxruntime'",
        ),
        (["{tree}", "--threshold", "2"], "threshold must be in [0, 1]"),
    ],
)
def test_inspect_errors(tiny: TinyBundle, dagm_tree: Path, capsys, args, message: str) -> None:
    args = [a.replace("{tree}", str(dagm_tree)) for a in args]
    assert main(["inspect", *args, "--model", str(tiny.model_path)]) == 2
    assert message in capsys.readouterr().err


def test_inspect_missing_model(dagm_tree: Path, tmp_path: Path, capsys) -> None:
    assert main(["inspect", str(dagm_tree), "--model", str(tmp_path / "m.onnx")]) == 2
    assert (
        f"pyinspect: error: {tmp_path / 'm.onnx'}: model file not found" in capsys.readouterr().err
    )


def test_empty_folder(tiny: TinyBundle, tmp_path: Path, capsys) -> None:
    assert main(["inspect", str(tmp_path), "--model", str(tiny.model_path)]) == 2
    assert "no images found" in capsys.readouterr().err


def test_a_module_can_add_a_subcommand(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(cli, "_COMMANDS", dict(cli._COMMANDS))

    def add_arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("--n", type=int, default=1)

    def run(args: argparse.Namespace) -> int:
        print(f"hello {args.n}")
        return 3

    register_command(Command("hello", "say hello", add_arguments, run))
    assert main(["hello", "--n", "5"]) == 3
    assert capsys.readouterr().out == "hello 5\n"
    assert main(["--help"]) == 0
    assert "say hello" in capsys.readouterr().out
