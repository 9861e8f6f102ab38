import time
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import update

from api.app import create_app
from api.orm import ModelSnapshot, utcnow
from api.security import Role
from api.settings import load_settings
from api.updater import Updater
from tests.factories import log_decisions, publish, synthetic_posterior


def test_refit_is_due_for_first_data_low_ess_or_old_snapshots(catalog, sessions):
    updater = Updater(sessions, min_outcomes=10, ess_fraction=0.5, refit_every=timedelta(hours=1))
    assert updater.refit_reason() is None  # nothing to learn from
    log_decisions(sessions, [("default", "TEA-1", 1000, 1000, True)] * 10)
    assert "no published snapshot" in updater.refit_reason()
    snapshot = publish(sessions, synthetic_posterior(n_draws=200))
    assert updater.refit_reason() is None
    with sessions() as session, session.begin():
        session.execute(update(ModelSnapshot).where(ModelSnapshot.id == snapshot).values(ess=50.0))
    assert "ESS 50 below 50% of 200 draws" in updater.refit_reason()
    with sessions() as session, session.begin():
        session.execute(update(ModelSnapshot).where(ModelSnapshot.id == snapshot)
                        .values(ess=200.0, created_at=utcnow() - timedelta(hours=2)))  # fmt: skip
    assert "older than" in updater.refit_reason()


def test_the_first_fit_is_cheap_flagged_and_refitted_in_full_when_the_outcomes_double(
    catalog, sessions, monkeypatch
):
    import api.jobs

    calls = []

    def fake_refit(_sessions, **kwargs):
        calls.append(kwargs)
        return "result"

    monkeypatch.setattr(api.jobs, "refit", fake_refit)
    updater = Updater(sessions, min_outcomes=10, first_fit_draws=150,
                      sampler_config={"draws": 1000, "tune": 1000, "chains": 2})  # fmt: skip
    log_decisions(sessions, [("default", "TEA-1", 1000, 1000, True)] * 10)
    assert api.jobs.refit_if_due(updater) == "result"
    first = calls[-1]
    assert first["first_fit"] is True
    assert first["sampler_config"] == {"draws": 150, "tune": 150, "chains": 2}
    # A published first fit on 10 outcomes: not due again until there are 20.
    snapshot = publish(sessions, synthetic_posterior(n_draws=200))
    with sessions() as session, session.begin():
        session.execute(update(ModelSnapshot).where(ModelSnapshot.id == snapshot).values(
            n_trials=10, diagnostics={"passed": True, "first_fit": True}))  # fmt: skip
    log_decisions(sessions, [("default", "TEA-1", 1000, 1000, False)] * 9)
    assert updater.refit_reason() is None
    log_decisions(sessions, [("default", "TEA-1", 1000, 1000, False)])
    assert "first fit" in updater.refit_reason()
    api.jobs.refit_if_due(updater)
    assert calls[-1]["first_fit"] is False
    assert calls[-1]["sampler_config"] == {"draws": 1000, "tune": 1000, "chains": 2}



def test_after_a_rejected_first_fit_the_next_attempt_uses_the_full_settings(catalog, sessions, monkeypatch):
    import api.jobs

    calls = []
    monkeypatch.setattr(api.jobs, "refit", lambda _s, **kwargs: calls.append(kwargs))
    updater = Updater(sessions, min_outcomes=10, first_fit_draws=150,
                      sampler_config={"draws": 1000, "tune": 1000})  # fmt: skip
    log_decisions(sessions, [("default", "TEA-1", 1000, 1000, True)] * 10)
    rejected = publish(sessions, synthetic_posterior(n_draws=200), status="rejected")
    with sessions() as session, session.begin():  # past the retry delay
        session.execute(update(ModelSnapshot).where(ModelSnapshot.id == rejected)
                        .values(created_at=utcnow() - timedelta(hours=1)))  # fmt: skip
    api.jobs.refit_if_due(updater)
    assert calls[-1]["first_fit"] is False
    assert calls[-1]["sampler_config"] == {"draws": 1000, "tune": 1000}


def test_outcomes_reach_the_served_posterior_within_seconds(catalog, db_url, sessions):
    snapshot = publish(
        sessions, synthetic_posterior(spread=0.8), watermark=utcnow() - timedelta(minutes=1)
    )
    settings = load_settings(database_url=db_url, run_updater=True, updater_interval_seconds=0.2,
                             snapshot_poll_seconds=0.2)  # fmt: skip
    with TestClient(create_app(settings)) as client:
        state = client.app.state.pricing
        deadline = time.monotonic() + 5
        while state.posterior.served is None and time.monotonic() < deadline:
            time.sleep(0.05)
        before = state.posterior.served
        assert before.snapshot_id == snapshot
        headers = catalog.headers(Role.CHECKOUT)
        quote = client.post(
            "/v1/quotes",
            headers=headers,
            json={"customer_id": "c", "lines": [{"sku": "TEA-1"}] * 20},
        )
        outcomes = [{"decision_id": line["decision_id"], "converted": True, "quantity": 1, "revenue": "10.00"}
                    for line in quote.json()["lines"]]  # fmt: skip
        sent = time.monotonic()
        assert (
            client.post(
                "/v1/outcomes/batch", headers=headers, json={"outcomes": outcomes}
            ).status_code
            == 200
        )
        while (
            state.posterior.served.weights_seq == before.weights_seq
            and time.monotonic() - sent < 10
        ):
            time.sleep(0.05)
        after = state.posterior.served
    # Behaviour, not speed: the new weights are served (freshness is measured in benchmarks/).
    assert after.weights_seq > before.weights_seq, "outcomes never reached the served posterior"
    assert after.posterior.ess < before.posterior.ess


def test_the_api_process_never_imports_pymc(db_url, catalog, sessions):
    """``run_updater`` starts the updater as a child process; the API process serves
    quotes and outcomes, and learns, without PyMC (a refit there would stall quotes)."""
    import subprocess
    import sys

    publish(sessions, synthetic_posterior(), watermark=utcnow() - timedelta(minutes=1))
    script = f"""
import sys, time
from fastapi.testclient import TestClient
from api.app import create_app
from api.settings import load_settings
settings = load_settings(database_url={db_url!r}, run_updater=True, updater_interval_seconds=0.2,
                         snapshot_poll_seconds=0.2)
with TestClient(create_app(settings)) as client:
    headers = {{"Authorization": "Bearer {catalog.keys[Role.CHECKOUT]}"}}
    quote = client.post("/v1/quotes", headers=headers,
                        json={{"customer_id": "c", "lines": [{{"sku": "TEA-1"}}]}}).json()
    line = quote["lines"][0]
    client.post("/v1/outcomes", headers=headers, json={{"decision_id": line["decision_id"],
                "converted": True, "quantity": 1, "revenue": line["final_price"]}})
    state = client.app.state.pricing
    deadline = time.monotonic() + 20
    while state.posterior.served.weights_seq == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert state.posterior.served.weights_seq > 0, "the updater process did not learn"
assert "pymc" not in sys.modules and "pytensor" not in sys.modules, "PyMC was imported"
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]
