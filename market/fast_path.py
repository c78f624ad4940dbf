"""A lean ASGI fast path for `POST /v1/queries`, the busiest request by far (issue 12, branch asgi15).

FastAPI's routing, dependency solving and request validation cost about 0.3 ms of CPU per query on the event
loop (docs/benchmarks.md "asgi15"). This middleware sits in front of FastAPI (inside the locale and phase
middlewares, so a request it answers is negotiated and timed like any other) and answers the well-formed
queries itself, with exactly what FastAPI's route would run: the app's own dependency `get_principal`, then
the route's own body `metering.endpoints.answer_query` in a worker thread, then the app's own exception
handlers for whatever either raises. The route `run_query` calls the same `answer_query`, so the two cannot
drift apart.

Well-formed means: `POST /v1/queries` with no query string; one `Content-Type: application/json` (optionally
`; charset=utf-8`); one `Authorization` header; at most one `Idempotency-Key` of 1 to 200 characters; no
header holding a NUL; a body of at most MAX_BODY bytes that is a JSON object of QueryIn's fields only,
valid for QueryIn and free of unstorable text (market.text_guard). Anything else, or anything unusual
(a client that disconnects while sending, a body too large), goes to FastAPI unchanged, with the body
already read handed on first: FastAPI then answers it, its errors and all, as it always did. Errors of
well-formed requests (an unknown or revoked key, a refused query, a quota reached) come from the same
code and the same exception handlers, so status, headers and body are byte-identical either way
(tests/metering/test_query_fast_path.py sends the same battery both ways).

Off with `MARKET_QUERY_FAST_PATH=false`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette._utils import is_async_callable
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from market import phases
from market.deps import get_database, get_principal, get_settings_dep
from market.text_guard import first_bad_string
from metering.endpoints import answer_query, queries_router
from metering.schemas import QueryIn

PATH = "/v1/queries"
MAX_BODY = 256 * 1024
"""Bytes of body the fast path reads at most; a larger body goes to FastAPI. QueryIn allows 100,000 characters
of SQL, at most 6 bytes each in JSON ("\\uXXXX") for the rare ones; 256 KiB covers any plausible query."""
JSON_TYPES = frozenset({b"application/json", b"application/json; charset=utf-8"})
FIELDS = frozenset(QueryIn.model_fields)


@dataclass
class FastPathStats:
    """How many requests the fast path answered (the rest went to FastAPI); `app.state.query_fast_path`."""

    served: int = 0


@dataclass(frozen=True)
class _Query:
    body: QueryIn
    idempotency_key: str | None


def _headers(scope: Scope) -> tuple[bool, str | None] | None:
    """(has one Authorization header, the Idempotency-Key) when the headers are ones the fast path handles."""
    content_types = authorizations = 0
    key: str | None = None
    keys = 0
    for raw_name, value in scope["headers"]:
        if b"\x00" in value:
            return None
        name = raw_name.lower()
        if name == b"content-type":
            content_types += 1
            if value.strip().lower() not in JSON_TYPES:
                return None
        elif name == b"authorization":
            authorizations += 1
        elif name == b"idempotency-key":
            keys += 1
            key = value.decode("latin-1")
            if not 1 <= len(key) <= 200:
                return None
    if content_types != 1 or authorizations != 1 or keys > 1:
        return None
    return True, key


def _query(body: bytes, key: str | None) -> _Query | None:
    """The request's QueryIn when the body is one FastAPI would accept as it stands, else None."""
    try:
        parsed = json.loads(body)  # what Starlette's Request.json() does
    except (ValueError, RecursionError):
        return None
    if not isinstance(parsed, dict) or not FIELDS.issuperset(parsed):
        return None
    try:
        query = QueryIn.model_validate(parsed)
    except ValidationError:
        return None
    if first_bad_string(parsed) is not None:
        return None
    return _Query(query, key)


class QueryFastPath:
    """The middleware (see the module's documentation)."""

    def __init__(self, app: ASGIApp, stats: FastPathStats) -> None:
        self.app = app
        self.stats = stats
        self._route: APIRoute | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != PATH
            or scope["method"] != "POST"
            or scope.get("query_string")
            or scope.get("root_path")
        ):
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        if headers is None:
            await self.app(scope, receive, send)
            return
        read: list[Message] = []
        size = 0
        more = True
        while more:
            message = await receive()
            read.append(message)
            if message["type"] != "http.request":
                break  # a disconnect: FastAPI's way of handling it
            size += len(message.get("body", b""))
            more = bool(message.get("more_body"))
            if size > MAX_BODY:
                break
        query = None if more else _query(b"".join(m.get("body", b"") for m in read), headers[1])
        if query is None:
            await self.app(scope, _replay(read, receive), send)
            return
        await self._answer(scope, _replay(read, receive), send, query)

    async def _answer(self, scope: Scope, receive: Receive, send: Send, query: _Query) -> None:
        self.stats.served += 1
        phases.on_thread("query_fast_path")  # on the event loop, in place of FastAPI's two async dependencies
        app = scope["app"]
        route = self._route or self._find_route()
        scope["route"], scope["endpoint"], scope["path_params"] = route, route.endpoint, {}
        request = Request(scope, receive, send)
        try:
            principal = await get_principal(request)
            response = await run_in_threadpool(
                answer_query,
                get_database(request),
                get_settings_dep(request),
                principal,
                query.body,
                query.idempotency_key,
            )
        except Exception as error:
            handler = _handler(app.exception_handlers, error)
            if handler is None:
                raise  # as ExceptionMiddleware does: ServerErrorMiddleware answers it (500)
            if is_async_callable(handler):
                response = await handler(request, error)
            else:
                response = await run_in_threadpool(handler, request, error)
        await response(scope, receive, send)

    def _find_route(self) -> APIRoute:
        for route in queries_router.routes:
            if isinstance(route, APIRoute) and route.path == PATH and "POST" in (route.methods or ()):
                self._route = route
                return route
        raise LookupError(f"no route POST {PATH}")


def _handler(handlers: dict[Any, Callable[..., Any]], error: Exception) -> Callable[..., Any] | None:
    """The handler Starlette's ExceptionMiddleware would call for `error` (its lookup: a status code's for an
    HTTPException, else the nearest class in the error's MRO; `Exception` and 500 belong to ServerErrorMiddleware,
    outside this middleware)."""
    if isinstance(error, HTTPException) and error.status_code in handlers and error.status_code != 500:
        return handlers[error.status_code]
    for cls in type(error).__mro__:
        if cls is Exception:
            return None
        if cls in handlers:
            return handlers[cls]
    return None


def _replay(read: list[Message], receive: Receive) -> Receive:
    """`receive` with the messages already read handed out first, in order."""
    pending = list(read)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed
