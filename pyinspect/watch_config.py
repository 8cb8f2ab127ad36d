"""The station's configuration: one TOML file (or the same built from flags), checked in full
before anything starts.

Two passes: the schema (pydantic; unknown keys, wrong types, unknown source or sink types are
named with their place, ``sink[1].topik``, and the closest valid key), then the environment (URLs
parse, folders can be written, ports are free, named environment variables are set, the model and
its sidecar load). Both report every problem at once, as one ``ConfigError``. Secrets are never
read from the file: a ``password``, ``token`` or ``username`` key is refused with the ``*_env`` key
to use instead.
"""

from __future__ import annotations

import copy
import os
import socket
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pyinspect.errors import PyInspectError, suggest

__all__ = [
    "SINK_TYPES",
    "SOURCE_TYPES",
    "ConfigError",
    "StationConfig",
    "check_environment",
    "load_config",
    "parse_config",
]

SECRET_KEYS = {"password": "password_env", "token": "token_env", "username": "username_env"}


class ConfigError(PyInspectError, ValueError):
    """A station configuration that cannot run, with every problem named."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
Seconds = Annotated[float, Field(gt=0, le=3600)]


class StationSection(_Section):
    name: Name = "station"
    run_dir: str = "pyinspect-run"  # spools and folder state live here
    shutdown_timeout_s: Annotated[float, Field(gt=0, le=60)] = 4.0
    exit_on_end: bool = True  # false: keep serving OPC UA and metrics after the sources ended
    log_level: Literal["debug", "info", "warning", "error"] = "info"


class ModelSection(_Section):
    path: str
    backend: str = "auto"
    runner: str = "auto"
    precision: Literal["f32", "bf16", "auto"] = "f32"  # runners.base.PRECISION_CHOICES
    threshold: Annotated[float, Field(ge=0, le=1)] | None = None
    threads: Annotated[int, Field(ge=1, le=256)] | None = None
    batch: Annotated[int, Field(ge=1, le=64)] = 1


class MetricsSection(_Section):
    listen: str = "127.0.0.1:9108"  # host:port; port 0 takes a free one


class _Source(_Section):
    name: Name
    queue: Annotated[int, Field(ge=1, le=10_000)] = 4
    policy: Literal["drop_oldest", "block"] = "drop_oldest"
    max_frames: Annotated[int, Field(ge=1)] | None = None
    reconnect_min_s: Seconds = 0.1
    reconnect_max_s: Seconds = 30.0


Feature = str | int | float | bool


class VideoSourceConfig(_Source):
    type: Literal["video"]
    uri: str | int
    loop: bool = False
    fps: Annotated[float, Field(gt=0)] | None = None


class FolderSourceConfig(_Source):
    type: Literal["folder"]
    folder: str
    patterns: list[str] | None = None
    state_file: str | None = None
    done: str | None = None
    failed: str | None = None
    settle_s: Annotated[float, Field(ge=0, le=3600)] = 0.5
    poll_s: Seconds = 0.2
    policy: Literal["drop_oldest", "block"] = "block"


class PylonSourceConfig(_Source):
    type: Literal["pylon"]
    serial: str | None = None
    index: Annotated[int, Field(ge=0)] = 0
    exposure_us: Annotated[float, Field(gt=0)] | None = None
    gain: float | None = None
    trigger_mode: Literal["On", "Off"] | None = None
    trigger_source: str | None = None
    fps: Annotated[float, Field(gt=0)] | None = None
    features: dict[str, Feature] = {}
    timeout_ms: Annotated[int, Field(ge=1)] = 1000
    buffers: Annotated[int, Field(ge=1, le=256)] = 8


class HarvestersSourceConfig(_Source):
    type: Literal["harvesters"]
    cti: str | None = None
    serial: str | None = None
    index: Annotated[int, Field(ge=0)] = 0
    features: dict[str, Feature] = {}
    timeout_s: Seconds = 1.0


SourceConfig = Annotated[
    VideoSourceConfig | FolderSourceConfig | PylonSourceConfig | HarvestersSourceConfig,
    Field(discriminator="type"),
]
SOURCE_TYPES = ("video", "folder", "pylon", "harvesters")


class _Sink(_Section):
    name: Name | None = None
    queue: Annotated[int, Field(ge=1, le=1_000_000)] = 1000
    batch: Annotated[int, Field(ge=1, le=10_000)] = 64
    linger_s: Annotated[float, Field(ge=0, le=1)] = 0.005  # pyinspect.sinks.base.LINGER_S
    reconnect_min_s: Seconds = 0.1
    reconnect_max_s: Seconds = 30.0


class _SpooledSink(_Sink):
    spool_max_bytes: Annotated[int, Field(ge=4096)] = 256 << 20
    spool_policy: Literal["block", "drop_oldest"] = "block"


class JsonlSinkConfig(_SpooledSink):
    type: Literal["jsonl"]
    path: str
    max_bytes: Annotated[int, Field(ge=1024)] = 100 << 20
    keep: Annotated[int, Field(ge=0)] = 0
    fsync: bool = False


class ImagesSinkConfig(_Sink):
    type: Literal["images"]
    folder: str
    save: Literal["defective", "all"] = "defective"
    what: Literal["original", "overlay", "both"] = "both"
    max_files: Annotated[int, Field(ge=0)] = 0


class MqttSinkConfig(_SpooledSink):
    type: Literal["mqtt"]
    url: str
    topic: str = "pyinspect/{station}/{source}"
    last_topic: str | None = "{topic}/last"
    qos: Literal[0, 1, 2] = 1
    client_id: str | None = None
    username_env: str | None = None
    password_env: str | None = None
    ca: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    ack_timeout_s: Seconds = 2.0


class WebhookSinkConfig(_SpooledSink):
    type: Literal["webhook"]
    url: str
    token_env: str | None = None
    timeout_s: Seconds = 2.0
    retries: Annotated[int, Field(ge=0, le=10)] = 2
    retry_backoff_s: Seconds = 0.1


class OpcUaSinkConfig(_Sink):
    type: Literal["opcua"]
    endpoint: str = "opc.tcp://0.0.0.0:4840/pyinspect/"
    namespace: str = "urn:pyinspect:station"
    security: Literal["none", "Basic256Sha256"] = "none"
    certificate: str | None = None
    private_key: str | None = None
    username_env: str | None = None
    password_env: str | None = None
    heartbeat_s: Seconds = 1.0


SinkConfig = Annotated[
    JsonlSinkConfig | ImagesSinkConfig | MqttSinkConfig | WebhookSinkConfig | OpcUaSinkConfig,
    Field(discriminator="type"),
]
SINK_TYPES = ("jsonl", "images", "mqtt", "webhook", "opcua")


class StationConfig(_Section):
    station: StationSection = StationSection()
    model: ModelSection
    metrics: MetricsSection | None = None
    source: list[SourceConfig] = []
    sink: Annotated[list[SinkConfig], Field(min_length=1)]

    def sink_names(self) -> list[str]:
        """Each sink's name: its ``name``, else its type (``mqtt``, ``mqtt-2`` for a second)."""
        names, seen = [], {}
        for s in self.sink:
            if s.name:
                names.append(s.name)
                continue
            seen[s.type] = seen.get(s.type, 0) + 1
            names.append(s.type if seen[s.type] == 1 else f"{s.type}-{seen[s.type]}")
        return names


# ---- reading --------------------------------------------------------------------------------
def load_config(path: str | os.PathLike[str]) -> StationConfig:
    """Read and validate a TOML file (``ConfigError`` naming the file and each problem)."""
    p = Path(path)
    try:
        doc = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        msg = f"{p}: config file not found"
        raise ConfigError(msg) from None
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"{p}: cannot read config: {exc}"
        raise ConfigError(msg) from exc
    except tomllib.TOMLDecodeError as exc:
        msg = f"{p}: not valid TOML: {exc}"
        raise ConfigError(msg) from exc
    return parse_config(doc, source=str(p))


def parse_config(
    doc: dict[str, Any], *, source: str = "<config>", require_sources: bool = True
) -> StationConfig:
    """Validate a config dict (the TOML's tables) against the schema. ``require_sources=False``
    when the caller brings its own sources (``Station(sources=...)``)."""
    doc = copy.deepcopy(doc)  # the secret check removes keys: not from the caller's dict
    problems = _secret_problems(doc)
    if require_sources and not doc.get("source"):
        problems.append("source: no [[source]] table (a station needs at least one source)")
    try:
        cfg = StationConfig.model_validate(doc)
    except ValidationError as exc:
        problems += [_describe(e, doc) for e in exc.errors()]
        cfg = None
    if cfg is not None:
        problems += _name_problems(cfg)
    if problems:
        raise ConfigError(_report(source, problems))
    assert cfg is not None
    return cfg


def _report(source: str, problems: list[str]) -> str:
    if len(problems) == 1:
        return f"{source}: {problems[0]}"
    return f"{source}: {len(problems)} problems:\n" + "\n".join(f"  - {p}" for p in problems)


def _secret_problems(doc: dict[str, Any]) -> list[str]:
    found = []
    for table in ("sink", "source"):
        items = doc.get(table)
        if not isinstance(items, list):
            continue
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                continue
            for key, env_key in SECRET_KEYS.items():
                if key in item:
                    found.append(
                        f"{table}[{i}].{key}: secrets are not read from the config file; set"
                        f' {env_key} = "NAME" and export NAME in the station\'s environment'
                    )
                    del item[key]
    return found


_MODELS: dict[str, type[BaseModel]] = {
    "video": VideoSourceConfig,
    "folder": FolderSourceConfig,
    "pylon": PylonSourceConfig,
    "harvesters": HarvestersSourceConfig,
    "jsonl": JsonlSinkConfig,
    "images": ImagesSinkConfig,
    "mqtt": MqttSinkConfig,
    "webhook": WebhookSinkConfig,
    "opcua": OpcUaSinkConfig,
}
_SECTIONS: dict[str, type[BaseModel]] = {
    "station": StationSection,
    "model": ModelSection,
    "metrics": MetricsSection,
}


def _describe(err: Any, doc: dict[str, Any]) -> str:
    """One pydantic error as ``place: problem``, the union's tag dropped from the place."""
    loc = list(err["loc"])
    model: type[BaseModel] = StationConfig
    if len(loc) >= 3 and loc[0] in ("source", "sink") and isinstance(loc[1], int):
        item = doc.get(loc[0], [])[loc[1]] if isinstance(doc.get(loc[0]), list) else {}
        tag = item.get("type") if isinstance(item, dict) else None
        if loc[2] == tag:
            del loc[2]
            model = _MODELS.get(str(tag), StationConfig)
    elif len(loc) >= 2 and loc[0] in _SECTIONS:
        model = _SECTIONS[str(loc[0])]
    place = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    kind = err["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        return (f"{place}: unknown key {key!r}.{suggest(key, model.model_fields)}"
                f" Valid keys: {', '.join(model.model_fields)}")  # fmt: skip
    if kind == "union_tag_invalid":
        table = str(loc[0])
        valid = SOURCE_TYPES if table == "source" else SINK_TYPES
        got = err.get("ctx", {}).get("tag", "?")
        return (f"{place}.type: unknown {table} type {got!r}.{suggest(str(got), valid)}"
                f" Valid types: {', '.join(valid)}")  # fmt: skip
    if kind == "union_tag_not_found":
        valid = SOURCE_TYPES if loc[0] == "source" else SINK_TYPES
        return f"{place}: missing key 'type' (one of {', '.join(valid)})"
    if kind == "missing":
        return f"{place}: missing key"
    return f"{place}: {err['msg']} (got {err.get('input')!r})"


def _name_problems(cfg: StationConfig) -> list[str]:
    problems = []
    names = [s.name for s in cfg.source]
    for n in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"source: name {n!r} is used twice (frame ids are per source)")
    sinks = cfg.sink_names()
    for n in sorted({n for n in sinks if sinks.count(n) > 1}):
        problems.append(f"sink: name {n!r} is used twice (each sink has its own spool)")
    return problems


# ---- the environment ----------------------------------------------------------------------
def parse_listen(value: str, what: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:port`` for IPv6) -> (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        msg = f"{what}: {value!r} is not host:port"
        raise ConfigError(msg)
    return host.strip("[]") or "0.0.0.0", int(port)


def port_problem(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on (in use, no such address), or ``None``."""
    if port == 0:
        return None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None


def check_environment(cfg: StationConfig, *, create: bool = False, ports: bool = True) -> None:
    """Everything the station needs that the schema cannot see; raises one ``ConfigError``
    listing every problem. ``create``: make the folders (the station does; ``--check-config``
    leaves nothing behind). ``ports=False`` skips the port probes (the station binds them)."""
    from pyinspect.sinks.mqtt import parse_mqtt_url
    from pyinspect.sinks.opcua import parse_opcua_endpoint
    from pyinspect.sinks.spool import probe_writable
    from pyinspect.sinks.webhook import parse_http_url
    from pyinspect.sources.video import video_uri
    from pyinspect.spec import ModelSpec

    problems: list[str] = []

    def writable(place: str, folder: Path) -> None:
        why = probe_writable(folder, create=create)
        if why is not None:
            problems.append(f"{place}: folder {folder} cannot be written: {why}")

    def env(place: str, var: str | None) -> None:
        if var and var not in os.environ:
            problems.append(f"{place}: environment variable {var} is not set")

    model = Path(cfg.model.path)
    if not model.is_file():
        problems.append(f"model.path: {model}: model file not found")
    else:
        try:
            ModelSpec.for_model(model)
        except PyInspectError as exc:
            problems.append(f"model.path: {exc}")
    run_dir = Path(cfg.station.run_dir)
    writable("station.run_dir", run_dir)
    if cfg.metrics is not None:
        try:
            host, port = parse_listen(cfg.metrics.listen, "metrics.listen")
            why = port_problem(host, port) if ports else None
            if why:
                problems.append(f"metrics.listen: {why}")
        except ConfigError as exc:
            problems.append(str(exc))
    for i, src in enumerate(cfg.source):
        place = f"source[{i}] ({src.name})"
        if isinstance(src, VideoSourceConfig):
            try:
                video_uri(src.uri)
            except PyInspectError as exc:
                problems.append(f"{place}.uri: {exc}")
        elif isinstance(src, FolderSourceConfig):
            folder = Path(src.folder)
            if not folder.is_dir():
                what = "is not a folder" if folder.exists() else "does not exist"
                problems.append(f"{place}.folder: {folder} {what}")
            state = Path(src.state_file) if src.state_file else run_dir / f"{src.name}.state.jsonl"
            writable(f"{place}.state_file", state.parent)
            for key in ("done", "failed"):
                target = getattr(src, key)
                if target:
                    writable(f"{place}.{key}", Path(target))
        elif isinstance(src, HarvestersSourceConfig) and src.cti and not Path(src.cti).is_file():
            problems.append(f"{place}.cti: {src.cti}: no such file")
    for i, (snk, name) in enumerate(zip(cfg.sink, cfg.sink_names(), strict=True)):
        place = f"sink[{i}] ({name})"
        try:
            if isinstance(snk, MqttSinkConfig):
                parse_mqtt_url(snk.url)
                env(place + ".username_env", snk.username_env)
                env(place + ".password_env", snk.password_env)
                for key in ("ca", "certfile", "keyfile"):
                    f = getattr(snk, key)
                    if f and not Path(f).is_file():
                        problems.append(f"{place}.{key}: {f}: no such file")
            elif isinstance(snk, WebhookSinkConfig):
                parse_http_url(snk.url)
                env(place + ".token_env", snk.token_env)
            elif isinstance(snk, OpcUaSinkConfig):
                host, port = parse_opcua_endpoint(snk.endpoint)
                env(place + ".username_env", snk.username_env)
                env(place + ".password_env", snk.password_env)
                why = port_problem(host, port) if ports else None
                if why:
                    problems.append(f"{place}.endpoint: {why}")
                if snk.security != "none":
                    for key in ("certificate", "private_key"):
                        f = getattr(snk, key)
                        if not f or not Path(f).is_file():
                            problems.append(f"{place}.{key}: needed by security {snk.security}")
            elif isinstance(snk, JsonlSinkConfig):
                path = Path(snk.path)
                if path.exists() and not path.is_file():
                    problems.append(f"{place}.path: {path} is not a regular file")
                writable(place + ".path", path.parent)
            elif isinstance(snk, ImagesSinkConfig):
                writable(place + ".folder", Path(snk.folder))
        except PyInspectError as exc:
            problems.append(f"{place}: {exc}")
        if isinstance(snk, _SpooledSink):
            writable(place + " spool", run_dir / "spool" / name)
    if problems:
        raise ConfigError(_report("config", problems))
