"""Quotes: load the cart's context from memory, price it with a pure function, group-commit.

:class:`QuoteService` splits a quote into three parts with one job each:

1. :meth:`QuoteService.load`: validate the cart against the in-memory catalog and gather
   what pricing needs from the caches (guardrails, promotions and this worker's leases,
   daily price anchors, sticky quotes). Nothing is read from the database;
2. :func:`pricing.cart.price_cart`: decide every line (no session, no ORM);
3. the worker's :class:`~api.writer.GroupWriter` commits the decision rows with others
   in one transaction; the response is released only after that commit. When the
   writer refuses an offer (a customer limit or lease taken meanwhile by another worker)
   the cart is priced again without it.

Sticky quotes: the worker's own map answers for the customers it served. A SKU the map
cannot vouch for is decided afresh and marked *unverified*; the writer checks all of a
batch's unverified pairs against the log in one indexed read inside its transaction. If
the customer does hold a live decision for one (another worker's, or from before this
worker started), nothing is written: the request reads the customer's decisions
(:func:`api.hot.sticky.load_customer`) and prices the cart again, repeating them.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import ROUND_DOWN, Decimal
from typing import Any

from starlette.concurrency import run_in_threadpool

from api.cache import TTLCache
from api.errors import FieldProblem, Invalid
from api.hot.catalog import CatalogCache
from api.hot.offer_book import LeaseSpend, PromotionBook, period_key
from api.hot.prices import PriceAggregates
from api.hot.sticky import StickyMap, load_customer
from api.orm import time_ordered_id, utcnow
from api.schemas.quotes import QuoteLinePublic, QuoteRequest, QuoteResponse
from api.services.experiments import QuoteExperiment
from api.services.quote_writes import (
    IdempotencyClaim,
    OfferClaim,
    OfferRejectedError,
    QuoteJob,
    StickyConflictError,
)
from api.writer import GroupWriter
from pricing.cart import CartItem, PricedLine, StickyQuote, price_cart
from pricing.context import ContextSchema
from pricing.guardrails import GuardrailSet
from pricing.guardrails import ProductFacts as GuardrailFacts
from pricing.jurisdictions import DEFAULT_RULES, NEUTRAL, JurisdictionRule, JurisdictionRules, known
from pricing.money import from_minor
from pricing.offers import OfferBook
from pricing.policy import PricePolicy
from pricing.promotions import Promotion

__all__ = ["QuoteService"]

log = logging.getLogger("pricing.quotes")

#: Times a cart is priced again when the writer refuses one of its offers.
MAX_ATTEMPTS = 3


@dataclass
class _Cart:
    """What :meth:`QuoteService.load` gathers for one quote."""

    request: QuoteRequest
    segment: str
    now: datetime
    items: list[CartItem]
    allowed: bool
    promotions: list[Promotion]
    sticky: dict[str, StickyQuote]
    missing: list[str]
    #: The API key asking (logged with the decisions: its explanations are its to read).
    key_id: uuid.UUID | None = None
    #: The jurisdiction the quote is priced under (its own or the configured default).
    jurisdiction: str | None = None
    rule: JurisdictionRule = NEUTRAL
    #: Why personal data may not set prices (None: it may).
    not_personal: str | None = None
    #: The request's context with the declared calendar features filled in
    #: (:meth:`pricing.context.ContextSchema.with_calendar`): what is priced on and logged.
    features: Mapping[str, object] = field(default_factory=dict)


class QuoteService:
    """Prices carts for one worker (see the module docstring).

    Parameters
    ----------
    catalog, prices, promotions, sticky
        The worker's in-memory state (api/hot/).
    writer : GroupWriter
        The worker's writer.
    read_sessions : sessionmaker
        For the customer look-up.
    guardrails : TTLCache of (version, GuardrailSet)
        The active guardrails (the anchor of a SKU that has not sold lately is its
        non-personalized price under them).
    context_schema : TTLCache of (version, ContextSchema)
    default_segment : str
    ttl, outcome_window : timedelta
        Quote validity and outcome window.
    """

    def __init__(
        self,
        *,
        catalog: CatalogCache,
        prices: PriceAggregates,
        promotions: PromotionBook,
        sticky: StickyMap,
        writer: GroupWriter,
        read_sessions: Any,
        guardrails: TTLCache[tuple[int | None, GuardrailSet]],
        context_schema: TTLCache[tuple[int | None, ContextSchema]],
        default_segment: str,
        ttl: timedelta,
        outcome_window: timedelta,
        jurisdictions: Any | None = None,
        calendar_zone: tzinfo = UTC,
    ) -> None:
        self.catalog = catalog
        #: Cache of ``(version, JurisdictionRules)``; None: the shipped defaults.
        self.jurisdictions = jurisdictions
        self.prices = prices
        self.promotions = promotions
        self.sticky = sticky
        self.writer = writer
        self.read_sessions = read_sessions
        self.guardrails = guardrails
        self.context_schema = context_schema
        self.default_segment = default_segment
        self.ttl = ttl
        self.outcome_window = max(outcome_window, ttl)
        #: Where the merchant's days begin (a declared ``weekday`` is filled in this zone).
        self.calendar_zone = calendar_zone
        self._read_engine = read_sessions.kw["bind"]
        self._reference_rules: GuardrailSet | None = None
        self._reference: dict[tuple[str, int, int], int | None] = {}

    @classmethod
    def build(
        cls,
        sessions: Any,
        *,
        guardrails: TTLCache[tuple[int | None, GuardrailSet]],
        context_schema: TTLCache[tuple[int | None, ContextSchema]],
        default_segment: str = "default",
        ttl: timedelta = timedelta(minutes=15),
        outcome_window: timedelta = timedelta(hours=1),
        lease_seconds: float = 30.0,
        max_rows: int = 2000,
        jurisdictions: Any | None = None,
        write_timeout: float | None = None,
        linger: float | None = 0.0,
        calendar_zone: tzinfo = UTC,
        writer_process: bool = False,
    ) -> QuoteService:
        """A service with fresh in-memory state and its own writer (not yet loaded).

        Call :meth:`warm` before the first quote. ``writer_process``: the writer's
        transactions run in a child process (:mod:`api.writer_process`), unless the
        database lives in this process's memory. ``linger`` None: 0 with a writer process,
        1 ms on the writer thread (``PRICING_WRITER_LINGER_SECONDS``).
        """
        from api.db import read_only

        reader = read_only(sessions)
        process = _writer_process(sessions) if writer_process else None
        if linger is None:
            linger = 0.0 if process is not None else 0.001
        return cls(
            catalog=CatalogCache(reader), prices=PriceAggregates(reader),
            promotions=PromotionBook(sessions, reader, lease_seconds=lease_seconds),
            sticky=StickyMap(),
            writer=GroupWriter(sessions, max_rows=max_rows, wait_seconds=write_timeout,
                               linger_seconds=linger, process=process),
            read_sessions=reader, guardrails=guardrails, context_schema=context_schema,
            default_segment=default_segment, ttl=ttl, outcome_window=outcome_window,
            jurisdictions=jurisdictions, calendar_zone=calendar_zone,
        )  # fmt: skip

    def warm(self) -> None:
        """Load the catalog, price aggregates and promotions (and take leases); start the writer."""
        self.catalog.refresh(force=True)
        self.prices.refresh()
        self.promotions.refresh()
        self.writer.start()

    def close(self) -> None:
        """Stop the writer and return this worker's leases."""
        self.writer.stop()
        self.promotions.release_all()

    async def aclose(self) -> None:
        """:meth:`close` on the event loop that the writer is bound to."""
        await self.writer.aclose()
        self.writer.stop()  # the writer thread, if any
        self.promotions.release_all()

    # ------------------------------------------------------------------ 1. load
    def _anchor(self, rules: GuardrailSet, item: CartItem, today: Any) -> int | None:
        anchor = self.prices.anchor(item.sku, today)
        if anchor is not None:
            return anchor
        if rules is not self._reference_rules:
            self._reference_rules, self._reference = rules, {}
        key = (item.sku, item.list_price_minor, item.unit_cost_minor)
        if key not in self._reference:
            facts = GuardrailFacts(
                item.sku, item.category, item.list_price_minor, item.unit_cost_minor
            )
            self._reference[key] = rules.reference_price(facts)
        return self._reference[key]

    def load(
        self,
        request: QuoteRequest,
        experiment: QuoteExperiment | None,
        key_id: uuid.UUID | None = None,
    ) -> _Cart:
        """Validate the cart and gather its context from memory (errors name the fields)."""
        segment = request.segment or self.default_segment
        products, segments = self.catalog.products, self.catalog.segments
        problems = []
        if not segments.get(segment, False):
            state = "unknown" if segment not in segments else "inactive"
            problems.append(FieldProblem(["body", "segment"], f"{state} segment {segment!r}"))
        for index, line in enumerate(request.lines):
            product = products.get(line.sku)
            if product is None or not product.active:
                state = "unknown" if product is None else "inactive"
                problems.append(
                    FieldProblem(["body", "lines", index, "sku"], f"{state} sku {line.sku!r}")
                )
        rules = self._jurisdiction_rules()
        if request.jurisdiction is not None and not known(request.jurisdiction):
            problems.append(FieldProblem(["body", "jurisdiction"],
                                         f"unknown jurisdiction {request.jurisdiction!r}"))  # fmt: skip
        if problems:
            raise Invalid(problems)
        jurisdiction = rules.code_for(request.jurisdiction)
        rule = rules.resolve(jurisdiction)
        now = utcnow()
        today = now.date()
        guardrails = self.guardrails.get()[1]
        items = []
        for line in request.lines:
            p = products[line.sku]
            item = CartItem(p.sku, line.quantity, p.category, p.currency, p.list_price_minor,
                            p.unit_cost_minor)  # fmt: skip
            items.append(CartItem(item.sku, item.quantity, item.category, item.currency,
                                  item.list_price_minor, item.unit_cost_minor,
                                  self._anchor(guardrails, item, today)))  # fmt: skip
        consent = request.consent is None or request.consent.personalization
        allowed = consent and rule.personalization
        not_personal = (None if allowed else
                        "customer_opted_out" if not consent else "jurisdiction_no_personalization")  # fmt: skip
        offers_allowed = allowed and not (experiment is not None and experiment.control)
        promotions = list(self.promotions.active) if offers_allowed else []
        sticky, missing = (
            self.sticky.lookup(request.customer_id, [i.sku for i in items], now)
            if allowed else ({}, [])
        )  # fmt: skip
        features = self.context_schema.get()[1].with_calendar(request.context, now, self.calendar_zone)
        return _Cart(request, segment, now, items, allowed, promotions, sticky, missing, key_id,
                     jurisdiction, rule, not_personal, features)  # fmt: skip

    def _jurisdiction_rules(self) -> JurisdictionRules:
        if self.jurisdictions is None:
            return DEFAULT_RULES
        rules: JurisdictionRules = self.jurisdictions.get()[1]
        return rules

    def _compliance(
        self, cart: _Cart, item: CartItem, price: int, discount: int, personalized: bool
    ) -> tuple[str | None, int | None, Decimal | None]:
        """The line's disclosure, EU reference price and announced reduction (percent)."""
        rule = cart.rule
        disclosure = rule.disclosure if personalized else None
        final = price - discount
        if not rule.prior_price_rule or (discount == 0 and final >= item.list_price_minor):
            return disclosure, None, None
        reference = self.prices.prior_low(item.sku, cart.now.date(), include_today=False)
        if reference is None:
            reference = item.list_price_minor  # nothing sold in the 30 days: the list price
        percent = None
        if final < reference:
            percent = (Decimal(reference - final) * 100 / Decimal(reference)).quantize(
                Decimal("0.1"), rounding=ROUND_DOWN
            )
        return disclosure, reference, percent

    def full_lookup(self, cart: _Cart) -> None:
        """Read the customer's unexpired decisions for the SKUs the map could not answer
        (after the writer found one of them live); they are then all verified."""
        with self._read_engine.connect() as connection:
            found = load_customer(
                connection, customer=cart.request.customer_id, skus=cart.missing, now=cart.now
            )
        cart.sticky.update(found)
        cart.missing = []
        if found:
            self.sticky.put(cart.request.customer_id, list(found.items()))

    # ------------------------------------------------------------------ 2. decide
    def decide(
        self,
        cart: _Cart,
        *,
        policy: PricePolicy,
        experiment: QuoteExperiment | None,
        guardrail_version: int | None,
        excluded: frozenset[str] = frozenset(),
    ) -> QuoteJob:
        """Price the cart (pure) and build the writer's job; nothing is written yet."""
        request, now = cart.request, cart.now
        promotions = [p for p in cart.promotions if p.key not in excluded]
        used = self.promotions.customer_used(cart.request.customer_id, promotions, now)
        allowances, leases = self.promotions.allowances(promotions, used, now)
        book = OfferBook(promotions, allowances) if promotions else None
        schema = self.context_schema.get()[1]
        lines = price_cart(
            cart.items, policy=policy, segment=cart.segment, now=now,
            personalization_allowed=cart.allowed, features=cart.features, sticky=cart.sticky,
            book=book, channel=request.channel,
        )  # fmt: skip
        return self._job(cart, lines, book, leases, schema, experiment, guardrail_version)

    def _job(
        self,
        cart: _Cart,
        lines: list[PricedLine],
        book: OfferBook | None,
        leases: dict[str, uuid.UUID | None],
        schema: ContextSchema,
        experiment: QuoteExperiment | None,
        guardrail_version: int | None,
    ) -> QuoteJob:
        request, now = cart.request, cart.now
        quote_id = time_ordered_id()
        expires_at = now + self.ttl
        deadline = now + self.outcome_window
        context_key = schema.key(cart.features)
        context = dict(cart.features)
        variant = experiment.label if experiment is not None else None
        learn = not (experiment is not None and experiment.holdout)
        by_key = {p.key: p for p in cart.promotions}
        # Say which experiment arm decided the line (a control arm's list price included).
        arms = tuple(f"experiment:{k}:{v}" for k, v in experiment.assignments) if experiment else ()
        rows: list[dict[str, Any]] = []
        out_lines: list[QuoteLinePublic] = []
        offers: list[OfferClaim] = []
        spends: list[LeaseSpend] = []
        sticky_new: list[tuple[str, StickyQuote]] = []
        observed: list[tuple[str, datetime, int, int]] = []
        for line in lines:
            item = line.item
            if line.repeat is not None:
                previous = line.repeat
                out_lines.append(_public_line(
                    line.index, item, previous.decision_id, previous.price_minor,
                    previous.propensity, previous.personalized, previous.fallback,
                    list(previous.reasons), previous.promotion, previous.discount_minor,
                    *self._compliance(cart, item, previous.price_minor, previous.discount_minor,
                                      previous.personalized),
                ))  # fmt: skip
                continue
            decision = line.decision
            assert decision is not None
            reasons = [*decision.reasons, *arms]
            if cart.not_personal == "jurisdiction_no_personalization":
                reasons = [cart.not_personal if r == "customer_opted_out" else r for r in reasons]
            disclosure, reference, percent = self._compliance(
                cart, item, decision.price_minor, decision.discount_minor, decision.personalized
            )
            decision_id = time_ordered_id()
            line_expires = line.expires_at or expires_at
            period = None
            lease_id = None
            if decision.promotion is not None:
                promotion = by_key[decision.promotion]
                lease_id = leases.get(decision.promotion)
                period = period_key(promotion, now)
                offers.append(OfferClaim(decision.promotion, decision.reserve_minor, lease_id,
                                         request.customer_id, period,
                                         promotion.per_customer_limit))  # fmt: skip
                spends.append(
                    self.promotions.spend(decision.promotion, lease_id, decision.reserve_minor)
                )
            rows.append({
                "id": decision_id, "quote_id": quote_id, "line_no": line.index, "created_at": now,
                "expires_at": line_expires, "customer_id": request.customer_id,
                "segment": cart.segment, "sku": item.sku, "quantity": item.quantity,
                "currency": item.currency, "list_price_minor": item.list_price_minor,
                "price_minor": decision.price_minor, "unit_cost_minor": item.unit_cost_minor,
                "promotion": decision.promotion, "promotion_version": decision.promotion_version,
                "discount_minor": decision.discount_minor,
                "promotion_cost_minor": decision.promotion_cost_minor,
                "promotion_reserved_minor": decision.reserve_minor, "outcome_deadline": deadline,
                "context_key": context_key, "channel": request.channel, "settled": False,
                "redeemed": False, "hold_open": decision.promotion is not None,
                "promotion_period": period, "lease_id": lease_id,
                "propensity": decision.propensity, "personalized": decision.personalized,
                "policy": decision.policy, "model_version": decision.model_version,
                "experiment_variant": variant, "learn": learn,
                "jurisdiction": cart.jurisdiction, "context": context, "key_id": cart.key_id,
                "guardrail_trail": {
                    "reasons": reasons, "fallback": decision.fallback,
                    "guardrail_version": guardrail_version, "candidates": decision.candidates,
                    "anchor_price_minor": item.anchor_price_minor,
                    "disclosure": disclosure, "reference_price_minor": reference,
                },
            })  # fmt: skip
            final = decision.price_minor - decision.discount_minor
            observed.append((item.sku, now, decision.price_minor, final))
            public = _public_line(
                line.index, item, decision_id, decision.price_minor, decision.propensity,
                decision.personalized, decision.fallback, list(reasons),
                decision.promotion, decision.discount_minor, disclosure, reference, percent,
            )  # fmt: skip
            public._policy = decision.policy
            out_lines.append(public)
            if cart.allowed:
                sticky_new.append((item.sku, StickyQuote(
                    decision_id, cart.segment, item.quantity, decision.price_minor,
                    decision.personalized, decision.model_version, line_expires, False,
                    decision.propensity, decision.fallback, tuple(reasons),
                    decision.promotion, decision.discount_minor,
                )))  # fmt: skip
        for sku, at, price, final in observed:
            self.prices.observe(sku, at, price, final)
        assignments: list[dict[str, Any]] = []
        exposures: list[dict[str, Any]] = []
        if experiment is not None and experiment.assignments:
            assignments = [{"decision_id": r["id"], "experiment_key": key, "variant": variant_name}
                           for r in rows for key, variant_name in experiment.assignments]  # fmt: skip
            exposures = [{"experiment_key": key, "unit_id": request.customer_id,
                          "variant": variant_name, "first_seen_at": now}
                         for key, variant_name in experiment.assignments]  # fmt: skip
        eligible = dict(book.eligible) if book is not None else {}
        response = QuoteResponse.model_construct(
            quote_id=quote_id, customer_id=request.customer_id, segment=cart.segment,
            expires_at=expires_at, personalized=any(x.personalized for x in out_lines),
            lines=out_lines,
        )  # fmt: skip
        customer = request.customer_id

        def on_commit() -> None:
            for offer in offers:
                if offer.customer_limit is not None and offer.period is not None:
                    self.promotions.note_claim(offer.key, customer, offer.period)
            for spend in spends:
                self.promotions.settle_spend(spend, committed=True)
            self.promotions.note_eligible(eligible)
            self.sticky.put(customer, sticky_new)

        def on_failure() -> None:
            for spend in spends:
                self.promotions.settle_spend(spend, committed=False)

        missing = set(cart.missing)
        unverified = [(customer, line.item.sku) for line in lines
                      if line.repeat is None and line.item.sku in missing]  # fmt: skip
        return QuoteJob(rows, assignments, exposures, offers, observed, eligible, now, response,
                        on_commit, on_failure, unverified)  # fmt: skip

    def _note_rejection(self, cart: _Cart, exc: OfferRejectedError) -> None:
        """Remember customers at their limit, so later quotes do not offer it again."""
        by_key = {p.key: p for p in cart.promotions}
        for key in exc.limits:
            if key in by_key:
                self.promotions.note_exhausted(key, cart.request.customer_id,
                                               period_key(by_key[key], cart.now))  # fmt: skip

    # ------------------------------------------------------------------ 3. write
    def _attempts(
        self, cart: _Cart, policy: PricePolicy, experiment: QuoteExperiment | None,
        guardrail_version: int | None,
    ) -> Generator[QuoteJob, OfferRejectedError | None, None]:  # fmt: skip
        """Jobs to write until one is accepted: each refusal drops the promotions it names;
        the last attempt offers no promotion at all (it cannot be refused)."""
        excluded: frozenset[str] = frozenset()
        for attempt in range(MAX_ATTEMPTS + 1):
            if attempt == MAX_ATTEMPTS:
                excluded = frozenset(p.key for p in cart.promotions)
            refused = yield self.decide(cart, policy=policy, experiment=experiment,
                                        guardrail_version=guardrail_version, excluded=excluded)  # fmt: skip
            if refused is None:
                return
            self._note_rejection(cart, refused)
            excluded = excluded | refused.keys

    async def create(
        self,
        request: QuoteRequest,
        *,
        policy: PricePolicy,
        experiment: QuoteExperiment | None = None,
        guardrail_version: int | None = None,
        idempotency: IdempotencyClaim | None = None,
        key_id: uuid.UUID | None = None,
    ) -> QuoteResponse:
        """Price and log a cart; returns once its decisions are committed.

        Raises
        ------
        Invalid
            Naming ``segment`` or ``lines[i].sku``.
        WriteUnavailableError
            The decisions could not be committed; nothing was stored.
        IdempotentReplayError
            A committed quote holds ``idempotency``'s key (nothing was written).
        """
        cart = self.load(request, experiment, key_id)
        attempts = self._attempts(cart, policy, experiment, guardrail_version)
        job = next(attempts)
        while True:
            job.idempotency = idempotency
            try:
                response: QuoteResponse = await self.writer.write_async(job)
                return response
            except OfferRejectedError as refused:
                job = attempts.send(refused)
            except StickyConflictError:
                if not cart.missing:  # pragma: no cover - verified pairs are never checked
                    raise
                await run_in_threadpool(self.full_lookup, cart)
                attempts = self._attempts(cart, policy, experiment, guardrail_version)
                job = next(attempts)

    def create_sync(
        self,
        request: QuoteRequest,
        *,
        policy: PricePolicy,
        experiment: QuoteExperiment | None = None,
        guardrail_version: int | None = None,
    ) -> QuoteResponse:
        """:meth:`create` for callers without an event loop (simulations, the CLI)."""
        cart = self.load(request, experiment)
        attempts = self._attempts(cart, policy, experiment, guardrail_version)
        job = next(attempts)
        while True:
            try:
                response: QuoteResponse = self.writer.write(job)
                return response
            except OfferRejectedError as refused:
                job = attempts.send(refused)
            except StickyConflictError:
                if not cart.missing:  # pragma: no cover - verified pairs are never checked
                    raise
                self.full_lookup(cart)
                attempts = self._attempts(cart, policy, experiment, guardrail_version)
                job = next(attempts)


def _public_line(
    index: int, item: CartItem, decision_id: Any, price: int, propensity: float,
    personalized: bool, fallback: bool, reasons: list[str], promotion: str | None, discount: int,
    disclosure: str | None = None, reference: int | None = None, percent: Decimal | None = None,
) -> QuoteLinePublic:  # fmt: skip
    currency = item.currency
    # Every value is built here with its field's type (money from integer minor units):
    # nothing to validate, so the model is constructed directly (validation was ~10 us a
    # line on the quote path).
    return QuoteLinePublic.model_construct(
        line_no=index, sku=item.sku, quantity=item.quantity, currency=currency,
        list_price=from_minor(item.list_price_minor, currency), price=from_minor(price, currency),
        decision_id=decision_id, propensity=propensity, personalized=personalized,
        fallback=fallback, reasons=reasons, promotion=promotion,
        discount=from_minor(discount, currency), final_price=from_minor(price - discount, currency),
        disclosure=disclosure,
        reference_price=from_minor(reference, currency) if reference is not None else None,
        reduction_percent=percent,
    )  # fmt: skip


def _writer_process(sessions: Any) -> Any:
    """A :class:`~api.writer_process.WriterProcess` for the sessions' engine, or None when
    another process cannot open it (an in-memory database, an engine not from ``make_engine``)."""
    from sqlalchemy import make_url

    from api.db import engine_recipe
    from api.writer_process import WriterProcess

    recipe = engine_recipe(sessions.kw.get("bind"))
    if recipe is None:
        return None
    url = make_url(recipe.url)
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        return None
    return WriterProcess(recipe)
