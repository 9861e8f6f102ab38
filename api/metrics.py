"""Prometheus metrics: request counts and latency per route, decisions and outcomes."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = ["Metrics", "install_metrics"]


class Metrics:
    """The service's metrics, on a registry of their own (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "pricing_http_requests",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "pricing_http_request_duration_seconds",
            "HTTP request latency by route template (seconds).",
            ["route", "method"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.decisions = Counter(
            "pricing_decisions",
            "Quote-line decisions logged, by policy and whether personalized.",
            ["policy", "personalized"],
            registry=self.registry,
        )
        self.outcomes = Counter(
            "pricing_outcomes",
            "Outcomes received, by status (created, duplicate, conflict, not_found, invalid).",
            ["status"],
            registry=self.registry,
        )


def install_metrics(app: FastAPI, metrics: Metrics) -> None:
    """Count and time every request under its route template (not its raw path)."""

    @app.middleware("http")
    async def _observe(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        start = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = request.scope.get("route")
            template = getattr(route, "path", "unmatched")
            elapsed = time.perf_counter() - start
            metrics.requests.labels(template, request.method, str(status)).inc()
            metrics.latency.labels(template, request.method).observe(elapsed)
