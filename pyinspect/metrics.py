"""A station's Prometheus metrics and its ``/metrics`` + ``/healthz`` endpoint on one port.

Every station has its own ``CollectorRegistry`` (several stations in one process, as in tests, do
not share counters). Children are bound once per source and sink (``.labels(...)`` is not on the
per-frame path), and depths are read at scrape time through ``set_function``, so counting costs a
few counter increments and histogram observations per frame; the latency histograms are
``LightHistogram``s, whose ``observe`` is a bisect.
"""

from __future__ import annotations

import json
import logging
import threading
from bisect import bisect_left
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Info
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import HistogramMetricFamily
from prometheus_client.registry import Collector

__all__ = ["MetricsServer", "StationMetrics"]

log = logging.getLogger("pyinspect.watch")

#: Latency buckets (seconds): 0.5 ms .. 5 s, dense around a 5 ms inference.
BUCKETS = (0.0005, 0.001, 0.002, 0.004, 0.006, 0.008, 0.012, 0.02, 0.05, 0.1, 0.25, 1.0, 5.0)


#: (attribute, kind, metric name, help, label) of every family but the run's ``Info``.
FAMILIES: tuple[tuple[str, str, str, str, str], ...] = (
    ("frames", "counter", "pyinspect_frames", "frames inspected", "source"),
    ("defective", "counter", "pyinspect_defective_frames", "frames judged defective", "source"),
    ("frame_errors", "counter", "pyinspect_frame_errors", "frames that gave an error record",
     "source"),
    ("dropped", "counter", "pyinspect_dropped_frames",
     "frames dropped by the drop_oldest policy while inspection lagged", "source"),
    ("reconnects", "counter", "pyinspect_source_reconnects", "times a lost source was reopened",
     "source"),
    ("source_up", "gauge", "pyinspect_source_up", "1 while the source is open", "source"),
    ("queue_depth", "gauge", "pyinspect_source_queue_depth", "frames waiting for inference",
     "source"),
    ("sink_records", "counter", "pyinspect_sink_records", "records delivered", "sink"),
    ("sink_replayed", "counter", "pyinspect_sink_replayed_records",
     "records delivered from the spool", "sink"),
    ("sink_spooled", "counter", "pyinspect_sink_spooled_records", "records written to the spool",
     "sink"),
    ("sink_dropped", "counter", "pyinspect_sink_dropped_records",
     "records dropped (spool full with drop_oldest, or a sink without a spool)", "sink"),
    ("sink_errors", "counter", "pyinspect_sink_errors", "failed deliveries and write errors",
     "sink"),
    ("sink_outages", "counter", "pyinspect_sink_outages", "times the sink's peer went down",
     "sink"),
    ("sink_up", "gauge", "pyinspect_sink_up", "1 while the peer is reachable", "sink"),
    ("sink_queue", "gauge", "pyinspect_sink_queue_depth", "records in the sink's memory queue",
     "sink"),
    ("spool_records", "gauge", "pyinspect_sink_spool_records",
     "records in the sink's disk spool", "sink"),
    ("spool_bytes", "gauge", "pyinspect_sink_spool_bytes", "bytes in the sink's disk spool",
     "sink"),
)  # fmt: skip


class _HistogramChild:
    """One label set of a ``LightHistogram``: ``observe`` is a bisect and two additions."""

    __slots__ = ("counts", "sum")

    def __init__(self, n_buckets: int) -> None:
        self.counts = [0] * (n_buckets + 1)  # per bucket (not cumulative); the last is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(BUCKETS, value)] += 1
        self.sum += value


class LightHistogram(Collector):
    """A Prometheus histogram for the per-frame and per-batch latencies, read at scrape time.

    Why not ``prometheus_client.Histogram``: its ``observe`` walks the buckets in Python and
    takes a lock per bucket and for the sum, several microseconds a sample, three samples a frame
    on the station's busy cores. Here each label set has a plain list of bucket counts written by
    one thread (the inference thread, or one sink's worker); a scrape copies it and derives the
    count from the buckets, so ``+Inf`` always equals ``_count`` (the sum may lag a sample)."""

    def __init__(self, name: str, documentation: str, labelnames: tuple[str, ...],
                 registry: CollectorRegistry) -> None:  # fmt: skip
        self.name, self.documentation, self.labelnames = name, documentation, labelnames
        self._children: dict[tuple[str, ...], _HistogramChild] = {}
        self._lock = threading.Lock()
        registry.register(self)

    def labels(self, *values: str) -> _HistogramChild:
        key = tuple(str(v) for v in values)
        if len(key) != len(self.labelnames):
            msg = f"{self.name}: expected labels {self.labelnames}, got {key}"
            raise ValueError(msg)
        with self._lock:
            child = self._children.get(key)
            if child is None:
                child = self._children[key] = _HistogramChild(len(BUCKETS))
        return child

    def describe(self) -> list[HistogramMetricFamily]:
        return [HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)]

    def collect(self) -> list[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        with self._lock:
            children = list(self._children.items())
        for key, child in children:
            counts, total = list(child.counts), child.sum
            cumulative, running = [], 0
            for bound, n in zip((*map(str, BUCKETS), "+Inf"), counts, strict=True):
                running += n
                cumulative.append((bound, running))
            family.add_metric(list(key), cumulative, total)
        return [family]


class StationMetrics:
    """The metric families of one station (names in ``docs/line.md``; ``FAMILIES`` above, plus
    the two latency histograms)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.info = Info("pyinspect_station", "run identity and model", registry=r)
        kinds = {"counter": Counter, "gauge": Gauge}
        for attr, kind, name, help_text, label in FAMILIES:
            setattr(self, attr, kinds[kind](name, help_text, [label], registry=r))
        self.stage = LightHistogram(
            "pyinspect_stage_seconds",
            "per-stage latency: wait (grab -> inference), inspect, record (grab -> record)",
            ("source", "stage"),
            r,
        )
        self.sink_seconds = LightHistogram(
            "pyinspect_sink_delivery_seconds",
            "time to deliver one batch (pipelined sinks: from sending to the peer's confirmation)",
            ("sink",),
            r,
        )

    # Declared for type checkers and readers; set from FAMILIES in __init__.
    frames: Counter
    defective: Counter
    frame_errors: Counter
    dropped: Counter
    reconnects: Counter
    source_up: Gauge
    queue_depth: Gauge
    sink_records: Counter
    sink_replayed: Counter
    sink_spooled: Counter
    sink_dropped: Counter
    sink_errors: Counter
    sink_outages: Counter
    sink_up: Gauge
    sink_queue: Gauge
    spool_records: Gauge
    spool_bytes: Gauge

    def scrape(self) -> bytes:
        return generate_latest(self.registry)


class MetricsServer:
    """``GET /metrics`` (Prometheus text) and ``GET /healthz`` (JSON; 200 healthy, 503 not) on
    ``host:port``. Binding happens in the constructor, so a port in use fails before any frame."""

    def __init__(
        self,
        metrics: StationMetrics,
        host: str,
        port: int,
        health: Callable[[], tuple[bool, dict[str, Any]]],
    ) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    body, status, ctype = metrics.scrape(), 200, CONTENT_TYPE_LATEST
                elif path == "/healthz":
                    ok, doc = health()
                    body, status = json.dumps(doc).encode(), 200 if ok else 503
                    ctype = "application/json"
                else:
                    body, status = b"not found: try /metrics or /healthz\n", 404
                    ctype = "text/plain"
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("metrics: " + format, *args)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.host, self.port = host, int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="pyinspect-watch-metrics", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
