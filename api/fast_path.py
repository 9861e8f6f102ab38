"""A direct ASGI route for the common case of ``POST /v1/quotes``.

The quote is on the critical path of a sale, and most of a quote's interpreter time used
to go to the framework rather than to the quote: measured in-process (cProfile and
py-spy, a one-line cart), FastAPI's route matching over every route of the app, its
dependency resolution (state, bearer scheme, principal, role, rate limit: seven
dependencies, each with its cache-key and scope bookkeeping) and its exception
middlewares took about as long as pricing and logging the cart.

:class:`QuoteFastPath` is the outermost layer of the app (around FastAPI's own
middlewares: its error, telemetry and body-limit layers, then the app's metrics, body
limit and CORS, which cost a quote about a tenth of its event-loop time, measured with
py-spy). It does what those layers would do for the requests it answers: it counts and
times them under the route's template (``pricing_http_requests``), leaves any body
over ``PRICING_MAX_BODY_BYTES`` and any cross-origin request (an ``Origin`` header while
CORS is configured) to them, and answers an unexpected error with the app's 500 body.
It answers a quote request itself when every check passes the plain way: a JSON body
that :class:`~api.schemas.quotes.QuoteRequest` accepts, a bearer key this worker
authenticated in the last few seconds with a role that may quote, a token in the key's
rate limit, and a well-formed ``Idempotency-Key`` if one is sent. It then runs exactly
the route's code (:func:`api.routes.quotes.respond_quote`), so the decision, the log
and the response are the same.

Anything else — a missing or unknown key, a body that does not validate, an exhausted
rate limit, a disconnect — goes to the FastAPI route unchanged, with the body replayed,
so every error keeps its one implementation and its field-level message. Nothing is
decided or written before that hand-over.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from pydantic import ValidationError
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.error_handlers import error_response
from api.schemas.quotes import QuoteRequest
from api.security import Role

__all__ = ["QuoteFastPath"]

log = logging.getLogger("pricing.api")

PATH = "/v1/quotes"
#: Roles that may ask for a quote (the route's ``limited("quotes", Role.CHECKOUT)``).
_ROLES = frozenset({Role.CHECKOUT, Role.ADMIN})
#: The route's ``Idempotency-Key`` rule: 1-255 printable ASCII characters.
_IDEMPOTENCY = re.compile(rb"[\x21-\x7e]{1,255}")
_JSON = re.compile(rb"application/(?:[a-z0-9.+-]*\+)?json\s*(?:;.*)?", re.IGNORECASE | re.DOTALL)


class QuoteFastPath:
    """Pure ASGI layer answering plain quote requests without FastAPI's middlewares,
    routing and dependency machinery (see the module docstring); everything else passes
    through.

    Parameters
    ----------
    app : ASGIApp
        The rest of the stack (FastAPI's middleware stack and router).
    max_body_bytes : int
        Bodies larger than this go to the stack, whose body limit answers 413.
    cors : bool
        Whether CORS is configured: then requests with an ``Origin`` go to the stack.
    """

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, cors: bool = False) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.cors = cors
        self._route: Any = None
        #: Requests answered here (the rest went to the route), for tests and benchmarks.
        self.served = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        authorization = content_type = idempotency = None
        plain = True
        for name, value in scope["headers"]:
            if name == b"authorization":
                plain &= authorization is None
                authorization = value
            elif name == b"content-type":
                plain &= content_type is None
                content_type = value
            elif name == b"idempotency-key":
                plain &= idempotency is None
                idempotency = value
            elif name == b"origin":
                plain &= not self.cors
            elif name == b"content-length":
                plain &= value.isdigit() and int(value) <= self.max_body_bytes
        if not plain:
            await self.app(scope, receive, send)
            return
        # The body, kept so that the stack can be handed exactly what arrived.
        messages: list[Message] = []
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            chunks.append(chunk)
            if not message.get("more_body", False) or size > self.max_body_bytes:
                break
        handled = False
        if messages[-1]["type"] == "http.request" and size <= self.max_body_bytes and not \
                messages[-1].get("more_body", False):
            handled = await self._answer(scope, send, b"".join(chunks), authorization,
                                         content_type, idempotency, start)  # fmt: skip
        if handled:
            return
        pending = iter(messages)

        async def replay() -> Message:
            for message in pending:
                return message
            return await receive()

        await self.app(scope, replay, send)

    async def _answer(
        self, scope: Scope, send: Send, body: bytes, authorization: bytes | None,
        content_type: bytes | None, idempotency: bytes | None, start: float,
    ) -> bool:  # fmt: skip
        """Answer the request and return True, or return False having done nothing."""
        from api.routes.quotes import respond_quote

        state = scope["app"].state.pricing
        if authorization is None or content_type is None or not _JSON.fullmatch(content_type):
            return False
        scheme, _, key = authorization.decode("latin-1").partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            return False
        known, principal = state.cached_principal(key)
        if not known or principal is None or principal.role not in _ROLES:
            return False
        if idempotency is not None and not _IDEMPOTENCY.fullmatch(idempotency):
            return False
        try:
            # Parsed and validated in one pass by pydantic-core; a body it refuses (NaN
            # included, which json.loads would take) goes to the route, which decides.
            request = QuoteRequest.model_validate_json(body)
        except (ValueError, ValidationError):
            return False
        # Last, as in the route: a request refused above takes no token.
        if state.limiter.wait(str(principal.key_id), "quotes") > 0:
            return False
        scope["route"] = route = self._quote_route(scope)  # as routed (metrics, logs)
        unexpected = None
        try:
            response = await respond_quote(
                state, request, principal,
                idempotency.decode("ascii") if idempotency is not None else None,
            )  # fmt: skip
        except Exception as exc:
            rendered = error_response(exc)
            if rendered is None:  # a bug: the app's 500, then raised as the stack would
                log.exception("unhandled error on POST %s", PATH)
                unexpected = exc
                rendered = JSONResponse(
                    status_code=500, content={"detail": "internal error; it has been logged"}
                )
            response = rendered
        self.served += 1
        try:
            await response(scope, _no_body, send)
        finally:
            state.metrics.observe_request(route.path, "POST", response.status_code,
                                          time.perf_counter() - start)  # fmt: skip
        if unexpected is not None:
            raise unexpected
        return True

    def _quote_route(self, scope: Scope) -> Any:
        if self._route is None:
            from api.routes.quotes import router

            self._route = next(
                r for r in router.routes
                if getattr(r, "path", None) == PATH and "POST" in getattr(r, "methods", ())
            )  # fmt: skip
        return self._route


async def _no_body() -> Message:  # pragma: no cover - a response never reads the request
    return {"type": "http.disconnect"}
