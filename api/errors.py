"""Error responses: every client mistake is a 4xx that names the field at fault.

All error bodies share FastAPI's shape ``{"detail": [{"loc", "field", "msg", "type"}]}``
(or ``{"detail": "message"}`` for errors about the request as a whole), so clients parse
one format.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.db import DatabaseBusyError

__all__ = ["ApiError", "FieldProblem", "install_error_handlers"]

log = logging.getLogger("pricing.api")


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
            "field": _dotted(self.loc),
            "msg": self.msg,
            "type": self.type,
        }
        if self.related:
            out["related_fields"] = [_dotted(r) for r in self.related]
        return out


class ApiError(Exception):
    """An error raised by a service and rendered as ``status`` with field-level detail.

    Parameters
    ----------
    status : int
        HTTP status (4xx).
    problems : sequence of FieldProblem, or str
        Field-level problems, or one message about the request as a whole.
    extra : dict, optional
        Additional top-level members of the body (e.g. the stored record on a 409).
    """

    def __init__(
        self,
        status: int,
        problems: Sequence[FieldProblem] | str,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(
            problems if isinstance(problems, str) else "; ".join(p.msg for p in problems)
        )
        self.status = status
        self.problems = problems
        self.extra = extra or {}
        self.headers = headers

    @classmethod
    def field(
        cls, status: int, loc: Sequence[str | int], msg: str, type_: str = "value_error"
    ) -> ApiError:
        """Shorthand for an error about a single field."""
        return cls(status, [FieldProblem(loc, msg, type_)])

    def body(self) -> dict[str, Any]:
        """The JSON response body."""
        detail: Any = (
            self.problems
            if isinstance(self.problems, str)
            else [p.as_dict() for p in self.problems]
        )
        return {"detail": detail, **self.extra}


def _dotted(loc: Sequence[str | int]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "[key]")]
    out = ""
    for part in parts:
        if part.isdigit():
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out or ("body" if tuple(loc) == ("body",) else "")


def _validation_problems(errors: Sequence[Any]) -> list[dict[str, Any]]:
    problems = []
    for error in errors:
        loc = [p for p in error.get("loc", ()) if isinstance(p, str | int)]
        kind = str(error.get("type"))
        msg = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        if kind == "json_invalid":
            # pydantic puts the character offset in ``loc``: it is not a field.
            offset = next((p for p in loc[1:] if isinstance(p, int)), None)
            reason = (error.get("ctx") or {}).get("error", "")
            where = f" at character {offset}" if offset is not None else ""
            loc, msg = ["body"], f"the body is not valid JSON{where}" + (f": {reason}" if reason else "")
        elif kind == "missing" and loc == ["body"]:
            msg = "the request body is missing: send a JSON object (Content-Type: application/json)"
        problems.append(FieldProblem(loc, msg, kind).as_dict())
    return problems


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that give every error its field-level 4xx body."""

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(status_code=exc.status, content=exc.body(), headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": _validation_problems(exc.errors())})

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            status_code=exc.status_code, content={"detail": exc.detail}, headers=exc.headers
        )

    @app.exception_handler(DatabaseBusyError)
    async def _busy(_request: Request, exc: DatabaseBusyError) -> JSONResponse:
        return JSONResponse(
            status_code=503, content={"detail": str(exc)}, headers={"Retry-After": "1"}
        )

    @app.exception_handler(OperationalError)
    async def _operational(request: Request, exc: OperationalError) -> JSONResponse:
        # Another process held SQLite's write lock past the busy timeout: overload, not a bug.
        if "database is locked" in str(exc.orig):
            return JSONResponse(
                status_code=503,
                content={"detail": "the database is busy; retry later"},
                headers={"Retry-After": "1"},
            )
        log.exception("database error on %s %s", request.method, request.url.path)
        return JSONResponse(
            status_code=500, content={"detail": "internal error; it has been logged"}
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:  # pragma: no cover
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(
            status_code=500, content={"detail": "internal error; it has been logged"}
        )
