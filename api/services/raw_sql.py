"""Driver-level (DBAPI) statements for the group writer's hottest rows.

SQLAlchemy's per-value processing (a ``uuid.UUID`` built for every id read, a timestamp
parsed by regular expression, a bind processor per value written) cost the outcome writer
more than the database did: about 60 % of a 1,000-outcome batch. The few statements that
run once per row at ingestion rates are therefore issued on the session's own DBAPI
connection, inside the same transaction, with values converted here exactly as SQLAlchemy
stores them:

- SQLite: a UUID as its 32 hex digits (``Uuid`` on SQLite is ``CHAR(32)``), a timestamp
  as naive UTC text ``YYYY-MM-DD HH:MM:SS.ffffff`` (what ``DateTime`` writes there);
- PostgreSQL (psycopg 3): native ``uuid`` and ``timestamptz`` values, and arrays, so that
  a whole batch is one statement (``unnest`` for inserts, ``= ANY`` for reads).

Everything else keeps to SQLAlchemy; a test compares the two paths column by column.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

__all__ = ["RawSQL"]

#: Ids per ``IN`` list on SQLite (well under its 32,766 bound variables).
_CHUNK = 5000


@dataclass(frozen=True, slots=True)
class RawSQL:
    """Statements on the session's DBAPI connection, in its current transaction.

    Parameters
    ----------
    dialect : {"sqlite", "postgresql"}
        The database's SQLAlchemy dialect name.
    """

    dialect: str

    @classmethod
    def of(cls, session: Session) -> RawSQL:
        """The raw access for the database ``session`` is bound to."""
        return cls(session.connection().dialect.name)

    @property
    def postgres(self) -> bool:
        """True on PostgreSQL, False on SQLite."""
        return self.dialect == "postgresql"

    # ------------------------------------------------------------------ values
    def uuid(self, value: uuid.UUID) -> Any:
        """A UUID as the driver takes it (hex text on SQLite)."""
        return value if self.postgres else value.hex

    def timestamp(self, value: datetime) -> Any:
        """A timezone-aware timestamp as the driver takes it (naive UTC text on SQLite)."""
        if self.postgres:
            return value
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")

    def read_timestamp(self, value: Any) -> datetime | None:
        """A stored timestamp, timezone-aware UTC."""
        if value is None:
            return None
        stamp: datetime = datetime.fromisoformat(value) if isinstance(value, str) else value
        if stamp.tzinfo is None:
            return stamp.replace(tzinfo=UTC)
        return stamp.astimezone(UTC)

    # ------------------------------------------------------------------ statements
    def select_in(
        self, session: Session, table: str, columns: Sequence[str], key: str,
        values: Sequence[Any],
    ) -> list[tuple[Any, ...]]:  # fmt: skip
        """Rows of ``table`` whose ``key`` is one of ``values`` (already driver values).

        Parameters
        ----------
        table, columns, key : str
            Trusted identifiers (never request data).
        values : sequence
            Key values, converted with :meth:`uuid` or given as the driver takes them.

        Returns
        -------
        list of tuple
            ``columns`` of each row, as the driver returns them.
        """
        cursor = session.connection().connection.cursor()
        names = ", ".join(columns)
        out: list[tuple[Any, ...]] = []
        try:
            if self.postgres:
                cursor.execute(f"SELECT {names} FROM {table} WHERE {key} = ANY(%s)", (list(values),))
                out.extend(cursor.fetchall())
                return out
            for start in range(0, len(values), _CHUNK):
                chunk = values[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                cursor.execute(f"SELECT {names} FROM {table} WHERE {key} IN ({marks})", chunk)
                out.extend(cursor.fetchall())
            return out
        finally:
            cursor.close()

    def update_in(
        self, session: Session, table: str, assignments: str, key: str, values: Sequence[Any],
        *, where: str | None = None, returning: str | None = None,
    ) -> list[Any]:  # fmt: skip
        """``UPDATE table SET assignments`` for the rows whose ``key`` is one of ``values``.

        Parameters
        ----------
        table, assignments, key, where, returning : str
            Trusted SQL (never request data); ``where`` is and-ed to the key's test.
        values : sequence
            Key values, as the driver takes them.

        Returns
        -------
        list
            The ``returning`` column of each updated row (empty without ``returning``).
        """
        cursor = session.connection().connection.cursor()
        tail = (f" AND {where}" if where else "") + (f" RETURNING {returning}" if returning else "")
        out: list[Any] = []
        try:
            if self.postgres:
                cursor.execute(f"UPDATE {table} SET {assignments} WHERE {key} = ANY(%s){tail}",
                               (list(values),))  # fmt: skip
                if returning:
                    out.extend(row[0] for row in cursor.fetchall())
                return out
            for start in range(0, len(values), _CHUNK):
                chunk = values[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                cursor.execute(f"UPDATE {table} SET {assignments} WHERE {key} IN ({marks}){tail}",
                               chunk)  # fmt: skip
                if returning:
                    out.extend(row[0] for row in cursor.fetchall())
            return out
        finally:
            cursor.close()

    def insert_ignoring(
        self, session: Session, table: str, columns: Sequence[str], types: Sequence[str],
        conflict: str, rows: Sequence[Sequence[Any]],
    ) -> int:  # fmt: skip
        """Insert ``rows``, skipping those that conflict on ``conflict``; the number inserted.

        Parameters
        ----------
        table, columns, conflict : str
            Trusted identifiers.
        types : sequence of str
            PostgreSQL type of each column (the arrays of the ``unnest`` insert).
        rows : sequence of sequences
            Driver values, one sequence per row in ``columns`` order.

        Returns
        -------
        int
            Rows inserted (``len(rows)`` when nothing conflicted).
        """
        if not rows:
            return 0
        cursor = session.connection().connection.cursor()
        names = ", ".join(columns)
        try:
            if self.postgres:
                arrays = ", ".join(f"%s::{t}[]" for t in types)
                cursor.execute(
                    f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays}) "
                    f"ON CONFLICT ({conflict}) DO NOTHING",
                    [list(column) for column in zip(*rows, strict=True)],
                )  # fmt: skip
                return int(cursor.rowcount)
            # Multi-row VALUES, not executemany: pysqlite steps executemany once per row,
            # releasing and retaking the GIL each time, and a busy event loop then makes
            # the writer wait up to a switch interval per row.
            mark = "(" + ",".join("?" * len(columns)) + ")"
            per = max(1, _CHUNK // len(columns))
            inserted = 0
            for start in range(0, len(rows), per):
                chunk = rows[start : start + per]
                cursor.execute(
                    f"INSERT INTO {table} ({names}) VALUES {','.join([mark] * len(chunk))} "
                    f"ON CONFLICT ({conflict}) DO NOTHING",
                    [value for row in chunk for value in row],
                )  # fmt: skip
                inserted += int(cursor.rowcount)
            return inserted
        finally:
            cursor.close()
