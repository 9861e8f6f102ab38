"""Two API worker processes on one database, sixteen concurrent clients: the promotion caps
hold between them, the running totals agree with the log, and slices of idle or dead
workers come back."""

from __future__ import annotations

import random
import signal
import threading
import time
from collections import Counter
from decimal import Decimal

import httpx
from sqlalchemy import func, select

from api.orm import Decision, Outcome, Product, PromotionLease, PromotionUsage, Segment
from api.schemas.promotions import PromotionIn
from api.security import Role
from api.services.keys import create_key
from api.services.promotions import put_promotion
from tests.api.test_promotions_api import strong_promotion_posterior
from tests.factories import publish
from tests.servers import servers

LEASE_SECONDS = 3.0


def _setup(sessions) -> str:
    with sessions() as session, session.begin():
        for key in ("default", "loyalty"):
            session.add(Segment(key=key, name=key))
        for sku, price in (("TEA-1", 1000), ("TEA-2", 800)):
            session.add(Product(sku=sku, name=sku, category="tea", list_price_minor=price,
                                unit_cost_minor=300, currency="USD"))  # fmt: skip
    with sessions() as session:
        body = PromotionIn.model_validate({
            "name": "Spring", "type": "percent_off", "percent_off": "10", "currency": "USD",
            "budget": "9.00", "redemption_cap": 8, "per_customer_limit": 1,
        })  # fmt: skip
        put_promotion(session, key="SPRING", body=body, actor=None)
    publish(sessions, strong_promotion_posterior())
    with sessions() as session:
        return create_key(session, name="checkout", role=Role.CHECKOUT, actor=None).key


def _open_leases(sessions) -> int:
    with sessions() as session:
        return int(session.scalar(
            select(func.count()).select_from(PromotionLease).where(PromotionLease.closed_at.is_(None))
        ) or 0)  # fmt: skip


def test_two_workers_and_sixteen_clients_never_exceed_the_caps(db_url, sessions):
    key = _setup(sessions)
    headers = {"Authorization": f"Bearer {key}"}
    statuses: Counter[int] = Counter()
    offered: list[dict] = []
    lock = threading.Lock()
    lease_env = {"PRICING_PROMOTION_LEASE_SECONDS": str(LEASE_SECONDS),
                 "PRICING_REFRESH_SECONDS": "0.2", "PRICING_SWEEP_SECONDS": "0.5"}  # fmt: skip
    with servers(db_url, 2, **lease_env) as workers:
        bases = [b for b, _ in workers]

        def client(n: int) -> None:
            rng = random.Random(n)
            with httpx.Client(timeout=30) as http:
                for i in range(12):
                    customer = f"c{rng.randrange(40)}"  # customers come back: per-customer limit
                    sku = rng.choice(["TEA-1", "TEA-2"])
                    body = {"customer_id": customer, "lines": [{"sku": sku}]}
                    response = http.post(f"{bases[(n + i) % 2]}/v1/quotes", json=body, headers=headers)
                    with lock:
                        statuses[response.status_code] += 1
                    if response.status_code != 201:
                        continue
                    line = response.json()["lines"][0]
                    if line["promotion"] is not None:
                        with lock:
                            offered.append({"customer": customer, **line})
                        if rng.random() < 0.5:  # some buy, with the discount
                            outcome = {"decision_id": line["decision_id"], "converted": True,
                                       "quantity": 1, "revenue": line["final_price"]}  # fmt: skip
                            http.post(f"{bases[i % 2]}/v1/outcomes", json=outcome, headers=headers)

        threads = [threading.Thread(target=client, args=(n,)) for n in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert statuses == {201: 16 * 12}, statuses
        # Kill one worker with its lease; the other goes idle.
        workers[0][1].send_signal(signal.SIGKILL)
        workers[0][1].wait(timeout=10)
        deadline = time.monotonic() + LEASE_SECONDS * 2 + 10
        while _open_leases(sessions) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _open_leases(sessions) == 0  # the dead worker's and the idle one's came back

    with sessions() as session:
        promoted = list(session.scalars(select(Decision).where(Decision.promotion == "SPRING")))
        usage = session.get(PromotionUsage, "SPRING")
        spent = session.scalar(
            select(func.coalesce(func.sum(Outcome.discount_minor), 0))
            .join(Decision, Decision.id == Outcome.decision_id).where(Decision.promotion == "SPRING")
        )  # fmt: skip
    assert offered and len(promoted) == len({o["decision_id"] for o in offered})
    assert len(promoted) <= 8
    held = sum(d.promotion_reserved_minor for d in promoted if d.hold_open)
    assert sum(d.promotion_reserved_minor for d in promoted) <= 900
    per_customer = Counter(d.customer_id for d in promoted)
    assert max(per_customer.values()) <= 1
    assert usage.spent_minor == spent and usage.redemptions == sum(d.redeemed for d in promoted)
    assert (usage.held_minor, usage.open_offers) == (held, sum(d.hold_open for d in promoted))
    # Nothing is allocated beyond what was spent and what open offers hold.
    assert usage.allocated_minor == usage.spent_minor + usage.held_minor
    assert usage.allocated_offers == usage.redemptions + usage.open_offers
    assert Decimal(usage.spent_minor) <= Decimal(900)
