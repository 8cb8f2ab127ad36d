"""The few MQTT 3.1.1 packets a publishing station needs, written and read in the sink's thread.

Why not a general client: the station publishes a batch of records every few milliseconds, and a
general client's per-message Python (message objects, callbacks, a network thread woken once per
message) cost more CPU per frame than the rest of the station together. Here a batch is one
write of its PUBLISH packets on a non-blocking socket and the acknowledgements are read in the
same thread, a few bytes each, so a batch costs a handful of system calls and no thread hand-off.

What it speaks (MQTT 3.1.1, OASIS standard): CONNECT (clean session, keepalive, username /
password) and CONNACK, PUBLISH at QoS 0, 1 (PUBACK) or 2 (PUBREC, PUBREL, PUBCOMP), PINGREQ /
PINGRESP, DISCONNECT; TLS through an ``ssl.SSLContext``. Every failure is an ``MqttError`` saying
what happened; the caller spools and reconnects.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import struct
import time
from collections.abc import Iterable

__all__ = ["CONNACK_REASONS", "MqttConnection", "MqttError", "publish_packet"]

_CONNECT, _CONNACK, _PUBLISH, _PUBACK = 0x10, 0x20, 0x30, 0x40
_PUBREC, _PUBREL, _PUBCOMP, _PINGREQ, _PINGRESP, _DISCONNECT = 0x50, 0x62, 0x70, 0xC0, 0xD0, 0xE0
_U16 = struct.Struct("!H")
_ACK = struct.Struct("!2xH")  # a PUBACK: type, length 2, packet id
_PUBACKS, _TWOS = bytes((_PUBACK,)) * 16384, b"\x02" * 16384
_TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", None)

#: CONNACK return codes (MQTT 3.1.1 section 3.2.2.3).
CONNACK_REASONS = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}


class MqttError(ConnectionError):
    """The broker cannot be reached, refused us, or did not answer in time."""


def _length(n: int) -> bytes:
    """The fixed header's remaining length (1-4 bytes, 7 bits each)."""
    if n < 128:
        return bytes((n,))
    if n < 16384:  # a record's PUBLISH: two bytes
        return bytes((n & 0x7F | 0x80, n >> 7))
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | 0x80 if n else digit)
        if not n:
            return bytes(out)


def _utf8(text: str) -> bytes:
    data = text.encode()
    return _U16.pack(len(data)) + data


def publish_packet(topic: bytes, payload: bytes, qos: int, packet_id: int,
                   retain: bool = False) -> bytes:  # fmt: skip
    """One PUBLISH packet (``topic`` already UTF-8 with its 2-byte length; ``packet_id`` ignored
    at QoS 0)."""
    head = _PUBLISH | (qos << 1) | retain
    if qos:
        body = len(topic) + 2 + len(payload)
        return b"".join((bytes((head,)), _length(body), topic, _U16.pack(packet_id), payload))
    return b"".join((bytes((head,)), _length(len(topic) + len(payload)), topic, payload))


class MqttConnection:
    """One connection to a broker, used from one thread.

    ``send`` writes a batch and returns its packet ids; ``acknowledged`` collects the ids the
    broker confirmed (QoS 1: PUBACK, QoS 2: PUBCOMP), so a caller can send the next batch before
    the last one is confirmed; ``publish`` is both, waiting. Failures raise ``MqttError``.
    """

    def __init__(self, host: str, port: int, *, client_id: str, keepalive: int = 30,
                 username: str | None = None, password: str | None = None,
                 tls: ssl.SSLContext | None = None,
                 connect_timeout_s: float = 5.0) -> None:  # fmt: skip
        self.host, self.port = host, port
        self.client_id, self.keepalive = client_id, keepalive
        self.username, self.password = username, password
        self.tls = tls
        self.connect_timeout_s = connect_timeout_s
        self._sock: socket.socket | None = None
        self._buf = bytearray()
        self._next_id = 0
        self._last_send = 0.0
        self._ping_sent = 0.0  # monotonic time of an unanswered PINGREQ, 0 when none
        self._done: set[int] = set()  # acknowledged packet ids not yet collected
        self._awaiting_rec: set[int] = set()  # QoS 2: PUBLISH sent, PUBREC not yet seen

    @property
    def connected(self) -> bool:
        return self._sock is not None

    # ---- connecting --------------------------------------------------------------------------
    def connect(self) -> None:
        """Open the socket (TLS when configured), send CONNECT, wait for CONNACK."""
        self.close()
        where = f"{self.host}:{self.port}"
        try:
            sock = socket.create_connection((self.host, self.port), self.connect_timeout_s)
        except OSError as exc:
            msg = f"broker {where} not reachable: {exc.strerror or exc}"
            raise MqttError(msg) from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_hostname=self.host)
        except (OSError, ssl.SSLError) as exc:
            sock.close()
            msg = f"broker {where}: TLS handshake failed: {exc}"
            raise MqttError(msg) from exc
        sock.setblocking(False)
        self._sock = sock
        self._buf.clear()
        self._done.clear()
        self._awaiting_rec.clear()
        flags = 0x02  # clean session
        payload = _utf8(self.client_id)
        if self.username is not None:
            flags |= 0x80
            payload += _utf8(self.username)
            if self.password is not None:
                flags |= 0x40
                payload += _utf8(self.password)
        body = _utf8("MQTT") + bytes((4, flags)) + _U16.pack(self.keepalive) + payload
        try:
            self._send(bytes((_CONNECT,)) + _length(len(body)) + body)
            kind, data = self._read_packet(time.monotonic() + self.connect_timeout_s)
        except MqttError:
            self.close()
            raise
        if kind != _CONNACK or len(data) != 2:
            self.close()
            msg = f"broker {where}: expected CONNACK, got packet type {kind >> 4}"
            raise MqttError(msg)
        if data[1] != 0:
            self.close()
            reason = CONNACK_REASONS.get(data[1], f"return code {data[1]}")
            msg = f"broker {where} refused the connection: {reason}"
            raise MqttError(msg)
        self._ping_sent = 0.0

    def close(self, *, polite: bool = False) -> None:
        """Drop the connection (``polite``: send DISCONNECT first)."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if polite:
            with contextlib.suppress(OSError):
                sock.send(bytes((_DISCONNECT, 0)))
        with contextlib.suppress(OSError):
            sock.close()

    # ---- publishing --------------------------------------------------------------------------
    def send(self, messages: Iterable[tuple[bytes, bytes, bool]], qos: int) -> list[int]:
        """Send every ``(topic, payload, retain)`` (``topic`` from ``topic_bytes``) in one write;
        returns their packet ids (0 at QoS 0), for ``acknowledged``."""
        parts: list[bytes] = []
        ids = []
        heads = (bytes((_PUBLISH | qos << 1,)), bytes((_PUBLISH | qos << 1 | 1,)))
        pid = self._next_id
        for topic, payload, retain in messages:  # publish_packet's bytes, in one list
            if qos:
                pid = pid % 0xFFFF + 1
                if qos == 2:
                    self._awaiting_rec.add(pid)
                ids.append(pid)
                n = len(topic) + 2 + len(payload)
                parts += (heads[retain], _length(n), topic, _U16.pack(pid), payload)
            else:
                ids.append(0)
                parts += (heads[retain], _length(len(topic) + len(payload)), topic, payload)
        self._next_id = pid
        self._send(b"".join(parts))
        return ids

    def acknowledged(self, deadline: float | None = None) -> set[int]:
        """Packet ids the broker acknowledged since the last call (QoS 1: PUBACK, QoS 2:
        PUBCOMP; a PUBREC is answered with PUBREL on the way). ``deadline`` (monotonic): wait
        until at least one arrived or it passed; ``None``: only what already arrived."""
        if deadline is None:
            self._drain()
        elif not self._done:
            while not self._done:
                left = deadline - time.monotonic()
                if left <= 0 or not self._recv(left):
                    break
                self._handle_all()
        done, self._done = self._done, set()
        return done

    def publish(self, messages: Iterable[tuple[bytes, bytes, bool]], qos: int,
                timeout_s: float) -> None:  # fmt: skip
        """``send``, then wait until the broker acknowledged every message."""
        pending = {pid for pid in self.send(messages, qos) if pid}
        deadline = time.monotonic() + timeout_s
        while pending:
            got = self.acknowledged(deadline)
            if not got and time.monotonic() >= deadline:
                msg = f"broker {self.host}:{self.port}: no acknowledgement in time"
                raise MqttError(msg)
            pending -= got

    @staticmethod
    def topic_bytes(topic: str) -> bytes:
        """A topic as PUBLISH carries it (UTF-8 with its length), made once per topic."""
        return _utf8(topic)

    def keep_alive(self) -> None:
        """Called when idle: PINGREQ once half the keepalive passed without a packet sent, read
        what arrived (PINGRESP), and fail when a PINGREQ went unanswered for a keepalive."""
        now = time.monotonic()
        if self._ping_sent and now - self._ping_sent > max(1.0, self.keepalive):
            msg = f"broker {self.host}:{self.port}: no answer to PINGREQ"
            raise MqttError(msg)
        self._drain()
        if self.keepalive and not self._ping_sent and now - self._last_send > self.keepalive / 2:
            self._send(bytes((_PINGREQ, 0)))
            self._ping_sent = now

    # ---- the socket --------------------------------------------------------------------------
    # The socket stays non-blocking: a write or a read is one system call, and only a wait for
    # room or for an answer adds a select().
    def _lost(self, exc: BaseException) -> MqttError:
        self.close()
        what = getattr(exc, "strerror", None) or exc
        return MqttError(f"broker {self.host}:{self.port}: connection lost ({what})")

    def _socket(self) -> socket.socket:
        sock = self._sock
        if sock is None:
            msg = f"broker {self.host}:{self.port} not connected"
            raise MqttError(msg)
        return sock

    def _send(self, data: bytes) -> None:
        sock = self._socket()
        view = memoryview(data)
        deadline = 0.0
        try:
            while view:
                wants_read = False
                try:
                    n = sock.send(view)
                except (BlockingIOError, ssl.SSLWantWriteError):
                    n = 0
                except ssl.SSLWantReadError:  # TLS must read first (a renegotiation)
                    n, wants_read = 0, True
                view = view[n:]
                if view:  # the socket's buffer is full: wait for room
                    now = time.monotonic()
                    deadline = deadline or now + max(1.0, self.connect_timeout_s)
                    wait = ([sock], []) if wants_read else ([], [sock])
                    if now >= deadline or not any(select.select(*wait, [], deadline - now)):
                        msg = "the broker takes no more data"
                        raise TimeoutError(msg)
        except OSError as exc:
            raise self._lost(exc) from exc
        self._last_send = time.monotonic()

    def _recv(self, timeout_s: float) -> bool:
        """Read what arrived (waiting up to ``timeout_s`` for something) into the buffer; False
        when nothing came in time."""
        sock = self._socket()
        deadline = 0.0
        while True:
            try:
                data = sock.recv(65536)
                break
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                pass
            except OSError as exc:
                raise self._lost(exc) from exc
            # Nothing yet (or only part of a TLS record, or a TLS message that carries no data,
            # such as a session ticket): wait for the socket until the deadline.
            now = time.monotonic()
            deadline = deadline or now + timeout_s
            if now >= deadline:
                return False
            try:
                ready = select.select([sock], [], [], deadline - now)[0]
            except OSError as exc:
                raise self._lost(exc) from exc
            if not ready:
                return False
        if not data:
            self.close()
            msg = f"broker {self.host}:{self.port} closed the connection"
            raise MqttError(msg)
        if timeout_s > 0 and _TCP_QUICKACK is not None:
            # Someone waits for the answers: acknowledge at once, since a broker that batches
            # its small answers (Nagle) sends the rest only after our ACK, which Linux delays.
            # (Pipelined reads need not: the next batch's write carries the ACK.)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)
        self._buf += data
        return True

    def _take_packet(self) -> tuple[int, bytes] | None:
        """The next whole packet in the buffer (type bits, body), or ``None``."""
        buf = self._buf
        n, shift, i = 0, 0, 1
        while True:
            if i >= len(buf):
                return None
            byte = buf[i]
            n |= (byte & 0x7F) << shift
            i += 1
            if not byte & 0x80:
                break
            shift += 7
            if shift > 21:
                self.close()
                msg = f"broker {self.host}:{self.port}: malformed packet length"
                raise MqttError(msg)
        if len(buf) < i + n:
            return None
        kind, body = buf[0] & 0xF0, bytes(buf[i : i + n])
        del buf[: i + n]
        return kind, body

    def _handle(self, kind: int, body: bytes) -> None:
        """An answer from the broker: acknowledgements are collected for ``acknowledged``."""
        if kind == _PINGRESP:
            self._ping_sent = 0.0
            return
        if len(body) < 2:
            return
        pid = _U16.unpack_from(body)[0]
        if kind in (_PUBACK, _PUBCOMP):
            self._done.add(pid)
        elif kind == _PUBREC and pid in self._awaiting_rec:
            self._awaiting_rec.discard(pid)
            self._send(bytes((_PUBREL, 2)) + body[:2])

    def _handle_all(self) -> None:
        buf = self._buf
        n = len(buf) // 4
        if n and buf[0::4] == _PUBACKS[:n] and buf[1::4] == _TWOS[:n] and len(buf) == 4 * n:
            self._done.update(pid for (pid,) in _ACK.iter_unpack(buf))  # only PUBACKs: at once
            buf.clear()
            return
        while (packet := self._take_packet()) is not None:
            self._handle(*packet)

    def _read_packet(self, deadline: float) -> tuple[int, bytes]:
        while True:
            packet = self._take_packet()
            if packet is not None:
                return packet
            left = deadline - time.monotonic()
            if left <= 0 or not self._recv(left):
                msg = f"broker {self.host}:{self.port}: no answer in time"
                raise MqttError(msg)

    def _drain(self) -> None:
        """Read and handle whatever the broker sent, without waiting: one read on a plain socket
        unless it filled the buffer; on TLS until nothing is left (a read returns one record)."""
        while self._recv(0.0) and (self.tls is not None or len(self._buf) >= 65536):
            pass
        self._handle_all()
