"""OpenCV ``VideoCapture`` as a station source: a device index, a video file, an RTSP/HTTP URL.

A file ends at its last frame (or starts again with ``loop``); a device or a stream that stops
delivering is lost and reopened by the station with backoff (network cameras drop their streams).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from pyinspect.sources.base import Grab, Source, SourceEnded, SourceError, SourceLost, grab_now

__all__ = ["VideoSource", "video_uri"]

#: Failed reads in a row after which a device or stream counts as lost.
LOST_AFTER_FAILURES = 5
URL_SCHEMES = ("rtsp", "rtsps", "http", "https", "rtmp", "udp", "tcp")


def video_uri(uri: str | int) -> str | int:
    """A device index (``0`` or ``"0"``), an existing file, or a URL of a scheme OpenCV's FFmpeg
    reads; anything else is a ``SourceError`` naming it."""
    if isinstance(uri, int) or (isinstance(uri, str) and uri.isdigit()):
        return int(uri)
    if "://" in uri:
        scheme = uri.split("://", 1)[0].lower()
        if scheme not in URL_SCHEMES or not uri.split("://", 1)[1]:
            msg = f"video source {uri!r}: not a URL OpenCV reads (schemes: {list(URL_SCHEMES)})"
            raise SourceError(msg)
        return uri
    if not Path(uri).is_file():
        msg = f"video source {uri!r}: no such file (nor a device index or a URL)"
        raise SourceError(msg)
    return uri


class VideoSource(Source):
    """Frames of ``cv2.VideoCapture(uri)``; ``fps`` paces a file (a camera paces itself)."""

    kind = "video"

    def __init__(self, name: str, uri: str | int, *, loop: bool = False,
                 fps: float | None = None, **kwargs: Any) -> None:  # fmt: skip
        super().__init__(name, **kwargs)
        self.uri = video_uri(uri)
        self.is_file = isinstance(self.uri, str) and "://" not in self.uri
        self.loop = loop
        self.period = 1.0 / fps if fps else 0.0
        self._cap: Any = None
        self._next = 0.0
        self._failures = 0

    def open(self) -> None:
        import cv2

        cap = cv2.VideoCapture(self.uri)
        if not cap.isOpened():
            cap.release()
            msg = f"video source {self.name!r}: cannot open {self.uri!r}"
            if self.is_file:
                msg += " (a file OpenCV cannot read)"
                raise SourceError(msg)
            raise SourceLost(msg)
        self._cap = cap
        self._failures = 0

    def grab(self, stop: threading.Event) -> Grab | None:
        if self._cap is None:
            self.open()
        if self.period:
            delay = self._next - time.monotonic()
            if delay > 0 and stop.wait(delay):
                return None
            self._next = max(self._next + self.period, time.monotonic())
        ok, frame = self._cap.read()
        if ok and frame is not None:
            self._failures = 0
            return grab_now(frame)  # read() allocates a new array per frame
        if self.is_file:
            if not self.loop:
                raise SourceEnded
            self.close()
            self.open()
            return None
        self._failures += 1
        if self._failures >= LOST_AFTER_FAILURES or not self._cap.isOpened():
            msg = f"video source {self.name!r}: {self.uri!r} stopped delivering frames"
            raise SourceLost(msg)
        return None

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
