"""Action distributions per line, computed once per posterior and reused by every quote.

Thompson sampling's action distribution for a line depends only on the posterior (its
draws and their weights), the line's candidates (segment, SKU, context, prices,
promotions, quantity) and, for a budget-paced promotion, the pacing rates; never on
the customer. Drawing a posterior sample by weight and serving its argmax (or a
candidate from its LP mixture) is the same random experiment as drawing a candidate
from that distribution. So the quote path keeps the distribution per line and samples
from it (:func:`pricing.thompson.sample`): the choice, and the propensity logged with it,
are exactly those of the sampler run over every draw, at a cost that no longer depends
on the number of draws or candidates.

:class:`ChoiceCache` holds the distributions of one posterior: a new posterior (a refit
or an online re-weighting) empties it, and each line is computed again, once, on its
first quote. For a paced line the distribution also depends on the pacing rates, which
move with every offer: rates are put on a grid (:func:`quantize_rate`) and, when a line's
rates move to another grid point, the quote uses the distribution in hand (and logs
*its* propensity) while the new one is solved in the background.

A background solve is tens of milliseconds of NumPy and LP work. On a thread of a
serving worker it holds the interpreter's lock (the GIL) for most of that time, and the
event loop, which gives the lock up at every system call and at every NumPy call that
releases it, then waits up to the switch interval to take it back, again and again: the
requests of those milliseconds are slowed, not just shared. With ``processes=True`` (the
service's default, ``PRICING_PACING_PROCESS``) the heavy part of a background solve
(:meth:`ChoiceCache.heavy`) runs in one child process shared by every cache of the
worker, and the background thread only waits for it, without the GIL.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import CancelledError, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

__all__ = ["RATE_STEP", "ChoiceCache", "quantize_rate", "shutdown_solver_process"]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Pacing rates are solved on a grid of this relative step: a paced line is re-solved
#: only when its rate moves by a step, never on the tiny moves of every quote.
RATE_STEP = 1.02

Distribution = NDArray[np.float64]


def quantize_rate(rate: float) -> float:
    """The grid rate at or just below ``rate`` (money per decision; 0 and inf unchanged)."""
    if rate <= 0 or not math.isfinite(rate):
        return float(rate)
    return float(RATE_STEP ** math.floor(math.log(rate) / math.log(RATE_STEP) + 1e-9))


#: The child process that background solves run in (spawned on first use, shared by every
#: cache of the process), and the lock that guards starting and stopping it.
_SOLVER: ProcessPoolExecutor | None = None
_SOLVER_LOCK = threading.Lock()
#: When starting or using the child last failed (monotonic seconds), and how long
#: background solves then run in-process before another child is tried.
_SOLVER_FAILED_AT = -math.inf
SOLVER_RETRY_SECONDS = 30.0
#: Set on a cache's background thread while it solves (see :meth:`ChoiceCache.heavy`).
_BACKGROUND = threading.local()


def _solver() -> ProcessPoolExecutor:
    global _SOLVER
    with _SOLVER_LOCK:
        if _SOLVER is None:
            # spawn, not fork: the worker has threads (a forked lock may be held forever).
            _SOLVER = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn")
            )
        return _SOLVER


def shutdown_solver_process() -> None:
    """Stop the background solver's child process, if one was started (a later background
    solve starts a new one)."""
    global _SOLVER
    with _SOLVER_LOCK:
        pool, _SOLVER = _SOLVER, None
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


class ChoiceCache:
    """Greedy action distributions per line for the posterior being served.

    Parameters
    ----------
    max_lines : int
        Lines kept (the least recently used are dropped first).
    resolve_seconds : float
        A paced line is re-solved in the background at most this often: its distribution
        may trail its rates by that long (the propensity logged is always that of the
        distribution used).
    background_share : float
        Most of one core the background solver may take: after a solve of ``t`` seconds
        it rests ``t · (1 / share - 1)``, so that re-solving many paced lines never
        starves the requests of the worker's single interpreter (the GIL).
    processes : bool
        Run the heavy part of background solves (:meth:`heavy`) in a child process (see
        the module docstring). A line's first solve still runs in the caller.

    Notes
    -----
    A distribution has shape ``(n,)`` over the line's candidates and sums to 1; it is
    the policy's distribution before the ε exploration floor. Entries belong to one
    posterior object: asking with another one empties the cache, and a background
    solution finished for a posterior no longer served is dropped.
    """

    def __init__(
        self, max_lines: int = 50_000, resolve_seconds: float = 2.0,
        background_share: float = 0.2, processes: bool = False,
    ) -> None:  # fmt: skip
        if not 0 < background_share <= 1:
            raise ValueError(f"background_share must lie in (0, 1], got {background_share}")
        self.max_lines = max_lines
        self.resolve_seconds = resolve_seconds
        self.background_share = background_share
        self.processes = processes
        self._started: dict[Hashable, float] = {}
        self._owner: object | None = None
        self._entries: OrderedDict[Hashable, tuple[bytes, Distribution]] = OrderedDict()
        self._pending: set[Hashable] = set()
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        #: Distributions computed in a request (a line's first quote on a posterior).
        self.computed_inline = 0
        #: Paced distributions re-solved in the background after their rates moved.
        self.computed_background = 0
        #: Quotes served from the cache.
        self.hits = 0
        #: Background solves whose heavy part ran in the solver process.
        self.computed_in_process = 0

    def __len__(self) -> int:
        return len(self._entries)

    def _lookup(self, owner: object, key: Hashable) -> tuple[bytes, Distribution] | None:
        with self._lock:
            if owner is not self._owner:
                self._owner = owner
                self._entries.clear()
                self._pending.clear()
                self._started.clear()
                return None
            hit = self._entries.get(key)
            if hit is not None:
                self._entries.move_to_end(key)
                self.hits += 1
            return hit

    def _store(self, owner: object, key: Hashable, tag: bytes, value: Distribution) -> None:
        with self._lock:
            if owner is not self._owner:  # solved for a posterior that was replaced meanwhile
                return
            self._entries[key] = (tag, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_lines:
                self._entries.popitem(last=False)

    def get(
        self, owner: object, key: Hashable, compute: Callable[[], Distribution]
    ) -> Distribution:
        """The distribution of line ``key`` under posterior ``owner``.

        Parameters
        ----------
        owner : object
            The posterior the distribution is computed from (compared by identity).
        key : hashable
            Everything else the distribution depends on.
        compute : callable
            Computes it, shape ``(n,)``, on a miss.
        """
        hit = self._lookup(owner, key)
        if hit is not None:
            return hit[1]
        value = compute()
        self._store(owner, key, b"", value)
        self.computed_inline += 1
        return value

    def get_paced(
        self,
        owner: object,
        key: Hashable,
        rates: NDArray[np.float64],
        compute: Callable[[NDArray[np.float64]], Distribution],
    ) -> Distribution:
        """The paced distribution of line ``key``: exact for ``rates`` when cached or new.

        Parameters
        ----------
        rates : ndarray, shape (M,)
            Pacing rates of the line's paced promotions (already on the grid).
        compute : callable
            ``compute(rates)`` solves the line's LP and returns its distribution, shape
            ``(n,)``; when the cached entry is for other rates it runs in a background
            thread and the entry in hand is returned meanwhile.
        """
        wanted = rates.tobytes()
        hit = self._lookup(owner, key)
        if hit is None:
            value = compute(rates)
            self._store(owner, key, wanted, value)
            self.computed_inline += 1
            return value
        if hit[0] != wanted:
            now = time.monotonic()
            with self._lock:
                start = key not in self._pending and (
                    now - self._started.get(key, -math.inf) >= self.resolve_seconds
                )
                if start:
                    self._pending.add(key)
                    self._started[key] = now
                    if len(self._started) > 2 * self.max_lines:
                        self._started.clear()
                if start and self._pool is None:
                    self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pacing-lp")
                pool = self._pool
            if start and pool is not None:
                pool.submit(self._background, owner, key, rates.copy(), compute)
        return hit[1]

    def _background(
        self,
        owner: object,
        key: Hashable,
        rates: NDArray[np.float64],
        compute: Callable[[NDArray[np.float64]], Distribution],
    ) -> None:
        started = time.perf_counter()
        _BACKGROUND.cache = self
        try:
            self._store(owner, key, rates.tobytes(), compute(rates))
            self.computed_background += 1
        finally:
            _BACKGROUND.cache = None
            with self._lock:
                self._pending.discard(key)
        rest = (time.perf_counter() - started) * (1.0 / self.background_share - 1.0)
        time.sleep(min(rest, 1.0))

    def heavy(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)``: in the solver process when called from this cache's
        background solve with ``processes`` on, else here.

        ``function`` must be a module-level function and ``args`` picklable (NumPy arrays).
        If the child is broken (killed, out of memory) or cannot start, the call runs here,
        so a solve is never lost, and so do background solves for the next
        :data:`SOLVER_RETRY_SECONDS`; then a new child is started. A call that never
        returns in the child holds its line's re-solves back, as it would on the thread.
        """
        global _SOLVER, _SOLVER_FAILED_AT
        if not self.processes or getattr(_BACKGROUND, "cache", None) is not self:
            return function(*args)
        if time.monotonic() - _SOLVER_FAILED_AT < SOLVER_RETRY_SECONDS:
            return function(*args)
        pool = _solver()
        try:
            out = pool.submit(function, *args).result()
        except (BrokenProcessPool, CancelledError, RuntimeError) as exc:
            # Broken (the child died or could not start), cancelled or refused (stopped
            # meanwhile by shutdown_solver_process): solve here, and start a new child
            # after a pause (a child that cannot start must not be retried per solve).
            log.warning("pacing solver process unavailable (%s: %s); solving in-process",
                        type(exc).__name__, str(exc)[:200])  # fmt: skip
            with _SOLVER_LOCK:
                if _SOLVER is pool:
                    _SOLVER = None
                    _SOLVER_FAILED_AT = time.monotonic()
            pool.shutdown(wait=False, cancel_futures=True)
            return function(*args)
        self.computed_in_process += 1
        return out

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Block until background solutions are done (tests and benchmarks)."""
        with self._lock:
            pool = self._pool
        if pool is not None:
            pool.submit(lambda: None).result(timeout=timeout)
