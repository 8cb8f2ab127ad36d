"""Which accepted precision is faster on this machine, timed when the model loads.

The CPU's flags say which kernels can run, not which one is faster: the bf16 student kernels take
0.907 ms a frame against f32's 0.844 ms on a 2-vCPU Intel Xeon with AMX, and 0.51 ms against
0.87 ms on a 2-vCPU AMD EPYC with AVX-512-BF16 (``docs/performance.md``). So
``Inspector(precision="auto")`` times both paths on one frame of the guard's set and keeps the
lower precision only when it is clearly faster; the reference (f32) wins a tie.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

#: The lower precision must take at most this share of the reference's time to be chosen: a
#: smaller gap is within the spread of a few blocks on a shared 2-core machine.
CLEAR_MARGIN = 0.95


@dataclass(frozen=True)
class PrecisionTiming:
    """Median milliseconds per frame of each timed precision, and the one chosen."""

    chosen: str
    ms_per_frame: dict[str, float]
    blocks: int
    frames_per_block: int

    def describe(self) -> str:
        times = ", ".join(f"{p} {ms:.3f} ms" for p, ms in self.ms_per_frame.items())
        return (
            f"{self.chosen} chosen by timing at load ({times} per frame; medians of"
            f" {self.blocks} alternating blocks of {self.frames_per_block})"
        )


def choose_faster(
    ms_per_frame: Mapping[str, float], reference: str, margin: float = CLEAR_MARGIN
) -> str:
    """The precision to run: the fastest one when it takes at most ``margin`` of the
    ``reference``'s time, else ``reference``."""
    if reference not in ms_per_frame:
        msg = f"reference {reference!r} was not timed (timed: {sorted(ms_per_frame)})"
        raise ValueError(msg)
    best = min(ms_per_frame, key=lambda p: (ms_per_frame[p], p != reference))
    if best != reference and ms_per_frame[best] <= margin * ms_per_frame[reference]:
        return best
    return reference


def time_precisions(
    runners: Mapping[str, Any],
    frame: np.ndarray,
    reference: str,
    *,
    blocks: int = 5,
    frames_per_block: int = 4,
    clock: Callable[[], float] = time.perf_counter,
) -> PrecisionTiming:
    """Time each runner's ``inspect(frame)`` in alternating blocks after one warm-up
    frame each, and choose with ``choose_faster``. Alternating blocks share whatever else the
    machine is doing between the precisions, so the comparison holds under load too."""
    if blocks < 1 or frames_per_block < 1:
        msg = f"blocks and frames_per_block must be >= 1, got {blocks} and {frames_per_block}"
        raise ValueError(msg)
    for runner in runners.values():
        runner.inspect(frame)
    samples: dict[str, list[float]] = {p: [] for p in runners}
    for _ in range(blocks):
        for precision, runner in runners.items():
            start = clock()
            for _ in range(frames_per_block):
                runner.inspect(frame)
            samples[precision].append((clock() - start) * 1e3 / frames_per_block)
    medians = {p: statistics.median(s) for p, s in samples.items()}
    return PrecisionTiming(choose_faster(medians, reference), medians, blocks, frames_per_block)
