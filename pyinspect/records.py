"""The record: one versioned JSON object per inspected frame, the same everywhere.

``pyinspect inspect --json``, every sink of ``pyinspect watch`` (JSON lines, MQTT, webhook, OPC UA's
``LastRecord``) and the Python API (``Station``'s ``on_record``) carry this one shape, so a line's
systems parse one schema. It is flat: identity first, then the verdict fields of
``InspectionResult.to_dict()`` unchanged. ``docs/line.md`` documents every field.

Identity: ``run_id`` (new per start of a station or command) and ``frame_id`` (1, 2, ... per
source and run; a dropped frame leaves a gap) make a record unique, so a consumer de-duplicates the
at-least-once delivery of the sinks by ``(run_id, frame_id, source)``.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyinspect import __version__
from pyinspect.spec import ModelSpec

if TYPE_CHECKING:
    from pyinspect.inspector import Inspector
    from pyinspect.result import InspectionResult

__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "ModelIdentity",
    "file_sha256",
    "iso_utc",
    "new_run_id",
    "record_dict",
]

#: Bumped when a field changes meaning or disappears (new fields do not bump it).
SCHEMA_VERSION = 1
SCHEMA = "pyinspect.record"


def new_run_id() -> str:
    """A run's identity: a random UUID4 (hex), new per start."""
    return uuid.uuid4().hex


def file_sha256(path: str | os.PathLike[str]) -> str | None:
    """SHA-256 (hex) of a file, or ``None`` when it does not exist."""
    try:
        with open(path, "rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    except FileNotFoundError:
        return None


def iso_utc(epoch_ns: int) -> str:
    """``2026-12-02T10:15:00.123456Z`` (host UTC, microseconds)."""
    t = datetime.fromtimestamp(epoch_ns / 1e9, tz=UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class ModelIdentity:
    """Which model made a verdict: its path and the digests of the model file and its sidecar
    (hashed once, at start)."""

    path: str
    sha256: str | None
    sidecar_sha256: str | None

    @classmethod
    def of(cls, model_path: str | os.PathLike[str]) -> ModelIdentity:
        p = Path(model_path)
        return cls(str(p), file_sha256(p), file_sha256(ModelSpec.sidecar_path(p)))

    @classmethod
    def of_inspector(cls, inspector: Inspector) -> ModelIdentity:
        return cls.of(inspector.model_path)


def record_dict(
    result: InspectionResult,
    *,
    model: ModelIdentity,
    run_id: str,
    source: str,
    frame_id: int,
    captured_ns: int | None = None,
    camera_timestamp: int | None = None,
    latency_ms: float | None = None,
    path: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The record of one verdict (plain Python types, JSON-ready).

    Args:
        result: the verdict (an error result keeps its ``error`` and neutral fields).
        model: ``ModelIdentity.of(model_path)``, computed once per run.
        run_id: ``new_run_id()``, once per run.
        source: the source's name (a camera, a folder; ``inspect`` uses ``"cli"``).
        frame_id: 1, 2, ... per source and run.
        captured_ns: host time at grab, ``time.time_ns()`` (``None``: not known).
        camera_timestamp: the camera's own timestamp (SDK ticks) when it gives one.
        latency_ms: capture to record, milliseconds.
        path: the image file when the frame came from one.
        **extra: further fields (``inspect --json`` adds ``truth``); they may not shadow one.
    """
    record: dict[str, Any] = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "source": source,
        "frame_id": frame_id,
        "captured_at": None if captured_ns is None else iso_utc(captured_ns),
        "camera_timestamp": camera_timestamp,
        "latency_ms": None if latency_ms is None else round(latency_ms, 3),
        "path": path,
        "model": model.path,
        "model_sha256": model.sha256,
        "sidecar_sha256": model.sidecar_sha256,
        "pyinspect_version": __version__,
    }
    record.update(result.to_dict())
    for key, value in extra.items():
        if key in record:
            msg = f"record field {key!r} is part of the schema; pick another name for it"
            raise ValueError(msg)
        record[key] = value
    return record
