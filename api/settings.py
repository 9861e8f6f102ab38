"""Service settings, read from environment variables prefixed ``PRICING_``.

Every setting has a safe default so ``pricing-engine serve`` works with no configuration
(SQLite file ``pricing.db`` in the working directory). An invalid value fails start-up
with a message naming the environment variable.
"""

from __future__ import annotations

from datetime import UTC, tzinfo
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from pricing.changes import ChangeDetection

__all__ = ["ENV_PREFIX", "Settings", "SettingsError", "get_settings", "load_settings"]

ENV_PREFIX = "PRICING_"
#: Outcomes before the first fit (``Settings.first_fit_outcomes`` unset), without and with
#: safe start.
FIRST_FIT = 200
SAFE_START_FIRST_FIT = 500


class SettingsError(RuntimeError):
    """A setting read from the environment is invalid; the message names the variable."""


class Settings(BaseSettings):
    """All configuration of the service.

    Attributes
    ----------
    database_url : str
        SQLAlchemy URL. ``sqlite:///./pricing.db`` by default; PostgreSQL in production,
        e.g. ``postgresql+psycopg://user@host:5432/pricing``.
    quote_ttl_seconds : int
        How long a quoted price stays valid (seconds).
    idempotency_ttl_seconds : int
        How long a quote's ``Idempotency-Key`` is remembered: a retry within it gets the
        same quote back (s).
    max_quote_lines : int
        Upper bound on lines per quote request.
    max_outcome_batch : int
        Upper bound on outcomes per batch request.
    max_import_rows : int
        Upper bound on products per catalog import.
    default_segment : str
        Segment used when a quote names none.
    calendar_timezone : str
        IANA time zone (e.g. ``Europe/Paris``) of the merchant's days: a declared
        ``weekday`` context feature that checkout leaves out is filled with the quote's
        weekday there. Default ``UTC``.
    db_pool_size : int
        Connections kept open per worker (PostgreSQL).
    db_write_wait_seconds : float
        SQLite: how long a write transaction waits for its turn before the request gets 503
        with Retry-After (seconds; writers of a worker queue in-process).
    write_timeout_seconds : float
        How long a quote waits for its commit before it gets 503 with Retry-After (s): a
        slow or unreachable database never holds a checkout longer. Also bounds an API
        key's look-up when it is not in the worker's cache.
    outcome_write_timeout_seconds : float
        The same for outcomes (longer: they are off checkout's critical path, and a large
        batch waits behind others under load).
    db_connect_timeout_seconds : int
        PostgreSQL: how long opening a connection may take before it fails (s).
    snapshot_poll_seconds : float
        How often a worker checks for a new posterior snapshot or new weights (s).
    run_updater : bool
        Run the updater (online reweighting + refits) inside ``serve``.
    updater_interval_seconds : float
        Seconds between updater passes.
    refit_every_seconds : int
        Refit when the serving snapshot is older than this (s).
    refit_ess_fraction : float
        Refit when the weights' effective sample size drops below this share of draws.
    refit_fanout : bool
        Refit one category per job, with the parameters all categories share held at the
        last full fit's posterior (a large catalog's refit spread over the queue workers);
        the full joint fit still runs every ``full_refit_every_seconds``.
    full_refit_every_seconds : int
        With ``refit_fanout``: the longest time between full joint fits (s).
    fit_method : str
        ``auto`` (PyMC NUTS), ``nuts``, ``nutpie`` (if installed) or ``advi``.
    fit_draws, fit_tune, fit_chains : int, optional
        Override the demand model's sampler defaults (1,000 draws, 1,000 tuning steps,
        2 chains) for refits run by the updater or the queue workers.
    queue_concurrency : int
        Jobs one ``pricing-engine worker`` runs at once on PostgreSQL (a refit in one slot,
        online updates in another).
    queue_stalled_seconds : float
        A queue worker whose heartbeat is older than this is taken for dead and its running
        jobs are queued again (s; workers beat every third of it).
    policy : str
        ``thompson`` (personalized prices inside guardrails) or ``list`` (list price for all).
    exploration_epsilon : float
        Share of exploration of Thompson sampling: how often the served candidate is not
        the Thompson choice itself. Default 0.02 (0.05 until 2026-12-06): with the floor
        at 0.01 it earned more and gave narrower off-policy intervals than 0.05 in
        docs/benchmarks.md (exploration; decision quality at 200,000 visitors).
    min_propensity : float
        The part of ``exploration_epsilon`` spread uniformly over a line's n allowed
        candidates: each keeps a propensity of at least ``min_propensity / n``, so that
        off-policy evaluation of any policy within the guardrails stays supported. The rest
        goes to the ladder neighbours of the Thompson choice (cheap exploration). Equal to
        ``exploration_epsilon``: all uniform.
    max_loss_vs_list : float, optional
        Safe start (pricing/safe_start.py): the engine's cumulative expected profit stays at
        least ``1 - max_loss_vs_list`` times what list prices would have earned on the same
        traffic, per SKU and in all, with posterior probability ``safe_start_confidence``;
        while its budget of allowed loss cannot absorb a decision, the line gets the
        reference price (reason ``safe_start``). None (default): no such promise.
    safe_start_confidence : float
        The posterior probability of that promise.
    prior_at_list : bool
        Centre each category's elasticity prior where its list prices maximise expected
        profit (:func:`pricing.priors.list_price_anchors`, the Lerner condition with the
        conversion at list), so that the first models start in the list price's
        neighbourhood. For a catalogue whose list prices are believed near-optimal; it
        holds the engine near list longer where they are not (docs/benchmarks.md,
        safe start). Default false: the global elasticity prior.
    reweight_blocks : bool
        Online updates between refits weigh each (segment, category) block by its own
        outcomes, so a busy block does not spend the others' effective sample size (the
        refit is due when the smallest block's ESS falls below ``refit_ess_fraction``);
        false: one weight per draw for the whole model (exact importance sampling).
    price_ladder_size : int
        Largest number of candidate prices per line.
    outcome_window_seconds : int
        How long after a decision its outcome is learned from (s). An offer's promotion
        budget is held until then; an outcome recorded later is stored (and its discount
        accounted) but not learned from. At least ``quote_ttl_seconds``.
    missing_outcome : str
        What learning assumes when the window closes without an outcome:
        ``non_conversion`` (default), ``conversion`` or ``ignore`` (never learned from).
    refresh_seconds : float
        How often a worker re-reads the quote path's state in the background (catalog,
        guardrails, promotions, daily price aggregates): workers converge within it (s).
    sweep_seconds : float
        How often a worker releases expired promotion holds and leases (s).
    promotion_lease_seconds : float
        Lifetime of a worker's lease on a capped promotion's budget (s); retired at half.
    writer_max_rows : int
        Most rows the group writer commits in one transaction.
    writer_linger_seconds : float, optional
        Under load (the last batch held more than one job), how long the group writer lets
        a batch fill before it commits (s); an idle writer commits at once. 0: never wait.
        Unset (default): 0 with the writer process, whose batches fill while the child
        commits the previous one (measured on one machine, 4 rounds at 600 quotes/s: p99
        40-78 ms against 104-198 ms with 1 ms, the same throughput), 0.001 on the writer
        thread, where fewer transactions meant fewer handovers of the GIL.
        Not used when the event loop carries the batches (``writer_on_loop``, the default).
    writer_process : bool
        Run the group writer's transactions in a child process per worker
        (:mod:`api.writer_process`): the statements leave the worker's GIL, so they no
        longer hold up requests. Default true; false: on the writer thread (an in-memory
        SQLite database always is).
    writer_on_loop : bool
        With the writer process, let the worker's event loop send it the batches and take
        its answers (:meth:`api.writer.GroupWriter.bind`) instead of a writer thread that
        must take the GIL from the busy loop after every commit. Default true.
    pacing_process : bool
        Re-solve budget-paced lines' pacing LPs, when their rates move, in one child
        process per worker instead of a thread of it (:mod:`pricing.choices`): the
        solves no longer hold the GIL that the worker's event loop needs. Default true.
    first_fit_outcomes : int, optional
        Outcomes needed before the first fit. Default (unset): 200, or 500 with safe start
        (``max_loss_vs_list``): measured over the first 5,000 visitors of six markets, safe
        start earned 3-7 points of list's profit more after a first fit on 500 outcomes
        than on 200 in five of them and the same in the sixth (docs/benchmarks.md, "Safe
        start waits for 500 outcomes"). The plain engine gains from the earlier fit, so it
        keeps 200.
    first_fit_draws : int
        The first model comes sooner and cheaper: once ``first_fit_outcomes`` are in and no
        snapshot is published, the updater fits with this many draws and tuning steps per
        chain (a fit short of ESS is still extended by the gate's own re-run) and flags the
        snapshot as a first fit (``diagnostics.first_fit``, its message says so); the full
        refit follows as soon as the outcomes have doubled. 0: the first fit uses the full
        sampler settings.
    demand_half_life_days : float
        Time decay of the demand model's data: an outcome counts ``0.5 ** (age / half-life)``
        in a refit (age in whole UTC days before the data watermark), so that a posterior
        follows demand that drifts (seasons, a competitor's sale) instead of weighing all
        history equally and growing overconfident. Default 90; 0 turns decay off (every
        outcome counts fully, as before). See docs/benchmarks.md, "Drift".
    change_detection : bool
        Before each full refit, test the outcomes that arrived since the serving snapshot
        was fitted against its posterior predictive (:mod:`pricing.changes`); when they
        disagree beyond ``change_alpha``, this and later refits fit a shift of intercept
        and log elasticity (market-wide and per category) for the outcomes after the change and count those
        before at ``change_weight_before``, so the model follows a sudden shift (a
        competitor's sale) without the steady forgetting of a short half-life.
        Default true. Declare a weekly cycle as a context feature, or it may read as one.
    change_alpha : float
        False alarms per day of data (default 0.001): a refit's window of ``f`` days tests
        at ``f`` times the daily level, and the CUSUM's threshold is set for the same rate
        at any refit cadence (:meth:`pricing.changes.ChangeDetection.window`).
    change_weight_before : float
        What an outcome from before a detected change counts for (default 0.25).
    change_cusum : bool
        Also accumulate consecutive refits' surprises in a CUSUM (:class:`pricing.changes.Cusum`),
        which finds a moderate shift that no single refit's window shows clearly; the
        false-alarm budget ``change_alpha`` is split between it and the single test.
        Default true (since 2026-12-06: in the market-wide drift benchmark it found seed 1's
        shift four days before the single test and earned 96.6 % of the moving oracle after
        the shift against 95.3 %; docs/benchmarks.md, drift).
    change_cusum_k : float
        The CUSUM's allowance per day, in standard deviations of a day's pooled surprise
        (default 1.0; 0.5 before 2026-12-06 21:40): quicker on shifts whose day moves the
        surprise by 2 or more, slower below 1.5 (:func:`pricing.changes.cusum_delay`).
    change_by_category : bool
        Start the new regime only in the categories whose own surprise shows the change
        (:meth:`pricing.changes.ChangeTest.moved_categories`): a sale in one aisle does not
        cost the others their evidence. Every category when none or all show it, and after
        a change the CUSUM found. Default true; false: every category on every change.
    change_cusum_dating : bool
        With ``change_cusum``: a change the single test finds is dated back to the start of
        a CUSUM excursion already under way in its direction (the shift's first day often
        moves the charts and falls just short of the test), so that day's outcomes count as
        the new regime (:meth:`pricing.changes.Cusum.excursion_start`). Default false: in
        the drift benchmark it lost 1.1 points of the moving oracle on the one seed of
        eight where it moved a detection (docs/benchmarks.md, drift).
    gil_switch_seconds : float
        The interpreter's thread switch interval in a serving worker
        (``sys.setswitchinterval``): how long a background thread (the group writer, the
        refresher) may hold the GIL while a request waits for it (s). Default 0.001
        (Python's own is 0.005): in benchmarks/systems.py quote p99 at half load fell from
        58 to 43 ms with 0.0005, a noisy single comparison.
    gc_young_threshold : int
        Allocations (net of frees) between two young collections of the cyclic garbage
        collector in a serving worker (``gc.set_threshold``'s first value; Python's own
        is 700). A quote leaves no cyclic garbage behind (measured under uvicorn with
        ``gc.DEBUG_SAVEALL``), so young collections mostly promote the objects of requests
        still in flight, and enough promotions trigger a full collection, which pauses
        every thread. Default 5,000: in a 30 s closed loop at 32 connections the collector
        took 0.13 s of the worker's time and no full collection, against 1.4 s and 11 full
        collections (20 ms each) at 700 (``pricing_gc_pause_seconds`` in ``/metrics``).
    opentelemetry : bool
        FastAPI's native OpenTelemetry (a span, metrics and logs per request, through the
        global providers an operator configures, e.g. with ``opentelemetry-instrument``).
        Default false: the engine exports its own Prometheus metrics (``/metrics``), and
        FastAPI otherwise checks on every request whether providers were configured, which
        took about 2 % of a worker's event loop at full load (py-spy, 2026-12-07).
    rate_limit_quotes, rate_limit_outcomes : float
        Requests per second one API key may send to ``POST /v1/quotes`` and to the outcome
        endpoints, per worker (0 = unlimited); more get 429 with Retry-After.
    rate_limit_burst_seconds : float
        A key idle for a while may send this many seconds' worth of its rate at once (s).
    import_dir : str
        Where history files uploaded through the console are kept for the queue workers
        (a directory every worker can read; default ``./imports``).
    max_body_bytes : int
        Largest request body accepted (bytes); a larger one gets 413 before it is read.
    cors_origins : str
        Comma-separated origins allowed to call the API from a browser; empty (default)
        means no CORS headers at all.
    key_pepper : str, optional
        A secret mixed into every new API key's stored digest (HMAC-SHA256): a copy of the
        key table then says nothing about the keys without it. The same value on every
        worker; changing it invalidates the keys created under the old one.
    sqlite_synchronous : str
        SQLite ``PRAGMA synchronous``: ``NORMAL`` (a committed transaction survives a
        process kill, the last ones may be lost on power loss) or ``FULL`` (also survives
        power loss; one fsync per group commit).
    sqlite_page_size : int, optional
        SQLite: the page size (bytes; a power of two, 512-65536) of a database the engine
        creates; an existing database keeps its own until a ``VACUUM``. Unset: SQLite's
        4096. Smaller pages make each commit write less (the log takes whole pages, and a
        decision row touches a page of each index): 1024 cut the writer's bytes to disk per
        quote from 40-45 KB to 12-13 KB in docs/benchmarks.md, and made full scans
        (analysts', refits') 1.6-2.3 times slower per row.
    sqlite_checkpoint_seconds : float
        SQLite: each serving worker copies the write-ahead log into the database on a
        thread of its own every this many seconds (default 0.25), instead of inside whichever
        commit crosses SQLite's 1,000-page mark, which stalls every request waiting on that
        commit. 0 restores SQLite's own checkpoints in commits. A checkpoint's copy and its
        ``fsync`` of the database file slow the commits that meet them; smaller, more
        frequent ones slowed them less (4 paired rounds at 2,400 quotes/s, 2026-12-08: p99
        19.7 / 14.2 / 19.4 / 36.1 ms against 42.8 / 19.5 / 31.9 / 32.3 ms at 1 s).
    sqlite_wal_limit_mb : float
        SQLite: when the write-ahead log holds more than this many MB since it last
        started over (default 256; 0: no limit), that thread's next checkpoint starts it
        over (``RESTART``), holding the
        writer back while it copies what the passive checkpoint left
        (:class:`api.db.WalCheckpointer`). Without it the log grows for as long as writes
        never pause.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    database_url: str = "sqlite:///./pricing.db"
    quote_ttl_seconds: int = Field(default=900, ge=1, le=7 * 24 * 3600)
    idempotency_ttl_seconds: int = Field(default=24 * 3600, ge=1, le=30 * 24 * 3600)
    max_quote_lines: int = Field(default=100, ge=1, le=1000)
    max_outcome_batch: int = Field(default=1000, ge=1, le=10000)
    max_import_rows: int = Field(default=50_000, ge=1)
    default_segment: str = Field(default="default", min_length=1, max_length=64)
    calendar_timezone: str = Field(default="UTC", min_length=1, max_length=64)
    db_pool_size: int = Field(default=10, ge=1, le=200)
    db_write_wait_seconds: float = Field(default=10.0, gt=0, le=600)
    write_timeout_seconds: float = Field(default=3.0, gt=0, le=600)
    outcome_write_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    db_connect_timeout_seconds: int = Field(default=3, ge=2, le=600)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    log_level: str = "info"
    snapshot_poll_seconds: float = Field(default=1.0, gt=0, le=3600)
    run_updater: bool = False
    updater_interval_seconds: float = Field(default=2.0, gt=0, le=3600)
    refit_every_seconds: int = Field(default=6 * 3600, ge=60)
    refit_ess_fraction: float = Field(default=0.5, gt=0, lt=1)
    refit_fanout: bool = False
    full_refit_every_seconds: int = Field(default=24 * 3600, ge=60)
    fit_method: str = Field(default="auto", pattern="^(auto|nuts|nutpie|advi)$")
    fit_draws: int | None = Field(default=None, ge=10, le=100_000)
    fit_tune: int | None = Field(default=None, ge=10, le=100_000)
    fit_chains: int | None = Field(default=None, ge=1, le=16)
    queue_concurrency: int = Field(default=2, ge=1, le=64)
    queue_stalled_seconds: float = Field(default=30.0, ge=1, le=3600)
    policy: str = Field(default="thompson", pattern="^(thompson|list)$")
    exploration_epsilon: float = Field(default=0.02, ge=0, le=1)
    min_propensity: float = Field(default=0.01, ge=0, le=1)
    reweight_blocks: bool = True
    max_loss_vs_list: float | None = Field(default=None, ge=0, lt=1)
    safe_start_confidence: float = Field(default=0.9, gt=0, lt=1)
    price_ladder_size: int = Field(default=50, ge=1, le=500)
    outcome_window_seconds: int = Field(default=3600, ge=1, le=90 * 24 * 3600)
    missing_outcome: str = Field(
        default="non_conversion", pattern="^(non_conversion|conversion|ignore)$"
    )
    refresh_seconds: float = Field(default=0.5, gt=0, le=60)
    sweep_seconds: float = Field(default=1.0, gt=0, le=3600)
    promotion_lease_seconds: float = Field(default=30.0, ge=1, le=3600)
    writer_max_rows: int = Field(default=2000, ge=1, le=100_000)
    writer_linger_seconds: float | None = Field(default=None, ge=0, le=0.1)
    writer_process: bool = True
    writer_on_loop: bool = True
    pacing_process: bool = True
    first_fit_outcomes: int | None = Field(default=None, ge=1, le=10_000_000)
    first_fit_draws: int = Field(default=300, ge=0, le=100_000)
    prior_at_list: bool = False
    demand_half_life_days: float = Field(default=90.0, ge=0, le=36500)
    change_detection: bool = True
    change_alpha: float = Field(default=1e-3, gt=0, lt=1)
    change_weight_before: float = Field(default=0.25, gt=0, le=1)
    change_cusum: bool = True
    change_cusum_k: float = Field(default=1.0, gt=0, le=10)
    change_by_category: bool = True
    change_cusum_dating: bool = False
    gil_switch_seconds: float = Field(default=0.001, ge=1e-5, le=0.1)
    gc_young_threshold: int = Field(default=5000, ge=1, le=10_000_000)
    opentelemetry: bool = False
    sqlite_synchronous: str = Field(default="FULL", pattern="^(NORMAL|FULL)$")
    sqlite_page_size: int | None = Field(default=None, ge=512, le=65536)
    sqlite_checkpoint_seconds: float = Field(default=0.25, ge=0, le=3600)
    sqlite_wal_limit_mb: float = Field(default=256.0, ge=0)
    rate_limit_quotes: float = Field(default=2000.0, ge=0)
    rate_limit_outcomes: float = Field(default=2000.0, ge=0)
    rate_limit_burst_seconds: float = Field(default=2.0, gt=0, le=3600)
    import_dir: str = "./imports"
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    cors_origins: str = ""
    key_pepper: SecretStr | None = None

    def pepper(self) -> bytes | None:
        """``key_pepper`` as bytes (None when unset): what API key digests are keyed with."""
        return self.key_pepper.get_secret_value().encode("utf-8") if self.key_pepper else None

    def cors_allowed(self) -> list[str]:
        """The origins of ``cors_origins`` (empty: CORS off)."""
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    def first_fit_min_outcomes(self) -> int:
        """Outcomes before the first fit: ``first_fit_outcomes``, else 500 with safe start
        and 200 without (see ``first_fit_outcomes``)."""
        if self.first_fit_outcomes is not None:
            return self.first_fit_outcomes
        return SAFE_START_FIRST_FIT if self.max_loss_vs_list is not None else FIRST_FIT

    def change_config(self) -> ChangeDetection | None:
        """Change detection for refits, or None when it is off."""
        if not self.change_detection:
            return None
        from pricing.changes import ChangeDetection

        return ChangeDetection(self.change_alpha, self.change_weight_before, cusum=self.change_cusum,
                               cusum_k=self.change_cusum_k, by_category=self.change_by_category,
                               cusum_dating=self.change_cusum_dating)  # fmt: skip

    def sampler_config(self) -> dict[str, Any]:
        """The demand model's sampler settings for refits (method and any overrides)."""
        config: dict[str, Any] = {"method": self.fit_method}
        for name, value in (("draws", self.fit_draws), ("tune", self.fit_tune),
                            ("chains", self.fit_chains)):  # fmt: skip
            if value is not None:
                config[name] = value
        return config

    @field_validator("outcome_window_seconds")
    @classmethod
    def _window_covers_quotes(cls, value: int, info: ValidationInfo) -> int:
        ttl = info.data.get("quote_ttl_seconds")
        if ttl is not None and value < ttl:
            raise ValueError(
                f"must be at least quote_ttl_seconds ({ttl}): a quote can be redeemed until it expires"
            )
        return value

    @field_validator("database_url")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        if not value.startswith(("sqlite", "postgresql")):
            raise ValueError("expected a sqlite:// or postgresql+psycopg:// URL")
        if value.startswith("postgresql://"):
            # Use psycopg 3, the driver we install, without making users spell it.
            value = "postgresql+psycopg://" + value.removeprefix("postgresql://")
        return value

    @field_validator("calendar_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if value == "UTC":
            return value  # needs no time zone database
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r} (e.g. UTC, Europe/Paris)") from exc
        return value

    def calendar_zone(self) -> tzinfo:
        """``calendar_timezone`` as a :class:`datetime.tzinfo`."""
        return UTC if self.calendar_timezone == "UTC" else ZoneInfo(self.calendar_timezone)

    @field_validator("sqlite_page_size")
    @classmethod
    def _page_size_is_a_power_of_two(cls, value: int | None) -> int | None:
        if value is not None and value & (value - 1):
            raise ValueError("must be a power of two from 512 to 65536")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        levels = {"critical", "error", "warning", "info", "debug", "trace"}
        if value.lower() not in levels:
            raise ValueError(f"expected one of {sorted(levels)}")
        return value.lower()


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment, with keyword overrides.

    Parameters
    ----------
    **overrides
        Values that win over the environment (used by tests and the CLI).

    Returns
    -------
    Settings
        Validated settings.

    Raises
    ------
    SettingsError
        Naming each invalid environment variable and why it is invalid.
    """
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            problems.append(f"{ENV_PREFIX}{field.upper()}: {error['msg']}")
        raise SettingsError("invalid settings: " + "; ".join(problems)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings (read once)."""
    return load_settings()
