"""The verdict-parity rule at its boundaries, the guard frames, the per-(model, level, precision)
cache and ``resolve_precision``'s decision, with fake classifiers; one real bf16 run through
OpenVINO where the CPU has native bf16."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from modelzoo import TinyBundle, write_tiny

from pyinspect.errors import BackendUnavailableError, PyInspectError
from pyinspect.precision_guard import (
    ORIENTATIONS,
    CacheKey,
    Difference,
    GuardFrames,
    GuardReport,
    NoGuardFramesError,
    ParityCache,
    accepts,
    cache_path,
    compare,
    cpu_feature_level,
    guard_frames,
    guard_path,
    model_sha256,
    orient,
    recorded_frames,
    resolve_precision,
    run_guard,
    synthetic_frames,
    write_guard_frames,
    write_synthetic_guard,
)
from pyinspect.result import InspectionResult
from pyinspect.spec import ModelSpec

ROOT = Path(__file__).resolve().parents[1]
PATCHES = 4


def result(texture: int, defective: bool, scores: float = 0.9) -> InspectionResult:
    kind = "defective" if defective else "good"
    return InspectionResult(
        texture,
        f"Texture {texture + 1}",
        defective,
        f"Texture {texture + 1} {kind}",
        patch_class=np.full(PATCHES, 2 * texture + defective, np.int32),
        patch_score=np.full(PATCHES, scores, np.float32),
    )


def numbered(n: int) -> list[tuple[str, np.ndarray]]:
    """n frames whose first two pixels encode their index (what the fakes read)."""
    out = []
    for i in range(n):
        f = np.zeros((40, 40), np.uint8)
        f[0, 0], f[0, 1] = i // 256, i % 256
        out.append((f"f{i}", f))
    return out


def index(frame: np.ndarray) -> int:
    return int(frame[0, 0]) * 256 + int(frame[0, 1])


def truth(i: int) -> tuple[int, bool]:
    return i % 6, bool(i % 3 == 0)


class Fakes:
    """Factories for a reference and a candidate that disagree on chosen frames; counts builds."""

    def __init__(
        self, *, defect_flips: set[int] = frozenset(), texture_flips: set[int] = frozenset()
    ) -> None:
        self.defect_flips, self.texture_flips = defect_flips, texture_flips
        self.built: list[str] = []
        self.closed = 0

    def reference(self) -> Any:
        self.built.append("reference")
        return _Closing(self, lambda f: result(*truth(index(f))))

    def candidate(self) -> Any:
        self.built.append("candidate")

        def run(f: np.ndarray) -> InspectionResult:
            i = index(f)
            texture, defective = truth(i)
            if i in self.texture_flips:
                texture = (texture + 1) % 6
            if i in self.defect_flips:
                defective = not defective
            return result(texture, defective, 0.85)

        return _Closing(self, run)


class _Closing:
    def __init__(self, owner: Fakes, run: Callable[[np.ndarray], InspectionResult]) -> None:
        self.owner, self._run = owner, run

    def run(self, frame: np.ndarray) -> InspectionResult:
        return self._run(frame)

    def close(self) -> None:
        self.owner.closed += 1


@pytest.fixture
def model(tmp_path: Path) -> TinyBundle:
    return write_tiny(tmp_path / "models", channels=1, patch=32, mean=[0.5], std=[0.25])


@pytest.fixture
def xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    return home / "pyinspect" / "parity"


# ---- the rule ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frames", "identical", "texture_flips", "want"),
    [
        (1000, 999, 0, True),  # exactly 99.9 %
        (1000, 998, 0, False),
        (1000, 1000, 0, True),
        (2000, 1999, 1, False),  # 99.95 %, but the one difference is a texture flip
        (999, 998, 0, False),  # under 1,000 frames 99.9 % leaves no room
        (999, 999, 0, True),
        (0, 0, 0, False),  # no evidence
    ],
)
def test_the_rule_at_its_boundaries(frames: int, identical: int, texture_flips: int, want: bool):
    assert accepts(frames, identical, texture_flips) is want


@pytest.mark.parametrize(
    ("n", "defect", "texture", "accepted"),
    [(1000, {5}, set(), True), (1000, {5, 7}, set(), False), (2000, set(), {11}, False)],
)
def test_compare_counts_exactly(n: int, defect: set, texture: set, accepted: bool) -> None:
    fakes = Fakes(defect_flips=defect, texture_flips=texture)
    report = compare(fakes.reference(), fakes.candidate(), numbered(n), candidate_name="bf16")
    assert report.frames == n
    assert report.identical == n - len(defect | texture)
    assert report.texture_flips == len(texture)
    assert report.accepted is accepted
    good = [i for i in defect if not truth(i)[1]]
    assert report.good_to_defective == len(good)
    assert report.defective_to_good == len(defect) - len(good)
    assert report.patch_class_changes == PATCHES * len(defect | texture)
    assert report.max_score_delta == pytest.approx(0.05, abs=1e-6)
    assert f"{n - len(defect | texture)}/{n} identical verdicts" in report.summary()
    back = GuardReport.from_dict(json.loads(json.dumps(report.to_dict())))
    assert back == report and back.accepted is accepted


def test_a_differing_frame_knows_its_flips() -> None:
    d = Difference("x", "Texture 1 good", "Texture 2 defective", (0, 1), (False, True))
    assert d.texture_flip and d.defect_flip == "good->defective"
    assert Difference("y", "a", "b", (3, 3), (True, False)).defect_flip == "defective->good"
    report = GuardReport("f32", "bf16", 3000, (d,))
    assert not report.accepted and report.texture_flips == 1 and report.identical == 2999


def test_the_summary_lists_the_first_differences_only() -> None:
    diffs = tuple(Difference(f"f{i}", "a", "b", (0, 0), (False, True)) for i in range(25))
    text = GuardReport("f32", "bf16", 1000, diffs).summary()
    assert "f9:" in text and "f10:" not in text and "and 15 more" in text
    assert "975/1000 identical verdicts" in text and "25 good->defective" in text


# ---- guard frames --------------------------------------------------------------------------


def test_orientations_are_the_training_dihedral_ones() -> None:
    img = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert np.array_equal(orient(img, 0), img)
    assert np.array_equal(orient(img, 2), img[::-1, ::-1])
    assert np.array_equal(orient(img, 4), img[:, ::-1])
    assert np.array_equal(orient(img, 6), img[::-1, :])
    assert orient(img, 6).flags.c_contiguous
    with pytest.raises(PyInspectError, match=r"orientation must be an int in 0\.\.7"):
        orient(img, 8)


def _images(folder: Path, n: int, size: tuple[int, int] = (40, 48)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    out = []
    for i in range(n):
        p = folder / f"img{i}.png"
        cv2.imwrite(str(p), rng.integers(0, 256, size, dtype=np.uint8))
        out.append(p)
    return out


def test_recorded_frames_are_relative_and_survive_a_moved_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    model = run / "student.onnx"
    images = _images(tmp_path / "data" / "good", 3)
    path = write_guard_frames(model, images, orientations=(0, 4))
    assert path == guard_path(model) == run / "student.onnx.guard.json"
    doc = json.loads(path.read_text())
    assert doc["images"] == [
        "../data/good/img0.png",
        "../data/good/img1.png",
        "../data/good/img2.png",
    ]
    frames = recorded_frames(path)
    assert frames.count == 6
    got = list(frames)
    assert [n for n, _ in got][:2] == ["../data/good/img0.png k0", "../data/good/img0.png k4"]
    first = cv2.imread(str(images[0]), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(got[0][1], first) and np.array_equal(got[1][1], first[:, ::-1])
    moved = tmp_path / "elsewhere" / "deeper"  # the run folder alone moved: written_in finds them
    shutil.copytree(run, moved)
    shutil.rmtree(run)
    again = recorded_frames(guard_path(moved / "student.onnx"))
    again.check()
    assert again.ident == frames.ident and len(list(again)) == 6


def test_missing_recorded_images_say_the_guard_cannot_run(tmp_path: Path) -> None:
    images = _images(tmp_path / "data", 3)
    write_guard_frames(tmp_path / "m.onnx", images)
    images[1].unlink()
    frames = recorded_frames(guard_path(tmp_path / "m.onnx"))
    with pytest.raises(NoGuardFramesError, match=r"1 of the 3 images .* missing.*img1\.png"):
        frames.check()


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b'{"format": "other"}',
        b'{"format": "pyinspect guard frames", "version": 1, "images": [3]}',
    ],
)
def test_a_broken_guard_record_is_named(tmp_path: Path, content: bytes) -> None:
    record = tmp_path / "m.onnx.guard.json"
    record.write_bytes(content)
    with pytest.raises(NoGuardFramesError, match=r"m\.onnx\.guard\.json cannot be read"):
        recorded_frames(record)


def test_a_dagm_model_without_a_record_gets_the_synthetic_set(model: TinyBundle) -> None:
    frames = guard_frames(model.model_path)
    assert frames.count == 6 * 2 * 25 * len(ORIENTATIONS) == 1200
    assert frames.ident.startswith("synth:v2:")


def test_a_dagm_model_can_record_its_generator_version(model: TinyBundle) -> None:
    path = write_synthetic_guard(model.model_path, version=1)
    frames = guard_frames(model.model_path)
    assert frames.count == 1200 and frames.ident.startswith("synth:v1:s20240:")
    assert frames.synth_version == 1
    doc = json.loads(path.read_text())
    doc["synth"]["version"] = "one"
    path.write_text(json.dumps(doc))
    with pytest.raises(NoGuardFramesError, match=r"'synth\.version' must be an int"):
        guard_frames(model.model_path)


def test_another_model_without_a_record_has_no_guard_frames(tmp_path: Path) -> None:
    classes = [{"name": f"c{i}", "texture": i // 2, "defective": bool(i % 2)} for i in range(12)]
    bundle = write_tiny(tmp_path, channels=1, patch=32, sidecar=False)
    spec = ModelSpec.for_classes(
        classes, [f"g{t}" for t in range(6)], patch=32, channels=1, mean=[0.5], std=[0.25]
    )
    with pytest.raises(
        NoGuardFramesError, match=r"tiny\.onnx\.guard\.json not found.*not a 12-class DAGM"
    ):
        guard_frames(bundle.model_path, spec)


def test_synthetic_frames_come_from_train_synth() -> None:
    synth = pytest.importorskip("train.synth", reason="train.synth is not importable here")
    frames = synthetic_frames(version=2, seed=5, per_class=1, orientations=(0, 4), textures=2)
    got = list(frames)
    assert frames.count == len(got) == 2 * 2 * 1 * 2
    img, _ = synth.synth_image(5, 1, 0, True, version=2)
    name, frame = got[-1]
    assert name == "synth-v2 t2 def 0 k4" and np.array_equal(frame, img[:, ::-1])


def test_without_train_synth_the_synthetic_set_cannot_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "train.synth", None)  # import now raises ImportError
    with pytest.raises(NoGuardFramesError, match=r"train\.synth\) is not importable"):
        synthetic_frames().check()


# ---- the cache and the decision --------------------------------------------------------------


def _resolve(
    model: TinyBundle,
    fakes: Fakes,
    *,
    n: int = 8,
    precision: str = "bf16",
    level: str = "test-level",
    **kw: Any,
):
    return resolve_precision(
        model.model_path,
        precision,
        fakes.candidate,
        fakes.reference,
        level,
        frames=kw.pop("frames", GuardFrames.of(numbered(n))),
        **kw,
    )


def test_f32_needs_no_guard(model: TinyBundle) -> None:
    fakes = Fakes()
    assert _resolve(model, fakes, precision="f32") == ("f32", None)
    assert fakes.built == [] and not cache_path(model.model_path).exists()


def test_an_accepted_precision_is_cached_beside_the_model_and_not_rerun(
    model: TinyBundle, xdg: Path
) -> None:
    fakes = Fakes()
    precision, report = _resolve(model, fakes)
    assert precision == "bf16" and report is not None and report.accepted
    assert fakes.built == ["reference", "candidate"] and fakes.closed == 2
    again, cached = _resolve(model, fakes)
    assert again == "bf16" and cached == report
    assert fakes.built == ["reference", "candidate"]  # the guard ran once
    doc = json.loads(cache_path(model.model_path).read_text())
    [entry] = doc["entries"]
    assert entry["model_sha256"] == model_sha256(model.model_path)
    assert entry["level"] == "test-level" and entry["precision"] == "bf16"
    assert entry["accepted"] is True and entry["report"]["frames"] == 8
    assert not xdg.exists()


def test_another_precision_level_or_model_runs_the_guard_again(
    model: TinyBundle, tmp_path: Path
) -> None:
    fakes = Fakes()
    _resolve(model, fakes)
    _resolve(model, fakes, precision="f16")
    _resolve(model, fakes, level="other-level")
    assert fakes.built.count("candidate") == 3
    old_sha = model_sha256(model.model_path)
    write_tiny(model.model_path.parent, channels=1, patch=32, mean=[0.5], std=[0.25], seed=7)
    assert model_sha256(model.model_path) != old_sha
    _resolve(model, fakes)  # the stale entries (old sha) are not used ...
    assert fakes.built.count("candidate") == 4
    entries = json.loads(cache_path(model.model_path).read_text())["entries"]
    assert len(entries) == 4  # ... and not dropped
    assert {e["model_sha256"] for e in entries} == {old_sha, model_sha256(model.model_path)}
    _resolve(model, fakes)
    assert fakes.built.count("candidate") == 4


def test_the_frame_set_is_part_of_the_key(model: TinyBundle) -> None:
    fakes = Fakes()
    _resolve(model, fakes, n=8)
    _resolve(model, fakes, n=9)
    assert fakes.built.count("candidate") == 2


def test_a_rejected_precision_runs_f32_and_says_why(
    model: TinyBundle, caplog: pytest.LogCaptureFixture
) -> None:
    fakes = Fakes(defect_flips={2, 3})
    with caplog.at_level(logging.WARNING, "pyinspect"):
        precision, report = _resolve(model, fakes)
    assert precision == "f32" and report is not None and not report.accepted
    text = caplog.text
    assert "precision 'bf16' rejected by the verdict-parity guard, running f32" in text
    assert "6/8 identical verdicts" in text and "1 good->defective, 1 defective->good" in text
    assert "f2: f32 says" in text
    caplog.clear()
    with caplog.at_level(logging.WARNING, "pyinspect"):
        assert _resolve(model, fakes)[0] == "f32"  # cached rejection: same warning, no rerun
    assert fakes.built.count("candidate") == 1 and "rejected" in caplog.text


def test_a_factory_that_cannot_build_means_f32(
    model: TinyBundle, caplog: pytest.LogCaptureFixture
) -> None:
    def no_bf16() -> Any:
        msg = "this CPU offers no native bf16"
        raise BackendUnavailableError(msg)

    fakes = Fakes()
    with caplog.at_level(logging.WARNING, "pyinspect"):
        got = resolve_precision(
            model.model_path, "bf16", no_bf16, fakes.reference, "lvl", frames=numbered(4)
        )
    assert got == ("f32", None)
    assert "guard could not run: this CPU offers no native bf16" in caplog.text
    assert not cache_path(model.model_path).exists()  # nothing learnt, nothing cached
    assert fakes.closed == 1  # the reference built before the failure was closed


def test_no_guard_frames_means_f32_with_the_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    images = _images(tmp_path / "data", 2, size=(20, 24))
    bundle = write_tiny(tmp_path / "m", channels=1, patch=32, mean=[0.5], std=[0.25])
    write_guard_frames(bundle.model_path, images)
    images[0].unlink()
    fakes = Fakes()
    with caplog.at_level(logging.WARNING, "pyinspect"):
        got = resolve_precision(bundle.model_path, "bf16", fakes.candidate, fakes.reference, "l")
    assert got == ("f32", None)
    assert "no guard frames: 1 of the 2 images" in caplog.text
    assert fakes.built == []  # nothing is built when there is nothing to run on


def test_recorded_small_frames_are_fitted_by_the_sidecar_policy(tmp_path: Path) -> None:
    bundle = write_tiny(
        tmp_path / "m", channels=1, patch=32, mean=[0.5], std=[0.25], resize="upscale"
    )
    write_guard_frames(bundle.model_path, _images(tmp_path / "data", 2, size=(20, 24)))
    seen: list[tuple[int, ...]] = []

    def path() -> Callable[[np.ndarray], InspectionResult]:
        def run(frame: np.ndarray) -> InspectionResult:
            seen.append(frame.shape)
            return result(0, False)

        return run

    report = run_guard(bundle.model_path, "bf16", path, path)
    assert report.frames == 2 * len(ORIENTATIONS) and report.accepted
    assert set(seen) == {(32, 38)}  # 20×24 upscaled so the short side is the 32 patch


def _read_only_folder_works() -> bool:
    return os.geteuid() != 0 if hasattr(os, "geteuid") else False


@pytest.mark.skipif(not _read_only_folder_works(), reason="as root chmod does not stop writes")
def test_a_read_only_model_folder_caches_in_the_user_folder(model: TinyBundle, xdg: Path) -> None:
    folder = model.model_path.parent
    folder.chmod(0o555)
    try:
        fakes = Fakes()
        assert _resolve(model, fakes)[0] == "bf16"
        assert _resolve(model, fakes)[0] == "bf16"
    finally:
        folder.chmod(0o755)
    assert fakes.built.count("candidate") == 1
    assert not cache_path(model.model_path).exists()
    assert (xdg / f"{model_sha256(model.model_path)}.json").is_file()


def test_an_unwritable_beside_location_caches_in_the_user_folder(
    model: TinyBundle, xdg: Path, tmp_path: Path
) -> None:
    """Works as root too: the beside file's folder is a regular file, so no write can succeed."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    cache = ParityCache(model.model_path, beside=blocker / "x.parity.json")
    fakes = Fakes()
    assert _resolve(model, fakes, cache=cache)[0] == "bf16"
    assert _resolve(model, fakes, cache=cache)[0] == "bf16"
    assert fakes.built.count("candidate") == 1
    user = xdg / f"{model_sha256(model.model_path)}.json"
    assert json.loads(user.read_text())["entries"][0]["precision"] == "bf16"
    assert blocker.read_text() == "not a folder"


def test_a_folder_in_the_cache_files_place_is_left_alone(model: TinyBundle, xdg: Path) -> None:
    cache_path(model.model_path).mkdir()
    fakes = Fakes()
    assert _resolve(model, fakes)[0] == "bf16"
    assert cache_path(model.model_path).is_dir()
    assert (xdg / f"{model_sha256(model.model_path)}.json").is_file()


def test_no_location_at_all_still_decides_and_says_so(
    model: TinyBundle, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    cache = ParityCache(model.model_path, beside=blocker / "x.json", user_dir=blocker / "u")
    with caplog.at_level(logging.WARNING, "pyinspect"):
        assert _resolve(model, Fakes(), cache=cache)[0] == "bf16"
    assert "could not be cached" in caplog.text and "runs again next time" in caplog.text


@pytest.mark.parametrize(
    "garbage",
    [b"\x00\xffnot json", b"[1, 2]", b'{"format": "pyinspect precision parity", "version": 1}'],
)
def test_a_corrupt_cache_is_kept_aside_and_replaced(
    model: TinyBundle, xdg: Path, caplog: pytest.LogCaptureFixture, garbage: bytes
) -> None:
    path = cache_path(model.model_path)
    path.write_bytes(garbage)
    fakes = Fakes()
    with caplog.at_level(logging.WARNING, "pyinspect"):
        assert _resolve(model, fakes)[0] == "bf16"
    assert "treated as missing" in caplog.text and "renamed to" in caplog.text
    aside = path.with_name(path.name + ".corrupt")
    assert aside.read_bytes() == garbage  # nothing is deleted
    assert json.loads(path.read_text())["entries"][0]["accepted"] is True
    path.write_bytes(garbage)  # corrupted again: a second name, the first kept
    _resolve(model, fakes)
    assert aside.read_bytes() == garbage
    assert path.with_name(path.name + ".corrupt.2").read_bytes() == garbage
    assert fakes.built.count("candidate") == 2


def test_a_newer_cache_format_is_not_overwritten(model: TinyBundle, xdg: Path) -> None:
    path = cache_path(model.model_path)
    newer = json.dumps({"format": "pyinspect precision parity", "version": 99, "entries": []})
    path.write_text(newer)
    assert _resolve(model, Fakes())[0] == "bf16"
    assert path.read_text() == newer
    assert (xdg / f"{model_sha256(model.model_path)}.json").is_file()


def test_unrelated_entries_are_kept_when_one_is_written(model: TinyBundle) -> None:
    path = cache_path(model.model_path)
    other = {
        **CacheKey("0" * 64, "l", "bf16", "given:x").fields(),
        "accepted": False,
        "report": GuardReport("f32", "bf16", 1).to_dict(),
        "mine": "kept",
    }
    path.write_text(
        json.dumps({"format": "pyinspect precision parity", "version": 1, "entries": [other]})
    )
    _resolve(model, Fakes())
    entries = json.loads(path.read_text())["entries"]
    assert entries[0] == other and len(entries) == 2


def test_level_and_precision_are_checked(model: TinyBundle) -> None:
    with pytest.raises(PyInspectError, match="precision must be a non-empty str"):
        resolve_precision(model.model_path, "", Fakes().candidate, Fakes().reference, "l")
    with pytest.raises(PyInspectError, match="level must be a non-empty str"):
        resolve_precision(model.model_path, "bf16", Fakes().candidate, Fakes().reference, "")


def test_the_cpu_level_names_the_machine_and_its_features() -> None:
    import platform

    level = cpu_feature_level()
    assert level.startswith(platform.machine() + " ")
    info = Path("/proc/cpuinfo")
    flags: list[str] = []
    if info.is_file():
        lines = [ln for ln in info.read_text().splitlines() if ln.startswith("flags")]
        flags = lines[0].split(":", 1)[1].split() if lines else []
    for flag in ("avx2", "avx512f", "avx512_bf16"):
        assert (flag in level.split()[1].split("+")) == (flag in flags)


# ---- a real lower precision ---------------------------------------------------------------------


def _bf16_problem() -> str:
    try:
        import openvino

        from pyinspect.backends.openvino import cpu_precisions
        from pyinspect.runners.openvino_native import load_native
    except ImportError as exc:
        return f"openvino is not installed ({exc})"
    try:
        load_native()
    except PyInspectError as exc:
        return str(exc)
    if "BF16" not in cpu_precisions(openvino.Core()):
        return "this CPU has no native bf16 (AVX512-BF16 or AMX)"
    return ""


@pytest.mark.skipif(bool(_bf16_problem()), reason=_bf16_problem() or "bf16 available")
def test_openvino_bf16_is_guarded_for_real(tmp_path: Path) -> None:
    from pyinspect.runners.openvino_native import OpenVinoFrameRunner

    pytest.importorskip("train.synth", reason="train.synth makes the frames")
    for name in ("student.onnx", "student.onnx.json"):
        shutil.copy(ROOT / "models" / name, tmp_path / name)
    model = tmp_path / "student.onnx"
    trained_on = guard_frames(ROOT / "models" / "student.onnx").synth_version  # its training data
    frames = synthetic_frames(version=trained_on, per_class=1, orientations=(0,))
    built: list[str] = []

    def runner(precision: str) -> Callable[[], OpenVinoFrameRunner]:
        def make() -> OpenVinoFrameRunner:
            r = OpenVinoFrameRunner(model, precision=precision, threads=1)
            built.append(r.compiled_precision)
            return r

        return make

    got, report = resolve_precision(
        model, "bf16", runner("bf16"), runner("f32"), cpu_feature_level(), frames=frames
    )
    assert built == ["f32", "bf16"]  # a real lower-precision path ran
    assert report is not None and report.frames == 12 and report.patches == 12 * 9
    assert 0 < report.max_score_delta < 0.2  # bf16 changes the numbers, not by much
    assert got == ("bf16" if report.accepted else "f32")
    assert report.identical == 12 - len(report.differences)
    again = resolve_precision(
        model, "bf16", runner("bf16"), runner("f32"), cpu_feature_level(), frames=frames
    )
    assert again == (got, report) and len(built) == 2
    assert cache_path(model).is_file()
