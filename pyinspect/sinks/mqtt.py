"""MQTT (paho-mqtt): each record on ``topic`` (per source), QoS 1, and the source's last record
retained on ``last_topic`` so a dashboard that subscribes later sees the current state at once.

A batch counts as delivered once the broker acknowledged every message of it (PUBACK); a batch not
acknowledged within ``ack_timeout_s`` or cut by a disconnect is spooled and sent again (the broker
may then see it twice: at least once). paho's network thread reconnects with the sink's bounded
backoff. Username and password come from environment variables (``username_env``,
``password_env``), never from the configuration file; ``mqtts://`` turns TLS on (``ca``,
``certfile``, ``keyfile`` optional; the system's CAs otherwise).
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
from typing import Any

from pyinspect.sinks.base import Record, Sink, SinkDown, SinkError, split_url

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
        self.topic, self.last_topic, self.qos = topic, last_topic, qos
        self.station = station
        self.client_id = client_id or f"pyinspect-{station}-{name}"
        self.username = env_secret(username_env, f"sink {name!r}")
        self.password = env_secret(password_env, f"sink {name!r}")
        self.tls_files = (ca, certfile, keyfile)
        self.keepalive, self.ack_timeout_s = keepalive, ack_timeout_s
        self._topics: dict[str, tuple[str, str | None]] = {}
        self._client: Any = None
        self._connected = threading.Event()

    def _topic(self, source: str) -> tuple[str, str | None]:
        t = self._topics.get(source)
        if t is None:
            topic = self.topic.format(station=self.station, source=source)
            last = self.last_topic.format(topic=topic, station=self.station, source=source) \
                if self.last_topic else None  # fmt: skip
            t = self._topics[source] = (topic, last)
        return t

    def _make_client(self) -> Any:
        import paho.mqtt.client as mqtt

        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=True,
            protocol=mqtt.MQTTv311,
        )  # fmt: skip
        if self.username is not None:
            client.username_pw_set(self.username, self.password)
        if self.tls:
            ca, cert, key = self.tls_files
            client.tls_set(ca_certs=ca, certfile=cert, keyfile=key, cert_reqs=ssl.CERT_REQUIRED)
        client.max_queued_messages_set(0)
        client.max_inflight_messages_set(max(20, 2 * self.batch))
        lo, hi = self._backoff.min_s, self._backoff.max_s
        client.reconnect_delay_set(min_delay=lo, max_delay=hi)  # type: ignore[arg-type]
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.connect_async(self.host, self.port, keepalive=self.keepalive)
        client.loop_start()
        return client

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if not reason.is_failure:
            self._connected.set()
        else:
            log.warning("sink %r: broker refused the connection: %s", self.name, reason)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any,
                       props: Any) -> None:  # fmt: skip
        self._connected.clear()

    def connect(self) -> None:
        if self._client is None:
            self._client = self._make_client()
        if not self._connected.wait(min(1.0, self._backoff.max_s)):
            msg = f"broker {self.host}:{self.port} not reachable"
            raise SinkDown(msg)

    def deliver(self, records: list[Record]) -> None:
        client = self._client
        if client is None or not self._connected.is_set():
            msg = f"broker {self.host}:{self.port} not connected"
            raise SinkDown(msg)
        infos = []
        last: dict[str, Record] = {}
        for r in records:
            source = r.doc.get("source", "")
            infos.append(client.publish(self._topic(source)[0], r.line, qos=self.qos))
            last[source] = r
        for source, r in last.items():
            retained = self._topic(source)[1]
            if retained is not None:
                infos.append(client.publish(retained, r.line, qos=self.qos, retain=True))
        deadline = time.monotonic() + self.ack_timeout_s
        for info in infos:
            while not info.is_published():
                if not self._connected.is_set() or time.monotonic() > deadline:
                    msg = f"broker {self.host}:{self.port}: batch not acknowledged"
                    raise SinkDown(msg)
                try:
                    info.wait_for_publish(0.05)
                except (RuntimeError, ValueError) as exc:  # not queued: no connection
                    raise SinkDown(str(exc)) from exc

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()
