"""Station sources: the folder watcher (complete files only, each once, across restarts; moves
never overwrite), OpenCV files, iterables (copied), the pylon emulator (in a subprocess: the
environment variable must precede pylon's first use), harvesters (where a producer exists)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from modelzoo import textured_frame

from pyinspect.sources import (
    FolderSource,
    IterableSource,
    SourceEnded,
    SourceError,
    VideoSource,
)
from pyinspect.sources.folder import move_without_overwrite
from pyinspect.sources.harvesters import find_producers

ROOT = Path(__file__).resolve().parents[1]
STOP = threading.Event()


def drain(src: FolderSource, seconds: float) -> list[str]:
    """Names grabbed (and acked ok) within ``seconds``."""
    names = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        g = src.grab(STOP)
        if g is not None:
            names.append(Path(g.path).name)  # type: ignore[arg-type]
            src.ack(g, ok=not names[-1].startswith("bad"))
    return names


def test_folder_source_takes_complete_files_once_across_restarts(tmp_path: Path) -> None:
    inbox, done, failed = tmp_path / "in", tmp_path / "done", tmp_path / "failed"
    inbox.mkdir()
    state = tmp_path / "state.jsonl"
    kwargs = {"state_file": state, "done": done, "failed": failed, "settle_s": 0.15,
              "poll_s": 0.03}  # fmt: skip
    cv2.imwrite(str(inbox / "a.png"), textured_frame(seed=0))
    (inbox / "bad.png").write_bytes(b"not an image")
    (inbox / "notes.txt").write_text("not an image name")
    src = FolderSource("f", inbox, **kwargs)
    src.open()
    growing = inbox / "b.png"
    got = []
    with open(growing, "wb") as fh:  # a writer still copying: size changes under the watcher
        for _ in range(4):
            fh.write(b"\0" * 1000)
            fh.flush()
            got += drain(src, 0.08)
            assert "b.png" not in got
    cv2.imwrite(str(growing), textured_frame(seed=1))
    got += drain(src, 0.6)
    assert sorted(got) == ["a.png", "b.png", "bad.png"]
    src.close()
    assert sorted(p.name for p in done.iterdir()) == ["a.png", "b.png"]
    assert [p.name for p in failed.iterdir()] == ["bad.png"]
    # the same name arrives again while done/ holds one: renamed, not overwritten
    cv2.imwrite(str(inbox / "a.png"), textured_frame(seed=2))
    again = FolderSource("f", inbox, **kwargs)  # a restart: the state file is read
    again.open()
    assert drain(again, 0.5) == ["a.png"]
    again.close()
    assert sorted(p.name for p in done.iterdir()) == ["a-1.png", "a.png", "b.png"]
    assert len([json.loads(x) for x in state.read_text().splitlines()]) == 4


def test_folder_state_alone_keeps_files_once_without_moving(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "x.png"), textured_frame(seed=0))
    kwargs = {"state_file": tmp_path / "s" / "state.jsonl", "settle_s": 0.05, "poll_s": 0.02}
    first = FolderSource("f", tmp_path, **kwargs)
    first.open()
    assert drain(first, 0.3) == ["x.png"]
    first.close()
    second = FolderSource("f", tmp_path, **kwargs)
    second.open()
    assert drain(second, 0.3) == []  # inspected before the restart
    second.close()
    assert (tmp_path / "x.png").exists()  # never moved nor deleted


def test_move_without_overwrite_counts_up(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    for k in range(3):
        (tmp_path / "f.png").write_text(str(k))
        move_without_overwrite(tmp_path / "f.png", tmp_path / "d")
    assert {p.name: p.read_text() for p in (tmp_path / "d").iterdir()} == {
        "f.png": "0", "f-1.png": "1", "f-2.png": "2",
    }  # fmt: skip


def test_missing_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"folder source 'f': .*nowhere does not exist"):
        FolderSource("f", tmp_path / "nowhere").open()


def test_iterable_source_copies_arrays() -> None:
    buf = np.zeros((4, 4), np.uint8)
    src = IterableSource([buf, buf, None, "x.png"], "it")
    g1 = src.grab(STOP)
    buf[...] = 7  # the producer refills its buffer
    g2 = src.grab(STOP)
    assert g1 is not None and g2 is not None
    assert int(g1.image.max()) == 0 and int(g2.image.max()) == 7  # type: ignore[union-attr]
    assert src.grab(STOP).error == "no frame (got None)"  # type: ignore[union-attr]
    assert src.grab(STOP).path == "x.png"  # type: ignore[union-attr]
    with pytest.raises(SourceEnded):
        src.grab(STOP)


def test_iterable_source_takes_only_arrays_nobody_else_holds() -> None:
    """A new array per frame is taken as it is (no copy); an array someone else can still reach
    (a list's, a kept buffer's view, an array over a kept bytearray, a generator's local
    variable until it resumes) is copied."""
    made: list[int] = []  # the producer's data pointers (ints: no reference to the arrays)

    def noted(a: np.ndarray) -> np.ndarray:
        made.append(a.ctypes.data)
        return a

    def fresh() -> Iterator[np.ndarray]:
        for i in range(3):
            yield noted(np.full((4, 4), i, np.uint8))

    def local() -> Iterator[np.ndarray]:
        for i in range(2):
            a = noted(np.full((4, 4), i, np.uint8))
            yield a  # the generator still holds it (and could change it when resumed)

    kept = [np.full((4, 4), i, np.uint8) for i in range(2)]
    buf = np.zeros((8, 4), np.uint8)
    raw = bytearray(16)
    cases: dict[str, Iterable[np.ndarray]] = {
        "list": kept,
        "view": (buf[4 * i : 4 * i + 4] for i in range(2)),
        "bytearray": (np.frombuffer(raw, np.uint8).reshape(4, 4) for _ in range(2)),
    }
    src = IterableSource(fresh(), "fresh")
    grabs = [src.grab(STOP) for _ in range(3)]
    assert [g.image.ctypes.data for g in grabs] == made  # type: ignore[union-attr]
    assert [int(g.image[0, 0]) for g in grabs] == [0, 1, 2]  # type: ignore[index]
    made.clear()
    src = IterableSource(local(), "local")
    assert src.grab(STOP).image.ctypes.data != made[0]  # type: ignore[union-attr]
    for name, frames in cases.items():
        src = IterableSource(frames, name)
        g = src.grab(STOP)
        assert g is not None and isinstance(g.image, np.ndarray)
        assert not np.shares_memory(g.image, buf) and not np.shares_memory(g.image, kept[0])
        assert g.image.ctypes.data != np.frombuffer(raw, np.uint8).ctypes.data, name


def test_video_file_ends_or_loops(tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 25.0, (256, 256))
    for s in range(3):
        w.write(cv2.cvtColor(textured_frame(256, 256, seed=s), cv2.COLOR_GRAY2BGR))
    w.release()
    src = VideoSource("v", str(path))
    src.open()
    got = [src.grab(STOP) for _ in range(3)]
    assert all(g is not None and g.image.shape == (256, 256, 3) for g in got)  # type: ignore[union-attr]
    with pytest.raises(SourceEnded):
        src.grab(STOP)
    src.close()
    looping = VideoSource("v", str(path), loop=True)
    frames = [g for g in (looping.grab(STOP) for _ in range(8)) if g is not None]
    looping.close()
    assert len(frames) >= 6


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("ftp://cam/stream", "not a URL OpenCV reads"),
        ("rtsp://", "not a URL OpenCV reads"),
        ("/no/such/clip.avi", "no such file"),
    ],
)
def test_bad_video_uris_are_named(uri: str, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        VideoSource("v", uri)


PYLON_PROBE = r"""
import json, os, sys, threading
from pyinspect.sources import PylonSource, SourceError
folder = sys.argv[1]
src = PylonSource("cam", serial="0815-0000", exposure_us=100, gain=0.0, trigger_mode="On",
                  trigger_source="Software", fps=200, buffers=2,  # 6 grabs reuse both buffers
                  features={"Width": 512, "Height": 512, "TestImageSelector": "Off",
                            "ImageFileMode": "On", "ImageFilename": folder})
src.open()
stop = threading.Event()
grabs = [src.grab(stop) for _ in range(6)]
cam = src._cam
out = {"values": [int(g.image[0, 0]) for g in grabs], "owns": [bool(g.image.flags.owndata)
       for g in grabs], "stamp": [g.camera_timestamp for g in grabs],
       "exposure": cam.ExposureTime.Value, "trigger": cam.TriggerMode.Value}
src.close()
try:
    PylonSource("cam", features={"Widht": 512}).open()
except SourceError as exc:
    out["bad_feature"] = str(exc)
print(json.dumps(out))
"""


def test_pylon_emulator_serves_a_folder_with_features_passed_through(tmp_path: Path) -> None:
    pytest.importorskip("pypylon", reason="pypylon (the line extra) is not installed")
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        cv2.imwrite(str(images / f"{i:03d}.png"), np.full((512, 512), 10 + 40 * i, np.uint8))
    env = {**os.environ, "PYLON_CAMEMU": "1"}
    probe = tmp_path / "probe.py"
    probe.write_text(PYLON_PROBE)
    done = subprocess.run([sys.executable, str(probe), str(images)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["values"] == [10, 50, 90, 10, 50, 90]  # in name order, cycling
    assert all(out["owns"])  # copied out of the SDK's buffer
    assert out["exposure"] == 100 and out["trigger"] == "On"
    assert "no feature 'Widht'. Did you mean 'Width'?" in out["bad_feature"]


def test_harvesters_with_a_genicam_producer() -> None:
    pytest.importorskip("harvesters", reason="harvesters is not installed (pip install harvesters)")
    producers = find_producers()
    if not producers:
        pytest.skip("no GenTL producer (.cti) in GENICAM_GENTL64_PATH on this machine")
    from pyinspect.sources import HarvestersSource

    src = HarvestersSource("h", cti=str(producers[0]))
    src.open()
    try:
        grabs = [g for g in (src.grab(STOP) for _ in range(20)) if g is not None]
    finally:
        src.close()
    assert grabs and all(g.image.dtype == np.uint8 for g in grabs)  # type: ignore[union-attr]
