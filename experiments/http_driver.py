"""End-to-end driver: simulated customers against a running engine over HTTP.

Each visitor of the :class:`~experiments.simulator.Market` asks ``POST /v1/quotes`` for
one SKU, decides with the market's true purchase probability at the price and promotion
served, and the outcome goes back through ``POST /v1/outcomes/batch`` — the loop checkout
runs in production. Learning happens where it does in production: run the server with
``serve --updater`` (or a ``pricing-engine worker``), or pass ``between`` to step an
updater yourself (the tests do).

Works with any client that has httpx's ``get``/``post``/``put`` (``httpx.Client`` with a
``base_url``, or FastAPI's ``TestClient``).

Examples
--------
>>> import httpx                                                          # doctest: +SKIP
>>> client = httpx.Client(base_url="http://127.0.0.1:8000")               # doctest: +SKIP
>>> setup(client, market, admin_key)                                      # doctest: +SKIP
>>> result = drive(client, market, checkout_key, visitors=10_000, seed=1)  # doctest: +SKIP
>>> result.expected_share_of_oracle                                       # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast

import numpy as np

from experiments.simulator import Market

__all__ = ["DriveResult", "drive", "setup"]


class Client(Protocol):
    """The part of httpx's client interface the driver uses."""

    def get(self, url: str, **kwargs: Any) -> Any: ...
    def post(self, url: str, **kwargs: Any) -> Any: ...
    def put(self, url: str, **kwargs: Any) -> Any: ...


def _money(minor: int) -> str:
    return f"{minor // 100}.{minor % 100:02d}"


def _check(response: Any, what: str) -> Any:
    if response.status_code >= 400:
        raise RuntimeError(f"{what}: HTTP {response.status_code}: {response.text[:300]}")
    return response.json() if response.content else None


def setup(client: Client, market: Market, admin_key: str) -> None:
    """Load the market into the engine: segments, SKUs, promotions, the context schema (when
    the market has context features) and guardrails whose price range is the simulator's
    candidate range (USD, two decimals)."""
    headers = {"Authorization": f"Bearer {admin_key}"}
    if market.context_features:
        _check(
            client.put("/v1/context-schema", json=market.context_schema(), headers=headers),
            "context schema",
        )
    for segment in market.segments:
        _check(
            client.put(f"/v1/segments/{segment}", json={"name": segment}, headers=headers), segment
        )
    products = [
        {"sku": sku, "name": sku, "category": market.categories[int(market.sku_category[j])],
         "list_price": _money(int(market.list_price_minor[j])),
         "unit_cost": _money(int(market.unit_cost_minor[j])), "currency": "USD"}
        for j, sku in enumerate(market.skus)
    ]  # fmt: skip
    _check(client.post("/v1/products:import", json=products, headers=headers), "catalog import")
    for spec in market.promotions:
        body: dict[str, Any] = {
            "name": spec.key,
            "type": spec.kind,
            "currency": "USD",
            "exclusive": True,
        }
        if spec.kind == "percent_off":
            body["percent_off"] = f"{spec.percent_off:.2f}"
        elif spec.kind == "amount_off":
            body["amount_off"] = _money(spec.amount_off_minor)
        else:
            body["shipping_cost"] = _money(spec.shipping_cost_minor)
        _check(client.put(f"/v1/promotions/{spec.key}", json=body, headers=headers), spec.key)
    low, high = min(market.ladder), max(market.ladder)
    rules = {
        "rules": [
            {
                "scope": "global",
                "max_discount": round(1 - low, 6),
                "max_increase": round(high - 1, 6),
            }
        ]
    }
    _check(client.put("/v1/guardrails", json=rules, headers=headers), "guardrails")


@dataclass(frozen=True)
class DriveResult:
    """What the engine earned over HTTP, against the simulator's references.

    All money in minor units; ``expected_*`` are the true expected profits of the actions
    served (no purchase noise), ``oracle_expected`` the best candidate's per visitor.
    """

    visitors: int
    purchases: int
    realized_profit: int
    expected_profit: float
    oracle_expected: float
    static_expected: float
    promotions_served: int
    curve: list[tuple[int, float]]

    @property
    def expected_share_of_oracle(self) -> float:
        """Expected profit of what was served / the oracle's."""
        return self.expected_profit / self.oracle_expected if self.oracle_expected else float("nan")


def drive(
    client: Client,
    market: Market,
    checkout_key: str,
    *,
    visitors: int,
    seed: int,
    outcome_batch: int = 50,
    between: Callable[[int], None] | None = None,
    every: int = 500,
) -> DriveResult:
    """Send ``visitors`` simulated customers through quote → purchase → outcome.

    Parameters
    ----------
    between : callable, optional
        Called with the visitor count every ``every`` visitors, after pending outcomes are
        flushed (e.g. to step an updater in-process).
    """
    headers = {"Authorization": f"Bearer {checkout_key}"}
    segment_idx, sku_idx = market.visitors(visitors, seed)
    context_idx = market.contexts(visitors, seed)
    contexts = [market.context_values(x) for x in range(market.n_contexts)]
    draws = np.random.default_rng([seed, 7]).random(visitors)
    promotion_index = {spec.key: k for k, spec in enumerate(market.promotions)}
    table = market.context_expected_profit_table  # (X, S, J, A)
    oracle = table.max(axis=3)
    pending: list[dict[str, Any]] = []
    purchases = realized = promotions = 0
    expected = oracle_sum = static_sum = 0.0
    curve: list[tuple[int, float]] = []

    def flush() -> None:
        if pending:
            _check(
                client.post(
                    "/v1/outcomes/batch", json={"outcomes": list(pending)}, headers=headers
                ),
                "outcomes",
            )
            pending.clear()

    for t in range(visitors):
        s, j, x = int(segment_idx[t]), int(sku_idx[t]), int(context_idx[t])
        body: dict[str, Any] = {
            "customer_id": f"sim-{seed}-{t}",
            "segment": market.segments[s],
            "lines": [{"sku": market.skus[j]}],
        }
        if contexts[x]:
            body["context"] = contexts[x]
        line = _check(client.post("/v1/quotes", json=body, headers=headers), "quote")["lines"][0]
        price = round(float(line["price"]) * 100)
        k = promotion_index.get(line["promotion"], -1) if line["promotion"] else -1
        promotions += k >= 0
        p_buy = float(market.conversion_probability(s, j, price, k, x))
        bought = bool(draws[t] < p_buy)
        margin = int(market.margin(j, price, k))
        expected += p_buy * margin
        oracle_sum += float(oracle[x, s, j])
        static_sum += float(
            table[x, s, j, market.action_index(j, int(market.list_price_minor[j]), -1)]
        )
        if bought:
            purchases += 1
            realized += margin
        outcome: dict[str, Any] = {"decision_id": line["decision_id"], "converted": bought}
        if bought:
            outcome |= {"quantity": 1, "revenue": line["final_price"]}
        pending.append(outcome)
        if len(pending) >= outcome_batch:
            flush()
        if (t + 1) % every == 0:
            flush()
            curve.append((t + 1, expected / oracle_sum))
            if between is not None:
                between(t + 1)
    flush()
    return DriveResult(
        visitors, purchases, realized, expected, oracle_sum, static_sum, promotions, curve
    )


def main(argv: list[str] | None = None) -> int:
    """Drive a running server with simulated customers (``python -m experiments.http_driver``).

    With ``--admin-key`` the market's catalog, segments, promotions, context schema and
    guardrails are loaded first (:func:`setup`); learning is the server's own (run it with
    ``serve --updater`` or a ``pricing-engine worker``). Prints the expected profit of what
    was served as a share of the oracle's, every ``--every`` visitors and at the end.
    """
    import argparse
    import json

    import httpx
    from tqdm import tqdm

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the server's base URL")
    parser.add_argument("--checkout-key", required=True, help="API key with the checkout role")
    parser.add_argument("--admin-key", help="admin key: load the market into the server first")
    parser.add_argument("--visitors", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1, help="the visitor stream's seed")
    parser.add_argument("--market-seed", type=int, default=1)
    for name, default in (("segments", 5), ("skus", 10), ("categories", 2), ("promotions", 2),
                          ("context-features", 0), ("outcome-batch", 50), ("every", 500)):  # fmt: skip
        parser.add_argument(f"--{name}", type=int, default=default)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    market = Market.random(
        args.segments, args.skus, args.categories, args.promotions, args.market_seed,
        n_context_features=args.context_features,
    )  # fmt: skip
    with httpx.Client(base_url=args.url, timeout=30.0) as http:
        client = cast(Client, http)  # httpx's methods take fixed keywords, not **kwargs
        if args.admin_key:
            setup(client, market, args.admin_key)
        bar = tqdm(total=args.visitors, desc="visitors", disable=args.json)

        def between(t: int) -> None:
            bar.update(t - bar.n)

        result = drive(
            client, market, args.checkout_key, visitors=args.visitors, seed=args.seed,
            outcome_batch=args.outcome_batch, between=between, every=args.every,
        )  # fmt: skip
        bar.close()
    static_share = (
        result.static_expected / result.oracle_expected if result.oracle_expected else float("nan")
    )
    summary = {
        "visitors": result.visitors,
        "purchases": result.purchases,
        "promotions_served": result.promotions_served,
        "realized_profit_minor": result.realized_profit,
        "expected_share_of_oracle": result.expected_share_of_oracle,
        "static_share_of_oracle": static_share,
        "curve": result.curve,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        for t, share in result.curve:
            print(f"after {t:>8,} visitors: {100 * share:5.1f} % of the oracle's expected profit")
        print(
            f"{result.visitors:,} visitors, {result.purchases:,} purchases, "
            f"{result.promotions_served:,} promotions served; expected profit "
            f"{100 * result.expected_share_of_oracle:.1f} % of the oracle's "
            f"(list price: {100 * static_share:.1f} %)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
