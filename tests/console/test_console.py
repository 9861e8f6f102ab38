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
    assert "<svg" in model and "90 % intervals" in model and "Demand changed" not in model
    # A fit after a detected change says so, and what moved in which category.
    from api.orm import ModelSnapshot

    with sessions() as session, session.begin():
        row = session.get(ModelSnapshot, version)
        row.diagnostics = {**row.diagnostics, "change_since": "2026-11-30", "change_weight_before": 0.25,
                           "change_test": {"detected": True, "p_value": 2.5e-05},
                           "regime_shift": {"intercept": -0.3, "log_elasticity": 0.4, "by_category": {
                               "tea": {"intercept": -0.31, "log_elasticity": 0.47,
                                       "log_elasticity_90": [0.3, 0.64]}}}}  # fmt: skip
    model = catalog.client.get(f"/console/models/{version}").text
    assert "Demand changed" in model and "2026-11-30" in model and "p = 2.5e-05" in model
    assert "<td>tea</td>" in model and "1.60" in model and "1.35 to 1.90" in model
    assert "in every category from 2026-11-30" in model
    # A change that showed in one category only says where.
    with sessions() as session, session.begin():
        row = session.get(ModelSnapshot, version)
        diagnostics = {k: v for k, v in row.diagnostics.items() if k != "change_since"}
        row.diagnostics = {**diagnostics, "change_by_category": {"tea": "2026-12-01"}}
    model = catalog.client.get(f"/console/models/{version}").text
    assert "Demand changed" in model and "in tea from 2026-12-01" in model
    assert "every category" not in model
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


def test_a_promotion_is_created_and_redefined_in_the_editor_with_errors_next_to_fields(catalog):
    _sign_in(catalog, Role.MERCHANDISER)
    page = catalog.client.get("/console/promotions/new")
    assert page.status_code == 200 and 'name="eligibility-starts_at"' in page.text
    token = _csrf(page.text)
    form = {"csrf": token, "editor": "full", "key": "TEA-WEEK", "name": "Tea week", "type": "amount_off",
            "amount_off": "0.50", "currency": "USD", "budget": "80.00", "redemption_cap": "",
            "per_customer_limit": "2", "per_customer_period": "day", "eligibility-segments": "loyalty",
            "eligibility-categories": "tea", "eligibility-skus": "", "eligibility-channels": "web, app",
            "eligibility-min_cart_value": "", "eligibility-starts_at": "2026-01-01T00:00",
            "eligibility-ends_at": "2030-01-31T23:59", "exclusive": "1", "active": "1"}  # fmt: skip
    # A wrong value is shown next to its field, and nothing is stored.
    bad = catalog.client.post("/console/promotions", data={**form, "eligibility-ends_at": "someday",
                                                           "per_customer_limit": "two"})  # fmt: skip
    assert bad.status_code == 422 and 'id="per_customer_limit-error"' in bad.text
    assert 'value="Tea week"' in bad.text  # what was typed is kept
    bad = catalog.client.post("/console/promotions", data={**form, "eligibility-ends_at": "someday"})
    assert bad.status_code == 422 and 'id="eligibility-ends_at-error"' in bad.text
    assert catalog.get("/v1/promotions/TEA-WEEK", Role.MERCHANDISER).status_code == 404
    invalid_key = catalog.client.post("/console/promotions", data={**form, "key": "bad key!"})
    assert invalid_key.status_code == 422 and 'id="key-error"' in invalid_key.text
    made = catalog.client.post("/console/promotions", data=form, follow_redirects=False)
    assert made.status_code == 303, made.text
    stored = catalog.get("/v1/promotions/TEA-WEEK", Role.MERCHANDISER).json()
    assert (stored["type"], stored["amount_off"], stored["budget"], stored["redemption_cap"]) == (
        "amount_off", "0.50", "80.00", None)  # fmt: skip
    assert stored["per_customer_limit"] == 2 and stored["per_customer_period"] == "day"
    assert stored["eligibility"]["segments"] == ["loyalty"]
    assert sorted(stored["eligibility"]["channels"]) == ["app", "web"]
    assert stored["eligibility"]["ends_at"].startswith("2030-01-31T23:59")
    # The same key again is refused: edit it instead.
    again = catalog.client.post("/console/promotions", data=form)
    assert again.status_code == 422 and "edit it instead" in again.text
    # Redefine it: another type, no end date, not exclusive (an unchecked box sends nothing).
    edit = catalog.client.get("/console/promotions/TEA-WEEK/edit").text
    assert 'value="loyalty"' in edit and 'value="2030-01-31T23:59"' in edit
    changed = {**form, "type": "percent_off", "percent_off": "15", "amount_off": "",
               "eligibility-ends_at": ""}  # fmt: skip
    del changed["key"], changed["exclusive"]
    # A rule the service checks (the type's amount) comes back next to its field too.
    missing = catalog.client.post("/console/promotions/TEA-WEEK", data={**changed, "percent_off": ""})
    assert missing.status_code == 422 and "error" in missing.text
    saved = catalog.client.post("/console/promotions/TEA-WEEK", data=changed, follow_redirects=False)
    assert saved.status_code == 303, saved.text
    stored = catalog.get("/v1/promotions/TEA-WEEK", Role.MERCHANDISER).json()
    assert stored["version"] == 2 and stored["type"] == "percent_off" and stored["percent_off"] == "15"
    assert stored["exclusive"] is False and stored["eligibility"].get("ends_at") is None
    # Analysts read promotions but may not open the editor.
    _sign_in(catalog, Role.ANALYST)
    assert catalog.client.get("/console/promotions/TEA-WEEK/edit").status_code == 403
    assert catalog.client.post("/console/promotions", data={**form, "csrf": token}).status_code == 403


def test_a_history_import_is_uploaded_queued_and_followed(catalog, sessions, backend, db_url, tmp_path):
    from api.cli import main as cli
    from api.console.routes import _csrf as csrf_of
    from api.orm import ModelPrior

    state = catalog.client.app.state.pricing
    state.settings = state.settings.model_copy(update={"import_dir": str(tmp_path / "imports")})
    _sign_in(catalog, Role.ANALYST)
    token = csrf_of(catalog.keys[Role.ANALYST])
    # An unknown segment: the import fails in validation, before any fit.
    csv = b"segment,sku,period,price,units\nmartians,TEA-1,1,10.00,3\n"
    files = {"history": ("week 1/../history.csv", csv, "text/csv")}
    if backend == "sqlite":
        assert 'action="/console/models/import"' not in catalog.client.get("/console/models").text
        done = catalog.client.post("/console/models/import", data={"csrf": token}, files=files)
        assert done.status_code == 200 and "import-history FILE" in done.text
        assert not (tmp_path / "imports").exists()
        return
    assert cli(["migrate", "--database-url", db_url]) == 0  # the queue's tables
    assert catalog.client.post("/console/models/import", data={"csrf": "0" * 32},
                               files=files).status_code == 403  # fmt: skip
    empty = catalog.client.post("/console/models/import", data={"csrf": token},
                                files={"history": ("h.csv", b"", "text/csv")}, follow_redirects=False)  # fmt: skip
    assert empty.headers["location"].endswith("import=empty")
    queued = catalog.client.post("/console/models/import", data={"csrf": token, "dry_run": "1"},
                                 files=files, follow_redirects=False)  # fmt: skip
    assert queued.status_code == 303 and queued.headers["location"].endswith("import=queued")
    stored = list((tmp_path / "imports").iterdir())
    assert len(stored) == 1 and stored[0].name.endswith("history.csv") and stored[0].read_bytes() == csv
    page = catalog.client.get("/console/models?import=queued").text
    assert f"{stored[0].name}: waiting" in page and 'http-equiv="refresh"' in page
    # A queue worker takes it; the bad row fails it, and the page says so.
    from api.queue import run_worker

    run_worker(state.settings, wait=False)
    page = catalog.client.get("/console/models").text
    assert f"{stored[0].name}: failed" in page
    with sessions() as session, session.begin():
        session.add(ModelPrior(source="import-history h.csv (pooled)", model_config_json={},
                               summary={"elasticity": -1.25, "rows": 40}))  # fmt: skip
    page = catalog.client.get("/console/models").text
    assert "import-history h.csv (pooled)" in page and "-1.25" in page
