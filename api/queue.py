"""The engine's jobs on a PostgreSQL task queue (procrastinate).

On PostgreSQL every background job is a procrastinate task in the engine's own database
(its tables: ``procrastinate_*``, created by ``pricing-engine migrate``). Any number of
``pricing-engine worker`` processes, on any number of machines, share the work:

========================  =====================================  ==============================
task                      when                                   guarantees
========================  =====================================  ==============================
``pricing.apply_outcomes``  every ``PRICING_UPDATER_INTERVAL_SECONDS`` (rounded up to  lock ``demand-model:weights``: one
                          whole seconds; the queue's periodic scheduler, so a    pass at a time; queueing lock: at
                          schedule fires once however many workers run)         most one waiting; retried 3 times
``pricing.refit``          every minute (does nothing unless a refit is due:     lock ``demand-model:refit``: one
                          first data, low ESS, an old snapshot), or deferred    model's refit never runs twice at
                          by ``pricing-engine refit --queue``                   once; queueing lock; retried twice
``pricing.refit_category``  one per category of a fanned-out refit             lock per category; retried; the
                          (``PRICING_REFIT_FANOUT``), queued by ``pricing.refit``  last part stored queues the publish
``pricing.publish_fanout``  when every category of a run is stored              lock ``demand-model:refit``; one per
                                                                                 run (queueing lock); idempotent
``pricing.import_history``  ``pricing-engine import-history --queue FILE``       lock ``demand-model:priors``
``pricing.export_feedback`` ``pricing-engine export-feedback --queue OUT``       retried 3 times
``pricing.retry_stalled``  every third of ``PRICING_QUEUE_STALLED_SECONDS``      a job of a worker whose heartbeat
                                                                                 stopped (killed) is queued again
========================  =====================================  ==============================

The task functions are those of :mod:`api.jobs`; on the embedded SQLite default the same
functions run in-process (:class:`api.updater.Updater`). API workers never run a job:
they poll for new snapshots and weights (``PRICING_SNAPSHOT_POLL_SECONDS``) and pick
them up without a restart. Finished jobs are deleted; failed ones are kept for
inspection (``procrastinate_jobs``).
"""

from __future__ import annotations

import contextlib
import logging
import math
from datetime import datetime
from typing import Any

import procrastinate
from procrastinate.exceptions import AlreadyEnqueued, ProcrastinateException
from procrastinate.jobs import Status
from sqlalchemy import inspect
from sqlalchemy.engine import make_url

from api.db import engine_for, make_session_factory
from api.jobs import (
    JobRuntime,
    apply_outcomes,
    export_feedback,
    import_history,
    refit_if_due,
    refit_mode,
    refit_reason,
)
from api.migrate import QUEUE_TABLE
from api.services.fanout import fit_category, plan, publish
from api.settings import Settings

__all__ = ["build_queue", "conninfo", "defer", "run_worker"]

log = logging.getLogger("pricing.queue")

WEIGHTS_LOCK = "demand-model:weights"
REFIT_LOCK = "demand-model:refit"
PRIORS_LOCK = "demand-model:priors"


def conninfo(database_url: str) -> str:
    """The libpq connection string of a SQLAlchemy PostgreSQL URL."""
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        raise ValueError("the job queue needs PostgreSQL (PRICING_DATABASE_URL=postgresql://...)")
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _cron_every(seconds: float) -> str:
    """A cron line (with procrastinate's sixth, seconds column) firing every ``seconds``."""
    whole = max(1, math.ceil(seconds))
    if whole < 60 and 60 % whole == 0:
        return f"* * * * * */{whole}"
    minutes = max(1, round(whole / 60))
    return f"*/{minutes} * * * *"


def build_queue(settings: Settings, runtime: JobRuntime | None = None) -> procrastinate.App:
    """The procrastinate app with the engine's tasks.

    Parameters
    ----------
    settings : Settings
        The database (PostgreSQL) and the job settings.
    runtime : JobRuntime, optional
        What the tasks run with; by default built from ``settings`` when the first task
        runs (deferring needs no session).
    """
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(conninfo=conninfo(settings.database_url))
    )
    state: dict[str, JobRuntime] = {} if runtime is None else {"runtime": runtime}

    def current() -> JobRuntime:
        if "runtime" not in state:
            engine = engine_for(settings, pool_size=4)
            state["runtime"] = JobRuntime.from_settings(settings, make_session_factory(engine))
        return state["runtime"]

    @app.periodic(cron=_cron_every(settings.updater_interval_seconds),
                  periodic_id="apply_outcomes")  # fmt: skip
    @app.task(name="pricing.apply_outcomes", lock=WEIGHTS_LOCK,
              queueing_lock="pricing.apply_outcomes",
              retry=procrastinate.RetryStrategy(max_attempts=3, wait=1))  # fmt: skip
    def apply_outcomes_task(timestamp: int | None = None) -> dict[str, Any]:
        update = apply_outcomes(current())
        if update.applied:
            log.info("applied %d outcomes to snapshot %s; ESS %.0f",
                     update.applied, update.snapshot_id, update.ess or 0.0)  # fmt: skip
        return {"snapshot": update.snapshot_id, "applied": update.applied, "ess": update.ess}

    @app.periodic(cron="* * * * *", periodic_id="refit")
    @app.task(name="pricing.refit", lock=REFIT_LOCK, queueing_lock="pricing.refit",
              retry=procrastinate.RetryStrategy(max_attempts=2, wait=30))  # fmt: skip
    def refit_task(
        timestamp: int | None = None, force: bool = False, mode: str | None = None
    ) -> dict[str, Any] | None:
        runtime = current()
        if (mode or refit_mode(runtime)) == "fanout":
            # One job per category, on whichever workers are free; the last to finish
            # queues the publish job.
            if refit_reason(runtime) is None and not force:
                return None
            try:
                run = plan(runtime.sessions)
            except ValueError as exc:
                log.info("no fanned-out refit: %s", exc)
                return None
            for category in run.categories:
                app.tasks["pricing.refit_category"].configure(
                    lock=f"demand-model:category:{category}",
                ).defer(**run.to_job(), category=category)
            log.info("fanned-out refit %s: %d category jobs", run.run_id, len(run.categories))
            return {"fanout": run.run_id, "categories": len(run.categories)}
        result = refit_if_due(runtime, force=force, mode="full")
        if result is None:
            return None
        return {"snapshot": result.snapshot_id, "published": result.published,
                "message": result.message}  # fmt: skip

    @app.task(name="pricing.refit_category",
              retry=procrastinate.RetryStrategy(max_attempts=3, wait=10))  # fmt: skip
    def refit_category_task(
        run_id: str, base_snapshot_id: int, watermark: str, expected: int, category: str
    ) -> dict[str, Any]:
        runtime = current()
        last = fit_category(
            runtime.sessions, run_id=run_id, base_snapshot_id=base_snapshot_id,
            watermark=datetime.fromisoformat(watermark), category=category, expected=expected,
            sampler_config=runtime.sampler_config, missing_outcome=runtime.missing_outcome,
            half_life_days=runtime.half_life_days,
        )  # fmt: skip
        if last:
            # A twin that stored the other last part may have queued it already.
            with contextlib.suppress(AlreadyEnqueued):
                app.tasks["pricing.publish_fanout"].configure(
                    queueing_lock=f"pricing.publish_fanout:{run_id}"
                ).defer(run_id=run_id)
        return {"run": run_id, "category": category, "last": last}

    @app.task(name="pricing.publish_fanout", lock=REFIT_LOCK,
              retry=procrastinate.RetryStrategy(max_attempts=3, wait=10))  # fmt: skip
    def publish_fanout_task(run_id: str) -> dict[str, Any] | None:
        runtime = current()
        result = publish(runtime.sessions, run_id=run_id, sampler_config=runtime.sampler_config,
                         missing_outcome=runtime.missing_outcome)  # fmt: skip
        if result is None:
            return None
        return {"snapshot": result.snapshot_id, "published": result.published,
                "message": result.message}  # fmt: skip

    @app.task(name="pricing.import_history", lock=PRIORS_LOCK)
    def import_history_task(
        path: str, elasticity: str = "pooled", dry_run: bool = False
    ) -> dict[str, Any]:
        return import_history(current(), path, elasticity=elasticity, dry_run=dry_run)

    @app.task(name="pricing.export_feedback",
              retry=procrastinate.RetryStrategy(max_attempts=3, wait=5))  # fmt: skip
    def export_feedback_task(directory: str) -> dict[str, Any]:
        return export_feedback(current(), directory)

    stalled_after = settings.queue_stalled_seconds

    @app.periodic(cron=_cron_every(max(1.0, stalled_after / 3)), periodic_id="retry_stalled")
    @app.task(name="pricing.retry_stalled", queueing_lock="pricing.retry_stalled")
    async def retry_stalled_task(timestamp: int | None = None) -> int:
        # A job whose worker died (SIGKILL, lost machine) stays "doing" and keeps its lock:
        # give it back to the queue once the worker's heartbeat is older than the limit.
        stalled = await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=stalled_after)
        count = 0
        for job in stalled:
            if job.task_name == "pricing.retry_stalled":
                continue
            try:
                await app.job_manager.retry_job(job)
                log.warning("job %s (%s) of a dead worker queued again", job.id, job.task_name)
            except ProcrastinateException:
                # A twin is already waiting (queueing lock): that one will do the work.
                await app.job_manager.finish_job(job, status=Status.FAILED, delete_job=False)
                log.warning("job %s (%s) of a dead worker closed: a twin is waiting",
                            job.id, job.task_name)  # fmt: skip
            count += 1
        return count

    del apply_outcomes_task, refit_task, import_history_task, export_feedback_task
    del refit_category_task, publish_fanout_task
    del retry_stalled_task
    return app


def defer(
    settings: Settings, task: str, *, queueing_lock: str | None = None, **kwargs: Any
) -> int | None:
    """Queue one job of ``task``; returns its id, or None if one is already waiting.

    ``queueing_lock`` replaces the task's own: a refit someone asked for (``force``) must
    not be swallowed by the periodic one waiting under the task's lock, which only refits
    when one is due; the two still never run at once (same ``lock``).
    """
    app = build_queue(settings)
    with app.open():
        try:
            configured = (
                app.tasks[task].configure(queueing_lock=queueing_lock)
                if queueing_lock is not None else app.tasks[task]
            )  # fmt: skip
            return int(configured.defer(**kwargs))
        except AlreadyEnqueued:
            return None


def run_worker(settings: Settings, *, name: str | None = None, wait: bool = True) -> None:
    """Run a queue worker until SIGINT/SIGTERM (or, with ``wait=False``, until idle).

    Runs ``settings.queue_concurrency`` jobs at once, so a long refit never holds up
    the online updates; deletes the jobs that succeeded.

    Raises
    ------
    RuntimeError
        The database has no queue yet (run ``pricing-engine migrate``).
    """
    engine = engine_for(settings, pool_size=1)
    try:
        if not inspect(engine).has_table(QUEUE_TABLE):
            raise RuntimeError("the database has no job queue: run `pricing-engine migrate`")
    finally:
        engine.dispose()
    app = build_queue(settings)
    app.run_worker(
        name=name, wait=wait, concurrency=settings.queue_concurrency,
        delete_jobs="successful", fetch_job_polling_interval=1.0,
        update_heartbeat_interval=max(0.5, settings.queue_stalled_seconds / 3),
        stalled_worker_timeout=settings.queue_stalled_seconds,
    )  # fmt: skip
