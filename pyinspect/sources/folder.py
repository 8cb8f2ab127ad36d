"""A folder watcher: each new image file, once complete, inspected once, also across restarts.

A file is complete when its size and modification time stay the same for ``settle_s`` (a writer
that is still copying changes one of them). Files already inspected are listed in a state file
(JSON lines: name, size, mtime_ns, ok), written when a file's record is made, so a restart
inspects only the rest; a file rewritten under the same name (new size or mtime) is new. With
``done`` / ``failed`` set, an inspected file is moved there (a verdict / an error); a name taken
there gets ``-1``, ``-2``, ... before its suffix: nothing is overwritten or deleted. A file whose
record was not made before a crash is inspected again after the restart (at least once).
"""

from __future__ import annotations

import errno
import fnmatch
import json
import logging
import os
import shutil
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from pyinspect.sources.base import Grab, Source, SourceError, grab_now

__all__ = ["FolderSource", "move_without_overwrite"]

log = logging.getLogger("pyinspect.watch")

IMAGE_PATTERNS = ("*.png", "*.bmp", "*.jpg", "*.jpeg", "*.tif", "*.tiff", "*.pgm", "*.ppm")


def move_without_overwrite(src: Path, folder: Path) -> Path:
    """Move ``src`` into ``folder`` under its name, or ``stem-1.suffix``, ``stem-2.suffix``, ...
    when taken. ``os.link`` refuses an existing name atomically (a rename would replace it);
    across file systems the file is copied to an exclusively created name first."""
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(100_000):
        dst = folder / (src.name if k == 0 else f"{src.stem}-{k}{src.suffix}")
        try:
            os.link(src, dst)
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP):
                raise
            try:
                with open(src, "rb") as fin, open(dst, "xb") as fout:
                    shutil.copyfileobj(fin, fout)
            except FileExistsError:
                continue
        os.unlink(src)
        return dst
    msg = f"{folder}: no free name for {src.name}"
    raise OSError(msg)


class FolderSource(Source):
    """New files in ``folder`` matching ``patterns`` (images by default), oldest first."""

    kind = "folder"

    def __init__(self, name: str, folder: str | os.PathLike[str], *,
                 patterns: tuple[str, ...] = IMAGE_PATTERNS,
                 state_file: str | os.PathLike[str] | None = None,
                 done: str | os.PathLike[str] | None = None,
                 failed: str | os.PathLike[str] | None = None,
                 settle_s: float = 0.5, poll_s: float = 0.2, **kwargs: Any) -> None:  # fmt: skip
        kwargs.setdefault("policy", "block")
        super().__init__(name, **kwargs)
        self.folder = Path(folder)
        self.patterns = patterns
        self.state_file = Path(state_file) if state_file else self.folder / ".pyinspect-state.jsonl"
        self.done = Path(done) if done else None
        self.failed = Path(failed) if failed else None
        self.settle_s = settle_s
        self.poll_s = poll_s
        self._seen: set[tuple[str, int, int]] = set()  # inspected (name, size, mtime_ns)
        self._queued: set[str] = set()  # handed out, record not made yet
        self._watch: dict[str, tuple[int, int, float]] = {}  # name -> (size, mtime, since)
        self._ready: deque[tuple[str, int, int]] = deque()
        self._lock = threading.Lock()
        self._state_fh: Any = None
        self._last_scan = 0.0

    def open(self) -> None:
        if not self.folder.is_dir():
            what = "is not a folder" if self.folder.exists() else "does not exist"
            msg = f"folder source {self.name!r}: {self.folder} {what}"
            raise SourceError(msg)
        if self.state_file.exists():
            self._load_state()
        try:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            self._state_fh = open(self.state_file, "a", encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            msg = f"folder source {self.name!r}: state file {self.state_file}: {exc.strerror}"
            raise SourceError(msg) from exc

    def _load_state(self) -> None:
        with open(self.state_file, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                try:
                    doc = json.loads(line)
                    self._seen.add((doc["name"], int(doc["size"]), int(doc["mtime_ns"])))
                except (ValueError, KeyError, TypeError):
                    log.warning("%s:%d: unreadable state line skipped", self.state_file, n)

    def grab(self, stop: threading.Event) -> Grab | None:
        if not self._ready:
            wait = self._last_scan + self.poll_s - time.monotonic()
            if wait > 0 and stop.wait(wait):
                return None
            self._scan()
            if not self._ready:
                return None
        name, size, mtime = self._ready.popleft()
        path = self.folder / name
        return grab_now(str(path), path=str(path), token=(name, size, mtime))

    def _scan(self) -> None:
        self._last_scan = now = time.monotonic()
        found: list[tuple[int, str, int]] = []
        try:
            entries = list(os.scandir(self.folder))
        except OSError as exc:
            log.error("folder source %r: cannot list %s: %s", self.name, self.folder, exc)
            return
        with self._lock:
            for e in entries:
                if e.name.startswith(".") or not any(
                    fnmatch.fnmatch(e.name.lower(), p) for p in self.patterns
                ):
                    continue
                try:
                    if not e.is_file(follow_symlinks=False):
                        continue
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                key = (e.name, st.st_size, st.st_mtime_ns)
                if key in self._seen or e.name in self._queued:
                    continue
                prev = self._watch.get(e.name)
                if prev is None or prev[:2] != (st.st_size, st.st_mtime_ns):
                    self._watch[e.name] = (st.st_size, st.st_mtime_ns, now)
                    continue
                if now - prev[2] >= self.settle_s:
                    found.append((st.st_mtime_ns, e.name, st.st_size))
            for mtime, name, size in sorted(found):
                del self._watch[name]
                self._queued.add(name)
                self._ready.append((name, size, mtime))

    def ack(self, grab: Grab, ok: bool) -> None:
        name, size, mtime = grab.token
        target = self.done if ok else self.failed
        moved = None
        if target is not None:
            try:
                moved = move_without_overwrite(self.folder / name, target)
            except OSError as exc:  # the file stays; the state file still says it was inspected
                log.error("folder source %r: cannot move %s to %s: %s", self.name, name,
                          target, exc)  # fmt: skip
        line = json.dumps({"name": name, "size": size, "mtime_ns": mtime, "ok": ok,
                           "moved_to": None if moved is None else str(moved)})  # fmt: skip
        with self._lock:
            self._seen.add((name, size, mtime))
            self._queued.discard(name)
            if self._state_fh is not None:
                try:
                    self._state_fh.write(line + "\n")
                    self._state_fh.flush()
                except OSError as exc:
                    log.error("folder source %r: state file %s: %s", self.name,
                              self.state_file, exc)  # fmt: skip

    def release(self, grab: Grab) -> None:
        with self._lock:
            self._queued.discard(grab.token[0])  # seen again by the next scan

    def close(self) -> None:
        with self._lock:
            if self._state_fh is not None:
                try:
                    self._state_fh.close()
                except OSError as exc:
                    log.error("folder source %r: state file %s: %s", self.name,
                              self.state_file, exc)  # fmt: skip
                self._state_fh = None
