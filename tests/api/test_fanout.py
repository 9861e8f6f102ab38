"""Fanned-out refits: one fit per category with the shared parameters held at the last full
fit's, gathered behind the diagnostics gate; in one process and through the job queue."""

from __future__ import annotations

import time
from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import func, select

from api.jobs import JobRuntime, refit_mode, refit_reason
from api.orm import CategoryFit, ModelSnapshot, utcnow
from api.queue import defer, run_worker
from api.services.demand_models import current_snapshot, load_posterior, refit
from api.services.fanout import plan, publish, refit_fanout
from api.settings import load_settings
from pricing.fanout import CategoryDraws, SharedParameters, gate, gather
from pricing.posterior import DemandPosterior
from tests.api.test_queue import _jobs, postgresql, queue_url  # noqa: F401 - the fixture
from tests.api.test_refit import _later, _world
from tests.factories import log_counts, truth_counts

SAMPLER = {"method": "nuts", "draws": 500, "tune": 500, "chains": 2, "random_seed": 5}


def _two_categories(d: int = 40, seed: int = 0) -> DemandPosterior:
    rng = np.random.default_rng(seed)
    segments, skus = ("s1", "s2"), ("T1", "T2", "C1")
    pairs = (("s1", "tea"), ("s2", "tea"), ("s1", "coffee"), ("s2", "coffee"))
    return DemandPosterior(
        segments=segments, skus=skus, categories=("coffee", "tea"), promotions=("p",),
        sku_category={"T1": "tea", "T2": "tea", "C1": "coffee"}, pairs=pairs,
        a_seg=rng.normal(0, 0.3, (d, 2)), a_sku=rng.normal(-1, 0.3, (d, 3)),
        log_e=rng.normal(0.4, 0.2, (d, 4)), g=rng.normal(0.2, 0.1, (d, 1)),
        mu_a=rng.normal(-1, 0.1, d), sd_a_sku=np.abs(rng.normal(0.5, 0.05, d)),
        sd_a_seg=np.abs(rng.normal(0.3, 0.05, d)), mu_global=rng.normal(0.4, 0.1, d),
        sd_cat=np.abs(rng.normal(0.3, 0.05, d)), sd_seg=np.abs(rng.normal(0.3, 0.05, d)),
        mu_cat=rng.normal(0.4, 0.1, (d, 2)), log_weights=np.zeros(d), meta={"version": "base"},
    )  # fmt: skip


def _part(category: str, skus: tuple[str, ...], segments: tuple[str, ...], d: int, **diag: float) -> CategoryDraws:
    rng = np.random.default_rng(7)
    diagnostics = {"max_rhat": 1.001, "min_ess_bulk": 800.0, "divergences": 0, "seconds": 1.0,
                   "method": "nuts", "passed": True, "reasons": [], **diag}  # fmt: skip
    return CategoryDraws(
        category=category, skus=skus, pairs=tuple((s, category) for s in segments),
        a_sku=rng.normal(2.0, 0.1, (d, len(skus))), log_e=rng.normal(1.5, 0.1, (d, len(segments))),
        mu_cat=rng.normal(1.5, 0.1, d), diagnostics=diagnostics, n_cells=3, n_trials=30,
    )  # fmt: skip


def test_gather_replaces_only_the_refitted_categories():
    base = _two_categories()
    tea = _part("tea", ("T1", "T2", "T3"), ("s1", "s2"), base.n_draws)  # T3: new in the refit
    merged = gather(base, [tea], meta={"fanout": {"base_snapshot": 1}})
    assert merged.n_draws == base.n_draws and merged.ess == pytest.approx(base.n_draws)
    assert set(merged.skus) == {"T1", "T2", "T3", "C1"} and merged.sku_category["T3"] == "tea"
    # Coffee (not refitted) keeps the base's draws; tea's come from the part.
    c1 = merged.skus.index("C1")
    assert np.array_equal(merged.a_sku[:, c1], base.a_sku[:, base.skus.index("C1")])
    t3 = merged.skus.index("T3")
    assert np.array_equal(merged.a_sku[:, t3], tea.a_sku[:, 2])
    tea_pair = merged.pairs.index(("s2", "tea"))
    assert np.array_equal(merged.log_e[:, tea_pair], tea.log_e[:, 1])
    assert np.array_equal(merged.mu_cat[:, merged.categories.index("tea")], tea.mu_cat)
    assert np.array_equal(merged.mu_cat[:, merged.categories.index("coffee")], base.mu_cat[:, 0])
    # Shared parameters are the base's, draw for draw.
    assert np.array_equal(merged.mu_global, base.mu_global) and np.array_equal(merged.g, base.g)
    assert merged.meta["fanout"] == {"base_snapshot": 1}
    # It serves: every (segment, SKU) has a probability under every draw.
    assert merged.conversion_probability("s1", "T3", 1.0).shape[0] == base.n_draws


def test_gather_refuses_parts_with_other_draw_counts():
    base = _two_categories(d=40)
    with pytest.raises(ValueError, match="tea"):
        gather(base, [_part("tea", ("T1",), ("s1",), 39)])


def test_the_gate_names_the_categories_at_fault():
    parts = [_part("tea", ("T1",), ("s1",), 10), _part("coffee", ("C1",), ("s1",), 10, max_rhat=1.05),
             _part("cocoa", ("K1",), ("s1",), 10, min_ess_bulk=120.0, divergences=3)]  # fmt: skip
    verdict = gate(parts)
    assert not verdict["passed"] and verdict["max_rhat"] == 1.05 and verdict["divergences"] == 3
    assert [r.split(":")[0] for r in verdict["reasons"]] == ["coffee", "cocoa", "cocoa"]
    assert gate(parts[:1])["passed"] and not gate([])["passed"]


def test_shared_parameters_are_the_weighted_means():
    base = _two_categories()
    weights = np.zeros(base.n_draws)
    weights[:5] = 5.0  # all the mass on the first five draws
    shared = SharedParameters.from_posterior(base.with_weights(weights))
    assert shared.mu_global == pytest.approx(float(np.mean(base.mu_global[:5])), abs=1e-3)
    assert set(shared.a_seg) == {"s1", "s2"} and set(shared.g) == {"p"}


@pytest.mark.slow
def test_a_fanned_out_refit_agrees_with_the_full_fit_and_publishes_once(catalog, sessions, backend):
    if backend != "sqlite":
        pytest.skip("the maths is the same on both databases; the queue test covers PostgreSQL")
    truth, prices = _world(catalog)
    log_counts(sessions, truth_counts(truth, prices, (0.8, 1.0, 1.2), trials=40, seed=1))
    full = refit(sessions, sampler_config=SAMPLER, now=_later())
    assert full.published, full.message
    runtime = JobRuntime(sessions, fanout=True, sampler_config=SAMPLER)
    assert refit_mode(runtime) == "fanout"

    fanned = refit_fanout(sessions, sampler_config=SAMPLER, now=_later())
    assert fanned.published, fanned.message
    assert fanned.diagnostics["categories"] == 2 and fanned.diagnostics["max_rhat"] <= 1.01
    with sessions() as session:
        row = current_snapshot(session)
        assert row.id == fanned.snapshot_id
        assert row.diagnostics["fanout"]["base_snapshot"] == full.snapshot_id
        assert session.scalar(select(func.count()).select_from(CategoryFit)) == 0
        fan_post = load_posterior(row)
        full_post = load_posterior(session.get(ModelSnapshot, full.snapshot_id))
    # Same data, shared parameters at the full fit's means: the elasticities agree.
    assert set(fan_post.pairs) == set(full_post.pairs)
    for pair in full_post.pairs:
        a = full_post.log_e[:, full_post.pairs.index(pair)]
        b = fan_post.log_e[:, fan_post.pairs.index(pair)]
        assert abs(a.mean() - b.mean()) < 0.5 * a.std() + 0.05, pair
    # The next fanned-out refit is based on the full fit, not on the fanned-out one.
    again = plan(sessions, now=_later())
    assert again.base_snapshot_id == full.snapshot_id
    with sessions() as session:
        assert refit_reason(JobRuntime(sessions, ess_fraction=0.999)) is None  # one in flight
    # Past full_every, the next refit is full again.
    assert refit_mode(JobRuntime(sessions, fanout=True, full_every=utcnow() - utcnow())) == "full"
    assert publish(sessions, run_id="no-such-run") is None


@pytest.mark.slow
@postgresql
def test_the_queue_runs_one_job_per_category_and_publishes_once(queue_url, catalog, sessions):  # noqa: F811
    truth, prices = _world(catalog)
    log_counts(sessions, truth_counts(truth, prices, (0.8, 1.0, 1.2), trials=40, seed=1),
               recorded_at=utcnow() - timedelta(minutes=5))  # before the run's watermark
    full = refit(sessions, sampler_config=SAMPLER, now=_later())  # the base: a full fit
    assert full.published, full.message
    base = full.snapshot_id
    settings = load_settings(database_url=queue_url, fit_draws=SAMPLER["draws"],
                             fit_tune=SAMPLER["tune"], refit_fanout=True)  # fmt: skip
    assert defer(settings, "pricing.refit", queueing_lock="test", force=True) is not None
    run_worker(settings, wait=False)  # the refit, then one job per category
    for _attempt in range(5):  # the publish, queued by the last category job; a worker that
        run_worker(settings, wait=False)  # finds it still locked by that job exits at once
        with sessions() as session:
            if current_snapshot(session).id != base:
                break
        time.sleep(0.5)
    with sessions() as session:
        head = current_snapshot(session)
        assert head.id != base, f"no fanned-out snapshot was published; jobs {_jobs(queue_url)}"
        assert head.diagnostics["fanout"]["base_snapshot"] == base
        assert head.diagnostics["fanout"]["categories"] == len(truth.categories)
        assert session.scalar(select(func.count()).select_from(CategoryFit)) == 0
        fanouts = [r for r in session.scalars(select(ModelSnapshot)) if "fanout" in r.diagnostics]
    assert len(fanouts) == 1
