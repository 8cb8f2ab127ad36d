"""Whole-frame runners behind one protocol and one table (see ``pyinspect.runners.base``)."""

from pyinspect.runners.base import RUNNER_CHOICES, RUNNERS, FrameRunner, RunnerInfo, runner_info

__all__ = ["RUNNERS", "RUNNER_CHOICES", "FrameRunner", "RunnerInfo", "runner_info"]
