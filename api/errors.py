"""Domain errors: what went wrong and where, with no HTTP in sight.

Services raise these; :mod:`api.error_handlers` maps each kind to its HTTP status and
renders every error in one shape, FastAPI's ``{"detail": [{"loc", "field", "msg",
"type"}]}`` (or ``{"detail": "message"}`` for an error about the request as a whole), so
clients parse one format.

========================  ======  =============================================
error                     status  when
========================  ======  =============================================
:class:`Invalid`          422     a value the caller sent cannot be used
:class:`NotFound`         404     the thing named does not exist
:class:`Conflict`         409     the request contradicts what is stored
:class:`Unavailable`      503     could not be done now; nothing changed; retry
:class:`RateLimited`      429     the key's rate limit is spent; nothing done; retry
:class:`Unauthenticated`  401     no credentials, or unknown ones
:class:`Forbidden`        403     the caller may not do this
:class:`UnsupportedMedia` 415     a body in a format the endpoint does not read
========================  ======  =============================================
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "Conflict",
    "DomainError",
    "FieldProblem",
    "Forbidden",
    "Invalid",
    "NotFound",
    "RateLimited",
    "Unauthenticated",
    "Unavailable",
    "UnsupportedMedia",
    "dotted",
]


class FieldProblem:
    """One field-level problem: where (``loc``), what, and a machine-readable type."""

    __slots__ = ("loc", "msg", "related", "type")

    def __init__(
        self,
        loc: Sequence[str | int],
        msg: str,
        type_: str = "value_error",
        related: Sequence[Sequence[str | int]] = (),
    ) -> None:
        self.loc = tuple(loc)
        self.msg = msg
        self.type = type_
        #: Other fields involved in the same problem (a conflict between two rules).
        self.related = tuple(tuple(r) for r in related)

    def as_dict(self) -> dict[str, Any]:
        """JSON form, with a dotted ``field`` path next to ``loc`` (and ``related_fields``
        when the problem involves several fields: it is still reported once)."""
        out: dict[str, Any] = {
            "loc": list(self.loc),
            "field": dotted(self.loc),
            "msg": self.msg,
            "type": self.type,
        }
        if self.related:
            out["related_fields"] = [dotted(r) for r in self.related]
        return out


class DomainError(Exception):
    """Base of the errors a service raises: what went wrong, and at which field.

    Parameters
    ----------
    where : sequence of FieldProblem, field path, or str
        The field-level problems; or the path of the one field at fault (with ``msg``);
        or one message about the request as a whole.
    msg : str, optional
        With a field path: what is wrong with that field.
    type_ : str, optional
        Machine-readable kind of a single field problem (default: the class's).
    extra : dict, optional
        Additional top-level members of the body (e.g. the stored record of a conflict).

    Examples
    --------
    >>> NotFound(["path", "key"], "unknown promotion 'x'").body()["detail"][0]["field"]
    'key'
    >>> Invalid([FieldProblem(["body", "lines", 0, "sku"], "unknown sku")]).body()["detail"][0]["field"]
    'lines[0].sku'
    """

    #: The ``type`` of a problem raised with a field path and no explicit type.
    default_type = "value_error"

    def __init__(
        self,
        where: Sequence[FieldProblem] | Sequence[str | int] | str,
        msg: str | None = None,
        type_: str | None = None,
        *,
        extra: dict[str, Any] | None = None,
    ) -> None:
        problems: Sequence[FieldProblem] | str
        if msg is not None:
            assert not isinstance(where, str), "a field path is a sequence of parts"
            loc = [p for p in where if isinstance(p, str | int)]
            problems = [FieldProblem(loc, msg, type_ or self.default_type)]
        elif isinstance(where, str):
            problems = where
        else:
            problems = [p for p in where if isinstance(p, FieldProblem)]
            assert len(problems) == len(where), "pass FieldProblems, or a path and a msg"
        super().__init__(
            problems if isinstance(problems, str) else "; ".join(p.msg for p in problems)
        )
        self.problems = problems
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        """The JSON response body."""
        detail: Any = (
            self.problems
            if isinstance(self.problems, str)
            else [p.as_dict() for p in self.problems]
        )
        return {"detail": detail, **self.extra}


class Invalid(DomainError):
    """A value the caller sent cannot be used (422)."""


class NotFound(DomainError):
    """The resource named does not exist (404)."""

    default_type = "not_found"


class Conflict(DomainError):
    """The request contradicts what is stored: a different outcome, a wrong state (409)."""

    default_type = "conflict"


class Unavailable(DomainError):
    """Could not be done now and nothing was changed; the caller should retry (503).

    Parameters
    ----------
    where, msg, type_, extra
        As for :class:`DomainError`.
    retry_after : int
        Seconds the caller should wait before retrying.
    """

    def __init__(
        self,
        where: Sequence[FieldProblem] | Sequence[str | int] | str,
        msg: str | None = None,
        type_: str | None = None,
        *,
        extra: dict[str, Any] | None = None,
        retry_after: int = 1,
    ) -> None:
        super().__init__(where, msg, type_=type_, extra=extra)
        self.retry_after = retry_after


class RateLimited(Unavailable):
    """The API key sent more requests than its rate limit allows; nothing was done (429,
    with ``Retry-After``)."""

    default_type = "rate_limited"


class Unauthenticated(DomainError):
    """No credentials, or credentials that are not (or no longer) valid (401)."""


class Forbidden(DomainError):
    """The caller is known but may not do this (403)."""


class UnsupportedMedia(DomainError):
    """The body is in a format the endpoint does not read (415)."""


def dotted(loc: Sequence[str | int]) -> str:
    """A location as a client writes it: ``["body", "lines", 0, "sku"]`` -> ``lines[0].sku``.

    Parameters
    ----------
    loc : sequence of str or int
        FastAPI-style location; the ``body``/``query``/``path``/``header`` prefix is dropped.

    Returns
    -------
    str
        The dotted path (``"body"`` for the body as a whole).
    """
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "[key]")]
    out = ""
    for part in parts:
        if part.isdigit():
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out or ("body" if tuple(loc) == ("body",) else "")
