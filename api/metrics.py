"""Prometheus metrics: request counts and latency per route, decisions and outcomes."""

from __future__ import annotations

import gc
import time
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.latency import LATENCY_BOUNDS

if TYPE_CHECKING:
    from api.latency import LatencyCounts
    from api.writer import GroupWriter

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
            buckets=LATENCY_BOUNDS,
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
        self.gc_pause = Histogram(
            "pricing_gc_pause_seconds",
            "Pauses of Python's cyclic garbage collector by generation (seconds): every "
            "thread, requests included, waits for them.",
            ["generation"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5),
            registry=self.registry,
        )
        self._writer: _WriterCollector | None = None
        self._gc_children = [self.gc_pause.labels(str(g)) for g in range(3)]
        self._gc_started = 0.0
        # Label children: ``labels()`` validates and takes a lock on every call.
        self._decision_children: dict[tuple[str, bool], Any] = {}
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe_request(self, template: str, method: str, status: int, elapsed: float) -> None:
        """Count and time one HTTP request under its route template.

        Parameters
        ----------
        template : str
            The route template (``/v1/quotes``), never the raw path.
        method : str
        status : int
            The response status (500 when none was sent).
        elapsed : float
            Seconds from the request reaching the app to the end of its response.
        """
        key = (template, method, status)
        children = self._request_children.get(key)
        if children is None:
            if len(self._request_children) > 10_000:  # unmatched paths are one label; bound it anyway
                self._request_children.clear()
            children = self._request_children[key] = (
                self.requests.labels(template, method, str(status)),
                self.latency.labels(template, method),
            )
        children[0].inc()
        children[1].observe(elapsed)

    def watch_gc(self) -> None:
        """Time every collection of the cyclic garbage collector (``pricing_gc_pause_seconds``).

        The collector's callbacks are process-wide: call :meth:`unwatch_gc` when the app stops.
        """
        if self._gc_callback not in gc.callbacks:
            gc.callbacks.append(self._gc_callback)

    def unwatch_gc(self) -> None:
        """Stop timing the collector (idempotent)."""
        if self._gc_callback in gc.callbacks:
            gc.callbacks.remove(self._gc_callback)

    def _gc_callback(self, phase: str, info: dict[str, Any]) -> None:
        # Runs inside the collection, holding the GIL: a clock read and a histogram update.
        if phase == "start":
            self._gc_started = time.perf_counter()
        elif self._gc_started:
            self._gc_children[min(int(info.get("generation", 0)), 2)].observe(
                time.perf_counter() - self._gc_started
            )
            self._gc_started = 0.0

    def watch_writer(self, writer: GroupWriter) -> None:
        """Export the group writer's running totals (read at each scrape, nothing per write):
        ``pricing_writer_transactions_total``, ``pricing_writer_jobs_total`` and
        ``pricing_writer_busy_seconds_total``. Jobs per transaction is how much the group
        commit saves; busy seconds per second is how much of a core the writer takes.

        Parameters
        ----------
        writer : api.writer.GroupWriter
            The worker's writer (one per app: a second call points the metrics at it).
        """
        if self._writer is None:
            self._writer = _WriterCollector(writer)
            self.registry.register(self._writer)
        else:
            self._writer.writer = writer

    def count_decision(self, policy: str, personalized: bool) -> None:
        """Count one logged decision (``pricing_decisions``)."""
        child = self._decision_children.get((policy, personalized))
        if child is None:
            child = self._decision_children[(policy, personalized)] = self.decisions.labels(
                policy, str(personalized)
            )
        child.inc()


class _WriterCollector(Collector):
    """The group writer's counters, read when ``/metrics`` is scraped."""

    def __init__(self, writer: GroupWriter) -> None:
        self.writer = writer

    def collect(self) -> Any:
        writer = self.writer
        yield CounterMetricFamily(
            "pricing_writer_transactions",
            "Transactions the worker's group writer committed (each holds every job that was ready).",
            value=writer.batches,
        )
        yield CounterMetricFamily(
            "pricing_writer_jobs",
            "Jobs the group writer committed (a quote's rows, an outcome or a batch of them...).",
            value=writer.jobs_written,
        )
        yield CounterMetricFamily(
            "pricing_writer_busy_seconds",
            "Seconds the group writer spent writing, transactions and commits included.",
            value=writer.busy_seconds,
        )
        process = writer.process
        if process is not None:
            yield CounterMetricFamily(
                "pricing_writer_process_starts",
                "Writer processes this worker started (PRICING_WRITER_PROCESS): 1 in a healthy "
                "worker; each more is a child that died and was replaced.",
                value=process.starts,
            )
        yield _histogram(
            "pricing_writer_commit_wait_seconds",
            "Per committed job (a quote's rows, an outcome batch...), seconds from its "
            "submission to the writer until its commit: the part of a request's latency "
            "spent waiting for durability.",
            writer.commit_waits,
        )
        yield _histogram(
            "pricing_writer_transaction_seconds",
            "Per committed transaction of the group writer, seconds from its start to its "
            "commit (statements and the commit's flush to disk).",
            writer.transaction_seconds,
        )
        if process is not None:
            yield _histogram(
                "pricing_writer_process_transaction_seconds",
                "Per committed transaction, seconds it took inside the writer process, from "
                "the batch's arrival to its commit; pricing_writer_transaction_seconds adds the "
                "crossing both ways and the API process's wait for its interpreter lock.",
                process.transaction_seconds,
            )


def _histogram(name: str, documentation: str, counts: LatencyCounts) -> HistogramMetricFamily:
    """A :class:`~api.writer.LatencyCounts` as a Prometheus histogram family."""
    buckets = [("+Inf" if bound == float("inf") else repr(bound), float(n))
               for bound, n in counts.cumulative()]  # fmt: skip
    return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=counts.total)


class _MetricsMiddleware:
    """Pure ASGI middleware (no per-request task or body stream, unlike ``@app.middleware``)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self._plain: frozenset[str] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def observe(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observe)
        finally:
            self.metrics.observe_request(self._template(scope), scope.get("method", ""), status,
                                         time.perf_counter() - start)  # fmt: skip

    def _template(self, scope: Scope) -> str:
        """The route template; the path itself for the app's parameterless plain routes
        (``/docs``, ``/openapi.json``), which carry no ``route`` in their scope."""
        route = scope.get("route")
        if route is not None:
            return str(getattr(route, "path", "unmatched"))
        if self._plain is None:
            app = scope.get("app")
            self._plain = frozenset(
                r.path for r in getattr(app, "routes", ())
                if isinstance(r, Route) and not r.param_convertors
            )  # fmt: skip
        path = scope.get("path", "")
        return path if path in self._plain else "unmatched"


def install_metrics(app: FastAPI, metrics: Metrics) -> None:
    """Count and time every request under its route template (not its raw path)."""
    app.add_middleware(_MetricsMiddleware, metrics=metrics)
