"""The HTTP application: routers of every context, one error shape, health check."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.params import Form
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from billing.endpoints import router as billing_router
from billing.finance_endpoints import router as finance_router
from billing.payment_endpoints import router as payments_router
from market.accounts.endpoints import router as accounts_router
from market.db import Database, is_transient
from market.errors import MarketError
from market.messages import render
from market.openapi import install as install_openapi
from market.settings import Settings, get_settings
from market.text_guard import reject_unstorable_text
from market.web import router as web_router
from metering.endpoints import router as metering_router
from products.endpoints import catalogue_router
from products.endpoints import router as products_router
from products.governance.endpoints import resources_router
from products.governance.endpoints import router as authorisations_router
from products.pipeline.endpoints import router as uploads_router

log = logging.getLogger("market")

ROUTERS = (
    web_router,
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
)


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"code": code, "message": message}})


def _validation_detail(error: RequestValidationError) -> str:
    parts = []
    for item in error.errors()[:5]:
        loc = tuple(item.get("loc", ()))
        if item.get("type") == "json_invalid":
            reason = (item.get("ctx") or {}).get("error", "JSON decode error")
            where = f" at character {loc[1]}" if len(loc) > 1 else ""
            parts.append(f"the body is not valid JSON{where} ({reason})")
            continue
        where = ".".join(str(p) for p in loc if p != "body") or "body"
        message = str(item.get("msg", "invalid")).removeprefix("Value error, ")
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
    "There was an error parsing the body": (
        "send UTF-8 encoded JSON, nested at most a few hundred levels deep, with numbers of at most 4,300 digits"
    ),
}


def install_error_handlers(app: FastAPI) -> None:
    """Every error leaves as {"error": {"code", "message"}}; only our own faults are 5xx."""

    @app.exception_handler(MarketError)
    async def market_error(_: Request, error: MarketError) -> JSONResponse:
        return JSONResponse(status_code=error.status_code, content=error.to_body())

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        expected = _expected_media_type(request)
        if expected is not None:
            content_type = _media_type(request)
            return _error(
                415,
                "unsupported_media_type",
                render("unsupported_media_type", expected=expected, content_type=content_type),
            )
        return _error(422, "invalid_request", render("invalid_request", detail=_validation_detail(error)))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        if error.status_code == 404:
            return _error(404, "not_found", render("not_found", path=request.url.path))
        if error.status_code == 405:
            return _error(
                405,
                "method_not_allowed",
                render("method_not_allowed", method=request.method, path=request.url.path),
            )
        detail = str(error.detail).rstrip(".")
        if error.status_code == 400:
            return _error(400, "invalid_body", render("invalid_body", detail=_BODY_ERRORS.get(detail, detail)))
        return _error(error.status_code, "http_error", render("http_error", status=error.status_code, detail=detail))

    @app.exception_handler(DBAPIError)
    async def database_error(_: Request, error: DBAPIError) -> JSONResponse:
        if is_transient(error):
            # A lock or busy timeout, a serialisation failure: nothing was committed; retry shortly.
            response = _error(503, "database_busy", render("database_busy"))
            response.headers["Retry-After"] = "1"
            return response
        log.exception("database error", exc_info=error)
        return _error(500, "internal_error", render("internal_error"))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=error)
        return _error(500, "internal_error", render("internal_error"))


def create_app(settings: Settings | None = None, database: Database | None = None) -> FastAPI:
    """Build the app around `settings` (default: the environment's) and its database."""
    settings = settings or get_settings()
    settings.ensure_dirs()
    database = database or Database.from_settings(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        scheduler = None
        if settings.scheduler_enabled:
            from billing.scheduler import start_scheduler

            scheduler = start_scheduler(database, settings)
        yield
        if scheduler is not None:
            scheduler.shutdown(wait=False)
        database.dispose()

    app = FastAPI(
        title=settings.platform_name,
        version="0.1.0",
        description=(
            "Aggregate-only access to authorised public data. Every /v1 route takes "
            '`Authorization: Bearer <api key>`. Errors are `{"error": {"code", "message"}}`.'
        ),
        lifespan=lifespan,
        dependencies=[Depends(reject_unstorable_text)],
    )
    app.state.settings = settings
    app.state.database = database
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """200 once the service can serve: the database answers."""
        with database.engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
        return {"status": "ok"}

    install_openapi(app)
    return app
