"""Promotions: what an offer gives, who may get it, and what it costs.

A :class:`Promotion` is pure data (the API stores and versions it); this module answers,
for one quote line, whether the promotion is eligible (:meth:`Promotion.ineligibility`),
the discount per unit at a candidate price (:meth:`Promotion.discount_minor`) and the
merchant's extra cost (:attr:`Promotion.cost_minor`, free shipping). Limits that depend
on the state of the world (budget left, redemptions, per-customer counts, pacing) arrive
as an :class:`Offer` built by the service inside the quote transaction.

All money is integer minor units of the promotion's currency.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["KINDS", "Offer", "Promotion"]

KINDS = ("percent_off", "amount_off", "free_shipping")


@dataclass(frozen=True)
class Promotion:
    """One promotion version.

    Attributes
    ----------
    key : str
        Identifier (also the model's promotion level for its lift g[k]).
    kind : {"percent_off", "amount_off", "free_shipping"}
    version : int
    percent_off : Decimal or None
        Percentage in (0, 100] for ``percent_off``.
    amount_off_minor : int or None
        Amount per unit for ``amount_off`` (never more than the price).
    shipping_cost_minor : int
        Merchant's cost per line for ``free_shipping`` (0 otherwise).
    currency : str or None
        Currency of every money field; a promotion with money applies only to SKUs priced
        in that currency.
    segments, categories, skus, channels : frozenset of str
        Eligibility; empty = any. A SKU qualifies if it is listed or its category is
        (when either list is given).
    min_cart_value_minor : int or None
        Smallest cart value at list prices (same currency) to qualify.
    starts_at, ends_at : datetime or None
        Validity window (UTC, end exclusive).
    budget_minor : int or None
        Money the promotion may give away in all (discounts and shipping borne).
    redemption_cap : int or None
        Most redemptions in all.
    per_customer_limit : int or None
        Most redemptions per customer per ``per_customer_period``.
    per_customer_period : {"day", "campaign"}
    exclusive : bool
        An exclusive promotion is never combined with another in the same cart.
    active : bool
    """

    key: str
    kind: str
    version: int = 1
    percent_off: Decimal | None = None
    amount_off_minor: int | None = None
    shipping_cost_minor: int = 0
    currency: str | None = None
    segments: frozenset[str] = frozenset()
    categories: frozenset[str] = frozenset()
    skus: frozenset[str] = frozenset()
    channels: frozenset[str] = frozenset()
    min_cart_value_minor: int | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    budget_minor: int | None = None
    redemption_cap: int | None = None
    per_customer_limit: int | None = None
    per_customer_period: str = "campaign"
    exclusive: bool = True
    active: bool = True

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "percent_off" and not (
            self.percent_off is not None and 0 < self.percent_off <= 100
        ):
            raise ValueError("percent_off must lie in (0, 100]")
        if self.kind == "amount_off" and not (
            self.amount_off_minor is not None and self.amount_off_minor > 0
        ):
            raise ValueError("amount_off must be positive")
        if self.per_customer_period not in ("day", "campaign"):
            raise ValueError("per_customer_period must be 'day' or 'campaign'")

    # ------------------------------------------------------------------ economics
    def discount_minor(self, price_minor: int) -> int:
        """Discount per unit at ``price_minor`` (half-up rounding; never above the price)."""
        if self.kind == "percent_off":
            assert self.percent_off is not None
            cut = (Decimal(price_minor) * self.percent_off / 100).quantize(
                Decimal(1), rounding=ROUND_HALF_UP
            )
            return min(int(cut), price_minor)
        if self.kind == "amount_off":
            assert self.amount_off_minor is not None
            return min(self.amount_off_minor, price_minor)
        return 0

    def discounts(self, prices: NDArray[np.int64]) -> NDArray[np.int64]:
        """:meth:`discount_minor` of each price, shape (n,), in exact integer arithmetic."""
        p = np.asarray(prices, dtype=np.int64)
        if self.kind == "percent_off":
            assert self.percent_off is not None
            milli = int(
                self.percent_off * 1000
            )  # thousandths of a percent (the API allows 3 decimals)
            if Decimal(milli) != self.percent_off * 1000:
                return np.array([self.discount_minor(int(x)) for x in p], dtype=np.int64)
            cut = (2 * p * milli + 100_000) // 200_000  # half up of p * milli / 100_000
        elif self.kind == "amount_off":
            assert self.amount_off_minor is not None
            cut = np.full_like(p, self.amount_off_minor)
        else:
            cut = np.zeros_like(p)
        out: NDArray[np.int64] = np.minimum(cut, p)
        return out

    @property
    def cost_minor(self) -> int:
        """Merchant's cost per line beyond the discount (free shipping), minor units."""
        return self.shipping_cost_minor if self.kind == "free_shipping" else 0

    @property
    def paced(self) -> bool:
        """Whether spend is paced: a money budget and an end date."""
        return self.budget_minor is not None and self.ends_at is not None

    @property
    def capped(self) -> bool:
        """Whether any hard limit needs the database's usage counters."""
        return (
            self.budget_minor is not None
            or self.redemption_cap is not None
            or self.per_customer_limit is not None
        )

    # ------------------------------------------------------------------ eligibility
    def ineligibility(
        self,
        *,
        segment: str,
        sku: str,
        category: str,
        currency: str,
        cart_value_minor: int,
        channel: str | None,
        now: datetime,
    ) -> str | None:
        """Why the promotion does not apply to this line, or None when it does."""
        if not self.active:
            return "inactive"
        if self.starts_at is not None and now < self.starts_at:
            return "not_started"
        if self.ends_at is not None and now >= self.ends_at:
            return "ended"
        if self.segments and segment not in self.segments:
            return "segment"
        if (self.skus or self.categories) and not (sku in self.skus or category in self.categories):
            return "product"
        if self.currency is not None and currency != self.currency:
            return "currency"
        if self.channels and (channel is None or channel not in self.channels):
            return "channel"
        if self.min_cart_value_minor is not None and cart_value_minor < self.min_cart_value_minor:
            return "min_cart_value"
        return None

    # ------------------------------------------------------------------ storage
    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (what the database stores); :meth:`from_dict` reverses it."""
        return {
            "key": self.key,
            "kind": self.kind,
            "version": self.version,
            "percent_off": None if self.percent_off is None else str(self.percent_off),
            "amount_off_minor": self.amount_off_minor,
            "shipping_cost_minor": self.shipping_cost_minor,
            "currency": self.currency,
            "segments": sorted(self.segments),
            "categories": sorted(self.categories),
            "skus": sorted(self.skus),
            "channels": sorted(self.channels),
            "min_cart_value_minor": self.min_cart_value_minor,
            "starts_at": None if self.starts_at is None else self.starts_at.isoformat(),
            "ends_at": None if self.ends_at is None else self.ends_at.isoformat(),
            "budget_minor": self.budget_minor,
            "redemption_cap": self.redemption_cap,
            "per_customer_limit": self.per_customer_limit,
            "per_customer_period": self.per_customer_period,
            "exclusive": self.exclusive,
            "active": self.active,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Promotion:
        """Read what :meth:`to_dict` wrote."""

        def when(value: Any) -> datetime | None:
            return None if value is None else datetime.fromisoformat(value)

        return cls(
            key=data["key"],
            kind=data["kind"],
            version=int(data.get("version", 1)),
            percent_off=None if data.get("percent_off") is None else Decimal(data["percent_off"]),
            amount_off_minor=data.get("amount_off_minor"),
            shipping_cost_minor=int(data.get("shipping_cost_minor") or 0),
            currency=data.get("currency"),
            segments=frozenset(data.get("segments") or ()),
            categories=frozenset(data.get("categories") or ()),
            skus=frozenset(data.get("skus") or ()),
            channels=frozenset(data.get("channels") or ()),
            min_cart_value_minor=data.get("min_cart_value_minor"),
            starts_at=when(data.get("starts_at")),
            ends_at=when(data.get("ends_at")),
            budget_minor=data.get("budget_minor"),
            redemption_cap=data.get("redemption_cap"),
            per_customer_limit=data.get("per_customer_limit"),
            per_customer_period=data.get("per_customer_period") or "campaign",
            exclusive=bool(data.get("exclusive", True)),
            active=bool(data.get("active", True)),
        )


@dataclass(frozen=True)
class Offer:
    """An eligible promotion for one line, with the limits the world imposes right now.

    Attributes
    ----------
    promotion : Promotion
    max_reserve_minor : int or None
        Budget still free for this line: a candidate price qualifies only if its
        discount × quantity + cost fits (None = no budget).
    pacing_rate_minor : float or None
        Expected promotion spend allowed per eligible decision (the LP's right-hand side),
        None when the promotion is not paced.
    """

    promotion: Promotion
    max_reserve_minor: int | None = None
    pacing_rate_minor: float | None = None

    def reserve_minor(self, discount_minor: int, quantity: int) -> int:
        """Budget an offer at this discount holds until its outcome (minor units)."""
        return discount_minor * quantity + self.promotion.cost_minor
