"""``GET /v1/audits/price-dispersion``: the spread of served prices and the daily gap check."""

from __future__ import annotations

from datetime import timedelta

from api.orm import Decision, SkuDailyPrices, utcnow
from api.security import Role
from tests.factories import log_decisions

URL = "/v1/audits/price-dispersion"


def _set_jurisdiction(sessions, jurisdiction):
    with sessions() as session, session.begin():
        session.query(Decision).filter(Decision.jurisdiction.is_(None)).update(
            {"jurisdiction": jurisdiction}
        )


def test_the_report_gives_the_spread_by_segment_and_jurisdiction(catalog, sessions):
    log_decisions(sessions, [("default", "TEA-1", 1000, 1000, True)] * 6
                  + [("loyalty", "TEA-1", 900, 1000, False)] * 3)  # fmt: skip
    _set_jurisdiction(sessions, "US-NY")
    log_decisions(sessions, [("loyalty", "TEA-1", 800, 1000, True)])
    report = catalog.get(URL, Role.ANALYST)
    assert report.status_code == 200, report.text
    body = report.json()
    assert body["guardrail_version"] is None and body["next_after"] is None
    [tea] = body["skus"]
    assert (tea["sku"], tea["decisions"], tea["min"], tea["max"]) == ("TEA-1", 10, "8.00", "10.00")
    assert (tea["p05"], tea["median"], tea["p95"]) == ("8.00", "10.00", "10.00")
    assert tea["ratio"] == 1.25
    segments = {g["key"]: g for g in tea["by_segment"]}
    assert segments["default"]["decisions"] == 6 and segments["default"]["median"] == "10.00"
    assert (segments["loyalty"]["min"], segments["loyalty"]["max"]) == ("8.00", "9.00")
    places = {g["key"]: g["decisions"] for g in tea["by_jurisdiction"]}
    assert places == {"US-NY": 9, None: 1}
    assert tea["segment_gap"] is None and tea["gap_held_every_day"] is None


def test_the_daily_check_uses_the_segment_gap_rule(catalog, sessions):
    rules = [{"scope": "global", "segment_gap": 1.1}]
    assert catalog.put("/v1/guardrails", Role.MERCHANDISER, json={"rules": rules}).status_code == 200
    catalog.quote("TEA-1")
    today, now = utcnow().date(), utcnow()
    with sessions() as session, session.begin():
        session.merge(SkuDailyPrices(sku="TEA-1", day=today - timedelta(days=2), first_at=now,
                                     last_at=now, last_price_minor=1000, low_minor=800,
                                     high_minor=1000, low_final_minor=800, decisions=2,
                                     updated_at=now))  # fmt: skip
    start = (now - timedelta(days=3)).isoformat()
    body = catalog.get(URL, Role.ANALYST, params={"from": start}).json()
    [tea] = body["skus"]
    assert tea["segment_gap"] == 1.1 and body["guardrail_version"] is not None
    by_day = {d["day"]: d for d in tea["days"]}
    assert by_day[str(today - timedelta(days=2))]["held"] is False  # 10.00 / 8.00 > 1.1
    assert by_day[str(today)]["held"] is True
    assert tea["gap_held_every_day"] is False


def test_bad_windows_are_422_naming_the_field_and_paging_works(catalog, sessions):
    now = utcnow()
    for params, field in (
        ({"from": now.isoformat(), "to": (now - timedelta(days=1)).isoformat()}, "from"),
        ({"from": (now - timedelta(days=400)).isoformat()}, "from"),
        ({"from": "2026-11-01T00:00:00"}, "from"),
        ({"to": "0001-01-01T00:00:00Z"}, "to"),
    ):
        response = catalog.get(URL, Role.ANALYST, params=params)
        assert response.status_code == 422, (params, response.text)
        assert response.json()["detail"][0]["field"] == field
    assert catalog.get(URL, Role.CHECKOUT).status_code == 403
    log_decisions(sessions, [("default", "TEA-1", 1000, 1000, True), ("default", "TEA-2", 499, 499, True)])
    first = catalog.get(URL, Role.ANALYST, params={"limit": 1}).json()
    assert [s["sku"] for s in first["skus"]] == ["TEA-1"] and first["next_after"] == "TEA-1"
    second = catalog.get(URL, Role.ANALYST, params={"limit": 1, "after": "TEA-1"}).json()
    assert [s["sku"] for s in second["skus"]] == ["TEA-2"] and second["next_after"] is None
