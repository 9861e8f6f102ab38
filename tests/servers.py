"""Real ``pricing-engine serve`` processes for tests that need them (crashes, several workers)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import IO

import httpx
import pytest

__all__ = ["free_port", "servers"]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def servers(
    db_url: str, n: int = 1, *, output: IO[bytes] | None = None, **env: str
) -> Iterator[list[tuple[str, subprocess.Popen[bytes]]]]:
    """Start ``n`` servers on ``db_url`` (extra ``PRICING_*`` settings in ``env``; their
    stdout and stderr to ``output`` when given); wait until each is ready; on exit stop
    those still running (SIGTERM, then SIGKILL)."""
    started = []
    for _ in range(n):
        port = free_port()
        environment = {**os.environ, "PRICING_DATABASE_URL": db_url, "PRICING_PORT": str(port),
                       "PRICING_LOG_LEVEL": "warning", **env}  # fmt: skip
        process = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve"], env=environment,
            stdout=output, stderr=subprocess.STDOUT if output is not None else None,
        )  # fmt: skip
        started.append((f"http://127.0.0.1:{port}", process))
    try:
        for base, process in started:
            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                        break
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"server did not become ready (exit code {process.poll()})")
                time.sleep(0.1)
        yield started
    finally:
        for _, process in started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for _, process in started:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
