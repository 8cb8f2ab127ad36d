"""Bounded exponential backoff, shared by reconnecting sources and sinks."""

from __future__ import annotations

import threading

__all__ = ["Backoff"]


class Backoff:
    """Delays ``min_s, 2*min_s, 4*min_s, ...`` capped at ``max_s``; ``reset()`` after a success.
    ``wait(stop)`` sleeps the next delay unless ``stop`` is set first (returns True then)."""

    def __init__(self, min_s: float = 0.1, max_s: float = 30.0) -> None:
        self.min_s = min_s
        self.max_s = max(min_s, max_s)
        self._next = min_s

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self.max_s, self._next * 2)
        return delay

    def reset(self) -> None:
        self._next = self.min_s

    def wait(self, stop: threading.Event) -> bool:
        return stop.wait(self.next_delay())
