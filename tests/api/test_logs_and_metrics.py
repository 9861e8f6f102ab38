import pytest

from api.security import Role


def test_decision_log_pages_in_time_order_with_outcomes(catalog):
    quotes = [catalog.quote("TEA-1", "TEA-2", customer=f"c{i}") for i in range(3)]
    decision_ids = [line["decision_id"] for q in quotes for line in q["lines"]]
    catalog.post(
        "/v1/outcomes", Role.CHECKOUT, json={"decision_id": decision_ids[0], "converted": False}
    )
    seen, cursor = [], None
    while True:
        url = "/v1/decisions?limit=4" + (f"&after={cursor}" if cursor else "")
        page = catalog.get(url, Role.ANALYST).json()
        seen.extend(page["items"])
        cursor = page["next_after"]
        if cursor is None:
            break
    assert sorted(d["id"] for d in seen) == sorted(decision_ids)
    assert len(seen) == 6
    by_id = {d["id"]: d for d in seen}
    assert by_id[decision_ids[0]]["outcome"]["converted"] is False
    assert by_id[decision_ids[1]]["outcome"] is None
    assert (
        by_id[decision_ids[1]]["price"] == "4.99" and by_id[decision_ids[1]]["unit_cost"] == "2.50"
    )
    only_tea2 = catalog.get("/v1/decisions?sku=TEA-2", Role.ANALYST).json()["items"]
    assert {d["sku"] for d in only_tea2} == {"TEA-2"} and len(only_tea2) == 3


def test_one_decision_and_404(catalog):
    decision = catalog.quote("TEA-1")["lines"][0]["decision_id"]
    assert catalog.get(f"/v1/decisions/{decision}", Role.ANALYST).json()["propensity"] == 1.0
    missing = catalog.get("/v1/decisions/00000000-0000-0000-0000-000000000000", Role.ANALYST)
    assert missing.status_code == 404


def test_naive_since_is_422(catalog):
    response = catalog.get("/v1/decisions?since=2026-01-01T00:00:00", Role.ANALYST)
    assert response.status_code == 422 and response.json()["detail"][0]["field"] == "since"
    assert catalog.get("/v1/decisions?since=2026-01-01T00:00:00Z", Role.ANALYST).status_code == 200


def test_metrics_count_requests_decisions_and_outcomes(catalog):
    decision = catalog.quote("TEA-1", "TEA-2")["lines"][0]["decision_id"]
    body = {"decision_id": decision, "converted": False}
    catalog.post("/v1/outcomes", Role.CHECKOUT, json=body)
    catalog.post("/v1/outcomes", Role.CHECKOUT, json=body)
    text = catalog.client.get("/metrics").text
    assert 'pricing_decisions_total{personalized="False",policy="thompson/1"} 2.0' in text
    assert 'pricing_outcomes_total{status="created"} 1.0' in text
    assert 'pricing_outcomes_total{status="duplicate"} 1.0' in text
    assert 'pricing_http_requests_total{method="POST",route="/v1/quotes",status="201"} 1.0' in text
    assert (
        'pricing_http_request_duration_seconds_count{method="POST",route="/v1/quotes"} 1.0' in text
    )


def _sample(text: str, name: str) -> float:
    return float(next(line for line in text.splitlines() if line.startswith(name + " ")).split()[1])


def test_metrics_report_the_group_writers_transactions_jobs_and_busy_time(catalog):
    writer = catalog.client.app.state.pricing.writer
    text = catalog.client.get("/metrics").text
    before = {n: _sample(text, f"pricing_writer_{n}_total") for n in ("transactions", "jobs")}
    assert before == {"transactions": writer.batches, "jobs": writer.jobs_written}
    decision = catalog.quote("TEA-1", "TEA-2")["lines"][0]["decision_id"]
    catalog.post("/v1/outcomes", Role.CHECKOUT, json={"decision_id": decision, "converted": False})
    text = catalog.client.get("/metrics").text
    # One quote and one outcome, each committed alone (nothing else was waiting).
    assert _sample(text, "pricing_writer_transactions_total") == before["transactions"] + 2
    assert _sample(text, "pricing_writer_jobs_total") == before["jobs"] + 2
    assert _sample(text, "pricing_writer_busy_seconds_total") > 0
    # Each committed job's wait and each transaction's time, as Prometheus histograms.
    for name, per in (("commit_wait", "jobs"), ("transaction", "transactions")):
        count = _sample(text, f"pricing_writer_{name}_seconds_count")
        assert count == _sample(text, f"pricing_writer_{per}_total")
        assert _sample(text, f'pricing_writer_{name}_seconds_bucket{{le="+Inf"}}') == count
        assert 0 < _sample(text, f"pricing_writer_{name}_seconds_sum") < 60


def test_writer_latency_counts_bucket_like_prometheus():
    from api.writer import LatencyCounts

    counts = LatencyCounts((0.001, 0.01))
    for seconds in (0.0005, 0.001, 0.002, 0.5):  # a bound holds what equals it (le)
        counts.observe(seconds)
    assert counts.cumulative() == [(0.001, 2), (0.01, 3), (float("inf"), 4)]
    assert counts.total == pytest.approx(0.5035)


def test_docs_and_the_openapi_document_have_their_own_route_labels(catalog):
    assert catalog.client.get("/docs").status_code == 200
    assert catalog.client.get("/openapi.json").status_code == 200
    catalog.client.get("/no/such/path")
    text = catalog.client.get("/metrics").text
    assert 'pricing_http_requests_total{method="GET",route="/docs",status="200"} 1.0' in text
    assert (
        'pricing_http_requests_total{method="GET",route="/openapi.json",status="200"} 1.0' in text
    )
    assert 'route="/no/such/path"' not in text and 'route="unmatched",status="404"' in text


def test_audit_log_is_readable_by_admin(catalog):
    entries = catalog.get("/v1/audit?entity=product", Role.ADMIN).json()
    assert [e["entity_id"] for e in entries] == ["TEA-2", "TEA-1"]
    assert all(e["actor"] == "test-merchandiser" for e in entries)


def test_garbage_collector_pauses_are_timed_per_generation_while_watched():
    import gc

    from prometheus_client import generate_latest

    from api.metrics import Metrics

    metrics = Metrics()
    gc.disable()  # only the collections below, none triggered by allocations in between
    metrics.watch_gc()
    metrics.watch_gc()  # idempotent: one callback
    try:
        assert sum(cb == metrics._gc_callback for cb in gc.callbacks) == 1
        gc.collect()
        gc.collect(0)
    finally:
        metrics.unwatch_gc()
        gc.enable()
    metrics.unwatch_gc()
    assert metrics._gc_callback not in gc.callbacks
    text = generate_latest(metrics.registry).decode()
    assert 'pricing_gc_pause_seconds_count{generation="2"} 1.0' in text
    assert 'pricing_gc_pause_seconds_count{generation="0"} 1.0' in text
    gc.collect()  # no longer watched
    assert (
        'pricing_gc_pause_seconds_count{generation="2"} 1.0'
        in generate_latest(metrics.registry).decode()
    )


def test_a_serving_app_watches_the_collector_and_restores_its_settings_when_it_stops(db_url):
    import gc

    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.settings import load_settings

    before = gc.get_threshold()
    app = create_app(load_settings(database_url=db_url, gc_young_threshold=4321))
    with TestClient(app):
        assert gc.get_threshold() == (4321, *before[1:])
        assert any(
            getattr(cb, "__self__", None) is app.state.pricing.metrics for cb in gc.callbacks
        )
    assert gc.get_threshold() == before
    assert not any(getattr(cb, "__func__", None) is type(app.state.pricing.metrics)._gc_callback
                   for cb in gc.callbacks)  # fmt: skip
