"""The record's JSON line, made per frame without building the dict first.

``pyinspect watch`` sends one line per frame to every sink. ``record_dict`` and ``json.dumps``
make it in ~33 us (the dict, then every value again in the encoder); the station's cores are
the runner's, so ``RecordEncoder`` writes the same bytes from the result directly: the fields
that never change in a run (schema, run, source, model) once, the patch grid's boxes once per
grid, the rest per frame.

The output is byte for byte ``json.dumps(record_dict(...), separators=(",", ":"))``. At
construction the encoder checks that the record still has the fields and the form it writes
(a probe record made both ways must match); when it does not (a field added to the schema and
not here), it uses ``record_dict`` + ``json.dumps``, slower but never wrong.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import numpy as np

from pyinspect.records import ModelIdentity, iso_utc, record_dict
from pyinspect.result import InspectionResult, Timings

__all__ = ["RecordEncoder"]

_IDENTITY = ("schema", "schema_version", "run_id", "source", "frame_id", "captured_at",
             "camera_timestamp", "latency_ms", "path", "model", "model_sha256", "sidecar_sha256",
             "pyinspect_version")  # fmt: skip
_VERDICT = ("texture", "texture_name", "defective", "label", "defect_type", "max_defect_prob",
            "boxes", "patch_class", "patch_score", "patch_defect_prob", "defective_patches",
            "texture_votes", "timings", "error")  # fmt: skip
_TIMINGS = ("tile_ms", "infer_ms", "vote_ms", "total_ms")
_dumps = json.JSONEncoder(separators=(",", ":")).encode


def _float(x: Any) -> str:
    """A float as ``json.dumps`` writes it (``repr``; ``NaN`` / ``Infinity`` otherwise)."""
    if type(x) is float:
        s = repr(x)
        return s if s[-1] not in "nf" else _dumps(x)
    return _dumps(x)


_FORMATS6: dict[int, str] = {}


def _floats6(values: list[float]) -> str:
    """``[round(v, 6) for v in values]`` as ``json.dumps`` writes it.

    ``{:.6f}`` rounds exactly as ``round(v, 6)`` does (both are Python's correctly rounded
    decimal conversion), and ``repr`` of the rounded float is those digits without trailing
    zeros while those digits are at most 15 significant ones (below 1e9), except where ``repr``
    switches to exponents (below 1e-4: those tokens are rewritten, ``_exponent_tokens``) or
    spells nan / inf: other values are written one by one. One ``format`` call writes the whole
    list; the trailing zeros go in at most six ``replace`` passes (a ``.`` stops them)."""
    n = len(values)
    fmt = _FORMATS6.get(n)
    if fmt is None:
        fmt = _FORMATS6[n] = "{:.6f}," * n if n <= 4096 else ""
    if not fmt:
        return _dumps([round(v, 6) for v in values])
    s = fmt.format(*values)  # "0.500000,1.000000,0.000000,"
    if "n" in s or (n and (max(values) >= 1e9 or min(values) <= -1e9)):
        return _floats6_slow(values)
    while "0," in s:
        s = s.replace("0,", ",")  # "0.5,1.,0.,"
    if "0.0000" in s:  # 0 < |v| < 1e-4 after rounding: repr writes 5e-05
        s = _exponent_tokens(s)
    return f"[{s.replace('.,', '.0,')[:-1]}]"


def _exponent_tokens(s: str) -> str:
    """The tokens of a stripped ``{:.6f},`` list that hold a value below 1e-4 ("0.00005,"), as
    ``repr`` writes them ("5e-05,"): ``float`` of the six-place decimal is ``round(v, 6)``, the
    float ``repr`` would write. Frames of good parts carry such defect probabilities on most
    patches, so they stay on the one-``format`` path."""
    parts = s.split(",")
    for i, token in enumerate(parts):
        if "0.0000" in token:
            lead = "|" if token[0] == "|" else ""  # _floats6_pair's second list starts so
            parts[i] = lead + repr(float(token[len(lead) :]))
    return ",".join(parts)


def _floats6_slow(values: list[float]) -> str:
    out = []
    for v in values:
        r = round(v, 6)
        out.append(repr(r) if math.isfinite(r) else _dumps(r))
    return f"[{','.join(out)}]"


def _float_list(a: np.ndarray) -> list[float]:
    """``[float(v) for v in a]`` (one call for a float array)."""
    return a.tolist() if a.dtype.kind == "f" else [float(v) for v in a]


_FORMATS6_PAIR: dict[int, str] = {}


def _floats6_pair(a: list[float], b: list[float]) -> tuple[str, str]:
    """``(_floats6(a), _floats6(b))`` for two lists of one length (a frame's scores and defect
    probabilities) in one ``format`` call and one ``replace`` pass. A finite value >= 0 takes
    at least nine characters (``0.500000,``) and exactly nine below 10 (probabilities, softmax
    scores), so without a sign, nan or inf the text's length says at once that none is >= 1e9
    (what ``_floats6`` checks value by value); anything else goes to ``_floats6``."""
    n = len(a)
    fmt = _FORMATS6_PAIR.get(n)
    if fmt is None:
        if n > 4096:
            return _floats6(a), _floats6(b)
        fmt = _FORMATS6_PAIR[n] = "{:.6f}," * n + "|" + "{:.6f}," * n
    if len(b) != n:
        return _floats6(a), _floats6(b)
    s = fmt.format(*a, *b)  # "0.500000,1.000000,|0.000000,0.250000,"
    if len(s) != 18 * n + 1 or "-" in s or "n" in s:  # "10.000000," is longer; nan, inf
        return _floats6(a), _floats6(b)
    while "0," in s:
        s = s.replace("0,", ",")
    if "0.0000" in s:  # 0 < v < 1e-4 after rounding: repr writes 5e-05
        s = _exponent_tokens(s)
    first, second = s.replace(".,", ".0,").split("|")
    return f"[{first[:-1]}]", f"[{second[:-1]}]"


class _IntText:
    """``json.dumps(a.tolist())`` for one field's flat integer arrays (patch classes, defective
    patches, votes), remembered by the array's bytes: a grid's classes and votes repeat from
    frame to frame, and the bytes are a cheaper key than the digits are to write. One cache per
    field, keyed within one dtype (the same bytes mean other numbers in another)."""

    __slots__ = ("dtype", "texts")

    def __init__(self) -> None:
        self.dtype: np.dtype[Any] | None = None
        self.texts: dict[bytes, str] = {}

    def __call__(self, a: np.ndarray) -> str:
        if a.dtype is not self.dtype:
            if a.dtype.kind not in "iu":
                return _dumps(a.tolist())
            self.dtype, self.texts = a.dtype, {}
        if a.ndim != 1:
            return _dumps(a.tolist())
        key = a.tobytes()
        text = self.texts.get(key)
        if text is None:
            text = f"[{','.join(map(str, a.tolist()))}]"
            if len(self.texts) >= 4096:
                self.texts.clear()
            self.texts[key] = text
        return text


def _ms3(x: Any) -> str:
    """``round(x, 3)`` as ``json.dumps`` writes it (``{:.3f}`` rounds as ``round`` does, and
    below 1e12 its digits are what ``repr`` writes)."""
    if type(x) is float and -1e12 < x < 1e12:
        s = f"{x:.3f}".rstrip("0")
        return s + "0" if s[-1] == "." else s
    return _float(round(x, 3))


def _timings(t: Timings) -> str:
    a, b, c, d = t.tile_ms, t.infer_ms, t.vote_ms, t.total_ms
    if type(a) is float and type(b) is float and type(c) is float and type(d) is float \
            and math.isfinite(a + b + c + d):  # fmt: skip
        return f'{{"tile_ms":{a!r},"infer_ms":{b!r},"vote_ms":{c!r},"total_ms":{d!r}}}'
    return (f'{{"tile_ms":{_float(a)},"infer_ms":{_float(b)},"vote_ms":{_float(c)},'
            f'"total_ms":{_float(d)}}}')  # fmt: skip


def _value(x: Any) -> str:
    if x is None:
        return "null"
    t = type(x)
    if t is int:
        return str(x)
    if t is float:
        return _float(x)
    return _dumps(x)


class RecordEncoder:
    """``encode(result, frame_id=..., ...)`` -> the record's JSON line (bytes) for one source of
    one run; the same arguments as ``record_dict``."""

    def __init__(self, *, model: ModelIdentity, run_id: str, source: str) -> None:
        self.model, self.run_id, self.source = model, run_id, source
        self._strings: dict[str, str] = {}
        self._classes, self._defective, self._votes = _IntText(), _IntText(), _IntText()
        self._boxes: tuple[np.ndarray, str] | None = None
        self._second = -1
        self._second_text = ""
        ident = record_dict(InspectionResult.failed("probe"), model=model, run_id=run_id,
                            source=source, frame_id=0)  # fmt: skip
        head = {k: ident[k] for k in _IDENTITY[:4]}
        self._head = _dumps(head)[:-1] + ',"frame_id":'
        tail = {k: ident[k] for k in _IDENTITY[9:]}
        self._model = "," + _dumps(tail)[1:-1]
        self.fast = True  # the probe encodes both ways
        self.fast = self._probe()

    # ---- the check ---------------------------------------------------------------------------
    def _generic(self, result: InspectionResult, **kwargs: Any) -> bytes:
        doc = record_dict(result, model=self.model, run_id=self.run_id, source=self.source,
                          **kwargs)  # fmt: skip
        return _dumps(doc).encode()

    def _probe(self) -> bool:
        """True when this encoder writes what ``record_dict`` + ``json.dumps`` write."""
        try:
            results = [
                InspectionResult.failed("probe \u00e9"),
                InspectionResult(
                    texture=1,
                    texture_name="Texture 2",
                    defective=True,
                    label="Texture 2 bad",
                    defect_type="scratch",
                    boxes=np.array([[0, 0, 8, 8], [8, 0, 8, 8]], np.int32),
                    patch_class=np.array([1, 3], np.int32),
                    patch_score=np.array([0.123456789, 3e-7], np.float32),
                    patch_defect_prob=np.array([0.5, float("nan")], np.float32),
                    defective_patches=np.array([1], np.int64),
                    texture_votes=np.array([0, 2], np.int32),
                    timings=Timings(0.25, 1.0 / 3.0, 2e-5, 1.5),
                ),
            ]
            first = record_dict(results[0], model=self.model, run_id=self.run_id,
                                source=self.source, frame_id=1)  # fmt: skip
            if tuple(first) != _IDENTITY + _VERDICT or tuple(first["timings"]) != _TIMINGS:
                return False
            cases: list[dict[str, Any]] = [
                {"frame_id": 1},
                {"frame_id": 7, "captured_ns": 1_764_670_500_123_456_789,
                 "camera_timestamp": 123456, "latency_ms": 1.23456, "path": "/in/a b\u00e9.png"},
            ]  # fmt: skip
            return all(
                self.encode(r, **kw) == self._generic(r, **kw) for r in results for kw in cases
            )
        except Exception:  # a schema this encoder does not know: the generic path
            return False

    # ---- encoding ----------------------------------------------------------------------------
    def _str(self, s: str | None) -> str:
        if s is None:
            return "null"
        q = self._strings.get(s)
        if q is None:
            q = _dumps(s)
            if len(self._strings) < 4096:  # names and labels: a few per model
                self._strings[s] = q
        return q

    def _boxes_json(self, boxes: np.ndarray) -> str:
        cached = self._boxes
        if cached is not None and cached[0] is boxes:
            return cached[1]
        text = _dumps(boxes.tolist())
        if not boxes.flags.writeable:  # the Inspector's grid cache: the same array every frame
            self._boxes = (boxes, text)
        return text

    def _iso(self, epoch_ns: int) -> str:
        """``iso_utc(epoch_ns)`` quoted, computed as ``datetime.fromtimestamp`` rounds."""
        if type(epoch_ns) is not int or epoch_ns < 0:
            return _dumps(iso_utc(epoch_ns))
        frac, whole = math.modf(epoch_ns / 1e9)
        us = round(frac * 1e6)
        sec = int(whole)
        if us >= 1_000_000:
            us -= 1_000_000
            sec += 1
        if sec != self._second:
            when = datetime.fromtimestamp(sec, tz=UTC)
            self._second, self._second_text = sec, when.strftime("%Y-%m-%dT%H:%M:%S.")
        return f'"{self._second_text}{us:06d}Z"'

    def encode(
        self,
        result: InspectionResult,
        *,
        frame_id: int,
        captured_ns: int | None = None,
        camera_timestamp: int | None = None,
        latency_ms: float | None = None,
        path: str | None = None,
    ) -> bytes:
        """The record's line: ``json.dumps(record_dict(result, ...))`` as bytes."""
        if not self.fast:
            return self._generic(result, frame_id=frame_id, captured_ns=captured_ns,
                                 camera_timestamp=camera_timestamp, latency_ms=latency_ms,
                                 path=path)  # fmt: skip
        r = result
        score, prob = r.patch_score, r.patch_defect_prob
        scores = score.tolist() if score.dtype.kind == "f" else _float_list(score)
        probs = prob.tolist() if prob.dtype.kind == "f" else _float_list(prob)
        scores_text, probs_text = _floats6_pair(scores, probs)
        # max_defect_prob is the largest of them (0 for none); numpy's max only when one is nan
        max_prob = (max(probs) if probs else 0.0) if "N" not in probs_text else r.max_defect_prob
        name, label, defect = r.texture_name, r.label, r.defect_type
        strings = self._strings
        defect_text = "null" if defect is None else strings.get(defect) or self._str(defect)
        texture = r.texture
        error = r.error
        line = (
            f"{self._head}{frame_id if type(frame_id) is int else _value(frame_id)},"
            f'"captured_at":{"null" if captured_ns is None else self._iso(captured_ns)},'
            f'"camera_timestamp":{_value(camera_timestamp)},'
            f'"latency_ms":{"null" if latency_ms is None else _ms3(latency_ms)},'
            f'"path":{"null" if path is None else _value(path)}{self._model},'
            f'"texture":{texture if type(texture) is int else _value(texture)},'
            f'"texture_name":{strings.get(name) or self._str(name)},'
            f'"defective":{"true" if r.defective else "false"},'
            f'"label":{strings.get(label) or self._str(label)},'
            f'"defect_type":{defect_text},'
            f'"max_defect_prob":{_float(max_prob)},"boxes":{self._boxes_json(r.boxes)},'
            f'"patch_class":{self._classes(r.patch_class)},"patch_score":{scores_text},'
            f'"patch_defect_prob":{probs_text},'
            f'"defective_patches":{self._defective(r.defective_patches)},'
            f'"texture_votes":{self._votes(r.texture_votes)},"timings":{_timings(r.timings)},'
            f'"error":{"null" if error is None else _dumps(error)}}}'
        )
        return line.encode()
