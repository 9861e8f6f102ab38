"""The price-dispersion audit: how far served prices spread across segments and
jurisdictions, and whether the segment-gap guardrail held every day.

Read from the decision log for the window (an analyst report, not the quote path): one
``GROUP BY`` of (SKU, segment, jurisdiction, price) gives the price histogram each
statistic is computed from exactly (weighted quantiles, no sampling), and the per-SKU
daily aggregates (``sku_daily_prices``, the lowest and highest price served to any
segment each UTC day) give the daily check. The gap is checked against the segment-gap
rule the active guardrails give each SKU.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.errors import Invalid
from api.orm import Decision, Product, SkuDailyPrices, utcnow
from api.schemas.audits import DispersionDay, DispersionReport, PriceGroup, SkuDispersion
from api.services.guardrails import _load_active
from pricing.guardrails import ProductFacts
from pricing.money import from_minor

__all__ = ["MAX_WINDOW", "price_dispersion"]

#: Longest window one report covers.
MAX_WINDOW = timedelta(days=366)


def _quantile(prices: np.ndarray, counts: np.ndarray, q: float) -> int:
    """The ``q`` quantile of a price histogram (the lowest price with cumulative share >= q)."""
    order = np.argsort(prices)
    prices, counts = prices[order], counts[order]
    cumulative = np.cumsum(counts) / counts.sum()
    return int(prices[min(int(np.searchsorted(cumulative, q - 1e-12)), len(prices) - 1)])


def _group(key: str | None, histogram: dict[int, int], currency: str) -> PriceGroup:
    prices = np.array(list(histogram), dtype=np.int64)
    counts = np.array(list(histogram.values()), dtype=np.int64)
    return PriceGroup(
        key=key, decisions=int(counts.sum()), min=from_minor(int(prices.min()), currency),
        median=from_minor(_quantile(prices, counts, 0.5), currency),
        max=from_minor(int(prices.max()), currency),
    )  # fmt: skip


def price_dispersion(
    session: Session,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    after: str | None = None,
    limit: int = 100,
) -> DispersionReport:
    """The report for decisions made in ``[start, end)`` (default: the last 30 days).

    Parameters
    ----------
    session : Session
    start, end : datetime, optional
        Timezone-aware UTC bounds.
    after : str, optional
        Report SKUs after this one (paging by SKU).
    limit : int
        SKUs per page.

    Raises
    ------
    Invalid
        ``from`` not before ``to``, or a window longer than :data:`MAX_WINDOW`.
    """
    for name, value in (("from", start), ("to", end)):
        if value is not None and (value.tzinfo is None or value.utcoffset() is None):
            raise Invalid(["query", name], "timestamp needs a UTC offset, e.g. Z")
    end = end or utcnow()
    try:
        start = start or end - timedelta(days=30)
    except OverflowError:
        raise Invalid(["query", "to"], "too early: no window of 30 days before it") from None
    if start >= end:
        raise Invalid(["query", "from"], "must be before 'to'")
    if end - start > MAX_WINDOW:
        raise Invalid(["query", "from"], f"the window may span at most {MAX_WINDOW.days} days")
    skus_query = (
        select(Decision.sku).where(Decision.created_at >= start, Decision.created_at < end)
        .group_by(Decision.sku).order_by(Decision.sku).limit(limit + 1)
    )  # fmt: skip
    if after is not None:
        skus_query = skus_query.where(Decision.sku > after)
    skus = list(session.scalars(skus_query))
    next_after = skus[limit - 1] if len(skus) > limit else None
    skus = skus[:limit]
    version, rules = _load_active(session)
    report = DispersionReport.model_validate({
        "from": start, "to": end, "guardrail_version": version, "skus": [],
        "next_after": next_after,
    })  # fmt: skip
    if not skus:
        return report
    rows = session.execute(
        select(Decision.sku, Decision.currency, Decision.segment, Decision.jurisdiction,
               Decision.price_minor, func.count())
        .where(Decision.created_at >= start, Decision.created_at < end, Decision.sku.in_(skus))
        .group_by(Decision.sku, Decision.currency, Decision.segment, Decision.jurisdiction,
                  Decision.price_minor)
    ).all()  # fmt: skip
    products = {p.sku: p for p in session.scalars(select(Product).where(Product.sku.in_(skus)))}
    days = defaultdict(list)
    for row in session.scalars(
        select(SkuDailyPrices).where(
            SkuDailyPrices.sku.in_(skus), SkuDailyPrices.day >= start.date(),
            SkuDailyPrices.day <= end.date(),
        ).order_by(SkuDailyPrices.sku, SkuDailyPrices.day)
    ):  # fmt: skip
        days[row.sku].append(row)
    overall: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    by_segment: dict[str, dict[str, dict[int, int]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(int))
    )
    by_place: dict[str, dict[str | None, dict[int, int]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(int))
    )
    currency: dict[str, str] = {}
    for sku, cur, segment, jurisdiction, price, count in rows:
        currency[sku] = cur
        overall[sku][price] += count
        by_segment[sku][segment][price] += count
        by_place[sku][jurisdiction][price] += count
    for sku in skus:
        cur = currency[sku]
        histogram = overall[sku]
        prices = np.array(list(histogram), dtype=np.int64)
        counts = np.array(list(histogram.values()), dtype=np.int64)
        low, high = int(prices.min()), int(prices.max())
        product = products.get(sku)
        gap = None
        if product is not None:
            facts = ProductFacts(sku, product.category, product.list_price_minor,
                                 product.unit_cost_minor)  # fmt: skip
            rule = rules.resolve(facts.sku, facts.category).values.get("segment_gap")
            gap = float(rule) if rule is not None else None
        day_rows = []
        for d in days.get(sku, []):
            ratio = d.high_minor / d.low_minor if d.low_minor else float("inf")
            day_rows.append(DispersionDay(
                day=d.day, low=from_minor(d.low_minor, cur), high=from_minor(d.high_minor, cur),
                ratio=round(ratio, 6), held=None if gap is None else ratio <= gap + 1e-9,
            ))  # fmt: skip
        held = None if gap is None else all(bool(d.held) for d in day_rows)
        report.skus.append(SkuDispersion(
            sku=sku, currency=cur, decisions=int(counts.sum()), min=from_minor(low, cur),
            p05=from_minor(_quantile(prices, counts, 0.05), cur),
            median=from_minor(_quantile(prices, counts, 0.5), cur),
            p95=from_minor(_quantile(prices, counts, 0.95), cur), max=from_minor(high, cur),
            ratio=round(high / low, 6) if low else float("inf"),
            by_segment=[_group(k, h, cur) for k, h in sorted(by_segment[sku].items())],
            by_jurisdiction=[_group(k, h, cur) for k, h in
                             sorted(by_place[sku].items(), key=lambda kv: kv[0] or "")],
            segment_gap=gap, gap_held_every_day=held, days=day_rows,
        ))  # fmt: skip
    return report
