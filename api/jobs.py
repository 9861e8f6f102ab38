"""The background jobs, as plain functions: online updates, refits, history import, export.

The same functions run in two ways:

- on PostgreSQL, as tasks of the procrastinate queue (:mod:`api.queue`), shared by any
  number of ``pricing-engine worker`` processes on any number of machines;
- on the embedded SQLite default, in-process by :class:`api.updater.Updater` (no
  PostgreSQL, no queue).

Nothing here imports PyMC at module level: a refit imports it when it runs, so the API
process (which never runs a job) never loads it.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from api.orm import ModelSnapshot, Outcome, utcnow
from api.services.demand_models import (
    RefitResult,
    UpdateResult,
    apply_new_outcomes,
    current_snapshot,
    refit,
)
from api.settings import Settings

if TYPE_CHECKING:
    from pricing.changes import ChangeDetection

__all__ = [
    "JobRuntime",
    "apply_outcomes",
    "export_feedback",
    "import_history",
    "refit_if_due",
    "refit_mode",
    "refit_reason",
]

log = logging.getLogger("pricing.jobs")


@dataclass
class JobRuntime:
    """What every job needs: sessions and the refit policy.

    Parameters
    ----------
    sessions : sessionmaker
        Writable sessions on the engine's database.
    ess_fraction : float
        Refit when the weights' ESS falls below this share of the draws.
    refit_every : timedelta
        Refit when the serving snapshot is older than this.
    min_outcomes : int
        Outcomes needed before the first fit.
    retry_after : timedelta
        After a rejected fit, wait this long before the next attempt.
    sampler_config : dict
        Passed to the demand model.
    missing_outcome : str
        Label of a decision whose outcome window closed without an outcome.
    half_life_days : float
        Time decay of the data in refits (``PRICING_DEMAND_HALF_LIFE_DAYS``; 0: none).
    first_fit_draws : int
        Draws and tuning steps per chain of the first, flagged fit (``PRICING_FIRST_FIT_DRAWS``;
        0: the full sampler settings).
    fanout : bool
        Refit one category at a time with the shared parameters held at the last full
        fit's (:mod:`api.services.fanout`), and the full joint fit every ``full_every``.
    full_every : timedelta
        With ``fanout``: how old the last full fit may be before the next refit is full.
    reweight_blocks : bool
        Online updates weigh each (segment, category) block by its own outcomes
        (:func:`api.services.demand_models.apply_new_outcomes`).
    prior_at_list : bool
        Full refits centre each category's elasticity prior where its list prices are
        optimal (``PRICING_PRIOR_AT_LIST``; :func:`api.services.demand_models.refit`).
    change_detection : ChangeDetection or None
        Full refits first test for a change in demand and down-weight the outcomes from
        before one (``PRICING_CHANGE_*``; :func:`api.services.demand_models.refit`).
    """

    sessions: sessionmaker[Session]
    ess_fraction: float = 0.5
    refit_every: timedelta = timedelta(hours=6)
    min_outcomes: int = 200
    retry_after: timedelta = timedelta(seconds=60)
    sampler_config: dict[str, Any] = field(default_factory=dict)
    missing_outcome: str = "non_conversion"
    half_life_days: float = 0.0
    first_fit_draws: int = 0
    fanout: bool = False
    full_every: timedelta = timedelta(hours=24)
    reweight_blocks: bool = True
    prior_at_list: bool = False
    change_detection: ChangeDetection | None = None

    @classmethod
    def from_settings(cls, settings: Settings, sessions: sessionmaker[Session]) -> JobRuntime:
        """The runtime the settings describe."""
        return cls(
            sessions,
            ess_fraction=settings.refit_ess_fraction,
            refit_every=timedelta(seconds=settings.refit_every_seconds),
            retry_after=timedelta(seconds=max(60.0, settings.updater_interval_seconds * 30)),
            min_outcomes=settings.first_fit_min_outcomes(),
            sampler_config=settings.sampler_config(),
            missing_outcome=settings.missing_outcome,
            half_life_days=settings.demand_half_life_days,
            first_fit_draws=settings.first_fit_draws,
            fanout=settings.refit_fanout,
            full_every=timedelta(seconds=settings.full_refit_every_seconds),
            reweight_blocks=settings.reweight_blocks,
            prior_at_list=settings.prior_at_list,
            change_detection=settings.change_config(),
        )


def _draw_count(row: ModelSnapshot) -> int:
    return len(row.log_weights) // 8 if row.log_weights else 0


def refit_reason(runtime: JobRuntime) -> str | None:
    """Why a refit is due now, or None.

    Due when there are ``min_outcomes`` outcomes and no published snapshot, when the
    serving snapshot is a first fit and the outcomes have doubled since, when its ESS fell
    below ``ess_fraction`` of its draws, or when it is older than ``refit_every``; but never
    sooner than ``retry_after`` after a rejected attempt.
    """
    from api.services.fanout import in_flight

    with runtime.sessions() as session:
        running = in_flight(session)
        if running is not None:
            return None  # a fanned-out refit is under way; its publish resets the weights
        head = current_snapshot(session)
        newest_attempt = session.scalar(select(func.max(ModelSnapshot.created_at)))
        recently_rejected = (
            newest_attempt is not None
            and (head is None or newest_attempt > head.created_at)
            and utcnow() - newest_attempt < runtime.retry_after
        )
        if head is None:
            outcomes = session.scalar(select(func.count()).select_from(Outcome)) or 0
            if outcomes < runtime.min_outcomes or recently_rejected:
                return None
            return f"no published snapshot and {outcomes} outcomes"
        if (head.diagnostics or {}).get("first_fit") and not recently_rejected:
            outcomes = session.scalar(select(func.count()).select_from(Outcome)) or 0
            if outcomes >= 2 * max(head.n_trials, 1):
                return f"first fit {head.id} on {head.n_trials} outcomes; {outcomes} now"
        draws = _draw_count(head)
        if head.ess is not None and draws and head.ess < runtime.ess_fraction * draws:
            if recently_rejected:
                return None
            return f"ESS {head.ess:.0f} below {runtime.ess_fraction:.0%} of {draws} draws"
        if utcnow() - head.created_at > runtime.refit_every and not recently_rejected:
            return f"snapshot {head.id} is older than {runtime.refit_every}"
    return None


def apply_outcomes(runtime: JobRuntime) -> UpdateResult:
    """Fold the outcomes that became final into the serving snapshot's weights.

    Safe to run from several workers at once: the snapshot row is locked and each
    decision is recorded as applied in the transaction that applies it.
    """
    return apply_new_outcomes(runtime.sessions, missing_outcome=runtime.missing_outcome,
                              blocks=runtime.reweight_blocks)  # fmt: skip


def refit_mode(runtime: JobRuntime) -> str:
    """``"fanout"`` when the runtime fans refits out and the last full fit is recent
    enough to hold the shared parameters at; ``"full"`` otherwise."""
    if not runtime.fanout:
        return "full"
    from api.services.fanout import full_fit

    with runtime.sessions() as session:
        base = full_fit(session)
    if base is None or utcnow() - base.created_at > runtime.full_every:
        return "full"
    return "fanout"


def refit_if_due(
    runtime: JobRuntime, *, force: bool = False, mode: str | None = None
) -> RefitResult | None:
    """Refit and publish (behind the diagnostics gate) when :func:`refit_reason` says so.

    ``mode`` (``"full"`` or ``"fanout"``; default :func:`refit_mode`) chooses a full joint
    fit or one fit per category in this process. Returns None when no refit was due (or,
    with ``force``, when there is no data).
    """
    reason = refit_reason(runtime)
    if reason is None and not force:
        return None
    # The very first fit (due, and no snapshot ever attempted) is cheaper and comes sooner:
    # short chains, which the gate still extends if short of ESS. After a rejected attempt
    # the full settings are used.
    first = False
    if reason is not None and runtime.first_fit_draws > 0:
        with runtime.sessions() as session:
            first = not session.scalar(select(func.count()).select_from(ModelSnapshot))
    sampler = runtime.sampler_config
    if first:
        sampler = {**sampler, "draws": runtime.first_fit_draws, "tune": runtime.first_fit_draws}
    mode = mode or refit_mode(runtime)
    log.info("refitting (%s): %s", mode, reason or "requested")
    try:
        if mode == "fanout":
            from api.services.fanout import refit_fanout

            return refit_fanout(runtime.sessions, sampler_config=runtime.sampler_config,
                                missing_outcome=runtime.missing_outcome,
                                half_life_days=runtime.half_life_days)  # fmt: skip
        return refit(
            runtime.sessions,
            sampler_config=sampler,
            missing_outcome=runtime.missing_outcome,
            half_life_days=runtime.half_life_days,
            first_fit=first,
            prior_at_list=runtime.prior_at_list,
            change_detection=runtime.change_detection,
        )
    except ValueError:
        if force:
            return None
        raise


def import_history(
    runtime: JobRuntime, path: str, *, elasticity: str = "pooled", dry_run: bool = False
) -> dict[str, Any]:
    """Fit elasticities to a sales-history CSV and store them as the model's prior.

    Returns the fit's summary (JSON-ready). Raises
    :class:`~api.services.history_import.HistoryError` naming the bad rows.
    """
    from api.services.history_import import import_history as run

    if elasticity not in ("pooled", "hierarchical"):
        raise ValueError(f"elasticity must be 'pooled' or 'hierarchical', not {elasticity!r}")
    result = run(runtime.sessions, Path(path), elasticity=elasticity,  # type: ignore[arg-type]
                 progressbar=False, dry_run=dry_run)  # fmt: skip
    return {"fit": asdict(result.fit), "note": result.note}


def export_feedback(runtime: JobRuntime, directory: str) -> dict[str, Any]:
    """Write the decision log as OBP bandit feedback into ``directory``.

    Returns the files written and the number of rounds.
    """
    from api.services.feedback import write_feedback

    return write_feedback(runtime.sessions, Path(directory))
