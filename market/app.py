"""The HTTP application: routers of every context, one error shape, health check."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.params import Form
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from billing.endpoints import router as billing_router
from billing.finance_endpoints import router as finance_router
from billing.payment_endpoints import router as payments_router
from market import i18n, phases
from market.accounts.endpoints import router as accounts_router
from market.compliance.endpoints import public_router as disclosure_pages_router
from market.compliance.endpoints import router as compliance_router
from market.console.errors import console_error_response, is_console_page
from market.console.routes import install as install_console
from market.db import Database, is_transient
from market.errors import MarketError, NotFound, ServiceUnavailable
from market.fast_path import FastPathStats, QueryFastPath
from market.health import HealthCheck
from market.i18n import N_
from market.messages import render
from market.notifications.endpoints import router as notifications_router
from market.openapi import install as install_openapi
from market.settings import Settings, get_settings
from market.text_guard import reject_unstorable_text
from metering.endpoints import queries_router
from metering.endpoints import router as metering_router
from products.endpoints import catalogue_router
from products.endpoints import router as products_router
from products.governance.endpoints import resources_router
from products.governance.endpoints import router as authorisations_router
from products.pipeline.endpoints import router as uploads_router

log = logging.getLogger("market")
DATABASE_BUSY_RETRY_AFTER = 2
"""Seconds to wait after a 503 for a busy database (pool or write lock)."""

HOT_ROUTERS = (queries_router,)
"""Routers included first, because their routes carry most requests: Starlette compares a request with the
app's routes in order, so `POST /v1/queries` after the accounts and products routers cost every query
0.1-0.2 ms of matching (docs/benchmarks.md "pg-dash"). Safe only while no other route matches any request
theirs do (tests/market/test_hot_routes.py checks it for every route)."""

ROUTERS = (
    *HOT_ROUTERS,
    accounts_router,
    products_router,
    metering_router,
    authorisations_router,
    resources_router,
    uploads_router,
    catalogue_router,
    billing_router,
    payments_router,
    finance_router,
    compliance_router,
    disclosure_pages_router,
    notifications_router,
)


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"code": code, "message": message}})


def request_locale(request: Request) -> str:
    """The locale LocaleMiddleware negotiated for this request (or negotiated now, outside it)."""
    locale = request.scope.get("state", {}).get("locale")
    return locale if isinstance(locale, str) else i18n.scope_locale(request.scope)


PYDANTIC_ERRORS = {
    "missing": N_("Field required"),
    "extra_forbidden": N_("Extra inputs are not permitted"),
    "string_type": N_("Input should be a valid string"),
    "string_too_short": N_("String should have at least {min_length} characters"),
    "string_too_long": N_("String should have at most {max_length} characters"),
    "string_pattern_mismatch": N_("String should match pattern '{pattern}'"),
    "int_type": N_("Input should be a valid integer"),
    "int_parsing": N_("Input should be a valid integer, unable to parse string as an integer"),
    "bool_parsing": N_("Input should be a valid boolean, unable to interpret input"),
    "greater_than": N_("Input should be greater than {gt}"),
    "greater_than_equal": N_("Input should be greater than or equal to {ge}"),
    "less_than": N_("Input should be less than {lt}"),
    "less_than_equal": N_("Input should be less than or equal to {le}"),
    "literal_error": N_("Input should be {expected}"),
    "enum": N_("Input should be {expected}"),
}
"""Pydantic's messages for the common validation errors, as msgids, so a 422 reads in the caller's language."""


def _validation_detail(error: RequestValidationError, locale: str = "en") -> str:
    parts = []
    for item in error.errors()[:5]:
        loc = tuple(item.get("loc", ()))
        if item.get("type") == "json_invalid":
            reason = (item.get("ctx") or {}).get("error", "JSON decode error")
            if len(loc) > 1:
                parts.append(
                    i18n.gettext(
                        locale,
                        "the body is not valid JSON at character {position} ({reason})",
                        position=loc[1],
                        reason=reason,
                    )
                )
            else:
                parts.append(i18n.gettext(locale, "the body is not valid JSON ({reason})", reason=reason))
            continue
        where = ".".join(str(p) for p in loc if p != "body") or "body"
        message = str(item.get("msg", "invalid")).removeprefix("Value error, ")
        template = PYDANTIC_ERRORS.get(str(item.get("type")))
        if template is not None and locale != "en":
            message = i18n.gettext(locale, template, **(item.get("ctx") or {}))
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _expected_media_type(request: Request) -> str | None:
    """What the route reads its body as, when the request sent something else; None if it matches."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or route.body_field is None:
        return None
    sent = _media_type(request)
    if isinstance(route.body_field.field_info, Form):
        forms = ("multipart/form-data", "application/x-www-form-urlencoded")
        return None if sent in forms else "multipart/form-data"
    if not sent or sent == "application/json" or (sent.startswith("application/") and sent.endswith("+json")):
        return None
    return "a JSON object (Content-Type: application/json)"


_BODY_ERRORS = {
    "There was an error parsing the body": i18n.Msg(
        "send UTF-8 encoded JSON, nested at most a few hundred levels deep, with numbers of at most 4,300 digits"
    ),
}


def _wants_json(request: Request) -> bool:
    """Whether the caller asks for JSON rather than a page (Accept names application/json, not text/html)."""
    accept = request.headers.get("accept", "").lower()
    return "application/json" in accept and "text/html" not in accept


def install_error_handlers(app: FastAPI) -> None:
    """Every error leaves as {"error": {"code", "message"}}; only our own faults are 5xx."""

    @app.exception_handler(MarketError)
    async def market_error(request: Request, error: MarketError) -> Response:
        if is_console_page(request):
            return console_error_response(request, error)
        return JSONResponse(
            status_code=error.status_code, content=error.to_body(request_locale(request)), headers=error.headers
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        expected = _expected_media_type(request)
        locale = request_locale(request)
        if expected is not None:
            content_type = _media_type(request)
            return _error(
                415,
                "unsupported_media_type",
                render("unsupported_media_type", locale, expected=expected, content_type=content_type),
            )
        return _error(
            422, "invalid_request", render("invalid_request", locale, detail=_validation_detail(error, locale))
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        locale = request_locale(request)
        if error.status_code == 404:
            if is_console_page(request) and not _wants_json(request):
                # A person's mistyped or stale link: a readable page in their language, with the way home.
                return console_error_response(request, NotFound("page_not_found", path=request.url.path))
            return _error(404, "not_found", render("not_found", locale, path=request.url.path))
        if error.status_code == 405:
            return _error(
                405,
                "method_not_allowed",
                render("method_not_allowed", locale, method=request.method, path=request.url.path),
            )
        detail = str(error.detail).rstrip(".")
        if error.status_code == 400:
            return _error(400, "invalid_body", render("invalid_body", locale, detail=_BODY_ERRORS.get(detail, detail)))
        return _error(
            error.status_code, "http_error", render("http_error", locale, status=error.status_code, detail=detail)
        )

    @app.exception_handler(PoolTimeout)
    async def pool_exhausted(request: Request, error: PoolTimeout) -> JSONResponse:
        # Overload, not a bug: every pooled connection is in use. Nothing was done; a retry is safe.
        log.warning("database pool exhausted: %s", str(error).splitlines()[0])
        busy = ServiceUnavailable(
            "service_unavailable", detail="the database is busy", retry_after=DATABASE_BUSY_RETRY_AFTER
        )
        return JSONResponse(
            status_code=busy.status_code, content=busy.to_body(request_locale(request)), headers=busy.headers
        )

    @app.exception_handler(DBAPIError)
    async def database_error(request: Request, error: DBAPIError) -> JSONResponse:
        if is_transient(error):
            # A lock or busy timeout (SQLite's write lock included), a deadlock or a serialisation
            # failure: the transaction was rolled back and nothing was committed; retry shortly.
            log.warning("database busy: %s", str(error).splitlines()[0])
            response = _error(503, "database_busy", render("database_busy", request_locale(request)))
            response.headers["Retry-After"] = "1"
            return response
        return await unexpected(request, error)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=error)
        return _error(500, "internal_error", render("internal_error", request_locale(request)))


SWITCH_INTERVAL_SECONDS = 0.0005
"""How long a thread may hold the GIL while another waits for it (CPython's default is 5 ms). A request
thread coming back from the database (every SQLite statement and every PostgreSQL round trip lets the
GIL go) waits for it up to this long while other threads of the process run Python, and on SQLite it
may be holding the machine-wide writer lock meanwhile (market.db.begin_write): at 5 ms a turn the
writer's few statements stretched into tens of milliseconds, and every other writer queued behind it."""

GC_THRESHOLDS = (50_000, 10, 10)
"""The garbage collector's thresholds in an API process (CPython's default: 700, 10, 10). A request allocates
a few thousand container objects, nearly all freed by reference counting, yet each 700 net allocations
start a collection of the youngest generation, and every tenth of those one of the next: at 16
connections a process collected about once every five requests, and each collection holds the GIL,
so it stalls every request of the process in flight at once (up to 45 ms for the youngest generation,
60 ms for the next, wall time on a loaded machine; docs/benchmarks.md "perf-p99"). At 50,000, one
collection every few dozen requests, over objects that are about as many (those of the requests in
flight): the same work, in far fewer stalls, so far fewer requests meet one."""

_gc_pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
_gc_started = [0.0]
_tuned = threading.Lock()


def _gc_timer(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _gc_started[0] = time.perf_counter()
    else:
        _gc_pauses[info["generation"]].append(time.perf_counter() - _gc_started[0])


def _tune_process() -> None:
    """Once per process, before serving: the GIL's switch interval (SWITCH_INTERVAL_SECONDS), the
    collector's thresholds (GC_THRESHOLDS), and the
    objects that exist after start-up (modules, the ORM's and pydantic's classes, catalogues: most of
    the heap, none of it garbage) frozen out of the garbage collector's view (`gc.freeze`), so that a
    full collection under load walks only what requests created, not the whole process (one took
    0.4–3 s of wall time on a loaded machine before; docs/benchmarks.md). Collections are timed, and
    their counts and longest pauses logged when the process stops."""
    with _tuned:
        if _gc_timer in gc.callbacks:
            return
        sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        gc.callbacks.append(_gc_timer)


def _forget_warm_up() -> None:
    """With MARKET_DEBUG_PHASES=1, on SIGUSR1: forget the phases and GC pauses seen so far (the bench's
    warm-up), so that what the process logs when it stops is the measurement only."""
    phases.reset()
    for pauses in _gc_pauses.values():
        pauses.clear()


def _log_gc_pauses() -> None:
    for generation, pauses in _gc_pauses.items():
        logging.getLogger("uvicorn.error").info(
            "gc pauses of process %d, generation %d: %d collections, longest %.1f ms, total %.1f ms",
            *(os.getpid(), generation, len(pauses), 1000 * max(pauses, default=0), 1000 * sum(pauses)),
        )


class _PhaseTimer:
    """With MARKET_DEBUG_PHASES=1 only (market.phases): each request's wall time in this process, from
    its first ASGI call to the last byte of its answer handed to the server, and its phases."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        record = phases.start_request()

        async def timed_send(message: Any) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                route = f"{scope['method']} {getattr(scope.get('route'), 'path', scope['path'])}"
                phases.end_request(record, time.perf_counter() - started, route)

        await self.app(scope, receive, timed_send)


def create_app(settings: Settings | None = None, database: Database | None = None) -> FastAPI:
    """Build the app around `settings` (default: the environment's) and its database."""
    settings = settings or get_settings()
    settings.ensure_dirs()
    database = database or Database.from_settings(settings)

    health = HealthCheck(settings)

    @asynccontextmanager
    async def lifespan(served: FastAPI) -> AsyncIterator[None]:
        _tune_process()
        if phases.ENABLED and threading.current_thread() is threading.main_thread():
            # Run by the event loop between callbacks, never inside code holding phases' lock.
            asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, _forget_warm_up)
        if settings.sandbox_prestart:
            from metering.service import prestart_sandbox

            threading.Thread(target=prestart_sandbox, args=(settings,), name="sandbox-prestart", daemon=True).start()
        with contextlib.ExitStack() as running:
            if settings.scheduler_enabled:
                from billing.scheduler import scheduler_if_first

                served.state.scheduler = running.enter_context(scheduler_if_first(database, settings))
            yield
        health.close()
        database.dispose()
        from sandbox import cache

        _log_gc_pauses()
        for line in phases.report():
            logging.getLogger("uvicorn.error").info("%s", line)
        for name, kept in (("plan", cache.plans), ("result", cache.results)):
            stats = kept.stats()
            logging.getLogger("uvicorn.error").info(  # uvicorn's logger: shown in the server's log
                "sandbox %s cache of process %d: %d hits, %d misses (hit rate %.1f%%), %d entries, ~%d bytes",
                *(name, os.getpid(), stats.hits, stats.misses, 100 * stats.hit_rate, stats.entries, stats.size),
            )

    app = FastAPI(
        title=settings.platform_name,
        version="0.1.0",
        description=(
            "Aggregate-only access to authorised public data. Every /v1 route takes "
            '`Authorization: Bearer <api key>`. Errors are `{"error": {"code", "message"}}`; the message '
            "follows `Accept-Language` (`zh-CN` or `en`; zh-CN without a preference), the code never changes."
        ),
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        dependencies=[Depends(reject_unstorable_text)],
    )
    app.state.settings = settings
    app.state.database = database
    app.state.query_fast_path = FastPathStats()
    if settings.query_fast_path:
        # Added before the locale middleware, so inside it: a query it answers has its locale negotiated.
        app.add_middleware(QueryFastPath, stats=app.state.query_fast_path)
    app.add_middleware(i18n.LocaleMiddleware)
    install_error_handlers(app)
    if phases.ENABLED:
        app.add_middleware(_PhaseTimer)
    for router in ROUTERS:
        app.include_router(router)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """200 once the service can serve: the database answers (checked apart from the request path)."""
        await health.check()
        return {"status": "ok"}

    install_console(app)
    install_openapi(app)
    return app
