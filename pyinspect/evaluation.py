"""What a model does on labelled images: the class-table match, the loop, the image-level metrics.

``pyinspect evaluate`` and ``pyinspect calibrate`` share this module, so both judge an image the
same way: it goes through ``Inspector.run`` (the sidecar's resize policy, bit depth and threshold
apply as at run time), and the verdict is mapped onto the dataset's class table (group ×
good / defect type, or group × good / defective when types are merged). The metric functions
are pure: they take the per-image outcomes and return plain dicts and numbers, so they can be
checked on hand-made outcomes.

An image's *score* is its highest patch defect probability (``result.max_defect_prob``, exact in
float32). Under a threshold ``t`` the frame is defective iff its score is ``>= t`` (the voter
compares in float32), which is what lets ``operating_point`` predict, from scores alone, the
counts an evaluation at ``t`` will give.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from pyinspect.errors import InputError, PyInspectError

if TYPE_CHECKING:
    from pyinspect.dataset import ClassEntry, Dataset, Sample
    from pyinspect.inspector import Inspector, ThresholdChoice
    from pyinspect.spec import ModelSpec

__all__ = [
    "OTHER_TYPE",
    "ClassMatch",
    "ClassTableError",
    "Failure",
    "ImageOutcome",
    "OperatingPoint",
    "image_metrics",
    "match_class_table",
    "model_defect_mode",
    "operating_point",
    "operating_points",
    "run_samples",
]

#: ``ImageOutcome.predicted`` of a defective verdict whose defect type is not one of its
#: group's columns (the most confident patch named a type of another group).
OTHER_TYPE = -1
OTHER_TYPE_COLUMN = "(other defect type)"
GENERIC_DEFECT = "defective"


class ClassTableError(InputError):
    """The dataset's class table is not the model's: the difference is named."""


@dataclass(frozen=True)
class ImageOutcome:
    """One image's truth and verdict, in the dataset's class table."""

    key: str
    truth: int  # column of the dataset's class table
    predicted: int  # column, or OTHER_TYPE
    group: int  # predicted group (the verdict's texture, as a dataset group index)
    defective: bool  # predicted
    defect_type: str | None  # predicted (None when good)
    score: float  # max patch defect probability


@dataclass(frozen=True)
class Failure:
    """An image that could not be inspected, and why."""

    path: str
    error: str


@dataclass(frozen=True)
class ClassMatch:
    """How the model's outputs land on the dataset's class table."""

    mode: str  # "merge" | "keep"
    texture_to_group: tuple[int, ...]  # model texture index -> dataset group index
    columns: dict[tuple[int, str | None], int]  # (group, None | defect key) -> column

    def predicted(self, texture: int, defective: bool, defect_type: str | None) -> int:
        """The class-table column of a verdict (``OTHER_TYPE``: defective with a defect type
        its group has no column for)."""
        group = self.texture_to_group[texture]
        if not defective:
            return self.columns[(group, None)]
        key = (defect_type or GENERIC_DEFECT) if self.mode == "keep" else GENERIC_DEFECT
        return self.columns.get((group, key), OTHER_TYPE)


# ---------------------------------------------------------------------------------------------
# class table


def model_defect_mode(spec: ModelSpec) -> str:
    """``"keep"`` when the sidecar's defective classes name defect types, else ``"merge"``."""
    return "keep" if any(t != GENERIC_DEFECT for t in spec.defect_types) else "merge"


def match_class_table(spec: ModelSpec, ds: Dataset) -> ClassMatch:
    """Check that ``ds`` (loaded in the mode to evaluate) has the model's groups and classes, and
    map one onto the other. Groups are matched by name (a single-group set matches a one-texture
    model whatever the names); classes by group and defect type (``merge``: by good/defective).
    Raises ``ClassTableError`` naming what is in one table and not in the other."""
    textures, groups = list(spec.textures), list(ds.groups)
    where = f"{ds.root}"
    texture_to_group: tuple[int, ...]
    if len(textures) == 1 and len(groups) == 1:
        texture_to_group = (0,)
    else:
        dupes = sorted({t for t in textures if textures.count(t) > 1})
        if dupes:
            msg = f"the model's textures repeat names {dupes}; groups cannot be matched by name"
            raise ClassTableError(msg)
        if set(textures) != set(groups):
            msg = (
                f"{where}: the dataset's groups {groups} are not the model's textures {textures}"
                f" (only in the data: {sorted(set(groups) - set(textures))};"
                f" only in the model: {sorted(set(textures) - set(groups))})"
            )
            raise ClassTableError(msg)
        texture_to_group = tuple(groups.index(t) for t in textures)
    mode = ds.mode
    model_keys: dict[tuple[int, str | None], list[str]] = {}
    for c in spec.classes:
        key = None if not c.defective else (c.defect_name if mode == "keep" else GENERIC_DEFECT)
        model_keys.setdefault((texture_to_group[c.texture], key), []).append(c.name)
    data_keys: dict[tuple[int, str | None], int] = {}
    for i, e in enumerate(ds.classes):
        key = None if not e.defective else (e.defect_type if mode == "keep" else GENERIC_DEFECT)
        data_keys[(e.group, key)] = i
    only_model = [k for k in model_keys if k not in data_keys]
    only_data = [k for k in data_keys if k not in model_keys]
    if only_model or only_data:

        def show(k: tuple[int, str | None]) -> str:
            return f"{groups[k[0]]}/{k[1] or 'good'}"

        in_model = [f"{show(k)} ({', '.join(model_keys[k])})" for k in only_model]
        msg = (
            f"{where}: the dataset's class table ({mode} defect types) is not the model's:"
            f" only in the data: {[show(k) for k in only_data]}; only in the model: {in_model}"
        )
        if mode == "keep" and model_defect_mode(spec) == "merge":
            msg += "; the model does not name defect types: use --defect-types merge"
        raise ClassTableError(msg)
    return ClassMatch(mode, texture_to_group, data_keys)


# ---------------------------------------------------------------------------------------------
# the loop


def run_samples(
    inspector: Inspector,
    ds: Dataset,
    samples: Iterable[Sample],
    match: ClassMatch,
    *,
    threshold: ThresholdChoice = None,
    progress: Callable[[Iterable[Sample]], Iterable[Sample]] | None = None,
) -> tuple[list[ImageOutcome], list[Failure]]:
    """Inspect every sample with ``inspector.run`` (``threshold`` as for ``run``); an image that
    cannot be read or inspected becomes a ``Failure`` and the loop goes on."""
    outcomes: list[ImageOutcome] = []
    failures: list[Failure] = []
    items = progress(samples) if progress is not None else samples
    for s in items:
        path = ds.absolute(s)
        try:
            r = inspector.run(str(path), threshold=threshold)
        except PyInspectError as exc:
            failures.append(Failure(str(path), str(exc).removeprefix(f"{path}: ")))
            continue
        outcomes.append(
            ImageOutcome(
                key=s.key,
                truth=s.label,
                predicted=match.predicted(r.texture, r.defective, r.defect_type),
                group=match.texture_to_group[r.texture],
                defective=r.defective,
                defect_type=r.defect_type,
                score=r.max_defect_prob,
            )
        )
    return outcomes, failures


# ---------------------------------------------------------------------------------------------
# metrics


def _rate(num: int, den: int) -> float | None:
    return num / den if den else None


def _counts(truth_defective: np.ndarray, flagged: np.ndarray) -> dict[str, Any]:
    tp = int(np.sum(truth_defective & flagged))
    fn = int(np.sum(truth_defective & ~flagged))
    tn = int(np.sum(~truth_defective & ~flagged))
    fp = int(np.sum(~truth_defective & flagged))
    return {
        "tpr": _rate(tp, tp + fn),
        "tnr": _rate(tn, tn + fp),
        "tp": tp,
        "fn": fn,
        "tn": tn,
        "fp": fp,
        "defective_images": tp + fn,
        "good_images": tn + fp,
    }


def image_metrics(
    classes: Sequence[ClassEntry],
    groups: Sequence[str],
    outcomes: Sequence[ImageOutcome],
    *,
    mode: str,
) -> dict[str, Any]:
    """Image-level metrics of ``outcomes`` over the class table ``classes``.

    ``overall``: good-vs-defective TPR (defective images flagged) / TNR (good images passed) with
    the counts, ``accuracy`` (verdict column == truth column), ``group_accuracy`` (predicted group
    == true group) and, in ``keep`` mode, ``defect_type_accuracy`` over the defective images that
    were caught (predicted type == true type; ``None`` in ``merge`` mode or when none was
    caught). ``groups``: TPR/TNR per true group. ``classes``: per true class its images, exact
    hits and TPR (defective class) or TNR (good class). ``confusion``: rows = truth, columns = the
    class table (plus ``(other defect type)`` when a verdict had no column)."""
    k = len(classes)
    n = len(outcomes)
    truth = np.array([o.truth for o in outcomes], dtype=np.int64)
    pred = np.array([o.predicted for o in outcomes], dtype=np.int64)
    flagged = np.array([o.defective for o in outcomes], dtype=bool)
    class_defective = np.array([c.defective for c in classes], dtype=bool)
    class_group = np.array([c.group for c in classes], dtype=np.int64)
    truth_defective = class_defective[truth] if n else np.zeros(0, dtype=bool)
    truth_group = class_group[truth] if n else np.zeros(0, dtype=np.int64)
    pred_group = np.array([o.group for o in outcomes], dtype=np.int64)

    overall = _counts(truth_defective, flagged)
    overall["images"] = n
    overall["accuracy"] = _rate(int(np.sum(truth == pred)), n)
    overall["group_accuracy"] = _rate(int(np.sum(truth_group == pred_group)), n)
    caught = [o for o, d in zip(outcomes, truth_defective, strict=True) if d and o.defective]
    if mode == "keep" and caught:
        right = sum(o.defect_type == classes[o.truth].defect_type for o in caught)
        overall["defect_type_accuracy"] = right / len(caught)
    else:
        overall["defect_type_accuracy"] = None
    overall["defect_type_caught"] = len(caught)

    per_group = []
    for gi, name in enumerate(groups):
        sel = truth_group == gi
        row = {"group": name, "images": int(sel.sum())}
        row |= _counts(truth_defective[sel], flagged[sel])
        row["group_accuracy"] = _rate(int(np.sum(pred_group[sel] == gi)), int(sel.sum()))
        per_group.append(row)

    other = bool(np.any(pred == OTHER_TYPE))
    columns = [c.name for c in classes] + ([OTHER_TYPE_COLUMN] if other else [])
    confusion = np.zeros((k, len(columns)), dtype=np.int64)
    for t, p in zip(truth, pred, strict=True):
        confusion[t, p if p != OTHER_TYPE else k] += 1

    per_class = []
    for i, c in enumerate(classes):
        sel = truth == i
        m = int(sel.sum())
        hit = int(np.sum(flagged[sel] == c.defective))
        row = {
            "class": c.name,
            "group": groups[c.group],
            "defective": c.defective,
            "defect_type": c.defect_type,
            "images": m,
            "correct": int(confusion[i, i]),
            "recall": _rate(int(confusion[i, i]), m),
            ("tpr" if c.defective else "tnr"): _rate(hit, m),
        }
        per_class.append(row)

    return {
        "overall": overall,
        "groups": per_group,
        "classes": per_class,
        "confusion": {
            "rows": [c.name for c in classes],
            "columns": columns,
            "matrix": confusion.tolist(),
        },
    }


# ---------------------------------------------------------------------------------------------
# operating points (scores -> counts at a threshold)


@dataclass(frozen=True)
class OperatingPoint:
    """The good-vs-defective counts when images with score ``>= threshold`` are flagged."""

    threshold: float
    tp: int
    fn: int
    tn: int
    fp: int

    @property
    def tpr(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def tnr(self) -> float:
        return self.tn / (self.tn + self.fp) if self.tn + self.fp else 0.0

    @property
    def false_alarm_rate(self) -> float:
        return self.fp / (self.tn + self.fp) if self.tn + self.fp else 0.0

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None


def _scores(
    scores: Sequence[float] | np.ndarray, defective: Sequence[bool] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float32)
    d = np.asarray(defective, dtype=bool)
    if s.shape != d.shape or s.ndim != 1:
        msg = f"scores {s.shape} and defective {d.shape} must be 1-D of the same length"
        raise InputError(msg)
    if not np.isfinite(s).all():
        msg = "scores must be finite"
        raise InputError(msg)
    return s, d


def operating_point(
    scores: Sequence[float] | np.ndarray, defective: Sequence[bool] | np.ndarray, threshold: float
) -> OperatingPoint:
    """The counts at ``threshold`` (flagged iff ``score >= threshold``, compared in float32)."""
    s, d = _scores(scores, defective)
    flagged = s >= np.float32(threshold)
    return OperatingPoint(
        float(threshold),
        int(np.sum(d & flagged)),
        int(np.sum(d & ~flagged)),
        int(np.sum(~d & ~flagged)),
        int(np.sum(~d & flagged)),
    )


def operating_points(
    scores: Sequence[float] | np.ndarray, defective: Sequence[bool] | np.ndarray
) -> list[OperatingPoint]:
    """One point per distinct score in (0, 1], ascending: the thresholds a sidecar can hold
    (it must be > 0) that give different verdicts."""
    s, d = _scores(scores, defective)
    pos, neg = np.sort(s[d]), np.sort(s[~d])
    out = []
    for t in np.unique(s):
        if not 0.0 < t <= 1.0:
            continue
        tp = len(pos) - int(np.searchsorted(pos, t, side="left"))
        fp = len(neg) - int(np.searchsorted(neg, t, side="left"))
        out.append(OperatingPoint(float(t), tp, len(pos) - tp, len(neg) - fp, fp))
    return out
