"""GenICam cameras of any vendor through a GenTL producer, with ``harvesters``.

Needs ``pip install harvesters`` and the camera vendor's GenTL producer (a ``.cti`` file, e.g.
Basler's, Teledyne's, or the open ``mvGenTL``); the producer is named by ``cti`` or found in
``GENICAM_GENTL64_PATH``. Features pass through by GenICam name, in the order given. Each frame
is copied out of the producer's buffer before the buffer is queued again.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from pyinspect.sources.base import Grab, Source, SourceError, SourceLost

__all__ = ["HarvestersSource", "find_producers"]

log = logging.getLogger("pyinspect.watch")


def find_producers() -> list[Path]:
    """GenTL producers (``*.cti``) in the folders of ``GENICAM_GENTL64_PATH``."""
    found: list[Path] = []
    for folder in os.environ.get("GENICAM_GENTL64_PATH", "").split(os.pathsep):
        if folder and Path(folder).is_dir():
            found += sorted(Path(folder).glob("*.cti"))
    return found


class HarvestersSource(Source):
    """One camera by ``serial`` (or the ``index``-th device the producers list)."""

    kind = "harvesters"

    def __init__(self, name: str, *, cti: str | None = None, serial: str | None = None,
                 index: int = 0, features: dict[str, Any] | None = None,
                 timeout_s: float = 1.0, **kwargs: Any) -> None:  # fmt: skip
        super().__init__(name, **kwargs)
        self.cti = [Path(cti)] if cti else find_producers()
        self.serial, self.index = serial, index
        self.features = dict(features or {})
        self.timeout_s = timeout_s
        self._h: Any = None
        self._ia: Any = None

    def open(self) -> None:
        try:
            from harvesters.core import Harvester
        except ImportError as exc:
            msg = "the harvesters source needs harvesters: pip install harvesters"
            raise SourceError(msg) from exc
        if not self.cti or not all(p.is_file() for p in self.cti):
            msg = (f"harvesters source {self.name!r}: no GenTL producer (.cti): set cti = ... or"
                   " GENICAM_GENTL64_PATH")  # fmt: skip
            raise SourceError(msg)
        h = Harvester()
        for p in self.cti:
            h.add_file(str(p))
        h.update()
        try:
            ia = h.create({"serial_number": self.serial} if self.serial else self.index)
        except (ValueError, IndexError) as exc:
            h.reset()
            msg = f"harvesters source {self.name!r}: camera not found: {exc}"
            raise SourceLost(msg) from exc
        try:
            nodes = ia.remote_device.node_map
            for key, value in self.features.items():
                if not hasattr(nodes, key):
                    msg = f"harvesters source {self.name!r}: the camera has no feature {key!r}"
                    raise SourceError(msg)
                getattr(nodes, key).value = value
            ia.start()
        except BaseException:
            ia.destroy()
            h.reset()
            raise
        self._h, self._ia = h, ia

    def grab(self, stop: threading.Event) -> Grab | None:
        if self._ia is None:
            self.open()
        try:
            buffer = self._ia.try_fetch(timeout=self.timeout_s)
        except Exception as exc:
            msg = f"harvesters source {self.name!r}: camera lost: {exc}"
            raise SourceLost(msg) from exc
        if buffer is None:
            return None
        wall, mono = time.time_ns(), time.perf_counter_ns()
        with buffer:
            c = buffer.payload.components[0]
            channels = max(1, c.num_components_per_pixel)
            shape = (c.height, c.width) if channels == 1 else (c.height, c.width, channels)
            image = c.data.reshape(shape).copy()  # the buffer is queued again on exit
            stamp = int(buffer.timestamp_ns) if buffer.timestamp_ns else None
        return Grab(image, wall, mono, camera_timestamp=stamp)

    def close(self) -> None:
        ia, h, self._ia, self._h = self._ia, self._h, None, None
        try:
            if ia is not None:
                ia.stop()
                ia.destroy()
            if h is not None:
                h.reset()
        except Exception as exc:  # a removed camera cannot be closed cleanly
            log.warning("harvesters source %r: closing: %s", self.name, exc)
