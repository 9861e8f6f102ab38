"""Rows written on the driver (api.services.raw_sql) read back through the ORM exactly as
SQLAlchemy would have stored them, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from api.orm import Decision, time_ordered_ids
from api.services.raw_sql import RawSQL, table_columns


def _row(**extra):
    now = datetime(2026, 12, 4, 23, 0, 0, 123456, tzinfo=UTC)
    return {"id": uuid.uuid4(), "quote_id": uuid.uuid4(), "line_no": 0, "created_at": now,
            "expires_at": now.astimezone(timezone(timedelta(hours=2))), "customer_id": "c-ü",
            "segment": "default", "sku": "TEA-1", "quantity": 2, "currency": "USD",
            "list_price_minor": 1000, "price_minor": 950, "unit_cost_minor": 400,
            "propensity": 0.125, "personalized": True, "policy": "thompson",
            "context": {"device": "mobile", "n": 1.5},
            "guardrail_trail": {"reasons": ["a", "b"], "fallback": None}, **extra}  # fmt: skip


def test_a_decision_written_on_the_driver_reads_back_as_the_orm_wrote_it(catalog, sessions):
    columns = table_columns(Decision.__table__)
    full = _row(promotion=None, outcome_deadline=datetime(2026, 12, 5, tzinfo=UTC),
                lease_id=uuid.uuid4(), key_id=None, hold_open=False)  # fmt: skip
    sparse = _row()  # columns left out take their defaults (or NULL), as a Core insert would
    with sessions() as session, session.begin():
        assert RawSQL.of(session).insert_rows(session, "decisions", columns, [full, sparse]) == 2
    with sessions() as session:
        got = {d.id: d for d in session.scalars(select(Decision))}
    a, b = got[full["id"]], got[sparse["id"]]
    assert a.created_at == full["created_at"] and a.created_at.tzinfo is not None
    assert a.expires_at == full["expires_at"]  # the same instant, stored in UTC
    assert a.outcome_deadline == full["outcome_deadline"] and a.lease_id == full["lease_id"]
    assert a.context == full["context"] and a.guardrail_trail == full["guardrail_trail"]
    assert (a.customer_id, a.propensity, a.personalized, a.key_id) == ("c-ü", 0.125, True, None)
    assert b.promotion is None and b.discount_minor == 0 and b.settled is False and b.learn is True
    assert b.context_key == "" and b.outcome_deadline is None


def test_a_naive_timestamp_is_refused():
    with pytest.raises(ValueError, match="naive"):
        RawSQL("sqlite").timestamp(datetime(2026, 12, 4))


def test_timestamps_are_remembered_by_instant_and_a_naive_one_is_still_refused():
    """The SQLite text is kept per value: the same instant in another zone gives the same
    text, and a naive value with the same wall time is refused, not matched."""
    raw = RawSQL("sqlite")
    utc = datetime(2026, 12, 4, 23, 0, 0, 123456, tzinfo=UTC)
    assert raw.timestamp(utc) == "2026-12-04 23:00:00.123456"
    assert raw.timestamp(utc) == "2026-12-04 23:00:00.123456"  # remembered
    plus_two = utc.astimezone(timezone(timedelta(hours=2)))
    assert raw.timestamp(plus_two) == "2026-12-04 23:00:00.123456"
    assert raw.timestamp(datetime(2026, 12, 5, 1, tzinfo=timezone(timedelta(hours=2)))) == (
        "2026-12-04 23:00:00.000000")
    with pytest.raises(ValueError, match="naive"):
        raw.timestamp(utc.replace(tzinfo=None))


def test_time_ordered_ids_are_version_7_sorted_by_millisecond_and_distinct():
    ids = time_ordered_ids(1000)
    assert len(set(ids)) == 1000
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids)
    later = time_ordered_ids(1)[0]
    assert later.int >> 80 >= max(i.int >> 80 for i in ids)  # the 48-bit millisecond prefix


def test_ids_drawn_from_many_threads_and_a_forked_child_never_repeat():
    import os
    import threading

    from api.orm import _ENTROPY

    # More ids than one bulk draw of entropy holds, from 4 threads at once.
    per_thread = _ENTROPY.CHUNK // 10
    found: list[list[uuid.UUID]] = [[] for _ in range(4)]

    def draw(k: int) -> None:
        for _ in range(per_thread // 50):
            found[k].extend(time_ordered_ids(50))

    threads = [threading.Thread(target=draw, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [i for part in found for i in part]
    assert len(set(ids)) == len(ids) == 4 * (per_thread // 50) * 50
    # A forked child must not hand out the bytes left in the parent's buffer.
    time_ordered_ids(1)  # the parent's buffer holds unused bytes now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read)
        os.write(write, b"".join(i.bytes for i in time_ordered_ids(20)))
        os._exit(0)
    os.close(write)
    child = b""
    while chunk := os.read(read, 4096):
        child += chunk
    os.close(read)
    os.waitpid(pid, 0)
    parent = time_ordered_ids(20)
    child_ids = [uuid.UUID(bytes=child[i : i + 16]) for i in range(0, len(child), 16)]
    assert len(child_ids) == 20
    # The random parts (the low 74 bits of each) differ between parent and child.
    mask = (1 << 74) - 1
    assert not {i.int & mask for i in parent} & {i.int & mask for i in child_ids}
