"""Sufficient statistics of the decision log: cells of (segment, sku, price level, promotion).

Every visitor offered SKU ``j`` at price ``p`` with promotion ``k`` in segment ``s`` is a
Bernoulli trial with the same success probability, so the log reduces exactly to
(trials, conversions) per cell and the model's cost grows with cells, not events.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["CellRecord", "Cells", "decay_weight"]


def decay_weight(age_days: float, half_life_days: float) -> float:
    """What a trial ``age_days`` old counts for under time decay.

    Parameters
    ----------
    age_days : float
        Age of the trial (days, >= 0).
    half_life_days : float
        Days after which a trial counts half; 0 or less: no decay (always 1).

    Returns
    -------
    float
        ``0.5 ** (age_days / half_life_days)``, in (0, 1]; never below 1e-6 (a trial of
        any age keeps a trace, so that a cell is never empty).
    """
    if half_life_days <= 0:
        return 1.0
    return max(float(0.5 ** (max(age_days, 0.0) / half_life_days)), 1e-6)


@dataclass(frozen=True, slots=True)
class CellRecord:
    """One cell: all trials with the same segment, SKU, relative price and promotion.

    Attributes
    ----------
    segment, sku, category : str
        Who, what, and the SKU's category.
    price_ratio : float
        Effective price (after any promotion discount) / reference (list) price,
        dimensionless, > 0.
    promotion : str
        Promotion identifier, ``""`` for none.
    trials, conversions : int
        Decisions with a known outcome, and how many converted.
    context : tuple of float
        Encoded declared context features (see :mod:`pricing.context`), () when none.
    weight : float
        What each of these trials counts for in the likelihood, in (0, 1]: 1 for fresh
        data, less for old data under time decay (``0.5 ** (age / half-life)``).
    regime : bool
        The trials came after a detected change in demand in their category
        (:mod:`pricing.changes`); the model then fits a shift of intercept and log
        elasticity for them.
    """

    segment: str
    sku: str
    category: str
    price_ratio: float
    promotion: str
    trials: int
    conversions: int
    context: tuple[float, ...] = ()
    weight: float = 1.0
    regime: bool = False


@dataclass(frozen=True)
class Cells:
    """Column arrays of cells, validated.

    Attributes
    ----------
    segment, sku, category, promotion : ndarray of str, shape (n_cells,)
    log_price_ratio : ndarray of float, shape (n_cells,)
        log(price / list price), dimensionless.
    trials, conversions : ndarray of int, shape (n_cells,)
    context : ndarray of float, shape (n_cells, n_columns)
        Encoded declared context features (zero columns when none is declared).
    context_columns : tuple of str
        Names of the context columns.
    weighted_trials, weighted_conversions : ndarray of float, shape (n_cells,), optional
        Decayed counts (each trial times its weight, see :attr:`CellRecord.weight`); None
        when every weight is 1. The demand model's likelihood then counts these instead
        of ``trials`` and ``conversions``.
    regime : ndarray of bool, shape (n_cells,), optional
        Cells after a detected change in demand (:attr:`CellRecord.regime`); None when no
        record is.
    regime_categories : tuple of str, optional
        The categories in a new regime, whether or not they have a cell after the change
        yet (one with none keeps its shift's prior); None: those with a cell marked
        ``regime``.
    """

    segment: NDArray[np.str_]
    sku: NDArray[np.str_]
    category: NDArray[np.str_]
    log_price_ratio: NDArray[np.float64]
    promotion: NDArray[np.str_]
    trials: NDArray[np.int64]
    conversions: NDArray[np.int64]
    context: NDArray[np.float64] | None = field(default=None)
    context_columns: tuple[str, ...] = ()
    weighted_trials: NDArray[np.float64] | None = None
    weighted_conversions: NDArray[np.float64] | None = None
    regime: NDArray[np.bool_] | None = None
    regime_categories: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        n = len(self.trials)
        if self.regime is not None and np.shape(self.regime) != (n,):
            raise ValueError(f"cells: regime must have shape ({n},)")
        if self.context is None:
            object.__setattr__(self, "context", np.zeros((n, len(self.context_columns))))
        assert self.context is not None
        if self.context.shape != (n, len(self.context_columns)):
            raise ValueError(
                f"cells: context has shape {self.context.shape}, expected "
                f"({n}, {len(self.context_columns)})"
            )
        if n and not np.isfinite(self.context).all():
            raise ValueError("cells: context values must be finite")
        for name in ("segment", "sku", "category", "log_price_ratio", "promotion", "conversions"):
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"cells: {name} has {len(getattr(self, name))} entries, trials has {n}"
                )
        if n and (self.trials <= 0).any():
            raise ValueError("cells: trials must be positive")
        if n and ((self.conversions < 0) | (self.conversions > self.trials)).any():
            raise ValueError("cells: conversions must lie in [0, trials]")
        if n and not np.isfinite(self.log_price_ratio).all():
            raise ValueError("cells: log_price_ratio must be finite (prices > 0)")
        if (self.weighted_trials is None) != (self.weighted_conversions is None):
            raise ValueError("cells: weighted_trials and weighted_conversions go together")
        if self.weighted_trials is not None and self.weighted_conversions is not None:
            wn, wk = self.weighted_trials, self.weighted_conversions
            if wn.shape != (n,) or wk.shape != (n,):
                raise ValueError(f"cells: weighted counts must have shape ({n},)")
            if n and not (np.isfinite(wn).all() and (wn > 0).all() and (wn <= self.trials + 1e-9).all()):
                raise ValueError("cells: weighted_trials must lie in (0, trials]")
            if n and not ((wk >= -1e-12) & (wk <= wn + 1e-9)).all():
                raise ValueError("cells: weighted_conversions must lie in [0, weighted_trials]")
        categories: dict[str, str] = {}
        for sku, category in zip(self.sku.tolist(), self.category.tolist(), strict=True):
            if categories.setdefault(sku, category) != category:
                raise ValueError(f"cells: sku {sku!r} is in two categories")

    def __len__(self) -> int:
        return len(self.trials)

    @classmethod
    def from_records(
        cls, records: Iterable[CellRecord], context_columns: tuple[str, ...] = (),
        regime_categories: Iterable[str] | None = None,
    ) -> Cells:  # fmt: skip
        """Build from :class:`CellRecord` rows, merging rows that describe the same cell.

        Cells come out sorted, whatever the order of ``records``.

        Parameters
        ----------
        records : iterable of CellRecord
            Each record's ``context`` has ``len(context_columns)`` entries.
        context_columns : tuple of str
            Names of the encoded context columns.
        regime_categories : iterable of str, optional
            :attr:`Cells.regime_categories`.
        """
        merged: dict[tuple[str, str, str, float, str, tuple[float, ...], bool], list[Any]] = {}
        width = len(context_columns)
        decayed = False
        for r in records:
            if len(r.context) != width:
                raise ValueError(
                    f"cells: a record has {len(r.context)} context values, expected {width}"
                )
            context = tuple(round(float(v), 12) for v in r.context)
            key = (
                r.segment,
                r.sku,
                r.category,
                round(float(r.price_ratio), 12),
                r.promotion,
                context,
                bool(r.regime),
            )
            weight = float(r.weight)
            if not 0.0 < weight <= 1.0:
                raise ValueError(f"cells: a record's weight must lie in (0, 1], got {weight}")
            acc = merged.setdefault(key, [0, 0, 0.0, 0.0])
            acc[0] += r.trials
            acc[1] += r.conversions
            acc[2] += weight * r.trials
            acc[3] += weight * r.conversions
            decayed = decayed or weight < 1.0
        keys = sorted(merged)  # same cells, same order: fits are reproducible for a seed
        weighted: dict[str, Any] = {}
        if decayed:
            weighted = {
                "weighted_trials": np.array([merged[k][2] for k in keys], dtype=float),
                "weighted_conversions": np.array([merged[k][3] for k in keys], dtype=float),
            }
        return cls(
            segment=np.array([k[0] for k in keys], dtype=str),
            sku=np.array([k[1] for k in keys], dtype=str),
            category=np.array([k[2] for k in keys], dtype=str),
            log_price_ratio=np.log(np.array([k[3] for k in keys], dtype=float)),
            promotion=np.array([k[4] for k in keys], dtype=str),
            trials=np.array([merged[k][0] for k in keys], dtype=np.int64),
            conversions=np.array([merged[k][1] for k in keys], dtype=np.int64),
            context=np.array([k[5] for k in keys], dtype=float).reshape(len(keys), width),
            context_columns=tuple(context_columns),
            regime=np.array([k[6] for k in keys], dtype=bool) if any(k[6] for k in keys) else None,
            regime_categories=None if regime_categories is None else tuple(sorted(set(regime_categories))),
            **weighted,
        )

    @property
    def n_trials(self) -> int:
        """Total trials over all cells."""
        return int(self.trials.sum())
