"""Accuracy guard for reduced-precision paths (bf16, INT8): same verdicts as fp32, or listed.

A faster path is only worth having if it gives the same answers. The guard runs a reference
(fp32 ONNX Runtime by default) and a candidate over the same frames, and compares the image
verdicts (texture, defective) — the paper's decision — frame by frame. The candidate is accepted
when no verdict differs; otherwise every difference is listed (frame, both labels) so a person can
decide, and ``enforce`` refuses it unless those exact frames are allowed. Patch-level changes and
the largest change of a patch's winning probability are reported as well, to show the margin.

Run it on the synthetic test split with ``python benchmarks/precision_guard.py`` (docs/fast_cpu.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from pyinspect.errors import PyInspectError
from pyinspect.result import InspectionResult


class Classifier(Protocol):
    """Anything with ``run(frame) -> InspectionResult``: an Inspector, whatever path it runs."""

    def run(self, frame: np.ndarray) -> InspectionResult: ...


class PrecisionRejectedError(PyInspectError, ValueError):
    """A reduced-precision path changed verdicts that were not explicitly allowed."""


@dataclass(frozen=True)
class Difference:
    """One frame whose verdict differs between the reference and the candidate."""

    frame: str
    reference: str  # label, e.g. "Texture 2 good"
    candidate: str


@dataclass(frozen=True)
class GuardReport:
    """Outcome of comparing a candidate path with the reference on the same frames."""

    reference: str
    candidate: str
    frames: int
    differences: tuple[Difference, ...] = ()
    patch_class_changes: int = 0  # patches whose argmax class changed (verdicts may not)
    patches: int = 0
    max_score_delta: float = 0.0  # largest |Δ probability of a patch's winning class|
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        """True when every verdict equals the reference's."""
        return not self.differences

    def summary(self) -> str:
        """Human-readable verdict, listing every differing frame."""
        head = (
            f"{self.candidate} vs {self.reference}: {self.frames} frames, "
            f"{len(self.differences)} verdict differences, {self.patch_class_changes}/"
            f"{self.patches} patch classes changed, max |Δ patch score| "
            f"{self.max_score_delta:.3g} -> {'ACCEPTED' if self.accepted else 'REJECTED'}"
        )
        lines = [head] + [
            f"  {d.frame}: {self.reference} says {d.reference!r}, {self.candidate} says"
            f" {d.candidate!r}"
            for d in self.differences
        ]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "candidate": self.candidate,
            "frames": self.frames,
            "accepted": self.accepted,
            "differences": [vars(d) for d in self.differences],
            "patch_class_changes": self.patch_class_changes,
            "patches": self.patches,
            "max_score_delta": self.max_score_delta,
            "notes": dict(self.notes),
        }


def compare(
    reference: Classifier | Callable[[np.ndarray], InspectionResult],
    candidate: Classifier | Callable[[np.ndarray], InspectionResult],
    frames: Iterable[tuple[str, np.ndarray]],
    *,
    reference_name: str = "reference",
    candidate_name: str = "candidate",
) -> GuardReport:
    """Run both on every ``(name, frame)`` and compare verdicts and patch decisions."""
    ref_run = _runner(reference)
    cand_run = _runner(candidate)
    differences: list[Difference] = []
    count = patches = changed = 0
    max_delta = 0.0
    for name, frame in frames:
        a, b = ref_run(frame), cand_run(frame)
        count += 1
        if (a.texture, a.defective) != (b.texture, b.defective):
            differences.append(Difference(str(name), a.label, b.label))
        if a.patch_class.shape != b.patch_class.shape:
            msg = (
                f"{name}: reference has {a.patch_class.shape[0]} patches, candidate"
                f" {b.patch_class.shape[0]}; compare the same model and grid"
            )
            raise PyInspectError(msg)
        patches += a.patch_class.size
        changed += int(np.count_nonzero(a.patch_class != b.patch_class))
        same = a.patch_class == b.patch_class
        if same.any():
            delta = np.abs(a.patch_score[same] - b.patch_score[same]).max()
            max_delta = max(max_delta, float(delta))
    return GuardReport(
        reference=reference_name,
        candidate=candidate_name,
        frames=count,
        differences=tuple(differences),
        patch_class_changes=changed,
        patches=patches,
        max_score_delta=max_delta,
    )


def enforce(report: GuardReport, *, allow: Collection[str] = ()) -> GuardReport:
    """Return ``report`` if every differing frame is in ``allow``; else raise, listing them."""
    refused = [d for d in report.differences if d.frame not in allow]
    if refused:
        listed = "; ".join(f"{d.frame}: {d.reference!r} -> {d.candidate!r}" for d in refused)
        msg = (
            f"{report.candidate} changes {len(refused)} of {report.frames} verdicts of"
            f" {report.reference}: {listed}. Keep fp32, or allow these frames explicitly."
        )
        raise PrecisionRejectedError(msg)
    return report


def check_backend_precision(
    model_path: str | os.PathLike[str],
    frames: Iterable[tuple[str, np.ndarray]],
    *,
    candidate: dict[str, Any],
    reference: dict[str, Any] | None = None,
) -> GuardReport:
    """Guard an Inspector configuration (e.g. ``{"backend": "openvino", "precision": "bf16"}``)
    against the fp32 reference (``{"backend": "onnxruntime"}``) on ``frames``."""
    from pyinspect.inspector import Inspector

    reference = reference or {"backend": "onnxruntime"}
    with Inspector(model_path, **reference) as ref, Inspector(model_path, **candidate) as cand:
        return compare(
            ref,
            cand,
            frames,
            reference_name=_describe(reference),
            candidate_name=_describe(candidate),
        )


def _describe(options: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in options.items())


def _runner(
    classifier: Classifier | Callable[[np.ndarray], InspectionResult],
) -> Callable[[np.ndarray], InspectionResult]:
    run = getattr(classifier, "run", None)
    if callable(run):
        return run  # type: ignore[no-any-return]
    if callable(classifier):
        return classifier
    msg = f"expected an object with run(frame) or a callable, got {type(classifier).__name__}"
    raise TypeError(msg)
