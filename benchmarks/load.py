"""Mixed load on the production layout: 2 API workers and 2 queue workers on PostgreSQL.

    python -m benchmarks.load                      # 3 minutes; writes docs/benchmarks.md (load)
    python -m benchmarks.load --seconds 30 --no-doc

On a fresh database on the local PostgreSQL (``PRICING_BENCH_POSTGRES_URL``): the demo
catalog, guardrails, promotions and experiment (``seed-demo``) and a synthetic 500-draw
posterior; ``pricing-engine serve --workers 2`` and two ``pricing-engine worker`` queue
workers. Then, for ``--seconds``:

- checkout clients (threads) quote 1-3 line carts for random customers and segments, with
  an ``Idempotency-Key``, and report every line's outcome (30 % bought), retrying as
  checkout should (the same key for a quote; an outcome until it is acknowledged);
- a merchandiser changes the guardrails (global ``max_discount`` 0.30 <-> 0.25) and a
  product's list price every few seconds;
- an analyst reads the decision log and the model versions;
- halfway through, ``refit --queue`` asks the queue workers for a refit (small sampler
  settings: ``PRICING_FIT_DRAWS``/``TUNE`` 300), which they run next to the online updates.

Afterwards, from the database: every decision a client received is logged, every
acknowledged outcome is stored exactly once with what was sent, no outcome is applied twice
to a posterior, and every logged price lies within the bounds of the guardrail version it
was decided under (recomputed with :meth:`pricing.guardrails.GuardrailSet.bounds` and the
line's anchor price). Errors are every non-2xx answer, counted before any retry.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.report import replace_section
from benchmarks.systems import (
    ENGINE_CLI,
    POSTGRES_URL,
    _env,
    demo_catalog,
    engine_server,
    machine,
    prepare_demo,
    stop,
)

BEGIN, END = "<!-- load:begin -->", "<!-- load:end -->"
GUARDRAILS = [0.30, 0.25]  # global max_discount, alternated by the merchandiser


@dataclass
class Tally:
    """What the clients saw (shared by the threads, under ``lock``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    received: set[str] = field(default_factory=set)
    acknowledged: dict[str, bool] = field(default_factory=dict)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    transport_errors: Counter[str] = field(default_factory=Counter)
    latencies: dict[str, list[float]] = field(default_factory=dict)

    def seen(self, kind: str, status: int, seconds: float) -> None:
        with self.lock:
            self.statuses[(kind, status)] += 1
            self.latencies.setdefault(kind, []).append(seconds)

    def errors(self) -> int:
        return sum(n for (_, status), n in self.statuses.items() if status >= 300) + sum(
            self.transport_errors.values()
        )


def _call(http: Any, tally: Tally, kind: str, method: str, url: str, **kw: Any) -> Any:
    started = time.perf_counter()
    try:
        response = http.request(method, url, **kw)
    except Exception as exc:  # a transport error is an error too
        with tally.lock:
            tally.transport_errors[f"{kind}: {type(exc).__name__}"] += 1
        return None
    tally.seen(kind, response.status_code, time.perf_counter() - started)
    return response


def _retry(http: Any, tally: Tally, kind: str, url: str, body: Any, headers: dict[str, str],
           ok: tuple[int, ...]) -> Any:  # fmt: skip
    for _ in range(30):
        response = _call(http, tally, kind, "POST", url, json=body, headers=headers)
        if response is not None and response.status_code in ok:
            return response
        if response is not None and response.status_code < 500 and response.status_code != 429:
            return None  # refused for good: counted as an error, not retried
        time.sleep(0.2)
    return None


def checkout(n: int, base: str, key: str, skus: list[str], segments: list[str], tally: Tally,
             stop_at: float) -> None:  # fmt: skip
    """One checkout client: quote, then report each line's outcome."""
    import httpx

    rng = random.Random(n)
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(timeout=30) as http:
        i = 0
        while time.monotonic() < stop_at:
            i += 1
            lines = [{"sku": sku, "quantity": 1} for sku in rng.sample(skus, rng.randint(1, 3))]
            body = {"customer_id": f"load-{n}-{i}", "segment": rng.choice(segments), "lines": lines}
            quote = _retry(http, tally, "quote", f"{base}/v1/quotes", body,
                           {**headers, "Idempotency-Key": str(uuid.uuid4())}, (201,))  # fmt: skip
            if quote is None:
                continue
            served = quote.json()["lines"]
            with tally.lock:
                tally.received.update(line["decision_id"] for line in served)
            for line in served:
                bought = rng.random() < 0.3
                outcome = {"decision_id": line["decision_id"], "converted": bought,
                           "quantity": 1 if bought else 0,
                           "revenue": line["final_price"] if bought else "0.00"}  # fmt: skip
                done = _retry(http, tally, "outcome", f"{base}/v1/outcomes", outcome, headers,
                              (200, 201))  # fmt: skip
                if done is not None:
                    with tally.lock:
                        tally.acknowledged[line["decision_id"]] = bought


def merchandiser(base: str, key: str, tally: Tally, stop_at: float) -> int:
    """Guardrail and list-price edits every few seconds; returns the number of edits."""
    import httpx

    from api.cli import DEMO_GUARDRAILS

    headers = {"Authorization": f"Bearer {key}"}
    product = {"name": "Earl grey", "category": "tea", "list_price": "8.99", "unit_cost": "3.35",
               "currency": "USD"}  # fmt: skip
    edits = 0
    with httpx.Client(timeout=30) as http:
        while time.monotonic() < stop_at:
            rules = json.loads(json.dumps(DEMO_GUARDRAILS["rules"]))
            rules[0]["max_discount"] = GUARDRAILS[edits % 2]
            body = {"note": f"load edit {edits}", "rules": rules}
            _call(http, tally, "guardrails", "PUT", f"{base}/v1/guardrails", json=body, headers=headers)
            price = "8.99" if edits % 2 else "9.19"
            _call(http, tally, "product", "PUT", f"{base}/v1/products/TEA-002",
                  json={**product, "list_price": price}, headers=headers)  # fmt: skip
            edits += 1
            time.sleep(3.0)
    return edits


def analyst(base: str, key: str, tally: Tally, stop_at: float) -> None:
    """Reads of the decision log and the model versions every 2 s."""
    import httpx

    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(timeout=30) as http:
        while time.monotonic() < stop_at:
            _call(http, tally, "decisions", "GET", f"{base}/v1/decisions?limit=50", headers=headers)
            _call(http, tally, "models", "GET", f"{base}/v1/models", headers=headers)
            time.sleep(2.0)


def wait_for_refit(url: str, started: float, limit: float) -> dict[str, Any]:
    """Wait until a snapshot besides the synthetic one exists (the queued refit's result)."""
    from sqlalchemy import select

    from api.db import make_engine
    from api.orm import ModelSnapshot

    engine = make_engine(url)
    try:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                row = conn.execute(
                    select(ModelSnapshot.status, ModelSnapshot.method, ModelSnapshot.message)
                    .where(ModelSnapshot.method != "synthetic").order_by(ModelSnapshot.id.desc())
                ).first()  # fmt: skip
            if row is not None:
                return {"status": row[0], "method": row[1], "message": row[2],
                        "done_at": time.monotonic() - started}  # fmt: skip
            time.sleep(2.0)
        return {"status": f"not finished within {limit:.0f} s"}
    finally:
        engine.dispose()


def verify(url: str, tally: Tally) -> dict[str, Any]:
    """The database's side of the story: lost, doubled, and guardrail checks."""
    from sqlalchemy import func, select

    from api.db import make_engine, make_session_factory
    from api.orm import AppliedDecision, Decision, ModelSnapshot, Outcome, Product
    from api.services.guardrails import rules_for_version
    from pricing.guardrails import ProductFacts

    engine = make_engine(url)
    out: dict[str, Any] = {}
    try:
        with make_session_factory(engine)() as session:
            logged = {str(i) for i in session.scalars(select(Decision.id))}
            stored = Counter(str(d) for d in session.scalars(select(Outcome.decision_id)))
            converted = dict(session.execute(select(Outcome.decision_id, Outcome.converted)).all())
            doubled = session.scalar(
                select(func.count()).select_from(
                    select(AppliedDecision.snapshot_id, AppliedDecision.decision_id)
                    .group_by(AppliedDecision.snapshot_id, AppliedDecision.decision_id)
                    .having(func.count() > 1).subquery()
                )
            )  # fmt: skip
            applied = session.scalar(select(func.count()).select_from(AppliedDecision)) or 0
            models = session.execute(
                select(ModelSnapshot.id, ModelSnapshot.status, ModelSnapshot.method,
                       ModelSnapshot.created_at).order_by(ModelSnapshot.id)
            ).all()  # fmt: skip
            category = dict(session.execute(select(Product.sku, Product.category)).all())
            rules: dict[int, Any] = {}
            violations: Counter[str] = Counter()
            checked = 0
            for d in session.scalars(select(Decision)):
                trail = d.guardrail_trail or {}
                version = trail.get("guardrail_version")
                if version is None:
                    continue
                if version not in rules:
                    rules[version] = rules_for_version(session, int(version))
                guard = rules[version]
                if guard is None or guard.kill_switch:
                    continue
                facts = ProductFacts(d.sku, category[d.sku], d.list_price_minor, d.unit_cost_minor,
                                     trail.get("anchor_price_minor"))  # fmt: skip
                low, high, _ = guard.bounds(facts)
                checked += 1
                if not low <= d.price_minor <= high:
                    violations[d.policy] += 1
    finally:
        engine.dispose()
    converted_s = {str(k): v for k, v in converted.items()}
    out["received"] = len(tally.received)
    out["missing"] = len(tally.received - logged)
    out["acknowledged"] = len(tally.acknowledged)
    out["lost"] = sum(1 for d in tally.acknowledged if d not in stored)
    out["stored_twice"] = sum(1 for n in stored.values() if n > 1)
    out["wrong"] = sum(1 for d, sent in tally.acknowledged.items()
                       if d in converted_s and converted_s[d] != sent)  # fmt: skip
    out["applied_twice"] = int(doubled or 0)
    out["applied"] = int(applied)
    out["logged"] = len(logged)
    out["guardrail_checked"] = checked
    out["guardrail_violations"] = dict(violations)
    out["models"] = [(int(i), s, m) for i, s, m, _ in models]
    return out


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q) * 1000) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--seconds", type=float, default=180.0, help="length of the load (s)")
    parser.add_argument("--clients", type=int, default=12, help="checkout client threads")
    parser.add_argument("--no-doc", action="store_true", help="print only")
    args = parser.parse_args(argv)
    from sqlalchemy import make_url, text

    from api.db import make_engine

    load_avg = __import__("os").getloadavg()
    print(f"load benchmark: {machine(load_avg)}", flush=True)
    admin = make_engine(POSTGRES_URL).execution_options(isolation_level="AUTOCOMMIT")
    name = f"pricing_load_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    workdir = Path(tempfile.mkdtemp(prefix="pricing-load-"))
    env = {"PRICING_UPDATER_INTERVAL_SECONDS": "2", "PRICING_FIT_DRAWS": "300",
           "PRICING_FIT_TUNE": "300", "PRICING_REFIT_EVERY_SECONDS": "86400"}  # fmt: skip
    workers: list[subprocess.Popen[bytes]] = []
    api = None
    tally = Tally()
    refit: dict[str, Any] = {}
    try:
        _db, keys = prepare_demo(workdir, url)
        segments, sku_category = demo_catalog()
        skus = list(sku_category)
        api = engine_server("load-api", url, workdir, workers=2)
        api.env.update(env)
        api.start().wait()
        for i in range(2):
            with open(workdir / f"worker{i}.log", "wb") as log:
                workers.append(subprocess.Popen(
                    [str(ENGINE_CLI), "worker", "--database-url", url, "--name", f"load{i}"],
                    stdout=log, stderr=subprocess.STDOUT, env=_env(**env), start_new_session=True,
                ))  # fmt: skip
        started = time.monotonic()
        stop_at = started + args.seconds
        threads = [threading.Thread(target=checkout, args=(n, api.url, keys["checkout"], skus,
                                                           segments, tally, stop_at))
                   for n in range(args.clients)]  # fmt: skip
        edits: list[int] = []
        threads.append(threading.Thread(target=lambda: edits.append(
            merchandiser(api.url, keys["merchandiser"], tally, stop_at))))  # fmt: skip
        threads.append(threading.Thread(target=analyst, args=(api.url, keys["analyst"], tally, stop_at)))
        for t in threads:
            t.start()
        time.sleep(args.seconds / 2)
        refit["queued_at"] = time.monotonic() - started
        queued = subprocess.run([str(ENGINE_CLI), "refit", "--queue", "--database-url", url],
                                capture_output=True, text=True, env=_env(**env), timeout=120)  # fmt: skip
        refit["queue_output"] = (queued.stdout + queued.stderr).strip().splitlines()[-1:]
        print(f"  refit queued at {refit['queued_at']:.0f} s: {refit['queue_output']}", flush=True)
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
        print(f"  load over after {elapsed:.0f} s; waiting for the refit", flush=True)
        refit.update(wait_for_refit(url, started, limit=600.0))
        print(f"  refit: {refit.get('status')} after {refit.get('done_at', float('nan')):.0f} s", flush=True)
        time.sleep(5)  # a last online-update pass
    finally:
        if api is not None:
            api.stop()
        for w in workers:
            stop(w)
    try:
        result = verify(url, tally)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    result.update(seconds=elapsed, errors=tally.errors(), edits=edits[0] if edits else 0,
                  statuses=dict(tally.statuses), transport=dict(tally.transport_errors),
                  refit=refit)  # fmt: skip
    section = report(result, tally, args, load_avg)
    print(section)
    if not args.no_doc:
        replace_section(BEGIN, END, section)
        print("wrote the load section of docs/benchmarks.md")
    failed = (result["errors"] or result["missing"] or result["lost"] or result["stored_twice"]
              or result["wrong"] or result["applied_twice"] or result["guardrail_violations"])  # fmt: skip
    return 1 if failed else 0


def report(result: dict[str, Any], tally: Tally, args: argparse.Namespace, load_avg: Any) -> str:
    """The docs/benchmarks.md section."""
    import datetime as dt

    seconds = result["seconds"]
    kinds = sorted(tally.latencies)
    rows = [
        f"| {kind} | {len(tally.latencies[kind]):,} | {len(tally.latencies[kind]) / seconds:,.1f} | "
        f"{_percentile(tally.latencies[kind], 50):.1f} | {_percentile(tally.latencies[kind], 99):.1f} | "
        f"{sum(n for (k, s), n in tally.statuses.items() if k == kind and s >= 300)} |"
        for kind in kinds
    ]
    published = [m for m in result["models"] if m[1] == "published"]
    checks = [
        ("non-2xx answers and transport errors", result["errors"]),
        ("decisions a client received that are not in the log", result["missing"]),
        ("acknowledged outcomes not stored", result["lost"]),
        ("outcomes stored twice", result["stored_twice"]),
        ("stored outcomes that differ from what was acknowledged", result["wrong"]),
        ("outcomes applied twice to a posterior", result["applied_twice"]),
        ("logged prices outside their guardrail version's bounds",
         sum(result["guardrail_violations"].values())),
    ]  # fmt: skip
    lines = [
        BEGIN,
        "## Mixed load: 2 API workers and 2 queue workers on PostgreSQL",
        "",
        f"- date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; machine: {machine(load_avg)}",
        f"- command: `python -m benchmarks.load --seconds {args.seconds:g} --clients {args.clients}`",
        "- layout: `pricing-engine serve --workers 2` and two `pricing-engine worker` queue workers on one "
        "PostgreSQL database on 127.0.0.1, all on this 2-core machine with the load generator; demo catalog "
        "(30 SKUs x 5 segments), guardrails, promotions and experiment; a synthetic 500-draw posterior; "
        "online updates every 2 s",
        f"- load for {seconds:.0f} s: {args.clients} checkout clients (quotes of 1-3 lines with an "
        "`Idempotency-Key`, then every line's outcome), a merchandiser editing the guardrails and a list "
        f"price every 3 s ({result['edits']} rounds), an analyst reading the log and the models every 2 s; "
        f"`refit --queue` at {result['refit'].get('queued_at', float('nan')):.0f} s: "
        f"{result['refit'].get('status')} ({result['refit'].get('method', '')}) "
        f"{result['refit'].get('done_at', float('nan')):.0f} s after the start",
        "",
        "| check | count |",
        "|---|---:|",
        *[f"| {name} | {count:,} |" for name, count in checks],
        "",
        f"{result['received']:,} decisions received by clients ({result['logged']:,} logged), "
        f"{result['acknowledged']:,} outcomes acknowledged, {result['applied']:,} applications to posteriors; "
        f"{result['guardrail_checked']:,} logged prices checked against their guardrail version. Model "
        f"versions at the end: {len(result['models'])} ({len(published)} published: "
        f"{', '.join(f'{i} ({m})' for i, _, m in published)}).",
        "",
        "| request | count | per second | p50 ms | p99 ms | non-2xx |",
        "|---|---:|---:|---:|---:|---:|",
        *rows,
        END,
    ]
    if result["transport"]:
        lines.insert(-1, f"\nTransport errors: {result['transport']}")
    return "\n".join(lines)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main())
