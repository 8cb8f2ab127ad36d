"""Image folder: the originals and/or verdict overlays of defective (or all) frames.

Names are ``<source>-<run_id[:8]>-<frame_id>[-overlay].png``, created exclusively (a taken name
gets ``-1``, ``-2``, ...), so nothing is overwritten. ``max_files`` > 0 caps the folder: the
oldest files this sink wrote (in this run or an earlier one, by their name pattern) are deleted
first. A write that fails (a full disk) is logged and counted; pictures are not spooled.
"""

from __future__ import annotations

import logging
import os
import re
from collections import deque
from pathlib import Path
from typing import Any

from pyinspect.sinks.base import Record, Sink

__all__ = ["ImageFolderSink"]

log = logging.getLogger("pyinspect.watch")
_OURS = re.compile(r"^.+-[0-9a-f]{8}-\d+(-overlay)?(-\d+)?\.png$")


class ImageFolderSink(Sink):
    kind = "images"
    wants_images = True

    def __init__(self, name: str, folder: str | os.PathLike[str], *, save: str = "defective",
                 what: str = "both", max_files: int = 0, spec: Any = None,
                 **kwargs: Any) -> None:  # fmt: skip
        kwargs["spool"] = None
        super().__init__(name, **kwargs)
        self.folder = Path(folder)
        self.save = save  # "defective" | "all"
        self.what = what  # "original" | "overlay" | "both"
        self.max_files = max_files
        self.spec = spec
        self.folder.mkdir(parents=True, exist_ok=True)
        existing = [p for p in self.folder.iterdir() if _OURS.match(p.name)]
        existing.sort(key=lambda p: p.stat().st_mtime_ns)
        self._written: deque[Path] = deque(existing)

    def deliver(self, records: list[Record]) -> None:
        import cv2

        from pyinspect.cli import render_overlay

        for r in records:
            if r.image is None or r.result is None:
                continue
            if self.save == "defective" and not r.doc.get("defective"):
                continue
            base = f"{r.doc['source']}-{r.doc['run_id'][:8]}-{r.doc['frame_id']}"
            pictures = []
            if self.what in ("original", "both"):
                pictures.append((base, r.image))
            if self.what in ("overlay", "both") and r.result.ok:
                pictures.append((f"{base}-overlay", render_overlay(r.image, r.result, self.spec)))
            for stem, image in pictures:
                ok, data = cv2.imencode(".png", image)
                if not ok:
                    self._m_errors.inc()
                    log.error("sink %r: cannot encode %s", self.name, stem)
                    continue
                self._write(stem, data.tobytes())

    def _write(self, stem: str, data: bytes) -> None:
        for k in range(1000):
            path = self.folder / (f"{stem}.png" if k == 0 else f"{stem}-{k}.png")
            try:
                with open(path, "xb") as fh:
                    fh.write(data)
                break
            except FileExistsError:
                continue
            except OSError as exc:
                path.unlink(missing_ok=True)
                self._m_errors.inc()
                log.error("sink %r: cannot write %s: %s (picture lost)", self.name, path,
                          exc.strerror or exc)  # fmt: skip
                return
        else:
            return
        self._written.append(path)
        while self.max_files > 0 and len(self._written) > self.max_files:
            self._written.popleft().unlink(missing_ok=True)
