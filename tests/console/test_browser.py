"""The console in a real browser: Debian's Chromium driven by Playwright, checked by axe-core.

Needs ``/usr/bin/chromium`` (``apt-get install chromium``; ``scripts/dev.py test`` installs it
when it runs as root) and axe-core (``PRICING_AXE_JS``; ``scripts/dev.py test`` installs it
with npm). Without them these tests skip and say why; ``PRICING_REQUIRE_BROWSER=1``
(``.ci/run``) makes that a failure. ``PRICING_CONSOLE_SCREENSHOTS=DIR`` saves a screenshot
of each page there (``docs/console/`` holds the committed ones).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.cli import main as cli
from api.schemas.experiments import EXAMPLE_EXPERIMENT
from tests.servers import servers

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
AXE = Path(os.environ.get("PRICING_AXE_JS") or Path.home() / ".cache" / "pricing-engine" / "axe-core"
           / "node_modules" / "axe-core" / "axe.min.js")  # fmt: skip
SHOTS = os.environ.get("PRICING_CONSOLE_SCREENSHOTS")
EXPERIMENT = "console-demo"
PAGE_WAIT_MS = 60_000  # how long an assertion waits for a page the server is still computing


def expect(target: Any) -> Any:
    """Playwright's retrying assertion (imported late: the module loads without Playwright)."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def _missing(reason: str) -> None:
    if os.environ.get("PRICING_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (PRICING_REQUIRE_BROWSER=1: the browser tests must run)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install playwright)")
    if not Path(CHROMIUM).exists():
        _missing(f"no Chromium at {CHROMIUM}: apt-get install chromium")
    if not AXE.exists():
        _missing(f"no axe-core at {AXE}: npm install axe-core (scripts/dev.py test does)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=["--no-sandbox"])  # fmt: skip
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """A demo server (SQLite) with a running experiment that has data: (base URL, keys)."""
    folder = tmp_path_factory.mktemp("console")
    url = f"sqlite:///{folder / 'console.db'}"
    keys_file = folder / "keys.json"
    assert cli(["seed-demo", "--database-url", url, "--keys-file", str(keys_file)]) == 0
    keys = json.loads(keys_file.read_text())
    with servers(url, 1) as [(base, _)]:
        admin = {"Authorization": f"Bearer {keys['admin']}"}
        checkout = {"Authorization": f"Bearer {keys['checkout']}"}
        assert httpx.put(f"{base}/v1/experiments/{EXPERIMENT}", json=EXAMPLE_EXPERIMENT,
                         headers=admin).status_code in (200, 201)  # fmt: skip
        httpx.post(f"{base}/v1/experiments/{EXPERIMENT}/start", headers=admin)
        with httpx.Client(base_url=base, headers=checkout, timeout=30) as http:
            for n in range(240):
                quote = http.post("/v1/quotes", json={"customer_id": f"b-{n}",
                                                      "lines": [{"sku": "TEA-002", "quantity": 1}]})  # fmt: skip
                assert quote.status_code == 201, quote.text
                line = quote.json()["lines"][0]
                bought = n % 3 == 0
                http.post("/v1/outcomes", json={
                    "decision_id": line["decision_id"], "converted": bought, "quantity": int(bought),
                    "revenue": line["final_price"] if bought else "0.00"})  # fmt: skip
        yield base, keys


def _page(browser: Any, base: str, key: str) -> Any:
    page = browser.new_page(base_url=base)
    page.goto("/console/login")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/console")
    return page


def _axe(page: Any) -> list[dict[str, Any]]:
    """Serious and critical axe-core violations of the page as loaded."""
    page.add_script_tag(content=AXE.read_text(encoding="utf-8"))
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [{"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"][:3]]}
            for v in result["violations"] if v["impact"] in ("serious", "critical")]  # fmt: skip


def _shot(page: Any, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


def test_every_page_passes_axe_in_light_and_dark_mode(browser, site):
    base, keys = site
    page = _page(browser, base, keys["admin"])
    key = EXPERIMENT
    pages = {"home": "/console", "catalog": "/console/catalog", "guardrails": "/console/guardrails",
             "promotions": "/console/promotions", "promotion-new": "/console/promotions/new",
             "promotion-edit": "/console/promotions/COFFEE10/edit", "experiments": "/console/experiments",
             "experiment": f"/console/experiments/{key}", "models": "/console/models",
             "decisions": "/console/decisions", "dispersion": "/console/dispersion",
             "audit": "/console/audit"}  # fmt: skip
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        for name, path in pages.items():
            page.goto(path)
            assert page.locator("h1").count() == 1, path
            assert _axe(page) == [], (scheme, path)
            if scheme == "light":
                _shot(page, name)
        page.goto("/console/decisions")
        page.get_by_role("link", name="explain").first.click()
        expect(page.locator("h1")).to_have_text(re.compile(r"^\s*Why"), timeout=PAGE_WAIT_MS)
        assert _axe(page) == [], (scheme, "explanation")
        if scheme == "light":
            _shot(page, "decision")
    page.goto("/console/login")
    page.context.clear_cookies()
    page.goto("/console/login")
    assert _axe(page) == []
    _shot(page, "login")


def test_edit_preview_activate_and_a_quote_reflects_it(browser, site):
    base, keys = site
    page = _page(browser, base, keys["merchandiser"])
    page.get_by_role("link", name="Guardrails", exact=True).click()
    # Rule 1 is the demo's global rule, rule 2 its coffee rule: no discount, no increase.
    page.locator("#rules-0-max_discount").fill("0")
    page.locator("#rules-0-max_increase").fill("0")
    page.locator("#rules-1-max_discount").fill("0")
    page.locator("#note").fill("list prices only, from the browser test")
    page.get_by_role("button", name="Preview").click()
    # The preview prices the demo's traffic under the proposal: on a loaded machine that takes
    # seconds, so wait for the page it returns rather than look once (``is_visible`` does not wait).
    expect(page.get_by_role("heading", name="Segment loyalty")).to_be_visible(timeout=PAGE_WAIT_MS)
    _shot(page, "guardrails-preview")
    page.get_by_role("button", name="Activate this proposal").click()
    expect(page.get_by_role("status")).to_have_text(
        re.compile(r"^\s*Version"), timeout=PAGE_WAIT_MS
    )
    checkout = {"Authorization": f"Bearer {keys['checkout']}"}
    deadline = time.monotonic() + 30  # every worker refreshes its guardrails within a second
    while True:
        lines = httpx.post(f"{base}/v1/quotes", headers=checkout, json={
            "customer_id": f"after-{time.monotonic()}", "lines": [
                {"sku": "COF-001", "quantity": 1}, {"sku": "TEA-001", "quantity": 1}]}).json()["lines"]  # fmt: skip
        if all(line["price"] == line["list_price"] for line in lines):
            break
        assert time.monotonic() < deadline, lines
        time.sleep(0.2)


def test_a_wrong_value_shows_the_fields_error(browser, site):
    base, keys = site
    page = _page(browser, base, keys["merchandiser"])
    page.goto("/console/guardrails")
    page.locator("#rules-0-max_discount").fill("1.5")
    page.get_by_role("button", name="Preview").click()
    error = page.locator("#rules-0-max_discount-error")
    expect(error).to_be_visible(timeout=PAGE_WAIT_MS)
    assert "less than 1" in error.inner_text()
    assert page.locator("#rules-0-max_discount").get_attribute("aria-invalid") == "true"
    assert page.get_by_role("button", name="Activate this proposal").count() == 0
    _shot(page, "guardrails-error")


def test_a_checkout_key_cannot_open_merchandiser_pages(browser, site):
    base, keys = site
    page = _page(browser, base, keys["checkout"])
    assert page.get_by_role("link", name="Guardrails").count() == 0
    response = page.goto("/console/guardrails")
    assert response is not None and response.status == 403
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible(timeout=PAGE_WAIT_MS)


def test_an_analyst_opens_an_experiment_and_sees_its_plot(browser, site):
    base, keys = site
    page = _page(browser, base, keys["analyst"])
    page.get_by_role("link", name="Experiments", exact=True).click()
    page.get_by_role("link", name=EXPERIMENT).click()
    plot = page.locator("svg.plot").first
    expect(plot).to_be_visible(timeout=PAGE_WAIT_MS)
    assert "lift" in (plot.get_attribute("aria-label") or "")
    # Tables sort from the keyboard.
    header = page.locator("table.sortable th button").first
    header.focus()
    page.keyboard.press("Enter")
    expect(page.locator("table.sortable th").first).to_have_attribute("aria-sort", "ascending")
