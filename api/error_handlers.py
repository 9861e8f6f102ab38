"""One place that turns errors into HTTP responses.

:mod:`api.errors` says what went wrong; this module says which status that is. Request
validation errors from FastAPI are rendered in the same field-level shape.
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
from api.errors import (
    Conflict,
    DomainError,
    FieldProblem,
    Forbidden,
    Invalid,
    NotFound,
    RateLimited,
    Unauthenticated,
    Unavailable,
    UnsupportedMedia,
)

__all__ = ["STATUS", "error_response", "install_error_handlers", "status_of"]

log = logging.getLogger("pricing.api")

#: HTTP status of each kind of domain error.
STATUS: dict[type[DomainError], int] = {
    Invalid: 422,
    NotFound: 404,
    Conflict: 409,
    Unavailable: 503,
    RateLimited: 429,
    Unauthenticated: 401,
    Forbidden: 403,
    UnsupportedMedia: 415,
}


def status_of(exc: DomainError) -> int:
    """The HTTP status of a domain error (its nearest kind in :data:`STATUS`; else 400)."""
    for kind in type(exc).__mro__:
        if kind in STATUS:
            return STATUS[kind]
    return 400


def _headers(exc: DomainError) -> dict[str, str] | None:
    if isinstance(exc, Unauthenticated):
        return {"WWW-Authenticate": "Bearer"}
    if isinstance(exc, Unavailable):
        return {"Retry-After": str(exc.retry_after)}
    return None


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
            loc, msg = (
                ["body"],
                f"the body is not valid JSON{where}" + (f": {reason}" if reason else ""),
            )
        elif kind == "missing" and loc == ["body"]:
            msg = "the request body is missing: send a JSON object (Content-Type: application/json)"
        problems.append(FieldProblem(loc, msg, kind).as_dict())
    return problems


def error_response(exc: Exception) -> JSONResponse | None:
    """The response for an error this service answers on purpose (a domain error, a busy
    or unreachable database); None for anything else (a bug: 500)."""
    if isinstance(exc, DomainError):
        return JSONResponse(status_code=status_of(exc), content=exc.body(), headers=_headers(exc))
    if isinstance(exc, DatabaseBusyError):
        return JSONResponse(
            status_code=503, content={"detail": str(exc)}, headers={"Retry-After": "1"}
        )
    if isinstance(exc, OperationalError):
        # The database is locked past the busy timeout, unreachable, or refused the
        # connection: it cannot serve now, which is a 503 to retry, not a bug.
        locked = "database is locked" in str(exc.orig)
        return JSONResponse(
            status_code=503,
            content={"detail": "the database is busy; retry later" if locked
                     else "the database is unavailable; retry later"},
            headers={"Retry-After": "1"},
        )  # fmt: skip
    return None


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that give every error its field-level 4xx body."""

    @app.exception_handler(DomainError)
    async def _domain_error(_request: Request, exc: DomainError) -> JSONResponse:
        response = error_response(exc)
        assert response is not None
        return response

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
        response = error_response(exc)
        assert response is not None
        return response

    @app.exception_handler(OperationalError)
    async def _operational(request: Request, exc: OperationalError) -> JSONResponse:
        if "database is locked" not in str(exc.orig):
            log.warning("database unavailable on %s %s: %s", request.method, request.url.path,
                        type(exc.orig).__name__)  # fmt: skip
        response = error_response(exc)
        assert response is not None
        return response

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:  # pragma: no cover
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(
            status_code=500, content={"detail": "internal error; it has been logged"}
        )
