"""Latency histograms kept by one thread and read by another (the writer's, the requests')."""

from __future__ import annotations

import bisect
from collections.abc import Sequence

__all__ = ["LATENCY_BOUNDS", "LatencyCounts"]

#: Upper bounds (s) of the service's latency histograms: the requests'
#: (``pricing_http_request_duration_seconds``) and the writer's (``pricing_writer_*_seconds``),
#: the same, so that a request's time and its wait for the commit compare bound by bound.
LATENCY_BOUNDS = (0.0005, 0.001, 0.002, 0.0025, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025,
                  0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)  # fmt: skip


class LatencyCounts:
    """A histogram kept by one thread and read by another: counts per bound, and a sum.

    A bisection and two additions per observation (no lock: the writer thread alone
    observes; a scrape copies the counts, and may see one observation in the counts and
    not yet in the sum).
    """

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float] = LATENCY_BOUNDS) -> None:
        self.bounds = tuple(bounds)
        #: Observations per bucket (not cumulative); the last one is above every bound.
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        """Count one duration (s)."""
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations at or below it), ending with (inf, all)."""
        out, running = [], 0
        for bound, count in zip((*self.bounds, float("inf")), list(self.counts), strict=True):
            running += count
            out.append((bound, running))
        return out
