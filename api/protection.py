"""Protection at the edge: per-key rate limits, request size limits, CORS, log redaction.

- :class:`RateLimiter`: a token bucket per (API key, endpoint kind) in each worker; a
  request over the limit gets 429 with ``Retry-After`` before any work is done.
- :class:`BodyLimit`: pure ASGI middleware refusing a body larger than
  ``PRICING_MAX_BODY_BYTES`` with 413, whether it declares its length or streams.
- CORS is off unless ``PRICING_CORS_ORIGINS`` names origins.
- :func:`log_config`: the access log, uvicorn's messages and the engine's own logs never
  show a full customer id or a key: ``/v1/customers/<id>`` and ``customer_id=`` values
  become a short digest, ``pe_...`` keys their public prefix (SQL parameters are never
  put in error messages: ``hide_parameters`` on the engine).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.config import LOGGING_CONFIG
from uvicorn.logging import AccessFormatter, DefaultFormatter

from api.errors import RateLimited
from api.settings import Settings

__all__ = [
    "BodyLimit",
    "RateLimiter",
    "RedactingAccessFormatter",
    "RedactingFormatter",
    "install_protection",
    "log_config",
    "redact",
]


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    """Token buckets per (key, kind): ``rate`` requests per second, bursts of ``burst``.

    Parameters
    ----------
    rates : dict of str to float
        Requests per second allowed per key for each kind (``quotes``, ``outcomes``);
        a rate of 0 means unlimited.
    burst_seconds : float
        A bucket holds this many seconds of its rate (at least one request), so a key
        idle for a while may send that many at once.

    Notes
    -----
    The buckets live in one worker's memory: with ``W`` API workers a key's ceiling is
    ``W`` times the configured rate (the README says so). Memory is bounded by the number
    of keys, not of requests.

    Examples
    --------
    >>> limiter = RateLimiter({"quotes": 1.0}, burst_seconds=2.0)
    >>> [limiter.wait("k", "quotes", now=0.0) for _ in range(3)]
    [0.0, 0.0, 1.0]
    >>> limiter.wait("k", "quotes", now=1.0)
    0.0
    """

    def __init__(self, rates: dict[str, float], *, burst_seconds: float) -> None:
        self.rates = {k: float(v) for k, v in rates.items()}
        self.burst_seconds = float(burst_seconds)
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._lock = threading.Lock()

    def capacity(self, kind: str) -> float:
        """Largest burst of ``kind`` requests (at least one)."""
        return max(1.0, self.rates.get(kind, 0.0) * self.burst_seconds)

    def wait(self, key: str, kind: str, *, now: float | None = None) -> float:
        """Take one request from ``key``'s ``kind`` bucket.

        Returns
        -------
        float
            0.0 when the request may go ahead (a token was taken); otherwise the seconds
            until a token is available (nothing was taken).
        """
        rate = self.rates.get(kind, 0.0)
        if rate <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        capacity = self.capacity(kind)
        with self._lock:
            bucket = self._buckets.get((key, kind))
            if bucket is None:
                if len(self._buckets) > 100_000:  # keys are few; bound it anyway
                    self._buckets.clear()
                bucket = self._buckets[(key, kind)] = _Bucket(capacity, now)
            bucket.tokens = min(capacity, bucket.tokens + (now - bucket.stamp) * rate)
            bucket.stamp = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / rate

    def check(self, key: str, kind: str) -> None:
        """Take a request, or raise :class:`RateLimited` with the seconds to wait."""
        wait = self.wait(key, kind)
        if wait > 0:
            rate = self.rates[kind]
            raise RateLimited(
                ["header", "authorization"],
                f"rate limit exceeded: this key may send {rate:g} {kind} requests per second "
                f"per worker (bursts of {self.capacity(kind):g}); retry after the Retry-After "
                "header's seconds",
                retry_after=max(1, math.ceil(wait)),
            )


class BodyLimit:
    """Refuse request bodies larger than ``max_bytes`` with 413 (pure ASGI middleware).

    A declared ``Content-Length`` over the limit is refused before any byte is read; a
    streamed body is counted as it arrives and refused once it passes the limit (the app
    sees an incomplete body it never acts on: nothing is stored).
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"detail": [{
            "loc": ["body"], "field": "body", "type": "too_large",
            "msg": f"the request body is larger than {self.max_bytes} bytes "
                   "(PRICING_MAX_BODY_BYTES); send smaller batches",
        }]}).encode()  # fmt: skip
        await send({
            "type": "http.response.start", "status": 413,
            "headers": [(b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode())],
        })  # fmt: skip
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    await self._refuse(send)
                    return
                break
        seen = 0
        started = refused = False

        async def counted() -> Message:
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes and not started:
                    # Answer now; the app sees the client gone and whatever it sends
                    # afterwards is dropped (it never acts on an incomplete body).
                    refused = True
                    await self._refuse(send)
                    return {"type": "http.disconnect"}
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if refused:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, counted, tracked)


_CUSTOMER_PATH = re.compile(r"(/customers/)([^/?\s\"]+)")
_CUSTOMER_QUERY = re.compile(r"(\bcustomer_id[\"']?\s*[=:]\s*[\"']?)([^&\s\"',)}\]]+)")
_API_KEY = re.compile(r"\b(pe_[0-9a-f]{8})_[A-Za-z0-9_\-]+")


def _digest(match: re.Match[str]) -> str:
    value = match.group(2)
    short = hashlib.sha256(value.encode("utf-8")).hexdigest()[:8]
    return f"{match.group(1)}~{short}"


def redact(text: str) -> str:
    """``text`` with customer ids replaced by a short digest and API keys by their prefix.

    Examples
    --------
    >>> redact("DELETE /v1/customers/alice@example.com HTTP/1.1")
    'DELETE /v1/customers/~ff8d9819 HTTP/1.1'
    >>> redact("/v1/decisions?customer_id=c-1&limit=5")
    '/v1/decisions?customer_id=~1f8ac10f&limit=5'
    >>> redact("key pe_0123abcd_s3cr3t")
    'key pe_0123abcd_…'
    """
    text = _CUSTOMER_PATH.sub(_digest, text)
    text = _CUSTOMER_QUERY.sub(_digest, text)
    return _API_KEY.sub(r"\1_…", text)


class RedactingFormatter(DefaultFormatter):
    """uvicorn's default log format, redacted (messages and tracebacks alike)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class RedactingAccessFormatter(AccessFormatter):
    """uvicorn's access-log format with customer ids and keys redacted."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging configuration with redacting formatters and the engine's loggers.

    Parameters
    ----------
    level : str
        Level of the ``pricing.*`` loggers (``PRICING_LOG_LEVEL``).

    Returns
    -------
    dict
        A :func:`logging.config.dictConfig` configuration: the access log, uvicorn's own
        messages and the engine's (``pricing.*``, to stderr) all pass :func:`redact`.
    """
    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["default"]["()"] = f"{__name__}.RedactingFormatter"
    config["formatters"]["access"]["()"] = f"{__name__}.RedactingAccessFormatter"
    config["formatters"]["engine"] = {
        "()": f"{__name__}.RedactingFormatter",
        "fmt": "%(levelprefix)s %(name)s: %(message)s",
    }
    config["handlers"]["engine"] = {
        "formatter": "engine", "class": "logging.StreamHandler", "stream": "ext://sys.stderr",
    }  # fmt: skip
    config["loggers"]["pricing"] = {
        "handlers": ["engine"], "level": "INFO" if level == "trace" else level.upper(),
        "propagate": False,
    }  # fmt: skip
    return config


def install_protection(app: FastAPI, settings: Settings) -> None:
    """Add the body size limit and CORS (only when origins are configured)."""
    origins = settings.cors_allowed()
    if origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
        )  # fmt: skip
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
