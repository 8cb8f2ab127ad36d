"""MQTT: each record on ``topic`` (per source), QoS 1, and the source's last record retained on
``last_topic`` so a dashboard that subscribes later sees the current state at once.

A batch is one write of its PUBLISH packets from the sink's own thread (``mqtt_wire``: no client
library, no network thread, no per-message callback) and counts as delivered once the broker
acknowledged every message of it (QoS 1: PUBACK, QoS 2: PUBCOMP); a batch not acknowledged
within ``ack_timeout_s`` or cut by a disconnect is spooled and sent again (the broker may then
see it twice: at least once). The sink reconnects with its bounded backoff and keeps an idle
connection alive with PINGREQ. Username and password come from environment variables
(``username_env``, ``password_env``), never from the configuration file; ``mqtts://`` turns TLS
on (``ca``, ``certfile``, ``keyfile`` optional; the system's CAs otherwise).
"""

from __future__ import annotations

import logging
import os
import ssl
import time
from collections import deque
from typing import Any

from pyinspect.sinks.base import Record, Sink, SinkDown, SinkError, split_url
from pyinspect.sinks.mqtt_wire import MqttConnection, MqttError

__all__ = ["MqttSink", "parse_mqtt_url"]

log = logging.getLogger("pyinspect.watch")


def parse_mqtt_url(url: str) -> tuple[str, int, bool]:
    """``mqtt://host[:1883]`` / ``mqtts://host[:8883]`` -> (host, port, tls)."""
    parts, host, port = split_url(
        url, "MQTT", ("mqtt", "mqtts"), "mqtt://host[:port] or mqtts://host[:port]",
        "set username_env / password_env to the names of environment variables",
    )  # fmt: skip
    tls = parts.scheme == "mqtts"
    return host, port or (8883 if tls else 1883), tls


def env_secret(var: str | None, what: str) -> str | None:
    """The value of environment variable ``var`` (``None`` when no variable is named); a named
    variable that is not set is an error, so a typo does not silently connect anonymously."""
    if not var:
        return None
    value = os.environ.get(var)
    if value is None:
        msg = f"{what}: environment variable {var} is not set"
        raise SinkError(msg)
    return value


class MqttSink(Sink):
    kind = "mqtt"
    pipelined = True

    def __init__(self, name: str, url: str, *, topic: str = "pyinspect/{station}/{source}",
                 last_topic: str | None = "{topic}/last", qos: int = 1,
                 station: str = "station", client_id: str | None = None,
                 username_env: str | None = None, password_env: str | None = None,
                 ca: str | None = None, certfile: str | None = None, keyfile: str | None = None,
                 keepalive: int = 30, ack_timeout_s: float = 2.0,
                 **kwargs: Any) -> None:  # fmt: skip
        super().__init__(name, **kwargs)
        self.host, self.port, self.tls = parse_mqtt_url(url)
        self.url = url
        if qos not in (0, 1, 2):
            msg = f"sink {name!r}: qos must be 0, 1 or 2, got {qos!r}"
            raise SinkError(msg)
        self.topic, self.last_topic, self.qos = topic, last_topic, qos
        self.station = station
        self.client_id = client_id or f"pyinspect-{station}-{name}"
        self.username = env_secret(username_env, f"sink {name!r}")
        self.password = env_secret(password_env, f"sink {name!r}")
        self.tls_files = (ca, certfile, keyfile)
        self.keepalive, self.ack_timeout_s = keepalive, ack_timeout_s
        self._topics: dict[str, tuple[bytes, bytes | None]] = {}
        self._conn: MqttConnection | None = None
        # pipelined delivery: (packet id, is a record (not a retained copy), sent at) in order
        self._unacked: deque[tuple[int, bool, float]] = deque()
        self._acked: set[int] = set()  # acknowledged ids behind an unacknowledged one
        self._sent_qos0 = 0  # QoS 0 records sent since the last confirmed()

    def _topic(self, source: str) -> tuple[bytes, bytes | None]:
        """(topic, retained last topic or None) of a source, encoded once."""
        t = self._topics.get(source)
        if t is None:
            topic = self.topic.format(station=self.station, source=source)
            last = self.last_topic.format(topic=topic, station=self.station, source=source) \
                if self.last_topic else None  # fmt: skip
            enc = MqttConnection.topic_bytes
            t = self._topics[source] = (enc(topic), enc(last) if last is not None else None)
        return t

    def _tls_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        ca, cert, key = self.tls_files
        try:
            ctx = ssl.create_default_context(cafile=ca)
            if cert is not None:
                ctx.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            msg = f"sink {self.name!r}: TLS files (ca, certfile, keyfile): {exc}"
            raise SinkDown(msg) from exc
        return ctx

    def connect(self) -> None:
        if self._conn is not None and self._conn.connected:
            return
        conn = MqttConnection(
            self.host, self.port, client_id=self.client_id, keepalive=self.keepalive,
            username=self.username, password=self.password, tls=self._tls_context(),
            connect_timeout_s=min(5.0, max(1.0, self.ack_timeout_s)),
        )  # fmt: skip
        try:
            conn.connect()
        except MqttError as exc:
            raise SinkDown(str(exc)) from exc
        self._conn = conn

    def _messages(self, records: list[Record]) -> list[tuple[bytes, bytes, bool]]:
        """Each record on its source's topic, then each source's last one retained."""
        messages: list[tuple[bytes, bytes, bool]] = []
        last: dict[str, Record] = {}
        for r in records:
            source = r.source
            messages.append((self._topic(source)[0], r.line, False))
            last[source] = r
        for source, r in last.items():
            retained = self._topic(source)[1]
            if retained is not None:
                messages.append((retained, r.line, True))
        return messages

    def _connection(self) -> MqttConnection:
        conn = self._conn
        if conn is None or not conn.connected:
            msg = f"broker {self.host}:{self.port} not connected"
            raise SinkDown(msg)
        return conn

    def deliver(self, records: list[Record]) -> None:
        try:
            self._connection().publish(self._messages(records), self.qos, self.ack_timeout_s)
        except MqttError as exc:
            msg = f"{exc}; batch not acknowledged"
            raise SinkDown(msg) from exc

    def send(self, records: list[Record]) -> None:
        conn = self._connection()
        messages = self._messages(records)
        try:
            ids = conn.send(messages, self.qos)
        except MqttError as exc:
            raise SinkDown(str(exc)) from exc
        now = time.monotonic()
        unacked = self._unacked
        for (_, _, retained), pid in zip(messages, ids, strict=True):
            if pid:
                unacked.append((pid, not retained, now))
            elif not retained:
                self._sent_qos0 += 1

    def confirmed(self, *, wait: bool) -> int:
        done, self._sent_qos0 = self._sent_qos0, 0
        unacked, acked = self._unacked, self._acked
        if not unacked:
            return done
        conn = self._connection()
        deadline = unacked[0][2] + self.ack_timeout_s
        try:
            while True:
                acked |= conn.acknowledged(deadline if wait else None)
                while unacked and unacked[0][0] in acked:
                    pid, is_record, _ = unacked.popleft()
                    acked.discard(pid)
                    done += is_record
                if not unacked:
                    return done
                deadline = unacked[0][2] + self.ack_timeout_s
                if time.monotonic() >= deadline:
                    break
                if not wait:
                    return done
        except MqttError as exc:
            raise SinkDown(str(exc)) from exc
        msg = f"broker {self.host}:{self.port}: not acknowledged within {self.ack_timeout_s} s"
        raise SinkDown(msg)

    def idle(self) -> None:
        conn = self._conn
        if conn is None or not conn.connected:
            return
        try:
            conn.keep_alive()
        except MqttError as exc:
            raise SinkDown(str(exc)) from exc

    def disconnect(self) -> None:
        self._unacked.clear()
        self._acked.clear()
        self._sent_qos0 = 0
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close(polite=True)
