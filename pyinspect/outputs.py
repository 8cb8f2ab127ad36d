"""Writing outputs without losing anything a user has: atomic, checked, never replacing a file.

Every file pyinspect writes for a user (overlays, a synthetic set's recipe) goes through
``write_new``: the bytes go to a temporary file in the target's folder, are flushed to disk, and
the temporary file is then linked under its final name, which fails if that name exists. A reader
never sees a half-written file, a crash leaves at most a hidden ``.<name>.*.tmp``, and an input or
any other file already there is never overwritten. Every failure is an ``OutputError`` naming the
file. Files pyinspect owns (a cache, a guard record, a plot or plan it wrote before) are rewritten
with ``replace_file``: the same finished temporary file, renamed over the old one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path

from pyinspect.errors import PyInspectError

__all__ = ["OutputError", "OutputExistsError", "check_output_folder", "replace_file", "write_new"]

# link() is not offered by every filesystem (FAT, some network mounts): there the name is first
# claimed with O_EXCL and then atomically replaced by the finished temporary file.
_NO_LINK = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK}


class OutputError(PyInspectError, OSError):
    """A file or folder pyinspect was asked to write could not be written."""


class OutputExistsError(OutputError, FileExistsError):
    """The name is taken: pyinspect never replaces a file it did not create."""


def check_output_folder(folder: Path, what: str) -> Path:
    """Create ``folder`` (and its parents) if needed and prove a file can be written in it, so
    that an unusable folder (under a regular file, read-only, immutable, ``/proc``) is refused
    before any work starts. ``what`` names the option in the message (``--overlay``)."""
    if folder.exists() and not folder.is_dir():
        msg = f"{what} {folder}: exists and is not a folder"
        raise OutputError(msg)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".pyinspect-probe.", suffix=".tmp", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        msg = f"{what} {folder}: cannot write there: {exc.strerror or exc}"
        raise OutputError(msg) from exc
    return folder


def write_new(path: Path, data: bytes) -> Path:
    """Write ``data`` as the new file ``path``, atomically; ``OutputExistsError`` if the name is
    taken (a file, a folder, a link), ``OutputError`` for any other failure (disk full, read-only,
    no permission), each naming ``path``."""
    if os.path.lexists(path):
        raise _exists(path)
    tmp: str | None = None
    try:
        tmp = _finished_temp(path, data)
        _publish(tmp, path)
    except FileExistsError:
        raise _exists(path) from None
    except OSError as exc:
        msg = f"{path}: cannot write: {exc.strerror or exc}"
        raise OutputError(msg) from exc
    finally:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    return path


def replace_file(path: Path, data: bytes) -> None:
    """Put ``data`` at ``path`` atomically, replacing what is there: only for a file pyinspect
    owns (a cache, a guard record, a plot or plan it wrote). A reader sees the old bytes or the
    new, never half. ``OSError`` as raised (the caller names what it was writing)."""
    tmp = _finished_temp(path, data)
    try:
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _finished_temp(path: Path, data: bytes) -> str:
    """A temporary file beside ``path`` holding ``data``, flushed to disk, with the mode a new
    file gets (mkstemp makes it 0600; outputs are shared like their inputs)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return tmp


def _publish(tmp: str, path: Path) -> None:
    """Give the finished ``tmp`` the name ``path`` unless that name exists."""
    try:
        os.link(tmp, path)
        return
    except OSError as exc:
        if exc.errno not in _NO_LINK or os.path.lexists(path):
            raise
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))  # claim the name
    os.replace(tmp, path)  # replaces only the empty file this call just created


def _exists(path: Path) -> OutputExistsError:
    kind = "a folder" if path.is_dir() else "a file"
    msg = f"{path}: already exists ({kind}); pyinspect never replaces a file it did not create"
    return OutputExistsError(msg)
