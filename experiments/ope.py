"""Off-policy evaluation (OPE) of a pricing/promotion policy from logged bandit feedback.

Given rounds logged under a *logging* policy π_b (which action was shown, with what
probability, and what it earned), estimate what an *evaluation* policy π_e would have
earned per round had it been running instead.

Inputs follow the bandit-feedback conventions of the Open Bandit Pipeline (OBP,
github.com/st-tech/zr-obp):

* ``reward``, shape (n_rounds,): observed reward r_i;
* ``action``, int, shape (n_rounds,): logged action a_i;
* ``position``, int, shape (n_rounds,), or None: slot k_i the action was shown in;
* ``pscore``, shape (n_rounds,): logging propensity π_b(a_i | x_i, k_i) > 0;
* ``action_dist``, shape (n_rounds, n_actions, len_list): π_e(a | x_i, k), summing to 1
  over actions;
* ``estimated_rewards_by_reg_model``, shape (n_rounds, n_actions, len_list): reward model
  q̂(x_i, a, k).

All estimates are in the units of ``reward`` per round: if the reward is profit per
visitor in currency units, the policy value is expected profit per visitor in the same
currency units.

With importance weights ``w_i = action_dist[i, a_i, k_i] / pscore[i]``:

* IPS   ``mean_i( r_i · min(w_i, λ) )``
* SNIPS ``Σ_i r_i w_i / Σ_i w_i``
* DR    ``mean_i( Σ_a π_e(a|x_i,k_i) q̂(x_i,a,k_i) + min(w_i, λ) · (r_i − q̂(x_i,a_i,k_i)) )``

Correspondence with OBP
-----------------------
The point estimates reproduce ``estimate_policy_value`` of OBP's
``obp.ope.InverseProbabilityWeighting``, ``SelfNormalizedInverseProbabilityWeighting``
and ``DoublyRobust`` (with ``use_estimated_pscore=False``) to floating-point rounding.
The code is an independent implementation; the details below were checked against OBP's
source (``obp/ope/estimators.py`` at commit 51eba00, ``obp/utils.py`` at 03bd76b):

* The weight reads π_e at the *logged* action and the *logged* position only; with
  ``position=None`` every round uses position 0, which OBP (``check_ope_inputs``) allows
  only when ``len_list == 1``. We raise ``ValueError`` in the same case.
* Clipping (``lambda_``, default ``inf``) replaces ``w`` by ``min(w, lambda_)`` in IPS and
  in the correction term of DR, as OBP does. OBP's SNIPW class inherits a ``lambda_``
  field from IPW but never applies it, so :func:`snips` has no ``lambda_``.
* DR's baseline is OBP's ``np.average(q̂[i, :, k_i], weights=action_dist[i, :, k_i])``,
  i.e. divided by ``Σ_a π_e(a|x_i,k_i)``; that sum is 1 for valid input, and we divide
  by it too so the arithmetic is the same.
* Input checks mirror ``check_ope_inputs`` (``action_dist`` must sum to 1 over actions
  within ``np.allclose``'s default tolerance; ``pscore`` must be positive; positions and
  actions must index ``action_dist``) and add a few of our own (finite values,
  non-negative ``action_dist``, ``pscore <= 1``).

Intervals are *not* OBP's. OBP's ``estimate_interval`` resamples the round-wise terms
with ``RandomState.choice``; for SNIPW those terms are ``r_i w_i / mean(w)`` with the
full-sample mean held fixed, so resamples are not re-normalised. :func:`evaluate`
recomputes the ratio Σ r w / Σ w inside each bootstrap resample, and its CLT interval for
SNIPS uses the delta-method (linearised) variance of that ratio.

Examples
--------
>>> import numpy as np
>>> reward = np.array([1.0, 0.0, 2.0, 1.0])
>>> action = np.array([0, 1, 1, 0])
>>> pscore = np.array([0.5, 0.25, 0.75, 0.5])
>>> pi_e = np.array([[0.8, 0.2], [0.5, 0.5], [0.1, 0.9], [0.4, 0.6]])[:, :, None]
>>> round(ips(reward, action, pscore, pi_e), 12)
1.2
>>> out = evaluate(reward, action, pscore, pi_e, estimators=("ips",), ci="clt", min_ess=2)
>>> out["ips"].value == ips(reward, action, pscore, pi_e)
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["ESTIMATORS", "OPEEstimate", "dr", "evaluate", "ips", "snips"]

ESTIMATORS: tuple[str, ...] = ("ips", "snips", "dr")
"""Estimator names understood by :func:`evaluate`."""

# Same tolerance as np.allclose(action_dist.sum(axis=1), 1) in OBP's check_ope_inputs.
_SUM_RTOL = 1e-5
_SUM_ATOL = 1e-8
# Mean importance weight: warn when it is off 1 by more than this and by > _MEAN_W_Z SEs.
_MEAN_W_TOL = 0.05
_MEAN_W_Z = 4.0
# Bootstrap index matrices are built in chunks of at most this many entries.
_BOOT_CHUNK = 1 << 22

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]


@dataclass(frozen=True)
class OPEEstimate:
    """One estimator's estimate of the evaluation policy's value, with diagnostics.

    Attributes
    ----------
    estimator : str
        ``"ips"``, ``"snips"`` or ``"dr"``.
    value : float
        Point estimate of the policy value, in reward units per round (e.g. profit per
        visitor in currency units). ``nan`` if undefined (SNIPS with all weights zero).
    lower, upper : float
        Two-sided ``1 - alpha`` confidence bounds, same units as ``value``.
    ess : float
        Effective sample size ``(Σ w)² / Σ w²`` of the importance weights this estimator
        used (after clipping for IPS/DR), in rounds; ``0`` if all weights are zero.
    max_weight : float
        Largest importance weight this estimator used (dimensionless).
    n_rounds : int
        Number of logged rounds.
    warnings : tuple of str
        Human-readable diagnostics; empty when nothing looked wrong.
    """

    estimator: str
    value: float
    lower: float
    upper: float
    ess: float
    max_weight: float
    n_rounds: int
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class _Feedback:
    """Validated bandit feedback, converted to float/int arrays."""

    reward: FloatArray
    action: IntArray
    position: IntArray
    pscore: FloatArray
    action_dist: FloatArray
    q_hat: FloatArray | None

    @property
    def n_rounds(self) -> int:
        return int(self.reward.shape[0])


# --------------------------------------------------------------------------- validation


def _float_array(value: ArrayLike, name: str, ndim: int) -> FloatArray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: must be a numeric array ({exc})") from None
    if arr.ndim != ndim:
        raise ValueError(f"{name}: must be a {ndim}-D array, got {arr.ndim}-D of shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: must be finite (found NaN or inf)")
    return arr


def _int_array(value: ArrayLike, name: str, n_rounds: int, upper: int) -> IntArray:
    arr = np.asarray(value)
    if arr.ndim != 1:
        raise ValueError(f"{name}: must be a 1-D array, got {arr.ndim}-D of shape {arr.shape}")
    if arr.shape[0] != n_rounds:
        raise ValueError(f"{name}: has {arr.shape[0]} rounds but reward has {n_rounds}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name}: must have an integer dtype, got {arr.dtype}")
    if n_rounds and (arr.min() < 0 or arr.max() >= upper):
        raise ValueError(
            f"{name}: values must lie in [0, {upper}) to index action_dist, "
            f"got range [{arr.min()}, {arr.max()}]"
        )
    return arr.astype(np.intp, copy=False)


def _check_lambda(lambda_: float) -> float:
    lam = float(lambda_)
    if math.isnan(lam) or lam < 0:
        raise ValueError(f"lambda_: must be >= 0 (inf disables clipping), got {lambda_}")
    return lam


def _prepare(
    reward: ArrayLike,
    action: ArrayLike,
    pscore: ArrayLike,
    action_dist: ArrayLike,
    position: ArrayLike | None,
    estimated_rewards_by_reg_model: ArrayLike | None,
) -> _Feedback:
    r = _float_array(reward, "reward", 1)
    n = int(r.shape[0])
    if n == 0:
        raise ValueError("reward: at least one round is needed")

    pi = _float_array(action_dist, "action_dist", 3)
    if pi.shape[0] != n:
        raise ValueError(f"action_dist: has {pi.shape[0]} rounds but reward has {n}")
    n_actions, len_list = int(pi.shape[1]), int(pi.shape[2])
    if n_actions == 0 or len_list == 0:
        raise ValueError(f"action_dist: needs at least one action and one position, got {pi.shape}")
    if np.any(pi < 0):
        raise ValueError("action_dist: probabilities must be non-negative")
    sums = pi.sum(axis=1)
    bad = np.abs(sums - 1.0) > _SUM_ATOL + _SUM_RTOL
    if np.any(bad):
        i, k = (int(v) for v in np.argwhere(bad)[0])
        raise ValueError(
            "action_dist: must sum to 1 over actions (axis 1) for every round and position; "
            f"round {i}, position {k} sums to {sums[i, k]:.8g}"
        )

    a = _int_array(action, "action", n, n_actions)
    if position is None:
        if len_list > 1:
            raise ValueError(
                f"position: must be given when action_dist has len_list={len_list} > 1"
            )
        k_arr = np.zeros(n, dtype=np.intp)
    else:
        k_arr = _int_array(position, "position", n, len_list)

    p = _float_array(pscore, "pscore", 1)
    if p.shape[0] != n:
        raise ValueError(f"pscore: has {p.shape[0]} rounds but reward has {n}")
    if np.any(p <= 0):
        raise ValueError(
            f"pscore: logging propensities must be > 0; {int(np.sum(p <= 0))} round(s) are <= 0 "
            "(a round the logging policy could not have played cannot be reweighted)"
        )
    if np.any(p > 1.0 + _SUM_ATOL + _SUM_RTOL):
        raise ValueError(f"pscore: propensities must be <= 1, got max {p.max():.8g}")

    q: FloatArray | None = None
    if estimated_rewards_by_reg_model is not None:
        q = _float_array(estimated_rewards_by_reg_model, "estimated_rewards_by_reg_model", 3)
        if q.shape != pi.shape:
            raise ValueError(
                f"estimated_rewards_by_reg_model: shape {q.shape} must equal "
                f"action_dist's shape {pi.shape}"
            )
    return _Feedback(r, a, k_arr, p, pi, q)


# ---------------------------------------------------------------------- round-wise terms


def _weights(fb: _Feedback) -> FloatArray:
    """Unclipped importance weights π_e(a_i|x_i,k_i) / π_b(a_i|x_i,k_i), shape (n_rounds,)."""
    rows = np.arange(fb.n_rounds)
    w: FloatArray = fb.action_dist[rows, fb.action, fb.position] / fb.pscore
    return w


def _ips_terms(fb: _Feedback, lam: float) -> tuple[FloatArray, FloatArray]:
    """Round-wise IPS terms r_i · min(w_i, λ) and the clipped weights."""
    w = np.minimum(_weights(fb), lam)
    return fb.reward * w, w


def _dr_terms(fb: _Feedback, lam: float) -> tuple[FloatArray, FloatArray]:
    """Round-wise DR terms and the clipped weights."""
    if fb.q_hat is None:  # pragma: no cover - callers check first
        raise ValueError("estimated_rewards_by_reg_model: required for DR")
    rows = np.arange(fb.n_rounds)
    pi_at_k = fb.action_dist[rows, :, fb.position]  # (n_rounds, n_actions)
    q_at_k = fb.q_hat[rows, :, fb.position]  # (n_rounds, n_actions)
    baseline = (pi_at_k * q_at_k).sum(axis=1) / pi_at_k.sum(axis=1)
    q_factual = fb.q_hat[rows, fb.action, fb.position]
    w = np.minimum(_weights(fb), lam)
    terms: FloatArray = baseline + w * (fb.reward - q_factual)
    return terms, w


def _ratio(num: float, den: float) -> float:
    return num / den if den != 0 else math.nan


# ------------------------------------------------------------------------ point estimates


def ips(
    reward: ArrayLike,
    action: ArrayLike,
    pscore: ArrayLike,
    action_dist: ArrayLike,
    *,
    position: ArrayLike | None = None,
    lambda_: float = math.inf,
) -> float:
    """Inverse propensity scoring (IPS) estimate of the evaluation policy's value.

    Matches OBP's ``InverseProbabilityWeighting(lambda_=lambda_).estimate_policy_value``.

    Parameters
    ----------
    reward : array_like, shape (n_rounds,)
        Observed reward of each round, in the caller's units (e.g. profit per visitor).
    action : array_like of int, shape (n_rounds,)
        Action the logging policy played, in ``[0, n_actions)``.
    pscore : array_like, shape (n_rounds,)
        Probability in (0, 1] with which the logging policy played that action (at that
        position).
    action_dist : array_like, shape (n_rounds, n_actions, len_list)
        Evaluation policy's action probabilities per round and position; sums to 1 over
        axis 1.
    position : array_like of int, shape (n_rounds,), optional
        Position of each logged action in ``[0, len_list)``. ``None`` means position 0 for
        every round and is allowed only when ``len_list == 1``.
    lambda_ : float, default inf
        Importance weights above ``lambda_`` are clipped to it (dimensionless, >= 0).

    Returns
    -------
    float
        Estimated value per round, in reward units.

    Raises
    ------
    ValueError
        On malformed input; the message names the offending argument.
    """
    fb = _prepare(reward, action, pscore, action_dist, position, None)
    terms, _ = _ips_terms(fb, _check_lambda(lambda_))
    return float(np.mean(terms))


def snips(
    reward: ArrayLike,
    action: ArrayLike,
    pscore: ArrayLike,
    action_dist: ArrayLike,
    *,
    position: ArrayLike | None = None,
) -> float:
    """Self-normalised IPS (SNIPS) estimate ``Σ r_i w_i / Σ w_i``.

    Matches OBP's ``SelfNormalizedInverseProbabilityWeighting().estimate_policy_value``.
    There is no clipping argument because OBP's SNIPW never clips.

    Parameters
    ----------
    reward : array_like, shape (n_rounds,)
        Observed reward of each round, in the caller's units (e.g. profit per visitor).
    action : array_like of int, shape (n_rounds,)
        Action the logging policy played, in ``[0, n_actions)``.
    pscore : array_like, shape (n_rounds,)
        Probability in (0, 1] with which the logging policy played that action.
    action_dist : array_like, shape (n_rounds, n_actions, len_list)
        Evaluation policy's action probabilities; sums to 1 over axis 1.
    position : array_like of int, shape (n_rounds,), optional
        Position of each logged action; ``None`` only when ``len_list == 1``.

    Returns
    -------
    float
        Estimated value per round, in reward units; ``nan`` if every importance weight is
        zero (the evaluation policy never plays any logged action).

    Raises
    ------
    ValueError
        On malformed input; the message names the offending argument.
    """
    fb = _prepare(reward, action, pscore, action_dist, position, None)
    w = _weights(fb)
    return _ratio(float(np.sum(fb.reward * w)), float(np.sum(w)))


def dr(
    reward: ArrayLike,
    action: ArrayLike,
    pscore: ArrayLike,
    action_dist: ArrayLike,
    *,
    estimated_rewards_by_reg_model: ArrayLike,
    position: ArrayLike | None = None,
    lambda_: float = math.inf,
) -> float:
    """Doubly robust (DR) estimate of the evaluation policy's value.

    Matches OBP's ``DoublyRobust(lambda_=lambda_).estimate_policy_value``.

    Parameters
    ----------
    reward : array_like, shape (n_rounds,)
        Observed reward of each round, in the caller's units (e.g. profit per visitor).
    action : array_like of int, shape (n_rounds,)
        Action the logging policy played, in ``[0, n_actions)``.
    pscore : array_like, shape (n_rounds,)
        Probability in (0, 1] with which the logging policy played that action.
    action_dist : array_like, shape (n_rounds, n_actions, len_list)
        Evaluation policy's action probabilities; sums to 1 over axis 1.
    estimated_rewards_by_reg_model : array_like, shape (n_rounds, n_actions, len_list)
        Reward model q̂(x_i, a, k): predicted reward of every action at every position in
        each round's context, in reward units.
    position : array_like of int, shape (n_rounds,), optional
        Position of each logged action; ``None`` only when ``len_list == 1``.
    lambda_ : float, default inf
        Importance weights above ``lambda_`` are clipped to it in the correction term.

    Returns
    -------
    float
        Estimated value per round, in reward units.

    Raises
    ------
    ValueError
        On malformed input or a missing reward model; the message names the argument.
    """
    if estimated_rewards_by_reg_model is None:
        raise ValueError("estimated_rewards_by_reg_model: required for DR")
    fb = _prepare(reward, action, pscore, action_dist, position, estimated_rewards_by_reg_model)
    terms, _ = _dr_terms(fb, _check_lambda(lambda_))
    return float(np.mean(terms))


# ---------------------------------------------------------------------------- intervals


def _bootstrap(
    terms: FloatArray,
    denom: FloatArray | None,
    alpha: float,
    n_bootstrap: int,
    random_state: int | None,
) -> tuple[float, float, int]:
    """Percentile bootstrap over rounds.

    Each replicate is ``mean(terms[idx])`` or, when ``denom`` is given, the ratio
    ``sum(terms[idx]) / sum(denom[idx])``. Returns (lower, upper, n_undefined_replicates).
    """
    n = int(terms.shape[0])
    rng = np.random.default_rng(random_state)
    stats = np.empty(n_bootstrap, dtype=np.float64)
    chunk = max(1, _BOOT_CHUNK // n)
    for start in range(0, n_bootstrap, chunk):
        stop = min(start + chunk, n_bootstrap)
        idx = rng.integers(0, n, size=(stop - start, n))
        if denom is None:
            stats[start:stop] = terms[idx].mean(axis=1)
        else:
            num = terms[idx].sum(axis=1)
            den = denom[idx].sum(axis=1)
            safe = np.where(den != 0, den, 1.0)
            stats[start:stop] = np.where(den != 0, num / safe, np.nan)
    finite = stats[np.isfinite(stats)]
    if finite.size == 0:
        return math.nan, math.nan, n_bootstrap
    lo, hi = np.quantile(finite, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi), n_bootstrap - int(finite.size)


def _clt(value: float, influence: FloatArray, alpha: float) -> tuple[float, float]:
    """Normal interval ``value ± z · sd(influence) / sqrt(n)``."""
    n = int(influence.shape[0])
    se = float(np.std(influence, ddof=1)) / math.sqrt(n)
    z = NormalDist().inv_cdf(1 - alpha / 2)
    return value - z * se, value + z * se


# ------------------------------------------------------------------------- diagnostics


def _ess(w: FloatArray) -> float:
    s2 = float(np.sum(w * w))
    return float(np.sum(w)) ** 2 / s2 if s2 > 0 else 0.0


def _data_warnings(raw_w: FloatArray) -> list[str]:
    """Warnings about the logged data that apply to every estimator."""
    n = int(raw_w.shape[0])
    mean_w = float(np.mean(raw_w))
    sd = float(np.std(raw_w, ddof=1)) if n > 1 else 0.0
    gap = mean_w - 1.0
    z = abs(gap) / (sd / math.sqrt(n)) if sd > 0 else (math.inf if gap != 0 else 0.0)
    if abs(gap) > _MEAN_W_TOL and z > _MEAN_W_Z:
        return [
            f"mean importance weight is {mean_w:.3f}, not ≈1 (|z|={z:.1f}): pscore may be "
            "wrong, or the evaluation policy puts mass on actions the logging policy "
            "(almost) never played, which biases the estimates"
        ]
    return []


def _weight_warnings(
    w: FloatArray, ess: float, ess_floor: float, weight_cap: float, min_ess: float
) -> list[str]:
    n = int(w.shape[0])
    out: list[str] = []
    if ess < ess_floor:
        label = f"{min_ess:g}·n_rounds" if 0 < min_ess < 1 else f"{min_ess:g}"
        out.append(
            f"effective sample size {ess:.1f} of {n} rounds is below min_ess={label} "
            f"({ess_floor:.1f}): the estimate rests on a few heavily weighted rounds"
        )
    w_max = float(np.max(w))
    if w_max > weight_cap:
        share = w_max / float(np.sum(w))
        out.append(
            f"max importance weight {w_max:.4g} exceeds {weight_cap:.4g}: one round carries "
            f"{share:.1%} of the total weight; the evaluation policy favours actions the "
            "logging policy rarely played"
        )
    return out


# ----------------------------------------------------------------------------- evaluate


def _check_options(
    estimators: Sequence[str] | str,
    alpha: float,
    n_bootstrap: int,
    ci: str,
    min_ess: float,
    max_weight_warn: float | None,
) -> tuple[str, ...]:
    names = (estimators,) if isinstance(estimators, str) else tuple(estimators)
    if not names:
        raise ValueError("estimators: at least one estimator is needed")
    unknown = [e for e in names if e not in ESTIMATORS]
    if unknown:
        raise ValueError(f"estimators: unknown {unknown}; choose from {ESTIMATORS}")
    if len(set(names)) != len(names):
        raise ValueError(f"estimators: duplicates in {names}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha: must lie in (0, 1), got {alpha}")
    if ci not in ("bootstrap", "clt"):
        raise ValueError(f"ci: must be 'bootstrap' or 'clt', got {ci!r}")
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, int | np.integer):
        raise ValueError(f"n_bootstrap: must be an int, got {n_bootstrap!r}")
    if n_bootstrap < 1:
        raise ValueError(f"n_bootstrap: must be >= 1, got {n_bootstrap}")
    if not (math.isfinite(min_ess) and min_ess >= 0):
        raise ValueError(f"min_ess: must be a finite number >= 0, got {min_ess}")
    if max_weight_warn is not None and not max_weight_warn > 0:
        raise ValueError(f"max_weight_warn: must be > 0 or None, got {max_weight_warn}")
    return names


def evaluate(
    reward: ArrayLike,
    action: ArrayLike,
    pscore: ArrayLike,
    action_dist: ArrayLike,
    *,
    position: ArrayLike | None = None,
    estimated_rewards_by_reg_model: ArrayLike | None = None,
    estimators: Sequence[str] = ESTIMATORS,
    alpha: float = 0.05,
    n_bootstrap: int = 2000,
    random_state: int | None = 0,
    ci: Literal["bootstrap", "clt"] = "bootstrap",
    min_ess: float = 100,
    max_weight_warn: float | None = None,
    lambda_: float = math.inf,
) -> dict[str, OPEEstimate]:
    """Estimate the evaluation policy's value with several estimators, intervals and checks.

    Parameters
    ----------
    reward : array_like, shape (n_rounds,)
        Observed reward of each round, in the caller's units (e.g. profit per visitor).
    action : array_like of int, shape (n_rounds,)
        Action the logging policy played, in ``[0, n_actions)``.
    pscore : array_like, shape (n_rounds,)
        Probability in (0, 1] with which the logging policy played that action.
    action_dist : array_like, shape (n_rounds, n_actions, len_list)
        Evaluation policy's action probabilities; sums to 1 over axis 1.
    position : array_like of int, shape (n_rounds,), optional
        Position of each logged action; ``None`` only when ``len_list == 1``.
    estimated_rewards_by_reg_model : array_like, shape (n_rounds, n_actions, len_list), optional
        Reward model q̂ in reward units; required when ``"dr"`` is requested.
    estimators : sequence of str, default ("ips", "snips", "dr")
        Which of :data:`ESTIMATORS` to compute, in the order of the returned dict.
    alpha : float, default 0.05
        Intervals have nominal two-sided coverage ``1 - alpha``.
    n_bootstrap : int, default 2000
        Bootstrap resamples (``ci="bootstrap"`` only).
    random_state : int or None, default 0
        Seed of the bootstrap; every estimator uses the same resampled rounds, so a
        result does not depend on which other estimators were requested.
    ci : {"bootstrap", "clt"}, default "bootstrap"
        ``"bootstrap"``: percentile bootstrap over rounds (SNIPS recomputes its ratio in
        each resample). ``"clt"``: normal interval from the sample standard deviation of
        the round-wise terms (IPS, DR) or of the linearised terms
        ``w_i (r_i - V̂) / mean(w)`` (SNIPS, delta method).
    min_ess : float, default 100
        Warn when the effective sample size falls below this many rounds; a value in
        (0, 1) is read as a fraction of ``n_rounds``.
    max_weight_warn : float, optional
        Warn when an importance weight exceeds this; default ``0.1 · n_rounds`` (one round
        would then shift IPS by ≥ 10 % of its reward).
    lambda_ : float, default inf
        Clip importance weights at this value for IPS and DR (OBP semantics; SNIPS is
        never clipped).

    Returns
    -------
    dict of str to OPEEstimate
        Keyed by estimator name.

    Raises
    ------
    ValueError
        On malformed input (shapes, ranges, ``pscore <= 0``, ``action_dist`` not summing
        to 1), bad options, fewer than 2 rounds, or ``"dr"`` requested without
        ``estimated_rewards_by_reg_model``; the message names the argument.

    Notes
    -----
    Warnings (in each result's ``warnings``) flag: effective sample size below
    ``min_ess``; a weight above ``max_weight_warn``; a mean raw importance weight far
    from 1 (it is 1 in expectation when ``pscore`` is right and π_e only plays actions
    π_b can play, so a large gap signals wrong propensities or missing support, which
    weight-based diagnostics alone can miss when the rare actions never appear in the
    log); weights clipped by ``lambda_``; undefined bootstrap replicates.
    """
    names = _check_options(estimators, alpha, n_bootstrap, ci, min_ess, max_weight_warn)
    lam = _check_lambda(lambda_)
    if "dr" in names and estimated_rewards_by_reg_model is None:
        raise ValueError(
            "estimated_rewards_by_reg_model: required for 'dr' (pass a reward model "
            "or leave 'dr' out of estimators)"
        )
    fb = _prepare(reward, action, pscore, action_dist, position, estimated_rewards_by_reg_model)
    n = fb.n_rounds
    if n < 2:
        raise ValueError("reward: at least 2 rounds are needed for an interval")

    ess_floor = min_ess * n if 0 < min_ess < 1 else float(min_ess)
    weight_cap = 0.1 * n if max_weight_warn is None else float(max_weight_warn)
    raw_w = _weights(fb)
    shared = _data_warnings(raw_w)

    results: dict[str, OPEEstimate] = {}
    for name in names:
        notes = list(shared)
        denom: FloatArray | None = None
        if name == "snips":
            w = raw_w
            terms = fb.reward * w
            value = _ratio(float(np.sum(terms)), float(np.sum(w)))
            denom = w
            if math.isnan(value):
                influence = w
                notes.append("all importance weights are zero: SNIPS is undefined")
            else:
                influence = w * (fb.reward - value) / float(np.mean(w))
        else:
            terms, w = _ips_terms(fb, lam) if name == "ips" else _dr_terms(fb, lam)
            value = float(np.mean(terms))
            influence = terms
            n_clipped = int(np.sum(raw_w > lam))
            if n_clipped:
                notes.append(
                    f"{n_clipped} of {n} importance weights clipped at lambda_={lam:g}: "
                    "the estimate is biased (towards zero for IPS, towards the model for DR)"
                )

        if math.isnan(value):
            lower = upper = math.nan
        elif ci == "clt":
            lower, upper = _clt(value, influence, alpha)
        else:
            lower, upper, n_bad = _bootstrap(terms, denom, alpha, n_bootstrap, random_state)
            if n_bad:
                notes.append(
                    f"{n_bad} of {n_bootstrap} bootstrap resamples had zero total weight "
                    "and were dropped"
                )

        ess = _ess(w)
        notes.extend(_weight_warnings(w, ess, ess_floor, weight_cap, min_ess))
        results[name] = OPEEstimate(
            estimator=name,
            value=value,
            lower=lower,
            upper=upper,
            ess=ess,
            max_weight=float(np.max(w)),
            n_rounds=n,
            warnings=tuple(notes),
        )
    return results
