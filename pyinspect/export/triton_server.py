"""A local ``tritonserver`` on 127.0.0.1 with free ports: for tests, benchmarks and trying an
export before it goes to a GPU host.

The binary is the one in the ``nvidia-pytriton`` wheel (Python backend only), unpacked by
``make serve-env`` under ``.venv/tritonserver/server`` (``server_dir``: ``tritonserver/bin``,
``tritonserver/backends``, ``libs``). The server runs in its own process group, so ``kill``
(a crash, for fault tests) also ends the backends' stub processes, and ``start`` again comes
back on the same ports.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from pyinspect.errors import BackendError, BackendUnavailableError

__all__ = ["LocalTritonServer", "default_server_dir", "free_ports"]

SERVER_DIR_VAR = "PYINSPECT_TRITON_DIR"


def default_server_dir() -> Path:
    """``$PYINSPECT_TRITON_DIR``, else ``.venv/tritonserver/server`` of this checkout."""
    env = os.environ.get(SERVER_DIR_VAR)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / ".venv" / "tritonserver" / "server"


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on 127.0.0.1 right now."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class LocalTritonServer:
    """``tritonserver`` serving ``repositories`` on 127.0.0.1.

    ``models``: load only these (``--model-control-mode=explicit``; ``None``: every model).
    ``http_port`` / ``grpc_port`` / ``metrics_port`` are chosen free at construction and kept
    across restarts. The log goes to ``log_path`` (default: a file in a temporary folder).
    """

    def __init__(
        self,
        repositories: Sequence[str | os.PathLike[str]],
        *,
        models: Sequence[str] | None = None,
        server_dir: str | os.PathLike[str] | None = None,
        log_path: str | os.PathLike[str] | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.server_dir = Path(server_dir) if server_dir is not None else default_server_dir()
        self.binary = self.server_dir / "tritonserver" / "bin" / "tritonserver"
        if not self.binary.is_file():
            msg = (
                f"{self.binary}: no tritonserver binary; `make serve-env` unpacks the one in the"
                f" nvidia-pytriton wheel (or set {SERVER_DIR_VAR})"
            )
            raise BackendUnavailableError(msg)
        self.repositories = [Path(r).absolute() for r in repositories]
        self.models = list(models) if models is not None else None
        self.http_port, self.grpc_port, self.metrics_port = free_ports(3)
        self._tmp = tempfile.TemporaryDirectory(prefix="pyinspect-triton-")
        self.log_path = Path(log_path) if log_path is not None else Path(self._tmp.name) / "log"
        self.extra_args = list(extra_args)
        self._proc: subprocess.Popen[bytes] | None = None

    # ---- addresses ---------------------------------------------------------------------------
    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def model_url(self, model: str, scheme: str = "grpc") -> str:
        """``grpc://127.0.0.1:PORT/model`` (or ``http://``), what ``Inspector`` takes."""
        port = self.grpc_port if scheme == "grpc" else self.http_port
        return f"{scheme}://127.0.0.1:{port}/{model}"

    # ---- life cycle ----------------------------------------------------------------------------
    def command(self) -> list[str]:
        cmd = [str(self.binary)]
        cmd += [f"--model-repository={r}" for r in self.repositories]
        cmd += [
            f"--backend-directory={self.server_dir / 'tritonserver' / 'backends'}",
            "--http-address=127.0.0.1",
            f"--http-port={self.http_port}",
            "--grpc-address=127.0.0.1",
            f"--grpc-port={self.grpc_port}",
            "--metrics-address=127.0.0.1",
            f"--metrics-port={self.metrics_port}",
            "--exit-timeout-secs=5",
        ]
        if self.models is not None:
            cmd.append("--model-control-mode=explicit")
            cmd += [f"--load-model={m}" for m in self.models]
        return cmd + self.extra_args

    def start(self, timeout: float = 60.0) -> float:
        """Start and wait until ``/v2/health/ready``; returns the seconds that took. A server
        that exits or is not ready in time is a ``BackendError`` with the log's tail."""
        if self.running:
            msg = f"tritonserver (pid {self.pid}) is already running"
            raise BackendError(msg)
        env = dict(os.environ)
        libs = str(self.server_dir / "libs")
        env["LD_LIBRARY_PATH"] = libs + os.pathsep + env.get("LD_LIBRARY_PATH", "")
        t0 = time.monotonic()
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self._tmp.name,  # not a checkout: a stub's sys.path[0] is its cwd
                env=env,
                start_new_session=True,
            )
        while time.monotonic() - t0 < timeout:
            if self._proc.poll() is not None:
                msg = f"tritonserver exited with status {self._proc.returncode}: {self.log_tail()}"
                self._proc = None
                raise BackendError(msg)
            if self.ready():
                return time.monotonic() - t0
            time.sleep(0.2)
        self.kill()
        msg = f"tritonserver not ready within {timeout:g} s: {self.log_tail()}"
        raise BackendError(msg)

    def ready(self) -> bool:
        """``GET /v2/health/ready`` answers 200."""
        return self._get("/v2/health/ready", self.http_port) is not None

    def metrics(self) -> str:
        """The Prometheus text of the metrics port ('' when it does not answer)."""
        return self._get("/metrics", self.metrics_port) or ""

    def metric(self, name: str, model: str) -> float:
        """One counter of one model (summed over versions and labels), e.g.
        ``metric("nv_inference_request_success", "student_frame")``."""
        total = 0.0
        pattern = re.compile(rf"^{re.escape(name)}\{{(?P<labels>[^}}]*)\}} (?P<value>\S+)$")
        for line in self.metrics().splitlines():
            m = pattern.match(line)
            if m and f'model="{model}"' in m["labels"]:
                total += float(m["value"])
        return total

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def kill(self) -> None:
        """SIGKILL the server and its stubs (its process group): a crash, not a shutdown."""
        self._signal(signal.SIGKILL, wait=10.0)

    def pause(self) -> None:
        """SIGSTOP the server: it holds its connections and answers nothing (timeout tests)."""
        if self._proc is not None:
            os.killpg(self._proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after ``pause``."""
        if self._proc is not None:
            os.killpg(self._proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        """Shut down (SIGTERM, then SIGKILL after 15 s); idempotent."""
        self._signal(signal.SIGTERM, wait=15.0)
        self._signal(signal.SIGKILL, wait=10.0)

    def close(self) -> None:
        self.stop()
        self._tmp.cleanup()

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> LocalTritonServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- helpers -------------------------------------------------------------------------------
    def _signal(self, sig: signal.Signals, wait: float) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
                os.killpg(proc.pid, signal.SIGCONT)  # a paused server must see the signal
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=wait)
        if proc.poll() is not None:
            with contextlib.suppress(ProcessLookupError):  # stubs left in the group
                os.killpg(proc.pid, signal.SIGKILL)
            self._proc = None

    @staticmethod
    def _get(path: str, port: int) -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                return str(r.read().decode()) if r.status == 200 else None
        except (urllib.error.URLError, OSError, TimeoutError):
            return None
