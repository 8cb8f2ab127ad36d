"""Verdict-parity guard: a lower precision (bf16, ...) runs only where it gives f32's verdicts.

A faster precision is only worth having if it gives the same answers. The guard runs the f32
reference and the candidate over the same frames and compares the image verdicts (texture,
defective) frame by frame. The rule (``RULE``, version ``RULE_VERSION``): the candidate is
accepted when at least 99.9 % of the frames get the identical verdict and no frame's texture
changes. With fewer than 1,000 frames 99.9 % leaves no room, so every verdict must be identical.
The report keeps exact counts (frames, identical verdicts, texture flips, good->defective and
defective->good flips, patch class changes, the largest change of a patch's winning score) and
names every differing frame.

What it runs on (``guard_frames``):

- ``<model>.guard.json`` beside the model: the validation images of the run that trained it
  (``write_guard_frames``; ``python -m train run`` writes it), each in the orientations training
  used, or a synthetic DAGM set of a named generator version (``write_synthetic_guard``);
- a 12-class DAGM model without that file: the synthetic set of generator ``SYNTH_VERSION``.

A synthetic set is ``SYNTH_PER_CLASS`` good and as many defective images per texture
(``train.synth``, seed ``SYNTH_SEED``, disjoint from the training sets' seed 0), each in the four
axis-preserving orientations training uses (``ORIENTATIONS``): 6 × 2 × 25 × 4 = 1,200 frames, so
99.9 % allows one differing verdict, from 150 generated images. Where ``train`` is not installed
(a wheel) the synthetic set cannot be made and the guard cannot run.

``resolve_precision`` is what an Inspector calls: ``"f32"`` needs no guard; a lower precision
takes the cached result for (model SHA-256, CPU / kernel level, precision, rule, frames,
pyinspect version) or runs the guard once and caches it (``ParityCache``: ``<model>.parity.json``
beside the model, or ``$XDG_CACHE_HOME/pyinspect/parity/<sha256>.json`` when the model's folder
cannot be written); a rejected precision, or one the guard cannot check, runs in f32 with a
logged warning that says why.

``python benchmarks/precision_guard.py`` runs the same comparison for every fast path
(docs/fast_cpu.md, "Accuracy guard").
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
import platform
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pyinspect.errors import InputError, InputTypeError, ModelFileError, PyInspectError
from pyinspect.outputs import replace_file

__all__ = [
    "CACHE_NAME",
    "GUARD_NAME",
    "MIN_IDENTICAL",
    "ORIENTATIONS",
    "RULE",
    "RULE_VERSION",
    "SYNTH_PER_CLASS",
    "SYNTH_SEED",
    "SYNTH_VERSION",
    "CacheKey",
    "Classifier",
    "Difference",
    "GuardFrames",
    "GuardReport",
    "NoGuardFramesError",
    "ParityCache",
    "PrecisionRejectedError",
    "accepts",
    "cache_path",
    "check_backend_precision",
    "compare",
    "cpu_feature_level",
    "enforce",
    "guard_frames",
    "guard_path",
    "model_sha256",
    "orient",
    "recorded_frames",
    "resolve_precision",
    "run_guard",
    "synthetic_frames",
    "user_cache_dir",
    "write_guard_frames",
    "write_synthetic_guard",
]

log = logging.getLogger("pyinspect")

#: The acceptance rule, in words; ``RULE_VERSION`` changes whenever the rule or the default
#: frame sets change, so a result cached under an older rule is not reused.
RULE = ">= 99.9 % identical image verdicts and no texture flip"
RULE_VERSION = 1
#: Least share of identical verdicts, as a fraction (numerator, denominator): compared exactly.
MIN_IDENTICAL = (999, 1000)

#: Beside the model: the recorded guard frames, and the cached guard results.
GUARD_NAME = "{model}.guard.json"
CACHE_NAME = "{model}.parity.json"
_GUARD_FORMAT = "pyinspect guard frames"
_CACHE_FORMAT = "pyinspect precision parity"
_FILE_VERSION = 1

#: Dihedral indices (``k % 4`` quarter turns, then a left-right flip if ``k >= 4``) that keep the
#: image axes: identity, half turn, the two flips; what ``train run`` augments with.
ORIENTATIONS = (0, 2, 4, 6)
#: The synthetic DAGM guard set: generator version, seed (training sets use seed 0), base images
#: per class (6 textures × good/defective × 25 × 4 orientations = 1,200 frames).
SYNTH_VERSION = 2
SYNTH_SEED = 20240
SYNTH_PER_CLASS = 25
_DAGM_TEXTURES = 6
#: Differing frames listed by ``GuardReport.summary`` (``to_dict`` keeps all).
_SUMMARY_LINES = 10


class Classifier(Protocol):
    """Anything with ``run(frame) -> InspectionResult``: an Inspector, whatever path it runs."""

    def run(self, frame: np.ndarray) -> Any: ...


#: A guard factory: builds one path (an Inspector, a runner with ``inspect(frame)``, or a plain
#: callable frame -> InspectionResult). An object with ``close()`` is closed after the guard.
Factory = Callable[[], Any]


class PrecisionRejectedError(PyInspectError, ValueError):
    """A lower-precision path failed the verdict-parity rule."""


class NoGuardFramesError(PyInspectError, LookupError):
    """There is nothing to run the guard on for this model (the message says why)."""


# ---------------------------------------------------------------------------------------------
# the rule and the report (pure)


def accepts(frames: int, identical: int, texture_flips: int) -> bool:
    """The rule: ``identical / frames >= 0.999`` (exactly, in integers) and no texture flip.
    No frames is no evidence: not accepted."""
    num, den = MIN_IDENTICAL
    return frames > 0 and texture_flips == 0 and identical * den >= num * frames


@dataclass(frozen=True)
class Difference:
    """One frame whose image verdict differs between the reference and the candidate."""

    frame: str
    reference: str  # label, e.g. "Texture 2 good"
    candidate: str
    texture: tuple[int, int] = (0, 0)  # (reference, candidate)
    defective: tuple[bool, bool] = (False, False)

    @property
    def texture_flip(self) -> bool:
        return self.texture[0] != self.texture[1]

    @property
    def defect_flip(self) -> str | None:
        """``"good->defective"``, ``"defective->good"`` or ``None``."""
        ref, cand = self.defective
        if ref == cand:
            return None
        return "defective->good" if ref else "good->defective"

    def to_dict(self) -> dict[str, Any]:
        return {
            "frame": self.frame,
            "reference": self.reference,
            "candidate": self.candidate,
            "texture": list(self.texture),
            "defective": list(self.defective),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Difference:
        t, dfc = d.get("texture", (0, 0)), d.get("defective", (False, False))
        return cls(
            str(d["frame"]),
            str(d["reference"]),
            str(d["candidate"]),
            (int(t[0]), int(t[1])),
            (bool(dfc[0]), bool(dfc[1])),
        )


@dataclass(frozen=True)
class GuardReport:
    """Outcome of comparing a candidate path with the reference on the same frames; every count
    is derived from ``frames`` and ``differences``, so a report read back from the cache gives
    the same numbers."""

    reference: str
    candidate: str
    frames: int
    differences: tuple[Difference, ...] = ()
    patch_class_changes: int = 0  # patches whose argmax class changed (verdicts may not)
    patches: int = 0
    max_score_delta: float = 0.0  # largest |Δ probability of a patch's winning class|
    source: str = ""  # what the frames were
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def identical(self) -> int:
        """Frames whose (texture, defective) verdict equals the reference's."""
        return self.frames - len(self.differences)

    @property
    def texture_flips(self) -> int:
        return sum(d.texture_flip for d in self.differences)

    @property
    def good_to_defective(self) -> int:
        return sum(d.defect_flip == "good->defective" for d in self.differences)

    @property
    def defective_to_good(self) -> int:
        return sum(d.defect_flip == "defective->good" for d in self.differences)

    @property
    def accepted(self) -> bool:
        """``accepts(frames, identical, texture_flips)``: see ``RULE``."""
        return accepts(self.frames, self.identical, self.texture_flips)

    def headline(self) -> str:
        """One line: the counts and the decision."""
        share = f" ({100 * self.identical / self.frames:.2f} %)" if self.frames else ""
        source = f" ({self.source})" if self.source else ""
        return (
            f"{self.candidate} vs {self.reference} on {self.frames} frames{source}:"
            f" {self.identical}/{self.frames} identical verdicts{share},"
            f" {self.texture_flips} texture flips, {self.good_to_defective} good->defective,"
            f" {self.defective_to_good} defective->good, {self.patch_class_changes}/"
            f"{self.patches} patch classes changed, max |Δ patch score|"
            f" {self.max_score_delta:.3g} -> {'ACCEPTED' if self.accepted else 'REJECTED'}"
            f" (rule: {RULE})"
        )

    def summary(self) -> str:
        """The headline and the first differing frames."""
        lines = [self.headline()]
        lines += [
            f"  {d.frame}: {self.reference} says {d.reference!r}, {self.candidate} says"
            f" {d.candidate!r}"
            for d in self.differences[:_SUMMARY_LINES]
        ]
        if len(self.differences) > _SUMMARY_LINES:
            lines.append(f"  ... and {len(self.differences) - _SUMMARY_LINES} more")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "candidate": self.candidate,
            "source": self.source,
            "rule": RULE,
            "rule_version": RULE_VERSION,
            "frames": self.frames,
            "identical": self.identical,
            "texture_flips": self.texture_flips,
            "good_to_defective": self.good_to_defective,
            "defective_to_good": self.defective_to_good,
            "accepted": self.accepted,
            "differences": [d.to_dict() for d in self.differences],
            "patch_class_changes": self.patch_class_changes,
            "patches": self.patches,
            "max_score_delta": self.max_score_delta,
            "notes": dict(self.notes),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GuardReport:
        """The inverse of ``to_dict`` (derived counts are recomputed, not read)."""
        return cls(
            reference=str(d["reference"]),
            candidate=str(d["candidate"]),
            frames=int(d["frames"]),
            differences=tuple(Difference.from_dict(x) for x in d.get("differences", ())),
            patch_class_changes=int(d.get("patch_class_changes", 0)),
            patches=int(d.get("patches", 0)),
            max_score_delta=float(d.get("max_score_delta", 0.0)),
            source=str(d.get("source", "")),
            notes=dict(d.get("notes", {})),
        )


class _Tally:
    """The running counts of ``compare``."""

    def __init__(self) -> None:
        self.frames = self.patches = self.changed = 0
        self.max_delta = 0.0
        self.differences: list[Difference] = []

    def add(self, name: str, a: Any, b: Any) -> None:
        for who, r in (("reference", a), ("candidate", b)):
            if getattr(r, "error", None) is not None:
                msg = f"{name}: the {who} could not inspect the frame: {r.error}"
                raise PyInspectError(msg)
        if a.patch_class.shape != b.patch_class.shape:
            msg = (
                f"{name}: reference has {a.patch_class.shape[0]} patches, candidate"
                f" {b.patch_class.shape[0]}; compare the same model and grid"
            )
            raise PyInspectError(msg)
        self.frames += 1
        if (a.texture, a.defective) != (b.texture, b.defective):
            self.differences.append(
                Difference(
                    name,
                    a.label,
                    b.label,
                    (int(a.texture), int(b.texture)),
                    (bool(a.defective), bool(b.defective)),
                )
            )
        self.patches += a.patch_class.size
        self.changed += int(np.count_nonzero(a.patch_class != b.patch_class))
        same = a.patch_class == b.patch_class
        if same.any():
            delta = np.abs(a.patch_score[same] - b.patch_score[same]).max()
            self.max_delta = max(self.max_delta, float(delta))


def compare(
    reference: Any,
    candidate: Any,
    frames: Iterable[tuple[str, np.ndarray]],
    *,
    reference_name: str = "reference",
    candidate_name: str = "candidate",
    source: str = "",
) -> GuardReport:
    """Run both on every ``(name, frame)`` and compare verdicts and patch decisions. Each of
    ``reference`` / ``candidate``: an object with ``inspect(frame)`` (a runner) or
    ``run(frame)`` (an Inspector), or a callable frame -> InspectionResult."""
    ref_run, cand_run = _frame_function(reference), _frame_function(candidate)
    tally = _Tally()
    for name, frame in frames:
        tally.add(str(name), ref_run(frame), cand_run(frame))
    return GuardReport(
        reference=reference_name,
        candidate=candidate_name,
        frames=tally.frames,
        differences=tuple(tally.differences),
        patch_class_changes=tally.changed,
        patches=tally.patches,
        max_score_delta=tally.max_delta,
        source=source,
    )


def enforce(report: GuardReport) -> GuardReport:
    """Return ``report`` when it is accepted; else raise ``PrecisionRejectedError`` with its
    summary."""
    if not report.accepted:
        msg = f"{report.summary()}\nKeep f32 for this model."
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
    against the f32 reference (``{"backend": "onnxruntime"}``) on ``frames``."""
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


def _frame_function(classifier: Any) -> Callable[[np.ndarray], Any]:
    """frame -> result of a runner (``inspect(frame)``; its ``run`` takes prepared frames), an
    Inspector (``run(frame)``) or a callable."""
    for attr in ("inspect", "run"):
        method = getattr(classifier, attr, None)
        if callable(method):
            return method  # type: ignore[no-any-return]
    if callable(classifier):
        return classifier  # type: ignore[no-any-return]
    msg = (
        "expected an object with inspect(frame) or run(frame), or a callable, got"
        f" {type(classifier).__name__}"
    )
    raise InputTypeError(msg)


# ---------------------------------------------------------------------------------------------
# guard frames


@dataclass(frozen=True)
class GuardFrames:
    """A frame set the guard can run on, produced lazily (1,200 frames of 512×512 would hold
    300 MB). ``ident`` identifies the set in the cache key; ``describe`` is for people;
    ``check()`` raises ``NoGuardFramesError`` when the frames cannot be produced here;
    ``synth_version`` is the synthetic generator version of a synthetic set (the one a DAGM
    model was trained on), ``None`` for recorded images."""

    ident: str
    describe: str
    count: int
    produce: Callable[[], Iterator[tuple[str, np.ndarray]]]
    check: Callable[[], object] = lambda: None  # raises when the frames cannot be produced
    synth_version: int | None = None

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        return self.produce()

    @classmethod
    def of(cls, frames: Iterable[tuple[str, np.ndarray]], describe: str = "") -> GuardFrames:
        """The caller's own ``(name, frame)`` pairs; ``ident`` hashes names and pixels, so the
        same frames give the same cache key."""
        pairs = [(str(name), np.asarray(frame)) for name, frame in frames]
        digest = hashlib.sha256()
        for name, frame in pairs:
            digest.update(
                name.encode() + b"\0" + str(frame.shape).encode() + str(frame.dtype).encode()
            )
            digest.update(np.ascontiguousarray(frame).tobytes())
        return cls(
            ident=f"given:{digest.hexdigest()[:16]}",
            describe=describe or f"{len(pairs)} frames given by the caller",
            count=len(pairs),
            produce=lambda: iter(pairs),
        )


def orient(image: np.ndarray, k: int) -> np.ndarray:
    """Dihedral orientation ``k`` (0..7) of ``image``: ``k % 4`` quarter turns, then a
    left-right flip when ``k >= 4`` (``train.patches.dihedral``'s numbering), C-contiguous."""
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= 7:
        msg = f"orientation must be an int in 0..7, got {k!r}"
        raise InputError(msg)
    out = np.rot90(image, k % 4)
    return np.ascontiguousarray(out[:, ::-1] if k >= 4 else out)


def synthetic_frames(
    *,
    version: int = SYNTH_VERSION,
    seed: int = SYNTH_SEED,
    per_class: int = SYNTH_PER_CLASS,
    orientations: Sequence[int] = ORIENTATIONS,
    textures: int = _DAGM_TEXTURES,
) -> GuardFrames:
    """Synthetic DAGM frames from ``train.synth.synth_image`` (pure in its arguments, so the
    set is the same everywhere): ``per_class`` good and defective images per texture, each in
    ``orientations``. ``check()`` fails where ``train`` is not installed."""
    orientations = _orientations(list(orientations))

    def generator() -> Callable[..., Any]:
        try:
            from train.synth import synth_image
        except ImportError as exc:
            msg = (
                "the synthetic DAGM generator (train.synth) is not importable here"
                f" ({exc}); it ships with the source tree, not the pyinspect wheel"
            )
            raise NoGuardFramesError(msg) from exc
        return synth_image  # type: ignore[no-any-return]

    ks = "".join(map(str, orientations))

    def produce() -> Iterator[tuple[str, np.ndarray]]:
        synth_image = generator()
        for t in range(textures):
            for defective in (False, True):
                for i in range(per_class):
                    img, _ = synth_image(seed, t, i, defective, version=version)
                    kind = "def" if defective else "good"
                    for k in orientations:
                        yield f"synth-v{version} t{t + 1} {kind} {i} k{k}", orient(img, k)

    return GuardFrames(
        ident=f"synth:v{version}:s{seed}:t{textures}:n{per_class}:k{ks}",
        describe=(
            f"synthetic DAGM v{version}, seed {seed}, {per_class} good + {per_class} defective"
            f" per texture, orientations {list(orientations)}"
        ),
        count=textures * 2 * per_class * len(orientations),
        produce=produce,
        check=generator,  # its value is not needed: only whether it raises
        synth_version=version,
    )


def guard_path(model_path: str | os.PathLike[str]) -> Path:
    """``models/x.onnx`` -> ``models/x.onnx.guard.json``."""
    p = Path(model_path)
    return p.with_name(GUARD_NAME.format(model=p.name))


def write_guard_frames(
    model_path: str | os.PathLike[str],
    images: Iterable[str | os.PathLike[str]],
    *,
    split: str = "val",
    orientations: Sequence[int] = ORIENTATIONS,
) -> Path:
    """Record the images the guard runs this model on (``<model>.guard.json``), each path
    relative to the model's folder where one exists (absolute otherwise), and the folder it was
    written in, so a run folder moved away from its data still finds the images. Replaces an
    earlier record of the same model atomically."""
    model = Path(model_path)
    folder = model.parent.resolve()
    listed = []
    for image in images:
        p = Path(image).resolve()
        try:
            listed.append(Path(os.path.relpath(p, folder)).as_posix())
        except ValueError:  # another drive (Windows): no relative path exists
            listed.append(str(p))
    ks = _orientations(list(orientations))  # the same check as at guard time
    doc = {
        "format": _GUARD_FORMAT,
        "version": _FILE_VERSION,
        "split": split,
        "written_in": str(folder),
        "orientations": list(ks),
        "images": listed,
    }
    path = guard_path(model)
    replace_file(path, (json.dumps(doc, indent=1) + "\n").encode())
    return path


def write_synthetic_guard(
    model_path: str | os.PathLike[str],
    *,
    version: int,
    seed: int = SYNTH_SEED,
    per_class: int = SYNTH_PER_CLASS,
    orientations: Sequence[int] = ORIENTATIONS,
) -> Path:
    """Record that the guard runs this DAGM model on synthetic frames of generator ``version``
    (the version it was trained on: a guard on another version's images judges it away from
    its data). Replaces an earlier record atomically."""
    ks = _orientations(list(orientations))
    doc = {
        "format": _GUARD_FORMAT,
        "version": _FILE_VERSION,
        "synth": {
            "version": int(version),
            "seed": int(seed),
            "per_class": int(per_class),
            "orientations": list(ks),
        },
    }
    path = guard_path(model_path)
    replace_file(path, (json.dumps(doc, indent=1) + "\n").encode())
    return path


def _load_record(path: Path) -> dict[str, Any]:
    """A guard-frames record's document, its format and version checked (``ValueError``)."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or doc.get("format") != _GUARD_FORMAT:
        msg = f"not a {_GUARD_FORMAT!r} file"
        raise ValueError(msg)
    if doc.get("version") != _FILE_VERSION:
        msg = f"version {doc.get('version')!r}, this pyinspect reads {_FILE_VERSION}"
        raise ValueError(msg)
    return doc


def _orientations(value: Any) -> tuple[int, ...]:
    """A non-empty list of dihedral indices 0..7, checked (``InputError``)."""
    if not isinstance(value, list) or not value:
        msg = f"orientations must be a non-empty list of ints in 0..7, got {value!r}"
        raise InputError(msg)
    for k in value:
        orient(np.zeros((1, 1), np.uint8), k)
    return tuple(value)


def _synth_record(spec: Any) -> GuardFrames:
    if not isinstance(spec, dict):
        msg = "'synth' must be an object"
        raise ValueError(msg)
    ints = {}
    for name in ("version", "seed", "per_class"):
        value = spec.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            msg = f"'synth.{name}' must be an int >= 0, got {value!r}"
            raise ValueError(msg)
        ints[name] = value
    return synthetic_frames(**ints, orientations=_orientations(spec.get("orientations")))


def recorded_frames(record: str | os.PathLike[str]) -> GuardFrames:
    """The frames a ``<model>.guard.json`` names: images (``write_guard_frames``), read with
    ``pyinspect.frames.load_frame`` when the guard runs, ``check()`` naming missing ones; or a
    synthetic set (``write_synthetic_guard``). ``NoGuardFramesError`` for an unreadable
    record."""
    from pyinspect.frames import load_frame

    path = Path(record)
    try:
        doc = _load_record(path)
        if "synth" in doc:
            return _synth_record(doc["synth"])
        images = doc["images"]
        if not isinstance(images, list) or not all(isinstance(x, str) for x in images):
            msg = "'images' must be a list of paths"
            raise ValueError(msg)
        orientations = _orientations(doc.get("orientations", [0]))
        written_in = str(doc["written_in"]) if doc.get("written_in") else None
        split = str(doc.get("split", "recorded"))
    except (OSError, ValueError, KeyError, TypeError, InputError) as exc:
        msg = f"no guard frames: {path} cannot be read as a guard-frames record: {exc}"
        raise NoGuardFramesError(msg) from exc
    if not images:
        msg = f"no guard frames: {path} lists no images"
        raise NoGuardFramesError(msg)
    here = path.parent

    def locate(name: str) -> Path | None:
        candidates = [here / name]
        if written_in:  # resolved when written; it may be gone now, so ".." is taken lexically
            candidates.append(Path(os.path.normpath(Path(written_in) / name)))
        return next((c for c in candidates if c.is_file()), None)

    def resolved() -> list[Path]:
        found = [locate(n) for n in images]
        missing = [n for n, p in zip(images, found, strict=True) if p is None]
        if missing:
            msg = (
                f"no guard frames: {len(missing)} of the {len(images)} images {path.name}"
                f" lists are missing (first: {missing[0]}, looked for beside {here}"
                f"{f' and {written_in}' if written_in else ''})"
            )
            raise NoGuardFramesError(msg)
        return [p for p in found if p is not None]

    def produce() -> Iterator[tuple[str, np.ndarray]]:
        for name, p in zip(images, resolved(), strict=True):
            image = load_frame(p)
            for k in orientations:
                yield (f"{name} k{k}" if len(orientations) > 1 else name), orient(image, k)

    listing = json.dumps([images, list(orientations)]).encode()
    return GuardFrames(
        ident=f"recorded:{hashlib.sha256(listing).hexdigest()[:16]}",
        describe=f"{len(images)} {split} images of {path.name}, orientations {list(orientations)}",
        count=len(images) * len(orientations),
        produce=produce,
        check=resolved,
    )


def guard_frames(model_path: str | os.PathLike[str], spec: Any = None) -> GuardFrames:
    """What the guard runs this model on: its ``<model>.guard.json``, else the synthetic DAGM
    set for a 12-class DAGM model, else ``NoGuardFramesError`` saying why."""
    record = guard_path(model_path)
    if record.exists():
        return recorded_frames(record)
    if spec is None:
        from pyinspect.spec import ModelSpec

        spec = ModelSpec.for_model(model_path)
    if _is_dagm(spec):
        return synthetic_frames()
    msg = (
        f"no guard frames: {record.name} not found beside {model_path} (python -m train run"
        f" writes it: the run's validation images), and the model is not a"
        f" {2 * _DAGM_TEXTURES}-class DAGM model (synthetic frames)"
    )
    raise NoGuardFramesError(msg)


def _is_dagm(spec: Any) -> bool:
    want = [
        (f"Class{t + 1}{'_def' if d else ''}", t, d)
        for t in range(_DAGM_TEXTURES)
        for d in (False, True)
    ]
    return [(c.name, c.texture, c.defective) for c in spec.classes] == want


def _fitted(
    frames: Iterable[tuple[str, np.ndarray]], spec: Any
) -> Iterator[tuple[str, np.ndarray]]:
    """Frames smaller than the patch fitted by the sidecar's ``resize`` (as ``Inspector.prepare``
    does), so a bare runner sees what an Inspector would."""
    from pyinspect.resize import fit_to_patch

    for name, frame in frames:
        small = frame.shape[0] < spec.patch or frame.shape[1] < spec.patch
        yield name, (fit_to_patch(frame, spec.patch, spec.resize) if small else frame)


# ---------------------------------------------------------------------------------------------
# the cache


def model_sha256(model_path: str | os.PathLike[str]) -> str:
    """SHA-256 of the model file (``ModelFileError`` naming it when it cannot be read)."""
    path = Path(model_path)
    try:
        with path.open("rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    except OSError as exc:
        msg = f"{path}: cannot read model file: {exc.strerror or exc}"
        raise ModelFileError(msg) from exc


_LEVEL_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_bf16")


def cpu_feature_level() -> str:
    """The CPU features a lower precision's numerics depend on, e.g.
    ``"x86_64 avx2+fma+avx512f+avx512_bf16"`` (Linux ``/proc/cpuinfo``; elsewhere the machine
    and processor names). A ``level`` for ``resolve_precision`` where no kernel level names it."""
    machine = platform.machine() or "unknown"
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"{machine} {platform.processor() or 'unknown'}"
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.split(":", 1)[-1].split())
            break
    return f"{machine} {'+'.join(f for f in _LEVEL_FLAGS if f in flags) or 'baseline'}"


def _runtime_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pyinspect")
    except PackageNotFoundError:
        return "0.0.0+unknown"


@dataclass(frozen=True)
class CacheKey:
    """What a cached guard result holds for: a result is reused only when every field matches
    (another model file, CPU level, precision, rule, frame set or pyinspect release: the guard
    runs again)."""

    model_sha256: str
    level: str
    precision: str
    frames: str
    rule: int = RULE_VERSION
    runtime: str = field(default_factory=_runtime_version)

    def fields(self) -> dict[str, Any]:
        return {
            "model_sha256": self.model_sha256,
            "level": self.level,
            "precision": self.precision,
            "frames": self.frames,
            "rule": self.rule,
            "runtime": self.runtime,
        }


def cache_path(model_path: str | os.PathLike[str]) -> Path:
    """``models/x.onnx`` -> ``models/x.onnx.parity.json``."""
    p = Path(model_path)
    return p.with_name(CACHE_NAME.format(model=p.name))


def user_cache_dir() -> Path | None:
    """``$XDG_CACHE_HOME/pyinspect/parity`` (an absolute ``XDG_CACHE_HOME`` only), else
    ``~/.cache/pyinspect/parity``; ``None`` without a home folder."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "pyinspect" / "parity"
    try:
        return Path.home() / ".cache" / "pyinspect" / "parity"
    except RuntimeError:
        return None


class _Unusable(Exception):
    """A cache location that cannot take a write (its reason is the message)."""


class ParityCache:
    """Guard results of one model: read from ``<model>.parity.json`` beside it, then from the
    user's cache folder (``<sha256>.json``); written beside the model, or in the user's folder
    when the model's folder cannot be written.

    A file holds entries for several keys; writing one replaces only the entry of the same key
    (re-read just before, written to a temporary file and renamed over, so a reader never sees
    half a file). Entries of another model SHA-256 are never used, and kept. A file that is not
    one this release reads is treated as missing, with a warning; before a fresh cache is
    written in its place it is renamed to ``<name>.corrupt`` (``.corrupt.2``, ...), never
    deleted. A folder, or a file of a newer format, is left alone and the next location used.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        beside: Path | None = None,
        user_dir: Path | str | None = "auto",
        logger: logging.Logger | None = None,
    ) -> None:
        self.model_path = Path(model_path)
        self.beside = beside if beside is not None else cache_path(self.model_path)
        self.user_dir = user_cache_dir() if user_dir == "auto" else user_dir
        self.log = logger or log

    def locations(self, sha: str) -> list[Path]:
        """Where entries of the model with SHA-256 ``sha`` are looked up, in order."""
        out = [self.beside]
        if isinstance(self.user_dir, Path):
            out.append(self.user_dir / f"{sha}.json")
        return out

    def lookup(self, key: CacheKey) -> tuple[GuardReport, Path] | None:
        """The cached report for ``key`` and the file it came from, or ``None``."""
        want = key.fields()
        for path in self.locations(key.model_sha256):
            state, doc = self._read(path)
            if state == "corrupt":
                self.log.warning(
                    "%s: %s; treated as missing (it is renamed to %s when a fresh cache is"
                    " written there)",
                    path,
                    doc,
                    _aside_name(path).name,
                )
            if state != "ok":
                continue
            for entry in doc["entries"]:
                if isinstance(entry, dict) and all(entry.get(k) == v for k, v in want.items()):
                    try:
                        return GuardReport.from_dict(entry["report"]), path
                    except (KeyError, TypeError, ValueError, IndexError):
                        continue  # a damaged entry: as if absent
        return None

    def store(self, key: CacheKey, report: GuardReport) -> Path | None:
        """Cache ``report`` under ``key``; returns the file written, or ``None`` (logged) when
        no location takes it (the guard then runs again next time)."""
        entry = {
            **key.fields(),
            "accepted": report.accepted,
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "report": report.to_dict(),
        }
        reasons = []
        for path in self.locations(key.model_sha256):
            try:
                self._write(path, key, entry)
            except _Unusable as exc:
                reasons.append(f"{path}: {exc}")
                continue
            return path
        self.log.warning(
            "the precision guard's result could not be cached (%s); it runs again next time",
            "; ".join(reasons) or "no cache location",
        )
        return None

    def _read(self, path: Path) -> tuple[str, Any]:
        """(``"missing"`` | ``"ok"`` | ``"corrupt"`` | ``"newer"`` | ``"other"``, doc or reason)."""
        if not os.path.lexists(path):
            return "missing", None
        if not path.is_file():
            return "other", "not a regular file"
        try:
            doc = json.loads(path.read_bytes().decode("utf-8"))
        except PermissionError as exc:
            return "other", f"cannot be read: {exc.strerror or exc}"
        except (OSError, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError included
            return (
                "corrupt",
                f"not a parity cache this pyinspect reads ({type(exc).__name__}: {exc})",
            )
        if not isinstance(doc, dict) or doc.get("format") != _CACHE_FORMAT:
            return (
                "corrupt",
                f"not a parity cache this pyinspect reads (no format {_CACHE_FORMAT!r})",
            )
        version = doc.get("version")
        if isinstance(version, int) and not isinstance(version, bool) and version > _FILE_VERSION:
            return "newer", f"written by a newer pyinspect (format version {version})"
        if version != _FILE_VERSION or not isinstance(doc.get("entries"), list):
            return "corrupt", "not a parity cache this pyinspect reads (version or entries)"
        return "ok", doc

    def _write(self, path: Path, key: CacheKey, entry: dict[str, Any]) -> None:
        state, doc = self._read(path)
        if state in ("newer", "other"):
            raise _Unusable(doc)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if state == "corrupt":
                aside = _aside_name(path)
                os.replace(path, aside)
                self.log.warning("%s: %s; renamed to %s, a fresh cache written", path, doc, aside)
            want = key.fields()
            kept = [
                e
                for e in (doc["entries"] if state == "ok" else [])
                if not (isinstance(e, dict) and all(e.get(k) == v for k, v in want.items()))
            ]
            body = {"format": _CACHE_FORMAT, "version": _FILE_VERSION, "entries": [*kept, entry]}
            replace_file(path, (json.dumps(body, indent=1) + "\n").encode())
        except OSError as exc:
            raise _Unusable(exc.strerror or str(exc)) from exc


def _aside_name(path: Path) -> Path:
    """The first free ``<name>.corrupt``, ``<name>.corrupt.2``, ... beside ``path``."""
    aside = path.with_name(path.name + ".corrupt")
    n = 2
    while os.path.lexists(aside):
        aside = path.with_name(f"{path.name}.corrupt.{n}")
        n += 1
    return aside


# ---------------------------------------------------------------------------------------------
# computing and deciding


def run_guard(
    model_path: str | os.PathLike[str],
    precision: str,
    candidate_factory: Factory,
    reference_factory: Factory,
    *,
    frames: GuardFrames | Iterable[tuple[str, np.ndarray]] | None = None,
    spec: Any = None,
) -> GuardReport:
    """Compute the guard for ``precision`` now (no cache): build both paths, run them on
    ``frames`` (``None``: ``guard_frames(model_path)``), close what the factories built.
    ``NoGuardFramesError`` when there is nothing to run on."""
    if spec is None:
        from pyinspect.spec import ModelSpec

        spec = ModelSpec.for_model(model_path)
    if frames is None:
        frames = guard_frames(model_path, spec)
    elif not isinstance(frames, GuardFrames):
        frames = GuardFrames.of(frames)
    frames.check()
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        reference = _owned(stack, reference_factory())
        candidate = _owned(stack, candidate_factory())
        report = compare(
            reference,
            candidate,
            _fitted(frames, spec),
            reference_name="f32",
            candidate_name=precision,
            source=frames.describe,
        )
    notes = {"frames_id": frames.ident, "seconds": round(time.perf_counter() - t0, 2)}
    return dataclasses.replace(report, notes=notes)


def _owned(stack: contextlib.ExitStack, obj: Any) -> Any:
    close = getattr(obj, "close", None)
    if callable(close):
        stack.callback(close)
    return obj


def resolve_precision(
    model_path: str | os.PathLike[str],
    requested: str,
    candidate_factory: Factory,
    reference_factory: Factory,
    level: str,
    logger: logging.Logger | None = None,
    *,
    frames: GuardFrames | Iterable[tuple[str, np.ndarray]] | None = None,
    cache: ParityCache | None = None,
) -> tuple[str, GuardReport | None]:
    """The precision to run ``model_path`` in, and the guard report behind it.

    ``requested`` ``"f32"``: ``("f32", None)``, no guard. A lower precision: the cached result
    for (model SHA-256, ``level``, precision, rule, frames, pyinspect version), or the guard run
    once now (``run_guard``) and cached. Accepted: ``(requested, report)``. Rejected:
    ``("f32", report)`` with a warning giving the counts. The guard cannot run (no frames, a
    factory or a frame fails): ``("f32", None)`` with a warning saying why.

    ``candidate_factory()`` builds the path at ``requested`` and ``reference_factory()`` the f32
    one (``lambda: StudentRunner(model, precision="bf16")``); ``level`` names what the
    numerics depend on besides the model (a kernel level, ``cpu_feature_level()``).
    """
    out = logger or log
    if not isinstance(requested, str) or not requested:
        msg = f"precision must be a non-empty str such as 'f32' or 'bf16', got {requested!r}"
        raise InputError(msg)
    if not isinstance(level, str) or not level:
        msg = f"level must be a non-empty str naming the CPU / kernel level, got {level!r}"
        raise InputError(msg)
    if requested == "f32":
        return "f32", None
    path = Path(model_path)
    sha = model_sha256(path)
    try:
        if frames is None:
            frames = guard_frames(path)
        elif not isinstance(frames, GuardFrames):
            frames = GuardFrames.of(frames)
    except NoGuardFramesError as exc:
        out.warning("%s: precision %r not used, running f32: %s", path, requested, exc)
        return "f32", None
    key = CacheKey(sha, level, requested, frames.ident)
    cache = cache if cache is not None else ParityCache(path, logger=out)
    hit = cache.lookup(key)
    if hit is not None:
        report, where = hit
        out.debug("%s: precision guard result for %r read from %s", path, requested, where)
    else:
        out.info(
            "%s: checking precision %r against f32 on %d frames (%s); runs once, then cached",
            path,
            requested,
            frames.count,
            frames.describe,
        )
        try:
            report = run_guard(path, requested, candidate_factory, reference_factory, frames=frames)
        except (PyInspectError, ImportError, OSError) as exc:
            out.warning(
                "%s: precision %r not used, running f32: the precision guard could not run: %s",
                path,
                requested,
                exc,
            )
            return "f32", None
        cache.store(key, report)
    if report.accepted:
        return requested, report
    out.warning(
        "%s: precision %r rejected by the verdict-parity guard, running f32: %s",
        path,
        requested,
        report.summary(),
    )
    return "f32", report
