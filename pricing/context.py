"""Declared context features: which request context the demand model may use, and how.

Only features declared in a :class:`ContextSchema` enter the model (as the x·d term of the
logit); anything else a request carries is logged but never priced on. Protected
attributes cannot be declared.

- numeric features are standardised, ``(value - center) / scale``; missing → 0 (the center);
- categorical features are one-hot against their first level (the reference); a missing or
  unknown level → the reference.

The encoded vector is what the model sees; :meth:`ContextSchema.key` is a canonical text
of the declared values, stored with each decision, so the log groups into cells by it.

Calendar: a declared categorical feature named ``weekday`` whose levels are the seven
:data:`WEEKDAYS` is filled in by the service from the quote's UTC time when the request
leaves it out (:meth:`ContextSchema.with_calendar`), so a weekly cycle in demand becomes a
day-of-week intercept in the model without checkout sending anything.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from functools import cached_property
from typing import Any, TypeGuard

import numpy as np
from numpy.typing import NDArray

from pricing.protected import protected_attribute

__all__ = ["WEEKDAYS", "ContextFeature", "ContextSchema", "ContextSchemaError"]

MAX_FEATURES = 20
MAX_LEVELS = 50
#: Levels of the calendar feature ``weekday`` (``datetime.weekday()`` order, Monday first).
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _is_number(value: object) -> TypeGuard[int | float]:
    """A finite int or float (booleans are not numbers here)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class ContextSchemaError(ValueError):
    """An invalid schema; ``field`` is the dotted path of the offending entry."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class ContextFeature:
    """One declared feature.

    Attributes
    ----------
    name : str
        Key in the request's ``context``.
    kind : {"numeric", "categorical"}
    levels : tuple of str
        Categorical levels, the first one being the reference (empty for numeric).
    center, scale : float
        Standardisation of a numeric feature (scale > 0).
    """

    name: str
    kind: str
    levels: tuple[str, ...] = ()
    center: float = 0.0
    scale: float = 1.0

    @property
    def columns(self) -> tuple[str, ...]:
        """Names of the model columns this feature contributes."""
        if self.kind == "numeric":
            return (self.name,)
        return tuple(f"{self.name}={level}" for level in self.levels[1:])


@dataclass(frozen=True)
class ContextSchema:
    """The declared features, in order.

    Examples
    --------
    >>> schema = ContextSchema.from_dict({"features": [
    ...     {"name": "device", "kind": "categorical", "levels": ["desktop", "mobile"]},
    ...     {"name": "basket_items", "kind": "numeric", "center": 2, "scale": 2}]})
    >>> schema.columns
    ('device=mobile', 'basket_items')
    >>> schema.encode({"device": "mobile", "basket_items": 4}).tolist()
    [1.0, 1.0]
    """

    features: tuple[ContextFeature, ...] = ()

    @cached_property
    def calendar(self) -> bool:
        """Whether a ``weekday`` feature with the seven :data:`WEEKDAYS` is declared."""
        return any(f.name == "weekday" and f.kind == "categorical" and set(f.levels) == set(WEEKDAYS)
                   for f in self.features)  # fmt: skip

    def with_calendar(self, context: Mapping[str, object], now: datetime,
                      zone: tzinfo = UTC) -> Mapping[str, object]:  # fmt: skip
        """The request context with the declared calendar features it left out filled in.

        Parameters
        ----------
        context : mapping
            The request's context (not modified).
        now : datetime
            The quote's time, timezone-aware; its weekday in ``zone`` fills ``weekday``.
        zone : tzinfo
            Where the merchant's days begin and end (``PRICING_CALENDAR_TIMEZONE``;
            default UTC): a Saturday evening in New York is Sunday in UTC.

        Returns
        -------
        mapping
            ``context`` itself when nothing is filled in, else a new dict.
        """
        if "weekday" in context or not self.calendar:
            return context
        return {**context, "weekday": WEEKDAYS[now.astimezone(zone).weekday()]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> ContextSchema:
        """Validate and build from ``{"features": [...]}``.

        Raises
        ------
        ContextSchemaError
            Naming the offending entry (e.g. ``features[1].levels``).
        """
        if not data:
            return cls()
        raw = data.get("features", [])
        if not isinstance(raw, list):
            raise ContextSchemaError("features", "must be a list")
        if len(raw) > MAX_FEATURES:
            raise ContextSchemaError("features", f"at most {MAX_FEATURES} features")
        features = []
        seen: set[str] = set()
        for i, item in enumerate(raw):
            where = f"features[{i}]"
            if not isinstance(item, Mapping):
                raise ContextSchemaError(where, "must be an object")
            name = item.get("name")
            if not isinstance(name, str) or not name.isidentifier() or len(name) > 64:
                raise ContextSchemaError(f"{where}.name", "must be an identifier (≤ 64 characters)")
            reason = protected_attribute(name)
            if reason is not None:
                raise ContextSchemaError(
                    f"{where}.name", f"{name!r} is a protected attribute ({reason})"
                )
            if name in seen:
                raise ContextSchemaError(f"{where}.name", f"feature {name!r} declared twice")
            seen.add(name)
            kind = item.get("kind")
            if kind == "numeric":
                center, scale = item.get("center", 0.0), item.get("scale", 1.0)
                for key, value in (("center", center), ("scale", scale)):
                    if (
                        isinstance(value, bool)
                        or not isinstance(value, int | float)
                        or not math.isfinite(value)
                    ):
                        raise ContextSchemaError(f"{where}.{key}", "must be a finite number")
                if scale <= 0:
                    raise ContextSchemaError(f"{where}.scale", "must be positive")
                features.append(ContextFeature(name, "numeric", (), float(center), float(scale)))
            elif kind == "categorical":
                levels = item.get("levels")
                if (
                    not isinstance(levels, list)
                    or not 2 <= len(levels) <= MAX_LEVELS
                    or not all(isinstance(v, str) and 0 < len(v) <= 64 for v in levels)
                    or len(set(levels)) != len(levels)
                ):
                    raise ContextSchemaError(
                        f"{where}.levels",
                        f"must list 2 to {MAX_LEVELS} distinct non-empty strings (first = reference)",
                    )
                features.append(ContextFeature(name, "categorical", tuple(levels)))
            else:
                raise ContextSchemaError(f"{where}.kind", "must be 'numeric' or 'categorical'")
        return cls(tuple(features))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form that :meth:`from_dict` reads back."""
        out = []
        for f in self.features:
            if f.kind == "numeric":
                out.append({"name": f.name, "kind": f.kind, "center": f.center, "scale": f.scale})
            else:
                out.append({"name": f.name, "kind": f.kind, "levels": list(f.levels)})
        return {"features": out}

    @property
    def columns(self) -> tuple[str, ...]:
        """Model column names, in order."""
        return tuple(c for f in self.features for c in f.columns)

    def key(self, context: Mapping[str, object]) -> str:
        """Canonical text of the declared features' raw values ("" when none is declared).

        Undeclared keys are dropped; unusable values (wrong type, unknown level) are
        dropped too, so they encode like missing ones.
        """
        if not self.features:
            return ""
        values: dict[str, object] = {}
        for f in self.features:
            value = context.get(f.name)
            if f.kind == "numeric":
                if _is_number(value):
                    values[f.name] = value
            elif isinstance(value, str) and value in f.levels:
                values[f.name] = value
        return json.dumps(values, sort_keys=True, separators=(",", ":"))

    def encode(self, context: Mapping[str, object]) -> NDArray[np.float64]:
        """The model's x for one context, shape (n_columns,)."""
        x = np.zeros(len(self.columns))
        col = 0
        for f in self.features:
            value = context.get(f.name)
            if f.kind == "numeric":
                if _is_number(value):
                    x[col] = (float(value) - f.center) / f.scale
                col += 1
            else:
                if isinstance(value, str) and value in f.levels[1:]:
                    x[col + f.levels.index(value) - 1] = 1.0
                col += len(f.levels) - 1
        return x

    def encode_key(self, key: str) -> NDArray[np.float64]:
        """:meth:`encode` of a stored :meth:`key` text ("" or unreadable → zeros)."""
        if not key:
            return np.zeros(len(self.columns))
        try:
            values = json.loads(key)
        except ValueError:
            values = {}
        return self.encode(values if isinstance(values, dict) else {})
