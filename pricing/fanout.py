"""Refits that outgrow one machine: one fit per category, gathered into one posterior.

The demand model's parameters split in two. **Shared** by every category: the population
level of the elasticities (``mu_global``, ``sd_cat``, ``sd_seg``) and of the intercepts
(``mu_a``, ``sd_a_sku``, ``sd_a_seg``), the segment offsets ``a_seg``, the promotion lifts
``g`` and the context effects ``d``. **Own** to a category ``c``: its mean log elasticity
``mu_cat[c]``, the log elasticities of its (segment, c) pairs and the intercepts of its
SKUs. Given the shared parameters, categories are independent: their likelihoods touch
disjoint own parameters. So a large catalog's refit can hold the shared parameters at the
last full fit's posterior means and fit each category alone (:class:`CategoryModel`), on
any number of machines; :func:`gather` then puts the categories' draws next to the full
fit's shared draws, and :func:`gate` applies the diagnostics gate to every part.

What the approximation gives up (README: demand model): the shared parameters do not learn
from the new data until the next full fit, and their uncertainty does not reach the
category fits (each is conditioned on point values), so category-level intervals are a
little narrower than the joint posterior's; a category's draws are independent of the
shared draws they are paired with. The full joint fit still runs, less often.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pricing.cells import Cells
from pricing.posterior import DemandPosterior

__all__ = ["CategoryDraws", "SharedParameters", "category_model", "gate", "gather"]

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class SharedParameters:
    """The parameters every category shares, at point values (weighted posterior means).

    Attributes
    ----------
    mu_global, sd_cat, sd_seg : float
        Population mean of log elasticity, its spread across categories, and across
        segments within a category.
    mu_a, sd_a_sku : float
        Population mean and spread of SKU intercepts (logit scale).
    a_seg : dict of str to float
        Segment offsets (an unseen segment: 0).
    g : dict of str to float
        Promotion lifts (an unseen promotion: ``promotion_prior_mean``).
    d : dict of str to float
        Context coefficients by column (an unseen column: 0).
    promotion_prior_mean : float
    regime_shift : tuple of (float, float)
        The full fit's shift of intercept and log elasticity common to the categories in
        a new regime after a detected change (``meta["regime_shift"]``; (0, 0) when it
        fitted none): a category fit with outcomes from the new regime centres its own
        shift there.
    shifted_categories : tuple of str or None
        When only some categories moved: those (the full fit folded the common shift
        into their own parameters, not into ``mu_global`` and ``mu_a``, so their fits
        centre there plus the shift); None when every category moved, or none did.
    """

    mu_global: float
    sd_cat: float
    sd_seg: float
    mu_a: float
    sd_a_sku: float
    a_seg: dict[str, float] = field(default_factory=dict)
    g: dict[str, float] = field(default_factory=dict)
    d: dict[str, float] = field(default_factory=dict)
    promotion_prior_mean: float = 0.0
    regime_shift: tuple[float, float] = (0.0, 0.0)
    shifted_categories: tuple[str, ...] | None = None

    def centres(self, category: str) -> tuple[float, float]:
        """Population means of log elasticity and SKU intercept that ``category``'s own
        parameters are centred on: the shared ones, plus the common shift when the
        category is in a new regime the shared ones do not carry."""
        if self.shifted_categories is not None and category in self.shifted_categories:
            return self.mu_global + self.regime_shift[1], self.mu_a + self.regime_shift[0]
        return self.mu_global, self.mu_a

    @classmethod
    def from_posterior(cls, posterior: DemandPosterior) -> SharedParameters:
        """Weighted posterior means of a full fit's shared parameters."""
        w = posterior.weights

        def mean(values: FloatArray) -> Any:
            return np.tensordot(w, values, axes=(0, 0))

        prior = posterior.meta.get("promotion_prior") or [0.0, 0.5]
        shift = posterior.meta.get("regime_shift") or {}
        listed = shift.get("categories")
        moved = tuple(str(c) for c in listed) if isinstance(listed, list) else None
        return cls(
            regime_shift=(float(shift.get("intercept", 0.0)), float(shift.get("log_elasticity", 0.0))),
            shifted_categories=moved if moved is not None and not set(posterior.categories) <= set(moved) else None,
            mu_global=float(mean(posterior.mu_global)), sd_cat=float(mean(posterior.sd_cat)),
            sd_seg=float(mean(posterior.sd_seg)), mu_a=float(mean(posterior.mu_a)),
            sd_a_sku=float(mean(posterior.sd_a_sku)),
            a_seg=dict(zip(posterior.segments, mean(posterior.a_seg).tolist(), strict=True)),
            g=dict(zip(posterior.promotions, mean(posterior.g).tolist(), strict=True)),
            d=dict(zip(posterior.context_columns, mean(posterior.d).tolist(), strict=True)),
            promotion_prior_mean=float(prior[0]),
        )  # fmt: skip


@dataclass(frozen=True)
class CategoryDraws:
    """One category's refit: D draws of its own parameters, and its diagnostics.

    Attributes
    ----------
    category : str
    skus : tuple of str
        The category's SKUs in the fit.
    pairs : tuple of (str, str)
        Its (segment, category) pairs.
    a_sku : ndarray, shape (D, n_skus)
    log_e : ndarray, shape (D, n_pairs)
    mu_cat : ndarray, shape (D,)
    diagnostics : dict
        ``max_rhat``, ``min_ess_bulk``, ``divergences``, ``seconds``, ``passed``, ``reasons``.
    n_cells, n_trials, n_conversions : int
    """

    category: str
    skus: tuple[str, ...]
    pairs: tuple[tuple[str, str], ...]
    a_sku: FloatArray
    log_e: FloatArray
    mu_cat: FloatArray
    diagnostics: dict[str, Any]
    n_cells: int = 0
    n_trials: int = 0
    n_conversions: int = 0

    def to_bytes(self) -> bytes:
        """Serialise the draws (``.npz``; labels and diagnostics travel separately)."""
        buffer = io.BytesIO()
        np.savez(buffer, a_sku=self.a_sku, log_e=self.log_e, mu_cat=self.mu_cat)
        return buffer.getvalue()

    def to_meta(self) -> dict[str, Any]:
        """The JSON side: labels, diagnostics and counts."""
        return {"category": self.category, "skus": list(self.skus),
                "pairs": [list(p) for p in self.pairs], "diagnostics": self.diagnostics,
                "n_cells": self.n_cells, "n_trials": self.n_trials,
                "n_conversions": self.n_conversions}  # fmt: skip

    @classmethod
    def from_stored(cls, meta: dict[str, Any], blob: bytes) -> CategoryDraws:
        """Inverse of :meth:`to_meta` + :meth:`to_bytes`."""
        arrays = np.load(io.BytesIO(blob))
        return cls(
            category=meta["category"], skus=tuple(meta["skus"]),
            pairs=tuple((str(s), str(c)) for s, c in meta["pairs"]),
            a_sku=arrays["a_sku"], log_e=arrays["log_e"], mu_cat=arrays["mu_cat"],
            diagnostics=dict(meta["diagnostics"]), n_cells=int(meta["n_cells"]),
            n_trials=int(meta["n_trials"]), n_conversions=int(meta["n_conversions"]),
        )  # fmt: skip


def category_model(
    shared: SharedParameters,
    model_config: dict[str, Any] | None = None,
    sampler_config: dict[str, Any] | None = None,
) -> Any:
    """A :class:`CategoryModel` (imports PyMC: call only where a fit runs)."""
    from pricing.demand import DemandModel

    class CategoryModel(DemandModel):
        """The demand model of one category with the shared parameters held at ``shared``."""

        def build(self, cells: Cells) -> Any:
            import pymc as pm
            import pytensor.tensor as pt

            from pricing.demand import (
                REGIME_CATEGORY_SD,
                _mixed_hierarchy,
                conversion_likelihood,
            )

            categories = np.unique(cells.category)
            if len(categories) != 1:
                raise ValueError(f"a category fit needs one category, got {categories.tolist()}")
            lay = self._layout(cells)
            # Shared parameters as constants; an unseen segment, promotion or context column
            # sits at its population value.
            a_seg = np.array([shared.a_seg.get(str(s), 0.0) for s in lay.segments])
            # The category's elasticity is centred on the population level, or on its anchor
            # when the base fit had one (the prior at list: pricing.priors.list_price_anchors).
            anchors = self.model_config.get("category_log_elasticity_anchor") or {}
            mu_global, mu_a = shared.centres(str(categories[0]))
            centre = float(anchors.get(str(categories[0]), mu_global))
            with pm.Model(coords=lay.coords) as model:
                z_cat = pm.Normal("mu_cat_z", 0.0, 1.0)
                mu_cat = pm.Deterministic("mu_cat", centre + shared.sd_cat * z_cat)
                log_e = _mixed_hierarchy("log_e", mu_cat * pt.ones(len(lay.pair_c)),
                                         shared.sd_seg, lay.rich_pair, "pair")  # fmt: skip
                a_sku = _mixed_hierarchy("a_sku", mu_a * pt.ones(len(lay.skus)),
                                         shared.sd_a_sku, lay.rich_sku, "sku")  # fmt: skip
                g_values = np.array([shared.g.get(str(k), shared.promotion_prior_mean)
                                     for k in lay.promotions])  # fmt: skip
                g_cell = (
                    np.where(lay.promo_mask, g_values[np.minimum(lay.k_idx, len(g_values) - 1)], 0.0)
                    if len(g_values) else 0.0
                )  # fmt: skip
                if cells.regime is not None and cells.regime.any():
                    # After a detected change (the base fit's change points): this
                    # category's own parameters are the new regime's (centred on levels
                    # that carry the common shift, :meth:`SharedParameters.centres`), and
                    # the outcomes from before the change sit a shift away. The category
                    # fits its own shift, centred on the full fit's common one with the
                    # full model's spread of a category's deviation from it.
                    before = (~cells.regime).astype(float)
                    sd = float(self.model_config.get("regime_category_sd", REGIME_CATEGORY_SD)) or 1e-3
                    shift_a = pm.Normal("regime_shift_a", shared.regime_shift[0], sd)
                    shift_e = pm.Normal("regime_shift_e", shared.regime_shift[1], sd)
                    eta = (a_seg[lay.s_idx] + a_sku[lay.j_idx] - shift_a * before
                           - pt.exp(log_e[lay.p_idx] - shift_e * before) * cells.log_price_ratio
                           + g_cell)  # fmt: skip
                else:
                    eta = (a_seg[lay.s_idx] + a_sku[lay.j_idx]
                           - pt.exp(log_e[lay.p_idx]) * cells.log_price_ratio + g_cell)  # fmt: skip
                if cells.context_columns:
                    d = np.array([shared.d.get(c, 0.0) for c in cells.context_columns])
                    eta = eta + np.asarray(cells.context) @ d
                conversion_likelihood(cells, eta)
            return model

        def category_draws(self, n_draws: int, cells: Cells) -> CategoryDraws:
            """The fitted draws, thinned to ``n_draws`` over all chains."""
            post = self.idata_.posterior

            def stacked(name: str) -> FloatArray:
                values = np.asarray(post[name].values, dtype=float)
                flat = values.reshape(values.shape[0] * values.shape[1], *values.shape[2:])
                keep = np.linspace(0, flat.shape[0] - 1, n_draws).round().astype(int)
                out: FloatArray = flat[keep]
                return out

            diag = self.diagnostics_
            return CategoryDraws(
                category=str(cells.category[0]), skus=tuple(self.coords_["sku"]),
                pairs=tuple(self.pairs_), a_sku=stacked("a_sku"), log_e=stacked("log_e"),
                mu_cat=stacked("mu_cat"),
                diagnostics={"max_rhat": diag.max_rhat, "min_ess_bulk": diag.min_ess_bulk,
                             "divergences": diag.divergences, "seconds": diag.seconds,
                             "method": diag.method, "passed": diag.passed,
                             "reasons": list(diag.reasons)},
                n_cells=len(cells), n_trials=cells.n_trials,
                n_conversions=int(cells.conversions.sum()),
            )  # fmt: skip

    return CategoryModel(model_config=model_config, sampler_config=sampler_config)


def gate(parts: Sequence[CategoryDraws], *, max_rhat: float = 1.01, min_ess_bulk: float = 400.0,
         max_divergences: int = 0) -> dict[str, Any]:  # fmt: skip
    """The diagnostics gate over every category's fit.

    Returns
    -------
    dict
        ``max_rhat`` (worst), ``min_ess_bulk`` (worst), ``divergences`` (total),
        ``seconds`` (sum of fit times), ``passed`` and ``reasons`` (naming categories).
    """
    reasons = []
    for part in parts:
        d = part.diagnostics
        if not d["max_rhat"] <= max_rhat:
            reasons.append(f"{part.category}: max R-hat {d['max_rhat']:.3f} > {max_rhat}")
        if not d["min_ess_bulk"] >= min_ess_bulk:
            reasons.append(f"{part.category}: min bulk ESS {d['min_ess_bulk']:.0f} < {min_ess_bulk:g}")
        if d["divergences"] > max_divergences:
            reasons.append(f"{part.category}: {d['divergences']} divergences")
    return {
        "max_rhat": max((p.diagnostics["max_rhat"] for p in parts), default=float("nan")),
        "min_ess_bulk": min((p.diagnostics["min_ess_bulk"] for p in parts), default=float("nan")),
        "divergences": sum(int(p.diagnostics["divergences"]) for p in parts),
        "seconds": sum(float(p.diagnostics["seconds"]) for p in parts),
        "categories": len(parts), "passed": bool(parts) and not reasons, "reasons": reasons,
    }  # fmt: skip


def gather(base: DemandPosterior, parts: Sequence[CategoryDraws],
           meta: dict[str, Any] | None = None) -> DemandPosterior:  # fmt: skip
    """The full fit ``base`` with the refitted categories' own parameters replaced.

    Shared draws (and categories that were not refitted) come from ``base``; each part's
    draws (thinned to ``base``'s D) replace its category's SKU intercepts, pair log
    elasticities and mean. Weights start fresh (all equal).

    Parameters
    ----------
    base : DemandPosterior
        The last full fit, D draws.
    parts : sequence of CategoryDraws
        One per refitted category, each with D draws.
    meta : dict, optional
        Merged into the result's ``meta``.
    """
    d = base.n_draws
    refitted = {p.category: p for p in parts}
    for part in parts:
        if part.a_sku.shape[0] != d or part.log_e.shape[0] != d or part.mu_cat.shape[0] != d:
            raise ValueError(f"category {part.category}: draws do not match the base's {d}")
    base_w = np.exp(base.log_weights - base.log_weights.max())
    # The base's own parameters are resampled by its weights, so that its draws (equal
    # weight after this) stay a sample of the posterior it was serving.
    rng = np.random.default_rng(0)
    pick = rng.choice(d, size=d, p=base_w / base_w.sum()) if np.ptp(base.log_weights) > 0 else np.arange(d)

    skus: list[str] = []
    sku_cols: list[FloatArray] = []
    sku_category: dict[str, str] = {}
    for j, sku in enumerate(base.skus):
        if base.sku_category[sku] not in refitted:
            skus.append(sku)
            sku_cols.append(base.a_sku[pick, j])
            sku_category[sku] = base.sku_category[sku]
    pairs: list[tuple[str, str]] = []
    pair_cols: list[FloatArray] = []
    for i, pair in enumerate(base.pairs):
        if pair[1] not in refitted:
            pairs.append(pair)
            pair_cols.append(base.log_e[pick, i])
    for part in parts:
        for j, sku in enumerate(part.skus):
            skus.append(sku)
            sku_cols.append(part.a_sku[:, j])
            sku_category[sku] = part.category
        for i, pair in enumerate(part.pairs):
            pairs.append(pair)
            pair_cols.append(part.log_e[:, i])
    categories = sorted(set(base.categories) | set(refitted))
    mu_cat = np.column_stack([
        refitted[c].mu_cat if c in refitted else base.mu_cat[pick, base.categories.index(c)]
        for c in categories
    ])  # fmt: skip
    return DemandPosterior(
        segments=base.segments, skus=tuple(skus), categories=tuple(categories),
        promotions=base.promotions, sku_category=sku_category, pairs=tuple(pairs),
        a_seg=base.a_seg[pick], a_sku=np.column_stack(sku_cols) if sku_cols else np.zeros((d, 0)),
        log_e=np.column_stack(pair_cols) if pair_cols else np.zeros((d, 0)), g=base.g[pick],
        mu_a=base.mu_a[pick], sd_a_sku=base.sd_a_sku[pick], sd_a_seg=base.sd_a_seg[pick],
        mu_global=base.mu_global[pick], sd_cat=base.sd_cat[pick], sd_seg=base.sd_seg[pick],
        mu_cat=mu_cat, log_weights=np.zeros(d), d=base.d[pick],
        context_columns=base.context_columns, meta={**base.meta, **(meta or {})},
    )  # fmt: skip
