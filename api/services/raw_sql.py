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

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

__all__ = ["Columns", "RawSQL", "table_columns"]

#: Ids per ``IN`` list on SQLite (well under its 32,766 bound variables).
_CHUNK = 5000


class Columns(list[tuple[str, str]]):
    """A table's columns with their PostgreSQL types, and the Python-side defaults a row
    may leave out (``defaults``: name -> SQLAlchemy ``ColumnDefault``)."""

    defaults: dict[str, Any]


def table_columns(table: Any) -> Columns:
    """Each column of a SQLAlchemy ``table`` with its PostgreSQL type, as
    :meth:`RawSQL.insert_rows` takes them (``[("id", "UUID"), ("created_at", "TIMESTAMP
    WITH TIME ZONE"), ...]``), with the columns' defaults for rows that leave them out."""
    from sqlalchemy.dialects import postgresql

    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    out = Columns((c.name, c.type.compile(dialect=dialect)) for c in table.columns)
    out.defaults = {c.name: c.default for c in table.columns if c.default is not None}
    return out


def _default(defaults: Mapping[str, Any], name: str) -> Any:
    """The value SQLAlchemy would insert for a column a row leaves out: its default, or
    NULL (which the database refuses for a NOT NULL column)."""
    default = defaults.get(name)
    if default is None:
        return None
    if default.is_scalar:
        return default.arg
    if default.is_callable:
        return default.arg(None)  # SQLAlchemy wraps zero-argument callables to take a context
    raise ValueError(f"column {name}: only scalar and callable defaults are supported")


def _hex(value: uuid.UUID) -> str:
    return value.hex


#: SQLite text of recent timestamps: a quote's rows share their creation, expiry and
#: outcome deadline, and the conversion (1.3-2.7 µs) was 7.8 % of a one-quote transaction's
#: CPU in the group writer (py-spy over ``benchmarks.writer``'s replay, 2026-12-07).
#: Cleared when full; a lost race between threads only converts a value again.
_STAMPS: dict[datetime, str] = {}
_STAMPS_KEPT = 4096

#: One encoder for every value: ``json.dumps`` with ``separators`` builds a new one per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"))


def _json_text(value: Any) -> str:
    if isinstance(value, dict) and not value:
        return "{}"
    return _ENCODER.encode(value)


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
        """A timezone-aware timestamp as the driver takes it (naive UTC text on SQLite).

        Raises
        ------
        ValueError
            A naive timestamp: the engine never guesses a time zone.
        """
        if not self.postgres:
            # A naive datetime never equals an aware one, so it never hits the memo.
            text = _STAMPS.get(value)
            if text is not None:
                return text
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime refused: timestamps must be timezone-aware")
        if self.postgres:
            return value
        utc = value if value.tzinfo is UTC else value.astimezone(UTC)
        text = utc.replace(tzinfo=None).isoformat(" ", "microseconds")
        if len(_STAMPS) >= _STAMPS_KEPT:
            _STAMPS.clear()
        _STAMPS[value] = text
        return text

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

    def insert_rows(
        self, session: Session, table: str, columns: Sequence[tuple[str, str]],
        rows: Sequence[Mapping[str, Any]],
    ) -> int:  # fmt: skip
        """Insert ``rows`` (mappings of column name to Python value); the number inserted.

        Values are converted by their column's PostgreSQL type (:func:`table_columns`):
        ``UUID`` (:meth:`uuid`), ``TIMESTAMP ...`` (:meth:`timestamp`), ``JSON``/``JSONB``
        (JSON text); the others go to the driver as they are (None is NULL for every type).

        Parameters
        ----------
        table : str
            Trusted identifier.
        columns : sequence of (str, str)
            Each column's name and PostgreSQL type.
        rows : sequence of mappings
            One per row; every column must be present.
        """
        names = [name for name, _ in columns]
        values = self.driver_rows(columns, rows)
        return self.insert_ignoring(session, table, names, [k for _, k in columns], None, values)

    def driver_rows(
        self, columns: Sequence[tuple[str, str]], rows: Sequence[Mapping[str, Any]]
    ) -> list[list[Any]]:
        """``rows`` as the driver takes them, in ``columns`` order (see :meth:`insert_rows`).

        Parameters
        ----------
        columns : sequence of (str, str)
            Each column's name and PostgreSQL type (:func:`table_columns`; its
            ``defaults`` fill the columns a row leaves out).
        rows : sequence of mappings
            Column name to Python value.

        Returns
        -------
        list of list
            One list of driver values per row, shape (len(rows), len(columns)).
        """
        defaults = getattr(columns, "defaults", {})
        plan = [(name, self._memo(self._converter(kind))) for name, kind in columns]
        values = []
        for row in rows:
            out = []
            for name, convert in plan:
                v = row[name] if name in row else _default(defaults, name)
                out.append(v if v is None or convert is None else convert(v))
            values.append(out)
        return values

    @staticmethod
    def _memo(convert: Callable[[Any], Any] | None) -> Callable[[Any], Any] | None:
        """``convert`` remembering its answers for one batch: a quote's lines share their
        timestamps and ids (quote, key), and formatting a timestamp costs microseconds."""
        if convert is None or convert is _json_text:
            return convert
        seen: dict[Any, Any] = {}

        def run(value: Any) -> Any:
            out = seen.get(value)
            if out is None:
                out = seen[value] = convert(value)
            return out

        return run

    def _converter(self, kind: str) -> Callable[[Any], Any] | None:
        kind = kind.upper()
        if kind == "UUID":
            return None if self.postgres else _hex
        if kind.startswith("TIMESTAMP"):
            return None if self.postgres else self.timestamp
        if kind.startswith("JSON"):
            return _json_text
        return None

    def insert_ignoring(
        self, session: Session, table: str, columns: Sequence[str], types: Sequence[str],
        conflict: str | None, rows: Sequence[Sequence[Any]],
    ) -> int:  # fmt: skip
        """Insert ``rows``, skipping those that conflict on ``conflict`` (None: a conflict
        is an error); the number inserted.

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
        ignore = f" ON CONFLICT ({conflict}) DO NOTHING" if conflict else ""
        try:
            if self.postgres:
                arrays = ", ".join(f"%s::{t}[]" for t in types)
                cursor.execute(
                    f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays}){ignore}",
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
                    f"INSERT INTO {table} ({names}) VALUES {','.join([mark] * len(chunk))}{ignore}",
                    [value for row in chunk for value in row],
                )  # fmt: skip
                inserted += int(cursor.rowcount)
            return inserted
        finally:
            cursor.close()
