"""``pyinspect watch`` on a line: the pylon camera emulator -> JSONL + MQTT + webhook + OPC UA +
metrics end to end; a broker outage with a persistent subscriber; SIGTERM mid-run. Real peers on
127.0.0.1 (mosquitto with persistence, a webhook receiver, an asyncua client), started once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from line_helpers import (
    Mosquitto,
    Subscriber,
    WebhookReceiver,
    free_port,
    metric,
    read_opcua,
    running_broker,
    scrape,
    wait_for,
)
from modelzoo import TinyBundle, textured_frame

from pyinspect import Inspector

pytest.importorskip("paho.mqtt", reason="the line extra is not installed")
from pyinspect.sources import IterableSource
from pyinspect.watch import Station

ROOT = Path(__file__).resolve().parents[1]
STUDENT = ROOT / "models" / "student.onnx"
FRAMES = 500


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    yield from running_broker(tmp_path_factory.mktemp("mosquitto"))


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver()
    yield r
    r.close()


def jsonl_records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines()]


def synthetic_images(folder: Path) -> list[np.ndarray]:
    """Six images of the project's synthetic DAGM set (three textures, good and defective),
    written as the PNGs the emulator serves in name order."""
    from train.synth import synth_image

    folder.mkdir(parents=True, exist_ok=True)
    images = []
    for k, (texture, defective) in enumerate([(0, False), (0, True), (2, False), (2, True),
                                             (4, False), (4, True)]):  # fmt: skip
        img, _ = synth_image(7, texture, k, defective)
        cv2.imwrite(str(folder / f"{k:03d}.png"), img)
        images.append(img)
    return images


STATION_TOML = """
[station]
name = "line1"
run_dir = "{run}"
exit_on_end = false

[model]
path = "{model}"

[metrics]
listen = "127.0.0.1:{metrics}"

[[source]]
type = "pylon"
name = "cam"
serial = "0815-0000"
exposure_us = 100
gain = 0.0
trigger_mode = "On"
trigger_source = "Software"
fps = 150
policy = "block"
max_frames = {frames}

[source.features]
Width = 512
Height = 512
TestImageSelector = "Off"
ImageFileMode = "On"
ImageFilename = "{images}"

[[sink]]
type = "jsonl"
path = "{jsonl}"

[[sink]]
type = "mqtt"
url = "{mqtt}"
reconnect_max_s = 1

[[sink]]
type = "webhook"
url = "{webhook}"
token_env = "TEST_WEBHOOK_TOKEN"

[[sink]]
type = "opcua"
endpoint = "opc.tcp://127.0.0.1:{opcua}/pyinspect/"
"""


def test_pylon_emulator_end_to_end(
    broker: Mosquitto, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    pytest.importorskip("pypylon", reason="pypylon (the line extra) is not installed")
    pytest.importorskip("asyncua", reason="asyncua (the line extra) is not installed")
    images = synthetic_images(tmp_path / "images")
    with Inspector(STUDENT) as insp:
        expected = [insp.run(img) for img in images]
    assert len({(e.label, e.defective) for e in expected}) > 2
    receiver.bodies.clear()
    sub = Subscriber(broker.port, "pyinspect/line1/cam", client_id="test-e2e")
    metrics_port, opcua_port = free_port(), free_port()
    toml = tmp_path / "station.toml"
    out = tmp_path / "records.jsonl"
    toml.write_text(STATION_TOML.format(
        run=tmp_path / "run", model=STUDENT, metrics=metrics_port, frames=FRAMES,
        images=tmp_path / "images", jsonl=out, mqtt=broker.url, webhook=receiver.url,
        opcua=opcua_port,
    ))  # fmt: skip
    env = {**os.environ, "PYLON_CAMEMU": "1", "TEST_WEBHOOK_TOKEN": "tok"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pyinspect", "watch", "--config", str(toml)], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for(
            lambda: (len(receiver.bodies) >= FRAMES and len(sub.messages) >= FRAMES)
            or proc.poll() is not None,
            90, f"{FRAMES} records at the webhook and the subscriber", step=0.1,
        )  # fmt: skip
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        ua = read_opcua(f"opc.tcp://127.0.0.1:{opcua_port}/pyinspect/",
                        ["cam.Frames", "cam.LastFrameId", "cam.LastVerdict", "cam.Defective",
                         "cam.DefectiveFrames"])  # fmt: skip
        # a sink counts a record once the broker has acknowledged it, which can come a few ms
        # after the subscriber has it
        wait_for(
            lambda: metric(scrape(metrics_port)[1], "pyinspect_sink_records_total", sink="mqtt")
            == FRAMES,
            10, "the MQTT sink's count of acknowledged records", step=0.05,
        )  # fmt: skip
        text = scrape(metrics_port)[1]
    finally:
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=15)
        sub.close()
    assert proc.returncode == 0, stderr[-3000:]
    records = jsonl_records(out)
    ids = [r["frame_id"] for r in records]
    assert ids == list(range(1, FRAMES + 1))
    run_id = records[0]["run_id"]
    for r in records:  # frame k is image (k - 1) % 6: the emulator cycles its folder
        e = expected[(r["frame_id"] - 1) % len(images)]
        assert (r["label"], r["defective"], r["patch_class"]) == (
            e.label, e.defective, e.patch_class.tolist(),
        ), f"frame {r['frame_id']}"  # fmt: skip
        assert r["run_id"] == run_id and r["source"] == "cam" and r["camera_timestamp"] == 0
    want = {(run_id, k) for k in range(1, FRAMES + 1)}
    assert {(b["run_id"], b["frame_id"]) for b in receiver.bodies} == want
    assert receiver.auth == {"Bearer tok"}
    assert sub.ids() == want
    last = records[-1]
    assert (ua["cam.Frames"], ua["cam.LastFrameId"]) == (FRAMES, FRAMES)
    assert (ua["cam.LastVerdict"], ua["cam.Defective"]) == (last["label"], last["defective"])
    assert ua["cam.DefectiveFrames"] == sum(r["defective"] for r in records)
    assert metric(text, "pyinspect_frames_total", source="cam") == FRAMES
    assert metric(text, "pyinspect_sink_records_total", sink="mqtt") == FRAMES
    assert metric(text, "pyinspect_dropped_frames_total", source="cam") == 0
    assert json.loads(stdout.strip().splitlines()[-1])["summary"]["sources"]["cam"]["frames"] == (
        FRAMES
    )


def test_broker_outage_loses_nothing(
    broker: Mosquitto, tiny_gray: TinyBundle, tmp_path: Path
) -> None:
    """Mosquitto stops after frame 100 and comes back at frame 300; a persistent QoS 1
    subscriber gets every (run_id, frame_id), the spool empties, /metrics counted the outage."""
    n, rate = 400, 250.0
    frame = textured_frame(seed=0)
    release = threading.Event()
    restarted: list[float] = []

    def paced() -> Iterator[np.ndarray]:
        t0 = time.monotonic()
        for k in range(1, n + 1):
            time.sleep(max(0.0, t0 + k / rate - time.monotonic()))
            if k == 101:
                broker.stop()
            elif k == 301:
                broker.start()
                restarted.append(time.monotonic())
            yield frame
        release.wait(30)

    sub = Subscriber(broker.port, "pyinspect/st/cam", client_id="test-outage")
    mqtt = {"type": "mqtt", "url": broker.url, "reconnect_max_s": 1.0, "ack_timeout_s": 0.5}
    cfg = {
        "station": {"name": "st", "run_dir": str(tmp_path / "run"), "shutdown_timeout_s": 3},
        "model": {"path": str(tiny_gray.model_path)},
        "metrics": {"listen": "127.0.0.1:0"},
        "sink": [mqtt],
    }
    station = Station(cfg, sources=[IterableSource(paced(), "cam", queue=8)])
    runner = threading.Thread(target=station.run)
    runner.start()
    try:
        port = station.metrics_port
        assert port
        want = {(station.run_id, k) for k in range(1, n + 1)}
        wait_for(lambda: restarted, 20, "the broker's restart")
        wait_for(lambda: station.sinks[0].up, 3.0, "the sink to reconnect (backoff <= 1 s)")
        wait_for(lambda: sub.ids() >= want, 20, "every record at the subscriber", step=0.05)
        wait_for(lambda: station.sinks[0].pending == 0, 5, "the spool to empty")
        text = scrape(port)[1]
    finally:
        release.set()
        runner.join(15)
        sub.close()
    assert not runner.is_alive()
    assert sub.ids() == want  # none missing (duplicates allowed: at least once)
    assert metric(text, "pyinspect_sink_outages_total", sink="mqtt") >= 1
    assert metric(text, "pyinspect_sink_spooled_records_total", sink="mqtt") >= 100
    assert metric(text, "pyinspect_sink_replayed_records_total", sink="mqtt") >= 100
    assert metric(text, "pyinspect_sink_spool_records", sink="mqtt") == 0
    assert list((tmp_path / "run" / "spool" / "mqtt").glob("*.spool")) == []


def test_sigterm_mid_run_exits_0_with_every_record_written(
    tiny_gray: TinyBundle, tmp_path: Path
) -> None:
    clip = tmp_path / "clip.avi"
    w = cv2.VideoWriter(str(clip), cv2.VideoWriter.fourcc(*"MJPG"), 25.0, (512, 512))
    for s in range(4):
        w.write(cv2.cvtColor(textured_frame(seed=s), cv2.COLOR_GRAY2BGR))
    w.release()
    out = tmp_path / "records.jsonl"
    toml = tmp_path / "station.toml"
    toml.write_text(
        f'[station]\nrun_dir = "{tmp_path / "run"}"\n[model]\npath = "{tiny_gray.model_path}"\n'
        f'[[source]]\ntype = "video"\nname = "clip"\nuri = "{clip}"\nloop = true\nfps = 200\n'
        f'policy = "block"\n[[sink]]\ntype = "jsonl"\npath = "{out}"\n'
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "pyinspect", "watch", "--config", str(toml)], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for(lambda: len(jsonl_records(out)) >= 50 or proc.poll() is not None, 60,
                 "50 records", step=0.05)  # fmt: skip
        assert proc.poll() is None, proc.communicate()[1][-3000:]
    finally:
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=10)
    took = time.monotonic() - t0
    assert proc.returncode == 0, stderr[-3000:]
    assert took < 5.0
    summary = json.loads(stdout.strip().splitlines()[-1])["summary"]
    inspected = summary["sources"]["clip"]["frames"]
    ids = [r["frame_id"] for r in jsonl_records(out)]
    assert inspected >= 50 and ids == list(range(1, inspected + 1))
