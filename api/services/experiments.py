"""Experiments: variants are policies; customers are assigned deterministically; results
with honest uncertainty (see :mod:`experiments.stats`).

A running experiment assigns every quoted customer to a variant by
``hash(customer id, salt)`` (:mod:`experiments.assignment`): the same variant in every
worker and after restarts. Each decision records its assignment(s); the first exposure of a
customer is recorded once per experiment. Variants:

- ``control``: the list price for everyone, no promotions (not personalized);
- ``engine``: Thompson sampling, optionally with another stored guardrail version or
  exploration floor;
- ``holdout: true`` on any variant: its decisions are logged and reported but never
  learned from.

Experiments on the same traffic must declare different layers; a second running
experiment in the same layer (or either without a layer) is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session, sessionmaker

from api.cache import TTLCache
from api.errors import Conflict, FieldProblem, Invalid, NotFound
from api.orm import (
    Decision,
    DecisionAssignment,
    Experiment,
    ExperimentExposure,
    GuardrailVersion,
    Outcome,
    utcnow,
)
from api.schemas.experiments import (
    METRICS,
    ExperimentIn,
    ExperimentPublic,
    HarmCheck,
    LiftResult,
    ResultsOut,
    VariantResult,
)
from api.security import Principal
from api.services.audit import SYSTEM, record_change
from experiments.assignment import assign
from experiments.stats import (
    VariantStats,
    do_no_harm,
    relative_lift,
    sample_ratio_mismatch,
    summarize,
)
from pricing.money import CURRENCY_EXPONENTS

__all__ = [
    "ExperimentCache",
    "QuoteExperiment",
    "experiment_results",
    "get_experiment",
    "list_experiments",
    "public",
    "put_experiment",
    "set_status",
]



def public(row: Experiment) -> ExperimentPublic:
    """API view of an experiment row."""
    return ExperimentPublic(
        key=row.key, name=row.name, description=row.description, layer=row.layer, salt=row.salt,
        status=row.status, variants=row.variants, guardrail_metrics=row.guardrail_metrics,
        created_at=row.created_at, created_by=row.created_by, started_at=row.started_at,
        stopped_at=row.stopped_at,
    )  # fmt: skip


def _validate(session: Session, body: ExperimentIn) -> None:
    problems: list[FieldProblem] = []
    total = sum(v.allocation for v in body.variants)
    if abs(total - 1.0) > 1e-9:
        problems.append(
            FieldProblem(["body", "variants"], f"allocations must sum to 1 (they sum to {total:g})")
        )
    seen: set[str] = set()
    for i, v in enumerate(body.variants):
        here: list[str | int] = ["body", "variants", i]
        if v.name in seen:
            problems.append(FieldProblem([*here, "name"], f"variant {v.name!r} appears twice"))
        seen.add(v.name)
        if v.policy == "control" and (
            v.guardrail_version is not None or v.exploration_epsilon is not None
        ):
            problems.append(FieldProblem(
                [*here, "policy"], "a control variant serves list prices: no guardrails or exploration"
            ))  # fmt: skip
        if (
            v.guardrail_version is not None
            and session.get(GuardrailVersion, v.guardrail_version) is None
        ):
            problems.append(FieldProblem(
                [*here, "guardrail_version"], f"unknown guardrail version {v.guardrail_version}"
            ))  # fmt: skip
    if problems:
        raise Invalid(problems)


def put_experiment(
    session: Session, *, key: str, body: ExperimentIn, actor: Principal | None
) -> tuple[ExperimentPublic, bool]:
    """Create an experiment, or redefine a draft one (audited). Running/stopped ones: :class:`Conflict`."""
    with session.begin():
        _validate(session, body)
        row = session.get(Experiment, key, with_for_update=True)
        before = public(row).model_dump(mode="json") if row is not None else None
        if row is not None and row.status != "draft":
            raise Conflict(["path", "key"], f"experiment {key!r} is {row.status}: it can no longer change"
            )  # fmt: skip
        values: dict[str, Any] = {
            "name": body.name, "description": body.description, "layer": body.layer,
            "salt": body.salt or key, "variants": [v.model_dump() for v in body.variants],
            "guardrail_metrics": [m.model_dump() for m in body.guardrail_metrics],
        }  # fmt: skip
        if row is None:
            row = Experiment(
                key=key, status="draft", created_by=actor.name if actor else SYSTEM, **values
            )
            session.add(row)
        else:
            for name, value in values.items():
                setattr(row, name, value)
        session.flush()
        out = public(row)
        record_change(
            session, actor=actor, action="create" if before is None else "update",
            entity="experiment", entity_id=key, before=before, after=out.model_dump(mode="json"),
        )  # fmt: skip
    return out, before is None


def set_status(
    session: Session, *, key: str, status: str, actor: Principal | None
) -> ExperimentPublic:
    """Start (draft → running) or stop (running → stopped) an experiment (audited)."""
    with session.begin():
        row = session.get(Experiment, key, with_for_update=True)
        if row is None:
            raise NotFound(["path", "key"], f"unknown experiment {key!r}")
        wanted_from = {"running": "draft", "stopped": "running"}[status]
        if row.status != wanted_from:
            raise Conflict(["path", "key"], f"experiment {key!r} is {row.status}, not {wanted_from}"
            )  # fmt: skip
        if status == "running":
            running = session.scalars(
                select(Experiment).where(Experiment.status == "running", Experiment.key != key)
            ).all()
            for other in running:
                if row.layer is None or other.layer is None or other.layer == row.layer:
                    raise Conflict(["body", "layer"],
                        f"experiment {other.key!r} is running on the same traffic (layer "
                        f"{other.layer!r}); declare different layers to overlap"
                    )  # fmt: skip
            row.started_at = utcnow()
        else:
            row.stopped_at = utcnow()
        before = row.status
        row.status = status
        record_change(
            session, actor=actor, action="start" if status == "running" else "stop",
            entity="experiment", entity_id=key, before={"status": before}, after={"status": status},
        )  # fmt: skip
        return public(row)


def get_experiment(session: Session, key: str) -> Experiment:
    """The experiment, or :class:`NotFound` naming ``key``."""
    row = session.get(Experiment, key)
    if row is None:
        raise NotFound(["path", "key"], f"unknown experiment {key!r}")
    return row


def list_experiments(session: Session) -> list[ExperimentPublic]:
    """Every experiment, newest first."""
    rows = session.scalars(select(Experiment).order_by(Experiment.created_at.desc()))
    return [public(r) for r in rows]


# --------------------------------------------------------------------------- quotes
@dataclass(frozen=True)
class QuoteExperiment:
    """What running experiments decide for one quote.

    Attributes
    ----------
    assignments : tuple of (experiment key, variant)
    control : bool
        Some assigned variant is a control: list prices, no promotions.
    holdout : bool
        Some assigned variant is a holdout: the decisions are never learned from.
    guardrail_version, epsilon : int or None, float or None
        Overrides of the engine's settings (the first experiment that sets one wins).
    """

    assignments: tuple[tuple[str, str], ...]
    control: bool = False
    holdout: bool = False
    guardrail_version: int | None = None
    epsilon: float | None = None

    @property
    def label(self) -> str | None:
        """Short label for the decision log (``key:variant`` joined by ``;``)."""
        if not self.assignments:
            return None
        return ";".join(f"{k}:{v}" for k, v in self.assignments)[:64]


def _running(session: Session) -> list[tuple[str, str, list[dict[str, Any]]]]:
    rows = session.scalars(
        select(Experiment)
        .where(Experiment.status == "running")
        .order_by(Experiment.started_at, Experiment.key)
    )
    return [(r.key, r.salt, list(r.variants)) for r in rows]


class ExperimentCache(TTLCache[list[tuple[str, str, list[dict[str, Any]]]]]):
    """Running experiments for the quote path, re-read at most every ``ttl`` seconds."""

    def __init__(self, sessions: sessionmaker[Session], ttl: float = 1.0) -> None:
        super().__init__(sessions, _running, ttl)

    def for_unit(self, unit_id: str) -> QuoteExperiment | None:
        """Assignments of ``unit_id`` in every running experiment (None when none runs)."""
        running = self.get()
        if not running:
            return None
        assignments = []
        control = holdout = False
        guardrail_version: int | None = None
        epsilon: float | None = None
        for key, salt, variants in running:
            name = assign(unit_id, salt, [(v["name"], float(v["allocation"])) for v in variants])
            variant = next(v for v in variants if v["name"] == name)
            assignments.append((key, name))
            control |= variant["policy"] == "control"
            holdout |= bool(variant.get("holdout"))
            if guardrail_version is None and variant.get("guardrail_version") is not None:
                guardrail_version = int(variant["guardrail_version"])
            if epsilon is None and variant.get("exploration_epsilon") is not None:
                epsilon = float(variant["exploration_epsilon"])
        return QuoteExperiment(tuple(assignments), control, holdout, guardrail_version, epsilon)


# --------------------------------------------------------------------------- results


def variant_stats(
    session: Session, key: str
) -> tuple[dict[str, VariantStats], set[str], dict[str, list[Decimal]]]:
    """Sufficient statistics per variant (sums and sums of squares per visitor), the
    currencies seen, and exact revenue and profit totals per variant (currency units)."""
    visitors = {
        variant: int(n)
        for variant, n in session.execute(
            select(ExperimentExposure.variant, func.count())
            .where(ExperimentExposure.experiment_key == key)
            .group_by(ExperimentExposure.variant)
        )
    }
    converted = case((Outcome.converted.is_(True), 1), else_=0)
    revenue = func.coalesce(Outcome.revenue_minor, 0)
    profit = case(
        (Outcome.converted.is_(True),
         Outcome.revenue_minor - Decision.unit_cost_minor * Outcome.quantity
         - Decision.promotion_cost_minor),
        else_=0,
    )  # fmt: skip
    per_unit = (
        select(DecisionAssignment.variant, Decision.customer_id, Decision.currency,
               func.max(converted), func.sum(revenue), func.sum(profit))
        .join(Decision, Decision.id == DecisionAssignment.decision_id)
        .outerjoin(Outcome, Outcome.decision_id == Decision.id)
        .where(DecisionAssignment.experiment_key == key)
        .group_by(DecisionAssignment.variant, Decision.customer_id, Decision.currency)
    )  # fmt: skip
    acc: dict[str, list[float]] = {}
    exact: dict[str, list[Decimal]] = {}
    currencies: set[str] = set()
    for variant, _unit, currency, conv, rev, prof in session.execute(per_unit):
        exponent = CURRENCY_EXPONENTS.get(currency, 2)
        rev_units = Decimal(int(rev or 0)).scaleb(-exponent)
        prof_units = Decimal(int(prof or 0)).scaleb(-exponent)
        r, p = float(rev_units), float(prof_units)
        currencies.add(currency)
        a = acc.setdefault(variant, [0.0, 0.0, 0.0, 0.0, 0.0])
        a[0] += int(conv or 0)
        a[1] += r
        a[2] += r * r
        a[3] += p
        a[4] += p * p
        totals = exact.setdefault(variant, [Decimal(0), Decimal(0)])
        totals[0] += rev_units
        totals[1] += prof_units
    out = {}
    for name, n in visitors.items():
        conv, rs, rss, ps, pss = acc.get(name, [0.0] * 5)
        out[name] = VariantStats(name, n, int(conv), rs, rss, ps, pss)
    return out, currencies, exact


def _per_visitor(total: Decimal, visitors: int, exponent: int) -> Decimal | None:
    if visitors == 0:
        return None
    return (total / visitors).quantize(Decimal(1).scaleb(-(exponent + 2)))


def experiment_results(
    session: Session, *, key: str, baseline: str | None = None, credible_level: float = 0.95
) -> ResultsOut:
    """Results of an experiment; degenerate data gives messages, never errors.

    Raises
    ------
    NotFound
        An unknown experiment.
    Invalid
        Naming ``baseline`` for an unknown variant.
    """
    row = get_experiment(session, key)
    variants = row.variants
    names = [v["name"] for v in variants]
    if baseline is None:
        baseline = next((v["name"] for v in variants if v["policy"] == "control"), names[0])
    elif baseline not in names:
        raise Invalid(
            ["query", "baseline"],
            f"unknown variant {baseline!r}; variants: {', '.join(names)}",
        )
    found, currencies, exact = variant_stats(session, key)
    currency = next(iter(currencies)) if len(currencies) == 1 else None
    exponent = CURRENCY_EXPONENTS.get(currency or "", 2)
    messages: list[str] = []
    if len(currencies) > 1:
        messages.append(
            f"money metrics mix currencies {sorted(currencies)}: compare them per currency"
        )
    stats = {n: found.get(n, VariantStats(n, 0, 0, 0.0, 0.0, 0.0, 0.0)) for n in names}
    if sum(s.visitors for s in stats.values()) == 0:
        messages.append("no visitors yet: start the experiment and send traffic")
    results = []
    for v in variants:
        summary = summarize(stats[v["name"]])
        revenue, profit = exact.get(v["name"], [Decimal(0), Decimal(0)])
        places = Decimal(1).scaleb(-exponent)
        results.append(VariantResult(
            name=v["name"], policy=v["policy"], allocation=float(v["allocation"]),
            holdout=bool(v.get("holdout")), visitors=summary.visitors,
            conversions=summary.conversions, currency=currency,
            revenue=revenue.quantize(places), profit=profit.quantize(places),
            conversion_rate=summary.conversion_rate,
            revenue_per_visitor=_per_visitor(revenue, summary.visitors, exponent),
            profit_per_visitor=_per_visitor(profit, summary.visitors, exponent),
        ))  # fmt: skip
    lifts = []
    for v in variants:
        if v["name"] == baseline:
            continue
        for metric in METRICS:
            lift = relative_lift(
                stats[v["name"]], stats[baseline], metric, credible_level=credible_level
            )
            lifts.append(LiftResult(
                variant=v["name"], metric=metric, estimate=lift.estimate, se=lift.se,
                lower=lift.lower, upper=lift.upper, prob_better=lift.prob_better,
                expected_loss=lift.expected_loss, expected_loss_control=lift.expected_loss_control,
                message=lift.message,
            ))  # fmt: skip
    observed = [stats[n].visitors for n in names]
    if sum(observed) == 0:
        srm: dict[str, Any] = {"flagged": False, "p_value": None, "message": "no visitors yet"}
    else:
        test = sample_ratio_mismatch(observed, [float(v["allocation"]) for v in variants])
        srm = {"flagged": test.flagged, "p_value": test.p_value, "statistic": test.statistic,
               "dof": test.dof, "message": test.message}  # fmt: skip
        if test.flagged:
            messages.append(
                "sample ratio mismatch: the split differs from the allocation; "
                "do not trust the lifts until it is explained"
            )
    harm = []
    for check in row.guardrail_metrics:
        for v in variants:
            if v["name"] == baseline:
                continue
            verdict = do_no_harm(
                stats[v["name"]], stats[baseline], check["metric"], check["max_relative_drop"]
            )
            harm.append(HarmCheck(
                variant=v["name"], metric=check["metric"],
                max_relative_drop=check["max_relative_drop"], status=verdict.status,
                probability=verdict.probability, message=verdict.message,
            ))  # fmt: skip
    return ResultsOut(
        key=key, status=row.status, currency=currency,
        baseline=baseline, credible_level=credible_level, variants=results, lifts=lifts, srm=srm,
        do_no_harm=harm, messages=messages,
    )  # fmt: skip
