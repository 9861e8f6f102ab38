"""Priors as small immutable objects, so model configs are data that merge and hash.

Examples
--------
>>> Normal(mu=0.4, sigma=1.0).to_dict()
{'dist': 'Normal', 'mu': 0.4, 'sigma': 1.0}
>>> prior_from_dict({'dist': 'HalfNormal', 'sigma': 0.5})
HalfNormal(sigma=0.5)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pymc as pm

if TYPE_CHECKING:
    from pricing.cells import Cells

__all__ = [
    "HalfNormal",
    "Normal",
    "Prior",
    "list_price_anchors",
    "list_price_log_elasticity",
    "prior_from_dict",
]


@dataclass(frozen=True, slots=True)
class Normal:
    """Normal(mu, sigma) on the real line."""

    mu: float = 0.0
    sigma: float = 1.0

    def __post_init__(self) -> None:
        if not self.sigma > 0:
            raise ValueError(f"Normal prior needs sigma > 0, got {self.sigma}")

    def create(self, name: str, **kwargs: Any) -> Any:
        """Add this prior to the current PyMC model as ``name`` (returns the PyMC variable)."""
        return pm.Normal(name, mu=self.mu, sigma=self.sigma, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (used in config hashes and snapshots)."""
        return {"dist": "Normal", **asdict(self)}


@dataclass(frozen=True, slots=True)
class HalfNormal:
    """HalfNormal(sigma) on the positive half line (scale parameters)."""

    sigma: float = 1.0

    def __post_init__(self) -> None:
        if not self.sigma > 0:
            raise ValueError(f"HalfNormal prior needs sigma > 0, got {self.sigma}")

    def create(self, name: str, **kwargs: Any) -> Any:
        """Add this prior to the current PyMC model as ``name`` (returns the PyMC variable)."""
        return pm.HalfNormal(name, sigma=self.sigma, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (used in config hashes and snapshots)."""
        return {"dist": "HalfNormal", **asdict(self)}


Prior = Normal | HalfNormal
_REGISTRY: dict[str, type[Normal] | type[HalfNormal]] = {"Normal": Normal, "HalfNormal": HalfNormal}


def prior_from_dict(data: dict[str, Any]) -> Prior:
    """Rebuild a prior from :meth:`to_dict` output.

    Raises
    ------
    ValueError
        If ``dist`` is not a known distribution.
    """
    params = dict(data)
    name = params.pop("dist", None)
    if name not in _REGISTRY:
        raise ValueError(
            f"unknown prior distribution {name!r}; expected one of {sorted(_REGISTRY)}"
        )
    return _REGISTRY[name](**params)


def list_price_log_elasticity(
    list_price_minor: Any, unit_cost_minor: Any, conversion_at_list: Any
) -> np.ndarray:
    """log of the model's elasticity at which the list price maximises expected profit.

    In the demand model, P(buy) = sigmoid(a − e · log(p / list)), so the price elasticity
    of demand at list is ``−e (1 − P0)`` with ``P0`` the conversion at list, and the
    profit (p − c) · P is maximal at list when the Lerner condition holds,
    ``(p − c) / p = 1 / (e (1 − P0))``::

        e = p / ((p − c) (1 − P0)).

    A merchant's list price is a statement about demand: centring the elasticity prior on
    this value makes the first posterior's optimum lie near list, so that Thompson sampling
    starts in the list price's neighbourhood and moves away as data arrive.

    Parameters
    ----------
    list_price_minor, unit_cost_minor : array of int, shape (n,)
        List price and unit cost, minor units (the same currency per element).
    conversion_at_list : array of float, shape (n,)
        P(buy) at list price, in [0, 1).

    Returns
    -------
    ndarray of float, shape (n,)
        log e; NaN where the list price does not exceed the unit cost (no finite elasticity
        makes a loss-making price optimal).
    """
    p = np.asarray(list_price_minor, dtype=np.float64)
    c = np.asarray(unit_cost_minor, dtype=np.float64)
    p0 = np.clip(np.asarray(conversion_at_list, dtype=np.float64), 0.0, 0.99)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(p > c, np.log(p) - np.log(np.maximum(p - c, 1e-12)) - np.log1p(-p0), np.nan)
    return np.asarray(out, dtype=np.float64)


def list_price_anchors(
    cells: Cells,
    products: Mapping[str, tuple[str, int, int]],
    *,
    bounds: tuple[float, float] = (0.5, 8.0),
) -> dict[str, float]:
    """Each category's log elasticity at which its list prices are optimal (the prior's centre).

    The median over the category's SKUs of :func:`list_price_log_elasticity`, with each
    SKU's conversion at list read from the cells within 1 % of list price without promotion
    (so that a list price moved by a guardrail's ending still counts), pooled over segments
    (Jeffreys: (conversions + 0.5) / (trials + 1)), or the pooled rate of all the cells
    when the SKU has none there. Pooling segments whose conversions differ makes the anchor
    slightly low (with a shared e the exact condition weighs each segment's P(1 − P));
    time-decay weights are not applied.

    Parameters
    ----------
    cells : Cells
        The data the model is about to be fitted to.
    products : mapping of SKU to (category, list price, unit cost in minor units)
        The catalogue; SKUs absent from it do not count.
    bounds : (float, float)
        The anchor elasticity is clipped to this range (a degenerate margin, e.g. cost
        nearly equal to price, would otherwise give an absurd prior).

    Returns
    -------
    dict of str to float
        ``{category: log e}`` for every category with at least one SKU with a positive
        margin; the demand model's ``category_log_elasticity_anchor``.
    """
    at_list = (np.abs(cells.log_price_ratio) < math.log(1.01)) & (cells.promotion == "")
    trials = cells.trials.astype(np.float64)
    conversions = cells.conversions.astype(np.float64)
    pooled = (conversions.sum() + 0.5) / (trials.sum() + 1.0)
    skus, index = np.unique(cells.sku[at_list], return_inverse=True)
    n_at = np.bincount(index, trials[at_list], len(skus))
    c_at = np.bincount(index, conversions[at_list], len(skus))
    seen = {str(s): (float(n), float(c)) for s, n, c in zip(skus, n_at, c_at, strict=True)}
    by_category: dict[str, list[float]] = {}
    for sku, (category, list_price, unit_cost) in sorted(products.items()):
        n, c = seen.get(sku, (0.0, 0.0))
        p0 = (c + 0.5) / (n + 1.0) if n > 0 else pooled
        value = float(list_price_log_elasticity([list_price], [unit_cost], [p0])[0])
        if math.isfinite(value):
            by_category.setdefault(category, []).append(value)
    low, high = math.log(bounds[0]), math.log(bounds[1])
    return {c: float(np.clip(np.median(v), low, high)) for c, v in sorted(by_category.items())}
