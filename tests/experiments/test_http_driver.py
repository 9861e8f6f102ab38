"""The end-to-end driver runs simulated customers through the HTTP API while an updater learns."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from api.orm import Decision, ModelSnapshot, Outcome
from api.security import Role
from api.updater import Updater
from experiments.http_driver import drive, setup
from experiments.simulator import Market


@pytest.mark.slow
def test_http_driver_closes_the_loop_with_learning(api, sessions, monkeypatch):
    from datetime import timedelta

    import api.services.demand_models as models

    # In production a fit leaves the last 30 s to open transactions; here nothing else writes.
    monkeypatch.setattr(models, "DATA_LAG", timedelta(0))
    market = Market.random(2, 3, 1, 1, seed=3, n_context_features=1)  # visitors send "device"
    setup(api.client, market, api.keys[Role.ADMIN])
    updater = Updater(
        sessions, min_outcomes=150, sampler_config={"method": "advi", "advi_iterations": 5000}
    )
    steps = []

    def between(t: int) -> None:
        update, fit = updater.step()
        steps.append((t, update.applied, fit.published if fit is not None else None))
        api.client.app.state.pricing.posterior.refresh()

    result = drive(
        api.client,
        market,
        api.keys[Role.CHECKOUT],
        visitors=600,
        seed=1,
        between=between,
        every=200,
    )
    assert result.visitors == 600 and 0 < result.purchases < 600
    assert 0 < result.expected_profit <= result.oracle_expected
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Decision)) == 600
        assert session.scalar(select(func.count()).select_from(Outcome)) == 600
        keys = set(session.scalars(select(Decision.context_key).distinct()))
        published = session.scalar(
            select(func.count())
            .select_from(ModelSnapshot)
            .where(ModelSnapshot.status == "published")
        )
    assert published >= 1  # the updater refitted from the driven traffic
    assert any(applied for _, applied, _ in steps[1:])  # and then reweighted with new outcomes
    assert len(result.curve) == 3
    # Each decision was logged under the visitor's declared context.
    assert keys == {
        json.dumps({"device": level}, separators=(",", ":"))
        for level in market.context_features[0].levels
    }
