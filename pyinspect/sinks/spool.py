"""A sink's disk spool: records waiting for a peer that is down, in order, bounded, durable.

A folder of numbered segment files (``00000001.spool``, ...) of JSON lines, appended at the newest
and read from the oldest; ``head`` holds ``<segment> <byte offset>`` of the next unsent record. A
record leaves the spool only after its delivery succeeded (``pop`` after ``peek``), and ``head``
is rewritten atomically then, so a crash replays at most the batch in flight: delivery is at
least once. A restart finds the segments and replays them. A torn last line (a crash mid-write)
is cut off at open. When full, the caller's policy applies: ``drop_oldest`` removes the oldest
segment (its count is returned, for the metrics and the log), ``block`` waits for room.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import IO

__all__ = ["Spool", "probe_writable"]

_SUFFIX = ".spool"


def probe_writable(folder: Path, *, create: bool = True) -> str | None:
    """Why files cannot be written in ``folder``, in words, or ``None`` when they can. Checked by
    writing a probe file (root ignores mode bits). ``create``: make the folder; otherwise probe
    the nearest folder that exists (a check that leaves nothing behind)."""
    target = folder
    if not create:
        while not target.exists() and target != target.parent:
            target = target.parent
    try:
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        elif not target.is_dir():
            return f"{target} is a file, not a folder"
        probe = target / f".pyinspect-probe-{os.getpid()}"
        with open(probe, "wb") as fh:
            fh.write(b"probe")
            fh.flush()
            os.fsync(fh.fileno())
        probe.unlink()
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


@dataclass
class _Segment:
    seq: int
    records: int
    size: int  # bytes in the file


class Spool:
    """Bounded FIFO of byte lines on disk (one per record, no newline inside a line)."""

    def __init__(self, folder: str | os.PathLike[str], *, max_bytes: int,
                 segment_bytes: int | None = None) -> None:  # fmt: skip
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes or max(4096, min(1 << 20, max_bytes // 8))
        self.folder.mkdir(parents=True, exist_ok=True)
        self._segs: deque[_Segment] = deque()
        self._offset = 0  # bytes of the oldest segment already delivered
        self._head_records = 0  # records of the oldest segment already delivered
        self._writer: IO[bytes] | None = None
        self._reader: IO[bytes] | None = None
        self._reader_seq = -1
        self._load()

    # ---- state -----------------------------------------------------------------------------
    @property
    def records(self) -> int:
        return sum(s.records for s in self._segs) - self._head_records

    @property
    def bytes(self) -> int:
        return sum(s.size for s in self._segs) - self._offset

    def has_room(self, nbytes: int) -> bool:
        return self.bytes + nbytes <= self.max_bytes or not self._segs

    def _path(self, seq: int) -> Path:
        return self.folder / f"{seq:08d}{_SUFFIX}"

    def _load(self) -> None:
        seqs = sorted(int(p.stem) for p in self.folder.glob(f"*{_SUFFIX}") if p.stem.isdigit())
        head_seq, offset = -1, 0
        head = self.folder / "head"
        if head.exists():
            parts = head.read_text().split()
            if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
                head_seq, offset = int(parts[0]), int(parts[1])
        for seq in seqs:
            path = self._path(seq)
            if seq < head_seq:  # delivered before the restart; the unlink did not happen
                path.unlink()
                continue
            data = path.read_bytes()
            cut = data.rfind(b"\n") + 1
            if cut < len(data):  # a torn last line
                with open(path, "r+b") as fh:
                    fh.truncate(cut)
                data = data[:cut]
            self._segs.append(_Segment(seq, data.count(b"\n"), len(data)))
        if self._segs and self._segs[0].seq == head_seq:
            data = self._path(head_seq).read_bytes()
            self._offset = min(offset, len(data))
            self._head_records = data[: self._offset].count(b"\n")

    # ---- writing ---------------------------------------------------------------------------
    def append(self, lines: list[bytes]) -> None:
        """Append records (raises ``OSError`` when the disk refuses; nothing is half-counted)."""
        if not lines:
            return
        blob = b"".join(line + b"\n" for line in lines)
        tail = self._segs[-1] if self._segs else None
        if tail is None or tail.size >= self.segment_bytes:
            seq = tail.seq + 1 if tail else 1
            if self._writer is not None:
                self._writer.close()
            self._writer = open(self._path(seq), "ab")  # noqa: SIM115
            tail = _Segment(seq, 0, 0)
            self._segs.append(tail)
        elif self._writer is None:
            self._writer = open(self._path(tail.seq), "ab")  # noqa: SIM115
        try:
            self._writer.write(blob)
            self._writer.flush()
        except OSError:
            self._writer.close()  # the file may hold part of blob: cut it back
            self._writer = None
            with open(self._path(tail.seq), "r+b") as fh:
                fh.truncate(tail.size)
            if tail.size == 0:
                self._segs.pop()
                self._path(tail.seq).unlink(missing_ok=True)
            raise
        tail.records += len(lines)
        tail.size += len(blob)

    def drop_oldest(self) -> int:
        """Remove the oldest segment's undelivered records; returns how many."""
        if not self._segs:
            return 0
        seg = self._segs[0]
        dropped = seg.records - self._head_records
        if len(self._segs) == 1:  # also the one being written: empty it in place
            if self._writer is not None:
                self._writer.close()
                self._writer = None
            self._close_reader()
            self._path(seg.seq).unlink(missing_ok=True)
            self._segs.clear()
        else:
            self._close_reader()
            self._segs.popleft()
            self._path(seg.seq).unlink(missing_ok=True)
        self._offset = self._head_records = 0
        self._write_head()
        return dropped

    # ---- reading ---------------------------------------------------------------------------
    def peek(self, n: int) -> list[bytes]:
        """Up to ``n`` of the oldest records, not removed (``pop`` them once delivered)."""
        if not self._segs or n <= 0:
            return []
        seg = self._segs[0]
        if self._reader is None or self._reader_seq != seg.seq:
            self._close_reader()
            self._reader = open(self._path(seg.seq), "rb")  # noqa: SIM115
            self._reader_seq = seg.seq
        self._reader.seek(self._offset)
        lines = []
        for _ in range(min(n, seg.records - self._head_records)):
            line = self._reader.readline()
            if not line.endswith(b"\n"):
                break
            lines.append(line[:-1])
        return lines

    def pop(self, lines: list[bytes]) -> None:
        """Remove the records of the last ``peek`` that were delivered (the first ``lines``)."""
        if not lines or not self._segs:
            return
        self._offset += sum(len(line) + 1 for line in lines)
        self._head_records += len(lines)
        seg = self._segs[0]
        if self._head_records >= seg.records:
            if len(self._segs) > 1:
                self._close_reader()
                self._segs.popleft()
                self._path(seg.seq).unlink(missing_ok=True)
                self._offset = self._head_records = 0
            else:  # everything delivered: start afresh
                if self._writer is not None:
                    self._writer.close()
                    self._writer = None
                self._close_reader()
                self._segs.clear()
                self._path(seg.seq).unlink(missing_ok=True)
                self._offset = self._head_records = 0
        self._write_head()

    def _write_head(self) -> None:
        seq = self._segs[0].seq if self._segs else 0
        tmp = self.folder / "head.tmp"
        tmp.write_text(f"{seq} {self._offset}\n")
        os.replace(tmp, self.folder / "head")

    def _close_reader(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
            self._reader_seq = -1

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._close_reader()
