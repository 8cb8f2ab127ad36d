"""ModelSpec: the sidecar JSON next to every model (``student.onnx`` -> ``student.onnx.json``).

A TensorRT plan or an ONNX graph cannot carry the class table, patch grid and normalisation the
runtime needs, so export writes them beside the model and every backend reads them from here.
The schema is versioned; older versions are upgraded by the functions in ``MIGRATIONS`` before
validation, and every problem is reported as ``<file>: <field.path>: <what is wrong>``.

Version 2 adds what a model trained on someone's own parts needs: ``classes[].defect_type``,
``input.bit_depth``, ``resize`` (frames smaller than the patch), ``threshold`` with the
``calibration`` that chose it and the ``history`` of earlier ones. A version 1 file reads as
version 2 with every new field at its default; ``save`` writes version 2.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pyinspect.errors import ModelFileError, PyInspectError, SpecError, suggest

SCHEMA_VERSION: Literal[2] = 2
SIDECAR_SUFFIX = ".json"
EXPORT_HINT = "Create it by exporting the model with `python -m train export` (it writes both)."

#: Sane normalisation for inputs scaled to [0, 1] (``x / max_value``): a mean within one full
#: scale of that range, and a std from 1 / 65535 (raw values of any camera up to 16 bits) to 10 (the
#: whole input range then spans 0.1). Outside these one constant decides every patch, or the
#: tiler's scale overflows: ``std: [1e300]`` made every frame good, ``mean: [1e30]`` every patch
#: defective.
MEAN_RANGE = (-1.0, 2.0)
STD_RANGE = (1.0 / 65535.0, 10.0)
FLOAT16_MAX = 65504.0

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Camera bit depths a sidecar may name; frames deeper than 8 bits arrive as uint16.
BIT_DEPTHS = (8, 10, 12, 16)
#: ``ClassSpec.defect_name`` of a defective class that names no type (types merged, or a v1 file).
GENERIC_DEFECT = "defective"


def _v1_to_v2(doc: dict[str, Any]) -> dict[str, Any]:
    """v2 only adds fields whose defaults describe a v1 model exactly (no defect types, 8-bit
    input, no resize, the argmax rule), so the upgrade sets the version and nothing else."""
    return {**doc, "schema_version": 2}


# Upgraders, keyed by the version they read: MIGRATIONS[v](doc) returns the same document in
# version v + 1.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _v1_to_v2}


class SidecarExistsError(PyInspectError, FileExistsError):
    """``ModelSpec.save(..., overwrite=False)`` found a file already there."""


class _Strict(BaseModel):
    """Strict JSON types (no "3" -> 3), unknown keys rejected, immutable once loaded."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class _Open(BaseModel):
    """Like ``_Strict`` but keeps unknown keys: provenance and engine are written by tools that
    may record more than this schema names."""

    model_config = ConfigDict(strict=True, extra="allow", frozen=True)


class ClassSpec(_Strict):
    """One output column: its name, texture id, whether it is a defective class and, for a
    defective one, the defect type it detects (``None``: not named, read as ``"defective"``)."""

    name: str = Field(min_length=1)
    texture: int = Field(ge=0)
    defective: bool
    defect_type: str | None = Field(default=None, min_length=1)

    @property
    def defect_name(self) -> str | None:
        """``None`` for a good class; the defect type, or ``"defective"`` when none is named."""
        if not self.defective:
            return None
        return self.defect_type if self.defect_type is not None else GENERIC_DEFECT


class GridSpec(_Strict):
    """How a frame is cut into patches: ``cover`` = fewest evenly overlapping patches that cover
    the frame (3×3 on 512×512); ``fixed`` = exactly ``rows`` × ``cols``."""

    policy: Literal["cover", "fixed"] = "cover"
    rows: int | None = Field(default=None, ge=1)
    cols: int | None = Field(default=None, ge=1)


class InputSpec(_Strict):
    """The model's input tensor; batch is ``-1`` when dynamic. ``bit_depth``: of the camera's
    frames (above 8 they arrive as uint16 and are scaled by ``1 / (2**bit_depth - 1)``)."""

    name: str = Field(min_length=1)
    shape: list[int] = Field(min_length=4, max_length=4)
    dtype: Literal["float32", "float16"] = "float32"
    channels: Literal[1, 3]
    color: Literal["rgb", "gray"]
    layout: Literal["NCHW"] = "NCHW"
    bit_depth: Literal[8, 10, 12, 16] = 8


class NormalizationSpec(_Strict):
    """Per-channel ``(x / max_value - mean) / std`` (``max_value`` = 255 for 8-bit frames)."""

    mean: list[float]
    std: list[float]


class OutputSpec(_Strict):
    name: str = Field(min_length=1)
    kind: Literal["logits", "probabilities"] = "logits"


class ProvenanceSpec(_Open):
    """Where the model came from. All optional; unknown keys are kept as written."""

    created: str | None = None  # ISO 8601
    preset: str | None = None
    model: str | None = None
    teacher: str | None = None
    seed: int | None = None
    accuracy: float | None = None  # fraction in [0, 1] on ``dataset``
    dataset: str | None = None
    notes: str | None = None
    source_sha256: str | None = None  # of the file this model was built from (ONNX for a plan)
    model_sha256: str | None = None  # of the model file itself, to detect a stale sidecar
    parameters: int | None = None


class ProfileSpec(_Strict):
    """Batch sizes (or full shapes) of a TensorRT optimisation profile."""

    min: int | list[int]
    opt: int | list[int]
    max: int | list[int]


class EngineSpec(_Open):
    """Present when the model file is a compiled engine tied to a GPU and library version."""

    backend: str
    tensorrt_version: str | None = None
    gpu_name: str | None = None
    compute_capability: str | None = None
    precision: str | None = None
    profile: ProfileSpec | None = None


class CalibrationSpec(_Open):
    """How ``threshold`` was chosen: the rule (reach ``target`` TPR, or at most ``target`` false
    alarm rate), the rates and counts it gave on ``split`` of ``data``, and when. Unknown keys are
    kept: a calibration tool may record more."""

    threshold: float = Field(gt=0.0, le=1.0)
    rule: Literal["target_tpr", "max_false_alarm"]
    target: float | None = Field(default=None, ge=0.0, le=1.0)
    tpr: float | None = Field(default=None, ge=0.0, le=1.0)
    tnr: float | None = Field(default=None, ge=0.0, le=1.0)
    tp: int | None = Field(default=None, ge=0)
    fn: int | None = Field(default=None, ge=0)
    tn: int | None = Field(default=None, ge=0)
    fp: int | None = Field(default=None, ge=0)
    split: str | None = None
    data: str | None = None
    created: str | None = None  # ISO 8601


class ModelSpec(_Strict):
    """Validated sidecar. Index ``i`` of ``classes`` describes output column ``i``.

    ``threshold``: ``None`` = a patch is defective when its argmax class is; ``t`` in (0, 1] =
    when its summed defective-class probability is >= t. ``history``: the threshold and
    calibration entries ``with_threshold`` replaced, oldest first.
    """

    schema_version: Literal[2] = SCHEMA_VERSION
    classes: list[ClassSpec] = Field(min_length=1)
    textures: list[str] = Field(min_length=1)
    patch: int = Field(ge=1)
    grid: GridSpec = GridSpec()
    input: InputSpec
    normalization: NormalizationSpec
    output: OutputSpec
    provenance: ProvenanceSpec = ProvenanceSpec()
    engine: EngineSpec | None = None
    resize: Literal["none", "upscale", "reflect"] = "none"
    threshold: float | None = Field(default=None, gt=0.0, le=1.0)
    calibration: CalibrationSpec | None = None
    history: list[dict[str, Any]] = []

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        issues = _consistency_issues(self)
        if issues:
            raise ValueError("; ".join(f"{loc}: {text}" for loc, text in issues))
        return self

    # ---- derived views used on the hot path (computed once; read-only) -----------------------
    @cached_property
    def class_texture(self) -> np.ndarray:
        """int32 [K]: texture id of each output column."""
        return _readonly(np.array([c.texture for c in self.classes], dtype=np.int32))

    @cached_property
    def class_defective(self) -> np.ndarray:
        """bool [K]: whether each output column is a defective class."""
        return _readonly(np.array([c.defective for c in self.classes], dtype=np.bool_))

    @cached_property
    def class_defect_type(self) -> tuple[str | None, ...]:
        """Per output column: ``None`` for a good class, else its ``defect_name``."""
        return tuple(c.defect_name for c in self.classes)

    @cached_property
    def texture_defect_type(self) -> tuple[str, ...]:
        """Per texture: the one defect type its defective classes name, or ``"defective"`` when
        they name several (or none)."""
        names: list[set[str]] = [set() for _ in self.textures]
        for c in self.classes:
            if c.defective:
                names[c.texture].add(c.defect_name or GENERIC_DEFECT)
        return tuple(next(iter(n)) if len(n) == 1 else GENERIC_DEFECT for n in names)

    @property
    def defect_types(self) -> list[str]:
        """The distinct defect types of the defective classes, in class order."""
        return list(dict.fromkeys(n for n in self.class_defect_type if n is not None))

    @property
    def bit_depth(self) -> int:
        return self.input.bit_depth

    @property
    def max_value(self) -> int:
        """The full-scale pixel value, ``2**bit_depth - 1``: the input is ``x / max_value``."""
        return int(2**self.input.bit_depth - 1)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def channels(self) -> int:
        return self.input.channels

    @property
    def grid_rows_cols(self) -> tuple[int | None, int | None]:
        """``(rows, cols)`` for ``pyinspect.tiling.patch_grid``; ``(None, None)`` = cover."""
        return (self.grid.rows, self.grid.cols) if self.grid.policy == "fixed" else (None, None)

    def label(self, texture: int, defective: bool) -> str:
        """Human label, e.g. ``"Texture 4 defective"`` / ``"Texture 4 good"``."""
        if not 0 <= texture < len(self.textures):
            msg = f"texture id {texture} out of range [0, {len(self.textures)})"
            raise IndexError(msg)
        return f"{self.textures[texture]} {'defective' if defective else 'good'}"

    # ---- files ---------------------------------------------------------------------------------
    @staticmethod
    def sidecar_path(model_path: str | os.PathLike[str]) -> Path:
        """``models/student.onnx`` -> ``models/student.onnx.json``."""
        p = Path(model_path)
        return p.with_name(p.name + SIDECAR_SUFFIX)

    @classmethod
    def for_model(cls, model_path: str | os.PathLike[str]) -> ModelSpec:
        """Load the sidecar that belongs to ``model_path``."""
        sidecar = cls.sidecar_path(model_path)
        if not sidecar.is_file():
            msg = (
                f"No sidecar for model {str(model_path)!r}: expected {str(sidecar)!r}."
                f" {EXPORT_HINT}"
            )
            raise SpecError(msg)
        spec = cls.load(sidecar)
        spec.check_model_digest(model_path)
        return spec

    def check_model_digest(self, model_path: str | os.PathLike[str]) -> None:
        """Refuse a model file whose SHA-256 differs from ``provenance.model_sha256`` (when the
        sidecar records one): a file changed, corrupted or half-copied since export may still
        parse, and would then give wrong verdicts instead of an error at load time."""
        want = self.provenance.model_sha256
        path = Path(model_path)
        if want is None or not path.is_file():  # a missing model is the backend's error to name
            return
        try:
            with path.open("rb") as fh:
                got = hashlib.file_digest(fh, "sha256").hexdigest()
        except OSError as exc:
            msg = f"{path}: cannot read model file: {exc.strerror or exc}"
            raise ModelFileError(msg) from exc
        if got != want.lower():
            msg = (
                f"{path}: model file does not match its sidecar {self.sidecar_path(path).name}"
                f" (sha256 {got[:16]}..., provenance.model_sha256 {want[:16]}...): it was"
                " changed, corrupted or only partly copied since export; copy it again or"
                " re-export the model and its sidecar together"
            )
            raise ModelFileError(msg)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ModelSpec:
        """Read, migrate and validate a sidecar; any problem is a ``SpecError`` naming the file."""
        path = Path(path)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            msg = f"{path}: sidecar not found. {EXPORT_HINT}"
            raise SpecError(msg) from None
        except OSError as exc:
            msg = f"{path}: cannot read sidecar: {exc.strerror or exc}"
            raise SpecError(msg) from exc
        return cls.from_json(raw, source=str(path))

    @classmethod
    def from_json(cls, data: bytes | str, *, source: str = "<sidecar>") -> ModelSpec:
        """Parse sidecar text; ``source`` names it in error messages."""
        doc = _parse_json(data, source)
        where = _lone_surrogate(doc)
        if where is not None:
            msg = (
                f"{source}: {where}: text holds a lone UTF-16 surrogate (a \\ud800-\\udfff"
                " escape without its pair), which is not Unicode; fix or re-export the sidecar"
            )
            raise SpecError(msg)
        return cls.from_dict(doc, source=source)

    @classmethod
    def from_dict(cls, doc: Any, *, source: str = "<sidecar>") -> ModelSpec:
        """Migrate and validate an already-parsed sidecar document."""
        if not isinstance(doc, dict):
            msg = f"{source}: must be a JSON object, got {type(doc).__name__}"
            raise SpecError(msg)
        doc = migrate(doc, source=source)
        try:
            return cls.model_validate(doc)
        except ValidationError as exc:
            issues = _merge_union_issues(
                [item for e in exc.errors(include_url=False) for item in _describe(e)]
            )
            detail = "; ".join(f"{loc}: {text}" if loc else text for loc, text in issues)
            err = SpecError(f"{source}: {detail}")
            err.path = source  # type: ignore[attr-defined]
            err.issues = issues  # type: ignore[attr-defined]
            raise err from None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready document; unset provenance/engine/calibration fields are left out."""
        doc = self.model_dump(mode="json", exclude={"provenance", "engine", "calibration"})
        doc["provenance"] = self.provenance.model_dump(mode="json", exclude_none=True)
        if self.engine is not None:
            doc["engine"] = self.engine.model_dump(mode="json", exclude_none=True)
        doc["calibration"] = (
            None
            if self.calibration is None
            else self.calibration.model_dump(mode="json", exclude_none=True)
        )
        return doc

    def with_threshold(
        self,
        threshold: float | None,
        calibration: CalibrationSpec | dict[str, Any] | None = None,
    ) -> ModelSpec:
        """A copy with ``threshold`` and ``calibration`` set; the current pair (when either is
        set) is appended to ``history`` with the time it was replaced, so no calibration is
        lost. ``threshold=None`` goes back to the argmax rule (then ``calibration`` must be
        ``None``). Invalid values raise ``SpecError`` naming the field."""
        doc = self.to_dict()
        if self.threshold is not None or self.calibration is not None:
            doc["history"] = [
                *doc["history"],
                {
                    "threshold": doc["threshold"],
                    "calibration": doc["calibration"],
                    "replaced": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                },
            ]
        if isinstance(calibration, CalibrationSpec):
            calibration = calibration.model_dump(mode="json", exclude_none=True)
        doc["threshold"] = threshold
        doc["calibration"] = calibration
        return type(self).from_dict(doc, source="ModelSpec.with_threshold")

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = True) -> Path:
        """Write atomically (temp file in the same folder, then rename), so a reader never sees a
        half-written sidecar. ``overwrite=False`` refuses to replace an existing file, atomically
        (hard link, which fails if the name exists)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            # mkstemp makes the file 0600; a sidecar is shared like the model beside it
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(fd, 0o666 & ~umask)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(self.to_json())
                fh.flush()
                os.fsync(fh.fileno())
            if overwrite:
                os.replace(tmp_name, path)
            else:
                try:
                    os.link(tmp_name, path)
                except FileExistsError:
                    msg = f"{path}: sidecar already exists; pass overwrite=True to replace it"
                    raise SidecarExistsError(msg) from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
        return path

    def save_for_model(self, model_path: str | os.PathLike[str], *, overwrite: bool = True) -> Path:
        """Write this spec as ``<model_path>.json``."""
        return self.save(self.sidecar_path(model_path), overwrite=overwrite)

    # ---- the one builder: train/export.py writes every sidecar through it, tests use it too ---
    @classmethod
    def for_dagm(
        cls,
        *,
        n_textures: int = 6,
        patch: int = 224,
        channels: Literal[1, 3] = 3,
        **options: Any,
    ) -> ModelSpec:
        """The DAGM layout: classes ``Class1, Class1_def, Class2, ...`` (column ``2t + defective``),
        textures ``Texture 1..n``; ``options`` as for ``for_classes``."""
        classes = [
            {"name": f"Class{t + 1}{'_def' if d else ''}", "texture": t, "defective": d}
            for t in range(n_textures)
            for d in (False, True)
        ]
        textures = [f"Texture {t + 1}" for t in range(n_textures)]
        return cls.for_classes(
            classes,
            textures,
            patch=patch,
            channels=channels,
            source="ModelSpec.for_dagm",
            **options,
        )

    @classmethod
    def for_classes(
        cls,
        classes: Sequence[ClassSpec | dict[str, Any]],
        textures: Sequence[str],
        *,
        patch: int = 224,
        channels: Literal[1, 3] = 3,
        dtype: Literal["float32", "float16"] = "float32",
        bit_depth: Literal[8, 10, 12, 16] = 8,
        input_name: str = "input",
        output_name: str = "logits",
        output_kind: Literal["logits", "probabilities"] = "logits",
        batch: int = -1,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        grid: GridSpec | None = None,
        resize: Literal["none", "upscale", "reflect"] = "none",
        threshold: float | None = None,
        calibration: CalibrationSpec | dict[str, Any] | None = None,
        provenance: dict[str, Any] | None = None,
        engine: dict[str, Any] | None = None,
        source: str = "ModelSpec.for_classes",
    ) -> ModelSpec:
        """Any class table (``{"name", "texture", "defective", "defect_type"}`` per output
        column) and texture names. Default normalisation: ImageNet statistics (gray: their
        mean). Every problem is a ``SpecError`` naming the field."""
        if mean is None:
            mean = IMAGENET_MEAN if channels == 3 else (float(np.mean(IMAGENET_MEAN)),)
        if std is None:
            std = IMAGENET_STD if channels == 3 else (float(np.mean(IMAGENET_STD)),)
        if isinstance(calibration, CalibrationSpec):
            calibration = calibration.model_dump(mode="json", exclude_none=True)
        doc: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "classes": [
                c.model_dump(mode="json") if isinstance(c, ClassSpec) else dict(c) for c in classes
            ],
            "textures": list(textures),
            "patch": patch,
            "grid": (grid or GridSpec()).model_dump(),
            "input": {
                "name": input_name,
                "shape": [batch, channels, patch, patch],
                "dtype": dtype,
                "channels": channels,
                "color": "rgb" if channels == 3 else "gray",
                "layout": "NCHW",
                "bit_depth": bit_depth,
            },
            "normalization": {"mean": [float(m) for m in mean], "std": [float(s) for s in std]},
            "output": {"name": output_name, "kind": output_kind},
            "provenance": provenance or {},
            "resize": resize,
            "threshold": threshold,
            "calibration": calibration,
        }
        if engine is not None:
            doc["engine"] = engine
        return cls.from_dict(doc, source=source)


def migrate(doc: dict[str, Any], *, source: str = "<sidecar>") -> dict[str, Any]:
    """Bring a sidecar document up to ``SCHEMA_VERSION`` via ``MIGRATIONS``."""
    version = doc.get("schema_version")
    if version is None:
        msg = (
            f"{source}: schema_version: required field is missing"
            f" (this pyinspect reads version {SCHEMA_VERSION})"
        )
        raise SpecError(msg)
    if type(version) is not int:
        msg = f"{source}: schema_version: must be an integer, got {_show(version)}"
        raise SpecError(msg)
    if version > SCHEMA_VERSION:
        msg = (
            f"{source}: schema_version: {version} is newer than this pyinspect reads"
            f" ({SCHEMA_VERSION}); upgrade pyinspect or re-export the model"
        )
        raise SpecError(msg)
    while version < SCHEMA_VERSION:
        step = MIGRATIONS.get(version)
        if step is None:
            msg = (
                f"{source}: schema_version: {version} is not supported (this pyinspect reads"
                f" {SCHEMA_VERSION}, and upgrades from {sorted(MIGRATIONS) or 'no older version'});"
                " re-export the model"
            )
            raise SpecError(msg)
        doc = step(dict(doc))
        version = doc.get("schema_version")
        if version is None or type(version) is not int:
            msg = f"migration from schema_version {version} did not set an integer schema_version"
            raise RuntimeError(msg)
    return doc


# ---- helpers -------------------------------------------------------------------------------------
def _consistency_issues(spec: ModelSpec) -> list[tuple[str, str]]:
    """Cross-field rules pydantic's per-field types cannot express, as ``(field, problem)``."""
    issues: list[tuple[str, str]] = []
    n_tex = len(spec.textures)
    for i, c in enumerate(spec.classes):
        if c.texture >= n_tex:
            issues.append(
                (f"classes[{i}].texture", f"must be < len(textures) = {n_tex}, got {c.texture}")
            )
    used = {c.texture for c in spec.classes}
    unused = [t for t in range(n_tex) if t not in used]
    if unused:
        issues.append(("textures", f"texture ids {unused} have no class in classes"))
    issues += _class_table_issues(spec)
    dupes = sorted(n for n, k in Counter(c.name for c in spec.classes).items() if k > 1)
    if dupes:
        issues.append(("classes", f"class names must be unique, repeated: {dupes}"))

    shape, ch = spec.input.shape, spec.input.channels
    if shape[0] != -1 and shape[0] < 1:
        issues.append(("input.shape[0]", f"batch must be -1 (dynamic) or >= 1, got {shape[0]}"))
    if shape[1] != ch:
        issues.append(("input.shape[1]", f"must equal input.channels = {ch}, got {shape[1]}"))
    if shape[2] != spec.patch or shape[3] != spec.patch:
        issues.append(
            ("input.shape", f"must end with patch × patch = {spec.patch}×{spec.patch}, got {shape}")
        )
    expected_color = "rgb" if ch == 3 else "gray"
    if spec.input.color != expected_color:
        issues.append(
            (
                "input.color",
                f"must be {expected_color!r} for {ch} channel(s), got {spec.input.color!r}",
            )
        )
    for field in ("mean", "std"):
        values = getattr(spec.normalization, field)
        if len(values) != ch:
            issues.append(
                (
                    f"normalization.{field}",
                    f"needs one value per input channel ({ch}), got {len(values)}",
                )
            )
        if not all(np.isfinite(values)):
            issues.append((f"normalization.{field}", f"must be finite, got {values}"))
    bad_std = [s for s in spec.normalization.std if not s > 0]
    if bad_std:
        issues.append(("normalization.std", f"must be > 0, got {spec.normalization.std}"))
    else:
        issues += _normalization_issues(spec)

    issues += _threshold_issues(spec)

    g = spec.grid
    if g.policy == "fixed" and (g.rows is None or g.cols is None):
        issues.append(("grid", "policy 'fixed' needs both rows and cols"))
    if g.policy == "cover" and (g.rows is not None or g.cols is not None):
        issues.append(("grid", "policy 'cover' chooses rows and cols itself; set them to null"))
    return issues


def _threshold_issues(spec: ModelSpec) -> list[tuple[str, str]]:
    """``calibration`` records how ``threshold`` was chosen, so the two must agree."""
    cal = spec.calibration
    if cal is None or cal.threshold == spec.threshold:
        return []
    if spec.threshold is None:
        return [
            (
                "calibration.threshold",
                f"is {cal.threshold} but threshold is null (set threshold to it, or drop"
                " calibration: ModelSpec.with_threshold sets both)",
            )
        ]
    return [
        (
            "calibration.threshold",
            f"must equal threshold = {spec.threshold}, got {cal.threshold}"
            " (ModelSpec.with_threshold sets both)",
        )
    ]


def _class_table_issues(spec: ModelSpec) -> list[tuple[str, str]]:
    """A table without a good or a defective class, or a texture without a good class, makes
    the vote's verdict fixed before any frame is seen (every frame good, or every one
    defective)."""
    issues: list[tuple[str, str]] = [
        (
            f"classes[{i}].defect_type",
            f"must be null for a good class (defective: false), got {c.defect_type!r}",
        )
        for i, c in enumerate(spec.classes)
        if not c.defective and c.defect_type is not None
    ]
    if all(c.defective for c in spec.classes):
        issues.append(("classes", "every class is defective; at least one must be good"))
    elif not any(c.defective for c in spec.classes):
        issues.append(("classes", "no class is defective; at least one must be (defective: true)"))
    else:
        good = {c.texture for c in spec.classes if not c.defective}
        lacking = sorted({c.texture for c in spec.classes} - good)
        if lacking:
            names = [spec.textures[t] for t in lacking if t < len(spec.textures)]
            issues.append(
                (
                    "classes",
                    f"textures {lacking} ({names}) have no good class; every texture needs one",
                )
            )
    return issues


def _normalization_issues(spec: ModelSpec) -> list[tuple[str, str]]:
    """``mean`` and ``std`` in the ranges that make sense for inputs scaled to [0, 1], and, for a
    float16 input, normalised values that fit float16."""
    issues: list[tuple[str, str]] = []
    norm = spec.normalization
    for field, values, (low, high), shown in (
        ("mean", norm.mean, MEAN_RANGE, "[-1, 2]"),
        ("std", norm.std, STD_RANGE, "[1/65535, 10]"),
    ):
        bad = [v for v in values if np.isfinite(v) and not low <= v <= high]
        if bad:
            issues.append(
                (
                    f"normalization.{field}",
                    f"must lie in {shown} for inputs scaled to [0, 1]"
                    f" (x / {spec.max_value}), got {values}",
                )
            )
    if not issues and spec.input.dtype == "float16":
        worst = max(
            (max(abs(m), abs(1.0 - m)) / s for m, s in zip(norm.mean, norm.std, strict=False)),
            default=0.0,
        )
        if worst > FLOAT16_MAX:
            issues.append(
                (
                    "normalization.std",
                    f"(x - mean) / std reaches {worst:.4g}, beyond float16's {FLOAT16_MAX:g}"
                    " (input.dtype float16); use a larger std or a float32 input",
                )
            )
    return issues


_SECTIONS: dict[tuple[str, ...], type[BaseModel]] = {
    (): ModelSpec,
    ("classes",): ClassSpec,
    ("calibration",): CalibrationSpec,
    ("grid",): GridSpec,
    ("input",): InputSpec,
    ("normalization",): NormalizationSpec,
    ("output",): OutputSpec,
    ("provenance",): ProvenanceSpec,
    ("engine",): EngineSpec,
    ("engine", "profile"): ProfileSpec,
}


def _loc_text(loc: Sequence[int | str]) -> str:
    """('classes', 3, 'texture') -> 'classes[3].texture'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _show(value: Any) -> str:
    """A value as the JSON author wrote it, shortened."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(err: Any) -> list[tuple[str, str]]:
    """One pydantic error -> ``[(field path, 'must be ..., got ...')]`` (several for the
    cross-field check, whose single error lists every rule broken)."""

    # Drop pydantic's union-branch labels (e.g. 'int', 'list[int]') from the path.
    def drop_labels(parts: Sequence[int | str]) -> list[int | str]:
        return [
            p
            for p in parts
            if isinstance(p, int) or not ("[" in p or p in {"int", "str", "float", "bool", "none"})
        ]

    loc = drop_labels(err["loc"])
    kind, text = err["type"], err["msg"]
    where = _loc_text(loc)
    if kind == "value_error":
        text = text.removeprefix("Value error, ")
        if loc:
            return [(where, text)]
        pairs = [part.partition(": ") for part in text.split("; ")]  # from _consistent
        return [(field, problem) if sep else ("", field) for field, sep, problem in pairs]
    if kind == "missing":
        return [(where, "required field is missing")]
    if kind == "extra_forbidden":  # the last part is the unknown key itself, never a label
        parent, key = drop_labels(err["loc"][:-1]), err["loc"][-1]
        model = _SECTIONS.get(tuple(p for p in parent if isinstance(p, str)))
        hint = suggest(str(key), model.model_fields) if model else ""
        where = _loc_text([*parent, key])
        return [(where, f"unknown field.{hint}" if hint else "unknown field")]
    if kind == "literal_error":
        return [(where, f"must be {err['ctx']['expected']}, got {_show(err['input'])}")]
    for old, new in (
        ("Input should be", "must be"),
        ("Value should", "must"),
        ("List should", "must"),
    ):
        text = text.replace(old, new)
    return [(where, f"{text[0].lower()}{text[1:]}, got {_show(err['input'])}")]


def _merge_union_issues(issues: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """A value failing every branch of ``int | list[int]`` gives one line per branch; join them
    into ``must be a valid integer or a valid list, got "x"``."""
    merged: dict[str, list[str]] = {}
    for loc, text in issues:
        merged.setdefault(loc, []).append(text)
    out: list[tuple[str, str]] = []
    for loc, texts in merged.items():
        heads = [t.rsplit(", got ", 1) for t in texts]
        if len(texts) > 1 and all(len(h) == 2 and h[1] == heads[0][1] for h in heads):
            first, *rest = (h[0] for h in heads)
            text = " or ".join([first, *(r.removeprefix("must be ") for r in rest)])
            out.append((loc, f"{text}, got {heads[0][1]}"))
        else:
            out.extend((loc, t) for t in texts)
    return out


# What is left of a document cut inside a number or a true/false/null literal (or nothing).
_CUT_SHORT = re.compile(r"[-+.0-9eE]*|t(r(u)?)?|f(a(l(s)?)?)?|n(u(l)?)?")


def _parse_json(data: bytes | str, source: str) -> Any:
    """JSON text -> object, with encoding, emptiness and truncation named plainly."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            msg = (
                f"{source}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start});"
                " sidecars are UTF-8 JSON"
            )
            raise SpecError(msg) from None
    else:
        text = data
    if not text.strip():
        msg = f"{source}: file is empty; expected a JSON object. {EXPORT_HINT}"
        raise SpecError(msg)
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        # The parser ran out of text: an error at the very end, inside a number or a literal cut
        # short ("tru", "1e"), or a string never closed (JSON strings cannot span a raw newline,
        # so that only happens at end of input).
        rest = text[exc.pos :].rstrip()
        truncated = _CUT_SHORT.fullmatch(rest) is not None or exc.msg.startswith(
            "Unterminated string"
        )
        why = " (the file looks truncated)" if truncated else ""
        msg = f"{source}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}{why}"
        raise SpecError(msg) from None
    except ValueError as exc:  # e.g. an integer longer than Python's 4300-digit limit
        msg = f"{source}: invalid JSON: {exc}"
        raise SpecError(msg) from None
    except RecursionError:
        msg = f"{source}: invalid JSON: arrays/objects nested too deeply"
        raise SpecError(msg) from None


def _reject_constant(name: str) -> Any:
    """NaN/Infinity: Python's json reads them, but they are not JSON and other tools choke."""
    msg = f"{name} is not a JSON value (sidecars are standard JSON; write a number or null)"
    raise ValueError(msg)


def _finite_float(text: str) -> float:
    """A JSON number; one beyond float range (1e400) would silently become inf."""
    value = float(text)
    if value in (float("inf"), float("-inf")):
        msg = f"number {text} is out of range for a float"
        raise ValueError(msg)
    return value


_SURROGATE = re.compile("[\ud800-\udfff]")


def _lone_surrogate(doc: Any) -> str | None:
    """Field path of the first key or string value with a lone surrogate, else None. JSON's
    ``\\ud800`` escapes let one through; it cannot be written back as UTF-8 or printed."""
    if not _SURROGATE.search(json.dumps(doc, ensure_ascii=False)):  # fast path, in C
        return None
    stack: list[tuple[tuple[int | str, ...], Any]] = [((), doc)]
    while stack:
        loc, value = stack.pop()
        if isinstance(value, str) and _SURROGATE.search(value):
            return _loc_text(loc)
        if isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, str) and _SURROGATE.search(key):
                    escaped = key.encode("utf-8", "backslashreplace").decode("ascii", "replace")
                    return _loc_text((*loc, escaped)) + " (a key)"
                stack.append(((*loc, key), item))
        elif isinstance(value, list):
            stack.extend(((*loc, i), item) for i, item in enumerate(value))
    return None


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a
