"""The web console at ``/console``: server-rendered pages on the same services and roles.

Sign-in takes an API key and keeps it in an HttpOnly, ``SameSite=Strict`` cookie scoped to
``/console`` (JavaScript never sees it; other sites cannot send it). Every form carries a
CSRF token derived from the key (HMAC), checked on every POST. What a page shows and allows
follows the key's role, as in the API: merchandiser pages need ``merchandiser`` (or
``admin``), analyst pages ``analyst`` (or ``admin``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from api.console.svg import bars, intervals, lift_density
from api.deps import AppState, SessionDep, StateDep
from api.errors import DomainError, NotFound
from api.orm import utcnow
from api.schemas.common import IDENTIFIER_PATTERN
from api.schemas.guardrails import GuardrailSetIn, PreviewIn
from api.schemas.promotions import EligibilityIn, PromotionIn
from api.security import Principal, Role
from api.services import (
    audit,
    catalog,
    decisions,
    demand_models,
    dispersion,
    experiments,
    explanations,
    promotions,
)
from api.services.fanout import refit_progress
from api.services.guardrails import active_guardrails, put_guardrails
from api.services.imports import IMPORT_TASK, import_progress, store_upload
from api.services.preview import preview_guardrails

__all__ = ["router"]

router = APIRouter(prefix="/console", include_in_schema=False)
TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
COOKIE = "pe_console"
MERCHANDISERS = frozenset({Role.MERCHANDISER, Role.ADMIN})
ANALYSTS = frozenset({Role.ANALYST, Role.ADMIN})
READERS = MERCHANDISERS | ANALYSTS
#: Settings of a rule as the editor shows them: (field, label, kind, help).
RULE_FIELDS = (
    ("floor", "Floor", "money", "lowest price (SKU rules only)"),
    ("ceiling", "Ceiling", "money", "highest price (SKU rules only)"),
    ("max_discount", "Max discount", "fraction", "largest cut below list, 0.2 = 20 %"),
    ("max_increase", "Max increase", "fraction", "largest rise above list"),
    ("min_margin", "Min margin", "fraction", "least (price - cost) / price"),
    ("max_change", "Max change", "fraction", "largest change vs today's anchor price"),
    ("segment_gap", "Segment gap", "ratio", "largest highest / lowest price between segments"),
    ("ending", "Price ending", "int", "last two minor digits, e.g. 99"),
    ("step", "Ladder step", "money", "price ladder step"),
)


@dataclass(frozen=True)
class Viewer:
    """The signed-in user: their key's principal and the CSRF token of their forms."""

    principal: Principal
    csrf: str

    @property
    def role(self) -> Role:
        return self.principal.role


def _csrf(key: str) -> str:
    return hmac.new(key.encode("utf-8"), b"pricing-console-csrf", hashlib.sha256).hexdigest()[:32]


def _viewer(request: Request, state: AppState) -> Viewer | None:
    key = request.cookies.get(COOKIE)
    if not key:
        return None
    principal = state.principal_for(key)
    return Viewer(principal, _csrf(key)) if principal is not None else None


def _page(request: Request, template: str, viewer: Viewer | None, *, status: int = 200,
          **context: Any) -> HTMLResponse:  # fmt: skip
    return TEMPLATES.TemplateResponse(
        request, template, {"viewer": viewer, "Role": Role, "MERCHANDISERS": MERCHANDISERS,
                            "ANALYSTS": ANALYSTS, **context}, status_code=status,
    )  # fmt: skip


def _gate(request: Request, state: AppState, roles: frozenset[Role]) -> Viewer | Response:
    """The viewer if signed in with one of ``roles``; else the sign-in page or a 403 page."""
    viewer = _viewer(request, state)
    if viewer is None:
        return RedirectResponse(f"/console/login?next={quote(request.url.path)}", status_code=303)
    if viewer.role not in roles:
        names = ", ".join(sorted(r.value for r in roles))
        return _page(request, "forbidden.html", viewer, status=403, allowed=names)
    return viewer


async def _posted(request: Request) -> dict[str, str]:
    return {k: str(v) for k, v in (await request.form()).items()}


def _checked(form: dict[str, str], viewer: Viewer) -> bool:
    """Whether the form carries this viewer's CSRF token."""
    return hmac.compare_digest(form.get("csrf", ""), viewer.csrf)


def _form_viewer(request: Request, state: AppState, roles: frozenset[Role],
                 form: dict[str, str]) -> Viewer | Response:  # fmt: skip
    """As :func:`_gate` for a posted form, which must also carry the viewer's CSRF token."""
    viewer = _gate(request, state, roles)
    if isinstance(viewer, Viewer) and not _checked(form, viewer):
        return _csrf_refused(request, viewer)
    return viewer


def _csrf_refused(request: Request, viewer: Viewer) -> HTMLResponse:
    return _page(request, "forbidden.html", viewer, status=403,
                 allowed="a form from this console (the page expired: reload it)")  # fmt: skip


# ---------------------------------------------------------------- sign-in
@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/console") -> HTMLResponse:
    return _page(request, "login.html", None, next=_safe_next(next), error=None)


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, state: StateDep) -> Response:
    form = await _posted(request)
    return await run_in_threadpool(_login, request, state, form)


def _login(request: Request, state: AppState, form: dict[str, str]) -> Response:
    key = form.get("api_key", "").strip()
    target = _safe_next(form.get("next", "/console"))
    principal = state.principal_for(key) if key else None
    if principal is None:
        return _page(request, "login.html", None, status=401, next=target,
                     error="That key is not valid (or was revoked).")  # fmt: skip
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(COOKIE, key, httponly=True, samesite="strict", path="/console",
                        secure=request.url.scheme == "https", max_age=8 * 3600)  # fmt: skip
    return response


@router.post("/logout")
def logout() -> Response:
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie(COOKIE, path="/console")
    return response


def _safe_next(target: str) -> str:
    """Only paths inside the console (no open redirect)."""
    return target if target.startswith("/console") and "//" not in target else "/console"


@router.get("", response_class=HTMLResponse)
def home(request: Request, state: StateDep) -> Response:
    viewer = _viewer(request, state)
    if viewer is None:
        return RedirectResponse("/console/login", status_code=303)
    return _page(request, "home.html", viewer)


# ---------------------------------------------------------------- merchandisers
@router.get("/catalog", response_class=HTMLResponse)
def catalog_page(request: Request, state: StateDep, session: SessionDep, q: str = "",
                 after: str | None = None) -> Response:  # fmt: skip
    viewer = _gate(request, state, READERS)
    if not isinstance(viewer, Viewer):
        return viewer
    page = catalog.list_products(session, category=None, active=None, after=after, limit=50,
                                 search=q.strip()[:100] or None)  # fmt: skip
    return _page(request, "catalog.html", viewer, page=page, q=q)


def _rules_form(rules: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Stored rules as the editor's rows of strings (plus one empty row to add a rule)."""
    rows = [{k: ("" if v is None else str(v).lower() if isinstance(v, bool) else str(v))
             for k, v in rule.items()} for rule in rules]  # fmt: skip
    rows.append({"scope": "", "target": ""})
    return rows


def _parse_rules(
    form: dict[str, str],
) -> tuple[list[dict[str, Any]], dict[str, str], list[dict[str, str]]]:
    """The editor's rows as rule dicts; problems with a number's syntax by input name; and
    the rows as typed (to show them again with their problems)."""
    try:
        count = int(form.get("rules-count", "0") or 0)
    except ValueError:
        count = 0
    rules: list[dict[str, Any]] = []
    problems: dict[str, str] = {}
    typed: list[dict[str, str]] = []
    for i in range(min(count, 500)):
        prefix = f"rules-{i}-"
        scope = form.get(prefix + "scope", "").strip()
        if not scope or form.get(prefix + "remove"):
            continue
        rule: dict[str, Any] = {"scope": scope}
        typed.append({k.removeprefix(prefix): v for k, v in form.items() if k.startswith(prefix)})
        target = form.get(prefix + "target", "").strip()
        if target:
            rule["target"] = target
        for name, _label, kind, _help in RULE_FIELDS:
            raw = form.get(prefix + name, "").strip()
            if not raw:
                continue
            if kind == "money":
                rule[name] = raw
                continue
            try:
                rule[name] = int(raw) if kind == "int" else float(raw)
            except ValueError:
                problems[f"rules-{len(rules)}-{name}"] = f"{raw!r} is not a number"
        if form.get(prefix + "exclude"):
            rule["exclude"] = True
        rules.append(rule)
    typed.append({"scope": "", "target": ""})
    return rules, problems, typed


def _field_problems(exc: ValidationError | DomainError) -> tuple[dict[str, str], list[str]]:
    """Problems by editor input name (``rules-0-max_discount``), and those of no field."""
    fields: dict[str, str] = {}
    general: list[str] = []
    if isinstance(exc, ValidationError):
        items = [(list(e["loc"]), str(e["msg"]).removeprefix("Value error, ")) for e in exc.errors()]
    else:
        detail = exc.body()["detail"]
        items = [(d["loc"], d["msg"]) for d in detail] if isinstance(detail, list) else [([], detail)]
    for loc, message in items:
        loc = [p for p in loc if p != "body"]
        if len(loc) >= 3 and loc[0] == "rules" and isinstance(loc[1], int):
            fields.setdefault(f"rules-{loc[1]}-{loc[2]}", message)
        else:
            general.append(message)
    return fields, general


def _proposal_digest(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


@router.get("/guardrails", response_class=HTMLResponse)
def guardrails_page(request: Request, state: StateDep, session: SessionDep,
                    activated: int | None = None) -> Response:  # fmt: skip
    viewer = _gate(request, state, MERCHANDISERS)
    if not isinstance(viewer, Viewer):
        return viewer
    current = active_guardrails(session)
    rules = current.rules if current is not None else []
    return _page(request, "guardrails.html", viewer, current=current,
                 rows=_rules_form(rules), fields=RULE_FIELDS, problems={}, general=[],
                 preview=None, digest=None, note="", activated=activated)  # fmt: skip


@router.post("/guardrails", response_class=HTMLResponse)
async def guardrails_submit(request: Request, state: StateDep, session: SessionDep) -> Response:
    form = await _posted(request)
    # Previews and the write run in the thread pool: never on the event loop quotes share.
    return await run_in_threadpool(_guardrails_submit, request, state, session, form)


def _guardrails_submit(request: Request, state: AppState, session: Any, form: dict[str, str]) -> Response:
    viewer = _form_viewer(request, state, MERCHANDISERS, form)
    if not isinstance(viewer, Viewer):
        return viewer
    current = active_guardrails(session)
    rules, problems, typed = _parse_rules(form)
    note = form.get("note", "")[:2000]
    body = {"rules": rules, "kill_switch": bool(current and current.kill_switch), "note": note}
    context: dict[str, Any] = {"current": current, "rows": typed, "fields": RULE_FIELDS,
               "note": note, "activated": None, "preview": None, "digest": None}  # fmt: skip
    if problems:
        return _page(request, "guardrails.html", viewer, status=422, problems=problems,
                     general=[], **context)  # fmt: skip
    action = form.get("action", "preview")
    try:
        if action == "activate":
            if form.get("digest") != _proposal_digest(body):
                return _page(request, "guardrails.html", viewer, status=409, problems={},
                             general=["Preview this exact proposal before activating it."],
                             **context)  # fmt: skip
            session.rollback()
            stored = put_guardrails(session, body=GuardrailSetIn.model_validate(body),
                                    actor=viewer.principal)  # fmt: skip
            state.guardrails.invalidate()
            return RedirectResponse(f"/console/guardrails?activated={stored.version}", status_code=303)
        proposal = PreviewIn.model_validate({**body, "what_if_rounds": 2000})
        preview = preview_guardrails(
            session, proposal, served=state.posterior.served,
            epsilon=state.settings.exploration_epsilon, floor=state.settings.min_propensity,
            n_prices=state.settings.price_ladder_size,
            current=state.guardrails.get()[1],
        )  # fmt: skip
    except (ValidationError, DomainError) as exc:
        fields, general = _field_problems(exc)
        return _page(request, "guardrails.html", viewer, status=422, problems=fields,
                     general=general, **context)  # fmt: skip
    context.update(preview=_preview_view(preview), digest=_proposal_digest(body))
    return _page(request, "guardrails.html", viewer, problems={}, general=[], **context)


def _preview_view(preview: Any) -> dict[str, Any]:
    """The preview grouped by segment, each line with its price distribution drawn."""
    by_segment: dict[str, list[dict[str, Any]]] = {}
    for line in preview.lines:
        best = max(range(len(line.prices)), key=lambda i: line.probabilities[i]) if line.prices else None
        by_segment.setdefault(line.segment, []).append({
            "sku": line.sku, "currency": line.currency,
            "low": line.prices[0] if line.prices else None,
            "high": line.prices[-1] if line.prices else None,
            "likely": line.prices[best] if best is not None else None,
            "likely_p": line.probabilities[best] if best is not None else None,
            "conversion": line.expected_conversion, "profit": line.expected_profit_per_visitor,
            "binding": ", ".join(line.binding.get("low", []) + line.binding.get("high", [])),
            "picture": bars(line.prices[:12], line.probabilities[:12],
                            title=f"price distribution of {line.sku} for {line.segment}"),
        })  # fmt: skip
    return {"model_version": preview.model_version, "segments": by_segment,
            "what_if": preview.what_if}  # fmt: skip


@router.post("/kill-switch", response_class=HTMLResponse)
async def kill_switch(request: Request, state: StateDep, session: SessionDep) -> Response:
    form = await _posted(request)
    return await run_in_threadpool(_kill_switch, request, state, session, form)


def _kill_switch(request: Request, state: AppState, session: Any, form: dict[str, str]) -> Response:
    viewer = _form_viewer(request, state, MERCHANDISERS, form)
    if not isinstance(viewer, Viewer):
        return viewer
    current = active_guardrails(session)
    on = form.get("state") == "on"
    if not form.get("confirm"):
        return _page(request, "guardrails.html", viewer, status=422, current=current,
                     rows=_rules_form(current.rules if current else []), fields=RULE_FIELDS,
                     problems={"confirm": "Tick the box to confirm."}, general=[], preview=None,
                     digest=None, note="", activated=None)  # fmt: skip
    session.rollback()
    body = {"rules": current.rules if current else [], "kill_switch": on,
            "note": f"kill switch {'on' if on else 'off'} from the console"}  # fmt: skip
    stored = put_guardrails(session, body=GuardrailSetIn.model_validate(body), actor=viewer.principal)
    state.guardrails.invalidate()
    return RedirectResponse(f"/console/guardrails?activated={stored.version}", status_code=303)


@router.get("/audit", response_class=HTMLResponse)
def audit_page(request: Request, state: StateDep, session: SessionDep) -> Response:
    viewer = _gate(request, state, frozenset({Role.ADMIN}))
    if not isinstance(viewer, Viewer):
        return viewer
    return _page(request, "audit.html", viewer, entries=audit.list_audit(session, limit=200))


# ---------------------------------------------------------------- analysts
@router.get("/experiments", response_class=HTMLResponse)
def experiments_page(request: Request, state: StateDep, session: SessionDep) -> Response:
    viewer = _gate(request, state, READERS)
    if not isinstance(viewer, Viewer):
        return viewer
    return _page(request, "experiments.html", viewer, items=experiments.list_experiments(session))


@router.get("/experiments/{key}", response_class=HTMLResponse)
def experiment_page(key: str, request: Request, state: StateDep, session: SessionDep) -> Response:
    viewer = _gate(request, state, READERS)
    if not isinstance(viewer, Viewer):
        return viewer
    try:
        results = experiments.experiment_results(session, key=key[:64])
    except NotFound:
        return _page(request, "forbidden.html", viewer, status=404, allowed=None,
                     missing=f"experiment {key!r}")  # fmt: skip
    plots: list[tuple[Any, str | None]] = []
    for lift in results.lifts:
        if None not in (lift.estimate, lift.se, lift.lower, lift.upper):
            plots.append((lift, lift_density(
                float(lift.estimate or 0), float(lift.se or 0), float(lift.lower or 0),
                float(lift.upper or 0), title=f"{lift.variant} vs {results.baseline}, {lift.metric}",
                level=results.credible_level,
            )))  # fmt: skip
        else:
            plots.append((lift, None))
    return _page(request, "experiment.html", viewer, results=results, plots=plots)


@router.get("/promotions", response_class=HTMLResponse)
def promotions_page(request: Request, state: StateDep, session: SessionDep) -> Response:
    viewer = _gate(request, state, READERS)
    if not isinstance(viewer, Viewer):
        return viewer
    return _page(request, "promotions.html", viewer, items=promotions.list_promotions(session),
                 problems={}, saved=request.query_params.get("saved"))  # fmt: skip


#: The promotion editor's inputs: (field, label, kind, help). Eligibility fields are
#: named ``eligibility-<field>``; ``list`` inputs take comma-separated values.
PROMOTION_FIELDS = (
    ("percent_off", "Percent off", "decimal", "percent_off promotions: 10 = 10 %"),
    ("amount_off", "Amount off", "money", "amount_off promotions, per unit"),
    ("shipping_cost", "Shipping cost", "money", "free_shipping promotions: what it costs you"),
    ("currency", "Currency", "text", "of the amounts, e.g. USD"),
    ("budget", "Budget", "money", "total spend allowed (empty: none)"),
    ("redemption_cap", "Redemption cap", "int", "most redemptions (empty: none)"),
    ("per_customer_limit", "Per-customer limit", "int", "offers one customer may take (empty: none)"),
    ("eligibility-segments", "Segments", "list", "comma-separated; empty: every segment"),
    ("eligibility-categories", "Categories", "list", "comma-separated; empty: every category"),
    ("eligibility-skus", "SKUs", "list", "comma-separated; empty: every SKU"),
    ("eligibility-channels", "Channels", "list", "comma-separated; empty: every channel"),
    ("eligibility-min_cart_value", "Minimum cart value", "money", "empty: none"),
    ("eligibility-starts_at", "Starts at (UTC)", "datetime", "empty: now"),
    ("eligibility-ends_at", "Ends at (UTC)", "datetime", "empty: no end"),
)  # fmt: skip
_INT_FIELDS = {"redemption_cap", "per_customer_limit"}
_OPTIONAL = {"percent_off", "amount_off", "shipping_cost", "currency", "budget", "redemption_cap",
             "per_customer_limit", "min_cart_value", "starts_at", "ends_at"}  # fmt: skip


def _promotion_values(promotion: Any | None) -> dict[str, str]:
    """A stored promotion as the editor's input values (empty strings for nothing)."""
    if promotion is None:
        return {"type": "percent_off", "per_customer_period": "campaign", "exclusive": "1",
                "active": "1", "currency": "USD"}  # fmt: skip
    data = promotion.model_dump(mode="json")
    values = {k: "" if data.get(k) is None else str(data[k]) for k in
              ("name", "type", "per_customer_period", *(f for f, *_ in PROMOTION_FIELDS if "-" not in f))}  # fmt: skip
    for field, *_ in PROMOTION_FIELDS:
        if field.startswith("eligibility-"):
            value = (data.get("eligibility") or {}).get(field.removeprefix("eligibility-"))
            if isinstance(value, list):
                values[field] = ", ".join(str(v) for v in value)
            elif value is not None and field.endswith("_at"):
                values[field] = str(value).replace("+00:00", "").replace("Z", "")[:16]
            else:
                values[field] = "" if value is None else str(value)
    values["exclusive"] = "1" if data.get("exclusive") else ""
    values["active"] = "1" if data.get("active") else ""
    return values


def _promotion_body(current: Any | None, form: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The complete promotion the form asks for (fields it does not carry keep their stored
    values), and the inputs it could not read (by field name)."""
    body: dict[str, Any] = (
        {name: getattr(current, name) for name in PromotionIn.model_fields if hasattr(current, name)}
        if current is not None else {}
    )  # fmt: skip
    eligibility = dict(body.get("eligibility") or {})
    problems: dict[str, str] = {}
    full = form.get("editor") == "full"
    for name in ("name", "type", "per_customer_period"):
        if name in form:
            body[name] = form[name].strip()
    for field, _label, kind, _help in PROMOTION_FIELDS:
        if field not in form:
            continue
        raw = form[field].strip()
        target, key = (eligibility, field.removeprefix("eligibility-")) if field.startswith(
            "eligibility-") else (body, field)  # fmt: skip
        value: Any = raw
        if kind == "list":
            value = [v for v in (x.strip() for x in raw.replace("\n", ",").split(",")) if v]
        elif not raw:
            value = None
        elif kind == "int":
            try:
                value = int(raw)
            except ValueError:
                problems[field] = f"{raw!r} is not a whole number"
                continue
        elif kind == "datetime" and not raw.endswith(("Z", "z")) and "+" not in raw[10:]:
            value = f"{raw}:00+00:00" if len(raw) == 16 else f"{raw}+00:00"  # the inputs are UTC
        target[key] = value
    body["eligibility"] = {k: v for k, v in eligibility.items() if v is not None or k not in _OPTIONAL}
    for name in ("exclusive", "active"):
        if full or (name == "active"):  # an unchecked box sends nothing
            body[name] = form.get(name) == "1"
    return {k: v for k, v in body.items() if v is not None or k not in _OPTIONAL}, problems


def _promotion_problems(exc: ValidationError | DomainError) -> tuple[dict[str, str], list[str]]:
    """Problems by editor field (``budget``, ``eligibility-starts_at``) and those of none."""
    if isinstance(exc, ValidationError):
        items = [(list(e["loc"]), str(e["msg"]).removeprefix("Value error, ")) for e in exc.errors()]
    else:
        detail = exc.body()["detail"]
        items = [(d["loc"], d["msg"]) for d in detail] if isinstance(detail, list) else [([], detail)]
    fields: dict[str, str] = {}
    general: list[str] = []
    known = {"name", "type", "per_customer_period", *(f for f, *_ in PROMOTION_FIELDS)}
    for loc, message in items:
        parts = [str(p) for p in loc if p != "body" and not isinstance(p, int)]
        # pydantic names the branch of a union ("decimal", "function-after[...]"): drop it.
        parts = [p for p in parts if p in PromotionIn.model_fields or p == "eligibility"
                 or (parts[:1] == ["eligibility"] and p in EligibilityIn.model_fields)]  # fmt: skip
        name = "-".join(parts[:2])
        if name in known:
            fields.setdefault(name, message)
        else:
            general.append(f"{'.'.join(parts) + ': ' if parts else ''}{message}")
    return fields, general


@router.get("/promotions/new", response_class=HTMLResponse)
def promotion_new(request: Request, state: StateDep) -> Response:
    viewer = _gate(request, state, MERCHANDISERS)
    if not isinstance(viewer, Viewer):
        return viewer
    return _editor(request, viewer, None, _promotion_values(None))


@router.get("/promotions/{key}/edit", response_class=HTMLResponse)
def promotion_edit(key: str, request: Request, state: StateDep, session: SessionDep) -> Response:
    viewer = _gate(request, state, MERCHANDISERS)
    if not isinstance(viewer, Viewer):
        return viewer
    try:
        current = promotions.get_promotion(session, key[:64])
    except NotFound:
        return _page(request, "forbidden.html", viewer, status=404, allowed=None,
                     missing=f"promotion {key!r}")  # fmt: skip
    return _editor(request, viewer, current, _promotion_values(current))


def _editor(request: Request, viewer: Viewer, current: Any | None, values: dict[str, str], *,
            problems: dict[str, str] | None = None, general: list[str] | None = None,
            status: int = 200, key: str = "") -> HTMLResponse:  # fmt: skip
    return _page(request, "promotion.html", viewer, status=status, current=current, values=values,
                 fields=PROMOTION_FIELDS, problems=problems or {}, general=general or [],
                 key=current.key if current is not None else key)  # fmt: skip


@router.post("/promotions", response_class=HTMLResponse)
async def promotion_create(request: Request, state: StateDep, session: SessionDep) -> Response:
    form = await _posted(request)
    return await run_in_threadpool(_promotion_submit, None, request, state, session, form)


@router.post("/promotions/{key}", response_class=HTMLResponse)
async def promotion_submit(key: str, request: Request, state: StateDep, session: SessionDep) -> Response:
    form = await _posted(request)
    return await run_in_threadpool(_promotion_submit, key, request, state, session, form)


def _promotion_submit(key: str | None, request: Request, state: AppState, session: Any,
                      form: dict[str, str]) -> Response:  # fmt: skip
    """Save a promotion as a new version (audited): the whole definition from the editor
    (``editor=full``; ``key`` None creates one named by the form's ``key``), or the budget,
    cap and state from the list page's short form."""
    viewer = _form_viewer(request, state, MERCHANDISERS, form)
    if not isinstance(viewer, Viewer):
        return viewer
    full = form.get("editor") == "full"
    current = None
    if key is None:
        key = form.get("key", "").strip()
        try:
            current = promotions.get_promotion(session, key[:64]) if key else None
        except NotFound:
            current = None
        if current is not None or not re.match(IDENTIFIER_PATTERN, key):
            message = (f"promotion {key!r} exists: edit it instead" if current is not None
                       else "the key: at most 64 letters, digits, '.', '_', ':' or '-', "
                            "starting with a letter or digit")  # fmt: skip
            return _editor(request, viewer, None, {**_promotion_values(None), **form},
                           problems={"key": message}, status=422, key=key)  # fmt: skip
    else:
        try:
            current = promotions.get_promotion(session, key[:64])
        except NotFound:
            return _page(request, "forbidden.html", viewer, status=404, allowed=None,
                         missing=f"promotion {key!r}")  # fmt: skip
    body, problems = _promotion_body(current, form)
    general: list[str] = []
    if not problems:
        session.rollback()
        try:
            promotions.put_promotion(session, key=key, body=PromotionIn.model_validate(body),
                                     actor=viewer.principal)  # fmt: skip
        except (ValidationError, DomainError) as exc:
            problems, general = _promotion_problems(exc)
        else:
            state.promotions_changed()
            return RedirectResponse(f"/console/promotions?saved={quote(key)}", status_code=303)
    session.rollback()
    if full:
        return _editor(request, viewer, current, {**_promotion_values(current), **form},
                       problems=problems, general=general, status=422, key=key)  # fmt: skip
    # The list page's short form: its inputs are named ``<key>-<field>``.
    short = {f"{key}-{field}": message for field, message in problems.items()}
    for message in general:
        short.setdefault(f"{key}-budget", message)
    return _page(request, "promotions.html", viewer, status=422,
                 items=promotions.list_promotions(session), problems=short, saved=None)  # fmt: skip


@router.get("/models", response_class=HTMLResponse)
def models_page(request: Request, state: StateDep, session: SessionDep) -> Response:
    viewer = _gate(request, state, ANALYSTS)
    if not isinstance(viewer, Viewer):
        return viewer
    progress = refit_progress(session)
    imports = import_progress(session)
    importing = any(j["status"] in ("todo", "doing") for j in imports["jobs"])
    return _page(request, "models.html", viewer, items=demand_models.list_models(session),
                 progress=progress, imports=imports,
                 running=bool(progress["jobs"] or progress["fanout"]) or importing,
                 importing=importing, imported=request.query_params.get("import"),
                 queued=request.query_params.get("refit"),
                 queue=state.settings.database_url.startswith("postgresql"))  # fmt: skip


@router.post("/models/refit", response_class=HTMLResponse)
async def refit_now(request: Request, state: StateDep) -> Response:
    form = await _posted(request)
    return await run_in_threadpool(_refit_now, request, state, form)


def _refit_now(request: Request, state: AppState, form: dict[str, str]) -> Response:
    """Queue a refit for the workers (PostgreSQL); the models page then follows it."""
    viewer = _form_viewer(request, state, ANALYSTS, form)
    if not isinstance(viewer, Viewer):
        return viewer
    if not state.settings.database_url.startswith("postgresql"):
        return RedirectResponse("/console/models?refit=no-queue", status_code=303)
    from api.queue import defer

    mode = {"mode": "fanout"} if form.get("fanout") else {}
    job = defer(state.settings, "pricing.refit", queueing_lock="pricing.refit:requested",
                force=True, **mode)  # fmt: skip
    return RedirectResponse(f"/console/models?refit={'queued' if job else 'waiting'}", status_code=303)


@router.post("/models/import", response_class=HTMLResponse)
async def import_upload(request: Request, state: StateDep) -> Response:
    """Queue a sales-history import of an uploaded CSV; the models page then follows it."""
    form = await request.form()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    upload = form.get("history")
    content = await upload.read() if upload is not None and not isinstance(upload, str) else b""
    name = getattr(upload, "filename", None) or "history.csv"
    return await run_in_threadpool(_import_upload, request, state, fields, name, content)


def _import_upload(request: Request, state: AppState, form: dict[str, str], name: str,
                   content: bytes) -> Response:  # fmt: skip
    viewer = _form_viewer(request, state, ANALYSTS, form)
    if not isinstance(viewer, Viewer):
        return viewer
    if not state.settings.database_url.startswith("postgresql"):
        return RedirectResponse("/console/models?import=no-queue", status_code=303)
    if not content.strip():
        return RedirectResponse("/console/models?import=empty", status_code=303)
    from api.queue import defer

    path = store_upload(Path(state.settings.import_dir).resolve(), name, content)
    elasticity = "hierarchical" if form.get("elasticity") == "hierarchical" else "pooled"
    defer(state.settings, IMPORT_TASK, path=str(path), elasticity=elasticity,
          dry_run=form.get("dry_run") == "1")  # fmt: skip
    return RedirectResponse("/console/models?import=queued", status_code=303)


@router.get("/models/{version}", response_class=HTMLResponse)
def model_page(version: int, request: Request, state: StateDep, session: SessionDep) -> Response:
    viewer = _gate(request, state, ANALYSTS)
    if not isinstance(viewer, Viewer):
        return viewer
    try:
        model = demand_models.get_model(session, version)
        rows = demand_models.elasticities(session, version) if model.status == "published" else []
    except (NotFound, DomainError):
        return _page(request, "forbidden.html", viewer, status=404, allowed=None,
                     missing=f"published model version {version}")  # fmt: skip
    by_category: dict[str, list[Any]] = {}
    for row in rows:
        by_category.setdefault(row.category, []).append(row)
    pictures = {
        category: intervals([r.segment for r in items], [r.mean for r in items],
                            [r.lower_90 for r in items], [r.upper_90 for r in items],
                            title=f"price coefficient by segment in {category}, 90 % intervals")
        for category, items in by_category.items()
    }  # fmt: skip
    return _page(request, "model.html", viewer, model=model, by_category=by_category,
                 pictures=pictures, change=_change_summary(model.diagnostics))  # fmt: skip


def _change_summary(diagnostics: dict[str, Any]) -> dict[str, Any] | None:
    """What a fit says about a detected change in demand, for the model page (None: no
    change point in force): since when and in which categories, the test that found it
    (when this fit's did), what
    the older outcomes count, and per category the fitted shift (intercept on the logit
    scale; elasticity as a factor, with its 90 % interval)."""
    since = diagnostics.get("change_since")
    own = diagnostics.get("change_by_category")
    own = {str(c): str(d) for c, d in own.items()} if isinstance(own, dict) else {}
    if not since and not own:
        return None
    # where each regime holds: every category (the others, when some moved on their own)
    where = ([{"scope": "every other category" if own else "every category", "since": str(since)}]
             if since else []) + [{"scope": c, "since": d} for c, d in sorted(own.items())]  # fmt: skip
    test = diagnostics.get("change_test")
    test = test if isinstance(test, dict) else {}
    shift = diagnostics.get("regime_shift")
    by_category = shift.get("by_category") if isinstance(shift, dict) else None
    rows = []
    for category, values in sorted(by_category.items() if isinstance(by_category, dict) else []):
        try:
            low, high = values.get("log_elasticity_90") or [values["log_elasticity"]] * 2
            rows.append({"category": str(category), "intercept": float(values["intercept"]),
                         "factor": math.exp(float(values["log_elasticity"])),
                         "factor_low": math.exp(float(low)), "factor_high": math.exp(float(high))})  # fmt: skip
        except (AttributeError, KeyError, TypeError, ValueError, OverflowError):
            continue  # a summary this version cannot read: leave the row out, keep the page
    return {"where": where, "weight_before": diagnostics.get("change_weight_before"),
            "p_value": test.get("p_value") if test.get("detected") else None, "rows": rows,
            "by_cusum": diagnostics.get("change_found_by") == "cusum"}  # fmt: skip


@router.get("/decisions", response_class=HTMLResponse)
def decisions_page(request: Request, state: StateDep, session: SessionDep,
                   sku: str | None = None) -> Response:  # fmt: skip
    viewer = _gate(request, state, ANALYSTS)
    if not isinstance(viewer, Viewer):
        return viewer
    since = utcnow() - timedelta(hours=1)
    page = decisions.list_decisions(session, sku=(sku or None) and sku[:64], since=since, limit=100)
    return _page(request, "decisions.html", viewer, page=page, sku=sku or "")


@router.get("/decisions/{decision_id}", response_class=HTMLResponse)
def decision_page(decision_id: str, request: Request, state: StateDep, session: SessionDep) -> Response:
    viewer = _gate(request, state, ANALYSTS)
    if not isinstance(viewer, Viewer):
        return viewer
    try:
        explanation = explanations.explain(session, uuid.UUID(decision_id), viewer.principal)
    except (ValueError, NotFound):
        return _page(request, "forbidden.html", viewer, status=404, allowed=None,
                     missing=f"decision {decision_id!r}")  # fmt: skip
    return _page(request, "decision.html", viewer, e=explanation)


@router.get("/dispersion", response_class=HTMLResponse)
def dispersion_page(request: Request, state: StateDep, session: SessionDep) -> Response:
    viewer = _gate(request, state, ANALYSTS)
    if not isinstance(viewer, Viewer):
        return viewer
    return _page(request, "dispersion.html", viewer, report=dispersion.price_dispersion(session))
