"""Hierarchical Bayesian conversion model per segment, fitted on cells with PyMC.

P(buy | s, j, p, k) = sigmoid(a_seg[s] + a_sku[j] + b[s, c(j)] · log(p / p_ref[j]) + g[k]),
b = -exp(log_e) < 0.

- log_e[s, c] is partially pooled within category c (mean mu_cat[c], scale sd_seg), and
  categories are pooled globally (mu_cat ~ Normal(mu_global, sd_cat)).
- Intercepts are additive, a_seg[s] + a_sku[j], so parameters and data needs grow with
  segments + SKUs, not their product.
- Each hierarchical vector is parameterised per element by its data: centred where the
  element has many trials (the likelihood pins it down, so the centred geometry mixes
  well), non-centred where it is sparse (avoids the funnel). Category means are few and
  always non-centred.

Examples
--------
>>> model = DemandModel(model_config={"centred_min_trials": 2000})      # doctest: +SKIP
>>> model.fit(cells).diagnostics_.passed                                  # doctest: +SKIP
True
>>> posterior = model.posterior(n_draws=500)                              # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from numpy.typing import NDArray

from pricing.cells import Cells
from pricing.posterior import DemandPosterior
from pricing.priors import HalfNormal, Normal, Prior, prior_from_dict

__all__ = ["Diagnostics", "DemandModel", "FitMethod", "nutpie_available"]

FitMethod = str  # "auto" | "nuts" | "nutpie" | "advi"
_METHODS = ("auto", "nuts", "nutpie", "advi")
MODEL_VERSION = "conversion-logit/1"


def nutpie_available() -> bool:
    """True when the nutpie sampler can be imported."""
    try:
        import nutpie  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class Diagnostics:
    """Convergence of a fit, and whether it passes the publication gate.

    Attributes
    ----------
    max_rhat : float
        Largest split R-hat over all parameters (NaN for ADVI).
    min_ess_bulk : float
        Smallest bulk effective sample size (draws).
    divergences : int
        Divergent transitions after tuning.
    seconds : float
        Wall-clock time of the fit (s).
    method : str
        Sampler used.
    approximate : bool
        True for variational fits (ADVI), whose uncertainty is only approximate.
    passed : bool
        All thresholds met.
    reasons : tuple of str
        Which thresholds failed.
    """

    max_rhat: float
    min_ess_bulk: float
    divergences: int
    seconds: float
    method: str
    approximate: bool
    passed: bool
    reasons: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON form (NaN as None)."""
        out = asdict(self)
        out["reasons"] = list(self.reasons)
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}


class DemandModel:
    """Fit the conversion model to cells and hand out posterior draws.

    Parameters
    ----------
    model_config : dict, optional
        Merged over :attr:`default_model_config`: priors (as :mod:`pricing.priors`
        objects or their dicts) and ``centred_min_trials``.
    sampler_config : dict, optional
        Merged over :attr:`default_sampler_config`: ``method``, ``draws``, ``tune``,
        ``chains``, ``target_accept``, ``random_seed``, ``advi_iterations``, and the gate
        thresholds ``max_rhat``, ``min_ess_bulk``, ``max_divergences``.
    """

    default_model_config: dict[str, Any] = {
        "log_elasticity_mu": Normal(mu=math.log(1.5), sigma=1.0),
        "log_elasticity_category_sd": HalfNormal(sigma=0.5),
        "log_elasticity_segment_sd": HalfNormal(sigma=0.5),
        "intercept_mu": Normal(mu=-2.0, sigma=2.0),
        "intercept_sku_sd": HalfNormal(sigma=1.0),
        "intercept_segment_sd": HalfNormal(sigma=0.5),
        "promotion_lift": Normal(mu=0.0, sigma=0.5),
        "centred_min_trials": 2000,
    }
    default_sampler_config: dict[str, Any] = {
        "method": "auto",
        "draws": 1000,
        "tune": 1000,
        "chains": 2,
        "target_accept": 0.95,
        "random_seed": 0,
        "advi_iterations": 30_000,
        "max_rhat": 1.01,
        "min_ess_bulk": 400.0,
        "max_divergences": 0,
    }

    def __init__(
        self, model_config: dict[str, Any] | None = None, sampler_config: dict[str, Any] | None = None
    ) -> None:
        config = self.default_model_config | (model_config or {})
        self.model_config = {k: prior_from_dict(v) if isinstance(v, dict) else v for k, v in config.items()}
        self.sampler_config = self.default_sampler_config | (sampler_config or {})
        if self.sampler_config["method"] not in _METHODS:
            raise ValueError(f"sampler_config['method'] must be one of {_METHODS}, got {self.sampler_config['method']!r}")

    # ------------------------------------------------------------------ identity
    def config_dict(self) -> dict[str, Any]:
        """The merged model configuration as JSON-able data."""
        return {k: (v.to_dict() if hasattr(v, "to_dict") else v) for k, v in sorted(self.model_config.items())}

    @property
    def config_hash(self) -> str:
        """Short hash of model version + model config: snapshots from other configs are told apart."""
        payload = json.dumps({"model": MODEL_VERSION, "config": self.config_dict()}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    # ------------------------------------------------------------------ model
    def build(self, cells: Cells) -> pm.Model:
        """Build the PyMC model for ``cells`` (stores the level labels in ``coords_``)."""
        if len(cells) == 0:
            raise ValueError("cannot fit a demand model to no data")
        segments, s_idx = np.unique(cells.segment, return_inverse=True)
        skus, j_idx = np.unique(cells.sku, return_inverse=True)
        categories, c_idx = np.unique(cells.category, return_inverse=True)
        sku_category = dict(zip(cells.sku.tolist(), cells.category.tolist(), strict=True))
        sku_c = np.array([np.searchsorted(categories, sku_category[s]) for s in skus])
        pair_keys = s_idx * len(categories) + c_idx
        pairs, p_idx = np.unique(pair_keys, return_inverse=True)
        pair_s, pair_c = pairs // len(categories), pairs % len(categories)
        promo_mask = cells.promotion != ""
        promotions = np.unique(cells.promotion[promo_mask])
        k_idx = np.searchsorted(promotions, cells.promotion)

        threshold = float(self.model_config["centred_min_trials"])
        trials = cells.trials.astype(float)
        rich_seg = np.bincount(s_idx, trials, len(segments)) >= threshold
        rich_sku = np.bincount(j_idx, trials, len(skus)) >= threshold
        rich_pair = np.bincount(p_idx, trials, len(pairs)) >= threshold

        coords = {
            "segment": segments.tolist(),
            "sku": skus.tolist(),
            "category": categories.tolist(),
            "pair": [f"{segments[s]}|{categories[c]}" for s, c in zip(pair_s, pair_c, strict=True)],
            "promotion": promotions.tolist(),
        }
        self.coords_ = coords
        self.sku_category_ = {str(s): str(categories[c]) for s, c in zip(skus, sku_c, strict=True)}
        self.pairs_ = [(str(segments[s]), str(categories[c])) for s, c in zip(pair_s, pair_c, strict=True)]
        self.parameterisation_ = {
            "centred_segments": int(rich_seg.sum()), "centred_skus": int(rich_sku.sum()),
            "centred_pairs": int(rich_pair.sum()), "segments": len(segments), "skus": len(skus),
            "pairs": len(pairs),
        }  # fmt: skip

        cfg = self.model_config
        with pm.Model(coords=coords) as model:
            mu_global = _prior(cfg["log_elasticity_mu"], "mu_global")
            sd_cat = _prior(cfg["log_elasticity_category_sd"], "sd_cat")
            z_cat = pm.Normal("mu_cat_z", 0.0, 1.0, dims="category")
            mu_cat = pm.Deterministic("mu_cat", mu_global + sd_cat * z_cat, dims="category")
            sd_seg = _prior(cfg["log_elasticity_segment_sd"], "sd_seg")
            log_e = _mixed_hierarchy("log_e", mu_cat[pair_c], sd_seg, rich_pair, dims="pair")

            mu_a = _prior(cfg["intercept_mu"], "mu_a")
            sd_a_sku = _prior(cfg["intercept_sku_sd"], "sd_a_sku")
            a_sku = _mixed_hierarchy("a_sku", mu_a * pt.ones(len(skus)), sd_a_sku, rich_sku, dims="sku")
            sd_a_seg = _prior(cfg["intercept_segment_sd"], "sd_a_seg")
            # Segment offsets sum to zero: otherwise a constant could move freely between
            # a_seg and a_sku, a ridge that ruins mixing (R-hat 1.14, ESS 12 measured).
            if len(segments) > 1:
                a_seg = pm.ZeroSumNormal("a_seg", sigma=sd_a_seg, dims="segment")
            else:
                a_seg = pm.Deterministic("a_seg", pt.zeros(1), dims="segment")

            lift = cfg["promotion_lift"]
            if len(promotions):
                g = pm.Normal("g", lift.mu, lift.sigma, dims="promotion")
                g_cell = pt.switch(promo_mask, g[np.minimum(k_idx, len(promotions) - 1)], 0.0)
            else:
                pm.Deterministic("g", pt.zeros(0), dims="promotion")
                g_cell = 0.0
            eta = a_seg[s_idx] + a_sku[j_idx] - pt.exp(log_e[p_idx]) * cells.log_price_ratio + g_cell
            pm.Binomial("conversions", n=cells.trials, logit_p=eta, observed=cells.conversions)
        return model

    # ------------------------------------------------------------------ fit
    def resolved_method(self) -> str:
        """The sampler ``auto`` stands for here: nutpie when installed, else PyMC NUTS."""
        method = str(self.sampler_config["method"])
        if method == "auto":
            return "nutpie" if nutpie_available() else "nuts"
        return method

    def fit(self, cells: Cells, *, progressbar: bool = False) -> DemandModel:
        """Sample the posterior given ``cells`` and compute diagnostics.

        Sets ``idata_`` (ArviZ InferenceData) and ``diagnostics_``.

        Returns
        -------
        DemandModel
            ``self``.
        """
        sc = self.sampler_config
        method = self.resolved_method()
        model = self.build(cells)
        start = time.perf_counter()
        with model:
            if method == "advi":
                approx = pm.fit(
                    n=int(sc["advi_iterations"]), method="advi", progressbar=progressbar,
                    random_seed=sc["random_seed"],
                    callbacks=[pm.callbacks.CheckParametersConvergence(diff="relative", tolerance=1e-3)],
                )  # fmt: skip
                idata = approx.sample(int(sc["draws"]) * int(sc["chains"]), random_seed=sc["random_seed"])
            else:
                kwargs: dict[str, Any] = {"target_accept": float(sc["target_accept"])}
                if method == "nutpie":
                    kwargs["nuts_sampler"] = "nutpie"
                else:
                    kwargs["cores"] = min(int(sc["chains"]), os.cpu_count() or 1)
                idata = pm.sample(
                    draws=int(sc["draws"]), tune=int(sc["tune"]), chains=int(sc["chains"]),
                    random_seed=sc["random_seed"], progressbar=progressbar,
                    compute_convergence_checks=False, **kwargs,
                )  # fmt: skip
        self.idata_ = idata
        self.diagnostics_ = self._diagnose(idata, method, time.perf_counter() - start)
        return self

    def _diagnose(self, idata: Any, method: str, seconds: float) -> Diagnostics:
        import arviz as az

        sc = self.sampler_config
        names = [v for v in ("mu_global", "sd_cat", "mu_cat_z", "sd_seg", "log_e", "mu_a", "sd_a_sku",
                             "a_sku", "sd_a_seg", "a_seg", "g") if v in idata.posterior and idata.posterior[v].size]  # fmt: skip
        approximate = method == "advi"
        ess = float(az.ess(idata, var_names=names, method="bulk").to_array().min())
        if approximate:
            rhat, divergences = float("nan"), 0
        else:
            rhat = float(az.rhat(idata, var_names=names).to_array().max())
            divergences = int(idata.sample_stats["diverging"].sum()) if "diverging" in idata.sample_stats else 0
        reasons = []
        if not approximate and not rhat <= float(sc["max_rhat"]):
            reasons.append(f"max R-hat {rhat:.3f} > {sc['max_rhat']}")
        if not ess >= float(sc["min_ess_bulk"]):
            reasons.append(f"min bulk ESS {ess:.0f} < {sc['min_ess_bulk']}")
        if divergences > int(sc["max_divergences"]):
            reasons.append(f"{divergences} divergences > {sc['max_divergences']}")
        return Diagnostics(rhat, ess, divergences, seconds, method, approximate, not reasons, tuple(reasons))

    # ------------------------------------------------------------------ draws
    def posterior(self, n_draws: int = 500, *, meta: dict[str, Any] | None = None) -> DemandPosterior:
        """Thin the fitted posterior to ``n_draws`` evenly spaced draws over all chains."""
        post = self.idata_.posterior

        def stacked(name: str) -> NDArray[np.float64]:
            values = np.asarray(post[name].values, dtype=float)
            flat = values.reshape(values.shape[0] * values.shape[1], *values.shape[2:])
            keep = np.linspace(0, flat.shape[0] - 1, min(n_draws, flat.shape[0])).round().astype(int)
            return flat[keep]

        d = stacked("mu_global").shape[0]
        g = stacked("g") if "g" in post else np.zeros((d, 0))
        return DemandPosterior(
            segments=tuple(self.coords_["segment"]),
            skus=tuple(self.coords_["sku"]),
            categories=tuple(self.coords_["category"]),
            promotions=tuple(self.coords_["promotion"]),
            sku_category=self.sku_category_,
            pairs=tuple(self.pairs_),
            a_seg=stacked("a_seg"), a_sku=stacked("a_sku"), log_e=stacked("log_e"), g=g,
            mu_a=stacked("mu_a"), sd_a_sku=stacked("sd_a_sku"), sd_a_seg=stacked("sd_a_seg"),
            mu_global=stacked("mu_global"), sd_cat=stacked("sd_cat"), sd_seg=stacked("sd_seg"),
            mu_cat=stacked("mu_cat"), log_weights=np.zeros(d),
            meta={"model": MODEL_VERSION, "config_hash": self.config_hash,
                  "diagnostics": self.diagnostics_.to_dict(), "parameterisation": self.parameterisation_,
                  **(meta or {})},
        )  # fmt: skip


def _prior(prior: Prior, name: str) -> Any:
    return prior.create(name)


def _mixed_hierarchy(name: str, mu: Any, sigma: Any, centred: NDArray[np.bool_], dims: str) -> Any:
    """x ~ Normal(mu, sigma) elementwise: centred where ``centred``, non-centred elsewhere."""
    n = len(centred)
    rich = np.flatnonzero(centred)
    sparse = np.flatnonzero(~centred)
    x = pt.zeros(n)
    if len(sparse):
        z = pm.Normal(f"{name}_z", 0.0, 1.0, shape=len(sparse))
        x = pt.set_subtensor(x[sparse], mu[sparse] + sigma * z)
    if len(rich):
        centred_values = pm.Normal(f"{name}_c", mu[rich], sigma, shape=len(rich))
        x = pt.set_subtensor(x[rich], centred_values)
    return pm.Deterministic(name, x, dims=dims)
