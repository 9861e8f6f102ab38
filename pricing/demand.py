"""Hierarchical Bayesian conversion model per segment, fitted on cells with PyMC.

P(buy | s, j, p, k, x) = sigmoid(a_seg[s] + a_sku[j] + b[s, c(j)] · log(p / p_ref[j]) + g[k] + x·d),
b = -exp(log_e) < 0, p the effective price (after any promotion discount), g[k] the lift of
promotion k beyond its price effect, x the encoded declared context features.

- log_e[s, c] is partially pooled within category c (mean mu_cat[c], scale sd_seg), and
  categories are pooled globally (mu_cat ~ Normal(mu_global, sd_cat)).
- Intercepts are additive, a_seg[s] + a_sku[j], so parameters and data needs grow with
  segments + SKUs, not their product.
- Each hierarchical vector is parameterised per element by its data: centred where the
  element's own data pin it down much more tightly than the groups differ (approximate
  posterior sd from the Fisher information below ``centred_ratio`` x the between-group
  spread), non-centred otherwise (avoids the funnel). Category means are few and always
  non-centred; segment offsets are a zero-sum vector.

Examples
--------
>>> model = DemandModel(model_config={"centred_ratio": 0.3})             # doctest: +SKIP
>>> model.fit(cells).diagnostics_.passed                                  # doctest: +SKIP
True
>>> posterior = model.posterior(n_draws=500)                              # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from types import SimpleNamespace
from typing import Any, ClassVar

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from numpy.typing import NDArray

from pricing.cells import Cells
from pricing.posterior import DemandPosterior
from pricing.priors import HalfNormal, Normal, Prior, prior_from_dict

__all__ = [
    "DemandModel", "Diagnostics", "FitMethod", "compiling", "conversion_likelihood",
    "ensure_compiler", "fit_mode", "nutpie_available",
]

FitMethod = str  # "auto" | "nuts" | "nutpie" | "advi"
_METHODS = ("auto", "nuts", "nutpie", "advi")
MODEL_VERSION = "conversion-logit/1"
#: Prior sd of the shifts common to the categories in a new regime after a detected change
#: (intercept, log elasticity;
#: logit and log scales): 0.5 allows a shift of ±1 on either, which covers a competitor's
#: sale (the drift benchmark's elasticity x1.6 is +0.47), without letting a day's noise
#: move every line.
REGIME_SHIFT_SD = 0.5
#: Prior sd of each category's deviation from that common shift (zero-sum over the
#: categories in the new regime, logit and log elasticity): a competitor's sale in one
#: aisle moves one category, and a common shift alone would spread it over all of them
#: (the one-category run of the drift benchmark, docs/benchmarks.md).
REGIME_CATEGORY_SD = 0.3


def nutpie_available() -> bool:
    """True when the nutpie sampler can be imported."""
    try:
        import nutpie  # noqa: F401
    except ImportError:
        return False
    return True



_log = logging.getLogger("pricing.demand")


def ensure_compiler() -> None:
    """Make sure PyTensor compiles C for this process's fits.

    PyTensor decides once, at import, whether it can compile C: it runs ``g++ -v`` and,
    if that fails for any reason, silently falls back to pure-Python thunks, which run a
    NUTS fit 10-100 times slower. That happened intermittently in CI (py-spy showed a
    fused ``Composite`` evaluated op by op in a chain process) while C compilation works
    on the same machine. If the probe left ``cxx`` empty by default although ``g++`` is
    installed, this restores it and says so; a ``cxx`` set empty on purpose
    (``PYTENSOR_FLAGS=cxx=``) is respected.
    """
    from pytensor.configdefaults import config

    if not config.cxx and getattr(type(config), "cxx").is_default:  # noqa: B009 - the descriptor
        compiler = shutil.which("g++")
        if compiler is None:
            return
        _log.warning("PyTensor found no C compiler when imported; using %s for this fit "
                     "(without it sampling runs on Python thunks)", compiler)  # fmt: skip
        config.cxx = compiler
    if config.cxx:
        _ensure_c_vm()
    _probe_vm()


_COMPILING = threading.RLock()


@contextmanager
def compiling() -> Iterator[None]:
    """Run a fit's PyTensor compilation alone in this process, on a sound configuration.

    PyTensor's configuration is one global object, and every compilation sets
    ``config.mode`` to its own mode for the duration of its graph rewrites
    (``config.change_flags`` in ``pytensor.compile.function.types``). Two threads compiling
    at once can therefore leave the other's mode behind for good: seen in CI, a test
    worker's ``config.mode`` was left as a pure-Python linker (``use_cloop=False``,
    ``c_thunks=False``: PyMC's ``FAST_COMPILE`` for initial points) after the service's
    background refit and a test's fit compiled together, and every later fit in that
    process ran several times slower. Fits take this lock (one compiling fit at a time
    per process; they are CPU-bound anyway), put a leaked mode back to PyTensor's
    default, and compile with :func:`fit_mode`.
    """
    from pytensor.configdefaults import config

    with _COMPILING:
        if not isinstance(config.mode, str):
            _log.warning("PyTensor's default mode had been left as %r by a compilation in "
                         "another thread; restored to 'Mode'", config.mode)  # fmt: skip
            config.mode = "Mode"
        ensure_compiler()
        yield


_VM_PROBED: list[str] = []


def _probe_vm() -> None:
    """Compile one small function before each fit and warn (a ``RuntimeWarning``, which
    test runs list in their summary), once per process, when it does not run on PyTensor's
    C VM: CI has seen a test worker's fits run on the Python ``Loop`` VM with Python
    thunks, several times slower, part-way through a run, without the cause being caught
    yet; the warning records the settings that process compiled with."""
    if _VM_PROBED and _VM_PROBED[-1] != "CVM":
        return  # already reported
    import warnings

    import pytensor.tensor as pt
    from pytensor.compile.function import function
    from pytensor.configdefaults import config

    x = pt.dvector("x")

    def vm_of(mode: Any) -> str:
        try:
            return type(function([x], pt.exp(x) + 1.0, mode=mode).vm).__name__
        except Exception as exc:  # a compiler that does not work: the fit will say so itself
            return f"no ({type(exc).__name__})"

    explicit = fit_mode()
    vm = vm_of(explicit) if explicit is not None else vm_of(None)
    _VM_PROBED.append(vm)
    if vm != "CVM":
        cvm = sys.modules.get("pytensor.link.c.cvm")
        warnings.warn(
            f"PyTensor compiles fits to the {vm} VM in process {os.getpid()} (default mode: "
            f"{vm_of(None)} VM; cxx={config.cxx!r}, linker={config.linker!r}, "
            f"mode={config.mode!r}, C VM loaded: {cvm is not None and hasattr(cvm, 'CVM')}, "
            f"PYTENSOR_FLAGS={os.environ.get('PYTENSOR_FLAGS')!r}): fits run several times slower",
            RuntimeWarning, stacklevel=2,
        )  # fmt: skip


def fit_mode() -> Any:
    """The PyTensor mode NUTS fits compile with: optimised graphs, C thunks and the C VM,
    built here rather than resolved from PyTensor's defaults, or None without a compiler.

    PyTensor resolves the default mode through module-level objects made once per process
    (the ``cvm`` linker decides at import whether it makes C thunks, and runtime modes are
    cached); CI has caught a test worker whose NUTS chains ran on the Python ``Loop`` VM
    with Python thunks (``Elemwise.perform``, ``Op.make_py_thunk``) while that same
    process had the C VM and dozens of compiled C modules loaded: the logp/gradient
    function had been compiled with a pure-Python linker. A linker made for the fit
    does not depend on that state.
    """
    from pytensor.compile.mode import Mode
    from pytensor.configdefaults import config
    from pytensor.link.vm import VMLinker

    if not config.cxx:
        return None
    return Mode(linker=VMLinker(use_cloop=True, c_thunks=True), optimizer="fast_run")


def _ensure_c_vm() -> None:
    """Make sure PyTensor's C virtual machine (the lazy linker) is importable here.

    ``pytensor.link.c.cvm`` builds or loads the ``lazylinker_ext`` module from the compile
    directory the first time a process compiles a function. If that fails once (another
    process holding the compile lock past its timeout, a half-written module from a
    concurrent build), the module stays imported *without* ``CVM`` and every function that
    process compiles afterwards runs on the pure-Python ``Loop`` VM: seen in CI as fits
    several times slower in one test worker only. This retries the import from scratch
    and says what happened.
    """
    import importlib

    cached = sys.modules.get("pytensor.link.c.cvm")
    if cached is not None and hasattr(cached, "CVM"):
        return
    if cached is not None:  # a failed import is cached: drop it and build or load again
        sys.modules.pop("pytensor.link.c.cvm", None)
        sys.modules.pop("pytensor.link.c.lazylinker_c", None)
    error: Exception | None = None
    try:
        cvm = importlib.import_module("pytensor.link.c.cvm")
    except Exception as exc:  # reported below; PyTensor falls back by itself
        cvm, error = None, exc
    if cvm is None or not hasattr(cvm, "CVM"):
        _log.warning("PyTensor's C VM is unavailable in this process (%s); fits run on "
                     "the Python VM, several times slower",
                     error or "lazylinker_ext failed to build or load")  # fmt: skip
    elif cached is not None:
        _log.warning("PyTensor's C VM had failed to load in this process; loaded it again")


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
    retried : bool
        The first run fell short (divergences, or too few effective draws) and these are
        the diagnostics of the retry (higher target acceptance, or more draws).
    """

    max_rhat: float
    min_ess_bulk: float
    divergences: int
    seconds: float
    method: str
    approximate: bool
    passed: bool
    reasons: tuple[str, ...]
    retried: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON form (NaN as None)."""
        out = asdict(self)
        out["reasons"] = list(self.reasons)
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}


#: model_config keys whose values are plain dicts, not priors.
_PLAIN_DICTS = frozenset({"category_log_elasticity_anchor"})


class DemandModel:
    """Fit the conversion model to cells and hand out posterior draws.

    Parameters
    ----------
    model_config : dict, optional
        Merged over :attr:`default_model_config`: priors (as :mod:`pricing.priors`
        objects or their dicts), ``centred_ratio``, ``centred_min_groups`` and, optionally,
        ``category_log_elasticity_anchor`` (``{category: log e}``, e.g. from
        :func:`pricing.priors.list_price_anchors`: those categories' elasticity priors are
        centred there instead of on the global mean) and ``regime_category_sd`` (prior sd of
        each category's deviation from the common shift after a detected change;
        default :data:`REGIME_CATEGORY_SD`, 0 for a common shift only).
    sampler_config : dict, optional
        Merged over :attr:`default_sampler_config`: ``method``, ``draws``, ``tune``,
        ``chains``, ``cores`` (processes for the chains; default one per chain up to the
        CPUs), ``target_accept``, ``random_seed``, ``advi_iterations``, and the gate
        thresholds ``max_rhat``, ``min_ess_bulk``, ``max_divergences``.
    """

    default_model_config: ClassVar[dict[str, Any]] = {
        "log_elasticity_mu": Normal(mu=math.log(1.5), sigma=1.0),
        "log_elasticity_category_sd": HalfNormal(sigma=0.5),
        "log_elasticity_segment_sd": HalfNormal(sigma=0.5),
        "intercept_mu": Normal(mu=-2.0, sigma=2.0),
        "intercept_sku_sd": HalfNormal(sigma=1.0),
        "intercept_segment_sd": HalfNormal(sigma=0.5),
        "promotion_lift": Normal(mu=0.0, sigma=0.5),
        "context_effect": Normal(mu=0.0, sigma=0.5),
        # Optional {category: log elasticity}: centre that category's elasticity on it
        # instead of mu_global, e.g. pricing.priors.list_price_anchors (the elasticity at
        # which its list prices are optimal). Absent or empty: every category on mu_global.
        # Anchored categories do not inform mu_global, so with every category anchored a
        # category the fit has not seen starts from mu_global's prior.
        # Centre a group's parameter when its own data pin it down much more tightly than
        # groups differ (approximate posterior sd from the Fisher information below
        # centred_ratio x the between-group spread); non-centre it otherwise. Either choice
        # made blindly fails: centring 8 weakly-informed pairs gave 61 divergences and ESS 44,
        # non-centring 6 data-rich SKUs gave ESS 195 (both measured here).
        # With few groups the group sd is weakly identified and centring funnels whatever
        # the data (6 data-rich SKUs centred: 4 divergences; non-centred: none).
        "centred_ratio": 0.25,
        "centred_min_groups": 20,
    }
    default_sampler_config: ClassVar[dict[str, Any]] = {
        "method": "auto",
        "draws": 1000,
        "tune": 1000,
        "chains": 2,
        "target_accept": 0.98,
        "random_seed": 0,
        "advi_iterations": 30_000,
        "max_rhat": 1.01,
        "min_ess_bulk": 400.0,
        "max_divergences": 0,
        # A NUTS fit with divergences is retried once with this target_accept (None: never).
        "retry_target_accept": 0.995,
        # A fit that mixes (no divergences) but falls short of ESS / R-hat is re-run once
        # with enough draws for the target ESS, up to this many per chain (0: never).
        "max_draws": 4000,
    }

    def __init__(
        self,
        model_config: dict[str, Any] | None = None,
        sampler_config: dict[str, Any] | None = None,
    ) -> None:
        config = self.default_model_config | (model_config or {})
        self.model_config: dict[str, Any] = {
            k: prior_from_dict(v) if isinstance(v, dict) and k not in _PLAIN_DICTS else v
            for k, v in config.items()
        }
        self.sampler_config = self.default_sampler_config | (sampler_config or {})
        if self.sampler_config["method"] not in _METHODS:
            raise ValueError(
                f"sampler_config['method'] must be one of {_METHODS}, got {self.sampler_config['method']!r}"
            )

    # ------------------------------------------------------------------ identity
    def config_dict(self) -> dict[str, Any]:
        """The merged model configuration as JSON-able data."""
        return {
            k: (v.to_dict() if hasattr(v, "to_dict") else v)
            for k, v in sorted(self.model_config.items())
        }

    @property
    def config_hash(self) -> str:
        """Short hash of model version + model config: snapshots from other configs are told apart."""
        payload = json.dumps({"model": MODEL_VERSION, "config": self.config_dict()}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    # ------------------------------------------------------------------ model
    def _layout(self, cells: Cells) -> SimpleNamespace:
        """Index the cells' levels and choose each group's parameterisation.

        Sets ``coords_``, ``sku_category_``, ``pairs_``, ``centred_`` and
        ``parameterisation_``; returns the integer indices and masks the model needs.
        """
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

        ratio = float(self.model_config["centred_ratio"])
        # Fisher information of each cell for an intercept, at the cell's observed rate
        # (shrunk away from 0 and 1); for elasticities, per-pair weighted least squares on
        # empirical logits. Both only choose the parameterisation, never the estimates.
        trials, conversions = _effective_counts(cells)
        rate = (conversions + 0.5) / (trials + 1.0)
        info_intercept = trials * rate * (1 - rate)
        se_sku = 1.0 / np.sqrt(np.maximum(np.bincount(j_idx, info_intercept, len(skus)), 1e-12))
        sku_rate = (np.bincount(j_idx, conversions, len(skus)) + 0.5) / (
            np.bincount(j_idx, trials, len(skus)) + 1.0
        )
        sku_logit = np.log(sku_rate / (1 - sku_rate))
        spread_sku = math.sqrt(max(float(np.var(sku_logit) - np.mean(se_sku**2)), 1e-4))
        min_groups = int(self.model_config["centred_min_groups"])
        rich_sku = (se_sku < ratio * spread_sku) & (len(skus) >= min_groups)
        se_seg = 1.0 / np.sqrt(np.maximum(np.bincount(s_idx, info_intercept, len(segments)), 1e-12))
        seg_rate = (np.bincount(s_idx, conversions, len(segments)) + 0.5) / (
            np.bincount(s_idx, trials, len(segments)) + 1.0
        )
        seg_logit = np.log(seg_rate / (1 - seg_rate))
        spread_seg = math.sqrt(max(float(np.var(seg_logit) - np.mean(se_seg**2)), 1e-4))
        rich_seg_all = bool((se_seg < ratio * spread_seg).all())
        se_pair, log_e_hat = _pair_slopes(cells, p_idx, j_idx, len(pairs), len(skus))
        ok = np.isfinite(log_e_hat)
        noise = float(np.mean(se_pair[ok] ** 2)) if ok.any() else 0.0
        spread_pair = (
            math.sqrt(max(float(np.var(log_e_hat[ok])) - noise, 0.05**2)) if ok.sum() > 2 else 0.05
        )
        rich_pair = (se_pair < ratio * spread_pair) & (len(pairs) >= min_groups)

        coords = {
            "segment": segments.tolist(),
            "sku": skus.tolist(),
            "category": categories.tolist(),
            "pair": [f"{segments[s]}|{categories[c]}" for s, c in zip(pair_s, pair_c, strict=True)],
            "promotion": promotions.tolist(),
            "context": list(cells.context_columns),
        }
        # The categories in a new regime after a detected change (pricing.changes): those
        # the cells name (with no outcome since the change yet, too), else those with a
        # cell marked after it; a category that did not move has none.
        moved = np.zeros(0, dtype=int)
        if cells.regime is not None:
            moved = np.unique(c_idx[cells.regime])
            if cells.regime_categories is not None:
                moved = np.union1d(moved, np.flatnonzero(np.isin(categories, cells.regime_categories)))
        if len(moved):
            coords["regime_category"] = categories[moved].tolist()
        self.coords_ = coords
        self.sku_category_ = {str(s): str(categories[c]) for s, c in zip(skus, sku_c, strict=True)}
        self.pairs_ = [
            (str(segments[s]), str(categories[c])) for s, c in zip(pair_s, pair_c, strict=True)
        ]
        self.centred_ = {
            "pairs": [coords["pair"][i] for i in np.flatnonzero(rich_pair)],
            "skus": [str(skus[i]) for i in np.flatnonzero(rich_sku)],
        }
        self.parameterisation_ = {
            "centred_skus": int(rich_sku.sum()), "centred_segments": len(segments) * rich_seg_all,
            "centred_pairs": int(rich_pair.sum()), "segments": len(segments), "skus": len(skus),
            "pairs": len(pairs),
        }  # fmt: skip

        return SimpleNamespace(
            coords=coords, segments=segments, skus=skus, categories=categories, s_idx=s_idx,
            j_idx=j_idx, c_idx=c_idx, p_idx=p_idx, pair_s=pair_s, pair_c=pair_c,
            promo_mask=promo_mask, promotions=promotions, k_idx=k_idx, rich_pair=rich_pair,
            rich_sku=rich_sku, rich_seg_all=rich_seg_all, moved=moved,
        )  # fmt: skip

    def build(self, cells: Cells) -> pm.Model:
        """Build the PyMC model for ``cells`` (stores the level labels in ``coords_``)."""
        lay = self._layout(cells)
        coords, segments, skus = lay.coords, lay.segments, lay.skus
        s_idx, j_idx, p_idx, pair_c = lay.s_idx, lay.j_idx, lay.p_idx, lay.pair_c
        promo_mask, promotions, k_idx = lay.promo_mask, lay.promotions, lay.k_idx
        rich_pair, rich_sku, rich_seg_all = lay.rich_pair, lay.rich_sku, lay.rich_seg_all

        cfg = self.model_config
        with pm.Model(coords=coords) as model:
            mu_global = _prior(cfg["log_elasticity_mu"], "mu_global")
            sd_cat = _prior(cfg["log_elasticity_category_sd"], "sd_cat")
            z_cat = pm.Normal("mu_cat_z", 0.0, 1.0, dims="category")
            anchor = cfg.get("category_log_elasticity_anchor") or {}
            centre = np.array([anchor.get(str(c), np.nan) for c in lay.categories], dtype=float)
            if np.isfinite(centre).any():  # categories centred on their list prices' optimality
                known = np.isfinite(centre)
                base = pt.switch(known, np.where(known, centre, 0.0), mu_global)
            else:
                base = mu_global
            mu_cat = pm.Deterministic("mu_cat", base + sd_cat * z_cat, dims="category")
            sd_seg = _prior(cfg["log_elasticity_segment_sd"], "sd_seg")
            log_e = _mixed_hierarchy("log_e", mu_cat[pair_c], sd_seg, rich_pair, dims="pair")

            mu_a = _prior(cfg["intercept_mu"], "mu_a")
            sd_a_sku = _prior(cfg["intercept_sku_sd"], "sd_a_sku")
            a_sku = _mixed_hierarchy(
                "a_sku", mu_a * pt.ones(len(skus)), sd_a_sku, rich_sku, dims="sku"
            )
            sd_a_seg = _prior(cfg["intercept_segment_sd"], "sd_a_seg")
            # Segment offsets sum to zero: otherwise a constant could move freely between
            # a_seg and a_sku, a ridge that ruins mixing (R-hat 1.14, ESS 12 measured).
            # One parameterisation for the whole (zero-sum) vector: centred when every
            # segment is data-rich (non-centred gave 6 divergences at 10 such segments),
            # non-centred as soon as one is sparse (it would funnel on sd otherwise).
            if len(segments) > 1 and rich_seg_all:
                a_seg = pm.ZeroSumNormal("a_seg", sigma=sd_a_seg, dims="segment")
            elif len(segments) > 1:
                z_seg = pm.ZeroSumNormal("a_seg_z", sigma=1.0, dims="segment")
                a_seg = pm.Deterministic("a_seg", sd_a_seg * z_seg, dims="segment")
            else:
                a_seg = pm.Deterministic("a_seg", pt.zeros(1), dims="segment")

            lift = cfg["promotion_lift"]
            if len(promotions):
                g = pm.Normal("g", lift.mu, lift.sigma, dims="promotion")
                g_cell = pt.switch(promo_mask, g[np.minimum(k_idx, len(promotions) - 1)], 0.0)
            else:
                pm.Deterministic("g", pt.zeros(0), dims="promotion")
                g_cell = 0.0
            if cells.regime is not None and cells.regime.any():
                # After a detected change (pricing.changes): a shift of the intercept
                # and of the log elasticity for the cells after it, so the old
                # regime's outcomes still teach who differs from whom (pooled deviations)
                # while the new regime's set the level. posterior() folds the shifts in.
                # The shift is common to the categories that moved (all of them after a
                # market-wide change; only some when the change showed in those alone),
                # and with several, each deviates from it (zero-sum, so the two levels do
                # not trade a constant): a shift that hits one category is not spread
                # over the others. A category that did not move has no cell after the
                # change and no shift.
                after = cells.regime.astype(float)
                shift_a = pm.Normal("regime_shift_a", 0.0, REGIME_SHIFT_SD)
                shift_e = pm.Normal("regime_shift_e", 0.0, REGIME_SHIFT_SD)
                category_sd = float(cfg.get("regime_category_sd", REGIME_CATEGORY_SD))
                if len(lay.moved) > 1 and category_sd > 0:
                    # position among the moved categories (cells elsewhere have after = 0)
                    m_idx = np.minimum(np.searchsorted(lay.moved, lay.c_idx), len(lay.moved) - 1)
                    dev_a = pm.ZeroSumNormal("regime_shift_a_cat", sigma=category_sd, dims="regime_category")
                    dev_e = pm.ZeroSumNormal("regime_shift_e_cat", sigma=category_sd, dims="regime_category")
                    shift_a = shift_a + dev_a[m_idx]
                    shift_e = shift_e + dev_e[m_idx]
                eta = (
                    a_seg[s_idx] + a_sku[j_idx] + shift_a * after
                    - pt.exp(log_e[p_idx] + shift_e * after) * cells.log_price_ratio + g_cell
                )
            else:
                eta = (
                    a_seg[s_idx] + a_sku[j_idx] - pt.exp(log_e[p_idx]) * cells.log_price_ratio
                    + g_cell
                )
            if cells.context_columns:
                effect = cfg["context_effect"]
                d = pm.Normal("d", effect.mu, effect.sigma, dims="context")
                eta = eta + pt.dot(np.asarray(cells.context), d)
            else:
                pm.Deterministic("d", pt.zeros(0), dims="context")
            conversion_likelihood(cells, eta)
        return model

    # ------------------------------------------------------------------ fit
    def resolved_method(self, n_cells: int) -> str:
        """The sampler ``auto`` stands for: PyMC NUTS.

        nutpie is available as ``method="nutpie"`` but is not the default: on this model,
        with its data-driven parameterisation, it was slower than PyMC NUTS at every size
        measured here (1.3x at 100 cells, 1.5x at 1,000, 1.2x at 5,000, where it also fell
        short of the ESS gate; docs/benchmarks.md). Its numba compile (~10-15 s per model)
        dominates small fits.
        """
        method = str(self.sampler_config["method"])
        return "nuts" if method == "auto" else method

    def fit(self, cells: Cells, *, progressbar: bool = False) -> DemandModel:
        """Sample the posterior given ``cells`` and compute diagnostics.

        Sets ``idata_`` (ArviZ InferenceData) and ``diagnostics_``.

        Returns
        -------
        DemandModel
            ``self``.
        """
        sc = self.sampler_config
        method = self.resolved_method(len(cells))
        model = self.build(cells)
        start = time.perf_counter()
        target_accept, draws = float(sc["target_accept"]), int(sc["draws"])
        idata = self._sample(model, method, target_accept, draws, progressbar)
        diagnostics = self._diagnose(idata, method, time.perf_counter() - start)
        retry = sc.get("retry_target_accept")
        if (
            method != "advi"
            and diagnostics.divergences > int(sc["max_divergences"])
            and retry
            and float(retry) > target_accept
        ):
            # Divergences flag a region the step size is too large for: smaller steps, once.
            target_accept = float(retry)
            idata = self._sample(model, method, target_accept, draws, progressbar)
            diagnostics = replace(
                self._diagnose(idata, method, time.perf_counter() - start), retried=True
            )
        short = diagnostics.min_ess_bulk < float(
            sc["min_ess_bulk"]
        ) or diagnostics.max_rhat > float(sc["max_rhat"])
        max_draws = int(sc.get("max_draws") or 0)
        if (
            method != "advi"
            and short
            and diagnostics.divergences <= int(sc["max_divergences"])
            and max_draws > draws
        ):
            # Mixing is fine but slow: draw longer (ESS grows with draws), once.
            need = draws * float(sc["min_ess_bulk"]) / max(diagnostics.min_ess_bulk, 1.0) * 1.5
            if diagnostics.max_rhat > float(sc["max_rhat"]):
                # R-hat shrinks with chain length, not with ESS headroom: at least double.
                need = max(need, 2.0 * draws)
            idata = self._sample(
                model, method, target_accept, min(max_draws, int(need)), progressbar
            )
            diagnostics = replace(
                self._diagnose(idata, method, time.perf_counter() - start), retried=True
            )
        self.idata_ = idata
        self.diagnostics_ = diagnostics
        return self

    def _sample(
        self, model: pm.Model, method: str, target_accept: float, draws: int, progressbar: bool
    ) -> Any:
        sc = self.sampler_config
        with compiling(), model:
            if method == "advi":
                approx = pm.fit(
                    n=int(sc["advi_iterations"]), method="advi", progressbar=progressbar,
                    random_seed=sc["random_seed"],
                    callbacks=[pm.callbacks.CheckParametersConvergence(diff="relative", tolerance=1e-3)],
                )  # fmt: skip
                idata = approx.sample(
                    int(sc["draws"]) * int(sc["chains"]), random_seed=sc["random_seed"]
                )
            else:
                kwargs: dict[str, Any] = {"target_accept": target_accept}
                if method == "nutpie":
                    kwargs["nuts_sampler"] = "nutpie"
                else:
                    kwargs["cores"] = int(sc.get("cores") or min(int(sc["chains"]), os.cpu_count() or 1))
                    mode = fit_mode()
                    if mode is not None:
                        kwargs["compile_kwargs"] = {"mode": mode}
                idata = pm.sample(
                    draws=draws, tune=int(sc["tune"]), chains=int(sc["chains"]),
                    random_seed=sc["random_seed"], progressbar=progressbar,
                    compute_convergence_checks=False, **kwargs,
                )  # fmt: skip
        return idata

    def _diagnose(self, idata: Any, method: str, seconds: float) -> Diagnostics:
        import arviz as az

        sc = self.sampler_config
        names = [v for v in ("mu_global", "sd_cat", "mu_cat_z", "sd_seg", "log_e", "mu_a", "sd_a_sku",
                             "a_sku", "sd_a_seg", "a_seg", "a_seg_z", "g", "d") if v in idata.posterior and idata.posterior[v].size]  # fmt: skip
        approximate = method == "advi"
        # Per variable, then over variables: ``to_array`` would broadcast every variable to
        # the union of all dims (47 GiB at 1,000 SKUs x 20 segments x 40 categories).
        ess = min(float(v.min()) for v in az.ess(idata, var_names=names, method="bulk").data_vars.values())
        if approximate:
            rhat, divergences = float("nan"), 0
        else:
            rhat = max(float(v.max()) for v in az.rhat(idata, var_names=names).data_vars.values())
            divergences = (
                int(idata.sample_stats["diverging"].sum())
                if "diverging" in idata.sample_stats
                else 0
            )
        reasons = []
        if not approximate and not rhat <= float(sc["max_rhat"]):
            reasons.append(f"max R-hat {rhat:.3f} > {sc['max_rhat']}")
        if not ess >= float(sc["min_ess_bulk"]):
            reasons.append(f"min bulk ESS {ess:.0f} < {sc['min_ess_bulk']}")
        if divergences > int(sc["max_divergences"]):
            reasons.append(f"{divergences} divergences > {sc['max_divergences']}")
        return Diagnostics(
            rhat, ess, divergences, seconds, method, approximate, not reasons, tuple(reasons)
        )

    # ------------------------------------------------------------------ draws
    def _category_shifts(self, stacked: Callable[[str], NDArray[np.float64]]
                         ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:  # fmt: skip
        """Draws of each category's shift after a detected change, intercept and log
        elasticity, each (D, C): for a category that moved, the shift common to those that
        did plus its deviation; zeros for the others (all zeros without a new regime)."""
        post = self.idata_.posterior
        d = stacked("mu_global").shape[0]
        categories = self.coords_["category"]
        cat_a, cat_e = np.zeros((d, len(categories))), np.zeros((d, len(categories)))
        if "regime_shift_a" not in post:
            return cat_a, cat_e
        position = {c: k for k, c in enumerate(categories)}
        moved = [position[c] for c in self.coords_.get("regime_category", categories)]
        for out, name in ((cat_a, "regime_shift_a"), (cat_e, "regime_shift_e")):
            out[:, moved] = stacked(name)[:, None]
            if f"{name}_cat" in post:
                out[:, moved] += stacked(f"{name}_cat")
        return cat_a, cat_e

    def _everything_moved(self) -> bool:
        """Whether a detected change put every category in a new regime."""
        moved = self.coords_.get("regime_category")
        return moved is None or len(moved) == len(self.coords_["category"])

    def regime_shift(self) -> dict[str, Any] | None:
        """Posterior summary of the shift after a detected change, or None without one.

        Returns
        -------
        dict or None
            ``intercept`` and ``log_elasticity`` (posterior means of the shift common to
            the categories that moved; logit and log scale), ``categories``: those that
            moved (every one after a market-wide change), ``by_category``: for each of
            them its ``intercept`` and ``log_elasticity`` shift (mean) and the 90 %
            interval of the latter (``log_elasticity_90``); an elasticity moved by the
            factor ``exp(shift)``.
        """
        post = self.idata_.posterior
        if "regime_shift_a" not in post:
            return None

        def stacked(name: str) -> NDArray[np.float64]:
            values = np.asarray(post[name].values, dtype=float)
            out: NDArray[np.float64] = values.reshape(values.shape[0] * values.shape[1], *values.shape[2:])
            return out

        cat_a, cat_e = self._category_shifts(stacked)
        categories = self.coords_["category"]
        moved = self.coords_.get("regime_category", categories)
        return {
            "intercept": float(stacked("regime_shift_a").mean()),
            "log_elasticity": float(stacked("regime_shift_e").mean()),
            "categories": list(moved),
            "by_category": {
                c: {"intercept": round(float(cat_a[:, k].mean()), 4),
                    "log_elasticity": round(float(cat_e[:, k].mean()), 4),
                    "log_elasticity_90": [round(float(v), 4) for v in np.quantile(cat_e[:, k], [0.05, 0.95])]}
                for k, c in enumerate(categories) if c in moved
            },
        }  # fmt: skip

    def posterior(
        self, n_draws: int = 500, *, meta: dict[str, Any] | None = None
    ) -> DemandPosterior:
        """Thin the fitted posterior to ``n_draws`` evenly spaced draws over all chains."""
        post = self.idata_.posterior

        def stacked(name: str) -> NDArray[np.float64]:
            values: NDArray[np.float64] = np.asarray(post[name].values, dtype=float)
            flat = values.reshape(values.shape[0] * values.shape[1], *values.shape[2:])
            keep = (
                np.linspace(0, flat.shape[0] - 1, min(n_draws, flat.shape[0])).round().astype(int)
            )
            out: NDArray[np.float64] = flat[keep]
            return out

        d = stacked("mu_global").shape[0]
        g = stacked("g") if "g" in post else np.zeros((d, 0))
        context_d = stacked("d") if "d" in post else np.zeros((d, 0))
        # After a detected change, decisions are for the new regime: fold each moved
        # category's shift into its intercepts and log elasticities, and, when every
        # category moved, the common shift into the means new levels start from.
        everything = "regime_shift_a" in post and self._everything_moved()
        shift_a = stacked("regime_shift_a") if everything else np.zeros(d)
        shift_e = stacked("regime_shift_e") if everything else np.zeros(d)
        position = {c: k for k, c in enumerate(self.coords_["category"])}
        cat_a, cat_e = self._category_shifts(stacked)
        sku_c = np.array([position[self.sku_category_[s]] for s in self.coords_["sku"]], dtype=int)
        pair_c = np.array([position[c] for _, c in self.pairs_], dtype=int)
        shift = self.regime_shift()
        regime = {"regime_shift": shift} if shift is not None else {}
        return DemandPosterior(
            context_columns=tuple(self.coords_.get("context", [])),
            segments=tuple(self.coords_["segment"]),
            skus=tuple(self.coords_["sku"]),
            categories=tuple(self.coords_["category"]),
            promotions=tuple(self.coords_["promotion"]),
            sku_category=self.sku_category_,
            pairs=tuple(self.pairs_),
            a_seg=stacked("a_seg"), a_sku=stacked("a_sku") + cat_a[:, sku_c],
            log_e=stacked("log_e") + cat_e[:, pair_c], g=g,
            mu_a=stacked("mu_a") + shift_a, sd_a_sku=stacked("sd_a_sku"), sd_a_seg=stacked("sd_a_seg"),
            mu_global=stacked("mu_global") + shift_e, sd_cat=stacked("sd_cat"), sd_seg=stacked("sd_seg"),
            mu_cat=stacked("mu_cat") + cat_e, d=context_d, log_weights=np.zeros(d),
            meta={"model": MODEL_VERSION, "config_hash": self.config_hash,
                  "promotion_prior": [float(self.model_config["promotion_lift"].mu),
                                      float(self.model_config["promotion_lift"].sigma)],
                  "diagnostics": self.diagnostics_.to_dict(), "parameterisation": self.parameterisation_,
                  **regime, **(meta or {})},
        )  # fmt: skip


def conversion_likelihood(cells: Cells, eta: Any) -> Any:
    """Add the cells' conversions to the current PyMC model.

    Binomial(trials, sigmoid(eta)) when every trial counts fully; with decayed counts
    (:attr:`~pricing.cells.Cells.weighted_trials`), the binomial kernel on them,
    ``sum(k_w * eta - n_w * log(1 + exp(eta)))``, as a potential: each old trial counts
    for its weight, and the normaliser, which does not depend on the parameters, is left
    out.

    Parameters
    ----------
    cells : Cells
    eta : tensor, shape (n_cells,)
        Logit of each cell's conversion probability.
    """
    if cells.weighted_trials is None or cells.weighted_conversions is None:
        return pm.Binomial("conversions", n=cells.trials, logit_p=eta, observed=cells.conversions)
    kernel = cells.weighted_conversions * eta - cells.weighted_trials * pt.log1pexp(eta)
    return pm.Potential("conversions", pt.sum(kernel))


def _effective_counts(cells: Cells) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(trials, conversions) as the likelihood counts them (decayed when weighted)."""
    if cells.weighted_trials is None or cells.weighted_conversions is None:
        return cells.trials.astype(float), cells.conversions.astype(float)
    return cells.weighted_trials, cells.weighted_conversions


def _pair_slopes(
    cells: Cells, p_idx: NDArray[np.int64], j_idx: NDArray[np.int64], n_pairs: int, n_skus: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Quick per-pair estimates of log elasticity and their standard errors.

    Weighted least squares of empirical logits on log price ratio within (pair, SKU).

    Returns
    -------
    se : ndarray, shape (n_pairs,)
        Approximate standard error of log elasticity (inf where prices never vary).
    log_e : ndarray, shape (n_pairs,)
        Estimate of log(-b) (NaN where not identified or not negative).
    """
    n, y = _effective_counts(cells)
    logit = np.log((y + 0.5) / (n - y + 0.5))
    rate = (y + 0.5) / (n + 1.0)
    w = n * rate * (1 - rate)
    group = p_idx * n_skus + j_idx
    _, g = np.unique(group, return_inverse=True)
    sw = np.bincount(g, w)
    x_t = cells.log_price_ratio - (np.bincount(g, w * cells.log_price_ratio) / sw)[g]
    y_t = logit - (np.bincount(g, w * logit) / sw)[g]
    sxx = np.bincount(p_idx, w * x_t * x_t, n_pairs)
    sxy = np.bincount(p_idx, w * x_t * y_t, n_pairs)
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = sxy / sxx
        se_slope = 1.0 / np.sqrt(sxx)
        log_e = np.where(slope < -0.05, np.log(-slope), np.nan)
        se = np.where(np.isfinite(log_e), se_slope / np.abs(slope), np.inf)
    return se, log_e


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
