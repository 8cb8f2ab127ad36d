"""HTTP webhook: each record POSTed as JSON (``Content-Type: application/json``) to ``url``.

One kept-alive connection; a failed POST (no answer within ``timeout_s``, a refused connection,
a status other than 2xx) is retried ``retries`` times with a doubling backoff, then the batch is
spooled and the sink retries with its reconnect backoff. A 4xx is retried too (a wrong token is
fixed by the operator, and nothing is lost meanwhile) and logged with the answer's status. The
bearer token comes from the environment variable ``token_env``.
"""

from __future__ import annotations

import http.client
import logging
import time
from typing import Any

from pyinspect.sinks.base import Record, Sink, SinkDown, split_url
from pyinspect.sinks.mqtt import env_secret

__all__ = ["WebhookSink", "parse_http_url"]

log = logging.getLogger("pyinspect.watch")


def parse_http_url(url: str) -> tuple[str, str, int, str]:
    """``http(s)://host[:port]/path`` -> (scheme, host, port, path?query)."""
    parts, host, port = split_url(
        url, "webhook", ("http", "https"), "http://host[:port]/path or https://...", "use token_env"
    )
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, host, port or (443 if parts.scheme == "https" else 80), path


class WebhookSink(Sink):
    kind = "webhook"

    def __init__(self, name: str, url: str, *, token_env: str | None = None,
                 timeout_s: float = 2.0, retries: int = 2, retry_backoff_s: float = 0.1,
                 **kwargs: Any) -> None:  # fmt: skip
        super().__init__(name, **kwargs)
        self.scheme, self.host, self.port, self.path = parse_http_url(url)
        self.url = url
        token = env_secret(token_env, f"sink {name!r}")
        self.headers = {"Content-Type": "application/json"}
        if token is not None:
            self.headers["Authorization"] = f"Bearer {token}"
        self.timeout_s, self.retries, self.retry_backoff_s = timeout_s, retries, retry_backoff_s
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = (
                http.client.HTTPSConnection
                if self.scheme == "https"
                else http.client.HTTPConnection
            )
            self._conn = cls(self.host, self.port, timeout=self.timeout_s)
        return self._conn

    def _post(self, body: bytes) -> None:
        delay = self.retry_backoff_s
        for attempt in range(self.retries + 1):
            try:
                conn = self._connection()
                conn.request("POST", self.path, body=body, headers=self.headers)
                response = conn.getresponse()
                response.read()
                if 200 <= response.status < 300:
                    return
                problem = f"HTTP {response.status} {response.reason}"
                if response.will_close:
                    self.disconnect()
            except (OSError, http.client.HTTPException) as exc:
                problem = str(exc) or type(exc).__name__
                self.disconnect()
            if attempt < self.retries:
                time.sleep(delay)
                delay *= 2
        msg = f"{self.url}: {problem}"
        raise SinkDown(msg)

    def deliver(self, records: list[Record]) -> None:
        for r in records:
            self._post(r.line)

    def disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def close(self) -> None:
        self.disconnect()
