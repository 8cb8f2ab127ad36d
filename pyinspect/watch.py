"""``pyinspect watch``: the station daemon beside each camera, sources -> Inspector -> sinks.

    source threads (one per source)     inference thread              sink threads (one each)
      grab -> stamp -> prepare    queue   run_prepared / run_batch      queue -> deliver
      (frame_id, capture time)  ───────▶  -> record (one JSON line) ──▶  (spool while down)
      drop_oldest | block, counted         -> every sink's offer()        metrics, /healthz

Everything that can be wrong with a configuration is found before the first frame: the schema
and the environment (``pyinspect.watch_config``), then the model loads, the OPC UA and metrics
ports bind and the sources open. ``Station.stop()`` (SIGTERM / SIGINT in the command) stops the
grabbing, inspects the frames already grabbed, and gives the sinks the rest of
``shutdown_timeout_s`` to deliver; what they could not deliver is in their spools, replayed at
the next start. ``docs/line.md`` has the configuration, the record and the metrics.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import queue as queues
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyinspect.errors import PyInspectError
from pyinspect.result import InspectionResult

if TYPE_CHECKING:
    from pyinspect.inspector import Inspector, PreparedFrame
    from pyinspect.sinks.base import Sink
    from pyinspect.sources.base import Grab, Source
    from pyinspect.watch_config import StationConfig

__all__ = ["Station", "add_arguments", "run"]

log = logging.getLogger("pyinspect.watch")
_POLL_S = 0.05
#: While frames wait for inference, the records of the frames inspected meanwhile are made in one
#: pass (``_emit_pending``: one hand-over to each sink, one wake-up of its thread) as long as the
#: first of them would be at most EMIT_LINGER_S late, and at most EMIT_BATCH of them.
EMIT_LINGER_S = 0.008
EMIT_BATCH = 32


@dataclass(eq=False, slots=True)
class _Item:
    grab: Grab
    frame_id: int
    prepared: PreparedFrame | None = None
    error: str | None = None


@dataclass(eq=False)
class _SourceRun:
    """A source and its run state: its queue (guarded by the station's ``_lock``)."""

    source: Source
    name: str = ""
    queue: deque[_Item] = field(default_factory=deque)
    frame_id: int = 0
    done: bool = False
    opened: bool = False
    blocked: bool = False  # waits for room (policy block) on `room`; woken once its queue is empty
    room: queues.SimpleQueue[None] = field(default_factory=queues.SimpleQueue)
    encoder: Any = None  # its RecordEncoder
    acks: bool = False  # its source overrides Source.ack (the base's does nothing)
    observe: tuple[Callable[[float], None], ...] = ()  # wait, inspect, record stage histograms
    thread: threading.Thread | None = None
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("frames", "defective", "errors", "dropped",
                                               "reconnects"), 0)
    )  # fmt: skip
    metrics: dict[str, Any] = field(default_factory=dict)


class Station:
    """Sources -> one shared ``Inspector`` -> sinks, with metrics; the Python API of ``watch``.

    Args:
        config: a ``StationConfig`` (``pyinspect.watch_config.load_config(path)``) or the dict of
            its TOML tables.
        sources: sources to use instead of the configuration's (``IterableSource(frames)`` for a
            Python iterable); the configuration then needs no ``[[source]]``.
        sinks: sinks added to the configuration's.
        on_record: called with each record dict in the inference thread (keep it short).

    ``Station(...)`` checks everything and binds its ports; ``run()`` inspects until every
    source ended or ``stop()`` was called, and returns a summary. Also a context manager.
    """

    def __init__(
        self,
        config: StationConfig | dict[str, Any],
        *,
        sources: list[Source] | None = None,
        sinks: list[Sink] | None = None,
        on_record: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        from pyinspect.inspector import Inspector
        from pyinspect.metrics import StationMetrics
        from pyinspect.records import ModelIdentity, new_run_id
        from pyinspect.sinks.base import Record
        from pyinspect.watch_config import check_environment, parse_config

        if isinstance(config, dict):
            config = parse_config(dict(config), require_sources=sources is None)
        elif sources is None and not config.source:
            msg = "config: no [[source]] (and no sources= given)"
            raise PyInspectError(msg)
        self.config = config
        check_environment(config, create=True, ports=False)
        self.run_id = new_run_id()
        self.metrics = StationMetrics()
        self.on_record = on_record
        self._stop_sources = threading.Event()
        # One lock guards the queues and the flags beside them. A thread that waits lets go of it
        # and waits for a token (``SimpleQueue``: C code), which the waker puts once it has let
        # go of the lock too: no waiter wakes only to block on the lock, and none of a
        # condition's Python-level wait / notify (a new lock per wait) runs per frame.
        self._lock = threading.Lock()
        self._wake: queues.SimpleQueue[None] = queues.SimpleQueue()  # frames queued, source ended
        self._infer_waiting = False  # the inference thread waits for a token on _wake
        self._pending: list[tuple[_SourceRun, _Item, InspectionResult, int]] = []
        self._pending_since = 0  # perf_counter_ns when the first pending frame was inspected
        self._sinks: list[Sink] = []
        self._record_class = Record
        self._runs: list[_SourceRun] = []
        self._acks = False
        self._metrics_server: Any = None
        self._infer_thread: threading.Thread | None = None
        self._started = self._finished = False
        self._deadline = 0.0
        self._summary: dict[str, Any] = {}
        m = config.model
        self.inspector: Inspector = Inspector(
            m.path, m.backend, runner=m.runner, threshold=m.threshold, threads=m.threads,
            precision=None if m.precision == "f32" else m.precision,  # None: no backend option
        )  # fmt: skip
        try:
            self.model = ModelIdentity.of_inspector(self.inspector)
            self.metrics.info.info({
                "run_id": self.run_id, "station": config.station.name,
                "model": self.model.path, "model_sha256": self.model.sha256 or "",
            })  # fmt: skip
            built = (
                sources if sources is not None else [self._make_source(s) for s in config.source]
            )
            self._runs = [self._bind_source(s) for s in built]
            self._acks = any(r.acks for r in self._runs)  # a source wants ack() calls
            names = [r.source.name for r in self._runs]
            if len(set(names)) != len(names):
                msg = f"source names must be unique, got {names}"
                raise PyInspectError(msg)
            self._sinks = [self._make_sink(s, n) for s, n in zip(config.sink, config.sink_names(),
                                                                   strict=True)]  # fmt: skip
            self._sinks += list(sinks or [])
            self._wants_images = any(s.wants_images for s in self._sinks)
            for sink in self._sinks:
                sink.bind_sources(names)
                sink.open()
            if config.metrics is not None:
                self._open_metrics()
            for run in self._runs:
                self._open_source(run)
        except BaseException:
            self._close_all()
            raise

    # ---- building ----------------------------------------------------------------------------
    def _make_source(self, cfg: Any) -> Source:
        from pyinspect.sources import FolderSource, HarvestersSource, PylonSource, VideoSource

        common = cfg.model_dump(include={"queue", "policy", "max_frames", "reconnect_min_s",
                                         "reconnect_max_s"})  # fmt: skip
        if cfg.type == "video":
            return VideoSource(cfg.name, cfg.uri, loop=cfg.loop, fps=cfg.fps, **common)
        if cfg.type == "folder":
            from pyinspect.sources.folder import IMAGE_PATTERNS

            run_dir = Path(self.config.station.run_dir)
            state = cfg.state_file or run_dir / f"{cfg.name}.state.jsonl"
            return FolderSource(
                cfg.name, cfg.folder, patterns=tuple(cfg.patterns or IMAGE_PATTERNS),
                state_file=state, done=cfg.done, failed=cfg.failed, settle_s=cfg.settle_s,
                poll_s=cfg.poll_s, **common,
            )  # fmt: skip
        if cfg.type == "pylon":
            return PylonSource(
                cfg.name, serial=cfg.serial, index=cfg.index, exposure_us=cfg.exposure_us,
                gain=cfg.gain, trigger_mode=cfg.trigger_mode, trigger_source=cfg.trigger_source,
                fps=cfg.fps, features=cfg.features, timeout_ms=cfg.timeout_ms,
                buffers=cfg.buffers, **common,
            )  # fmt: skip
        return HarvestersSource(
            cfg.name, cti=cfg.cti, serial=cfg.serial, index=cfg.index, features=cfg.features,
            timeout_s=cfg.timeout_s, **common,
        )  # fmt: skip

    def _make_sink(self, cfg: Any, name: str) -> Sink:
        from pyinspect.sinks import (
            ImageFolderSink,
            JsonlSink,
            MqttSink,
            OpcUaSink,
            Spool,
            WebhookSink,
        )

        common: dict[str, Any] = {
            "metrics": self.metrics, "queue": cfg.queue, "batch": cfg.batch,
            "linger_s": cfg.linger_s,
            "reconnect_min_s": cfg.reconnect_min_s, "reconnect_max_s": cfg.reconnect_max_s,
        }  # fmt: skip
        if hasattr(cfg, "spool_max_bytes"):
            folder = Path(self.config.station.run_dir) / "spool" / name
            common["spool"] = Spool(folder, max_bytes=cfg.spool_max_bytes)
            common["spool_policy"] = cfg.spool_policy
        station = self.config.station.name
        if cfg.type == "jsonl":
            return JsonlSink(name, cfg.path, max_bytes=cfg.max_bytes, keep=cfg.keep,
                             fsync=cfg.fsync, **common)  # fmt: skip
        if cfg.type == "images":
            return ImageFolderSink(name, cfg.folder, save=cfg.save, what=cfg.what,
                                   max_files=cfg.max_files, spec=self.inspector.spec,
                                   **common)  # fmt: skip
        if cfg.type == "mqtt":
            return MqttSink(
                name, cfg.url, topic=cfg.topic, last_topic=cfg.last_topic, qos=cfg.qos,
                station=station, client_id=cfg.client_id, username_env=cfg.username_env,
                password_env=cfg.password_env, ca=cfg.ca, certfile=cfg.certfile,
                keyfile=cfg.keyfile, ack_timeout_s=cfg.ack_timeout_s, **common,
            )  # fmt: skip
        if cfg.type == "webhook":
            return WebhookSink(name, cfg.url, token_env=cfg.token_env, timeout_s=cfg.timeout_s,
                               retries=cfg.retries, retry_backoff_s=cfg.retry_backoff_s,
                               **common)  # fmt: skip
        return OpcUaSink(
            name, cfg.endpoint, namespace=cfg.namespace, security=cfg.security,
            certificate=cfg.certificate, private_key=cfg.private_key,
            username_env=cfg.username_env, password_env=cfg.password_env, run_id=self.run_id,
            model_sha256=self.model.sha256, heartbeat_s=cfg.heartbeat_s, **common,
        )  # fmt: skip

    def _bind_source(self, source: Source) -> _SourceRun:
        from pyinspect.record_encoder import RecordEncoder
        from pyinspect.sources.base import Source

        m, name = self.metrics, source.name
        run = _SourceRun(source, name)
        run.encoder = RecordEncoder(model=self.model, run_id=self.run_id, source=name)
        run.metrics = {
            "frames": m.frames.labels(name), "defective": m.defective.labels(name),
            "errors": m.frame_errors.labels(name), "dropped": m.dropped.labels(name),
            "reconnects": m.reconnects.labels(name), "up": m.source_up.labels(name),
            "wait": m.stage.labels(name, "wait"), "inspect": m.stage.labels(name, "inspect"),
            "record": m.stage.labels(name, "record"),
        }  # fmt: skip
        run.observe = tuple(run.metrics[k].observe for k in ("wait", "inspect", "record"))
        run.acks = getattr(source.ack, "__func__", None) is not Source.ack
        m.queue_depth.labels(name).set_function(lambda: float(len(run.queue)))
        return run

    def _open_source(self, run: _SourceRun) -> None:
        """Open at start: a bad configuration (``SourceError``) fails now; a camera not there yet
        (``SourceLost``) is retried by the source's thread."""
        from pyinspect.sources import SourceLost

        try:
            run.source.open()
            run.opened = True
            run.metrics["up"].set(1)
        except SourceLost as exc:
            log.warning("%s: %s; retrying", run.source.describe(), exc)

    def _open_metrics(self) -> None:
        from pyinspect.metrics import MetricsServer
        from pyinspect.watch_config import ConfigError, parse_listen

        assert self.config.metrics is not None
        host, port = parse_listen(self.config.metrics.listen, "metrics.listen")
        try:
            self._metrics_server = MetricsServer(self.metrics, host, port, self.health)
        except OSError as exc:
            msg = f"metrics.listen: cannot listen on {host}:{port}: {exc.strerror or exc}"
            raise ConfigError(msg) from exc

    @property
    def metrics_port(self) -> int | None:
        return None if self._metrics_server is None else self._metrics_server.port

    @property
    def sinks(self) -> list[Sink]:
        return list(self._sinks)

    # ---- running -----------------------------------------------------------------------------
    def health(self) -> tuple[bool, dict[str, Any]]:
        """``/healthz``: healthy while the inference thread runs and every sink is up or has
        only spooled (nothing lost); the body says which source and sink is in which state."""
        inferring = self._infer_thread is not None and self._infer_thread.is_alive()
        doc = {
            "run_id": self.run_id,
            "inference": "running" if inferring else "stopped",
            "sources": {r.source.name: "ended" if r.done else "running" for r in self._runs},
            "sinks": {s.name: {"up": s.up, "pending": s.pending} for s in self._sinks},
        }
        return inferring, doc

    def run(self) -> dict[str, Any]:
        """Inspect until every source ended or ``stop()``; then drain the sinks and close.
        Returns the summary (frames, defective, errors and drops per source; run_id)."""
        self.start()
        try:
            while self._infer_thread is not None and self._infer_thread.is_alive():
                self._infer_thread.join(0.1)  # a timed join lets the main thread take signals
        finally:
            self._finish()
        return self._summary

    def start(self) -> None:
        """Start every thread and return (``run`` is ``start`` + wait + finish)."""
        if self._started:
            return
        self._started = True
        if self._metrics_server is not None:
            self._metrics_server.start()
        for sink in self._sinks:
            sink.start()
        self._infer_thread = threading.Thread(
            target=self._infer_loop, name="pyinspect-watch-infer", daemon=True
        )
        self._infer_thread.start()
        for run in self._runs:
            run.thread = threading.Thread(
                target=self._source_loop, args=(run,), daemon=True,
                name=f"pyinspect-watch-source-{run.source.name}",
            )  # fmt: skip
            run.thread.start()
        log.info("station %r: run %s, %d source(s), %d sink(s)", self.config.station.name,
                 self.run_id, len(self._runs), len(self._sinks))  # fmt: skip

    def stop(self) -> None:
        """Stop grabbing; the frames already grabbed are inspected and delivered (safe from a
        signal handler: it only sets flags)."""
        if not self._stop_sources.is_set():
            self._deadline = time.monotonic() + self.config.station.shutdown_timeout_s
            self._stop_sources.set()
            self._wake.put(None)  # an idle inference thread sees it now (put is signal-safe)

    def __enter__(self) -> Station:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._finish()

    def _source_loop(self, run: _SourceRun) -> None:
        from pyinspect.backoff import Backoff
        from pyinspect.sources import SourceEnded, SourceError, SourceLost

        src, m, stop = run.source, run.metrics, self._stop_sources
        backoff = Backoff(src.reconnect_min_s, src.reconnect_max_s)
        opened = run.opened
        try:
            while not stop.is_set():
                if not opened:
                    try:
                        src.open()
                    except SourceLost as exc:
                        log.warning("%s: %s", src.describe(), exc)
                        backoff.wait(stop)
                        continue
                    opened = True
                    m["up"].set(1)
                    backoff.reset()
                    if run.frame_id:
                        self._count(run, "reconnects")
                        log.info("%s: reconnected", src.describe())
                try:
                    grab = src.grab(stop)
                except SourceEnded:
                    break
                except (SourceLost, SourceError, OSError) as exc:
                    log.warning("%s: %s; reopening", src.describe(), exc)
                    src.close()
                    opened = False
                    m["up"].set(0)
                    if not run.frame_id:
                        self._count(run, "reconnects")
                    backoff.wait(stop)
                    continue
                if grab is None:
                    continue
                run.frame_id += 1
                self._enqueue(run, self._prepare(run, grab))
                if src.max_frames is not None and run.frame_id >= src.max_frames:
                    break
        except Exception:
            log.exception("%s: failed; the source stops", src.describe())
        finally:
            m["up"].set(0)
            with self._lock:
                run.done = True
            self._wake.put(None)

    def _prepare(self, run: _SourceRun, grab: Grab) -> _Item:
        item = _Item(grab, run.frame_id)
        if grab.error is not None:
            item.error = f"frame {run.frame_id}: {grab.error}"
            return item
        try:
            item.prepared = self.inspector.prepare(grab.image)  # type: ignore[arg-type]
        except PyInspectError as exc:
            item.error = f"frame {run.frame_id}: {exc}"
        return item

    def _enqueue(self, run: _SourceRun, item: _Item) -> None:
        lock, queue, src = self._lock, run.queue, run.source
        lock.acquire()
        try:
            while len(queue) >= src.queue:
                if src.policy == "drop_oldest":
                    old = queue.popleft()
                    self._count(run, "dropped")
                    src.release(old.grab)
                    log.debug("%s: frame %d dropped (inspection lags)", src.describe(),
                              old.frame_id)  # fmt: skip
                else:  # block: wait for the inference thread (a stop still inspects this one)
                    # Woken when the queue is empty, not at every frame taken: the source then
                    # refills it in one go while the last frame is inspected (one wake-up per
                    # queue, not per frame; a wake-up costs tens of microseconds of CPU).
                    run.blocked = True
                    lock.release()
                    try:
                        run.room.get(timeout=_POLL_S)
                    except queues.Empty:
                        pass
                    finally:
                        lock.acquire()
            run.blocked = False
            queue.append(item)
            wake, self._infer_waiting = self._infer_waiting, False
        finally:
            lock.release()
        if wake:
            self._wake.put(None)

    def _infer_loop(self) -> None:
        batch = self.config.model.batch
        runs, lock, wake = self._runs, self._lock, self._wake
        single = runs[0] if len(runs) == 1 else None
        perf = time.perf_counter_ns
        linger_ns = EMIT_LINGER_S * 1e9
        rr = 0
        try:
            while True:
                items: list[tuple[_SourceRun, _Item]] = []
                room: list[_SourceRun] = []  # blocked sources whose queue ran empty
                with lock:
                    n = len(runs)
                    for k in range(n):
                        run = runs[(rr + k) % n]
                        queue = run.queue
                        while queue and len(items) < batch:
                            items.append((run, queue.popleft()))
                        if run.blocked and not queue:
                            run.blocked = False  # one token per wait
                            room.append(run)
                    rr += 1
                    idle = not items and not self._pending
                    if idle:
                        if all(r.done for r in runs) and (
                            self.config.station.exit_on_end or self._stop_sources.is_set()
                        ):
                            return
                        self._infer_waiting = True
                for run in room:
                    run.room.put(None)  # it refills its queue while this frame is inspected
                if idle:
                    with contextlib.suppress(queues.Empty):
                        wake.get(timeout=_POLL_S)
                    self._infer_waiting = False
                    continue
                took = 0
                if items:
                    t0 = perf()
                    self._inspect(items, t0)
                    took = perf() - t0
                # Records are made at once when no frame waits; while frames keep coming, in one
                # pass over several frames (a pass and a hand-over per frame cost more than the
                # records themselves: each wakes every sink's thread), unless waiting for the
                # next inspection would make the first of them more than EMIT_LINGER_S late.
                queued = bool(single.queue) if single is not None else any(r.queue for r in runs)
                if (
                    not queued
                    or len(self._pending) >= EMIT_BATCH
                    or perf() + took - self._pending_since > linger_ns
                ):
                    self._emit_pending()
        except Exception:
            log.exception("inference thread failed; the station stops")
            self._stop_sources.set()
        finally:
            try:
                self._emit_pending()
            except Exception:
                log.exception("inference thread: records of the last frames failed")

    def _inspect(self, items: list[tuple[_SourceRun, _Item]], t0: int) -> None:
        results: dict[int, InspectionResult] = {}
        if len(items) > 1:
            good = [it for _, it in items if it.prepared is not None]
            if len(good) > 1:
                try:
                    frames = [it.prepared.image for it in good]  # type: ignore[union-attr]
                    for it, r in zip(good, self.inspector.run_batch(frames), strict=True):
                        results[id(it)] = r
                except PyInspectError:
                    results.clear()  # one bad frame: inspect them one by one for their errors
        pending = self._pending
        for run, it in items:
            prepared = it.prepared
            if prepared is None:
                result = InspectionResult.failed(it.error or "no frame")
            elif results:
                result = results[id(it)]
            else:
                try:
                    result = self.inspector.run_prepared(prepared)
                except PyInspectError as exc:
                    result = InspectionResult.failed(f"frame {it.frame_id}: {exc}")
            if not pending:
                self._pending_since = time.perf_counter_ns()
            pending.append((run, it, result, t0))

    def _emit_pending(self) -> None:
        """Make the records of the inspected frames, hand them to every sink (in order), count
        them, acknowledge the grabs to their sources and call ``on_record``."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        make_record = self._record_class
        images = self._wants_images
        perf = time.perf_counter_ns
        records = []
        tally: dict[_SourceRun, list[int]] = {}  # frames, defective, errors per source
        for run, it, result, t0 in pending:
            grab = it.grab
            mono = grab.mono_ns
            wait, inspect, made = run.observe
            timings = result.timings
            now = perf()
            line = run.encoder.encode(
                result, frame_id=it.frame_id, captured_ns=grab.captured_ns,
                camera_timestamp=grab.camera_timestamp, latency_ms=(now - mono) * 1e-6,
                path=grab.path,
            )  # fmt: skip
            record = make_record(None, line, source=run.name)  # the dict if a sink reads it
            if images and it.prepared is not None:
                record.image, record.result = it.prepared.image, result
            records.append(record)
            counts = tally.get(run)
            if counts is None:
                counts = tally[run] = [0, 0, 0]
            counts[0] += 1
            if result.error is not None:
                counts[2] += 1
            elif result.defective:
                counts[1] += 1
            wait(max(0, t0 - mono) * 1e-9)
            inspect(timings.total_ms * 1e-3)
            made((now - mono) * 1e-9)
        for sink in self._sinks:
            sink.offer_many(records)
        for run, counts in tally.items():
            for key, n in zip(("frames", "defective", "errors"), counts, strict=True):
                if n:
                    run.counts[key] += n
                    run.metrics[key].inc(n)
        on_record = self.on_record
        if on_record is None and not self._acks:
            return
        for (run, it, result, _), record in zip(pending, records, strict=True):
            if run.acks:
                try:
                    run.source.ack(it.grab, result.error is None)
                except Exception:
                    log.exception("%s: ack of frame %d failed", run.source.describe(),
                                  it.frame_id)  # fmt: skip
            if on_record is not None:
                on_record(record.doc)

    # ---- finishing ---------------------------------------------------------------------------
    def _finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        self.stop()
        for run in self._runs:
            if run.thread is not None:
                run.thread.join(max(0.0, self._deadline - time.monotonic()))
        if self._infer_thread is not None:
            self._infer_thread.join(max(0.0, self._deadline - time.monotonic()))
        left = max(0.0, self._deadline - time.monotonic())
        deadline = time.monotonic() + max(left, 0.5)
        threads = [threading.Thread(target=s.stop, args=(deadline,)) for s in self._sinks]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self._summary = self._make_summary()
        self._close_all(sinks=False)

    @staticmethod
    def _count(run: _SourceRun, what: str) -> None:
        run.counts[what] += 1
        run.metrics[what].inc()

    def _make_summary(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "sources": {r.source.name: dict(r.counts) for r in self._runs},
            "sinks": {s.name: {"pending": s.pending} for s in self._sinks},
        }

    def _close_all(self, *, sinks: bool = True) -> None:
        for run in self._runs:
            try:
                run.source.close()
            except Exception:
                log.exception("%s: close failed", run.source.describe())
        if sinks:
            for sink in self._sinks:
                try:
                    sink.close()
                except Exception:
                    log.exception("sink %r: close failed", sink.name)
        if self._metrics_server is not None:
            self._metrics_server.close()
        self.inspector.close()


# ---- the command ------------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", type=Path, help="station TOML file (docs/line.md)")
    p.add_argument("--check-config", action="store_true",
                   help="validate the configuration (schema, URLs, folders, ports, environment"
                   " variables, model) and exit without starting")  # fmt: skip
    p.add_argument("--model", "-m", help="model file (overrides [model] path)")
    p.add_argument("--source", action="append", default=[], metavar="TYPE:ARG",
                   help="add a source: video:0 | video:FILE|URL | folder:DIR | pylon:SERIAL"
                   " (repeatable)")  # fmt: skip
    p.add_argument("--jsonl", metavar="FILE", help="add a JSON lines sink")
    p.add_argument("--mqtt", metavar="URL", help="add an MQTT sink (mqtt://host:port)")
    p.add_argument("--webhook", metavar="URL", help="add a webhook sink (http://...)")
    p.add_argument("--opcua", metavar="ENDPOINT", help="add an OPC UA server (opc.tcp://h:p)")
    p.add_argument("--images", metavar="DIR", help="add an image folder sink (defective frames)")
    p.add_argument("--metrics", metavar="HOST:PORT", help="serve /metrics and /healthz here")
    p.add_argument("--run-dir", metavar="DIR", help="spools and folder state (station.run_dir)")
    p.add_argument("--max-frames", type=int, metavar="N", help="stop each source after N frames")


def _config_from_args(args: argparse.Namespace) -> StationConfig:
    import tomllib

    from pyinspect.watch_config import ConfigError, parse_config

    doc: dict[str, Any] = {}
    where = "flags"
    if args.config is not None:
        where = str(args.config)
        try:
            doc = tomllib.loads(args.config.read_text(encoding="utf-8"))
        except FileNotFoundError:
            msg = f"{args.config}: config file not found"
            raise ConfigError(msg) from None
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            msg = f"{args.config}: cannot read config: {exc}"
            raise ConfigError(msg) from exc
    if args.model:
        doc.setdefault("model", {})["path"] = args.model
    if args.run_dir:
        doc.setdefault("station", {})["run_dir"] = args.run_dir
    if args.metrics:
        doc["metrics"] = {"listen": args.metrics}
    sources = doc.setdefault("source", [])
    for k, spec in enumerate(args.source):
        kind, sep, arg = spec.partition(":")
        if not sep:
            msg = f"--source {spec!r}: expected TYPE:ARG (video:0, folder:DIR, pylon:SERIAL)"
            raise ConfigError(msg)
        name = f"{kind}{k}" if kind else f"source{k}"
        key = {"video": "uri", "folder": "folder", "pylon": "serial", "harvesters": "serial"}
        sources.append({"type": kind, "name": name, key.get(kind, "uri"): arg})
    sinks = doc.setdefault("sink", [])
    for kind, key in (("jsonl", "path"), ("mqtt", "url"), ("webhook", "url"),
                      ("opcua", "endpoint"), ("images", "folder")):  # fmt: skip
        value = getattr(args, kind)
        if value:
            sinks.append({"type": kind, key: value})
    if args.max_frames is not None:
        for s in sources:
            if isinstance(s, dict):
                s["max_frames"] = args.max_frames
    return parse_config(doc, source=where)


def run(args: argparse.Namespace) -> int:
    from pyinspect.watch_config import check_environment

    cfg = _config_from_args(args)
    logging.basicConfig(
        level=cfg.station.log_level.upper(), stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )  # fmt: skip
    if args.check_config:
        check_environment(cfg)
        print(f"config ok: {len(cfg.source)} source(s), {len(cfg.sink)} sink(s)")
        return 0
    station = Station(cfg)

    def on_signal(signum: int, frame: object) -> None:
        log.info("signal %d: finishing the frames in flight", signum)
        station.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    summary = station.run()
    print(json.dumps({"summary": summary}))
    return 0
