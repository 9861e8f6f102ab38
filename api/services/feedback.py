"""The decision log as bandit feedback, in the Open Bandit Pipeline's conventions.

One round per logged decision whose reward is known: an outcome was reported (late ones
included: evaluation, unlike learning, uses what really happened), or the outcome window
closed without one (reward 0, as the learning default). Decisions still inside their
window without an outcome are left out: their reward is unknown.

Arrays (``feedback.npz``)
-------------------------
reward : float, (n_rounds,)
    Profit of the decision in currency units: revenue - unit cost x units - promotion cost
    when it converted, else 0.
conversion : int, (n_rounds,)
action : int, (n_rounds,)
    Index into ``metadata["actions"]``: a (price / list price, promotion) pair.
position : int, (n_rounds,)
    Always 0 (each quote line is its own round; ``len_list`` = 1).
pscore : float, (n_rounds,)
    The logged propensity of the served action.
context : float, (n_rounds, n_segments + n_context_columns)
    One-hot segment, then the declared context features encoded as the model sees them.
forced : bool, (n_rounds,)
    Rows not chosen by a stochastic policy (sticky repeats, kill switch, opt-outs,
    fallbacks, controls): propensity 1 by construction; most OPE analyses drop them.
sku, segment : int, (n_rounds,)
    Indices into ``metadata["skus"]`` / ``metadata["segments"]``.
decision_id : str, (n_rounds,)
created_at : str, (n_rounds,) ISO 8601 UTC.
"""

from __future__ import annotations

import io
import json
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.orm import Decision, Outcome, utcnow
from api.services.context import current_schema
from pricing.money import CURRENCY_EXPONENTS

__all__ = ["bandit_feedback", "feedback_zip", "write_feedback"]


def bandit_feedback(
    session: Session,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 1_000_000,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Arrays and metadata of the decision log (see the module docstring).

    Parameters
    ----------
    since, until : datetime, optional
        Decision time window (UTC, ``until`` exclusive).
    limit : int
        Most rounds exported (oldest first).
    """
    now = utcnow()
    query = (
        select(Decision, Outcome)
        .outerjoin(Outcome, Outcome.decision_id == Decision.id)
        .order_by(Decision.created_at, Decision.id)
        .limit(limit)
    )
    if since is not None:
        query = query.where(Decision.created_at >= since)
    if until is not None:
        query = query.where(Decision.created_at < until)
    _version, schema = current_schema(session)
    actions: dict[tuple[float, str], int] = {}
    segments: dict[str, int] = {}
    skus: dict[str, int] = {}
    rows: list[tuple[Any, ...]] = []
    currencies: set[str] = set()
    for decision, outcome in session.execute(query):
        if outcome is None and (
            decision.outcome_deadline is None or decision.outcome_deadline > now
        ):
            continue
        ratio = round(
            (decision.price_minor - decision.discount_minor) / decision.list_price_minor, 4
        )
        action = actions.setdefault((ratio, decision.promotion or ""), len(actions))
        scale = 10 ** CURRENCY_EXPONENTS.get(decision.currency, 2)
        currencies.add(decision.currency)
        converted = bool(outcome is not None and outcome.converted)
        profit = 0.0
        if converted and outcome is not None:
            profit = (outcome.revenue_minor - decision.unit_cost_minor * outcome.quantity
                      - decision.promotion_cost_minor) / scale  # fmt: skip
        forced = decision.propensity >= 1.0 or not decision.personalized
        rows.append((
            profit, int(converted), action, decision.propensity,
            segments.setdefault(decision.segment, len(segments)), skus.setdefault(decision.sku, len(skus)),
            schema.encode_key(decision.context_key), forced, str(decision.id),
            decision.created_at.isoformat(),
        ))  # fmt: skip
    n = len(rows)
    width = len(schema.columns)
    context = np.zeros((n, len(segments) + width))
    for i, row in enumerate(rows):
        context[i, row[4]] = 1.0
        context[i, len(segments) :] = row[6]
    arrays: dict[str, np.ndarray] = {
        "reward": np.array([r[0] for r in rows], dtype=float),
        "conversion": np.array([r[1] for r in rows], dtype=np.int64),
        "action": np.array([r[2] for r in rows], dtype=np.int64),
        "position": np.zeros(n, dtype=np.int64),
        "pscore": np.array([r[3] for r in rows], dtype=float),
        "context": context,
        "forced": np.array([r[7] for r in rows], dtype=bool),
        "segment": np.array([r[4] for r in rows], dtype=np.int64),
        "sku": np.array([r[5] for r in rows], dtype=np.int64),
        "decision_id": np.array([r[8] for r in rows], dtype=str),
        "created_at": np.array([r[9] for r in rows], dtype=str),
    }
    metadata = {
        "format": "obp-bandit-feedback/1",
        "n_rounds": n,
        "n_actions": len(actions),
        "len_list": 1,
        "actions": [{"index": i, "price_ratio": ratio, "promotion": promo or None}
                    for (ratio, promo), i in sorted(actions.items(), key=lambda kv: kv[1])],
        "segments": list(segments),
        "skus": list(skus),
        "context_columns": [f"segment={s}" for s in segments] + list(schema.columns),
        "reward": "profit per decision in currency units (0 without a conversion)",
        "currencies": sorted(currencies),
        "generated_at": now.isoformat(),
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "notes": "rows with forced=true were not chosen by a stochastic policy (propensity 1)",
    }  # fmt: skip
    return arrays, metadata


def feedback_zip(arrays: dict[str, np.ndarray], metadata: dict[str, Any]) -> bytes:
    """``feedback.npz`` and ``feedback.json`` in one ZIP archive."""
    npz = io.BytesIO()
    np.savez_compressed(npz, **arrays)  # type: ignore[arg-type]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("feedback.npz", npz.getvalue())
        archive.writestr("feedback.json", json.dumps(metadata, indent=2))
    return out.getvalue()


def write_feedback(sessions: Any, out: Path) -> dict[str, Any]:
    """Write the log as ``out/feedback.npz`` and ``out/feedback.json``.

    Parameters
    ----------
    sessions : sessionmaker
        Sessions on the engine's database (read only).
    out : Path
        Directory, created if missing.

    Returns
    -------
    dict
        ``files`` written, ``n_rounds`` and ``n_actions``.
    """
    from api.db import read_only

    out.mkdir(parents=True, exist_ok=True)
    with read_only(sessions)() as session:
        arrays, metadata = bandit_feedback(session)
    np.savez_compressed(out / "feedback.npz", **arrays)  # type: ignore[arg-type]
    (out / "feedback.json").write_text(json.dumps(metadata, indent=2))
    return {"files": [str(out / "feedback.npz"), str(out / "feedback.json")],
            "n_rounds": metadata["n_rounds"], "n_actions": metadata["n_actions"]}  # fmt: skip
