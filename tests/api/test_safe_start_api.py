"""Safe start through the service (``PRICING_MAX_LOSS_VS_LIST``): list prices before the
first model count in the budget, guarded draws are logged with their exact propensities,
and the budget is re-valued off the request path when a new posterior is served."""

from __future__ import annotations

import time
import uuid

from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from api.orm import Decision
from api.settings import load_settings
from pricing.safe_start import tail_mean
from tests.conftest import Api
from tests.factories import publish, synthetic_posterior


def test_safe_start_in_the_service(db_url, api_keys, sessions):
    app = create_app(load_settings(database_url=db_url, max_loss_vs_list=0.0))
    with TestClient(app) as client:
        api = Api(client, api_keys)
        api.segment("default")
        api.product("TEA-1", "10.00", "4.00")
        state = client.app.state.pricing
        safety = state.safety
        assert safety is not None and safety.background

        # No model yet: list prices, remembered for the budget (valued once a model exists).
        before = [api.quote("TEA-1", customer=f"c-{i}")["lines"][0] for i in range(5)]
        assert all(line["reasons"] == ["no_demand_model"] for line in before)
        assert safety.budget("TEA-1") == 0.0

        publish(sessions, synthetic_posterior(spread=1.5))
        state.posterior.refresh()
        lines = [api.quote("TEA-1", customer=f"d-{i}")["lines"][0] for i in range(60)]
        # With α = 0 and a wide posterior, most draws away from list cannot be afforded.
        guarded = [line for line in lines if line["reasons"] == ["safe_start"]]
        assert guarded and all(line["price"] == "10.00" for line in guarded)
        assert all(0.0 < line["propensity"] <= 1.0 for line in lines)
        with sessions() as session:
            logged = {d.id: d.propensity for d in session.scalars(select(Decision))}
        assert all(logged[uuid.UUID(line["decision_id"])] == line["propensity"] for line in lines)

        deadline = time.monotonic() + 10
        while safety.revalued < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert safety.revalued >= 1  # on the budget's own thread, not in a request
        # The promise, per draw of the posterior being served: the worst 10 % of the
        # summed surplus (α = 0: over list's profit) is not negative.
        posterior = state.posterior.served.posterior
        weights = posterior.decision_weights("default", "TEA-1")
        assert tail_mean(safety._draws["TEA-1"][:, None], weights, 0.1)[0] >= -1e-6
    assert safety._pool is None  # the thread stops with the app
