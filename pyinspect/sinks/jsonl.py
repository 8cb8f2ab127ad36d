"""JSON lines file: one record per line, rotated by size, never overwritten.

Each batch is one ``write`` on an unbuffered file, so a reader (``tail -f``) sees whole lines and a
failed write (a full disk) is cut back to the last whole line, spooled and retried. When the file
would pass ``max_bytes`` it is renamed to ``<stem>.<n><suffix>`` (n = 1, 2, ...; ``os.link``
refuses a taken name, so a rotation never replaces a file) and a new one is started; ``keep`` > 0
deletes rotated files beyond the newest ``keep`` (0 keeps them all).
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import IO, Any

from pyinspect.sinks.base import Record, Sink, SinkDown

__all__ = ["JsonlSink"]


class JsonlSink(Sink):
    kind = "jsonl"

    def __init__(self, name: str, path: str | os.PathLike[str], *, max_bytes: int = 100 << 20,
                 keep: int = 0, fsync: bool = False, **kwargs: Any) -> None:  # fmt: skip
        super().__init__(name, **kwargs)
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.keep = keep
        self.fsync = fsync
        self._fh: IO[bytes] | None = None
        self._size = 0
        self._rotated = re.compile(
            re.escape(self.path.stem) + r"\.(\d+)" + re.escape(self.path.suffix) + "$"
        )

    def rotated_files(self) -> list[Path]:
        """Rotated files of this sink, oldest first."""
        found = []
        for p in self.path.parent.glob(f"{self.path.stem}.*{self.path.suffix}"):
            m = self._rotated.match(p.name)
            if m:
                found.append((int(m[1]), p))
        return [p for _, p in sorted(found)]

    def connect(self) -> None:
        if self._fh is not None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "ab", buffering=0)  # noqa: SIM115
            self._size = self._fh.seek(0, os.SEEK_END)
        except OSError as exc:
            msg = f"{self.path}: {exc.strerror or exc}"
            raise SinkDown(msg) from exc

    def deliver(self, records: list[Record]) -> None:
        self.connect()
        chunk: list[bytes] = []
        size = 0
        for r in records:  # a file never passes max_bytes (unless one record is larger)
            n = len(r.line) + 1
            if self._size + size + n > self.max_bytes and self._size + size > 0:
                self._write(chunk)
                chunk, size = [], 0
                self._rotate()
            chunk.append(r.line)
            size += n
        self._write(chunk)

    def _write(self, lines: list[bytes]) -> None:
        if not lines:
            return
        data = b"".join(line + b"\n" for line in lines)
        fh = self._fh
        assert fh is not None
        try:
            written = fh.write(data)
            if written != len(data):
                raise OSError(28, f"short write ({written} of {len(data)} bytes)")
            if self.fsync:
                os.fsync(fh.fileno())
        except OSError as exc:
            with contextlib.suppress(OSError):
                fh.truncate(self._size)  # no torn line stays behind
            self.disconnect()
            msg = f"{self.path}: {exc.strerror or exc}"
            raise SinkDown(msg) from exc
        self._size += len(data)

    def _rotate(self) -> None:
        self.disconnect()
        taken = [int(self._rotated.match(p.name)[1]) for p in self.rotated_files()]  # type: ignore[index]
        n = max(taken, default=0) + 1
        while True:
            target = self.path.with_name(f"{self.path.stem}.{n}{self.path.suffix}")
            try:
                os.link(self.path, target)
                break
            except FileExistsError:
                n += 1
            except OSError as exc:
                msg = f"{self.path}: cannot rotate: {exc.strerror or exc}"
                raise SinkDown(msg) from exc
        self.path.unlink()
        if self.keep > 0:
            for old in self.rotated_files()[: -self.keep]:
                old.unlink(missing_ok=True)
        self.connect()

    def disconnect(self) -> None:
        if self._fh is not None:
            fh, self._fh = self._fh, None
            fh.close()

    def close(self) -> None:
        self.disconnect()
