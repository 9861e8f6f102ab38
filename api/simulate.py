"""Fill a database with simulated traffic, so the demo shows a working engine.

``pricing-engine seed-demo --simulate N`` runs N simulated visitors through the same
services the HTTP API uses (quotes with experiments and promotions, outcomes with
redemption accounting), refits the demand model half-way so the second half is priced by
Thompson sampling, and leaves a running experiment (list price vs engine), a published
model, promotions with spend, and a decision log to analyse.

Customers follow a known logistic demand per segment, SKU and category (seeded), the
same form the engine fits, with a promotion lift; the truth is stored in nothing the
engine can read.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from tqdm import tqdm

from api.db import read_only
from api.orm import Experiment, Product, Segment
from api.posterior_cache import PosteriorCache
from api.schemas import OutcomeIn, QuoteRequest
from api.services.context import ContextSchemaCache
from api.services.experiments import ExperimentCache, ExperimentIn, put_experiment, set_status
from api.services.guardrails import GuardrailCache
from api.services.models import DATA_LAG, refit
from api.services.outcomes import record_outcome
from api.services.quotes import create_quote
from pricing.money import from_minor
from pricing.policy import ListPricePolicy, PricePolicy, ThompsonPricePolicy

__all__ = ["DemoTruth", "SimulationReport", "simulate"]

DEMO_EXPERIMENT = "engine-vs-list"


@dataclass(frozen=True)
class DemoTruth:
    """Ground truth of the simulated customers (logit scale)."""

    seed: int = 7
    base: float = -1.3
    promotion_lift: float = 0.35

    def _draw(self, *parts: str) -> float:
        key = zlib.crc32("|".join((str(self.seed), *parts)).encode())
        return float(np.random.default_rng(key).standard_normal())

    def probability(
        self, segment: str, sku: str, category: str, paid_ratio: float, promoted: bool
    ) -> float:
        """P(buy) for a visitor of ``segment`` offered ``sku`` at ``paid_ratio`` x list."""
        elasticity = math.exp(math.log(1.8) + 0.35 * self._draw("e", segment, category))
        eta = (self.base + 0.35 * self._draw("seg", segment) + 0.5 * self._draw("sku", sku)
               - elasticity * math.log(paid_ratio) + (self.promotion_lift if promoted else 0.0))  # fmt: skip
        return 1.0 / (1.0 + math.exp(-eta))


@dataclass(frozen=True)
class SimulationReport:
    """What the simulation did."""

    visitors: int
    decisions: int
    conversions: int
    refit: str
    experiment: str


def _experiment(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        row = session.get(Experiment, DEMO_EXPERIMENT)
        session.rollback()
        if row is not None:
            return
        body = ExperimentIn.model_validate({
            "name": "Personalized prices vs list price", "layer": "pricing",
            "description": "Demo: half the customers see list prices (holdout), half the engine.",
            "variants": [
                {"name": "control", "policy": "control", "allocation": 0.5, "holdout": True},
                {"name": "engine", "policy": "engine", "allocation": 0.5},
            ],
            "guardrail_metrics": [{"metric": "conversion_rate", "max_relative_drop": 0.05}],
        })  # fmt: skip
        put_experiment(session, key=DEMO_EXPERIMENT, body=body, actor=None)
    with sessions() as session:
        set_status(session, key=DEMO_EXPERIMENT, status="running", actor=None)


def simulate(
    sessions: sessionmaker[Session],
    *,
    visitors: int,
    seed: int = 7,
    sampler_config: dict[str, Any] | None = None,
    progress: bool = True,
    epsilon: float = 0.05,
    n_prices: int = 50,
) -> SimulationReport:
    """Run ``visitors`` simulated customers through the engine (see the module docstring)."""
    truth = DemoTruth(seed=seed)
    rng = np.random.default_rng(seed)
    _experiment(sessions)
    reader = read_only(sessions)
    with reader() as session:
        products = list(session.scalars(select(Product).where(Product.active.is_(True))))
        segments = list(session.scalars(select(Segment.key).where(Segment.active.is_(True))))
    posterior = PosteriorCache(reader, poll_seconds=3600)
    posterior.refresh()
    guardrails = GuardrailCache(reader)
    experiments = ExperimentCache(reader)
    schemas = ContextSchemaCache(reader)

    def serving() -> Any:
        served = posterior.served
        return (str(served.snapshot_id), served.posterior) if served is not None else None

    engine: PricePolicy = ThompsonPricePolicy(
        serving, lambda: guardrails.get()[1], epsilon=epsilon, n_prices=n_prices, seed=seed
    )
    control: PricePolicy = ListPricePolicy()
    refit_note = "no refit"
    decisions = conversions = 0
    half = visitors // 2
    weights = np.linspace(2.0, 1.0, len(segments))
    weights /= weights.sum()
    for t in tqdm(range(visitors), desc="simulating visitors", disable=not progress):
        if t == half:
            refit_note = _refit(sessions, sampler_config)
            posterior.refresh()
        customer = f"sim-{seed}-{t}"
        segment = segments[int(rng.choice(len(segments), p=weights))]
        n_lines = 1 + int(rng.random() < 0.3)
        lines = [products[int(i)] for i in rng.choice(len(products), size=n_lines, replace=False)]
        assigned = experiments.for_unit(customer)
        policy = control if assigned is not None and assigned.control else engine
        request = QuoteRequest.model_validate({
            "customer_id": customer, "segment": segment, "channel": "web",
            "lines": [{"sku": p.sku, "quantity": 1} for p in lines],
        })  # fmt: skip
        _version, schema = schemas.get()
        with sessions() as session:
            quote = create_quote(
                session, request=request, policy=policy,
                default_segment=segment, ttl=timedelta(minutes=15),
                guardrail_version=guardrails.get()[0], outcome_window=timedelta(hours=1),
                context_schema=schema, experiment=assigned,
            )  # fmt: skip
        for line, product in zip(quote.lines, lines, strict=True):
            decisions += 1
            paid = line.final_price if line.final_price is not None else line.price
            ratio = float(paid / from_minor(product.list_price_minor, product.currency))
            bought = rng.random() < truth.probability(segment, product.sku, product.category, ratio,
                                                      line.promotion is not None)  # fmt: skip
            conversions += int(bought)
            outcome = OutcomeIn(
                decision_id=line.decision_id, converted=bool(bought), quantity=int(bought),
                revenue=paid if bought else 0,
            )  # fmt: skip
            with sessions() as session:
                record_outcome(session, data=outcome)
    return SimulationReport(visitors, decisions, conversions, refit_note, DEMO_EXPERIMENT)


def _refit(sessions: sessionmaker[Session], sampler_config: dict[str, Any] | None) -> str:
    from api.orm import utcnow

    # Offline, nothing else writes: the data lag (for open transactions) can be skipped.
    result = refit(
        sessions, sampler_config=sampler_config, now=utcnow() + DATA_LAG + timedelta(seconds=1)
    )
    state = "published" if result.published else f"rejected ({result.message})"
    return f"model version {result.snapshot_id} {state}: {result.n_cells} cells, {result.n_trials} trials"
