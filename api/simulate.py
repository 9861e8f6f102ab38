"""Fill a database with simulated traffic, so the demo shows a working engine.

``pricing-engine seed-demo --simulate N`` runs N simulated visitors through the same
services the HTTP API uses (quotes with experiments and promotions, outcomes with
redemption accounting), refits the demand model half-way so the second half is priced by
Thompson sampling, and leaves a running experiment (list price vs engine), a published
model, promotions with spend, and a decision log to analyse.

Customers are the market simulator's (:func:`demo_market` builds an
:class:`experiments.simulator.Market` over the demo catalog): a known logistic demand per
segment, SKU and category (seeded), the same form the engine fits, with a promotion lift,
evaluated at the final price each line was served; the truth is stored in nothing the
engine can read.
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from tqdm import tqdm

from api.db import read_only
from api.orm import Experiment, Product, Segment
from api.posterior_cache import PosteriorCache
from api.schemas.experiments import EXAMPLE_EXPERIMENT, ExperimentIn
from api.schemas.outcomes import OutcomeIn
from api.schemas.quotes import QuoteRequest
from api.services.context import ContextSchemaCache
from api.services.demand_models import DATA_LAG, refit
from api.services.experiments import ExperimentCache, put_experiment, set_status
from api.services.guardrails import GuardrailCache
from api.services.outcomes import record_outcome
from api.services.promotions import load_active
from api.services.quotes import QuoteService
from experiments.simulator import Market, PromotionSpec
from pricing.money import from_minor
from pricing.policy import ListPricePolicy, PricePolicy, ThompsonPricePolicy
from pricing.promotions import Promotion

__all__ = ["SimulationReport", "demo_market", "simulate"]

DEMO_EXPERIMENT = "engine-vs-list"


def _draw(seed: int, *parts: str) -> float:
    """A standard normal fixed by ``seed`` and the names (stable across runs and catalogs)."""
    key = zlib.crc32("|".join((str(seed), *parts)).encode())
    return float(np.random.default_rng(key).standard_normal())


def demo_market(
    products: Sequence[Product],
    segments: Sequence[str],
    promotions: Sequence[Promotion],
    *,
    seed: int = 7,
    base: float = -1.3,
    promotion_lift: float = 0.35,
) -> Market:
    """The demo's customers as a :class:`~experiments.simulator.Market` over the catalog.

    Per name, a fixed normal draw sets each parameter, so the truth of a segment or SKU
    does not change when others are added: segment intercept 0.35 z, SKU intercept
    ``base`` + 0.5 z, elasticity 1.8 · exp(0.35 z) per (segment, category), and the same
    framing lift for every promotion. Segments arrive with weights falling linearly from 2
    to 1 in the order given; SKUs uniformly.
    """
    skus = [p.sku for p in products]
    categories = sorted({p.category for p in products})
    specs = []
    for promo in promotions:
        if promo.kind == "percent_off":
            percent = round(float(promo.percent_off or 0), 2)  # the spec keeps two decimals
            specs.append(PromotionSpec(promo.key, promo.kind, percent_off=percent))
        elif promo.kind == "amount_off":
            amount = int(promo.amount_off_minor or 0)
            specs.append(PromotionSpec(promo.key, promo.kind, amount_off_minor=amount))
        else:
            cost = int(promo.shipping_cost_minor or 0)
            specs.append(PromotionSpec(promo.key, promo.kind, shipping_cost_minor=cost))
    weights = np.linspace(2.0, 1.0, len(segments))
    return Market(
        segments=tuple(segments),
        skus=tuple(skus),
        categories=tuple(categories),
        sku_category=np.array([categories.index(p.category) for p in products]),
        list_price_minor=np.array([p.list_price_minor for p in products]),
        unit_cost_minor=np.array([p.unit_cost_minor for p in products]),
        segment_mix=weights / weights.sum(),
        sku_mix=np.full(len(skus), 1.0 / len(skus)),
        a_seg=np.array([0.35 * _draw(seed, "seg", s) for s in segments]),
        a_sku=np.array([base + 0.5 * _draw(seed, "sku", sku) for sku in skus]),
        log_e=np.array(
            [[math.log(1.8) + 0.35 * _draw(seed, "e", s, c) for c in categories] for s in segments]
        ),
        promotions=tuple(specs),
        lift=np.full(len(specs), promotion_lift),
        segment_lift=np.zeros((len(segments), len(specs))),
        currency=products[0].currency if products else "USD",
    )


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
        body = ExperimentIn.model_validate(EXAMPLE_EXPERIMENT)
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
    floor: float | None = 0.01,
    prior_at_list: bool = False,
) -> SimulationReport:
    """Run ``visitors`` simulated customers through the engine (see the module docstring).

    ``prior_at_list``: the half-way refit centres each category's elasticity prior where
    its list prices are optimal, as the service's refits do with ``PRICING_PRIOR_AT_LIST``.
    """
    rng = np.random.default_rng(seed)
    _experiment(sessions)
    reader = read_only(sessions)
    with reader() as session:
        products = list(session.scalars(select(Product).where(Product.active.is_(True))))
        segments = list(session.scalars(select(Segment.key).where(Segment.active.is_(True))))
        market = demo_market(products, segments, load_active(session), seed=seed)
    sku_index = {sku: j for j, sku in enumerate(market.skus)}
    promotion_index = {spec.key: k for k, spec in enumerate(market.promotions)}
    posterior = PosteriorCache(reader, poll_seconds=3600)
    posterior.refresh()
    guardrails = GuardrailCache(reader)
    experiments = ExperimentCache(reader)
    schemas = ContextSchemaCache(reader)

    def serving() -> Any:
        served = posterior.served
        return (str(served.snapshot_id), served.posterior) if served is not None else None

    quotes = QuoteService.build(sessions, guardrails=guardrails, context_schema=schemas)
    quotes.warm()
    engine: PricePolicy = ThompsonPricePolicy(
        serving, lambda: guardrails.get()[1], epsilon=epsilon, floor=floor, n_prices=n_prices,
        seed=seed,
    )
    control: PricePolicy = ListPricePolicy()
    refit_note = "no refit"
    decisions = conversions = 0
    half = visitors // 2
    bar = tqdm(range(visitors), desc="simulating visitors", disable=not progress)
    for t in bar:
        if t == half:
            if progress:
                bar.write(f"fitting the demand model on the first {half:,} visitors: "
                          f"{_describe_sampler(sampler_config)}...")  # fmt: skip
            started = time.perf_counter()
            refit_note = _refit(sessions, sampler_config, prior_at_list)
            if progress:
                bar.write(f"  {refit_note} ({time.perf_counter() - started:.0f} s)")
            posterior.refresh()
        customer = f"sim-{seed}-{t}"
        s = int(rng.choice(len(segments), p=market.segment_mix))
        segment = segments[s]
        n_lines = 1 + int(rng.random() < 0.3)
        lines = [products[int(i)] for i in rng.choice(len(products), size=n_lines, replace=False)]
        assigned = experiments.for_unit(customer)
        policy = control if assigned is not None and assigned.control else engine
        request = QuoteRequest.model_validate({
            "customer_id": customer, "segment": segment, "channel": "web",
            "lines": [{"sku": p.sku, "quantity": 1} for p in lines],
        })  # fmt: skip
        quote = quotes.create_sync(
            request, policy=policy, experiment=assigned, guardrail_version=guardrails.get()[0]
        )
        for line, product in zip(quote.lines, lines, strict=True):
            decisions += 1
            paid = line.final_price if line.final_price is not None else line.price
            ratio = float(paid / from_minor(product.list_price_minor, product.currency))
            k = promotion_index.get(line.promotion, -1) if line.promotion is not None else -1
            p_buy = float(market.probability_at_ratio(s, sku_index[product.sku], ratio, k))
            bought = rng.random() < p_buy
            conversions += int(bought)
            outcome = OutcomeIn(
                decision_id=line.decision_id, converted=bool(bought), quantity=int(bought),
                revenue=paid if bought else Decimal(0),
            )  # fmt: skip
            with sessions() as session:
                record_outcome(session, data=outcome)
    quotes.close()
    return SimulationReport(visitors, decisions, conversions, refit_note, DEMO_EXPERIMENT)


def _describe_sampler(sampler_config: dict[str, Any] | None) -> str:
    from pricing.demand import DemandModel

    sc = DemandModel.default_sampler_config | (sampler_config or {})
    if sc.get("method") == "advi":
        return f"ADVI, {int(sc['advi_iterations']):,} iterations"
    return (f"{int(sc['chains'])} chains x {int(sc['draws']):,} draws "
            f"(+{int(sc['tune']):,} tuning)")  # fmt: skip


def _refit(sessions: sessionmaker[Session], sampler_config: dict[str, Any] | None,
           prior_at_list: bool = False) -> str:  # fmt: skip
    from api.orm import utcnow

    # Offline, nothing else writes: the data lag (for open transactions) can be skipped.
    result = refit(
        sessions, sampler_config=sampler_config, now=utcnow() + DATA_LAG + timedelta(seconds=1),
        prior_at_list=prior_at_list,
    )
    state = "published" if result.published else f"rejected ({result.message})"
    return f"model version {result.snapshot_id} {state}: {result.n_cells} cells, {result.n_trials} trials"
