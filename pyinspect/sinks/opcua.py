"""OPC UA server (asyncua): the state a PLC or SCADA client reads, per source.

Under ``Objects/PyInspect`` the station has ``Heartbeat`` (DateTime, refreshed every
``heartbeat_s``), ``RunId`` and ``ModelSha256``, and one object per source with ``LastVerdict``
(label), ``Defective`` (the last frame's flag), ``LastFrameId``, ``Frames``, ``DefectiveFrames``,
``Errors``, ``MaxDefectProb``, ``LastCaptureTime`` and ``LastRecord`` (the record's JSON). Node
ids are strings in the station's namespace: ``ns=<index of namespace>;s=<source>.Frames``,
``s=Heartbeat``, so a PLC program can address them without browsing.

The server binds when the station starts (a port in use is an error before any frame). Security:
``security = "none"`` (no signing, for a closed cell network) or ``"Basic256Sha256"`` (Sign and
SignAndEncrypt; ``certificate`` and ``private_key`` files required). With ``username_env`` /
``password_env`` set, anonymous access is off and that login (read from the environment) is the
only one accepted. It keeps the last values, nothing to replay, so it has no spool.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pyinspect.sinks.base import Record, Sink, SinkError
from pyinspect.sinks.mqtt import env_secret

__all__ = ["SECURITY", "OpcUaSink", "parse_opcua_endpoint"]

log = logging.getLogger("pyinspect.watch")
SECURITY = ("none", "Basic256Sha256")
_START_S = 15.0  # the first start imports asyncua's address space (a few seconds on 2 cores)


def parse_opcua_endpoint(url: str) -> tuple[str, int]:
    """``opc.tcp://host:port[/path]`` -> (host, port)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "opc.tcp" or not parts.hostname or port is None or not 0 < port < 65536:
        msg = f"OPC UA endpoint {url!r}: expected opc.tcp://host:port[/path]"
        raise SinkError(msg)
    return parts.hostname, port


async def _cancel_tasks() -> None:
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.get_running_loop().shutdown_asyncgens()


class OpcUaSink(Sink):
    kind = "opcua"

    def __init__(self, name: str, endpoint: str = "opc.tcp://0.0.0.0:4840/pyinspect/", *,
                 namespace: str = "urn:pyinspect:station", security: str = "none",
                 certificate: str | None = None, private_key: str | None = None,
                 username_env: str | None = None, password_env: str | None = None,
                 run_id: str = "", model_sha256: str | None = None, heartbeat_s: float = 1.0,
                 **kwargs: Any) -> None:  # fmt: skip
        kwargs["spool"] = None
        super().__init__(name, **kwargs)
        self.host, self.port = parse_opcua_endpoint(endpoint)
        self.endpoint = endpoint
        self.namespace = namespace
        if security not in SECURITY:
            msg = f"sink {name!r}: security must be one of {list(SECURITY)}, got {security!r}"
            raise SinkError(msg)
        self.security = security
        if security != "none":
            for what, path in (("certificate", certificate), ("private_key", private_key)):
                if not path or not Path(path).is_file():
                    msg = f"sink {name!r}: security {security} needs {what} = <an existing file>"
                    raise SinkError(msg)
        self.certificate, self.private_key = certificate, private_key
        self.username = env_secret(username_env, f"sink {name!r}")
        self.password = env_secret(password_env, f"sink {name!r}")
        self.run_id, self.model_sha256 = run_id, model_sha256
        self.heartbeat_s = heartbeat_s
        self.sources: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._server: Any = None
        self._nodes: dict[str, Any] = {}
        self._beat: asyncio.Task[None] | None = None
        self._counts: dict[str, list[int]] = {}
        self.ns = 0

    def bind_sources(self, names: list[str]) -> None:
        self.sources = list(names)
        self._counts = {n: [0, 0, 0] for n in names}

    def open(self) -> None:
        """Start the server (binds the port) in its own event-loop thread."""
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._loop_thread = threading.Thread(
            target=self._serve, args=(ready,), name=f"pyinspect-watch-opcua-{self.name}",
            daemon=True,
        )  # fmt: skip
        self._loop_thread.start()
        ready.wait(1.0)
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        try:
            future.result(_START_S)
        except FutureTimeout:
            self._shutdown()
            msg = f"OPC UA endpoint {self.endpoint}: server did not start in {_START_S:.0f} s"
            raise SinkError(msg) from None
        except OSError as exc:
            self._shutdown()
            msg = f"OPC UA endpoint {self.endpoint}: cannot listen: {exc.strerror or exc}"
            raise SinkError(msg) from exc
        except Exception as exc:
            self._shutdown()
            msg = f"OPC UA endpoint {self.endpoint}: cannot start the server: {exc}"
            raise SinkError(msg) from exc

    def _serve(self, ready: threading.Event) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        self._loop.call_soon(ready.set)
        self._loop.run_forever()

    async def _start(self) -> None:
        from asyncua import Server, ua
        from asyncua.crypto.permission_rules import User, UserRole

        login = (self.username, self.password)

        class LoginManager:
            def get_user(self, iserver: Any, username: str | None = None,
                         password: str | None = None, certificate: Any = None) -> Any:  # fmt: skip
                if login[0] is None or (username, password) == login:
                    return User(role=UserRole.User)
                return None

        logging.getLogger("asyncua").setLevel(logging.ERROR)
        server = Server(user_manager=LoginManager())  # type: ignore[arg-type]
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name("pyinspect station")
        if self.security == "none":
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        else:
            server.set_security_policy(
                [
                    ua.SecurityPolicyType.Basic256Sha256_Sign,
                    ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
                ]
            )
            await server.load_certificate(self.certificate)
            await server.load_private_key(self.private_key)
        if login[0] is not None:
            server.set_identity_tokens([ua.UserNameIdentityToken])
        self.ns = await server.register_namespace(self.namespace)
        ns = self.ns
        root = await server.nodes.objects.add_object(ua.NodeId("PyInspect", ns), "PyInspect")
        station = {
            "Heartbeat": (datetime.now(UTC), ua.VariantType.DateTime),
            "RunId": (self.run_id, ua.VariantType.String),
            "ModelSha256": (self.model_sha256 or "", ua.VariantType.String),
        }
        for key, (value, vtype) in station.items():
            self._nodes[key] = await root.add_variable(
                ua.NodeId(key, ns), key, ua.Variant(value, vtype)
            )
        for source in self.sources:
            obj = await root.add_object(ua.NodeId(source, ns), source)
            for key, (value, vtype) in self._initial().items():
                nid = ua.NodeId(f"{source}.{key}", ns)
                self._nodes[f"{source}.{key}"] = await obj.add_variable(
                    nid, key, ua.Variant(value, vtype)
                )
        await server.start()
        self._server = server
        self._beat = asyncio.get_running_loop().create_task(self._heartbeat())

    @staticmethod
    def _initial() -> dict[str, tuple[Any, Any]]:
        from asyncua import ua

        return {
            "LastVerdict": ("", ua.VariantType.String),
            "Defective": (False, ua.VariantType.Boolean),
            "LastFrameId": (0, ua.VariantType.Int64),
            "Frames": (0, ua.VariantType.Int64),
            "DefectiveFrames": (0, ua.VariantType.Int64),
            "Errors": (0, ua.VariantType.Int64),
            "MaxDefectProb": (0.0, ua.VariantType.Double),
            "LastCaptureTime": (datetime.fromtimestamp(0, UTC), ua.VariantType.DateTime),
            "LastRecord": ("", ua.VariantType.String),
        }

    async def _heartbeat(self) -> None:
        from asyncua import ua

        while self._server is not None:
            await self._write({"Heartbeat": (datetime.now(UTC), ua.VariantType.DateTime)})
            await asyncio.sleep(self.heartbeat_s)

    async def _write(self, values: dict[str, tuple[Any, Any]]) -> None:
        from asyncua import ua

        server = self._server
        if server is None:
            return
        for key, (value, vtype) in values.items():
            node = self._nodes[key]
            await server.write_attribute_value(node.nodeid, ua.DataValue(ua.Variant(value, vtype)))

    def deliver(self, records: list[Record]) -> None:
        from asyncua import ua

        last: dict[str, Record] = {}
        for r in records:
            source = r.doc.get("source", "")
            counts = self._counts.get(source)
            if counts is None:
                continue
            counts[0] += 1
            counts[1] += bool(r.doc.get("defective"))
            counts[2] += r.doc.get("error") is not None
            last[source] = r
        values: dict[str, tuple[Any, Any]] = {}
        for source, r in last.items():
            d, (frames, defective, errors) = r.doc, self._counts[source]
            captured = d.get("captured_at")
            when = (
                datetime.strptime(captured, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
                if captured else datetime.fromtimestamp(0, UTC)
            )  # fmt: skip
            values.update({
                f"{source}.LastVerdict": (d.get("label", ""), ua.VariantType.String),
                f"{source}.Defective": (bool(d.get("defective")), ua.VariantType.Boolean),
                f"{source}.LastFrameId": (int(d.get("frame_id", 0)), ua.VariantType.Int64),
                f"{source}.Frames": (frames, ua.VariantType.Int64),
                f"{source}.DefectiveFrames": (defective, ua.VariantType.Int64),
                f"{source}.Errors": (errors, ua.VariantType.Int64),
                f"{source}.MaxDefectProb": (float(d.get("max_defect_prob", 0.0)),
                                            ua.VariantType.Double),
                f"{source}.LastCaptureTime": (when, ua.VariantType.DateTime),
                f"{source}.LastRecord": (r.line.decode(), ua.VariantType.String),
            })  # fmt: skip
        if values and self._loop is not None:
            asyncio.run_coroutine_threadsafe(self._write(values), self._loop).result(5.0)

    def _shutdown(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return
        server, self._server = self._server, None
        if self._beat is not None:
            loop.call_soon_threadsafe(self._beat.cancel)
        if server is not None:
            try:
                asyncio.run_coroutine_threadsafe(server.stop(), loop).result(5.0)
            except Exception as exc:
                log.warning("sink %r: stopping the OPC UA server: %s", self.name, exc)
        try:  # every task of asyncua's, so none is left pending when the loop closes
            asyncio.run_coroutine_threadsafe(_cancel_tasks(), loop).result(5.0)
        except Exception as exc:
            log.warning("sink %r: stopping the OPC UA tasks: %s", self.name, exc)
        loop.call_soon_threadsafe(loop.stop)
        if self._loop_thread is not None:
            self._loop_thread.join(5.0)
        if not loop.is_running():
            loop.close()

    def close(self) -> None:
        self._shutdown()
