"""The station (``pyinspect.watch.Station`` and ``pyinspect watch``): records equal to ``run()``
with their identity, drops counted, metrics and health served, and every bad configuration
named before any frame is read."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from line_helpers import metric, scrape
from modelzoo import TinyBundle, textured_frame

from pyinspect import Inspector, PyInspectError
from pyinspect.cli import main
from pyinspect.record_encoder import RecordEncoder
from pyinspect.records import SCHEMA_VERSION, ModelIdentity, record_dict
from pyinspect.result import InspectionResult, Timings
from pyinspect.watch_config import ConfigError, parse_config

pytest.importorskip("prometheus_client", reason="the line extra is not installed")
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from pyinspect.metrics import BUCKETS, LightHistogram
from pyinspect.sinks import Record, Sink
from pyinspect.sources import IterableSource
from pyinspect.watch import EMIT_LINGER_S, Station


def counting(frames: list[np.ndarray], pulled: list[int]) -> Iterator[np.ndarray]:
    for f in frames:
        pulled[0] += 1
        yield f


def config(tmp_path: Path, model: Path, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "station": {"run_dir": str(tmp_path / "run"), "shutdown_timeout_s": 3},
        "model": {"path": str(model)},
        "sink": [{"type": "jsonl", "path": str(tmp_path / "out" / "records.jsonl")}],
    }
    doc.update(extra)
    return doc


def jsonl(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "out" / "records.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()]


# ---- records -------------------------------------------------------------------------------------
def test_station_records_carry_identity_and_the_verdicts_of_run(
    tiny_gray: TinyBundle, tmp_path: Path
) -> None:
    frames = [textured_frame(seed=s) for s in range(12)]
    seen: list[dict[str, Any]] = []
    station = Station(config(tmp_path, tiny_gray.model_path),
                      sources=[IterableSource(frames, "cam")], on_record=seen.append)  # fmt: skip
    summary = station.run()
    got = jsonl(tmp_path)
    assert summary["sources"]["cam"]["frames"] == 12 and got == seen
    with Inspector(tiny_gray.model_path) as insp:
        expected = [insp.run(f) for f in frames]
    sha = hashlib.sha256(tiny_gray.model_path.read_bytes()).hexdigest()
    for k, (r, e) in enumerate(zip(got, expected, strict=True), 1):
        assert (r["frame_id"], r["source"], r["run_id"]) == (k, "cam", station.run_id)
        assert (r["label"], r["texture"], r["defective"]) == (e.label, e.texture, e.defective)
        assert r["patch_class"] == e.patch_class.tolist()
        assert r["schema_version"] == SCHEMA_VERSION and r["model_sha256"] == sha
        assert r["sidecar_sha256"] is not None and r["latency_ms"] > 0
        assert r["captured_at"].endswith("Z") and r["camera_timestamp"] is None
    assert len({r["label"] for r in got}) > 1  # the comparison is not vacuous


def test_drop_oldest_drops_counted_and_leaves_frame_id_gaps(
    tiny_gray: TinyBundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = Inspector.run_prepared

    def slow(self: Inspector, *args: Any, **kwargs: Any) -> Any:
        time.sleep(0.02)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Inspector, "run_prepared", slow)
    frames = [textured_frame(seed=0)] * 40
    src = IterableSource(frames, "cam", queue=1, policy="drop_oldest")
    summary = Station(config(tmp_path, tiny_gray.model_path), sources=[src]).run()
    counts = summary["sources"]["cam"]
    ids = [r["frame_id"] for r in jsonl(tmp_path)]
    assert counts["dropped"] > 0 and counts["frames"] + counts["dropped"] == 40
    assert len(ids) == counts["frames"] and ids == sorted(ids) and ids[-1] == 40
    assert len(set(range(1, 41)) - set(ids)) == counts["dropped"]


def test_metrics_and_healthz_on_one_port(tiny_gray: TinyBundle, tmp_path: Path) -> None:
    release = threading.Event()

    def frames() -> Iterator[np.ndarray]:
        for s in range(5):
            yield textured_frame(seed=s)
        release.wait(10)

    cfg = config(tmp_path, tiny_gray.model_path, metrics={"listen": "127.0.0.1:0"})
    station = Station(cfg, sources=[IterableSource(frames(), "cam")])
    runner = threading.Thread(target=station.run)
    runner.start()
    try:
        port = station.metrics_port
        assert port
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            text = scrape(port)[1]
            if metric(text, "pyinspect_sink_records_total", sink="jsonl") == 5:
                break
            time.sleep(0.05)
        assert metric(text, "pyinspect_frames_total", source="cam") == 5
        assert metric(text, "pyinspect_sink_up", sink="jsonl") == 1
        assert metric(text, "pyinspect_sink_spool_records", sink="jsonl") == 0
        assert metric(text, "pyinspect_stage_seconds_count", source="cam", stage="inspect") == 5
        status, body = scrape(port, "/healthz")
        assert status == 200 and json.loads(body)["sinks"]["jsonl"]["up"] is True
        assert scrape(port, "/nothing")[0] == 404
    finally:
        release.set()
        runner.join(10)
    assert not runner.is_alive()


class Handovers(Sink):
    """A sink without a thread that notes each hand-over from the station: when, which frames."""

    kind = "handovers"

    def __init__(self) -> None:
        super().__init__("handovers")
        self.calls: list[tuple[float, list[int]]] = []

    def offer_many(self, records: list[Record]) -> None:
        self.calls.append((time.monotonic(), [r.doc["frame_id"] for r in records]))

    def start(self) -> None:
        pass

    def stop(self, deadline: float) -> None:
        pass


def paced(station: Station, seconds: float) -> None:
    """Make each inspection of ``station`` take at least ``seconds`` (a slower model)."""
    real = station.inspector.run_prepared

    def run_prepared(prepared: Any, **kwargs: Any) -> InspectionResult:
        until = time.perf_counter() + seconds
        result = real(prepared, **kwargs)
        time.sleep(max(0.0, until - time.perf_counter()))
        return result

    station.inspector.run_prepared = run_prepared  # type: ignore[method-assign]


@pytest.mark.parametrize("inspect_s", [0.002, 0.03])
def test_records_of_queued_frames_go_together_never_late(
    tiny_gray: TinyBundle, tmp_path: Path, inspect_s: float
) -> None:
    """While frames queue up, the records of several are handed over at once, but none waits
    more than EMIT_LINGER_S for the others; ``latency_ms`` includes that wait."""
    n = 40 if inspect_s < 0.01 else 8
    frames = [textured_frame(seed=s % 5) for s in range(n)]
    probe = Handovers()
    made: list[tuple[int, dict[str, Any]]] = []
    station = Station(config(tmp_path, tiny_gray.model_path),
                      sources=[IterableSource(frames, "cam", queue=4)], sinks=[probe],
                      on_record=lambda doc: made.append((time.time_ns(), doc)))  # fmt: skip
    paced(station, inspect_s)
    station.run()
    assert [i for _, ids in probe.calls for i in ids] == list(range(1, n + 1))
    sizes = [len(ids) for _, ids in probe.calls]
    # at most the frames inspected within EMIT_LINGER_S after the first of them
    assert max(sizes) <= EMIT_LINGER_S / inspect_s + 1
    if inspect_s < EMIT_LINGER_S / 2:
        assert max(sizes) > 1  # queued frames' records did go together
    else:
        assert sizes == [1] * n  # a slow model's records are not held back for a batch
    for when_ns, doc in made:  # capture -> record, measured when the record was made
        captured = dt.datetime.fromisoformat(doc["captured_at"].replace("Z", "+00:00"))
        since_capture_ms = (when_ns - captured.timestamp() * 1e9) / 1e6
        assert doc["timings"]["total_ms"] <= doc["latency_ms"] <= since_capture_ms + 1.0


def test_waiting_threads_are_woken_not_polled(
    tiny_gray: TinyBundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A source blocked on a full queue is woken when the queue is empty, the idle inference
    thread when a frame is queued and when the station stops: with the fallback poll at 5 s,
    each lost wake-up would stall it for 5 s."""
    import pyinspect.watch as watch

    monkeypatch.setattr(watch, "_POLL_S", 5.0)
    frames = [textured_frame(seed=s % 5) for s in range(20)]
    src = IterableSource(frames, "cam", queue=1, policy="block")
    station = Station(config(tmp_path, tiny_gray.model_path), sources=[src])
    paced(station, 0.005)  # slower than the source: it blocks at every frame
    t0 = time.monotonic()
    summary = station.run()
    assert time.monotonic() - t0 < 10
    assert summary["sources"]["cam"]["frames"] == 20
    assert [r["frame_id"] for r in jsonl(tmp_path)] == list(range(1, 21))

    release = threading.Event()

    def slow() -> Iterator[np.ndarray]:
        for s in range(3):
            time.sleep(0.2)  # the inference thread idles between frames
            yield textured_frame(seed=s)
        release.wait(20)

    out = tmp_path / "idle"
    cfg = config(out, tiny_gray.model_path, station={"run_dir": str(out / "run"),
                                                     "exit_on_end": False})  # fmt: skip
    seen: list[dict[str, Any]] = []
    station = Station(cfg, sources=[IterableSource(slow(), "cam")], on_record=seen.append)
    runner = threading.Thread(target=station.run)
    runner.start()
    try:
        deadline = time.monotonic() + 10
        while len(seen) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [r["frame_id"] for r in seen] == [1, 2, 3]
        assert max(r["latency_ms"] for r in seen) < 1000
        release.set()  # the source ends; the station keeps serving until stopped
        time.sleep(0.2)
        t0 = time.monotonic()
        station.stop()
        runner.join(10)
        assert not runner.is_alive() and time.monotonic() - t0 < 2
    finally:
        release.set()
        station.stop()
        runner.join(10)


def test_record_encoder_writes_what_record_dict_and_json_write() -> None:
    """The station's fast encoder against the schema's definition, on random verdicts with the
    values whose JSON is special (exponents, nan, large numbers, -0.0, exact ties)."""
    model = ModelIdentity("m.onnx", "ab" * 32, None)
    enc = RecordEncoder(model=model, run_id="r1", source="cam")
    assert enc.fast
    special = [0.0, -0.0, 5e-05, 1e-7, 0.0001, 0.00015, 0.0078125, 0.9999995, 1.0, 2.5,
               123456.7890125, 999999999.9999999, 123456789012.123456, 1e15, 1e17, -1e16,
               float("nan"), float("inf"), -float("inf")]  # fmt: skip
    rng = np.random.default_rng(3)

    def floats(n: int) -> np.ndarray:
        a = rng.random(n) * 10.0 ** int(rng.integers(-6, 12))
        for j in range(n):
            if rng.random() < 0.2:
                a[j] = special[int(rng.integers(len(special)))]
        return a.astype(np.float32 if rng.random() < 0.7 else np.float64)

    for i in range(3000):
        n = int(rng.integers(0, 12))
        tm = [float(rng.random() * 10.0 ** int(rng.integers(-6, 4))) for _ in range(4)]
        if rng.random() < 0.1:
            tm[int(rng.integers(4))] = special[int(rng.integers(len(special)))]
        result = InspectionResult(
            texture=int(rng.integers(0, 3)), texture_name="Texture 1",
            defective=bool(rng.random() < 0.5), label="Texture 1 bad", defect_type=None,
            boxes=np.zeros((n, 4), np.int32),
            patch_class=rng.integers(0, 4, n).astype(np.int32),
            patch_score=floats(n), patch_defect_prob=floats(n),
            defective_patches=np.flatnonzero(rng.random(n) < 0.3),
            texture_votes=rng.integers(0, 5, 3).astype(np.int32), timings=Timings(*tm),
        )  # fmt: skip
        choices = [None, float(rng.random() * 10.0 ** int(rng.integers(-5, 14))),
                   special[int(rng.integers(len(special)))], 7]  # fmt: skip
        latency = choices[int(rng.integers(0, 4))]
        kw: dict[str, Any] = {"frame_id": i, "captured_ns": int(rng.integers(0, 2**62)),
                              "latency_ms": latency}  # fmt: skip
        want = record_dict(result, model=model, run_id="r1", source="cam", **kw)
        assert enc.encode(result, **kw) == json.dumps(want, separators=(",", ":")).encode()


@pytest.mark.parametrize(
    ("scores", "probs"),
    [
        ([], []),
        ([0.5, 1.0, 0.0], [0.0078125, 0.25, 0.9999995]),  # a tie rounds to even; one to 1.0
        ([float("nan"), 0.5], [123456.5, 0.5]),  # the nan's short text offset by a long one
        ([9.9999996, 0.5], [0.1, 0.2]),  # rounds to 10.000000: one character more
        ([-0.0, 0.5], [0.1, 0.2]),  # the sign
        ([5e-05, 0.5], [0.1, 0.2]),  # repr writes 5e-05
        ([0.5, 0.25], [1.2e-05, 3e-06]),  # the second list starts with an exponent
        ([0.999, 0.5], [4e-05, 0.00015]),  # a good part's probabilities, one below 1e-4
        ([0.5, 0.25], [0.1, 0.2, 0.3]),  # lists of two lengths
        ([float("inf"), 1.0], [0.0, 0.0]),
    ],
)
def test_record_encoder_writes_both_float_lists_as_json_does(
    scores: list[float], probs: list[float]
) -> None:
    """The scores and probabilities go through one format call where every value is a plain
    probability; every value that call cannot write as ``json.dumps`` does still comes out so."""
    model = ModelIdentity("m.onnx", None, None)
    enc = RecordEncoder(model=model, run_id="r1", source="cam")
    n = len(probs)
    result = InspectionResult(
        texture=0, texture_name="Texture 1", defective=False, label="Texture 1 good",
        boxes=np.zeros((n, 4), np.int32), patch_class=np.zeros(n, np.int32),
        patch_score=np.array(scores, np.float64), patch_defect_prob=np.array(probs, np.float64),
    )  # fmt: skip
    want = record_dict(result, model=model, run_id="r1", source="cam", frame_id=3)
    assert enc.encode(result, frame_id=3) == json.dumps(want, separators=(",", ":")).encode()


def test_record_encoder_keys_integer_lists_by_dtype() -> None:
    """Integer lists are remembered by their bytes: [1, 0] as int32 has the bytes of [1] as
    int64, and each must still be written as itself."""
    model = ModelIdentity("m.onnx", None, None)
    enc = RecordEncoder(model=model, run_id="r1", source="cam")

    def line(classes: np.ndarray) -> dict[str, Any]:
        n = len(classes)
        result = InspectionResult(
            texture=0, texture_name="Texture 1", defective=False, label="Texture 1 good",
            boxes=np.zeros((n, 4), np.int32), patch_class=classes,
            patch_score=np.zeros(n, np.float32), patch_defect_prob=np.zeros(n, np.float32),
        )  # fmt: skip
        return json.loads(enc.encode(result, frame_id=1))

    a, b = np.array([1, 0], np.int32), np.array([1], np.int64)
    assert a.tobytes() == b.tobytes()
    assert [line(a)["patch_class"], line(b)["patch_class"], line(a)["patch_class"]] == [
        [1, 0], [1], [1, 0]
    ]  # fmt: skip


def test_latency_histograms_scrape_as_prometheus_histograms() -> None:
    values = [0.0, -1.0, 1e-6, *BUCKETS, 0.0031, 0.2, 7.5, 1e9]
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    a = LightHistogram("x_seconds", "doc", ("source", "stage"), ours)
    b = Histogram("x_seconds", "doc", ["source", "stage"], buckets=BUCKETS, registry=theirs)
    for k, v in enumerate(values):
        stage = "wait" if k % 3 else "inspect"
        a.labels("cam", stage).observe(v)
        b.labels("cam", stage).observe(v)

    def lines(registry: CollectorRegistry) -> list[str]:
        text = generate_latest(registry).decode()
        return sorted(x for x in text.splitlines() if "_created" not in x)

    assert lines(ours) == lines(theirs)
    with pytest.raises(ValueError, match="expected labels"):
        a.labels("cam")


# ---- bad configurations: named, before any frame ---------------------------------------------
def _immutable_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "locked"
    folder.mkdir()
    done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"chattr +i is not supported here: {done.stderr.decode().strip()}")
    return folder


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("unknown_key", "sink[0].topik: unknown key 'topik'. Did you mean 'topic'?"),
        ("bad_url", "expected mqtt://host[:port] or mqtts://host[:port]"),
        ("unknown_source_type", "unknown source type 'pylonn'. Did you mean 'pylon'?"),
        ("metrics_port_in_use", "metrics.listen: cannot listen on 127.0.0.1:"),
        ("opcua_port_in_use", "OPC UA endpoint opc.tcp://127.0.0.1:"),
        ("under_a_file", "cannot be written"),
        ("secret", "sink[0].password: secrets are not read from the config file"),
        ("bad_policy", "source[0].policy: Input should be 'drop_oldest' or 'block'"),
    ],
)
def test_bad_config_is_named_before_any_frame(
    case: str, message: str, tiny_gray: TinyBundle, tmp_path: Path, busy_port: int
) -> None:
    doc = config(tmp_path, tiny_gray.model_path)
    mqtt = {"type": "mqtt", "url": "mqtt://127.0.0.1:1"}
    if case == "unknown_key":
        doc["sink"] = [{**mqtt, "topik": "x"}]
    elif case == "bad_url":
        doc["sink"] = [{**mqtt, "url": "mqtt//127.0.0.1"}]
    elif case == "unknown_source_type":
        doc["source"] = [{"type": "pylonn", "name": "cam"}]
    elif case == "metrics_port_in_use":
        doc["metrics"] = {"listen": f"127.0.0.1:{busy_port}"}
    elif case == "opcua_port_in_use":
        doc["sink"].append({"type": "opcua", "endpoint": f"opc.tcp://127.0.0.1:{busy_port}/x"})
    elif case == "under_a_file":
        (tmp_path / "file").write_text("a regular file")
        doc["sink"] = [{"type": "jsonl", "path": str(tmp_path / "file" / "sub" / "r.jsonl")}]
    elif case == "secret":
        doc["sink"] = [{**mqtt, "password": "hunter2"}]
    elif case == "bad_policy":
        doc["source"] = [{"type": "video", "name": "cam", "uri": 0, "policy": "drop_newest"}]
    pulled = [0]
    frames = counting([textured_frame(seed=0)] * 3, pulled)
    sources = None if "source" in doc else [IterableSource(frames, "cam")]
    with pytest.raises(PyInspectError) as info:  # ConfigError, or SinkError for a port
        Station(doc, sources=sources)
    assert message in str(info.value)
    assert pulled[0] == 0


def test_an_immutable_folder_is_refused(tiny_gray: TinyBundle, tmp_path: Path) -> None:
    folder = _immutable_folder(tmp_path)
    try:
        doc = config(tmp_path, tiny_gray.model_path)
        doc["sink"] = [{"type": "images", "folder": str(folder)}]
        with pytest.raises(ConfigError, match=r"sink\[0\] \(images\)\.folder: folder .* cannot"):
            Station(doc, sources=[IterableSource([], "cam")])
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=False)


def test_every_problem_is_listed_at_once(tiny_gray: TinyBundle) -> None:
    doc = {"model": {"path": str(tiny_gray.model_path), "treshold": 0.5},
           "source": [{"type": "video", "name": "a b", "uri": 0}],
           "sink": [{"type": "jsonl"}]}  # fmt: skip
    with pytest.raises(ConfigError) as info:
        parse_config(doc)
    text = str(info.value)
    assert "3 problems" in text
    assert "model.treshold: unknown key 'treshold'. Did you mean 'threshold'?" in text
    assert "source[0].name: String should match pattern" in text
    assert "sink[0].path: missing key" in text


# ---- the command ---------------------------------------------------------------------------------
TOML = """
[station]
run_dir = "{run}"

[model]
path = "{model}"

[[source]]
type = "folder"
name = "inbox"
folder = "{inbox}"

[[sink]]
type = "jsonl"
path = "{out}"
"""


def test_check_config_validates_without_starting(
    tiny_gray: TinyBundle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "inbox").mkdir()
    path = tmp_path / "station.toml"
    out = tmp_path / "o" / "r.jsonl"
    path.write_text(TOML.format(run=tmp_path / "run", model=tiny_gray.model_path,
                                inbox=tmp_path / "inbox", out=out))  # fmt: skip
    assert main(["watch", "--config", str(path), "--check-config"]) == 0
    assert "config ok: 1 source(s), 1 sink(s)" in capsys.readouterr().out
    assert not (tmp_path / "run").exists() and not (tmp_path / "o").exists()  # nothing made
    path.write_text(path.read_text().replace('type = "folder"', 'type = "folder"\nfps = 3'))
    assert main(["watch", "--config", str(path), "--check-config"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pyinspect: error: ") and "source[0].fps: unknown key 'fps'" in err


def test_watch_flags_run_a_folder_to_jsonl(tiny_gray: TinyBundle, tmp_path: Path) -> None:
    import cv2

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for s in range(3):
        cv2.imwrite(str(inbox / f"{s}.png"), textured_frame(seed=s))
    out = tmp_path / "r.jsonl"
    station = Station(parse_config({
        "station": {"run_dir": str(tmp_path / "run")}, "model": {"path": str(tiny_gray.model_path)},
        "source": [{"type": "folder", "name": "inbox", "folder": str(inbox), "settle_s": 0.05,
                    "poll_s": 0.02, "done": str(tmp_path / "done")}],
        "sink": [{"type": "jsonl", "path": str(out)}],
    }))  # fmt: skip
    runner = threading.Thread(target=station.run)
    runner.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(list((tmp_path / "done").glob("*.png"))) < 3:
        time.sleep(0.05)
    station.stop()
    runner.join(10)
    records = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(Path(r["path"]).name for r in records) == ["0.png", "1.png", "2.png"]
    assert list(inbox.glob("*.png")) == []


def test_the_documented_configuration_parses() -> None:
    import re
    import tomllib

    text = (Path(__file__).resolve().parents[1] / "docs" / "line.md").read_text()
    block = re.search(r"## A complete configuration\n\n```toml\n(.*?)```", text, re.S)
    assert block is not None
    cfg = parse_config(tomllib.loads(block[1]))
    assert [s.type for s in cfg.source] == ["pylon", "folder", "video"]
    assert cfg.sink_names() == ["jsonl", "mqtt", "webhook", "opcua", "images"]
    assert cfg.source[0].features == {"Width": 1024, "Height": 1024, "PixelFormat": "Mono8"}


def test_the_model_sections_precision_reaches_the_inspector(
    tiny_gray: TinyBundle, tmp_path: Path
) -> None:
    """``[model] precision`` is the Inspector's: bf16 on a model the direct student runner does
    not run is refused by name before any frame; auto there stays f32."""
    cfg = config(tmp_path, tiny_gray.model_path)
    cfg["model"]["precision"] = "bf16"
    with pytest.raises(PyInspectError, match=r"precision='bf16' needs the direct student runner"):
        Station(cfg, sources=[IterableSource([], "cam")])
    cfg["model"]["precision"] = "auto"
    station = Station(cfg, sources=[IterableSource([textured_frame(seed=1)], "cam")])
    assert station.inspector.precision == "f32"
    assert station.run()["sources"]["cam"]["frames"] == 1
