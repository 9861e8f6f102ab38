import threading
import time
import uuid
from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import func, select

from api.orm import AppliedDecision, ModelSnapshot, utcnow
from api.posterior_cache import PosteriorCache
from api.security import Role
from api.services.demand_models import apply_new_outcomes, load_cells, load_posterior
from tests.factories import log_decisions, publish, synthetic_posterior


def test_cells_aggregate_decisions_by_segment_sku_price_and_promotion(catalog, sessions):
    log_decisions(sessions, [("default", "TEA-1", 1000, 1000, True), ("default", "TEA-1", 1000, 1000, False),
                             ("default", "TEA-1", 900, 1000, True), ("loyalty", "TEA-2", 499, 499, False)])  # fmt: skip
    with sessions() as session:
        cells = load_cells(session, until=utcnow())
    got = sorted(zip(cells.segment, cells.sku, np.round(np.exp(cells.log_price_ratio), 3), cells.trials,
                     cells.conversions, strict=True))  # fmt: skip
    assert got == [
        ("default", "TEA-1", 0.9, 1, 1),
        ("default", "TEA-1", 1.0, 2, 1),
        ("loyalty", "TEA-2", 1.0, 1, 0),
    ]
    assert set(cells.category) == {"tea"}
    with sessions() as session:
        assert len(load_cells(session, until=utcnow() - timedelta(hours=1))) == 0


def test_online_update_applies_each_outcome_exactly_once(catalog, sessions):
    post = synthetic_posterior(spread=0.8)
    snapshot = publish(sessions, post, watermark=utcnow() - timedelta(minutes=5))
    log_decisions(
        sessions,
        [("default", "TEA-1", 1000, 1000, True)] * 30
        + [("default", "TEA-1", 1000, 1000, False)] * 10,
    )
    first = apply_new_outcomes(sessions)
    assert first.applied == 40 and first.snapshot_id == snapshot
    assert first.ess < post.ess
    again = apply_new_outcomes(sessions)
    assert again.applied == 0 and again.ess == pytest.approx(first.ess)
    log_decisions(sessions, [("loyalty", "TEA-2", 499, 499, False)] * 5)
    assert apply_new_outcomes(sessions).applied == 5
    with sessions() as session:
        row = session.get(ModelSnapshot, snapshot)
        assert row.applied_outcomes == 45 and row.weights_seq == 2
        assert session.scalar(select(func.count()).select_from(AppliedDecision)) == 45


def test_online_update_equals_the_batch_likelihood(catalog, sessions):
    post = synthetic_posterior(spread=0.8)
    publish(sessions, post, watermark=utcnow() - timedelta(minutes=5))
    rows = [("default", "TEA-1", 900, 1000, True)] * 7 + [
        ("default", "TEA-1", 900, 1000, False)
    ] * 13
    log_decisions(sessions, rows)
    apply_new_outcomes(sessions, batch_size=6)  # several passes of 6
    while apply_new_outcomes(sessions, batch_size=6).applied:
        pass
    with sessions() as session:
        updated = load_posterior(
            session.get(ModelSnapshot, session.scalar(select(func.max(ModelSnapshot.id))))
        )
    p = post.conversion_probability("default", "TEA-1", 0.9)[:, 0]
    expected = post.reweight(7 * np.log(p) + 13 * np.log1p(-p))
    # Draws are stored as float32: agreement to float32 precision. The outcomes belong to
    # the (default, tea) block: its decisions carry them, the shared weights do not.
    np.testing.assert_allclose(updated.decision_weights("default", "TEA-1"), expected.weights, rtol=1e-5)
    np.testing.assert_allclose(updated.weights, post.weights)


def test_a_blocks_outcomes_move_its_own_weights_only(catalog, sessions):
    """Per (segment, category) block: the loyalty block keeps all its ESS while the default
    block learns; without blocks one weight per draw moves for everyone."""
    post = synthetic_posterior(spread=0.8)
    publish(sessions, post, watermark=utcnow() - timedelta(minutes=5))
    log_decisions(sessions, [("default", "TEA-1", 1000, 1000, True)] * 40
                  + [("default", "TEA-2", 499, 499, False)] * 40)  # fmt: skip
    result = apply_new_outcomes(sessions)
    with sessions() as session:
        row = session.get(ModelSnapshot, result.snapshot_id)
        assert row.block_log_weights is not None
        updated = load_posterior(row)
    ess = dict(zip(updated.pairs, updated.block_ess(), strict=True))
    assert ess[("loyalty", "tea")] == pytest.approx(post.n_draws)
    assert ess[("default", "tea")] < 0.9 * post.n_draws
    assert result.ess == pytest.approx(ess[("default", "tea")])  # the refit trigger: the smallest
    np.testing.assert_allclose(updated.decision_weights("loyalty", "TEA-1"), post.weights)
    # The served posterior (what API workers load) carries the blocks too.
    from api.db import read_only
    from api.posterior_cache import PosteriorCache

    cache = PosteriorCache(read_only(sessions), poll_seconds=3600)
    cache.refresh()
    assert cache.served is not None
    np.testing.assert_allclose(cache.served.posterior.decision_weights("default", "TEA-1"),
                               updated.decision_weights("default", "TEA-1"))  # fmt: skip


def test_without_blocks_every_outcome_moves_the_shared_weights(catalog, sessions):
    post = synthetic_posterior(spread=0.8)
    publish(sessions, post, watermark=utcnow() - timedelta(minutes=5))
    log_decisions(sessions, [("default", "TEA-1", 1000, 1000, True)] * 40)
    result = apply_new_outcomes(sessions, blocks=False)
    with sessions() as session:
        row = session.get(ModelSnapshot, result.snapshot_id)
        assert row.block_log_weights is None
        updated = load_posterior(row)
    p = post.conversion_probability("default", "TEA-1", 1.0)[:, 0]
    np.testing.assert_allclose(updated.weights, post.reweight(40 * np.log(p)).weights, rtol=1e-5)
    np.testing.assert_allclose(updated.decision_weights("loyalty", "TEA-1"), updated.weights)


def test_concurrent_updaters_never_double_apply(catalog, sessions):
    publish(sessions, synthetic_posterior(spread=0.8), watermark=utcnow() - timedelta(minutes=5))
    log_decisions(sessions, [("default", "TEA-1", 1000, 1000, True)] * 50)
    applied = []
    barrier = threading.Barrier(4)

    def run():
        barrier.wait()
        applied.append(apply_new_outcomes(sessions, batch_size=20).applied)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    while (n := apply_new_outcomes(sessions).applied) > 0:
        applied.append(n)
    assert sum(applied) == 50


def test_outcomes_before_the_watermark_are_not_reapplied(catalog, sessions):
    log_decisions(
        sessions,
        [("default", "TEA-1", 1000, 1000, True)] * 5,
        recorded_at=utcnow() - timedelta(hours=1),
    )
    publish(sessions, synthetic_posterior(), watermark=utcnow() - timedelta(minutes=5))
    assert apply_new_outcomes(sessions).applied == 0


def test_cache_hot_swaps_new_weights_and_new_snapshots(catalog, sessions):
    cache = PosteriorCache(sessions)
    assert cache.refresh() is False and cache.served is None
    first = publish(
        sessions, synthetic_posterior(seed=1, spread=0.8), watermark=utcnow() - timedelta(minutes=5)
    )
    assert cache.refresh() is True and cache.served.snapshot_id == first
    before = cache.served.posterior
    assert cache.refresh() is False
    log_decisions(sessions, [("default", "TEA-1", 1000, 1000, True)] * 10)
    apply_new_outcomes(sessions)
    assert cache.refresh() is True
    assert cache.served.snapshot_id == first and cache.served.posterior.ess < before.ess
    second = publish(sessions, synthetic_posterior(seed=2))
    assert cache.refresh() is True and cache.served.snapshot_id == second
    publish(sessions, synthetic_posterior(seed=3), status="rejected")
    assert cache.refresh() is False and cache.served.snapshot_id == second


def test_requests_keep_succeeding_while_snapshots_swap(catalog, sessions):
    cache = PosteriorCache(sessions, poll_seconds=0.01)
    publish(sessions, synthetic_posterior(seed=1))
    cache.start()
    failures = []
    stop = threading.Event()

    def read():
        while not stop.is_set():
            try:
                served = cache.served
                served.posterior.conversion_probability("default", "TEA-1", 1.0)
            except Exception as exc:
                failures.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for seed in range(5):
            publish(sessions, synthetic_posterior(seed=10 + seed))
            latest, deadline = _latest(sessions), time.monotonic() + 5
            while cache.served.snapshot_id != latest and time.monotonic() < deadline:
                time.sleep(0.01)
            assert cache.served.snapshot_id == latest
    finally:
        stop.set()
        reader.join()
        cache.stop()
    assert failures == []
    assert cache.served.snapshot_id == _latest(sessions)


def _latest(sessions):
    with sessions() as session:
        return session.scalar(select(func.max(ModelSnapshot.id)))


def test_model_endpoints_list_versions_diagnostics_and_elasticities(catalog, sessions):
    rejected = publish(sessions, synthetic_posterior(), status="rejected")
    serving = publish(sessions, synthetic_posterior())
    models = catalog.get("/v1/models", Role.ANALYST).json()
    assert [(m["version"], m["status"], m["serving"]) for m in models] == [
        (serving, "published", True), (rejected, "rejected", False)]  # fmt: skip
    assert models[1]["message"] == "rejected"
    elasticities = catalog.get(f"/v1/models/{serving}/elasticities", Role.ANALYST).json()
    assert {(e["segment"], e["category"]) for e in elasticities} == {
        ("default", "tea"),
        ("loyalty", "tea"),
    }
    assert all(e["lower_90"] < e["mean"] < e["upper_90"] < 0 for e in elasticities)
    assert catalog.get(f"/v1/models/{rejected}/elasticities", Role.ANALYST).status_code == 409
    assert catalog.get("/v1/models/999999/elasticities", Role.ANALYST).status_code == 404
    netcdf = catalog.get(f"/v1/models/{serving}/netcdf", Role.ANALYST)
    assert netcdf.status_code == 200 and netcdf.content[:3] in (b"CDF", b"\x89HD")


def test_refits_use_the_newest_imported_prior(sessions):
    from api.orm import ModelPrior
    from api.services.demand_models import latest_priors
    from pricing.demand import DemandModel

    with sessions() as session:
        assert latest_priors(session) == {}
    for mu in (0.1, 0.7):
        with sessions() as session, session.begin():
            session.add(ModelPrior(source="test", summary={},
                                   model_config_json={"log_elasticity_mu": {"dist": "Normal", "mu": mu, "sigma": 0.2}}))  # fmt: skip
    with sessions() as session:
        priors = latest_priors(session)
    assert priors["log_elasticity_mu"]["mu"] == 0.7
    assert DemandModel(model_config=priors).model_config["log_elasticity_mu"].mu == 0.7


def test_closed_windows_are_learned_once_as_non_conversions_and_late_outcomes_never(
    catalog, sessions
):
    """A decision without an outcome is learned (as a non-conversion) once its window closes;
    an outcome arriving after that is stored but does not move the weights again."""
    post = synthetic_posterior(spread=0.8)
    snapshot = publish(sessions, post, watermark=utcnow() - timedelta(hours=2))
    lines = [catalog.quote("TEA-1", customer=f"w{i}")["lines"][0] for i in range(6)]
    from api.orm import Decision

    with sessions() as session, session.begin():
        for line in lines[:4]:  # closed 10 minutes ago (after the watermark, past the lag)
            session.get(Decision, uuid.UUID(line["decision_id"])).outcome_deadline = (
                utcnow() - timedelta(minutes=10)
            )
    first = apply_new_outcomes(sessions)
    assert first.applied == 4 and first.ess < post.ess
    assert apply_new_outcomes(sessions).applied == 0
    late = {"decision_id": lines[0]["decision_id"], "converted": True, "quantity": 1,
            "revenue": lines[0]["price"]}  # fmt: skip
    assert catalog.post("/v1/outcomes", Role.CHECKOUT, json=late).json()["late"] is True
    on_time = {**late, "decision_id": lines[4]["decision_id"]}
    assert catalog.post("/v1/outcomes", Role.CHECKOUT, json=on_time).json()["late"] is False
    second = apply_new_outcomes(sessions)
    assert second.applied == 1  # only the on-time outcome; the late one was learned as a miss
    ignored = apply_new_outcomes(sessions, missing_outcome="ignore")
    assert ignored.applied == 0
    with sessions() as session:
        assert session.get(ModelSnapshot, snapshot).applied_outcomes == 5
