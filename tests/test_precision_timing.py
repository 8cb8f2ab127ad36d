"""``precision_timing``: the load-time choice between f32 and an accepted lower precision, on
fake runners and a fake clock (the real timing runs in test_inspector_precision.py)."""

from __future__ import annotations

import numpy as np
import pytest

from pyinspect.precision_timing import CLEAR_MARGIN, choose_faster, time_precisions


@pytest.mark.parametrize(
    ("times", "expected"),
    [
        ({"f32": 1.0, "bf16": 0.5}, "bf16"),  # clearly faster
        ({"f32": 0.844, "bf16": 0.907}, "f32"),  # slower (the Intel VM's numbers)
        ({"f32": 1.0, "bf16": CLEAR_MARGIN}, "bf16"),  # at the margin
        ({"f32": 1.0, "bf16": CLEAR_MARGIN + 0.01}, "f32"),  # within the noise: the reference
        ({"f32": 1.0, "bf16": 1.0}, "f32"),  # a tie
        ({"f32": 1.0}, "f32"),
    ],
)
def test_choose_faster(times: dict[str, float], expected: str) -> None:
    assert choose_faster(times, "f32") == expected


def test_choose_faster_needs_the_reference_timed() -> None:
    with pytest.raises(ValueError, match=r"reference 'f32' was not timed \(timed: \['bf16'\]\)"):
        choose_faster({"bf16": 0.5}, "f32")


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeRunner:
    """Advances the fake clock by a fixed cost per frame and records the frames it saw."""

    def __init__(self, clock: FakeClock, ms: float, calls: list[str], name: str) -> None:
        self.clock, self.ms, self.calls, self.name = clock, ms, calls, name

    def inspect(self, frame: np.ndarray) -> None:
        assert frame.shape == (8, 8)
        self.clock.now += self.ms / 1e3
        self.calls.append(self.name)


@pytest.mark.parametrize(("bf16_ms", "expected"), [(0.4, "bf16"), (0.9, "f32")])
def test_time_precisions_alternates_blocks_and_chooses(bf16_ms: float, expected: str) -> None:
    clock, calls = FakeClock(), []
    runners = {
        "f32": FakeRunner(clock, 0.8, calls, "f32"),
        "bf16": FakeRunner(clock, bf16_ms, calls, "bf16"),
    }
    frame = np.zeros((8, 8), np.uint8)
    result = time_precisions(runners, frame, "f32", blocks=3, frames_per_block=2, clock=clock)
    assert result.chosen == expected
    assert result.ms_per_frame == pytest.approx({"f32": 0.8, "bf16": bf16_ms})
    # one warm-up each, then alternating blocks of 2
    assert calls == ["f32", "bf16"] + (["f32"] * 2 + ["bf16"] * 2) * 3
    assert "medians of 3 alternating blocks of 2" in result.describe()


def test_time_precisions_takes_the_median_block() -> None:
    """One slow block (the machine busy for a moment) does not decide."""
    clock, calls = FakeClock(), []
    slow = FakeRunner(clock, 0.5, calls, "bf16")
    costs = iter([0.5, 0.5, 5.0, 0.5])  # warm-up, then blocks of one frame

    def inspect(frame: np.ndarray) -> None:
        clock.now += next(costs) / 1e3

    slow.inspect = inspect  # type: ignore[method-assign]
    result = time_precisions(
        {"f32": FakeRunner(clock, 0.8, calls, "f32"), "bf16": slow},
        np.zeros((8, 8), np.uint8), "f32", blocks=3, frames_per_block=1, clock=clock,
    )  # fmt: skip
    assert result.ms_per_frame["bf16"] == pytest.approx(0.5) and result.chosen == "bf16"


@pytest.mark.parametrize(("blocks", "per_block"), [(0, 1), (1, 0)])
def test_time_precisions_refuses_empty_timings(blocks: int, per_block: int) -> None:
    with pytest.raises(ValueError, match="must be >= 1"):
        time_precisions({}, np.zeros((8, 8), np.uint8), "f32", blocks=blocks,
                        frames_per_block=per_block)  # fmt: skip
