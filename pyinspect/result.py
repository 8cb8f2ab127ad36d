"""InspectionResult: what ``Inspector.run`` returns for one frame."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from pyinspect.spec import ModelSpec
    from pyinspect.voting import VoteResult

_VOTE_ARRAYS = ("patch_class", "patch_score", "patch_defect_prob", "texture_votes")


@dataclass(frozen=True)
class Timings:
    """Milliseconds per stage of one frame. ``infer_ms`` of a frame inferred in a shared batch
    (``run_batch``) is its share of the batch, by patch count. ``total_ms`` excludes reading the
    file when the frame was given as a path."""

    tile_ms: float = 0.0
    infer_ms: float = 0.0
    vote_ms: float = 0.0
    total_ms: float = 0.0

    def to_dict(self) -> dict[str, float]:
        return {
            "tile_ms": self.tile_ms,
            "infer_ms": self.infer_ms,
            "vote_ms": self.vote_ms,
            "total_ms": self.total_ms,
        }


def _empty(dtype: type, *shape: int) -> np.ndarray:
    a: np.ndarray = np.zeros(shape or (0,), dtype=dtype)
    a.flags.writeable = False
    return a


@dataclass(frozen=True, repr=False, eq=False)
class InspectionResult:
    """Verdict for one frame plus the per-patch evidence behind it.

    Patch arrays are row-major over ``boxes`` (x, y, w, h in the pixels of the frame as
    inspected: after the sidecar's ``resize`` when that fitted a small frame to the patch).
    ``defect_type``: ``None`` when the frame is good, else the defect type of the most confident
    defective patch (rule in ``frame_defect_type``). ``error`` is set (and the verdict fields are
    neutral) when the frame could not be inspected, so a stream can report a fault in line
    instead of raising.
    """

    texture: int
    texture_name: str
    defective: bool
    label: str
    boxes: np.ndarray = field(default_factory=lambda: _empty(np.int32, 0, 4))
    patch_class: np.ndarray = field(default_factory=lambda: _empty(np.int32))
    patch_score: np.ndarray = field(default_factory=lambda: _empty(np.float32))
    patch_defect_prob: np.ndarray = field(default_factory=lambda: _empty(np.float32))
    defective_patches: np.ndarray = field(default_factory=lambda: _empty(np.int64))
    timings: Timings = field(default_factory=Timings)
    texture_votes: np.ndarray = field(default_factory=lambda: _empty(np.int32))
    error: str | None = None
    defect_type: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def num_patches(self) -> int:
        return len(self.boxes)

    @property
    def max_defect_prob(self) -> float:
        """Highest per-patch probability of any defective class (0 when there are no patches)."""
        return float(self.patch_defect_prob.max()) if self.patch_defect_prob.size else 0.0

    @classmethod
    def failed(cls, error: str, timings: Timings | None = None) -> InspectionResult:
        """A result that carries only an error (texture -1, not defective, label 'error')."""
        return cls(-1, "", False, "error", timings=timings or Timings(), error=error)

    @classmethod
    def from_vote(
        cls,
        vote: VoteResult | Mapping[str, Any],
        spec: ModelSpec,
        boxes: np.ndarray,
        timings: Timings,
    ) -> InspectionResult:
        """The result of one frame from its vote: a ``VoteResult`` (tile -> backend -> vote) or
        the dict a whole-frame C++ runner returns with the same field names. The patch arrays
        become read-only, so a result can be shared between threads."""
        if isinstance(vote, Mapping):
            arrays = {k: vote[k] for k in _VOTE_ARRAYS}
            texture, defective = int(vote["texture"]), bool(vote["defective"])
            patch_defective = vote["patch_defective"]
        else:
            arrays = {k: getattr(vote, k) for k in _VOTE_ARRAYS}
            texture, defective = vote.texture, vote.defective
            patch_defective = vote.patch_defective
        for a in arrays.values():
            a.flags.writeable = False
        values = verdict_fields(spec, texture, defective, patch_defective, timings, **arrays)
        return cls(boxes=boxes, **values)

    def to_dict(self) -> dict[str, Any]:
        """Plain Python types only (JSON-ready)."""
        return {
            "texture": self.texture,
            "texture_name": self.texture_name,
            "defective": self.defective,
            "label": self.label,
            "defect_type": self.defect_type,
            "max_defect_prob": self.max_defect_prob,
            "boxes": self.boxes.tolist(),
            "patch_class": self.patch_class.tolist(),
            "patch_score": [round(float(v), 6) for v in self.patch_score],
            "patch_defect_prob": [round(float(v), 6) for v in self.patch_defect_prob],
            "defective_patches": self.defective_patches.tolist(),
            "texture_votes": self.texture_votes.tolist(),
            "timings": self.timings.to_dict(),
            "error": self.error,
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def __str__(self) -> str:
        if self.error is not None:
            return f"error: {self.error}"
        return (
            f"{self.label} ({len(self.defective_patches)}/{self.num_patches} patches defective,"
            f" max defect p={self.max_defect_prob:.3f}, {self.timings.total_ms:.2f} ms)"
        )

    def __repr__(self) -> str:
        if self.error is not None:
            return f"InspectionResult(error={self.error!r})"
        return (
            f"InspectionResult(label={self.label!r}, texture={self.texture},"
            f" defective={self.defective}, patches={self.num_patches},"
            f" defective_patches={self.defective_patches.tolist()},"
            f" max_defect_prob={self.max_defect_prob:.3f}, total_ms={self.timings.total_ms:.3f})"
        )


def verdict_fields(
    spec: ModelSpec,
    texture: int,
    defective: bool,
    patch_defective: np.ndarray,
    timings: Timings,
    **arrays: np.ndarray,
) -> dict[str, Any]:
    """Every ``InspectionResult`` field but ``boxes`` and ``error`` from a vote's outcome and its
    read-only per-patch arrays (``_VOTE_ARRAYS``): what ``from_vote`` and a runner's record
    decoder share, so names, labels, defective patches and the defect type are derived in one
    place. The vote applied the defect rule (argmax, or ``patch_defect_prob >= threshold``, in
    ``cpp/voting.cpp`` for every path); ``Inspector`` chooses which rule it is given."""
    defective_patches = np.flatnonzero(patch_defective)
    defective_patches.flags.writeable = False
    defect_type = (
        frame_defect_type(
            spec,
            defective_patches,
            arrays["patch_class"],
            arrays["patch_score"],
            arrays["patch_defect_prob"],
        )
        if defective
        else None
    )
    return {
        "texture": texture,
        "texture_name": spec.textures[texture],
        "defective": defective,
        "label": spec.label(texture, defective),
        "defect_type": defect_type,
        "defective_patches": defective_patches,
        "timings": timings,
        **arrays,
    }


def frame_defect_type(
    spec: ModelSpec,
    defective_patches: np.ndarray,
    patch_class: np.ndarray,
    patch_score: np.ndarray,
    patch_defect_prob: np.ndarray,
) -> str | None:
    """The defect type of a defective frame (``None`` when no patch is defective).

    1. Among the defective patches whose argmax class is a defective class, the one with the
       highest ``patch_score`` (ties: the lower patch index) names it: that class's
       ``defect_name``. Under the argmax rule every defective patch is such a patch.
    2. Otherwise (a threshold made patches defective whose argmax class is good), the defective
       patch with the highest ``patch_defect_prob`` (ties: the lower index): the one defect type
       the defective classes of its argmax class's texture name, or ``"defective"`` when they
       name several (the result holds no per-class probabilities to choose between them).
    """
    if defective_patches.size == 0:
        return None
    classes = patch_class[defective_patches]
    named = spec.class_defective[classes]
    if named.any():
        candidates = defective_patches[named]
        best = candidates[int(np.argmax(patch_score[candidates]))]
        return spec.class_defect_type[int(patch_class[best])]
    best = defective_patches[int(np.argmax(patch_defect_prob[defective_patches]))]
    return spec.texture_defect_type[int(spec.class_texture[int(patch_class[best])])]


#: Decodes a runner's packed frame record into InspectionResult's fields (a name -> value dict).
Decoder = Callable[[Any, "ModelSpec", np.ndarray], dict[str, Any]]


class DeferredInspectionResult(InspectionResult):
    """An ``InspectionResult`` whose fields are decoded from a whole-frame runner's packed record
    the first time one is read.

    Why: on the direct student path the Python work around the native call is most of what is
    left per frame besides the compute; deferring the decode lets ``Inspector.run`` return after
    building one object. It behaves as an ``InspectionResult`` in every way (same fields, frozen,
    read-only arrays; pickling or copying gives a plain ``InspectionResult``). Decoding is
    idempotent, so a result shared between threads may be read from all of them.
    """

    @classmethod
    def deferred(
        cls, decode: Decoder, record: Any, spec: ModelSpec, boxes: np.ndarray
    ) -> DeferredInspectionResult:
        """A result for ``record`` that ``decode(record, spec, boxes)`` fills in when read."""
        obj = cls.__new__(cls)
        d = obj.__dict__  # frozen: fields are set in the instance dict, as dataclasses does
        d["boxes"] = boxes
        d["error"] = None
        d["_pending"] = (decode, record, spec)
        return obj

    def __getattr__(self, name: str) -> Any:  # only for attributes not yet in the instance dict
        d = self.__dict__
        pending = d.get("_pending")
        if pending is None or name.startswith("__"):
            msg = f"{type(self).__name__!r} object has no attribute {name!r}"
            raise AttributeError(msg)
        decode, record, spec = pending
        d.update(decode(record, spec, d["boxes"]))
        d.pop("_pending", None)
        try:
            return d[name]
        except KeyError:
            msg = f"{type(self).__name__!r} object has no attribute {name!r}"
            raise AttributeError(msg) from None

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickle and copy as a plain ``InspectionResult`` with every field decoded."""
        return InspectionResult, tuple(getattr(self, f.name) for f in fields(InspectionResult))
