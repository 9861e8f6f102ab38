"""Off-policy estimators: agreement with OBP's formulas, interval coverage, diagnostics."""

from __future__ import annotations

import math
from dataclasses import FrozenInstanceError

import numpy as np
import pytest

from experiments.ope import OPEEstimate, dr, evaluate, ips, snips

# ------------------------------------------------------------------------------------------
# Literal transcriptions of OBP's round-wise definitions (obp/ope/estimators.py), one round
# at a time, deliberately written without any vectorisation so they share no code path
# with experiments.ope.
# ------------------------------------------------------------------------------------------


def literal_ipw(reward, action, position, pscore, action_dist, lambda_=math.inf):
    # InverseProbabilityWeighting: iw = action_dist[i, a_i, k_i] / pscore_i,
    # iw = min(iw, lambda_), value = mean_i(reward_i * iw_i)
    total = 0.0
    for i in range(len(reward)):
        iw = action_dist[i, action[i], position[i]] / pscore[i]
        iw = min(iw, lambda_)
        total += reward[i] * iw
    return total / len(reward)


def literal_snipw(reward, action, position, pscore, action_dist):
    # SelfNormalizedInverseProbabilityWeighting: round term reward_i * iw_i / mean(iw),
    # value = mean of the round terms (no clipping, even though the class has lambda_)
    n = len(reward)
    iws = [action_dist[i, action[i], position[i]] / pscore[i] for i in range(n)]
    mean_iw = sum(iws) / n
    return sum(reward[i] * iws[i] / mean_iw for i in range(n)) / n


def literal_dr(reward, action, position, pscore, action_dist, q_hat, lambda_=math.inf):
    # DoublyRobust: np.average(q_hat[i, :, k_i], weights=action_dist[i, :, k_i])
    #               + min(iw_i, lambda_) * (reward_i - q_hat[i, a_i, k_i])
    n, n_actions = len(reward), action_dist.shape[1]
    total = 0.0
    for i in range(n):
        k = position[i]
        num = sum(action_dist[i, a, k] * q_hat[i, a, k] for a in range(n_actions))
        den = sum(action_dist[i, a, k] for a in range(n_actions))
        iw = min(action_dist[i, action[i], k] / pscore[i], lambda_)
        total += num / den + iw * (reward[i] - q_hat[i, action[i], k])
    return total / n


def random_feedback(seed, n=60, n_actions=5, len_list=1):
    rng = np.random.default_rng(seed)
    action_dist = rng.dirichlet(np.ones(n_actions), size=(n, len_list)).transpose(0, 2, 1)
    return {
        "reward": rng.normal(3.0, 2.0, size=n),  # e.g. profit per visitor, can be negative
        "action": rng.integers(0, n_actions, size=n),
        "position": rng.integers(0, len_list, size=n),
        "pscore": rng.uniform(0.05, 1.0, size=n),
        "action_dist": action_dist,
        "q_hat": rng.normal(3.0, 1.0, size=(n, n_actions, len_list)),
    }


# ------------------------------------------------------------------------ 1. point values


@pytest.mark.parametrize("len_list", [1, 3])
@pytest.mark.parametrize("lambda_", [math.inf, 2.5])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_point_estimates_match_literal_obp(seed, lambda_, len_list):
    d = random_feedback(seed, len_list=len_list)
    args = (d["reward"], d["action"], d["pscore"], d["action_dist"])
    literal = (d["reward"], d["action"], d["position"], d["pscore"], d["action_dist"])
    pos = d["position"]
    np.testing.assert_allclose(
        ips(*args, position=pos, lambda_=lambda_), literal_ipw(*literal, lambda_), rtol=1e-12
    )
    np.testing.assert_allclose(snips(*args, position=pos), literal_snipw(*literal), rtol=1e-12)
    np.testing.assert_allclose(
        dr(*args, estimated_rewards_by_reg_model=d["q_hat"], position=pos, lambda_=lambda_),
        literal_dr(*literal, d["q_hat"], lambda_),
        rtol=1e-12,
    )
    out = evaluate(
        *args,
        position=pos,
        estimated_rewards_by_reg_model=d["q_hat"],
        ci="clt",
        min_ess=0,
        lambda_=lambda_,
    )
    np.testing.assert_allclose(out["ips"].value, literal_ipw(*literal, lambda_), rtol=1e-12)
    np.testing.assert_allclose(out["snips"].value, literal_snipw(*literal), rtol=1e-12)
    np.testing.assert_allclose(
        out["dr"].value, literal_dr(*literal, d["q_hat"], lambda_), rtol=1e-12
    )


def test_position_none_means_position_zero_when_len_list_is_one():
    d = random_feedback(5, len_list=1)
    args = (d["reward"], d["action"], d["pscore"], d["action_dist"])
    zeros = np.zeros(len(d["reward"]), dtype=int)
    assert ips(*args) == ips(*args, position=zeros)
    assert snips(*args) == snips(*args, position=zeros)
    q = d["q_hat"]
    assert dr(*args, estimated_rewards_by_reg_model=q) == dr(
        *args, estimated_rewards_by_reg_model=q, position=zeros
    )


def test_position_selects_the_slot_of_action_dist():
    # With len_list=3 the estimate must read the logged position, not slot 0.
    d = random_feedback(3, len_list=3)
    args = (d["reward"], d["action"], d["pscore"], d["action_dist"])
    zeros = np.zeros(len(d["reward"]), dtype=int)
    assert not np.isclose(ips(*args, position=d["position"]), ips(*args, position=zeros))


# A 4-round, 2-action example small enough to do by hand.
TOY_REWARD = np.array([1.0, 0.0, 2.0, 1.0])
TOY_ACTION = np.array([0, 1, 1, 0])
TOY_PSCORE = np.array([0.5, 0.25, 0.75, 0.5])
TOY_PI_E = np.array([[0.8, 0.2], [0.5, 0.5], [0.1, 0.9], [0.4, 0.6]])[:, :, None]
TOY_Q = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.5, 0.5]])[:, :, None]
TOY = (TOY_REWARD, TOY_ACTION, TOY_PSCORE, TOY_PI_E)


def test_toy_example_by_hand():
    # weights w = pi_e(a_i) / pscore_i:
    #   0.8/0.5 = 1.6,  0.5/0.25 = 2.0,  0.9/0.75 = 1.2,  0.4/0.5 = 0.8   (sum 5.6)
    # IPS   = (1*1.6 + 0*2.0 + 2*1.2 + 1*0.8) / 4 = 4.8 / 4 = 1.2
    assert ips(*TOY) == pytest.approx(1.2, rel=1e-14)
    # SNIPS = 4.8 / 5.6 = 6/7
    assert snips(*TOY) == pytest.approx(6 / 7, rel=1e-14)
    # DR, round by round (baseline = sum_a pi_e(a) q(a); correction = w (r - q(a_i))):
    #   round 0: 0.8*1 + 0.2*0 = 0.8;  + 1.6 * (1 - 1.0) = 0     ->  0.8
    #   round 1: 0.5*0 + 0.5*1 = 0.5;  + 2.0 * (0 - 1.0) = -2.0  -> -1.5
    #   round 2: 0.1*1 + 0.9*1 = 1.0;  + 1.2 * (2 - 1.0) = 1.2   ->  2.2
    #   round 3: 0.4*.5 + 0.6*.5 = 0.5; + 0.8 * (1 - 0.5) = 0.4  ->  0.9
    #   DR = (0.8 - 1.5 + 2.2 + 0.9) / 4 = 2.4 / 4 = 0.6
    assert dr(*TOY, estimated_rewards_by_reg_model=TOY_Q) == pytest.approx(0.6, rel=1e-14)
    # Clipping at lambda_=1.5 turns the weights 1.6 and 2.0 into 1.5:
    #   IPS = (1.5 + 0 + 2.4 + 0.8) / 4 = 4.7 / 4 = 1.175
    #   DR  = (0.8 + (0.5 - 1.5) + 2.2 + 0.9) / 4 = 2.9 / 4 = 0.725
    assert ips(*TOY, lambda_=1.5) == pytest.approx(1.175, rel=1e-14)
    assert dr(*TOY, estimated_rewards_by_reg_model=TOY_Q, lambda_=1.5) == pytest.approx(
        0.725, rel=1e-14
    )
    # SNIPS ignores clipping, as OBP's SNIPW does: still 6/7 through evaluate(lambda_=1.5).
    out = evaluate(*TOY, estimators=("snips",), lambda_=1.5, ci="clt", min_ess=0)
    assert out["snips"].value == pytest.approx(6 / 7, rel=1e-14)


def test_toy_example_diagnostics_and_clt_by_hand():
    out = evaluate(
        *TOY, estimated_rewards_by_reg_model=TOY_Q, ci="clt", min_ess=0, max_weight_warn=10
    )
    z = 1.959963984540054  # standard normal 97.5 % quantile
    # ESS = (sum w)^2 / sum w^2 = 5.6^2 / (2.56 + 4 + 1.44 + 0.64) = 31.36 / 8.64
    assert out["ips"].ess == pytest.approx(31.36 / 8.64, rel=1e-14)
    assert out["ips"].max_weight == 2.0
    assert out["ips"].n_rounds == 4
    # IPS terms [1.6, 0, 2.4, 0.8], mean 1.2, deviations [.4, -1.2, 1.2, -.4]:
    #   sample variance = (0.16 + 1.44 + 1.44 + 0.16) / 3 = 3.2 / 3, se = sqrt(3.2/3) / 2
    half = z * math.sqrt(3.2 / 3) / 2
    assert out["ips"].lower == pytest.approx(1.2 - half, rel=1e-12)
    assert out["ips"].upper == pytest.approx(1.2 + half, rel=1e-12)
    # SNIPS linearised terms w_i (r_i - 6/7) / mean(w) with mean(w) = 1.4:
    #   [1.6/7, -12/7, 9.6/7, 0.8/7] / 1.4 = [8/49, -60/49, 48/49, 4/49]  (they sum to 0)
    #   sample variance = (64 + 3600 + 2304 + 16) / 49^2 / 3 = 5984 / 7203
    half = z * math.sqrt(5984 / 7203) / 2
    assert out["snips"].lower == pytest.approx(6 / 7 - half, rel=1e-12)
    assert out["snips"].upper == pytest.approx(6 / 7 + half, rel=1e-12)
    # DR terms [0.8, -1.5, 2.2, 0.9], mean 0.6, deviations [.2, -2.1, 1.6, .3]:
    #   sample variance = (0.04 + 4.41 + 2.56 + 0.09) / 3 = 7.1 / 3
    half = z * math.sqrt(7.1 / 3) / 2
    assert out["dr"].lower == pytest.approx(0.6 - half, rel=1e-12)
    assert out["dr"].upper == pytest.approx(0.6 + half, rel=1e-12)


def test_result_is_a_frozen_dataclass():
    res = evaluate(*TOY, estimators=("ips",), ci="clt", min_ess=0)["ips"]
    assert isinstance(res, OPEEstimate)
    assert res.estimator == "ips"
    with pytest.raises(FrozenInstanceError):
        res.value = 0.0  # type: ignore[misc]


# --------------------------------------------------------------------- 2. on-policy sanity


def test_on_policy_ips_and_snips_equal_the_mean_reward():
    rng = np.random.default_rng(11)
    n, k = 3000, 6
    pi_b = rng.dirichlet(np.ones(k), size=n)
    action = (pi_b.cumsum(axis=1) > rng.uniform(size=(n, 1))).argmax(axis=1)
    pscore = pi_b[np.arange(n), action]
    reward = rng.gamma(2.0, 5.0, size=n)  # e.g. basket margin in currency units
    out = evaluate(reward, action, pscore, pi_b[:, :, None], estimators=("ips", "snips"))
    mean = float(np.mean(reward))
    assert out["ips"].value == pytest.approx(mean, rel=1e-14)
    assert out["snips"].value == mean
    assert out["snips"].ess == pytest.approx(n, rel=1e-12)
    assert out["ips"].max_weight == pytest.approx(1.0, rel=1e-14)
    assert out["ips"].lower < mean < out["ips"].upper
    assert out["ips"].warnings == () == out["snips"].warnings


# ---------------------------------------------------------------- 3. coverage simulation

N_CONTEXTS, N_ACTIONS = 20, 10


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _world(seed=2024):
    """Known mean rewards q(x, a), logging and evaluation policies, and the true value."""
    rng = np.random.default_rng(seed)
    q = 1.0 / (1.0 + np.exp(-rng.normal(-0.5, 1.0, size=(N_CONTEXTS, N_ACTIONS))))
    pi_b = 0.8 * _softmax(rng.normal(size=(N_CONTEXTS, N_ACTIONS))) + 0.2 / N_ACTIONS
    pi_e = 0.9 * _softmax(4.0 * q) + 0.1 / N_ACTIONS  # better than pi_b, overlapping
    true_value = float(np.mean(np.sum(pi_e * q, axis=1)))  # contexts are uniform
    q_model = np.clip(q + rng.normal(0.0, 0.03, size=q.shape), 0.0, 1.0)  # a good model
    return q, pi_b, pi_e, q_model, true_value


def _log(world, seed, n):
    q, pi_b, pi_e, q_model, _ = world
    rng = np.random.default_rng(seed)
    x = rng.integers(0, N_CONTEXTS, size=n)
    action = (pi_b[x].cumsum(axis=1) > rng.uniform(size=(n, 1))).argmax(axis=1)
    reward = (rng.uniform(size=n) < q[x, action]).astype(float)
    return (reward, action, pi_b[x, action], pi_e[x][:, :, None]), q_model[x][:, :, None]


def _coverage(ci, n_seeds, n_bootstrap=2000):
    world = _world()
    truth = world[-1]
    hits = {e: 0 for e in ("ips", "snips", "dr")}
    widths = {e: [] for e in hits}
    values = {e: [] for e in hits}
    for seed in range(n_seeds):
        data, q_hat = _log(world, seed, 2000)
        out = evaluate(
            *data,
            estimated_rewards_by_reg_model=q_hat,
            ci=ci,
            n_bootstrap=n_bootstrap,
            random_state=seed,
        )
        for e, res in out.items():
            hits[e] += res.lower <= truth <= res.upper
            widths[e].append(res.upper - res.lower)
            values[e].append(res.value)
            assert res.warnings == (), res.warnings  # the benign case stays quiet
    return (
        {e: h / n_seeds for e, h in hits.items()},
        {e: float(np.mean(w)) for e, w in widths.items()},
        {e: float(np.std(v, ddof=1)) for e, v in values.items()},
    )


@pytest.mark.parametrize(
    ("ci", "n_seeds", "n_bootstrap"), [("clt", 200, 1), ("bootstrap", 100, 500)]
)
def test_intervals_cover_the_true_policy_value(ci, n_seeds, n_bootstrap):
    coverage, width, spread = _coverage(ci, n_seeds, n_bootstrap)
    for e in coverage:
        assert coverage[e] >= 0.88, (ci, coverage)
        # Intervals must not buy coverage with width: their mean width should be close to
        # 2 * 1.96 * (sd of the estimate across seeds). Over 2000 seeds the ratio is
        # 1.01-1.03; with 100-200 seeds the sd itself is only known to about ±7 %.
        assert 0.75 < width[e] / (2 * 1.96 * spread[e]) < 1.3, (ci, e, width, spread)
    assert width["dr"] < width["ips"], width


def test_clt_and_bootstrap_intervals_agree_on_a_large_benign_log():
    data, q_hat = _log(_world(), 99, 5000)
    clt = evaluate(*data, estimated_rewards_by_reg_model=q_hat, ci="clt")
    boot = evaluate(*data, estimated_rewards_by_reg_model=q_hat, n_bootstrap=1000)
    for e in clt:
        width = clt[e].upper - clt[e].lower
        assert abs(clt[e].lower - boot[e].lower) < 0.1 * width, e
        assert abs(clt[e].upper - boot[e].upper) < 0.1 * width, e
        assert clt[e].value == boot[e].value


# ------------------------------------------------------------------------- 4. diagnostics


def _two_policy_log(seed, p_rare, n=2000):
    """pi_b plays action 0 with probability p_rare; pi_e puts 0.9 on action 0."""
    rng = np.random.default_rng(seed)
    pi_b = np.full(N_ACTIONS, (1 - p_rare) / (N_ACTIONS - 1))
    pi_b[0] = p_rare
    pi_e = np.full(N_ACTIONS, 0.1 / (N_ACTIONS - 1))
    pi_e[0] = 0.9
    action = rng.choice(N_ACTIONS, size=n, p=pi_b)
    reward = rng.binomial(1, 0.3, size=n).astype(float)
    return reward, action, pi_b[action], np.tile(pi_e[:, None], (n, 1, 1))


def test_warnings_fire_when_weights_explode():
    reward, action, pscore, action_dist = _two_policy_log(seed=1, p_rare=0.002)
    assert 1 <= np.sum(action == 0) <= 10  # the rare action was logged a few times
    out = evaluate(reward, action, pscore, action_dist, estimators=("ips", "snips"))
    for res in out.values():
        assert res.max_weight == pytest.approx(0.9 / 0.002)
        assert res.ess < 100
        assert any("effective sample size" in w for w in res.warnings), res.warnings
        assert any("max importance weight" in w for w in res.warnings), res.warnings


def test_warning_fires_when_the_evaluation_policy_leaves_the_logged_support():
    # The rare action is never logged, so no weight is large, yet IPS misses 90 % of pi_e.
    reward, action, pscore, action_dist = _two_policy_log(seed=1, p_rare=1e-7)
    assert not np.any(action == 0)
    out = evaluate(reward, action, pscore, action_dist, estimators=("ips",))
    assert any("mean importance weight" in w for w in out["ips"].warnings)
    assert not any("max importance weight" in w for w in out["ips"].warnings)


def test_thresholds_are_configurable_and_clipping_is_reported():
    reward, action, pscore, action_dist = _two_policy_log(seed=1, p_rare=0.002)
    quiet = evaluate(
        reward, action, pscore, action_dist, estimators=("ips",), min_ess=0.001,
        max_weight_warn=1000,
    )  # fmt: skip
    assert not any("effective" in w or "max importance" in w for w in quiet["ips"].warnings)
    clipped = evaluate(reward, action, pscore, action_dist, estimators=("ips",), lambda_=20.0)
    assert clipped["ips"].max_weight == 20.0
    assert any("clipped at lambda_=20" in w for w in clipped["ips"].warnings)


def test_benign_case_has_no_warnings():
    data, q_hat = _log(_world(), 7, 2000)
    out = evaluate(*data, estimated_rewards_by_reg_model=q_hat)
    assert all(res.warnings == () for res in out.values()), out
    assert all(res.ess > 500 for res in out.values())


@pytest.mark.filterwarnings("error")
def test_snips_is_nan_with_a_warning_when_no_logged_action_has_weight():
    # pi_e only plays action 1, which the log never contains: every weight is 0.
    pi_e = np.zeros((4, 2, 1))
    pi_e[:, 1, 0] = 1.0
    action = np.zeros(4, dtype=int)
    assert math.isnan(snips(TOY_REWARD, action, TOY_PSCORE, pi_e))
    out = evaluate(TOY_REWARD, action, TOY_PSCORE, pi_e, estimators=("ips", "snips"))
    assert out["ips"].value == 0.0
    res = out["snips"]
    assert math.isnan(res.value) and math.isnan(res.lower) and math.isnan(res.upper)
    assert res.ess == 0.0
    assert any("SNIPS is undefined" in w for w in res.warnings)
    assert any("mean importance weight" in w for w in res.warnings)


def _valid():
    d = random_feedback(0, n=20, len_list=3)
    return {
        "reward": d["reward"],
        "action": d["action"],
        "pscore": d["pscore"],
        "action_dist": d["action_dist"],
        "position": d["position"],
        "estimated_rewards_by_reg_model": d["q_hat"],
    }


def _bad(arg, value):
    kw = _valid()
    kw[arg] = value
    return kw


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        (_bad("pscore", np.r_[0.0, np.full(19, 0.5)]), "pscore"),
        (_bad("pscore", np.r_[-0.1, np.full(19, 0.5)]), "pscore"),
        (_bad("pscore", np.r_[1.5, np.full(19, 0.5)]), "pscore"),
        (_bad("pscore", np.full(19, 0.5)), "pscore"),
        (_bad("action_dist", _valid()["action_dist"] * 1.01), "action_dist"),
        (_bad("action_dist", _valid()["action_dist"][:, :, 0]), "action_dist"),
        (_bad("action_dist", _valid()["action_dist"][:10]), "action_dist"),
        (_bad("reward", np.ones((20, 1))), "reward"),
        (_bad("reward", np.r_[np.nan, np.ones(19)]), "reward"),
        (_bad("action", np.full(20, 5)), "action"),
        (_bad("action", np.zeros(20)), "action"),  # float dtype
        (_bad("position", np.full(20, 3)), "position"),
        (_bad("position", None), "position"),  # len_list=3 needs positions
        (_bad("estimated_rewards_by_reg_model", None), "estimated_rewards_by_reg_model"),
        (_bad("estimated_rewards_by_reg_model", np.zeros((20, 5, 1))), "estimated_rewards_by_reg_model"),
    ],
)  # fmt: skip
def test_invalid_inputs_raise_value_error_naming_the_argument(kwargs, name):
    reward, action, pscore, action_dist = (
        kwargs.pop(k) for k in ("reward", "action", "pscore", "action_dist")
    )
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        evaluate(reward, action, pscore, action_dist, **kwargs)


def test_negative_action_dist_is_rejected():
    kw = _valid()
    pi = kw["action_dist"].copy()
    pi[0, :, 0] = [1.2, -0.2, 0.0, 0.0, 0.0]  # sums to 1 but is not a distribution
    with pytest.raises(ValueError, match=r"^action_dist"):
        ips(kw["reward"], kw["action"], kw["pscore"], pi, position=kw["position"])


@pytest.mark.parametrize(
    ("option", "value"),
    [("alpha", 0.0), ("alpha", 1.0), ("ci", "wald"), ("n_bootstrap", 0), ("n_bootstrap", 2.5),
     ("estimators", ("ips", "magic")), ("estimators", ()), ("min_ess", -1), ("max_weight_warn", 0),
     ("lambda_", -1.0), ("lambda_", math.nan)],
)  # fmt: skip
def test_invalid_options_raise_value_error_naming_the_option(option, value):
    kw = _valid()
    reward, action, pscore, action_dist = (
        kw.pop(k) for k in ("reward", "action", "pscore", "action_dist")
    )
    kw[option] = value
    with pytest.raises(ValueError, match=rf"^{option}\b"):
        evaluate(reward, action, pscore, action_dist, **kw)


def test_dr_without_a_reward_model_names_the_argument():
    with pytest.raises(ValueError, match="estimated_rewards_by_reg_model"):
        evaluate(*TOY)  # "dr" is among the default estimators
    with pytest.raises(ValueError, match="estimated_rewards_by_reg_model"):
        dr(*TOY, estimated_rewards_by_reg_model=None)  # type: ignore[arg-type]


# ----------------------------------------------------------------------- 5. reproducibility


def test_bootstrap_intervals_are_reproducible_for_a_fixed_random_state():
    data, q_hat = _log(_world(), 3, 1500)
    first = evaluate(*data, estimated_rewards_by_reg_model=q_hat, n_bootstrap=500, random_state=7)
    again = evaluate(*data, estimated_rewards_by_reg_model=q_hat, n_bootstrap=500, random_state=7)
    other = evaluate(*data, estimated_rewards_by_reg_model=q_hat, n_bootstrap=500, random_state=8)
    assert first == again
    assert any((first[e].lower, first[e].upper) != (other[e].lower, other[e].upper) for e in first)
    # A result does not depend on which other estimators were requested alongside it.
    alone = evaluate(*data, estimators=("snips",), n_bootstrap=500, random_state=7)
    assert alone["snips"] == first["snips"]
