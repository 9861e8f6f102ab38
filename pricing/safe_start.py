"""Safe start: the engine never earns less than list prices would, beyond a set share.

A merchandiser switching the engine on should not see a loss first. Following the
conservative bandits of Kazerouni et al. (2017, "Conservative contextual linear
bandits"), the engine keeps, per SKU and in all, a budget of allowed loss: its
cumulative expected profit must stay at least ``(1 − α)`` times what the list price
would have earned on the same traffic, with high probability under the posterior.

For a line with candidates a (the reference, non-personalized price among them) and
posterior draws d, let ``Δ_d(a) = π_d(a) − π_d(ref)`` be a candidate's expected profit
over the reference's, and ``c(a)`` the lower-tail mean (the worst ``1 − confidence``
share of the posterior's mass) of ``Δ_d(a) + α · π_d(ref)``. The budget is the sum of
``c`` over the decisions served so far. A candidate the budget cannot afford
(``budget + c(a) < 0``, for the SKU or in all) is *blocked*: its probability moves to the
reference price, which adds ``α · (lower-tail mean of π(ref)) ≥ 0`` to the budget. So the
budget never goes negative, and while it is thin the engine still serves the candidates it
can afford (those close to list, or those the posterior is sure beat it).

Why the sum of per-decision tail means is safe: the lower-tail mean is super-additive (its
negative, expected shortfall, is a coherent risk measure), so the sum bounds the
lower-tail mean of the cumulative surplus, which is below its quantile: with posterior
probability at least ``confidence`` the cumulative expected profit is at least
``(1 − α)`` × the list price's. Which candidates are blocked depends only on the state
before the draw, so the served distribution is known exactly: the propensity logged is the
blocked-and-moved distribution's.

The past is re-valued with what the engine has learnt since (as Kazerouni et al. bound the
past actions' reward with the current confidence set, not with the one they were chosen
under). Each SKU keeps how often each of its lines' candidates was served; when a new
posterior is served, the SKU's budget is recomputed as the sum over its past decisions of
``c`` under that posterior. Valued once at decision time, a deviation from list chosen
while the posterior was wide would count for ever at its worst case; re-valued, it counts
at what the engine now believes it earned, so a good start buys room to keep learning
(measured: ``python -m benchmarks.safe_start``, docs/benchmarks.md). A re-valuation can
find the past worse than it looked, and the budget negative: then only the reference and
the candidates that add to the budget at least as much as it does are served until it
recovers.

:class:`JointSafetyBudget`, which the service and the benchmarks use, keeps the same promise
with a tighter bound: the surplus of the decisions summed per posterior draw, and the lower
tail of that sum (see its docstring). :class:`SafetyBudget` is the summed-tails version.

The budget lives in one worker's memory: with W workers each keeps its own share of the
promise, so the sum holds too; a restarted worker starts from zero (more caution, never
less). The candidate counts are kept for at most ``max_lines`` lines per SKU; beyond that
the least recently served line's contribution is frozen at its last value.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["JointSafetyBudget", "SafetyBudget", "tail_mean"]

FloatArray = NDArray[np.float64]


def tail_mean(values: NDArray[np.floating[Any]], weights: FloatArray, share: float) -> FloatArray:
    """Weighted mean of the lowest ``share`` of the weight, per column.

    Parameters
    ----------
    values : ndarray, shape (D, n)
        A quantity per posterior draw (rows) and candidate (columns).
    weights : ndarray, shape (D,)
        Normalised draw weights.
    share : float
        Tail mass in (0, 1].

    Returns
    -------
    ndarray, shape (n,)
        For each column, the mean of its values over the lowest ``share`` of the weight
        (a draw straddling the boundary counts with the part of its weight inside).
    """
    if not 0.0 < share <= 1.0:
        raise ValueError(f"share must lie in (0, 1], got {share}")
    w0 = np.asarray(weights, dtype=np.float64)
    if w0.size and w0.max() == w0.min():  # equal weights: a partial sort is enough
        v = np.asarray(values, dtype=np.float64)
        m = share * len(w0)  # draws inside the tail (the last one in part)
        full = min(int(np.floor(m + 1e-9)), len(w0) - 1)
        # Rows of draws, contiguous: partitioning along the strided axis is several times slower.
        part = np.partition(np.ascontiguousarray(v.T), full, axis=1)
        fraction = m - full
        inside_sum = part[:, :full].sum(axis=1) + (
            fraction * part[:, full] if fraction > 1e-12 else 0.0
        )
        equal: FloatArray = inside_sum / m
        return equal
    order = np.argsort(values, axis=0)
    sorted_values = np.take_along_axis(np.asarray(values, dtype=np.float64), order, axis=0)
    w = np.asarray(weights, dtype=np.float64)[order]
    before = np.cumsum(w, axis=0) - w
    inside = np.clip(share - before, 0.0, w)
    out: FloatArray = (inside * sorted_values).sum(axis=0) / inside.sum(axis=0)
    return out


def _guarded(
    blocked: NDArray[np.bool_], probabilities: FloatArray, reference: int, index: int
) -> tuple[int, float]:
    """The candidate served for the draw ``index`` and its exact propensity: a blocked
    draw is served the reference (never blocked), which takes all blocked mass."""
    blocked[reference] = False
    served = index if not blocked[index] else reference
    propensity = float(probabilities[served])
    if served == reference:
        propensity += float(probabilities[blocked].sum())
    return served, propensity


#: Costs ``c(a)`` of a line's candidates under a given posterior, shape (n,).
Recost = Callable[[Any], FloatArray]


@dataclass
class _Line:
    """How often each candidate of one line was served, and how to value them again."""

    recost: Recost
    counts: FloatArray
    #: The line's share of its SKU's budget, as last valued (money units).
    value: float = 0.0
    #: Running sum of the costs its decisions added (a re-valuation made meanwhile
    #: keeps the ones that arrived after its snapshot).
    added: float = 0.0
    #: ``posterior -> (surplus (D, n), weights (D,))``, for :class:`JointSafetyBudget`.
    resurplus: Any = None


@dataclass
class _Sku:
    """One SKU's budget and the history it is recomputed from."""

    value: float = 0.0
    #: The posterior ``value`` was last recomputed under (None: never).
    epoch: Any = None
    lines: OrderedDict[Hashable, _Line] = field(default_factory=OrderedDict)
    #: Contributions of lines dropped from ``lines`` (frozen at their last value).
    frozen: float = 0.0
    #: Running sum of the costs all its decisions added (see ``_Line.added``).
    added: float = 0.0


class SafetyBudget:
    """One worker's budgets of allowed loss against list prices (module docstring).

    Parameters
    ----------
    max_loss : float
        α: the share of the list price's expected profit the engine may fall short by
        (``PRICING_MAX_LOSS_VS_LIST``, e.g. 0.02).
    confidence : float
        Posterior probability with which the promise holds (the tail is ``1 − confidence``).
    background : bool
        Re-value on a thread of its own (the service: a request never pays for it; until
        it lands, the SKU's budget stays valued under the previous posterior, as every
        budget was before re-valuation existed). False: at the SKU's first decision under
        a new posterior, in that decision (simulations: reproducible).
    max_lines : int
        Lines per SKU whose candidate counts are kept for re-valuation. The first
        decision of a SKU under a new posterior re-values all of them (one expected-profit
        evaluation each, ~50 µs at 500 draws, whose costs the later decisions of those
        lines then reuse), so this bounds what that one request pays.
    """

    def __init__(
        self, max_loss: float, confidence: float = 0.9, max_lines: int = 64, *,
        background: bool = False,
    ) -> None:  # fmt: skip
        if not 0.0 <= max_loss < 1.0:
            raise ValueError(f"max_loss must lie in [0, 1), got {max_loss}")
        if not 0.0 < confidence < 1.0:
            raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
        if max_lines < 1:
            raise ValueError(f"max_lines must be >= 1, got {max_lines}")
        self.max_loss = max_loss
        self.confidence = confidence
        self.max_lines = max_lines
        self.background = background
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._pending: set[str] = set()
        self._latest: Any = None
        self._skus: dict[str, _Sku] = {}
        self._total = 0.0
        #: Draws blocked and served the reference price instead.
        self.gated = 0
        #: Budgets recomputed under a new posterior.
        self.revalued = 0

    def costs(
        self, profit: NDArray[np.floating[Any]], weights: FloatArray, reference: int
    ) -> FloatArray:
        """What serving each candidate adds to the budget, ``c(a)``, shape (n,).

        Parameters
        ----------
        profit : ndarray, shape (D, n)
            Expected profit per draw and candidate (money units of the budget).
        weights : ndarray, shape (D,)
        reference : int
            Column of the reference (non-personalized) candidate.
        """
        return tail_mean(self.surplus(profit, reference), weights, 1.0 - self.confidence)

    def surplus(self, profit: NDArray[np.floating[Any]], reference: int) -> FloatArray:
        """Each candidate's expected profit over ``(1 − α)`` × the reference's, per draw.

        Parameters
        ----------
        profit : ndarray, shape (D, n)
            Expected profit per draw and candidate (money units of the budget).
        reference : int
            Column of the reference (non-personalized) candidate.

        Returns
        -------
        ndarray, shape (D, n)
        """
        p = np.asarray(profit, dtype=np.float64)
        base = p[:, reference : reference + 1]
        out: FloatArray = p - base + self.max_loss * base
        return out

    def revalue(self, sku: str, posterior: Any) -> None:
        """Recompute ``sku``'s budget from its past decisions under ``posterior``.

        The lines are valued outside the lock, from a snapshot of their counts; decisions
        that arrive meanwhile keep the costs they were served with.
        """
        with self._lock:
            state = self._skus.get(sku)
            if state is None or state.epoch is posterior:
                return
            if not state.lines:  # nothing to re-value
                state.epoch = posterior
                return
            snapshot = [(key, line, line.counts.copy(), line.added)
                        for key, line in state.lines.items()]  # fmt: skip
        values = [float(counts @ line.recost(posterior)) for _, line, counts, _ in snapshot]
        with self._lock:
            if state.epoch is posterior:
                return
            new = state.frozen
            for (key, line, _, added), value in zip(snapshot, values, strict=True):
                if state.lines.get(key) is not line:  # dropped meanwhile: already frozen
                    continue
                line.value = value + (line.added - added)
                new += line.value
            # Lines first served after the snapshot count at the costs they were served with.
            seen = {key for key, *_ in snapshot}
            new += sum(line.value for key, line in state.lines.items() if key not in seen)
            self._total += new - state.value
            state.value, state.epoch = new, posterior
            self.revalued += 1

    def _schedule(self, sku: str, posterior: Any) -> None:
        """Re-value ``sku`` under ``posterior`` on the background thread (once at a time)."""
        with self._lock:
            state = self._skus.get(sku)
            self._latest = posterior
            if state is None or state.epoch is posterior or sku in self._pending:
                return
            self._pending.add(sku)
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="safe-start")
            pool = self._pool

        def run() -> None:
            try:
                if posterior is self._latest:  # skip a posterior replaced while queued
                    self.revalue(sku, posterior)
            finally:
                with self._lock:
                    self._pending.discard(sku)

        pool.submit(run)

    def serve(
        self, sku: str, costs: FloatArray, probabilities: FloatArray, reference: int, index: int,
        *, line: Hashable | None = None, recost: Recost | None = None, posterior: Any = None,
    ) -> tuple[int, float, bool]:  # fmt: skip
        """Guard one decision, atomically: block what the budget cannot afford, spend.

        Parameters
        ----------
        sku : str
        costs : ndarray, shape (n,)
            :meth:`costs` of the line's candidates.
        probabilities : ndarray, shape (n,)
            The policy's distribution before the guard.
        reference : int
            The reference candidate (never blocked).
        index : int
            The candidate the policy drew from ``probabilities``.
        line : hashable, optional
            The line's identity (same candidates, same demand): with ``recost`` and
            ``posterior``, the decision is remembered and re-valued under later posteriors.
        recost : callable, optional
            ``posterior -> costs`` of this line's candidates, shape (n,).
        posterior : object, optional
            The posterior ``costs`` were computed under: a SKU whose budget was valued
            under another one is re-valued first.

        Returns
        -------
        tuple
            ``(served index, its exact propensity, whether the draw was blocked)``.
        """
        if posterior is not None:
            if self.background:
                self._schedule(sku, posterior)
            else:
                self.revalue(sku, posterior)
        with self._lock:
            state = self._skus.get(sku)
            if state is None:
                state = self._skus[sku] = _Sku(epoch=posterior)
            room = min(self._total, state.value)
            # Unaffordable, and adding less to the budget than the reference would (the
            # second part matters only for a budget that a re-valuation found negative).
            blocked = (costs + room < 0.0) & (costs < costs[reference])
            served, propensity = _guarded(blocked, probabilities, reference, index)
            cost = self._spend(state, costs, served)
            if line is not None and recost is not None:
                self._remember(state, line, recost, len(costs), served, cost)
            if served != index:
                self.gated += 1
        return served, propensity, served != index

    def record(self, sku: str, line: Hashable, recost: Recost, n: int, served: int) -> None:
        """Count a decision made before any posterior existed (so without a cost yet): it
        is valued with the SKU's other decisions under the first posterior served.

        Parameters
        ----------
        sku : str
        line : hashable
            The line's identity.
        recost : callable
            ``posterior -> costs`` of the line's candidates, shape (n,).
        n : int
            Candidates of the line.
        served : int
            The candidate served.
        """
        with self._lock:
            state = self._skus.get(sku)
            if state is None:
                state = self._skus[sku] = _Sku()
            self._remember(state, line, recost, n, served, 0.0)
            state.epoch = None  # to be valued under the next posterior served

    def _spend(self, state: _Sku, costs: FloatArray, served: int) -> float:
        """Add the served candidate's cost to its SKU and the total (caller holds the lock)."""
        cost = float(costs[served])
        state.value += cost
        state.added += cost
        self._total += cost
        return cost

    def _remember(
        self, state: _Sku, key: Hashable, recost: Recost, n: int, served: int, cost: float
    ) -> bool:
        """Count a served candidate for re-valuation (caller holds the lock); True when
        the SKU's least recently served line was dropped (frozen) to make room."""
        dropped_one = False
        line = state.lines.get(key)
        if line is None:
            line = state.lines[key] = _Line(recost, np.zeros(n))
            if len(state.lines) > self.max_lines:
                _, dropped = state.lines.popitem(last=False)
                state.frozen += dropped.value
                dropped_one = True
        else:
            state.lines.move_to_end(key)
        line.counts[served] += 1.0
        line.value += cost
        line.added += cost
        return dropped_one

    def spend(self, sku: str, cost: float) -> None:
        """Add ``cost`` to the SKU's budget and the total, outside any line (never
        re-valued: an allowance given by hand, or a test's starting state)."""
        with self._lock:
            state = self._skus.setdefault(sku, _Sku())
            state.value += cost
            state.frozen += cost
            self._total += cost

    def close(self) -> None:
        """Stop the re-valuation thread (after any re-valuation under way)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def budget(self, sku: str | None = None) -> float:
        """The budget left, for ``sku`` or in all (money units of the costs)."""
        with self._lock:
            if sku is None:
                return self._total
            state = self._skus.get(sku)
            return 0.0 if state is None else state.value


#: A line's surplus per draw and candidate and the draws' weights under a posterior:
#: ``posterior -> (surplus (D, n), weights (D,))``.
Resurplus = Callable[[Any], tuple[FloatArray, FloatArray]]


class JointSafetyBudget(SafetyBudget):
    """Safe start with the tail of the *summed* surplus, per posterior draw.

    :class:`SafetyBudget` bounds the lower tail of the cumulative surplus by the sum of
    per-decision lower tails. That is sound but loose: Thompson sampling serves prices
    above list where some draws say they pay and below where others do, so the surpluses
    of its decisions are anti-correlated across draws, and the worst 10 % of draws of their
    sum is much better than the sum of their worst 10 %. This budget keeps, per SKU and in
    all, the cumulative surplus of every past decision *per draw* of the posterior being
    served, ``S_d = Σ_t (π_d(a_t) − (1 − α) π_d(ref_t))``, and blocks a candidate ``a`` when
    the lower-tail mean of ``S_d + s_d(a)`` would be negative (and below what the reference
    would leave). That lower-tail mean is exactly the quantity of the promise, so no
    super-additivity slack is given away.

    The vectors belong to one posterior: when another is served, every SKU's past is
    re-valued under it at once (the total needs them all on the same draws), inline or on
    the budget's thread (``background``); until that lands, decisions use the summed-tails
    rule of :class:`SafetyBudget`. Lines dropped past ``max_lines`` and allowances given
    with :meth:`spend` count as fixed amounts. Draws are weighted with the deciding line's
    weights: exact after a refit (equal weights) and under whole-model reweighting; with
    per-block importance weights the SKU's lines of other blocks are read with this
    block's weights, an approximation.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._joint_epoch: Any = None
        self._draws: dict[str, FloatArray] = {}
        self._total_draws: FloatArray | None = None
        self._frozen_total = 0.0
        #: While a re-valuation under ``_pending_epoch`` runs: the surplus columns of the
        #: decisions made under that posterior meanwhile, to add when it lands.
        self._pending_epoch: Any = None
        self._since: list[tuple[str, FloatArray]] = []
        self._joint_busy = False

    def spend(self, sku: str, cost: float) -> None:
        """An allowance outside any line (counted as a fixed amount)."""
        super().spend(sku, cost)
        with self._lock:
            self._frozen_total += cost

    def revalue_all(self, posterior: Any) -> None:
        """Re-value every SKU's past under ``posterior``: per-draw sums and the scalar
        budgets (lines valued outside the lock)."""
        with self._lock:
            if self._joint_epoch is posterior:
                return
            self._pending_epoch, self._since = posterior, []
            snapshot = [
                (sku, key, line, line.counts.copy(), line.added)
                for sku, state in self._skus.items() for key, line in state.lines.items()
            ]  # fmt: skip
        valued = []
        for sku, key, line, counts, added in snapshot:
            assert line.resurplus is not None, "a joint budget's lines carry resurplus"
            surplus, weights = line.resurplus(posterior)
            cost = tail_mean(surplus, weights, 1.0 - self.confidence)
            valued.append((sku, key, line, added, float(counts @ cost), surplus @ counts))
        with self._lock:
            if self._pending_epoch is not posterior:
                return  # another posterior arrived meanwhile
            draws: dict[str, FloatArray] = {}
            values: dict[str, float] = {}
            for sku, key, line, added, value, vector in valued:
                state = self._skus[sku]
                if state.lines.get(key) is not line:
                    continue  # dropped meanwhile: already frozen
                line.value = value + (line.added - added)
                values[sku] = values.get(sku, 0.0) + line.value
                draws[sku] = draws[sku] + vector if sku in draws else vector.astype(np.float64)
            for sku, column in self._since:
                draws[sku] = draws[sku] + column if sku in draws else column.astype(np.float64)
            seen = {(sku, key) for sku, key, *_ in valued}
            for sku, state in self._skus.items():
                new = state.frozen + values.get(sku, 0.0) + sum(
                    line.value for key, line in state.lines.items() if (sku, key) not in seen
                )
                self._total += new - state.value
                state.value, state.epoch = new, posterior
            self._draws = draws
            total: FloatArray | None = None
            for vector in draws.values():
                total = vector.copy() if total is None else total + vector
            self._total_draws = total  # None: no decision yet (sized at the first)
            self._frozen_total = sum(state.frozen for state in self._skus.values())
            self._joint_epoch, self._pending_epoch, self._since = posterior, None, []
            self.revalued += 1

    def _schedule_all(self, posterior: Any) -> None:
        with self._lock:
            self._latest = posterior
            if self._joint_busy or self._joint_epoch is posterior:
                return
            self._joint_busy = True
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="safe-start")
            pool = self._pool

        def run() -> None:
            try:
                if posterior is self._latest:
                    self.revalue_all(posterior)
            finally:
                with self._lock:
                    self._joint_busy = False

        pool.submit(run)

    def serve(
        self, sku: str, costs: FloatArray, probabilities: FloatArray, reference: int, index: int,
        *, line: Hashable | None = None, recost: Recost | None = None, posterior: Any = None,
        resurplus: Resurplus | None = None, surplus: FloatArray | None = None,
        weights: FloatArray | None = None,
    ) -> tuple[int, float, bool]:  # fmt: skip
        """As :meth:`SafetyBudget.serve`, with the line's ``surplus`` (D, n) and draw
        ``weights`` (D,) under ``posterior``, and ``resurplus`` to value it again later."""
        if surplus is None or weights is None or posterior is None:
            return super().serve(sku, costs, probabilities, reference, index, line=line,
                                 recost=recost, posterior=posterior)  # fmt: skip
        if self._joint_epoch is not posterior:
            if self.background:
                self._schedule_all(posterior)
            else:
                self.revalue_all(posterior)
        share = 1.0 - self.confidence
        with self._lock:
            joint = self._joint_epoch is posterior
            if joint and self._total_draws is None:
                self._total_draws = np.zeros(len(weights))
            state = self._skus.get(sku)
            if state is None:
                state = self._skus[sku] = _Sku(epoch=posterior)
            if joint:
                assert self._total_draws is not None
                mine = self._draws.get(sku)
                own = np.zeros_like(self._total_draws) if mine is None else mine
                total = self._total_draws

                def room_of(columns: Any) -> FloatArray:
                    cand = surplus[:, columns]
                    return np.minimum(
                        state.frozen + tail_mean(own[:, None] + cand, weights, share),
                        self._frozen_total + tail_mean(total[:, None] + cand, weights, share),
                    )  # fmt: skip

                # The drawn candidate and the reference decide whether the draw is served
                # as it is; only a draw moved to the reference needs every candidate (its
                # propensity takes the mass of all blocked ones).
                pair = room_of([index, reference])
                if index != reference and not (pair[0] < 0.0 and pair[0] < pair[1]):
                    blocked = np.zeros(len(costs), dtype=bool)
                else:
                    room = room_of(slice(None))
                    blocked = (room < 0.0) & (room < room[reference])
            else:  # vectors not valued under this posterior yet: the summed-tails rule
                room = min(self._total, state.value) + costs
                blocked = (room < 0.0) & (room < room[reference])
            served, propensity = _guarded(blocked, probabilities, reference, index)
            cost = self._spend(state, costs, served)
            column = np.asarray(surplus[:, served], dtype=np.float64)
            if joint:
                assert self._total_draws is not None
                self._draws[sku] = own + column
                self._total_draws = self._total_draws + column
            elif self._pending_epoch is posterior:
                self._since.append((sku, column))
            if line is not None and resurplus is not None:
                self._remember_joint(state, line, resurplus, len(costs), served, cost)
            if served != index:
                self.gated += 1
        return served, propensity, served != index

    def _remember_joint(
        self, state: _Sku, key: Hashable, resurplus: Resurplus, n: int, served: int, cost: float
    ) -> None:
        def recost(post: Any) -> FloatArray:
            surplus, weights = resurplus(post)
            return tail_mean(surplus, weights, 1.0 - self.confidence)

        if self._remember(state, key, recost, n, served, cost):
            # The dropped line is still in the per-draw sums and now frozen too: value
            # everything again (the summed-tails rule serves until then).
            self._joint_epoch = None
        state.lines[key].resurplus = resurplus

    def record(self, sku: str, line: Hashable, recost: Recost, n: int, served: int,
               resurplus: Resurplus | None = None) -> None:  # fmt: skip
        """As :meth:`SafetyBudget.record`, with ``resurplus`` for the per-draw sums."""
        super().record(sku, line, recost, n, served)
        with self._lock:
            self._skus[sku].lines[line].resurplus = resurplus
            self._joint_epoch = None  # value it with the others under the next posterior
