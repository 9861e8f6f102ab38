"""Guardrail versions: validate against the catalog, store, audit, and serve the active set."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.cache import TTLCache
from api.errors import FieldProblem, Invalid
from api.orm import GuardrailVersion, Product, utcnow
from api.schemas.guardrails import GuardrailSetIn, GuardrailsPublic
from api.security import Principal
from api.services.audit import SYSTEM, record_change
from pricing.guardrails import GuardrailError, GuardrailSet, ProductFacts, Rule
from pricing.money import MoneyError, from_minor, to_minor

__all__ = [
    "GuardrailCache",
    "active_guardrails",
    "put_guardrails",
]


def _facts(products: list[Product]) -> list[ProductFacts]:
    return [
        ProductFacts(p.sku, p.category, p.list_price_minor, p.unit_cost_minor) for p in products
    ]


def compile_rules(
    session: Session, body: GuardrailSetIn
) -> tuple[GuardrailSet, list[dict[str, Any]]]:
    """Check a proposed set against the catalog and turn it into a :class:`GuardrailSet`.

    Returns
    -------
    tuple
        The rule set (money in minor units) and its JSON form for storage.

    Raises
    ------
    Invalid
        Naming ``rules[i].field`` for unknown targets, absolute prices outside SKU
        scope, amounts that do not fit the currency, contradictory rules (both named), or
        a product left without any allowed price (the binding rules named).
    """
    products = list(session.scalars(select(Product).where(Product.active.is_(True))))
    by_sku = {p.sku: p for p in products}
    categories = {p.category for p in session.scalars(select(Product))}
    problems: list[FieldProblem] = []
    rules: list[Rule] = []
    stored: list[dict[str, Any]] = []
    names: dict[str, int] = {}
    for i, item in enumerate(body.rules):
        loc: list[str | int] = ["body", "rules", i]
        if item.scope == "global" and item.target is not None:
            problems.append(FieldProblem([*loc, "target"], "a global rule has no target"))
            continue
        if item.scope != "global" and item.target is None:
            problems.append(FieldProblem([*loc, "target"], f"a {item.scope} rule needs a target"))
            continue
        if item.scope == "sku" and item.target not in by_sku:
            problems.append(
                FieldProblem([*loc, "target"], f"unknown or inactive sku {item.target!r}")
            )
            continue
        if item.scope == "category" and item.target not in categories:
            problems.append(FieldProblem([*loc, "target"], f"unknown category {item.target!r}"))
            continue
        money: dict[str, int | None] = {"floor": None, "ceiling": None, "step": None}
        for name in money:
            value = getattr(item, name)
            if value is None:
                continue
            if item.scope != "sku" and name != "step":
                problems.append(
                    FieldProblem([*loc, name], f"{name} is an absolute price: set it on a sku rule")
                )
                continue
            currency = (
                by_sku[item.target].currency if item.scope == "sku" and item.target else "USD"
            )
            try:
                money[name] = to_minor(value, currency)
            except MoneyError as exc:
                problems.append(FieldProblem([*loc, name], str(exc)))
        rule = Rule(
            item.scope, item.target, floor=money["floor"], ceiling=money["ceiling"],
            min_margin=item.min_margin, max_discount=item.max_discount, max_increase=item.max_increase,
            max_change=item.max_change, ending=item.ending, step=money["step"], exclude=item.exclude,
            segment_gap=item.segment_gap,
        )  # fmt: skip
        rule_currency = (
            by_sku[item.target].currency if item.scope == "sku" and item.target else None
        )
        for field_name, message in rule.problems(rule_currency):
            problems.append(FieldProblem([*loc, field_name], message))
        if rule.name in names:
            problems.append(
                FieldProblem(
                    [*loc, "scope"], f"{rule.name} is already set by rules[{names[rule.name]}]"
                )
            )
        names.setdefault(rule.name, i)
        rules.append(rule)
        stored.append(item.model_dump(mode="json", exclude_none=True))
    if problems:
        raise Invalid(problems)
    try:
        compiled = GuardrailSet(rules=tuple(rules), kill_switch=body.kill_switch)
        compiled.check(_facts(products), {p.sku: p.currency for p in products})
    except GuardrailError as exc:
        # One conflict, one problem: at the first rule involved, naming the others too.
        locs: list[list[str | int]] = []
        message = str(exc)
        for name in exc.rules:
            rule_name, _, field_name = name.rpartition(".")
            if rule_name in names:
                locs.append(["body", "rules", names[rule_name], field_name])
                message = message.replace(
                    name, f"rules[{names[rule_name]}].{field_name} ({rule_name})"
                )
        first = locs[0] if locs else ["body", "rules"]
        raise Invalid(
            [FieldProblem(first, message, "guardrail_conflict", related=locs[1:])]
        ) from None
    return compiled, stored


def _public(row: GuardrailVersion) -> GuardrailsPublic:
    return GuardrailsPublic(
        version=row.id, effective_from=row.effective_from, created_at=row.created_at, created_by=row.created_by,
        kill_switch=row.kill_switch, rules=row.rules, note=row.note,
    )  # fmt: skip


def active_version(session: Session, at: datetime | None = None) -> GuardrailVersion | None:
    """The newest version already in effect at ``at`` (default now)."""
    return session.scalar(
        select(GuardrailVersion)
        .where(GuardrailVersion.effective_from <= (at or utcnow()))
        .order_by(GuardrailVersion.effective_from.desc(), GuardrailVersion.id.desc())
        .limit(1)
    )


def put_guardrails(
    session: Session, *, body: GuardrailSetIn, actor: Principal | None
) -> GuardrailsPublic:
    """Validate and store a new version (audited); a rejected change stores nothing."""
    with session.begin():
        _compiled, stored = compile_rules(session, body)
        before = active_version(session)
        row = GuardrailVersion(
            effective_from=body.effective_from or utcnow(), created_by=actor.name if actor is not None else SYSTEM,
            kill_switch=body.kill_switch, rules=stored, note=body.note,
        )  # fmt: skip
        session.add(row)
        session.flush()
        record_change(
            session, actor=actor, action="create", entity="guardrails", entity_id=str(row.id),
            before=_public(before).model_dump(mode="json") if before else None,
            after=_public(row).model_dump(mode="json"),
        )  # fmt: skip
        return _public(row)


def active_guardrails(session: Session) -> GuardrailsPublic | None:
    """The active version, or None when none was ever set."""
    row = active_version(session)
    return _public(row) if row is not None else None


def rules_from_stored(
    rows: list[dict[str, Any]], currencies: dict[str, str], kill_switch: bool
) -> GuardrailSet:
    """Rebuild a :class:`GuardrailSet` from a stored version (money back to minor units)."""
    rules = []
    for item in rows:
        target = item.get("target")
        currency = currencies.get(target or "", "USD")
        money = {k: to_minor(Decimal(item[k]), currency) if item.get(k) is not None else None
                 for k in ("floor", "ceiling", "step")}  # fmt: skip
        rules.append(Rule(
            item["scope"], target, floor=money["floor"], ceiling=money["ceiling"],
            min_margin=item.get("min_margin"), max_discount=item.get("max_discount"),
            max_increase=item.get("max_increase"), max_change=item.get("max_change"),
            ending=item.get("ending"), step=money["step"], exclude=item.get("exclude"),
            segment_gap=item.get("segment_gap"),
        ))  # fmt: skip
    return GuardrailSet(rules=tuple(rules), kill_switch=kill_switch)


def _load_active(session: Session) -> tuple[int | None, GuardrailSet]:
    row = active_version(session)
    if row is None:
        return None, GuardrailSet()
    skus = [r.get("target") for r in row.rules if r.get("scope") == "sku"]
    rows = session.execute(select(Product.sku, Product.currency).where(Product.sku.in_(skus)))
    currencies = {sku: currency for sku, currency in rows}
    return row.id, rules_from_stored(row.rules, currencies, row.kill_switch)


class GuardrailCache(TTLCache[tuple[int | None, GuardrailSet]]):
    """The active guardrails ``(version, rules)`` for the quote path, re-read at most every
    ``ttl`` seconds (version None and an empty set when none was ever set).

    A refresh first reads only the active version's id: versions never change once
    stored, so the rules are rebuilt only when another version takes effect.
    """

    def __init__(self, sessions: sessionmaker[Session], ttl: float = 1.0) -> None:
        super().__init__(sessions, self._load_if_changed, ttl)

    def _load_if_changed(self, session: Session) -> tuple[int | None, GuardrailSet]:
        if self._loaded and self._value is not None:
            now = utcnow()
            active = session.scalar(
                select(GuardrailVersion.id)
                .where(GuardrailVersion.effective_from <= now)
                .order_by(GuardrailVersion.effective_from.desc(), GuardrailVersion.id.desc())
                .limit(1)
            )
            if active == self._value[0]:
                return self._value
        return _load_active(session)


def money_text(minor: int, currency: str) -> str:
    """Minor units as a decimal string."""
    return str(from_minor(minor, currency))


def rules_for_version(session: Session, version: int) -> GuardrailSet | None:
    """The rules of one stored version (versions never change), or None if it does not exist."""
    row = session.get(GuardrailVersion, version)
    if row is None:
        return None
    skus = [r.get("target") for r in row.rules if r.get("scope") == "sku"]
    rows = session.execute(select(Product.sku, Product.currency).where(Product.sku.in_(skus)))
    return rules_from_stored(row.rules, {sku: currency for sku, currency in rows}, row.kill_switch)
