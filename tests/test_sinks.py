"""Station sinks against real peers on 127.0.0.1: the spool (order, bound, restart, torn line), JSON
lines (rotation never overwrites, a full disk is counted and replayed), the webhook (retries,
bearer token, down -> spool -> replay), MQTT (mosquitto), OPC UA (an asyncua client reads)."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from line_helpers import (
    MOSQUITTO,
    Mosquitto,
    Subscriber,
    WebhookReceiver,
    free_port,
    make_tls_files,
    read_opcua,
    running_broker,
    wait_for,
)

from pyinspect.metrics import StationMetrics
from pyinspect.sinks import JsonlSink, MqttSink, Record, Sink, Spool, WebhookSink
from pyinspect.sinks.base import SinkError

pytest.importorskip("prometheus_client", reason="the line extra is not installed")


def rec(frame_id: int, source: str = "cam", run_id: str = "r1") -> Record:
    doc = {"run_id": run_id, "source": source, "frame_id": frame_id, "defective": False,
           "label": "ok", "error": None, "captured_at": None}  # fmt: skip
    return Record(doc, json.dumps(doc).encode())


def value(metric: object, *labels: str) -> float:
    m = metric.labels(*labels)  # type: ignore[attr-defined]
    return float(m._value.get())  # test-only peek at the counter


class Recorder(Sink):
    """A sink that notes each delivered batch: when, and its frame ids."""

    kind = "recorder"

    def __init__(self, name: str = "rec", delay_s: float = 0.0, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.delay_s = delay_s
        self.batches: list[tuple[float, list[int]]] = []

    def deliver(self, records: list[Record]) -> None:
        if self.delay_s:
            time.sleep(self.delay_s)
        self.batches.append((time.monotonic(), [r.doc["frame_id"] for r in records]))


def worker_alive(name: str) -> bool:
    return any(t.name == f"pyinspect-watch-sink-{name}" for t in threading.enumerate())


# ---- the worker ----------------------------------------------------------------------------------
def test_records_handed_over_together_go_at_once_and_single_ones_linger() -> None:
    sink = Recorder(linger_s=1.0, batch=4)
    sink.start()
    try:
        t0 = time.monotonic()
        sink.offer_many([rec(i) for i in range(1, 4)])  # a batch from the station: no lingering
        wait_for(lambda: len(sink.batches) == 1, 5, "the handed-over batch")
        assert sink.batches[0][1] == [1, 2, 3] and sink.batches[0][0] - t0 < 0.6
        t1 = time.monotonic()
        for i in range(4, 7):  # single records wait for more, up to linger_s after the first
            sink.offer(rec(i))
        wait_for(lambda: len(sink.batches) == 2, 5, "the lingered batch")
        assert sink.batches[1][1] == [4, 5, 6] and sink.batches[1][0] - t1 >= 0.95
        t2 = time.monotonic()
        for i in range(7, 11):  # ... or until a batch is full
            sink.offer(rec(i))
        wait_for(lambda: len(sink.batches) == 3, 5, "the full batch")
        assert sink.batches[2][1] == [7, 8, 9, 10] and sink.batches[2][0] - t2 < 0.6
    finally:
        sink.stop(time.monotonic() + 5)
    assert not worker_alive("rec")


def test_every_record_is_delivered_once_in_order_whatever_the_hand_over() -> None:
    sink = Recorder("order", delay_s=0.002, queue=100_000, batch=16, linger_s=0.003)
    sink.start()
    rng = random.Random(7)
    n = 0
    while n < 3000:
        k = rng.choice([1, 1, 1, 2, 5, 8, 21])
        batch = [rec(i) for i in range(n + 1, n + k + 1)]
        sink.offer(batch[0]) if k == 1 else sink.offer_many(batch)
        n += k
        if rng.random() < 0.05:
            time.sleep(0.004)  # let the worker go idle now and then
    sink.stop(time.monotonic() + 20)
    assert not worker_alive("order")  # stop() ends the worker
    got = [i for _, ids in sink.batches for i in ids]
    assert got == list(range(1, n + 1)) and sink.pending == 0
    assert max(len(ids) for _, ids in sink.batches) <= 16 < n / len(sink.batches) * 16


# ---- the spool ---------------------------------------------------------------------------------
def test_spool_is_fifo_across_segments_and_restarts(tmp_path: Path) -> None:
    s = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=4096)
    lines = [f'{{"frame_id": {i}, "pad": "{"x" * 100}"}}'.encode() for i in range(200)]
    for i in range(0, 200, 7):
        s.append(lines[i : i + 7])
    assert s.records == 200 and len(list(tmp_path.glob("*.spool"))) > 3
    got = s.peek(50)
    s.pop(got[:30])  # delivered 30 of the 50 read
    s.close()
    again = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=4096)  # a restart
    assert again.records == 170
    out = []
    while batch := again.peek(64):
        out += batch
        again.pop(batch)
    assert out == lines[30:]
    assert again.records == 0 and list(tmp_path.glob("*.spool")) == []
    again.close()


def test_spool_cuts_a_torn_last_line(tmp_path: Path) -> None:
    s = Spool(tmp_path, max_bytes=1 << 20)
    s.append([b'{"a": 1}', b'{"a": 2}'])
    s.close()
    seg = next(tmp_path.glob("*.spool"))
    with open(seg, "ab") as fh:
        fh.write(b'{"a": 3')  # the crash came mid-write
    with Spool(tmp_path, max_bytes=1 << 20) as again:
        assert again.peek(10) == [b'{"a": 1}', b'{"a": 2}']


def test_spool_full_drops_the_oldest_counted(tmp_path: Path) -> None:
    metrics = StationMetrics()

    class Down(Sink):
        def connect(self) -> None:
            from pyinspect.sinks import SinkDown

            msg = "peer is down"
            raise SinkDown(msg)

    spool = Spool(tmp_path, max_bytes=8192, segment_bytes=4096)
    sink = Down("down", metrics=metrics, spool=spool, spool_policy="drop_oldest",
                reconnect_max_s=0.05)  # fmt: skip
    sink.start()
    for i in range(1, 301):
        sink.offer(rec(i))
    sink.stop(time.monotonic() + 1)
    with Spool(tmp_path, max_bytes=8192) as left:
        kept = [json.loads(x)["frame_id"] for x in left.peek(1000)]
    dropped = value(metrics.sink_dropped, "down")
    assert dropped > 0 and len(kept) + dropped == 300
    assert kept == list(range(301 - len(kept), 301))  # the newest, in order


# ---- JSON lines ----------------------------------------------------------------------------------
def test_jsonl_rotates_by_size_and_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    (tmp_path / "out.1.jsonl").write_text("a file that was there before\n")
    sink = JsonlSink("j", path, max_bytes=2048, spool=Spool(tmp_path / "sp", max_bytes=1 << 20))
    sink.start()
    for i in range(1, 101):
        sink.offer(rec(i))
    sink.stop(time.monotonic() + 5)
    assert (tmp_path / "out.1.jsonl").read_text() == "a file that was there before\n"
    files = [*sink.rotated_files()[1:], path]
    got = [json.loads(line)["frame_id"] for f in files for line in f.read_text().splitlines()]
    assert got == list(range(1, 101))
    assert all(f.stat().st_size <= 2048 for f in files)


def test_jsonl_on_a_full_disk_is_counted_and_spooled(tmp_path: Path) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    metrics = StationMetrics()
    spool = Spool(tmp_path / "sp", max_bytes=1 << 20)
    sink = JsonlSink("full", "/dev/full", metrics=metrics, spool=spool, reconnect_max_s=0.05)
    sink.start()
    for i in range(1, 21):
        sink.offer(rec(i))
    wait_for(lambda: value(metrics.sink_errors, "full") >= 2, 5, "counted write errors")
    sink.stop(time.monotonic() + 1)
    assert value(metrics.sink_records, "full") == 0
    with Spool(tmp_path / "sp", max_bytes=1 << 20) as left:
        kept = [json.loads(x)["frame_id"] for x in left.peek(99)]
    assert kept == list(range(1, 21))  # nothing lost: all in the spool, in order


def test_a_spool_left_behind_is_replayed_first(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "sp", max_bytes=1 << 20)
    spool.append([rec(i).line for i in (1, 2, 3)])
    spool.close()
    path = tmp_path / "out.jsonl"
    sink = JsonlSink("j", path, spool=Spool(tmp_path / "sp", max_bytes=1 << 20))
    sink.start()
    sink.offer(rec(4))
    sink.stop(time.monotonic() + 5)
    assert [json.loads(x)["frame_id"] for x in path.read_text().splitlines()] == [1, 2, 3, 4]


# ---- webhook -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver()
    yield r
    r.close()


def test_webhook_posts_each_record_with_the_token_and_retries(
    receiver: WebhookReceiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver.bodies.clear()
    receiver.auth.clear()
    receiver.fail = 2  # two 503s: the retries absorb them
    monkeypatch.setenv("HOOK_TOKEN", "s3cret")
    sink = WebhookSink("hook", receiver.url, token_env="HOOK_TOKEN", retry_backoff_s=0.01,
                       spool=Spool(tmp_path, max_bytes=1 << 20))  # fmt: skip
    sink.start()
    for i in range(1, 11):
        sink.offer(rec(i))
    sink.stop(time.monotonic() + 5)
    assert [b["frame_id"] for b in receiver.bodies] == list(range(1, 11))
    assert receiver.auth == {"Bearer s3cret"}


def test_webhook_down_spools_then_replays_in_order(tmp_path: Path) -> None:
    metrics = StationMetrics()
    port = free_port()  # nobody listens yet
    sink = WebhookSink("hook", f"http://127.0.0.1:{port}/x", metrics=metrics, retries=0,
                       timeout_s=0.5, reconnect_max_s=0.2,
                       spool=Spool(tmp_path, max_bytes=1 << 20))  # fmt: skip
    sink.start()
    for i in range(1, 31):
        sink.offer(rec(i))
    wait_for(lambda: value(metrics.sink_spooled, "hook") >= 30, 5, "records spooled")
    late = WebhookReceiver(port)  # the peer comes up on the awaited port
    try:
        for i in range(31, 41):
            sink.offer(rec(i))
        wait_for(lambda: len(late.bodies) >= 40, 10, "replay to the webhook")
    finally:
        sink.stop(time.monotonic() + 2)
        late.close()
    ids = [b["frame_id"] for b in late.bodies]
    assert sorted(set(ids)) == list(range(1, 41))
    assert ids == sorted(ids)  # in order
    assert value(metrics.sink_replayed, "hook") >= 30


def test_secrets_named_in_the_environment_must_be_set(tmp_path: Path) -> None:
    with pytest.raises(SinkError, match="environment variable NO_SUCH_TOKEN_VAR is not set"):
        WebhookSink("hook", "http://127.0.0.1:1/x", token_env="NO_SUCH_TOKEN_VAR")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mqtt//broker", "expected mqtt://host[:port]"),
        ("tcp://broker:1883", "expected mqtt://host[:port]"),
        ("mqtt://user:pw@broker", "credentials do not belong in the url"),
        ("mqtt://broker:99999", "bad port"),
    ],
)
def test_bad_mqtt_urls_are_named(url: str, message: str) -> None:
    with pytest.raises(SinkError, match=message.replace("[", r"\[").replace("]", r"\]")):
        MqttSink("m", url)


# ---- MQTT (mosquitto) ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    yield from running_broker(tmp_path_factory.mktemp("mosquitto"))


def test_mqtt_publishes_each_record_qos1_and_retains_the_last(
    broker: Mosquitto, tmp_path: Path
) -> None:
    sub = Subscriber(broker.port, "pyinspect/st/#", client_id="test-sinks-sub")
    try:
        sink = MqttSink("m", broker.url, station="st", spool=Spool(tmp_path, max_bytes=1 << 20))
        sink.start()
        for i in range(1, 51):
            sink.offer(rec(i))
        sink.stop(time.monotonic() + 5)
        wait_for(lambda: len(sub.messages) >= 51, 5, "50 records + the retained last")
    finally:
        sub.close()
    live = [m["frame_id"] for m in sub.messages]
    assert sorted(set(live)) == list(range(1, 51))
    assert not worker_alive("m")
    late = Subscriber(broker.port, "pyinspect/st/cam/last", client_id="test-sinks-late")
    try:
        wait_for(lambda: late.retained, 5, "the retained last verdict")
        assert late.retained[-1]["frame_id"] == 50
    finally:
        late.close()


def test_mqtt_over_tls_delivers_and_confirms_bursts(tmp_path: Path) -> None:
    pytest.importorskip("cryptography", reason="cryptography (from asyncua) makes the certs")
    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed (make test installs it: apt-get install mosquitto)")
    files = make_tls_files(tmp_path / "tls")
    broker = Mosquitto(tmp_path / "mosquitto", tls=files)
    broker.start()
    try:
        sub = Subscriber(broker.port, "pyinspect/st/cam", client_id="test-sinks-tls")
        metrics = StationMetrics()
        sink = MqttSink("tls", f"mqtts://127.0.0.1:{broker.tls_port}", station="st",
                        ca=str(files[0]), metrics=metrics,
                        spool=Spool(tmp_path / "sp", max_bytes=1 << 20))  # fmt: skip
        sink.start()
        try:
            for k in range(0, 400, 8):
                sink.offer_many([rec(i) for i in range(k + 1, k + 9)])
                time.sleep(0.002)
            # a record counts once the broker confirmed it; the last batch's confirmations are
            # collected soon after, not only at stop()
            wait_for(lambda: sink.pending == 0, 10, "every record confirmed")
            assert value(metrics.sink_records, "tls") == 400 and sink.up
            assert value(metrics.sink_errors, "tls") == 0
        finally:
            sink.stop(time.monotonic() + 5)
        wait_for(lambda: len(sub.messages) >= 400, 10, "400 records at the subscriber")
        sub.close()
    finally:
        broker.stop()
    assert [m["frame_id"] for m in sub.messages] == list(range(1, 401))


# ---- OPC UA --------------------------------------------------------------------------------------
def test_opcua_server_serves_counters_and_the_last_verdict(tmp_path: Path) -> None:
    pytest.importorskip("asyncua", reason="the line extra is not installed")
    from pyinspect.sinks import OpcUaSink

    port = free_port()
    endpoint = f"opc.tcp://127.0.0.1:{port}/pyinspect/"
    sink = OpcUaSink("ua", endpoint, run_id="r1", heartbeat_s=0.2)
    sink.bind_sources(["cam"])
    sink.open()
    try:
        sink.start()
        for i in range(1, 8):
            r = rec(i)
            r.doc["defective"] = i % 2 == 1
            r.doc["label"] = f"label-{i}"
            sink.offer(r)
        wait_for(lambda: sink.pending == 0, 5, "records written")
        time.sleep(0.3)
        got = read_opcua(endpoint, ["cam.Frames", "cam.DefectiveFrames", "cam.LastFrameId",
                                    "cam.LastVerdict", "cam.Defective", "RunId",
                                    "Heartbeat"])  # fmt: skip
        assert (got["cam.Frames"], got["cam.DefectiveFrames"], got["cam.LastFrameId"]) == (7, 4, 7)
        assert (got["cam.LastVerdict"], got["cam.Defective"], got["RunId"]) == (
            "label-7",
            True,
            "r1",
        )
        time.sleep(0.3)  # more than one heartbeat_s
        beat = read_opcua(endpoint, ["Heartbeat"])["Heartbeat"]
        assert beat > got["Heartbeat"]  # the heartbeat moves
        with pytest.raises(SinkError, match="cannot listen"):  # the port is taken now
            other = OpcUaSink("ua2", endpoint)
            other.bind_sources(["cam"])
            other.open()
    finally:
        sink.stop(time.monotonic() + 3)
