"""Faults between ``Inspector("grpc://...")`` and the real ``tritonserver`` (its own server for
the module: this one is killed, frozen and restarted): a named error within the client timeout,
never a hang, and the same client object recovers when the server is back."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from tritonkit import requires_server, same_verdict, student_server, synth_frames

from pyinspect.backends.triton import TritonError
from pyinspect.export.triton_server import LocalTritonServer
from pyinspect.inspector import Inspector

pytestmark = [requires_server, pytest.mark.slow]

PATCH = "student_py_patch"
TIMEOUT_S = 3.0


server = student_server("triton-fault")


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return synth_frames(6, seed=3)


def _until_error(inspector: Inspector, frames: list[np.ndarray], limit_s: float) -> TritonError:
    """Inspect frames in a loop until one fails; the failure must come within ``limit_s``."""
    start = time.monotonic()
    while time.monotonic() - start < limit_s:
        for f in frames:
            try:
                inspector.run(f)
            except TritonError as exc:
                return exc
    pytest.fail(f"no error within {limit_s} s")


@pytest.mark.parametrize("scheme", ["grpc", "http"])
def test_killed_server_is_a_named_error_and_the_same_client_recovers(
    server: LocalTritonServer, frames: list[np.ndarray], scheme: str
) -> None:
    url = server.model_url(PATCH, scheme)
    with Inspector(url, timeout=TIMEOUT_S) as remote:
        before = [remote.run(f) for f in frames]
        killer = threading.Timer(0.3, server.kill)  # mid-loop, between or during requests
        killer.start()
        killed_at = time.monotonic()
        error = _until_error(remote, frames, limit_s=10)
        killer.join()
        assert time.monotonic() - killed_at < 0.3 + TIMEOUT_S + 1.0
        assert error.cause in ("unreachable", "timeout")
        assert error.url == url and PATCH in str(error) and url in str(error)
        server.start(timeout=60)  # same ports
        deadline = time.monotonic() + 15
        while True:
            try:
                after = [remote.run(f) for f in frames]
                break
            except TritonError as exc:
                assert exc.cause in ("unreachable", "not ready"), exc
                assert time.monotonic() < deadline, f"not recovered within 15 s: {exc}"
                time.sleep(0.2)
    assert all(same_verdict(a, b) for a, b in zip(before, after, strict=True))


def test_frozen_server_times_out_within_the_client_timeout(
    server: LocalTritonServer, frames: list[np.ndarray]
) -> None:
    if not server.running:
        server.start(timeout=60)
    with Inspector(server.model_url(PATCH), timeout=TIMEOUT_S) as remote:
        remote.run(frames[0])
        server.pause()
        try:
            start = time.monotonic()
            with pytest.raises(TritonError, match="client timeout of 3 s") as info:
                remote.run(frames[1])
            waited = time.monotonic() - start
        finally:
            server.resume()
        assert info.value.cause == "timeout"
        assert TIMEOUT_S - 0.5 < waited < TIMEOUT_S + 1.5
        # answered again once the server runs: it first works off the request it froze on, and
        # a call made meanwhile may still time out, so allow it a few seconds to catch up
        deadline = time.monotonic() + 15
        while True:
            try:
                result = remote.run(frames[2])
                break
            except TritonError as exc:
                if exc.cause != "timeout" or time.monotonic() > deadline:
                    raise
        assert result.ok, result.error
