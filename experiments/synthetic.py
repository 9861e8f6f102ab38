"""Synthetic demand data with known ground truth, for tests, benchmarks and notebooks.

Examples
--------
>>> truth = DemandTruth.random(n_segments=3, n_skus=4, n_categories=2, seed=1)
>>> cells = truth.sample_cells(trials_per_cell=50, price_ratios=(0.9, 1.0, 1.1), seed=2)
>>> len(cells)
36
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from pricing.cells import CellRecord, Cells

__all__ = ["DemandTruth"]


@dataclass(frozen=True)
class DemandTruth:
    """Ground-truth parameters of the conversion model.

    Attributes
    ----------
    segments, skus, categories : tuple of str
    sku_category : ndarray of int, shape (n_skus,)
    a_seg : ndarray, shape (n_segments,)
    a_sku : ndarray, shape (n_skus,)
    log_e : ndarray, shape (n_segments, n_categories)
        log(-b): price coefficients are b = -exp(log_e).
    """

    segments: tuple[str, ...]
    skus: tuple[str, ...]
    categories: tuple[str, ...]
    sku_category: NDArray[np.int64]
    a_seg: NDArray[np.float64]
    a_sku: NDArray[np.float64]
    log_e: NDArray[np.float64]

    @classmethod
    def random(
        cls,
        n_segments: int,
        n_skus: int,
        n_categories: int,
        *,
        seed: int,
        base_logit: float = -1.5,
        log_e_mean: float = float(np.log(1.5)),
        category_sd: float = 0.3,
        segment_sd: float = 0.3,
    ) -> DemandTruth:
        """Draw parameters from the model's own hierarchy (segment offsets sum to zero)."""
        rng = np.random.default_rng(seed)
        a_seg = rng.normal(0.0, 0.3, n_segments)
        a_seg -= a_seg.mean()
        mu_cat = rng.normal(log_e_mean, category_sd, n_categories)
        return cls(
            segments=tuple(f"seg{i}" for i in range(n_segments)),
            skus=tuple(f"SKU-{i:04d}" for i in range(n_skus)),
            categories=tuple(f"cat{i}" for i in range(n_categories)),
            sku_category=np.arange(n_skus) % n_categories,
            a_seg=a_seg,
            a_sku=rng.normal(base_logit, 0.5, n_skus),
            log_e=mu_cat[None, :] + rng.normal(0.0, segment_sd, (n_segments, n_categories)),
        )

    def b(self, segment: int, category: int) -> float:
        """True price coefficient (< 0)."""
        return float(-np.exp(self.log_e[segment, category]))

    def probability(
        self, segment: int, sku: int, price_ratio: float | NDArray[np.float64]
    ) -> NDArray[np.float64]:
        """True P(buy) at ``price_ratio`` = price / list price."""
        eta = (
            self.a_seg[segment]
            + self.a_sku[sku]
            + self.b(segment, int(self.sku_category[sku])) * np.log(price_ratio)
        )
        out: NDArray[np.float64] = 1.0 / (1.0 + np.exp(-eta))
        return out

    def sample_cells(
        self,
        *,
        trials_per_cell: int | Sequence[int],
        price_ratios: Sequence[float] = (0.8, 0.9, 1.0, 1.1, 1.2),
        seed: int,
    ) -> Cells:
        """Binomial outcomes for every (segment, SKU, price) cell.

        Parameters
        ----------
        trials_per_cell : int or sequence of int (one per segment)
            Visitors per cell; per-segment counts make some segments sparse.
        """
        rng = np.random.default_rng(seed)
        per_segment = (
            [int(trials_per_cell)] * len(self.segments)
            if isinstance(trials_per_cell, int)
            else [int(t) for t in trials_per_cell]
        )
        records = []
        for s, segment in enumerate(self.segments):
            if per_segment[s] <= 0:
                continue
            for j, sku in enumerate(self.skus):
                for ratio in price_ratios:
                    n = per_segment[s]
                    conversions = int(rng.binomial(n, self.probability(s, j, ratio)))
                    category = self.categories[int(self.sku_category[j])]
                    records.append(
                        CellRecord(segment, sku, category, float(ratio), "", n, conversions)
                    )
        return Cells.from_records(records)
