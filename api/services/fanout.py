"""Fanned-out refits: one fit per category, any number of workers, one publish.

A run (:func:`plan`) fixes the base (the newest published *full* fit, whose shared
parameters every category fit holds at their posterior means: :mod:`pricing.fanout`), the
data watermark and the categories. Each category's job (:func:`fit_category`) fits its own
parameters to its cells and stores the draws in ``category_fits``; the job that stores the
last part says so, and the publish job (:func:`publish`) gathers the parts behind the same
diagnostics gate as a full fit, writes one snapshot and deletes the parts in the same
transaction. :func:`refit_fanout` does it all in one process (SQLite; tests; the CLI).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from api.db import read_only
from api.orm import CategoryFit, Decision, ModelSnapshot, Product, utcnow
from api.services.context import current_schema
from api.services.demand_models import (
    DATA_LAG,
    PUBLISHED,
    REJECTED,
    RefitResult,
    change_points,
    latest_priors,
    load_cells,
    load_posterior,
)

__all__ = [
    "FanoutPlan", "fit_category", "full_fit", "in_flight", "plan", "publish", "refit_fanout",
    "refit_progress",
]

log = logging.getLogger("pricing.models")

#: Published snapshots looked through for the newest full fit.
_LOOK_BACK = 200
#: The row a run is planned with (marks it in flight until it is published).
PLAN_MARKER = "__plan__"
#: A run not published within this long is taken for dead (its jobs failed for good).
STALE_AFTER = timedelta(hours=1)


@dataclass(frozen=True)
class FanoutPlan:
    """One fanned-out refit: its id, base snapshot, data watermark and categories."""

    run_id: str
    base_snapshot_id: int
    watermark: datetime
    categories: tuple[str, ...]

    def to_job(self) -> dict[str, Any]:
        """The plan as job arguments (JSON)."""
        return {"run_id": self.run_id, "base_snapshot_id": self.base_snapshot_id,
                "watermark": self.watermark.isoformat(), "expected": len(self.categories)}  # fmt: skip


def full_fit(session: Session) -> ModelSnapshot | None:
    """The newest published snapshot that is a full joint fit (not itself fanned out)."""
    rows = session.scalars(
        select(ModelSnapshot).where(ModelSnapshot.status == PUBLISHED)
        .order_by(ModelSnapshot.id.desc()).limit(_LOOK_BACK)
    )  # fmt: skip
    for row in rows:
        if "fanout" not in (row.diagnostics or {}) and row.draws is not None:
            return row
    return None


def plan(sessions: sessionmaker[Session], *, now: datetime | None = None) -> FanoutPlan:
    """A new run over every category with data, based on the newest full fit.

    Raises
    ------
    ValueError
        No full fit to hold the shared parameters at, or no data.
    """
    watermark = (now or utcnow()) - DATA_LAG
    with read_only(sessions)() as session:
        base = full_fit(session)
        if base is None:
            raise ValueError("a fanned-out refit needs a published full fit first")
        categories = tuple(sorted(session.scalars(
            select(Product.category).join(Decision, Decision.sku == Product.sku).distinct()
        )))  # fmt: skip
    if not categories:
        raise ValueError("no decisions yet: nothing to fit")
    run = FanoutPlan(str(uuid.uuid4()), int(base.id), watermark, categories)
    with sessions() as session, session.begin():
        # Dead runs' parts go; this run is marked in flight (refit_reason waits for it).
        session.execute(delete(CategoryFit).where(CategoryFit.created_at < utcnow() - 24 * STALE_AFTER))
        session.add(CategoryFit(run_id=run.run_id, category=PLAN_MARKER, expected=len(categories),
                                base_snapshot_id=run.base_snapshot_id, data_watermark=watermark,
                                meta={"plan": True, "categories": list(categories)},
                                draws=b""))  # fmt: skip
    return run


def in_flight(session: Session) -> str | None:
    """The id of a fanned-out refit planned in the last hour and not yet published."""
    return session.scalar(
        select(CategoryFit.run_id).where(CategoryFit.category == PLAN_MARKER,
                                         CategoryFit.created_at > utcnow() - STALE_AFTER).limit(1)
    )  # fmt: skip


def fit_category(
    sessions: sessionmaker[Session],
    *,
    run_id: str,
    base_snapshot_id: int,
    watermark: datetime,
    category: str,
    expected: int,
    sampler_config: dict[str, Any] | None = None,
    missing_outcome: str = "non_conversion",
    half_life_days: float = 0.0,
) -> bool:
    """Fit one category with the base's shared parameters held fixed; store the draws.

    Idempotent per (run, category): a retry of a job that already stored its part does
    nothing. Returns True when every category of the run is now stored (the caller then
    queues :func:`publish`).
    """
    from pricing.fanout import SharedParameters, category_model  # PyMC: here only

    with read_only(sessions)() as session:
        done = session.scalar(select(func.count()).select_from(CategoryFit).where(
            CategoryFit.run_id == run_id, CategoryFit.category == category))  # fmt: skip
        if not done:
            base = session.get(ModelSnapshot, base_snapshot_id)
            if base is None:
                raise ValueError(f"base snapshot {base_snapshot_id} is gone")
            posterior = load_posterior(base)
            _version, schema = current_schema(session)
            # A change in demand detected by the last full refit holds here too (its diagnostics).
            found = base.diagnostics or {}
            cells = load_cells(session, until=watermark, missing=missing_outcome, schema=schema,
                               category=category, half_life_days=half_life_days,
                               changes=change_points(found),
                               weight_before=float(found.get("change_weight_before", 1.0)))  # fmt: skip
            priors = latest_priors(session)
            # A category keeps the base fit's prior at list, if it had one (PRICING_PRIOR_AT_LIST):
            # the published snapshot carries the base's model configuration.
            anchor = (base.model_config_json or {}).get("category_log_elasticity_anchor")
            if anchor:
                priors = priors | {"category_log_elasticity_anchor": anchor}
    if not done:
        stored = None
        if len(cells):
            model = category_model(SharedParameters.from_posterior(posterior),
                                   model_config=priors, sampler_config=sampler_config)  # fmt: skip
            model.fit(cells)
            part = model.category_draws(posterior.n_draws, cells)
            stored = CategoryFit(run_id=run_id, category=category, expected=expected,
                                 base_snapshot_id=base_snapshot_id, data_watermark=watermark,
                                 meta=part.to_meta(), draws=part.to_bytes())  # fmt: skip
        else:  # no learnable labels yet: the category keeps the base's values
            stored = CategoryFit(run_id=run_id, category=category, expected=expected,
                                 base_snapshot_id=base_snapshot_id, data_watermark=watermark,
                                 meta={"category": category, "empty": True}, draws=b"")  # fmt: skip
        try:
            with sessions() as session, session.begin():
                session.add(stored)
        except IntegrityError:
            pass  # a twin of this job stored it first
    return _stored(sessions, run_id) >= expected


def _stored(sessions: sessionmaker[Session], run_id: str) -> int:
    with read_only(sessions)() as session:
        return session.scalar(select(func.count()).select_from(CategoryFit).where(
            CategoryFit.run_id == run_id, CategoryFit.category != PLAN_MARKER)) or 0  # fmt: skip


def publish(
    sessions: sessionmaker[Session],
    *,
    run_id: str,
    n_draws: int = 500,
    sampler_config: dict[str, Any] | None = None,
    missing_outcome: str = "non_conversion",
) -> RefitResult | None:
    """Gather a run's parts into one snapshot behind the diagnostics gate.

    Returns None when the run is incomplete or already published. A run that fails the
    gate is recorded as a rejected snapshot naming the categories at fault; the previous
    snapshot keeps serving.
    """
    from pricing.demand import DemandModel
    from pricing.fanout import CategoryDraws, gate, gather

    with sessions() as session, session.begin():
        every = list(session.scalars(
            select(CategoryFit).where(CategoryFit.run_id == run_id).with_for_update()
        ))  # fmt: skip
        rows = [r for r in every if r.category != PLAN_MARKER]
        if not rows or len(rows) < rows[0].expected:
            return None
        base = session.get(ModelSnapshot, rows[0].base_snapshot_id)
        assert base is not None
        parts = [CategoryDraws.from_stored(r.meta, r.draws) for r in rows if not r.meta.get("empty")]
        if not parts:  # no category had labels to learn from: nothing to publish
            session.execute(delete(CategoryFit).where(CategoryFit.run_id == run_id))
            log.info("fan-out refit %s: no category had new labels; nothing published", run_id)
            return None
        config = DemandModel.default_sampler_config | (sampler_config or {})
        verdict = gate(parts, max_rhat=float(config["max_rhat"]),
                       min_ess_bulk=float(config["min_ess_bulk"]),
                       max_divergences=int(config["max_divergences"]))  # fmt: skip
        published = bool(verdict["passed"])
        message = "" if published else "not published: " + "; ".join(verdict["reasons"])
        watermark = rows[0].data_watermark
        row = ModelSnapshot(
            status=PUBLISHED if published else REJECTED,
            method=str(parts[0].diagnostics.get("method", "nuts")) if parts else "nuts",
            approximate=False, config_hash=base.config_hash,
            model_config_json=dict(base.model_config_json),
            sampler_config_json=dict(config), data_watermark=watermark,
            n_cells=sum(p.n_cells for p in parts), n_trials=sum(p.n_trials for p in parts),
            n_conversions=sum(p.n_conversions for p in parts),
            diagnostics={**verdict, "fanout": {"base_snapshot": base.id, "run_id": run_id,
                                               "categories": len(rows), "refitted": len(parts)},
                         # the base fit's change point holds until a full refit moves it
                         **{k: v for k, v in (base.diagnostics or {}).items()
                            if k in ("change_since", "change_by_category", "change_weight_before")}},
            message=message,
        )  # fmt: skip
        session.add(row)
        session.flush()
        if published:
            posterior = gather(load_posterior(base), parts, meta={
                "version": str(row.id), "missing_outcome": missing_outcome,
                "fanout": {"base_snapshot": base.id, "run_id": run_id},
                "diagnostics": {k: v for k, v in verdict.items() if k != "reasons"},
            })  # fmt: skip
            if posterior.n_draws != n_draws:
                log.info("fan-out %s: %d draws (the base's)", run_id, posterior.n_draws)
            row.draws = posterior.to_bytes()
            row.log_weights = posterior.log_weights.tobytes()
            row.ess = posterior.ess
            row.weights_updated_at = utcnow()
        session.execute(delete(CategoryFit).where(CategoryFit.run_id == run_id))
        snapshot_id = int(row.id)
    log.info("fan-out refit %s -> snapshot %s: %s", run_id, snapshot_id,
             "published" if published else message)  # fmt: skip
    return RefitResult(snapshot_id, published, verdict, row.n_cells, row.n_trials, message)


def refit_fanout(
    sessions: sessionmaker[Session],
    *,
    sampler_config: dict[str, Any] | None = None,
    missing_outcome: str = "non_conversion",
    now: datetime | None = None,
    half_life_days: float = 0.0,
) -> RefitResult:
    """Plan, fit every category in turn and publish, in this process."""
    run = plan(sessions, now=now)
    for category in run.categories:
        fit_category(
            sessions, run_id=run.run_id, base_snapshot_id=run.base_snapshot_id,
            watermark=run.watermark, category=category, expected=len(run.categories),
            sampler_config=sampler_config, missing_outcome=missing_outcome,
            half_life_days=half_life_days,
        )  # fmt: skip
    result = publish(sessions, run_id=run.run_id, sampler_config=sampler_config,
                     missing_outcome=missing_outcome)  # fmt: skip
    assert result is not None, "every category was stored"
    return result


def refit_progress(session: Session) -> dict[str, Any]:
    """What refits are under way, for people to follow (the console's models page).

    Returns
    -------
    dict
        ``jobs``: the queue's refit jobs waiting or running (PostgreSQL; task, status,
        queued or started at), and ``fanout``: the run in flight, if any, with the
        categories stored so far out of the run's total.
    """
    from api.migrate import queue_jobs

    jobs = queue_jobs(session, ("pricing.refit", "pricing.refit_category", "pricing.publish_fanout"),
                      ("todo", "doing"))  # fmt: skip
    run = in_flight(session)
    fanout = None
    if run is not None:
        stored = session.scalar(select(func.count()).select_from(CategoryFit).where(
            CategoryFit.run_id == run, CategoryFit.category != PLAN_MARKER)) or 0  # fmt: skip
        total = session.scalar(select(CategoryFit.expected).where(
            CategoryFit.run_id == run, CategoryFit.category == PLAN_MARKER)) or 0  # fmt: skip
        fanout = {"run_id": run, "done": int(stored), "total": int(total)}
    return {"jobs": jobs, "fanout": fanout}
