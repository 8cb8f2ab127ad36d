"""Real peers for the station's tests, all on 127.0.0.1 with free ports: a mosquitto broker (with
persistence, killable and restartable), a webhook receiver, a persistent MQTT subscriber, an
OPC UA reader, a /metrics scraper. Import as ``from line_helpers import ...``."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Any, timeout: float, what: str, step: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            msg = f"timed out after {timeout} s waiting for {what}"
            raise AssertionError(msg)
        time.sleep(step)


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def make_tls_files(folder: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1 signed by it: (ca, cert, key)."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)

    def cert(subject: str, key: Any, issuer: str, signer: Any, ca: bool) -> x509.Certificate:
        b = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
            b = b.add_extension(san, critical=False)
        return b.sign(signer, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = cert("pyinspect test CA", ca_key, "pyinspect test CA", ca_key, True)
    server = cert("127.0.0.1", key, "pyinspect test CA", ca_key, False)
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    return paths


class Mosquitto:
    """``mosquitto -c conf`` on a free port, persistence in ``folder`` (saved on SIGTERM);
    ``tls=(ca, cert, key)`` adds a TLS listener on ``tls_port``."""

    def __init__(self, folder: Path, tls: tuple[Path, Path, Path] | None = None) -> None:
        if MOSQUITTO is None:
            msg = "mosquitto is not installed (make test installs it)"
            raise RuntimeError(msg)
        self.port = free_port()
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.conf = folder / "mosquitto.conf"
        text = (
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {folder}/\nautosave_interval 1\n"
            "max_queued_messages 100000\nlog_dest none\n"
        )
        if os.geteuid() == 0:  # started as root, mosquitto would drop to its own user, which
            text += "user root\n"  # can read neither the persistence folder nor the TLS key
        self.tls_port: int | None = None
        if tls is not None:
            self.tls_port = free_port()
            ca, cert, key = tls
            text += (f"listener {self.tls_port} 127.0.0.1\ncafile {ca}\ncertfile {cert}\n"
                     f"keyfile {key}\n")  # fmt: skip
        self.conf.write_text(text)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)])
        wait_for(lambda: port_open(self.port), 10, f"mosquitto on port {self.port}")
        if self.tls_port is not None:
            port = self.tls_port
            wait_for(lambda: port_open(port), 10, f"mosquitto's TLS listener on port {port}")

    def stop(self) -> None:
        """SIGTERM: mosquitto saves its persistent sessions and exits."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)
        self.proc = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"


def running_broker(folder: Path) -> Iterator[Mosquitto]:
    """A module fixture's body: a started ``Mosquitto`` in ``folder``, stopped afterwards; the
    test is skipped where mosquitto is not installed. Use as ``yield from running_broker(...)``."""
    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed (make test installs it: apt-get install mosquitto)")
    b = Mosquitto(folder)
    b.start()
    yield b
    b.stop()


class Subscriber:
    """A persistent QoS 1 session (clean_session=False): what the broker queued while this
    client or the broker was away arrives after the reconnect. Collects payloads."""

    def __init__(self, port: int, topic: str, client_id: str = "test-subscriber") -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[dict[str, Any]] = []
        self.retained: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.subscribed = threading.Event()
        c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False,
            protocol=mqtt.MQTTv311,
        )  # fmt: skip
        c.reconnect_delay_set(min_delay=0.1, max_delay=0.5)  # type: ignore[arg-type]

        def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
            client.subscribe(topic, qos=1)

        def on_subscribe(client: Any, userdata: Any, mid: Any, reasons: Any, props: Any) -> None:
            self.subscribed.set()

        def on_message(client: Any, userdata: Any, msg: Any) -> None:
            doc = json.loads(msg.payload)
            with self._lock:
                (self.retained if msg.retain else self.messages).append(doc)

        c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
        c.connect_async("127.0.0.1", port, keepalive=5)
        c.loop_start()
        self.client = c
        if not self.subscribed.wait(10):
            msg = "subscriber did not subscribe"
            raise RuntimeError(msg)

    def ids(self) -> set[tuple[str, int]]:
        with self._lock:
            return {(m["run_id"], m["frame_id"]) for m in self.messages}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class WebhookReceiver:
    """An HTTP server that records each POSTed JSON body and its Authorization header;
    ``fail`` > 0 answers the next ``fail`` requests with 503."""

    def __init__(self, port: int = 0) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.auth: set[str | None] = set()
        self.fail = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if receiver.fail > 0:
                    receiver.fail -= 1
                    self.send_response(503)
                else:
                    receiver.bodies.append(json.loads(body))
                    receiver.auth.add(self.headers.get("Authorization"))
                    self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def read_opcua(endpoint: str, names: list[str], namespace: str = "urn:pyinspect:station",
               user: tuple[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    """Values of the station's nodes (``"cam.Frames"``, ``"Heartbeat"``) read by a client."""
    from asyncua import Client, ua

    async def read() -> dict[str, Any]:
        client = Client(endpoint, timeout=5)
        if user is not None:
            client.set_user(user[0])
            client.set_password(user[1])
        async with client:
            ns = await client.get_namespace_index(namespace)
            out = {}
            for n in names:
                out[n] = await client.get_node(ua.NodeId(n, ns)).read_value()
            return out

    return asyncio.run(read())


def scrape(port: int, path: str = "/metrics") -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text (``None`` when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        if key == (f"{name}{{{want}}}" if want else name):
            return float(value)
    return None
