"""What a station sink is, and the machinery every sink shares: a bounded memory queue, a worker
thread, a disk spool while the peer is down, replay in order when it returns, counted drops.

The inference thread only ever calls ``offer_many(records)``: ``deque.append``s while the sink
keeps up, and a wake-up of the worker only when it sleeps (one per batch, not per record).
When the memory queue is full (a slow peer) or the peer is down, records go to the sink's
``Spool`` instead, and every later record follows them there until the worker has replayed the
spool, so the peer sees records in order. The worker removes a record from the queue or the spool
only after ``deliver`` returned: a batch in flight when the peer fails is spooled (again), so
delivery is at least once and a consumer de-duplicates by ``(run_id, source, frame_id)``.

A sink without a spool (OPC UA's last values, the image folder) drops the oldest queued record
when its queue is full, counted. Every failure is logged and counted; none is silent.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from itertools import islice
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, urlsplit

from pyinspect.backoff import Backoff
from pyinspect.errors import PyInspectError, check_choice
from pyinspect.metrics import StationMetrics
from pyinspect.sinks.spool import Spool

if TYPE_CHECKING:
    import numpy as np

    from pyinspect.result import InspectionResult

__all__ = ["SPOOL_POLICIES", "Record", "Sink", "SinkDown", "SinkError"]

log = logging.getLogger("pyinspect.watch")

#: What a full spool does: hold the pipeline until there is room, or drop its oldest records.
SPOOL_POLICIES = ("block", "drop_oldest")
_IDLE_S = 0.05
#: A pipelined sink with only records in flight collects their confirmations when it next sends,
#: or this many ``linger_s`` after its last send when no record comes (at least 1 ms).
CONFIRM_LINGERS = 2
#: How long a sink's worker waits for more records after a single one, so it wakes once per
#: batch rather than once per frame (the inference thread's cores are busy): a single record is
#: delivered at most this much later. Records handed over together go at once.
LINGER_S = 0.005


class SinkError(PyInspectError, RuntimeError):
    """A sink cannot be set up as configured (bad URL, port in use, unwritable folder, ...)."""


class SinkDown(Exception):
    """The sink's peer (broker, server, disk) did not take a batch; spool and retry."""


class Record:
    """One record on its way out: its JSON line (made once, shared by every sink), the source it
    came from, and, for sinks that draw or save pictures, the frame and its result.

    ``doc`` (the record as a dict) is parsed from the line the first time a sink reads it, so
    the station makes only the line per frame and only sinks that need fields (OPC UA, images)
    pay for a dict; parsing is idempotent, so sinks in other threads may read it too."""

    __slots__ = ("_doc", "_source", "image", "line", "result")

    def __init__(self, doc: dict[str, Any] | None, line: bytes, image: np.ndarray | None = None,
                 result: InspectionResult | None = None, *,
                 source: str | None = None) -> None:  # fmt: skip
        self._doc = doc
        self.line = line
        self.image = image
        self.result = result
        self._source = source

    @property
    def doc(self) -> dict[str, Any]:
        doc = self._doc
        if doc is None:
            doc = self._doc = json.loads(self.line)
        return doc

    @property
    def source(self) -> str:
        """The record's ``source`` field ("" when it has none)."""
        if self._source is None:
            self._source = str(self.doc.get("source", ""))
        return self._source

    @classmethod
    def from_line(cls, line: bytes) -> Record:
        """A record replayed from a spool (no image)."""
        return cls(json.loads(line), line)


def split_url(url: str, what: str, schemes: tuple[str, ...], expected: str,
              no_credentials: str) -> tuple[SplitResult, str, int | None]:  # fmt: skip
    """``url`` split, its host and its port (``None`` when it names none) for a sink's peer; a
    ``SinkError`` (``"{what} url ...: ..."``) for a scheme not in ``schemes`` or no host
    (``expected`` says what is), credentials in the url (``no_credentials`` says where they go)
    or a port out of range."""
    parts = urlsplit(url)
    host = parts.hostname
    if parts.scheme not in schemes or not host:
        msg = f"{what} url {url!r}: expected {expected}"
        raise SinkError(msg)
    if parts.username or parts.password:
        msg = f"{what} url {url!r}: credentials do not belong in the url; {no_credentials}"
        raise SinkError(msg)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port is not None and not 0 < port < 65536:
        msg = f"{what} url {url!r}: bad port"
        raise SinkError(msg)
    return parts, host, port


class Sink:
    """Base of the station's sinks. Subclasses set ``kind`` and override ``deliver`` (raise
    ``SinkDown`` when the peer did not take the batch), and where needed ``connect`` (raise
    ``SinkDown`` while unreachable), ``idle`` (called when the queue is empty: flush, heartbeat),
    ``disconnect`` and ``close``. ``start`` runs the worker; ``stop(deadline)`` drains it."""

    kind = "sink"
    #: True for sinks that need the frame itself (``Record.image``), not only the record.
    wants_images = False

    def __init__(
        self,
        name: str,
        *,
        metrics: StationMetrics | None = None,
        queue: int = 1000,
        batch: int = 64,
        spool: Spool | None = None,
        spool_policy: str = "block",
        reconnect_min_s: float = 0.1,
        reconnect_max_s: float = 30.0,
        linger_s: float = LINGER_S,
    ) -> None:
        what = f"sink {name!r}: spool_policy"
        self.spool_policy = check_choice(what, spool_policy, SPOOL_POLICIES, SinkError)
        self.name = name
        self.queue_max = queue
        self.batch = batch
        self.linger_s = linger_s
        self._confirm_s = min(_IDLE_S, max(CONFIRM_LINGERS * linger_s, 0.001))
        self.spool = spool
        self._backoff = Backoff(reconnect_min_s, reconnect_max_s)
        self._q: deque[tuple[int, Record]] = deque()  # (sequence number, record)
        self._cond = threading.Condition()
        self._spilling = bool(spool is not None and spool.records)  # replay a spool left behind
        self._stopping = False
        # The worker's state, guarded by _cond: what it waits for ("records": any offer wakes
        # it; "linger": a ready batch does), whether the unsent records are a batch to deliver at
        # once, and when the oldest unsent record was offered (time.monotonic()).
        self._waiting = ""
        self._ready = False
        self._oldest = 0.0
        self._taken = 0  # records of the batch the worker is delivering or sending
        self._inflight: deque[tuple[int, float]] = deque()  # pipelined: (seq, sent at) unconfirmed
        self._closed = False
        self._up = False
        self._down_logged = False
        self._give_up = False
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._seq = 0
        m = metrics or StationMetrics()
        self._m_records = m.sink_records.labels(name)
        self._m_replayed = m.sink_replayed.labels(name)
        self._m_spooled = m.sink_spooled.labels(name)
        self._m_dropped = m.sink_dropped.labels(name)
        self._m_errors = m.sink_errors.labels(name)
        self._m_outages = m.sink_outages.labels(name)
        self._m_seconds = m.sink_seconds.labels(name)
        m.sink_up.labels(name).set_function(lambda: float(self._up))
        m.sink_queue.labels(name).set_function(lambda: float(len(self._q)))
        if spool is not None:
            m.spool_records.labels(name).set_function(lambda: float(spool.records))
            m.spool_bytes.labels(name).set_function(lambda: float(spool.bytes))

    # ---- overridden by sinks -------------------------------------------------------------
    def open(self) -> None:
        """Set up what must work before the first frame (bind a port); raise ``SinkError``."""

    def connect(self) -> None:
        """Reach the peer; raise ``SinkDown`` while it is unreachable."""

    def deliver(self, records: list[Record]) -> None:
        raise NotImplementedError

    #: True for a sink whose ``send`` returns before the peer confirmed the records and whose
    #: ``confirmed`` reports confirmations later (MQTT: one wake-up per batch, not one per
    #: acknowledgement). Its ``deliver`` is still used, for spool replay, and must wait.
    pipelined = False

    def send(self, records: list[Record]) -> None:
        """Pipelined sinks: hand ``records`` to the peer without waiting (raise ``SinkDown``)."""
        raise NotImplementedError

    def confirmed(self, *, wait: bool) -> int:
        """Pipelined sinks: how many of the records sent so far (oldest first, each counted once)
        the peer has confirmed since the last call; ``wait``: wait until every one is. Raise
        ``SinkDown`` when the peer is gone or has not confirmed in time."""
        raise NotImplementedError

    def idle(self) -> None:
        """Nothing queued: flush buffers, refresh heartbeats."""

    def disconnect(self) -> None:
        """Drop the connection after a failure (``connect`` is called again)."""

    def close(self) -> None:
        """Release everything (after the worker stopped)."""

    def bind_sources(self, names: list[str]) -> None:
        """The station's source names, before ``start`` (OPC UA makes a node set per source)."""

    # ---- what the station calls ----------------------------------------------------------
    @property
    def up(self) -> bool:
        return self._up

    @property
    def pending(self) -> int:
        """Records not delivered yet (memory queue + spool)."""
        return len(self._q) + (self.spool.records if self.spool is not None else 0)

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"pyinspect-watch-sink-{self.name}", daemon=True
        )
        self._thread.start()

    def offer(self, record: Record) -> None:
        """Queue a record (called by the inference thread; waits only with a full spool and the
        ``block`` policy)."""
        self.offer_many([record])

    def offer_many(self, records: list[Record]) -> None:
        """Queue records, in order, under one lock (what the station calls). Several records at
        once are a batch already (the station hands them over so while frames queue up): the
        worker delivers them without lingering for more. Waits only with a full spool and the
        ``block`` policy."""
        with self._cond:
            q = self._q
            unsent = self._unsent()
            to_spool: list[bytes] = []
            for record in records:
                self._seq += 1
                if not self._spilling and len(q) < self.queue_max:
                    q.append((self._seq, record))
                    continue
                if self.spool is None:
                    q.popleft()
                    self._m_dropped.inc()
                    log.warning("sink %r: queue full (%d), oldest record dropped", self.name,
                                self.queue_max)  # fmt: skip
                    q.append((self._seq, record))
                    continue
                if not self._spilling:
                    self._spill_queue()
                to_spool.append(record.line)
            if q:
                if not unsent:
                    self._oldest = time.monotonic()
                if len(records) > 1 or self._unsent() >= self.batch:
                    self._ready = True
                # Wake the worker when it waits for records, or lingers and a batch is ready;
                # otherwise its own timer takes the records (one wake-up per batch).
                if self._waiting == "records" or (self._ready and self._waiting == "linger"):
                    self._waiting = ""
                    self._cond.notify()
            if to_spool:
                self._spool_append(to_spool)

    def stop(self, deadline: float) -> None:
        """Deliver what is queued until ``deadline`` (``time.monotonic()``), spool the rest."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        with self._cond:
            self._closed = True
            if self._q:
                if self.spool is not None:
                    n = len(self._q)
                    self._spill_queue()
                    log.warning("sink %r: %d records spooled at shutdown", self.name, n)
                else:
                    self._m_dropped.inc(len(self._q))
                    log.warning("sink %r: %d records not delivered at shutdown", self.name,
                                len(self._q))  # fmt: skip
                    self._q.clear()
            if self.spool is not None:
                self.spool.close()
        try:
            self.close()
        except Exception as exc:  # a peer that fails while closing loses nothing spooled
            log.warning("sink %r: closing: %s", self.name, exc)

    # ---- spool (the caller holds self._cond) ---------------------------------------------
    def _spill_queue(self) -> None:
        self._spilling = True
        lines = [r.line for _, r in self._q]
        self._q.clear()
        self._spool_append(lines)

    def _spool_append(self, lines: list[bytes]) -> None:
        spool = self.spool
        if spool is None or not lines:
            return
        need = sum(len(line) + 1 for line in lines)
        if self.spool_policy == "drop_oldest" and need > spool.max_bytes:
            cut = 0
            while need > spool.max_bytes and cut < len(lines) - 1:
                need -= len(lines[cut]) + 1
                cut += 1
            self._m_dropped.inc(cut)
            log.warning("sink %r: spool full (%d bytes), %d oldest records dropped", self.name,
                        spool.max_bytes, cut)  # fmt: skip
            lines = lines[cut:]
        while not spool.has_room(need):
            if self.spool_policy == "drop_oldest":
                dropped = spool.drop_oldest()
                self._m_dropped.inc(dropped)
                log.warning("sink %r: spool full (%d bytes), %d oldest records dropped",
                            self.name, spool.max_bytes, dropped)  # fmt: skip
            elif self._stopping or self._closed:  # never block shutdown: exceed the bound
                break
            else:
                self._cond.wait(_IDLE_S)
        try:
            spool.append(lines)
        except OSError as exc:
            self._m_errors.inc()
            self._m_dropped.inc(len(lines))
            log.error("sink %r: spool %s refused %d records (lost): %s", self.name,
                      spool.folder, len(lines), exc)  # fmt: skip
            return
        self._m_spooled.inc(len(lines))

    # ---- the worker ----------------------------------------------------------------------
    def _run(self) -> None:
        while not self._give_up:
            if not self._up and not self._try_connect():
                continue
            lines: list[bytes] = []
            batch: list[tuple[int, Record]] = []
            with self._cond:
                if self._spilling and self.spool is not None:
                    if self._inflight:
                        pass  # confirm (or fail) what is in flight first, below
                    else:
                        lines = self.spool.peek(self.batch)
                        if not lines:
                            self._spilling = False
                            continue
                else:
                    taken = self._next_batch()
                    if taken is None:
                        return
                    batch = taken
            if self.pipelined and not lines:
                self._pipeline(batch)
                with self._cond:
                    self._taken = 0
                continue
            if not lines and not batch:
                self._safe_idle()
                continue
            t0 = time.perf_counter()
            try:
                if batch:
                    self.deliver([r for _, r in batch])
                else:
                    self.deliver([Record.from_line(line) for line in lines])
            except SinkDown as exc:
                self._went_down(exc)
                continue
            except Exception as exc:  # a bug or a refusal: keep the records, retry later
                log.exception("sink %r: delivery failed", self.name)
                self._went_down(exc)
                continue
            self._m_seconds.observe(time.perf_counter() - t0)
            self._backoff.reset()
            with self._cond:
                self._taken = 0
                if self._closed:
                    return
                if lines and self.spool is not None:
                    self.spool.pop(lines)
                    self._m_replayed.inc(len(lines))
                    self._m_records.inc(len(lines))
                    self._cond.notify_all()  # room for an offer waiting on a full spool
                else:
                    last = batch[-1][0]
                    while self._q and self._q[0][0] <= last:
                        self._q.popleft()
                    self._m_records.inc(len(batch))

    def _next_batch(self) -> list[tuple[int, Record]] | None:
        """Wait for records and take the next batch (the caller holds _cond; empty: nothing to
        send now, so collect confirmations or go idle; ``None``: stopped, nothing left).

        Single records linger up to ``linger_s`` after the oldest of them was offered, so the
        worker wakes once per batch rather than once per frame; a batch handed over whole (or a
        full one, or a backlog) goes at once. A pipelined sink with only records in flight
        collects their confirmations with its next batch, or ``CONFIRM_LINGERS * linger_s``
        after its last send when none comes."""
        if not self._unsent():
            if self._stopping:
                return [] if self._q else None  # a pipelined sink confirms what is in flight
            self._waiting = "records"
            self._cond.wait(self._confirm_s if self._q else _IDLE_S)
            self._waiting = ""
        if not self._unsent():
            return []
        if not self._ready and not self._stopping and self.linger_s > 0:
            left = self._oldest + self.linger_s - time.monotonic()
            if left > 0:
                self._waiting = "linger"
                self._cond.wait(left)
                self._waiting = ""
        sent = len(self._inflight)
        batch = list(islice(self._q, sent, sent + self.batch))
        self._taken = len(batch)
        self._ready = self._unsent() > 0  # a backlog: the next wake-up takes it at once
        return batch

    def _unsent(self) -> int:
        """Records in the memory queue the worker has not taken yet (the caller holds _cond)."""
        return max(0, len(self._q) - len(self._inflight) - self._taken)

    def _pipeline(self, batch: list[tuple[int, Record]]) -> None:
        """One wake-up of a pipelined sink: collect the confirmations that arrived, send the
        new batch; on stop or before a spool replay, wait until everything sent is confirmed.
        A record leaves the memory queue only once confirmed."""
        with self._cond:
            drain = self._stopping or self._spilling
        try:
            done = self.confirmed(wait=False)
            if batch:
                self.send([r for _, r in batch])
                now = time.perf_counter()
                with self._cond:
                    self._inflight.extend((seq, now) for seq, _ in batch)
                    self._taken = 0
            if drain:
                done += self.confirmed(wait=True)
        except SinkDown as exc:
            self._went_down(exc)
            return
        except Exception as exc:  # a bug or a refusal: keep the records, retry later
            log.exception("sink %r: delivery failed", self.name)
            self._went_down(exc)
            return
        with self._cond:
            if self._closed:
                return
            if done:
                inflight = self._inflight
                done = min(done, len(inflight))
                for _ in range(done - 1):
                    inflight.popleft()
                last, sent_at = inflight.popleft()
                while self._q and self._q[0][0] <= last:
                    self._q.popleft()
                self._m_records.inc(done)
                self._m_seconds.observe(time.perf_counter() - sent_at)
                self._backoff.reset()
            busy = bool(self._q)
        if not busy and not batch:
            self._safe_idle()

    def _try_connect(self) -> bool:
        try:
            self.connect()
        except SinkDown as exc:
            self._went_down(exc)
            return False
        if not self._up:
            self._up = True
            self._down_logged = False
            log.info("sink %r: connected", self.name)
        return True

    def _went_down(self, exc: BaseException) -> None:
        """Count and log the failure, spool the memory queue, wait the backoff (or give up when
        shutting down: everything undelivered is in the spool then)."""
        self._m_errors.inc()
        if self._up:
            self._m_outages.inc()
        if not self._down_logged:
            log.warning("sink %r: peer down (%s); spooling", self.name, exc)
            self._down_logged = True
        self._up = False
        try:
            self.disconnect()
        except Exception as close_exc:
            log.debug("sink %r: disconnect: %s", self.name, close_exc)
        with self._cond:
            self._inflight.clear()  # the connection is gone: what it had in flight is resent
            self._taken = 0
            if self.spool is not None and self._q:
                self._spill_queue()
        if self._stopping:
            self._give_up = True
            return
        self._backoff.wait(self._wake)

    def _safe_idle(self) -> None:
        try:
            self.idle()
        except SinkDown as exc:
            self._went_down(exc)
        except Exception as exc:
            self._m_errors.inc()
            log.error("sink %r: %s", self.name, exc)
