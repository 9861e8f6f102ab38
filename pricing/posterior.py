"""Posterior draws of the demand model, ready for decisions, with cold start and reweighting.

A :class:`DemandPosterior` holds D thinned draws of every parameter and a weight per
draw. It answers "P(buy) under each draw" for any (segment, SKU, price, promotion),
including ones the model never saw (drawn from the population level of the hierarchy),
and updates its weights by the likelihood of new outcomes between refits.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, TypeAlias

import numpy as np
from numpy.typing import NDArray

from pricing.context import ContextSchema

__all__ = ["DemandPosterior", "OutcomeRow", "outcome_log_likelihood", "stable_seed"]

FloatArray = NDArray[np.float64]


def stable_seed(*parts: str) -> int:
    """A seed that depends only on ``parts`` (same in every process and on every run)."""
    digest = hashlib.blake2b("\x1f".join(parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _sigmoid(x: FloatArray) -> FloatArray:
    out: FloatArray = 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free logistic
    return out


@dataclass(frozen=True)
class DemandPosterior:
    """Thinned posterior draws of the hierarchical conversion model.

    P(buy | s, j, p, k, x) = sigmoid(a_seg[s] + a_sku[j] - exp(log_e[s, c(j)]) · log(p / p_ref) + g[k] + x·d)

    with p the effective price (after any promotion discount) and x the encoded declared
    context (:mod:`pricing.context`; its schema is ``meta["context_schema"]``).

    Attributes
    ----------
    segments, skus, categories, promotions : tuple of str
        Labels of the fitted levels (promotions exclude "none", whose lift is 0).
    sku_category : dict
        Category of each fitted SKU.
    pairs : tuple of (str, str)
        (segment, category) pairs with their own elasticity.
    a_seg : ndarray, shape (D, n_segments)
    a_sku : ndarray, shape (D, n_skus)
    log_e : ndarray, shape (D, n_pairs)
        log of minus the price coefficient (b = -exp(log_e) < 0).
    g : ndarray, shape (D, n_promotions)
        Promotion lift on the logit scale.
    mu_a, sd_a_sku, sd_a_seg : ndarray, shape (D,)
        Population level of the intercepts (for new SKUs and segments).
    mu_global, sd_cat, sd_seg : ndarray, shape (D,)
        Population level of log elasticities (for new categories and segments).
    mu_cat : ndarray, shape (D, n_categories)
        Category means of log elasticity.
    log_weights : ndarray, shape (D,)
        Unnormalised log importance weights (0 after a fit), shared by every line.
    block_log_weights : ndarray, shape (n_pairs, D), optional
        Log importance weights of each (segment, category) block, on top of
        ``log_weights`` (None: none yet). Online updates put the likelihood of a new
        outcome on its own block only (:meth:`reweight_blocks`), so data in one block do
        not spend the effective sample size of the others; a line of a fitted block is
        decided with :meth:`decision_weights`.
    d : ndarray, shape (D, n_context_columns)
        Coefficients of the encoded context features (logit scale); none by default.
    context_columns : tuple of str
        Names of the context columns.
    meta : dict
        Version, method, config hash, diagnostics... (JSON-serialisable).
    """

    segments: tuple[str, ...]
    skus: tuple[str, ...]
    categories: tuple[str, ...]
    promotions: tuple[str, ...]
    sku_category: dict[str, str]
    pairs: tuple[tuple[str, str], ...]
    a_seg: FloatArray
    a_sku: FloatArray
    log_e: FloatArray
    g: FloatArray
    mu_a: FloatArray
    sd_a_sku: FloatArray
    sd_a_seg: FloatArray
    mu_global: FloatArray
    sd_cat: FloatArray
    sd_seg: FloatArray
    mu_cat: FloatArray
    log_weights: FloatArray
    d: FloatArray = field(default_factory=lambda: np.zeros((0, 0)))
    context_columns: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)
    block_log_weights: FloatArray | None = field(default=None, compare=False, repr=False)
    _index: dict[str, dict[Any, int]] = field(default_factory=dict, compare=False, repr=False)
    #: Normalised weights per block, computed on first use (never copied by ``replace``).
    _block_cache: dict[int, FloatArray] = field(init=False, compare=False, repr=False)

    ARRAYS = ("a_seg", "a_sku", "log_e", "g", "mu_a", "sd_a_sku", "sd_a_seg", "mu_global",
              "sd_cat", "sd_seg", "mu_cat", "log_weights", "d")  # fmt: skip

    def __post_init__(self) -> None:
        d = self.n_draws
        if self.d.shape == (0, 0) and (d or self.context_columns):
            object.__setattr__(self, "d", np.zeros((d, len(self.context_columns))))
        if self.d.ndim != 2 or self.d.shape[1] != len(self.context_columns):
            raise ValueError(
                f"posterior: d has shape {self.d.shape}, expected (D, {len(self.context_columns)})"
            )
        for name in self.ARRAYS:
            if getattr(self, name).shape[0] != d:
                raise ValueError(
                    f"posterior: {name} has {getattr(self, name).shape[0]} draws, expected {d}"
                )
        if self.block_log_weights is not None and self.block_log_weights.shape != (len(self.pairs), d):
            raise ValueError(f"posterior: block_log_weights has shape {self.block_log_weights.shape}, "
                             f"expected ({len(self.pairs)}, {d})")  # fmt: skip
        object.__setattr__(self, "_block_cache", {})
        self._index.update(
            segment={s: i for i, s in enumerate(self.segments)},
            sku={s: i for i, s in enumerate(self.skus)},
            category={c: i for i, c in enumerate(self.categories)},
            promotion={k: i for i, k in enumerate(self.promotions)},
            pair={p: i for i, p in enumerate(self.pairs)},
        )

    # ------------------------------------------------------------------ weights
    @property
    def n_draws(self) -> int:
        """Number of draws D."""
        return int(self.log_weights.shape[0])

    @property
    def weights(self) -> FloatArray:
        """Normalised importance weights, shape (D,), summing to 1."""
        w = np.exp(self.log_weights - self.log_weights.max())
        out: FloatArray = w / w.sum()
        return out

    @property
    def ess(self) -> float:
        """Effective sample size, 1 / Σ w², between 1 and D: of the shared weights, or with
        block weights the smallest over the blocks (the one a refit is due for first)."""
        if self.block_log_weights is not None and len(self.pairs):
            return float(self.block_ess().min())
        w = self.weights
        return float(1.0 / np.sum(w * w))

    def block_ess(self) -> FloatArray:
        """Effective sample size of each (segment, category) block's weights, shape (n_pairs,)."""
        log_w = self.log_weights[None, :] + (
            self.block_log_weights if self.block_log_weights is not None
            else np.zeros((len(self.pairs), self.n_draws))
        )  # fmt: skip
        w = np.exp(log_w - log_w.max(axis=1, keepdims=True))
        w /= w.sum(axis=1, keepdims=True)
        out: FloatArray = 1.0 / np.sum(w * w, axis=1)
        return out

    def pair_weights(self, i_pair: int) -> FloatArray:
        """Normalised weights of block ``i_pair`` (shared × block), shape (D,)."""
        cached = self._block_cache
        w = cached.get(i_pair)
        if w is None:
            if self.block_log_weights is None:
                w = self.weights
            else:
                log_w = self.log_weights + self.block_log_weights[i_pair]
                w = np.exp(log_w - log_w.max())
                w /= w.sum()
            cached[i_pair] = w
        out: FloatArray = w
        return out

    def decision_weights(self, segment: str, sku: str) -> FloatArray:
        """The weights a line of ``segment`` and ``sku`` is decided with, shape (D,): its
        (segment, category) block's when fitted, else the shared ones."""
        i_pair = self._index["pair"].get((segment, self.sku_category.get(sku, "")))
        if i_pair is None or self.block_log_weights is None:
            out: FloatArray = self._decision_arrays["weights"]
            return out
        return self.pair_weights(i_pair)

    def block_of(self, segment: str, category: str) -> int | None:
        """Position of the (segment, category) block, or None when it was not fitted."""
        return self._index["pair"].get((segment, category))

    def reweight_blocks(
        self, shared: FloatArray, blocks: Mapping[int, FloatArray]
    ) -> DemandPosterior:
        """A copy with new outcomes' likelihood put on their blocks.

        Parameters
        ----------
        shared : ndarray, shape (D,)
            Log-likelihood of outcomes outside every fitted block (new segments, SKUs or
            categories): it moves the shared weights.
        blocks : mapping of int to ndarray, shape (D,)
            Log-likelihood of the outcomes of each block (by :meth:`block_of` position).

        Notes
        -----
        Exact importance weights would multiply every draw by the likelihood of all new
        outcomes. Here a block's decisions are weighted by its own outcomes only: what
        another block's outcomes say about the parameters both share (a SKU's intercept
        seen in another segment, the hyper-priors) waits for the next refit. In exchange a
        busy block spends only its own effective sample size.
        """
        if shared.shape != (self.n_draws,):
            raise ValueError(f"shared must have shape ({self.n_draws},), got {shared.shape}")
        block = (np.zeros((len(self.pairs), self.n_draws)) if self.block_log_weights is None
                 else self.block_log_weights.copy())  # fmt: skip
        for i_pair, log_likelihood in blocks.items():
            block[i_pair] += log_likelihood
        block -= block.max(axis=1, keepdims=True)
        log_w = self.log_weights + shared
        return replace(self, log_weights=log_w - log_w.max(), block_log_weights=block, _index={})

    def reweight(self, log_likelihood: FloatArray) -> DemandPosterior:
        """Return a copy whose weights are multiplied by the likelihood of new data.

        Parameters
        ----------
        log_likelihood : ndarray, shape (D,)
            Log-likelihood of the new observations under each draw.
        """
        if log_likelihood.shape != (self.n_draws,):
            raise ValueError(
                f"log_likelihood must have shape ({self.n_draws},), got {log_likelihood.shape}"
            )
        log_w = self.log_weights + log_likelihood
        return replace(self, log_weights=log_w - log_w.max(), _index={})

    # ------------------------------------------------------------------ parameters
    def _cold(self, kind: str, key: str, mean: FloatArray, sd: FloatArray) -> FloatArray:
        rng = np.random.default_rng(stable_seed(self.meta.get("version", ""), kind, key))
        out: FloatArray = mean + sd * rng.standard_normal(self.n_draws)
        return out

    def segment_intercept(self, segment: str) -> FloatArray:
        """a_seg draws, shape (D,); a new segment draws from the population."""
        i = self._index["segment"].get(segment)
        if i is not None:
            return self.a_seg[:, i]
        return self._cold("segment", segment, np.zeros(self.n_draws), self.sd_a_seg)

    def sku_intercept(self, sku: str) -> FloatArray:
        """a_sku draws, shape (D,); a new SKU draws from the population."""
        i = self._index["sku"].get(sku)
        if i is not None:
            return self.a_sku[:, i]
        return self._cold("sku", sku, self.mu_a, self.sd_a_sku)

    def category_mean(self, category: str) -> FloatArray:
        """Category mean of log elasticity, shape (D,); a new category draws from the global level."""
        i = self._index["category"].get(category)
        if i is not None:
            return self.mu_cat[:, i]
        return self._cold("category", category, self.mu_global, self.sd_cat)

    def log_elasticity(self, segment: str, category: str) -> FloatArray:
        """log(-b) draws for a segment in a category, shape (D,)."""
        i = self._index["pair"].get((segment, category))
        if i is not None:
            return self.log_e[:, i]
        return self._cold(
            "pair", f"{segment}\x1f{category}", self.category_mean(category), self.sd_seg
        )

    def promotion_lift(self, promotion: str | None) -> FloatArray:
        """g draws, shape (D,); 0 for no promotion.

        A promotion the model has not seen draws from the lift's prior
        (``meta["promotion_prior"]`` = [mu, sigma], default [0, 0.5]), deterministically
        per name: some draws favour it, so Thompson sampling tries it on purpose (a lift
        of exactly 0 would never beat the same price without the promotion's cost).
        """
        if not promotion:
            return np.zeros(self.n_draws)
        i = self._index["promotion"].get(promotion)
        if i is not None:
            return self.g[:, i]
        mu, sigma = self.meta.get("promotion_prior", (0.0, 0.5))
        return self._cold(
            "promotion",
            promotion,
            np.full(self.n_draws, float(mu)),
            np.full(self.n_draws, float(sigma)),
        )

    def logit_terms(
        self, segment: str, sku: str, category: str | None = None
    ) -> tuple[FloatArray, FloatArray]:
        """Intercept and price slope draws for one (segment, SKU), each shape (D,).

        Parameters
        ----------
        category : str, optional
            Needed for a SKU the model has not seen; defaults to the fitted one.
        """
        category = self.sku_category.get(sku, category)
        if category is None:
            raise ValueError(f"sku {sku!r} is new to the model: pass its category")
        intercept = self.segment_intercept(segment) + self.sku_intercept(sku)
        slope = -np.exp(self.log_elasticity(segment, category))
        return intercept, slope

    def conversion_probability(
        self,
        segment: str,
        sku: str,
        price_ratio: FloatArray | float,
        *,
        category: str | None = None,
        promotion: str | None = None,
        offset: FloatArray | None = None,
    ) -> FloatArray:
        """P(buy) under every draw.

        Parameters
        ----------
        segment, sku : str
        price_ratio : float or ndarray, shape (P,)
            Effective price / list price (dimensionless, > 0).
        category : str, optional
            Category of a SKU new to the model.
        promotion : str, optional
        offset : ndarray, shape (D,), optional
            Extra logit term per draw, e.g. :meth:`context_offset`.

        Returns
        -------
        ndarray, shape (D, P)
            Probabilities in (0, 1); P = 1 for a scalar price ratio.
        """
        ratio = np.atleast_1d(np.asarray(price_ratio, dtype=float))
        if (ratio <= 0).any():
            raise ValueError("price_ratio must be positive")
        intercept, slope = self.logit_terms(segment, sku, category)
        eta = intercept[:, None] + slope[:, None] * np.log(ratio)[None, :]
        eta += self.promotion_lift(promotion)[:, None]
        if offset is not None:
            eta += offset[:, None]
        return _sigmoid(eta)

    def context_offset(self, context: Mapping[str, object]) -> FloatArray | None:
        """x·d per draw for a request context, shape (D,); None when no feature applies."""
        if not self.context_columns:
            return None
        x = self._context_schema.encode(context)
        if not x.any():
            return None
        out: FloatArray = self.d @ x
        return out

    @cached_property
    def _context_schema(self) -> ContextSchema:
        return ContextSchema.from_dict(self.meta.get("context_schema"))

    @cached_property
    def _decision_arrays(self) -> dict[str, Any]:
        """float32 copies and the weights' CDF, computed once per posterior (hot path)."""
        w = self.weights
        # Halved once here, so the hot path's logistic needs no extra pass: sigmoid(x) = (1 + tanh(x/2)) / 2.
        return {
            "half_a_seg": np.ascontiguousarray(0.5 * self.a_seg, dtype=np.float32),
            "half_a_sku": np.ascontiguousarray(0.5 * self.a_sku, dtype=np.float32),
            "half_neg_slope": (0.5 * np.exp(self.log_e)).astype(np.float32),
            "weights": w,
            "cdf": np.cumsum(w),
        }

    def expected_profit(
        self,
        segment: str,
        sku: str,
        price_ratio: FloatArray,
        margin: FloatArray,
        *,
        category: str | None = None,
        promotion: str | None = None,
        offset: FloatArray | None = None,
    ) -> NDArray[np.float32]:
        """P(buy) x margin under every draw, computed in float32 in place (the quote hot path).

        Parameters
        ----------
        price_ratio : ndarray, shape (P,)
            Candidate effective price / list price.
        margin : ndarray, shape (P,)
            Candidate effective price minus unit cost and promotion cost (minor units).
        offset : ndarray, shape (D,), optional
            Extra logit term per draw (context).

        Returns
        -------
        ndarray of float32, shape (D, P)
        """
        i_seg = self._index["segment"].get(segment)
        i_sku = self._index["sku"].get(sku)
        category = self.sku_category.get(sku, category)
        i_pair = self._index["pair"].get((segment, category or ""))
        if i_seg is None or i_sku is None or i_pair is None:
            p = self.conversion_probability(
                segment, sku, price_ratio, category=category, promotion=promotion, offset=offset
            )
            return (p * margin[None, :]).astype(np.float32)
        neg_log_ratio = (-np.log(price_ratio)).astype(np.float32)
        shift = self.promotion_lift(promotion) if promotion else None
        if offset is not None:
            shift = offset if shift is None else shift + offset
        half_shift = None if shift is None else (0.5 * shift).astype(np.float32)
        return self._profit(
            i_seg, i_sku, i_pair, neg_log_ratio, (0.5 * margin).astype(np.float32), half_shift
        )

    def _profit(
        self,
        i_seg: int,
        i_sku: int,
        i_pair: int,
        neg_log_ratio: NDArray[np.float32],
        half_margin: NDArray[np.float32],
        half_shift: NDArray[np.float32] | None = None,
    ) -> NDArray[np.float32]:
        arrays = self._decision_arrays
        eta = np.multiply.outer(arrays["half_neg_slope"][:, i_pair], neg_log_ratio)
        intercept = arrays["half_a_seg"][:, i_seg] + arrays["half_a_sku"][:, i_sku]
        if half_shift is not None:
            intercept = intercept + half_shift
        eta += intercept[:, None]
        np.tanh(eta, out=eta)
        eta += 1.0
        eta *= half_margin[None, :]
        out: NDArray[np.float32] = eta
        return out

    def fitted_indices(self, segment: str, sku: str) -> tuple[int, int, int] | None:
        """(segment, sku, pair) positions when all are fitted (no cold start needed), else None."""
        i_seg = self._index["segment"].get(segment)
        i_sku = self._index["sku"].get(sku)
        i_pair = self._index["pair"].get((segment, self.sku_category.get(sku, "")))
        if i_seg is None or i_sku is None or i_pair is None:
            return None
        return i_seg, i_sku, i_pair

    def sample_draw(self, u: float) -> int:
        """Index of the draw at quantile ``u`` in [0, 1) of the weights (draw ~ weight)."""
        cdf = self._decision_arrays["cdf"]
        return min(int(np.searchsorted(cdf, u * cdf[-1], side="right")), self.n_draws - 1)

    def elasticity_summary(
        self, segment: str, category: str, prob: float = 0.9
    ) -> dict[str, float]:
        """Weighted posterior mean and central interval of the price coefficient b (< 0)."""
        b = -np.exp(self.log_elasticity(segment, category))
        i_pair = self.block_of(segment, category)
        w = self.weights if i_pair is None else self.pair_weights(i_pair)
        order = np.argsort(b)
        cdf = np.cumsum(w[order])
        lo, hi = (1 - prob) / 2, 1 - (1 - prob) / 2
        lower = int(np.searchsorted(cdf, lo))
        upper = min(int(np.searchsorted(cdf, hi)), len(b) - 1)
        return {
            "mean": float(np.sum(w * b)),
            "lower": float(b[order][lower]),
            "upper": float(b[order][upper]),
        }

    # ------------------------------------------------------------------ storage
    def to_bytes(self) -> bytes:
        """Serialise (NumPy ``.npz`` with a JSON header); :meth:`from_bytes` reverses it."""
        header = {
            "format": 1,
            "segments": list(self.segments),
            "skus": list(self.skus),
            "categories": list(self.categories),
            "promotions": list(self.promotions),
            "sku_category": self.sku_category,
            "pairs": [list(p) for p in self.pairs],
            "context_columns": list(self.context_columns),
            "meta": self.meta,
        }
        buffer = io.BytesIO()
        arrays = {name: getattr(self, name).astype(np.float32 if name != "log_weights" else np.float64)
                  for name in self.ARRAYS}  # fmt: skip
        np.savez_compressed(
            buffer, header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8), **arrays
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> DemandPosterior:
        """Load what :meth:`to_bytes` wrote.

        Raises
        ------
        ValueError
            If the bytes are not a posterior snapshot of a known format.
        """
        try:
            with np.load(io.BytesIO(data)) as archive:
                header = json.loads(archive["header"].tobytes().decode())
                arrays = {
                    name: archive[name].astype(np.float64)
                    for name in cls.ARRAYS
                    if name in archive.files  # "d" is absent from snapshots without context
                }
        except (OSError, KeyError, ValueError) as exc:
            raise ValueError(f"not a demand posterior snapshot: {exc}") from None
        if header.get("format") != 1:
            raise ValueError(f"unknown snapshot format {header.get('format')!r}")
        return cls(
            segments=tuple(header["segments"]),
            skus=tuple(header["skus"]),
            categories=tuple(header["categories"]),
            promotions=tuple(header["promotions"]),
            sku_category=dict(header["sku_category"]),
            pairs=tuple((p[0], p[1]) for p in header["pairs"]),
            context_columns=tuple(header.get("context_columns", [])),
            meta=header["meta"],
            **arrays,
        )

    def with_weights(
        self, log_weights: FloatArray, block_log_weights: FloatArray | None = None
    ) -> DemandPosterior:
        """A copy with the given log weights, shape (D,), and block weights, shape
        (n_pairs, D) or None."""
        if log_weights.shape != (self.n_draws,):
            raise ValueError(f"log_weights must have shape ({self.n_draws},)")
        return replace(self, log_weights=np.asarray(log_weights, dtype=float),
                       block_log_weights=block_log_weights, _index={})  # fmt: skip

    def with_stored_weights(self, log_weights: bytes, block_log_weights: bytes | None) -> DemandPosterior:
        """A copy with weights as a snapshot row stores them (float64 bytes)."""
        blocks = None
        if block_log_weights:
            blocks = np.frombuffer(block_log_weights, dtype=np.float64).reshape(
                len(self.pairs), self.n_draws
            ).copy()  # fmt: skip
        return self.with_weights(np.frombuffer(log_weights, dtype=np.float64).copy(), blocks)

    def stored_block_weights(self) -> bytes | None:
        """The block weights as a snapshot row stores them (None: none)."""
        return None if self.block_log_weights is None else self.block_log_weights.astype(np.float64).tobytes()

    def to_inference_data(self) -> Any:
        """ArviZ InferenceData with one chain of the (unweighted) draws and the weights.

        Coordinates name the segments, SKUs, categories, pairs and promotions, so the file
        is self-describing for analysts (``idata.to_netcdf(path)``).
        """
        import arviz as az

        def one_chain(x: FloatArray) -> FloatArray:
            return x[None, ...]

        posterior = {
            name: one_chain(getattr(self, name)) for name in self.ARRAYS if name != "log_weights"
        }
        coords = {
            "segment": list(self.segments),
            "sku": list(self.skus),
            "category": list(self.categories),
            "pair": [f"{s}|{c}" for s, c in self.pairs],
            "promotion": list(self.promotions),
        }
        coords["context"] = list(self.context_columns)
        dims = {"a_seg": ["segment"], "a_sku": ["sku"], "log_e": ["pair"], "g": ["promotion"],
                "mu_cat": ["category"], "d": ["context"]}  # fmt: skip
        idata = az.from_dict(
            posterior=posterior,
            sample_stats={"log_weight": one_chain(self.log_weights)},
            coords=coords,
            dims=dims,
            attrs={
                k: json.dumps(v) if not isinstance(v, str | int | float) else v
                for k, v in self.meta.items()
            },
        )
        return idata


#: Labelled outcomes of one kind of decision: (segment, SKU, category, price ratio, promotion
#: key or None, context key or None, trials, conversions). The price ratio is
#: (price − discount) / list price; the context key is the JSON of the request's features,
#: as the decision log stores it. One outcome is ``trials=1, conversions=0 or 1``.
OutcomeRow: TypeAlias = tuple[str, str, str, float, "str | None", "str | None", int, int]


def outcome_log_likelihood(
    posterior: DemandPosterior, rows: Sequence[OutcomeRow], *, blocks: bool = False
) -> tuple[FloatArray, dict[int, FloatArray]]:
    """Binomial log-likelihood of labelled outcomes under each draw (online reweighting).

    Parameters
    ----------
    posterior : DemandPosterior
        The serving posterior (D draws).
    rows : sequence of OutcomeRow
        The outcomes, one or many per row.
    blocks : bool
        Split the likelihood by fitted (segment, category) block
        (:meth:`DemandPosterior.reweight_blocks`); outcomes of levels the fit has not seen
        stay shared.

    Returns
    -------
    shared : ndarray, shape (D,)
        Σ log P(y | draw) of the outcomes outside every block (all of them without
        ``blocks``), binomial coefficients left out (they do not depend on the draw).
    by_block : dict of int to ndarray, shape (D,)
        The same per block position (:meth:`DemandPosterior.block_of`); empty without
        ``blocks``.
    """
    total: FloatArray = np.zeros(posterior.n_draws)
    by_block: dict[int, FloatArray] = {}
    groups: dict[tuple[str, str, str, str, str], list[tuple[float, int, int]]] = {}
    for segment, sku, category, ratio, promotion, key, trials, conversions in rows:
        groups.setdefault((segment, sku, category, promotion or "", key or ""), []).append(
            (float(ratio), int(trials), int(conversions))
        )
    for (segment, sku, category, promotion, key), items in groups.items():
        ratios, n, y = (np.array(column, dtype=float) for column in zip(*items, strict=True))
        offset = posterior.context_offset(json.loads(key)) if key else None
        p = posterior.conversion_probability(
            segment, sku, ratios, category=category, promotion=promotion or None, offset=offset
        )
        p = np.clip(p, 1e-12, 1 - 1e-12)
        part: FloatArray = (np.log(p) * y + np.log1p(-p) * (n - y)).sum(axis=1)
        block = posterior.block_of(segment, category) if blocks and sku in posterior.sku_category else None
        if block is None:
            total += part
        else:
            by_block[block] = by_block.get(block, 0.0) + part
    return total, by_block
