"""The console without a browser: sign-in, cookies, CSRF, roles, validation next to fields."""

from __future__ import annotations

import re

from api.security import Role

PAGES = ["/console", "/console/catalog", "/console/guardrails", "/console/promotions",
         "/console/experiments", "/console/models", "/console/decisions", "/console/dispersion",
         "/console/audit"]
READ = {"/console", "/console/catalog", "/console/promotions", "/console/experiments"}
ANALYST = {"/console/models", "/console/decisions", "/console/dispersion"}


def _sign_in(api, role: Role):
    api.client.cookies.clear()
    response = api.client.post("/console/login", data={"api_key": api.keys[role]},
                               follow_redirects=False)  # fmt: skip
    assert response.status_code == 303
    return response


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert match, "the page has no CSRF token"
    return match.group(1)


def test_pages_need_a_sign_in(api):
    for path in PAGES:
        response = api.client.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"].startswith("/console/login")


def test_the_session_cookie_is_http_only_and_strict(api):
    cookie = _sign_in(api, Role.MERCHANDISER).headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie


def test_a_wrong_key_is_refused_next_to_the_field(api):
    response = api.client.post("/console/login", data={"api_key": "pe_00000000_wrong"})
    assert response.status_code == 401
    assert 'aria-invalid="true"' in response.text and "not valid" in response.text


def test_each_role_sees_its_pages(catalog):
    allowed = {
        Role.MERCHANDISER: READ | {"/console/guardrails"},
        Role.ANALYST: READ | ANALYST,
        Role.CHECKOUT: {"/console"},
        Role.ADMIN: set(PAGES),
    }  # fmt: skip
    for role, pages in allowed.items():
        _sign_in(catalog, role)
        for path in PAGES:
            status = catalog.client.get(path).status_code
            assert status == (200 if path in pages else 403), (role, path, status)


def test_a_form_without_its_csrf_token_changes_nothing(catalog):
    _sign_in(catalog, Role.MERCHANDISER)
    before = catalog.get("/v1/guardrails", Role.MERCHANDISER).json()
    form = {"csrf": "0" * 32, "rules-count": "1", "rules-0-scope": "global",
            "rules-0-max_discount": "0.1", "action": "preview"}  # fmt: skip
    assert catalog.client.post("/console/guardrails", data=form).status_code == 403
    assert catalog.client.post("/console/kill-switch", data={**form, "confirm": "1"}).status_code == 403
    assert catalog.get("/v1/guardrails", Role.MERCHANDISER).json() == before


def test_preview_then_activate_and_the_api_serves_it(catalog):
    _sign_in(catalog, Role.MERCHANDISER)
    token = _csrf(catalog.client.get("/console/guardrails").text)
    form = {"csrf": token, "rules-count": "2", "rules-0-scope": "global", "rules-0-max_discount": "0",
            "rules-0-max_increase": "0", "note": "list prices only", "action": "preview"}  # fmt: skip
    preview = catalog.client.post("/console/guardrails", data=form)
    assert preview.status_code == 200 and "Activate this proposal" in preview.text
    digest = re.search(r'name="digest" value="([0-9a-f]+)"', preview.text).group(1)
    # A proposal changed after its preview is not activated.
    changed = {**form, "rules-0-max_increase": "0.1", "action": "activate", "digest": digest}
    assert catalog.client.post("/console/guardrails", data=changed).status_code == 409
    done = catalog.client.post("/console/guardrails", data={**form, "action": "activate", "digest": digest},
                               follow_redirects=False)  # fmt: skip
    assert done.status_code == 303 and "activated=" in done.headers["location"]
    stored = catalog.get("/v1/guardrails", Role.MERCHANDISER).json()
    assert stored["rules"] == [{"scope": "global", "max_discount": 0.0, "max_increase": 0.0}]
    assert stored["note"] == "list prices only"
    lines = catalog.quote("TEA-1", "TEA-2", customer="after-console")["lines"]
    assert all(line["price"] == line["list_price"] for line in lines)


def test_a_wrong_value_is_shown_next_to_its_field(catalog):
    _sign_in(catalog, Role.MERCHANDISER)
    token = _csrf(catalog.client.get("/console/guardrails").text)
    for value, words in (("1.5", "less than 1"), ("abc", "not a number")):
        form = {"csrf": token, "rules-count": "1", "rules-0-scope": "global",
                "rules-0-max_discount": value, "action": "preview"}  # fmt: skip
        response = catalog.client.post("/console/guardrails", data=form)
        assert response.status_code == 422
        error = re.search(r'id="rules-0-max_discount-error">([^<]*)<', response.text)
        assert error and words in error.group(1), response.text[-2000:]
        assert 'id="rules-0-max_discount" name="rules-0-max_discount" value="' + value in response.text


def test_the_kill_switch_needs_a_confirmation(catalog):
    _sign_in(catalog, Role.MERCHANDISER)
    token = _csrf(catalog.client.get("/console/guardrails").text)
    assert catalog.client.post("/console/kill-switch", data={"csrf": token, "state": "on"}).status_code == 422
    on = catalog.client.post("/console/kill-switch", data={"csrf": token, "state": "on", "confirm": "1"},
                             follow_redirects=False)  # fmt: skip
    assert on.status_code == 303
    assert catalog.get("/v1/guardrails", Role.MERCHANDISER).json()["kill_switch"] is True


def test_catalog_search(catalog):
    _sign_in(catalog, Role.ANALYST)
    page = catalog.client.get("/console/catalog", params={"q": "tea-2"}).text
    assert "TEA-2" in page and "TEA-1</td>" not in page
    assert "0 products" in catalog.client.get("/console/catalog", params={"q": "100%_"}).text


def test_the_static_files_are_served_without_a_cdn(api):
    assert "prefers-color-scheme: dark" in api.client.get("/console/static/console.css").text
    assert "sortable" in api.client.get("/console/static/console.js").text
    _sign_in(api, Role.ADMIN)
    html = api.client.get("/console").text
    assert "http://" not in html and "https://" not in html


def test_analyst_pages_show_models_decisions_and_their_explanations(catalog, sessions):
    from tests.factories import publish, synthetic_posterior

    version = publish(sessions, synthetic_posterior())
    catalog.client.app.state.pricing.posterior.refresh()
    line = catalog.quote("TEA-1", customer="explained")["lines"][0]
    _sign_in(catalog, Role.ANALYST)
    models = catalog.client.get("/console/models").text
    assert f'href="/console/models/{version}"' in models and "(serving)" in models
    model = catalog.client.get(f"/console/models/{version}").text
    assert "<svg" in model and "90 % intervals" in model
    recent = catalog.client.get("/console/decisions").text
    assert line["decision_id"] in recent
    why = catalog.client.get(f"/console/decisions/{line['decision_id']}")
    assert why.status_code == 200 and "Propensity" in why.text and "TEA-1" in why.text
    assert catalog.client.get("/console/decisions/not-a-uuid").status_code == 404
    assert catalog.client.get("/console/models/999999").status_code == 404
    assert "TEA-1" in catalog.client.get("/console/dispersion").text


def test_a_promotion_budget_is_edited_with_errors_next_to_the_field(catalog):
    body = {"name": "10% off tea", "type": "percent_off", "percent_off": "10", "currency": "USD",
            "eligibility": {"categories": ["tea"]}, "budget": "100.00"}  # fmt: skip
    assert catalog.put("/v1/promotions/TEA10", Role.MERCHANDISER, json=body).status_code in (200, 201)
    _sign_in(catalog, Role.MERCHANDISER)
    page = catalog.client.get("/console/promotions").text
    token = _csrf(page)
    assert "TEA10" in page and "100.00" in page
    bad = catalog.client.post("/console/promotions/TEA10", data={"csrf": token, "budget": "12.345",
                                                                 "active": "1"})  # fmt: skip
    assert bad.status_code == 422 and 'id="TEA10-budget-error"' in bad.text
    good = catalog.client.post("/console/promotions/TEA10", data={"csrf": token, "budget": "250.00",
                                                                  "redemption_cap": "40", "active": "1"},
                               follow_redirects=False)  # fmt: skip
    assert good.status_code == 303
    stored = catalog.get("/v1/promotions/TEA10", Role.MERCHANDISER).json()
    assert stored["budget"] == "250.00" and stored["redemption_cap"] == 40 and stored["version"] == 2
    _sign_in(catalog, Role.ANALYST)  # analysts read promotions but may not change them
    assert catalog.client.post("/console/promotions/TEA10", data={"csrf": token}).status_code == 403


def test_a_refit_is_queued_and_followed_on_postgresql(catalog, sessions, backend, db_url):
    from api.cli import main as cli
    from api.console.routes import _csrf as csrf_of
    from api.orm import CategoryFit, utcnow
    from api.services.fanout import PLAN_MARKER
    from tests.factories import publish, synthetic_posterior

    _sign_in(catalog, Role.ANALYST)
    token = csrf_of(catalog.keys[Role.ANALYST])
    if backend == "sqlite":
        assert "Refit now" not in catalog.client.get("/console/models").text  # no queue here
        done = catalog.client.post("/console/models/refit", data={"csrf": token})
        assert done.status_code == 200 and "no job queue" in done.text
        return
    assert cli(["migrate", "--database-url", db_url]) == 0  # the queue's tables
    queued = catalog.client.post("/console/models/refit", data={"csrf": token, "fanout": "1"},
                                 follow_redirects=False)  # fmt: skip
    assert queued.status_code == 303 and queued.headers["location"].endswith("refit=queued")
    page = catalog.client.get("/console/models?refit=queued").text
    assert "pricing.refit: waiting" in page and 'http-equiv="refresh"' in page
    # A fanned-out run in flight shows how many categories are done.
    base = publish(sessions, synthetic_posterior())
    with sessions() as session, session.begin():
        for category, expected in ((PLAN_MARKER, 3), ("tea", 3)):
            session.add(CategoryFit(run_id="run-1", category=category, expected=expected,
                                    base_snapshot_id=base, data_watermark=utcnow(), meta={},
                                    draws=b""))  # fmt: skip
    page = catalog.client.get("/console/models").text
    assert '<progress id="fanout-progress" max="3" value="1">' in page
