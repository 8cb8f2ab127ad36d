"""What a station source is: ``open`` / ``grab`` / ``ack`` / ``close``, and what a grab carries.

A source hands out frames it will never touch again: one whose SDK reuses buffers (pylon, GenTL)
copies the frame out before releasing the buffer, and ``IterableSource`` copies arrays, because a
producer refilling one buffer would otherwise change a frame that still waits for inference;
an array it is the only holder of (a producer that makes a new one per frame) it takes as it is.

``grab(stop)`` returns a ``Grab``, ``None`` when no frame came within its timeout, raises
``SourceEnded`` when the source is finished (a file's end, ``max_frames``) and ``SourceLost`` when
the device went away; the station then closes the source and reopens it with a bounded backoff,
counting each reconnect.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from pyinspect.errors import PyInspectError, check_choice

__all__ = [
    "POLICIES",
    "Grab",
    "IterableSource",
    "Source",
    "SourceEnded",
    "SourceError",
    "SourceLost",
    "grab_now",
    "handed_over",
]

#: What a source does when inspection lags: drop its oldest queued frame, or wait.
POLICIES = ("drop_oldest", "block")


class SourceError(PyInspectError, RuntimeError):
    """A source cannot be opened as configured (no such camera, folder, feature, ...)."""


class SourceLost(PyInspectError, ConnectionError):
    """The device went away mid-run; the station reopens it with backoff."""


class SourceEnded(Exception):
    """The source has no more frames (end of file, ``max_frames`` reached)."""


@dataclass(slots=True)
class Grab:
    """One acquired frame: the image (an array the source no longer touches, or an image path),
    host times at grab, the camera's own timestamp when the SDK gives one, and an error instead
    of an image when the grab itself failed."""

    image: np.ndarray | str | None
    captured_ns: int  # time.time_ns() at grab (UTC)
    mono_ns: int  # time.perf_counter_ns() at grab (latency)
    camera_timestamp: int | None = None
    path: str | None = None
    error: str | None = None
    token: Any = None  # the source's own handle, given back in ack()


def grab_now(image: np.ndarray | str | None, **kwargs: Any) -> Grab:
    """A ``Grab`` stamped with the host's clocks now."""
    return Grab(image, time.time_ns(), time.perf_counter_ns(), **kwargs)


class Source:
    """Base of the station's sources. Subclasses override ``open``, ``grab`` and ``close``;
    ``ack`` is called once per grab after its record was made (``ok``: a verdict, not an error)."""

    kind = "source"

    def __init__(
        self,
        name: str,
        *,
        queue: int = 4,
        policy: str = "drop_oldest",
        max_frames: int | None = None,
        reconnect_min_s: float = 0.1,
        reconnect_max_s: float = 30.0,
    ) -> None:
        self.policy = check_choice(f"source {name!r}: policy", policy, POLICIES, SourceError)
        self.name = name
        self.queue = queue
        self.max_frames = max_frames
        self.reconnect_min_s = reconnect_min_s
        self.reconnect_max_s = reconnect_max_s

    def open(self) -> None:
        """Connect; raise ``SourceError`` (bad configuration) or ``SourceLost`` (try again)."""

    def grab(self, stop: threading.Event) -> Grab | None:
        raise NotImplementedError

    def ack(self, grab: Grab, ok: bool) -> None:
        """The grab's record was made."""

    def release(self, grab: Grab) -> None:
        """The grab was dropped (``drop_oldest``) without a record."""

    def close(self) -> None:
        """Release the device (idempotent)."""

    def describe(self) -> str:
        return f"{self.kind} source {self.name!r}"


def _references(a: object) -> int:
    return sys.getrefcount(a)


def _calibrate() -> int:
    fresh = np.empty(0)
    return _references(fresh)


#: What ``_references`` counts for an array only a caller's local variable holds.
_ONLY_LOCAL = _calibrate()


def handed_over(a: np.ndarray) -> bool:
    """Whether nothing but the caller's one local variable can reach ``a`` or its memory: it owns
    its data (not a view of a buffer someone keeps) and no other reference to it exists (a list
    of frames, a generator's buffer or local variable, a view of it: each holds one). Nobody can
    then change it, so the station takes it without a copy (about 25 us for a 512x512 frame):
    ``map(cv2.imread, paths)``, ``(decode(blob) for blob in blobs)``, ``yield grab_frame()``."""
    return a.flags.owndata and _references(a) <= _ONLY_LOCAL + 1  # + our own parameter


class IterableSource(Source):
    """Any Python iterable of frames (arrays, image paths, ``None`` for a missing frame).
    Arrays are copied at grab unless the producer has let go of them (``handed_over``: a new
    array per frame), or ``copy=False`` (a producer known to hand out new arrays)."""

    kind = "iterable"

    def __init__(self, frames: Iterable[Any], name: str = "iterable", *, copy: bool = True,
                 **kwargs: Any) -> None:  # fmt: skip
        kwargs.setdefault("policy", "block")
        super().__init__(name, **kwargs)
        self._frames = frames
        self._it: Iterator[Any] | None = None
        self._copy = copy

    def open(self) -> None:
        if self._it is None:
            self._it = iter(self._frames)

    def grab(self, stop: threading.Event) -> Grab | None:
        if self._it is None:
            self.open()
        try:
            frame = next(self._it)  # type: ignore[arg-type]
        except StopIteration:
            raise SourceEnded from None
        if frame is None:
            return grab_now(None, error="no frame (got None)")
        if isinstance(frame, np.ndarray):
            if self._copy and not handed_over(frame):
                frame = frame.copy()
            return Grab(frame, time.time_ns(), time.perf_counter_ns())
        path = str(frame)
        return grab_now(path, path=path)
