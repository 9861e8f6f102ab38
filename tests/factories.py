"""Builders of test data: synthetic posteriors, snapshots, and logged decisions with outcomes."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from api.orm import Decision, ModelSnapshot, Outcome, utcnow
from pricing.posterior import DemandPosterior


def synthetic_posterior(
    segments: Sequence[str] = ("default", "loyalty"),
    skus: Sequence[str] = ("TEA-1", "TEA-2"),
    category: str = "tea",
    n_draws: int = 200,
    seed: int = 0,
    intercept: float = -1.0,
    log_elasticity: float = float(np.log(1.5)),
    spread: float = 0.3,
    version: str = "test",
) -> DemandPosterior:
    """A posterior with known centre and spread, without running PyMC."""
    rng = np.random.default_rng(seed)
    d, s, j = n_draws, len(segments), len(skus)
    pairs = tuple((seg, category) for seg in segments)
    return DemandPosterior(
        segments=tuple(segments), skus=tuple(skus), categories=(category,), promotions=("promo",),
        sku_category={sku: category for sku in skus}, pairs=pairs,
        a_seg=rng.normal(0.0, spread, (d, s)), a_sku=rng.normal(intercept, spread, (d, j)),
        log_e=rng.normal(log_elasticity, spread, (d, len(pairs))), g=rng.normal(0.2, 0.1, (d, 1)),
        mu_a=rng.normal(intercept, 0.1, d), sd_a_sku=np.abs(rng.normal(0.5, 0.05, d)),
        sd_a_seg=np.abs(rng.normal(0.3, 0.05, d)), mu_global=rng.normal(log_elasticity, 0.1, d),
        sd_cat=np.abs(rng.normal(0.3, 0.05, d)), sd_seg=np.abs(rng.normal(0.3, 0.05, d)),
        mu_cat=rng.normal(log_elasticity, 0.1, (d, 1)), log_weights=np.zeros(d),
        meta={"version": version},
    )  # fmt: skip


def two_category_posterior(segments: Sequence[str] = ("default", "loyalty"), spread: float = 0.05,
                           seed: int = 1) -> DemandPosterior:
    """synthetic_posterior with a second category ("coffee", SKUs COF-1 and COF-2)."""
    tea = synthetic_posterior(segments=segments, spread=spread, seed=seed)
    coffee = synthetic_posterior(segments=segments, skus=("COF-1", "COF-2"), category="coffee",
                                 spread=spread, seed=seed + 1)  # fmt: skip
    return DemandPosterior(
        segments=tea.segments, skus=tea.skus + coffee.skus, categories=("tea", "coffee"),
        promotions=tea.promotions, sku_category={**tea.sku_category, **coffee.sku_category},
        pairs=tea.pairs + coffee.pairs, a_seg=tea.a_seg, a_sku=np.hstack([tea.a_sku, coffee.a_sku]),
        log_e=np.hstack([tea.log_e, coffee.log_e]), g=tea.g, mu_a=tea.mu_a, sd_a_sku=tea.sd_a_sku,
        sd_a_seg=tea.sd_a_seg, mu_global=tea.mu_global, sd_cat=tea.sd_cat, sd_seg=tea.sd_seg,
        mu_cat=np.hstack([tea.mu_cat, coffee.mu_cat]), log_weights=np.zeros(tea.n_draws),
        meta={"version": "two-categories"},
    )  # fmt: skip


def publish(
    sessions: Any,
    posterior: DemandPosterior,
    *,
    watermark: datetime | None = None,
    status: str = "published",
) -> int:
    """Insert a snapshot row for ``posterior``; return its id."""
    with sessions() as session, session.begin():
        row = ModelSnapshot(
            status=status, method="test", approximate=False, config_hash="test",
            model_config_json={}, sampler_config_json={},
            data_watermark=watermark or utcnow() - timedelta(minutes=1),
            n_cells=1, n_trials=1, n_conversions=0,
            diagnostics={"passed": status == "published"}, message="" if status == "published" else "rejected",
            draws=posterior.to_bytes() if status == "published" else None,
            log_weights=posterior.log_weights.tobytes() if status == "published" else None,
            ess=posterior.ess, weights_updated_at=utcnow(),
        )  # fmt: skip
        session.add(row)
        session.flush()
        return int(row.id)


def log_decisions(
    sessions: Any,
    rows: Sequence[tuple[str, str, int, int, bool]],
    *,
    recorded_at: datetime | None = None,
    currency: str = "USD",
) -> list[uuid.UUID]:
    """Insert decisions with outcomes: (segment, sku, price_minor, list_price_minor, converted)."""
    now = recorded_at or utcnow()
    ids = []
    with sessions() as session, session.begin():
        for segment, sku, price, list_price, converted in rows:
            decision_id = uuid.uuid4()
            ids.append(decision_id)
            session.add(Decision(
                id=decision_id, quote_id=uuid.uuid4(), line_no=0, created_at=now, expires_at=now,
                customer_id="sim", segment=segment, sku=sku, quantity=1, currency=currency,
                list_price_minor=list_price, price_minor=price, unit_cost_minor=0, propensity=1.0,
                personalized=False, policy="test", context={}, guardrail_trail={},
            ))  # fmt: skip
            session.flush()
            session.add(Outcome(
                id=uuid.uuid4(), decision_id=decision_id, converted=converted, quantity=int(converted),
                revenue_minor=price if converted else 0, currency=currency, occurred_at=now, recorded_at=now,
            ))  # fmt: skip
    return ids


def log_counts(
    sessions: Any,
    counts: Sequence[tuple[str, str, int, int, int, int]],
    *,
    recorded_at: datetime | None = None,
) -> int:
    """Insert (segment, sku, price_minor, list_price_minor, trials, conversions) as decision rows."""
    rows = []
    for segment, sku, price, list_price, trials, conversions in counts:
        rows += [(segment, sku, price, list_price, True)] * conversions
        rows += [(segment, sku, price, list_price, False)] * (trials - conversions)
    log_decisions(sessions, rows, recorded_at=recorded_at)
    return len(rows)


def truth_counts(
    truth: Any, sku_list_prices: dict[str, int], ratios: Sequence[float], trials: int, seed: int
) -> list[tuple[str, str, int, int, int, int]]:
    """Binomial counts from a :class:`experiments.synthetic.DemandTruth` for catalog SKUs."""
    rng = np.random.default_rng(seed)
    out = []
    for s, segment in enumerate(truth.segments):
        for j, sku in enumerate(sku_list_prices):
            list_price = sku_list_prices[sku]
            for ratio in ratios:
                price = round(list_price * ratio)
                p = float(truth.probability(s, j, price / list_price))
                out.append((segment, sku, price, list_price, trials, int(rng.binomial(trials, p))))
    return out
