"""``pyinspect.outputs``: a new file never replaces one; an owned file is replaced whole; no
temporary file is left behind either way."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from pyinspect.outputs import OutputError, OutputExistsError, replace_file, write_new


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_write_new_writes_once_and_refuses_the_taken_name(tmp_path: Path) -> None:
    target = tmp_path / "overlay.png"
    write_new(target, b"first")
    with pytest.raises(OutputExistsError, match=r"overlay\.png"):
        write_new(target, b"second")
    assert target.read_bytes() == b"first"
    assert _leftovers(tmp_path) == []


def test_replace_file_replaces_whole_with_the_mode_of_a_new_file(tmp_path: Path) -> None:
    target = tmp_path / "cache.json"
    target.write_bytes(b"old bytes, longer than the new ones")
    replace_file(target, b"new")
    assert target.read_bytes() == b"new"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert _leftovers(tmp_path) == []


def test_replace_file_creates_a_missing_file(tmp_path: Path) -> None:
    target = tmp_path / "guard.json"
    replace_file(target, b"{}")
    assert target.read_bytes() == b"{}"


def test_replace_file_into_an_unusable_folder_raises_and_leaves_the_old_file(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"keep")
    with pytest.raises(OSError):  # a folder under a regular file: fails as root too
        replace_file(blocker / "cache.json", b"x")
    assert blocker.read_bytes() == b"keep"


def test_replace_file_onto_a_folder_fails_and_cleans_its_temporary(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    with pytest.raises(OSError):
        replace_file(tmp_path / "taken", b"x")
    assert (tmp_path / "taken").is_dir()
    assert _leftovers(tmp_path) == []


def test_write_new_under_a_device_file_is_an_output_error_naming_the_file(tmp_path: Path) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("/dev/full is absent on this system")
    with pytest.raises(OutputError, match=r"x\.bin"):
        write_new(Path("/dev/full") / "x.bin", b"x")
