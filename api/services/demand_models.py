"""Demand model lifecycle: cells from the log, refit behind the diagnostics gate,
snapshots, and online reweighting between refits.

Exactly-once learning
---------------------
A fit covers outcomes recorded up to its *data watermark* W = (fit start - lag); the lag
outlasts any open transaction, so no outcome at or before W can still appear. Outcomes
after W are folded into the snapshot's importance weights by :func:`apply_new_outcomes`,
which records each one in ``applied_outcomes`` in the same transaction as the new
weights, under a lock on the snapshot row: nothing is applied twice, nothing is skipped.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, select
from sqlalchemy.orm import Session, sessionmaker

from api.db import read_only
from api.errors import Conflict, NotFound
from api.orm import AppliedDecision, Decision, ModelPrior, ModelSnapshot, Outcome, Product, utcnow
from api.schemas.demand_models import Elasticity, ModelPublic
from api.services.context import current_schema
from pricing.cells import CellRecord, Cells, decay_weight
from pricing.changes import ChangeDetection, ChangePoints, ChangeTest, Cusum, predictive_check
from pricing.context import ContextSchema
from pricing.posterior import DemandPosterior, outcome_log_likelihood

__all__ = [
    "DATA_LAG",
    "RefitResult",
    "UpdateResult",
    "apply_new_outcomes",
    "current_snapshot",
    "elasticities",
    "get_model",
    "list_models",
    "load_cells",
    "load_posterior",
    "netcdf",
    "refit",
]

log = logging.getLogger("pricing.models")

#: How far behind "now" a fit's data watermark is set (longer than any transaction).
DATA_LAG = timedelta(seconds=30)
PUBLISHED, REJECTED = "published", "rejected"


def _labels(
    session: Session, *, until: datetime, missing: str, since: datetime | None = None,
    category: str | None = None, by_day: bool = False,
) -> list[Any]:  # fmt: skip
    """Learning labels per (segment, sku, category, price, discount, list price, promotion,
    context): (count, conversions), for labels that became final in (since, until].

    A decision's label is its outcome when recorded inside the outcome window, else (once the
    window has closed) the default for ``missing``; a late outcome is never learned from.
    With ``by_day``, the decision's UTC day follows the context key in each row.
    """
    keys: tuple[Any, ...] = (Decision.segment, Decision.sku, Product.category, Decision.price_minor,
                             Decision.discount_minor, Decision.list_price_minor,
                             func.coalesce(Decision.promotion, ""), Decision.context_key)  # fmt: skip
    if by_day:
        keys = (*keys, func.date(Decision.created_at))
    converted = func.sum(func.cast(Outcome.converted, Decision.quantity.type))
    observed = (
        select(*keys, func.count(), converted)
        .join(Outcome, Outcome.decision_id == Decision.id)
        .join(Product, Product.sku == Decision.sku)
        .where(Outcome.recorded_at <= until, Outcome.late.is_(False), Decision.learn.is_(True))
        .group_by(*keys)
    )
    if since is not None:
        observed = observed.where(Outcome.recorded_at > since)
    if category is not None:
        observed = observed.where(Product.category == category)
    rows = [(*r[:-2], int(r[-2]), int(r[-1] or 0)) for r in session.execute(observed)]
    if missing != "ignore":
        in_window = exists().where(Outcome.decision_id == Decision.id, Outcome.late.is_(False))
        imputed = (
            select(*keys, func.count())
            .join(Product, Product.sku == Decision.sku)
            .where(Decision.outcome_deadline <= until, ~in_window, Decision.learn.is_(True))
            .group_by(*keys)
        )
        if since is not None:
            imputed = imputed.where(Decision.outcome_deadline > since)
        if category is not None:
            imputed = imputed.where(Product.category == category)
        value = 1 if missing == "conversion" else 0
        rows += [(*r[:-1], int(r[-1]), value * int(r[-1])) for r in session.execute(imputed)]
    return rows


def load_cells(
    session: Session,
    *,
    until: datetime,
    missing: str = "non_conversion",
    schema: ContextSchema | None = None,
    category: str | None = None,
    half_life_days: float = 0.0,
    since: datetime | None = None,
    changes: ChangePoints[date] | None = None,
    weight_before: float = 1.0,
) -> Cells:
    """Aggregate the log's learning labels final at ``until`` into cells.

    SQL ``GROUP BY`` over (segment, sku, category, price, discount, list price, promotion,
    declared context): the cost grows with cells, not events. The price ratio is the
    effective price (after the promotion's discount) over the list price.

    Parameters
    ----------
    until : datetime
        Data watermark.
    missing : {"non_conversion", "conversion", "ignore"}
        Label of a decision whose outcome window closed without an outcome.
    schema : ContextSchema, optional
        Declared context features to encode (none by default).
    category : str, optional
        Only this category's cells (a fanned-out refit's part).
    half_life_days : float
        Time decay (``PRICING_DEMAND_HALF_LIFE_DAYS``): a decision made ``a`` whole UTC
        days before ``until`` counts ``0.5 ** (a / half_life_days)`` (the cells carry
        decayed counts, :attr:`~pricing.cells.Cells.weighted_trials`); 0: no decay. The
        rows are then read per (cell, day): the read grows with cells × days of history,
        the fit still with cells.
    since : datetime, optional
        Only labels that became final after this (e.g. a snapshot's data watermark).
    changes, weight_before : ChangePoints and float, optional
        Detected changes in demand (:mod:`pricing.changes`): in a category whose regime
        began on ``changes.start(category)``, decisions made on UTC days before it count
        ``weight_before`` (times any decay), and the later ones are marked as the new
        regime (:attr:`~pricing.cells.CellRecord.regime`, whose shift the model fits); a
        category with no change point keeps every outcome at full weight. Read per day too.
    """
    schema = schema or ContextSchema()
    encoded: dict[str, tuple[float, ...]] = {}
    records = []
    decay = half_life_days > 0
    split = bool(changes)
    today = until.astimezone(UTC).date()
    for row in _labels(session, until=until, missing=missing, category=category,
                       by_day=decay or split, since=since):  # fmt: skip
        seg, sku, cat, price, discount, list_price, promo, key = row[:8]
        n, conv = row[-2], row[-1]
        weight, after = 1.0, False
        if decay or split:
            day = _as_date(row[8])
            age = max((today - day).days, 0)
            weight = decay_weight(age, half_life_days) if decay else 1.0
            start = changes.start(cat) if changes else None
            if start is not None:
                after = day >= start
                weight *= 1.0 if after else weight_before
        if key not in encoded:
            encoded[key] = tuple(schema.encode_key(key).tolist())
        records.append(CellRecord(seg, sku, cat, (price - discount) / list_price, promo, n, conv,
                                  encoded[key], weight, after))  # fmt: skip
    # the categories in a new regime, even those with no outcome since (their shift's prior)
    marked = {r.category for r in records if changes.start(r.category) is not None} if changes else None
    return Cells.from_records(records, schema.columns, regime_categories=marked)


def _as_date(value: Any) -> date:
    """A ``date()`` of SQL: a date (PostgreSQL) or an ISO string (SQLite)."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def latest_priors(session: Session) -> dict[str, Any]:
    """Model-config overrides from the newest imported prior (empty when none)."""
    row = session.scalar(select(ModelPrior).order_by(ModelPrior.id.desc()).limit(1))
    return dict(row.model_config_json) if row is not None else {}


@dataclass(frozen=True)
class RefitResult:
    """What a refit did: the snapshot id, whether it was published, and its diagnostics."""

    snapshot_id: int
    published: bool
    diagnostics: dict[str, Any]
    n_cells: int
    n_trials: int
    message: str


def refit(
    sessions: sessionmaker[Session],
    *,
    model_config: dict[str, Any] | None = None,
    sampler_config: dict[str, Any] | None = None,
    n_draws: int = 500,
    progressbar: bool = False,
    now: datetime | None = None,
    missing_outcome: str = "non_conversion",
    half_life_days: float = 0.0,
    first_fit: bool = False,
    prior_at_list: bool = False,
    change_detection: ChangeDetection | None = None,
) -> RefitResult:
    """Fit the demand model to the log and publish the snapshot if it passes the gate.

    ``half_life_days``: time decay of the data (:func:`load_cells`; 0: none).
    ``first_fit``: flag the snapshot as the service's first, cheap fit
    (``diagnostics["first_fit"]``, and its message); the updater refits it in full as soon
    as the outcomes have doubled.
    ``prior_at_list``: centre each category's elasticity prior where its list prices
    maximise expected profit (:func:`pricing.priors.list_price_anchors`, from the active
    catalogue and the cells' conversion at list); an anchor set in ``model_config`` wins.
    ``change_detection``: first test the outcomes since the serving snapshot's watermark
    against its posterior predictive (:func:`pricing.changes.predictive_check`); on a
    detection, in the categories where it shows (every one when none or all do; all with
    ``by_category`` off or when the CUSUM found it), outcomes from the UTC days before that
    watermark count ``weight_before`` and the later ones are the new regime, whose shift
    (common, plus a deviation per category) the model fits (:mod:`pricing.demand`). The
    change points are carried to later refits in the snapshot's diagnostics
    (``change_since`` for every category, ``change_by_category`` for those that moved on
    their own) until newer ones are found.

    A rejected fit is recorded with its diagnostics and the reason; the previous published
    snapshot keeps serving.

    Raises
    ------
    ValueError
        If there is no outcome to learn from yet.
    """
    watermark = (now or utcnow()) - DATA_LAG
    with read_only(sessions)() as session:
        _schema_version, schema = current_schema(session)
        changes, change_test, cusum, found_by, moved = (
            _detect_change(session, change_detection, watermark, missing_outcome, schema)
            if change_detection is not None else (ChangePoints[date](), None, None, None, None)
        )  # fmt: skip
        weight_before = change_detection.weight_before if change_detection is not None else 1.0
        cells = load_cells(session, until=watermark, missing=missing_outcome, schema=schema,
                           half_life_days=half_life_days, changes=changes,
                           weight_before=weight_before)  # fmt: skip
        priors = latest_priors(session)
        catalogue = (
            {p.sku: (p.category, int(p.list_price_minor), int(p.unit_cost_minor))
             for p in session.scalars(select(Product).where(Product.active))}
            if prior_at_list else {}
        )  # fmt: skip
    if len(cells) == 0:
        raise ValueError("no outcomes recorded yet: nothing to fit")
    from pricing.demand import DemandModel  # PyMC: only where a fit runs, not in API workers

    if prior_at_list:
        from pricing.priors import list_price_anchors

        priors = priors | {"category_log_elasticity_anchor": list_price_anchors(cells, catalogue)}
    model = DemandModel(model_config=priors | (model_config or {}), sampler_config=sampler_config)
    model.fit(cells, progressbar=progressbar)
    diagnostics = model.diagnostics_
    published = diagnostics.passed
    message = "" if published else "not published: " + "; ".join(diagnostics.reasons)
    changed: dict[str, Any] = {}
    if change_test is not None:
        changed["change_test"] = change_test.to_dict()
    if cusum is not None:
        changed["change_cusum"] = cusum.to_dict()
    if changes:
        changed |= change_points_to_dict(changes) | {"change_weight_before": weight_before}
        shift = model.regime_shift()
        if shift is not None:
            changed["regime_shift"] = shift
    if found_by is not None and moved is not None:
        where = f" in {', '.join(moved[1])}" if moved[1] is not None else ""
        how = (f"p = {change_test.p_value:.2g}" if found_by == "test" and change_test is not None
               else "CUSUM over refits")  # fmt: skip
        message = (f"demand changed{where} ({how}): outcomes before {moved[0]} count "
                   f"{weight_before:g}" + (f"; {message}" if message else ""))  # fmt: skip
    if found_by is not None:
        changed["change_found_by"] = found_by
    if first_fit:
        draws = model.sampler_config.get("draws")
        message = (f"first fit ({draws} draws per chain): a full refit follows when the outcomes "
                   f"have doubled" + (f"; {message}" if message else ""))  # fmt: skip
    with sessions() as session, session.begin():
        row = ModelSnapshot(
            status=PUBLISHED if published else REJECTED,
            method=diagnostics.method,
            approximate=diagnostics.approximate,
            config_hash=model.config_hash,
            model_config_json=model.config_dict(),
            sampler_config_json={k: v for k, v in model.sampler_config.items()},
            data_watermark=watermark,
            n_cells=len(cells),
            n_trials=cells.n_trials,
            n_conversions=int(cells.conversions.sum()),
            diagnostics={**diagnostics.to_dict(), "parameterisation": model.parameterisation_,
                         **({"first_fit": True} if first_fit else {}), **changed},
            message=message,
        )
        session.add(row)
        session.flush()
        if published:
            posterior = model.posterior(
                n_draws,
                meta={"version": str(row.id), "context_schema": schema.to_dict(),
                      "missing_outcome": missing_outcome},
            )  # fmt: skip
            row.draws = posterior.to_bytes()
            row.log_weights = posterior.log_weights.tobytes()
            row.ess = posterior.ess
            row.weights_updated_at = utcnow()
        snapshot_id = row.id
    log.info("refit %s: %s", snapshot_id, "published" if published else message)
    return RefitResult(
        snapshot_id, published, diagnostics.to_dict(), len(cells), cells.n_trials, message
    )


def change_points(diagnostics: dict[str, Any] | None) -> ChangePoints[date]:
    """The change points a snapshot's diagnostics carry; an entry this version cannot
    read is left out (the others hold)."""
    found = diagnostics if isinstance(diagnostics, dict) else {}

    def day(value: Any) -> date | None:
        try:
            return date.fromisoformat(str(value)) if value else None
        except ValueError:
            return None

    raw = found.get("change_by_category")
    by_category = {str(c): d for c, v in (raw.items() if isinstance(raw, dict) else ())
                   if (d := day(v)) is not None}  # fmt: skip
    return ChangePoints(day(found.get("change_since")), by_category)


def change_points_to_dict(points: ChangePoints[date]) -> dict[str, Any]:
    """Diagnostics entries of ``points`` (inverse of :func:`change_points`)."""
    return {
        **({"change_since": points.since.isoformat()} if points.since is not None else {}),
        **({"change_by_category": {c: d.isoformat() for c, d in sorted(points.by_category.items())}}
           if points.by_category else {}),
    }  # fmt: skip


def _detect_change(
    session: Session, detection: ChangeDetection, watermark: datetime, missing: str,
    schema: ContextSchema,
) -> tuple[ChangePoints[date], ChangeTest | None, Cusum | None, str | None,
           tuple[date, tuple[str, ...] | None] | None]:  # fmt: skip
    """The change points this refit should use, this refit's test, the CUSUM charts to
    carry (None when ``detection.cusum`` is off), what found a new change (``"test"``,
    ``"cusum"``; None when the serving snapshot's points, if any, carry on), and that
    change's day and categories (None: every category).

    The outcomes final since the serving snapshot's watermark were not in its fit: test them
    against its posterior as fitted (equal weights: the online updates have seen them). A
    detection starts a new regime on the watermark's UTC day in the categories where it
    shows (:meth:`pricing.changes.ChangeTest.moved_categories`; every one with
    ``detection.by_category`` off), or with ``detection.cusum_dating`` on the day a CUSUM
    excursion in the change's direction began when one was under way; a CUSUM that crosses
    its threshold starts one in every category on the day its excursion began (it watches
    the pooled surprise only); otherwise the serving snapshot's points (if any) carry on.
    """
    previous = current_snapshot(session)
    if previous is None or previous.draws is None:
        return ChangePoints(), None, (Cusum() if detection.cusum else None), None, None
    found = previous.diagnostics or {}
    points = change_points(found)
    charts = Cusum.from_dict(found.get("change_cusum")) if detection.cusum else None
    since = previous.data_watermark
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    fresh = load_cells(session, until=watermark, missing=missing, schema=schema, since=since)
    if len(fresh) == 0:
        return points, None, charts, None, None
    # The window's span in days: the test and the charts spend the budget per day of data,
    # whatever the refit cadence (pricing.changes).
    days = max((watermark - since).total_seconds() / 86_400.0, 1.0 / 86_400.0)
    level, threshold = detection.window(days)
    test = predictive_check(DemandPosterior.from_bytes(previous.draws), fresh, alpha=level)
    day = since.astimezone(UTC).date()
    began = None
    before = charts
    if charts is not None:
        charts, began = charts.step(test.pooled_z, day.isoformat(), detection.cusum_k, threshold, days)
    if test.detected:
        moved = test.moved_categories() if detection.by_category else None
        day = date.fromisoformat(detection.detection_label(before, test.pooled_z, day.isoformat()))
        log.warning("demand changed since %s in %s: %s", day,
                    ", ".join(moved) if moved else "every category", test.to_dict())  # fmt: skip
        return (points.moved(day, moved), test, (Cusum() if charts is not None else None), "test",
                (day, moved))  # fmt: skip
    if began is not None:
        log.warning("demand changed since %s (CUSUM over refits): %s", began, test.to_dict())
        start = date.fromisoformat(began)
        return points.moved(start, None), test, charts, "cusum", (start, None)
    return points, test, charts, None, None


def current_snapshot(session: Session) -> ModelSnapshot | None:
    """The newest published snapshot, or None."""
    return session.scalar(
        select(ModelSnapshot)
        .where(ModelSnapshot.status == PUBLISHED)
        .order_by(ModelSnapshot.id.desc())
        .limit(1)
    )


def load_posterior(row: ModelSnapshot) -> DemandPosterior:
    """The posterior of a published snapshot, with its current weights."""
    if row.draws is None or row.log_weights is None:
        raise ValueError(f"snapshot {row.id} has no draws (status {row.status})")
    posterior = DemandPosterior.from_bytes(row.draws)
    return posterior.with_stored_weights(row.log_weights, row.block_log_weights)


@dataclass(frozen=True)
class UpdateResult:
    """Outcome of one online update: how many outcomes were applied and the ESS after."""

    snapshot_id: int | None
    applied: int
    ess: float | None
    n_draws: int | None


def apply_new_outcomes(
    sessions: sessionmaker[Session],
    *,
    batch_size: int = 5000,
    missing_outcome: str = "non_conversion",
    now: datetime | None = None,
    blocks: bool = True,
) -> UpdateResult:
    """Fold labels that became final after the snapshot's watermark into its weights.

    Labels are in-window outcomes recorded after the watermark and, unless
    ``missing_outcome`` is ``ignore``, decisions whose outcome window closed (more than
    :data:`DATA_LAG` ago) after the watermark without one. Locks the snapshot row, so
    concurrent updaters serialise; the decisions learned from are written in the same
    transaction as the weights, so each is learned from once.

    With ``blocks`` (``PRICING_REWEIGHT_BLOCKS``) an outcome of a fitted (segment,
    category) block moves that block's weights only
    (:meth:`~pricing.posterior.DemandPosterior.reweight_blocks`); outcomes of levels the
    fit has not seen move the shared weights. Without, every outcome moves the shared
    weights (exact importance sampling of the whole posterior; its ESS falls faster).
    """
    with sessions() as session, session.begin():
        head = current_snapshot(session)
        if head is None:
            return UpdateResult(None, 0, None, None)
        row = session.scalar(
            select(ModelSnapshot).where(ModelSnapshot.id == head.id).with_for_update()
        )
        assert row is not None
        session.refresh(row)
        already = exists().where(
            and_(AppliedDecision.snapshot_id == row.id, AppliedDecision.decision_id == Decision.id)
        )
        columns = (Decision.id, Decision.segment, Decision.sku, Product.category,
                   Decision.price_minor, Decision.discount_minor, Decision.list_price_minor,
                   Decision.promotion, Decision.context_key)  # fmt: skip
        observed = (
            select(*columns, Outcome.converted)
            .join(Outcome, Outcome.decision_id == Decision.id)
            .join(Product, Product.sku == Decision.sku)
            .where(
                Outcome.recorded_at > row.data_watermark,
                Outcome.late.is_(False),
                Decision.learn.is_(True),
                ~already,
            )
            .order_by(Outcome.recorded_at, Outcome.id)
            .limit(batch_size)
        )
        rows = [tuple(r) for r in session.execute(observed)]
        if missing_outcome != "ignore" and len(rows) < batch_size:
            closed_by = (now or utcnow()) - DATA_LAG
            in_window = exists().where(Outcome.decision_id == Decision.id, Outcome.late.is_(False))
            imputed = (
                select(*columns)
                .join(Product, Product.sku == Decision.sku)
                .where(
                    Decision.outcome_deadline > row.data_watermark,
                    Decision.outcome_deadline <= closed_by, ~in_window, ~already,
                    Decision.learn.is_(True),
                )
                .order_by(Decision.outcome_deadline, Decision.id)
                .limit(batch_size - len(rows))
            )  # fmt: skip
            value = missing_outcome == "conversion"
            rows += [(*r, value) for r in session.execute(imputed)]
        posterior = load_posterior(row)
        if not rows:
            return UpdateResult(row.id, 0, posterior.ess, posterior.n_draws)
        labelled = [(segment, sku, category, (price - discount) / list_price, promotion, key, 1,
                     int(bool(converted)))
                    for _id, segment, sku, category, price, discount, list_price, promotion, key,
                    converted in rows]  # fmt: skip
        shared, by_block = outcome_log_likelihood(posterior, labelled, blocks=blocks)
        updated = (posterior.reweight_blocks(shared, by_block) if blocks
                   else posterior.reweight(shared))  # fmt: skip
        row.log_weights = updated.log_weights.tobytes()
        row.block_log_weights = updated.stored_block_weights()
        row.ess = updated.ess
        row.weights_seq += 1
        row.applied_outcomes += len(rows)
        row.weights_updated_at = utcnow()
        session.add_all([AppliedDecision(snapshot_id=row.id, decision_id=r[0]) for r in rows])
        return UpdateResult(row.id, len(rows), updated.ess, updated.n_draws)


# --------------------------------------------------------------------------- reading fits
def _public(row: ModelSnapshot, serving_id: int | None) -> ModelPublic:
    return ModelPublic(
        version=row.id, status=row.status, serving=row.id == serving_id, created_at=row.created_at,
        method=row.method, approximate=row.approximate, config_hash=row.config_hash,
        data_watermark=row.data_watermark, n_cells=row.n_cells, n_trials=row.n_trials,
        n_conversions=row.n_conversions, diagnostics=row.diagnostics, message=row.message,
        ess=row.ess, applied_outcomes=row.applied_outcomes, weights_updated_at=row.weights_updated_at,
    )  # fmt: skip


def _snapshot(session: Session, version: int) -> ModelSnapshot:
    row = session.get(ModelSnapshot, version)
    if row is None:
        raise NotFound(["path", "version"], f"unknown model version {version}")
    return row


def _published(session: Session, version: int) -> ModelSnapshot:
    row = _snapshot(session, version)
    if row.status != PUBLISHED:
        raise Conflict(
            ["path", "version"],
            f"model version {version} was {row.status}: {row.message}",
            "not_published",
        )
    return row


def list_models(session: Session, limit: int = 50) -> list[ModelPublic]:
    """Fits newest first, published and rejected; ``serving`` marks the live one."""
    serving = current_snapshot(session)
    rows = session.scalars(select(ModelSnapshot).order_by(ModelSnapshot.id.desc()).limit(limit))
    return [_public(r, serving.id if serving else None) for r in rows]


def get_model(session: Session, version: int) -> ModelPublic:
    """One fit (:class:`NotFound` naming ``version``)."""
    serving = current_snapshot(session)
    return _public(_snapshot(session, version), serving.id if serving else None)


def elasticities(session: Session, version: int) -> list[Elasticity]:
    """Per segment × category of a published fit: weighted posterior mean and 90 % interval
    of the price coefficient b (:class:`Conflict` for a rejected fit)."""
    posterior = load_posterior(_published(session, version))
    out = []
    for segment, category in posterior.pairs:
        summary = posterior.elasticity_summary(segment, category, 0.9)
        out.append(Elasticity(segment=segment, category=category, mean=summary["mean"],
                              lower_90=summary["lower"], upper_90=summary["upper"]))  # fmt: skip
    return out


def netcdf(session: Session, version: int) -> bytes:
    """A published fit's draws as ArviZ InferenceData, serialized to NetCDF (bytes)."""
    idata = load_posterior(_published(session, version)).to_inference_data()
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "posterior.nc")
        idata.to_netcdf(path)
        with open(path, "rb") as handle:
            return handle.read()
