"""The console's routers, mounted on the app with its static files. Add a role's routers to ROUTERS."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles

from market.console import (
    access,
    admin,
    auth,
    catalogue,
    finance,
    invoices,
    notices,
    operator,
    operator_access,
    operator_build,
    query,
    regulator,
    source,
    usage,
)
from market.console.web import HERE

ROUTERS: tuple[APIRouter, ...] = (
    auth.router,
    catalogue.router,
    access.router,
    query.router,
    usage.router,
    invoices.router,
)
ROUTERS += (finance.router, admin.router)
ROUTERS += regulator.ROUTERS  # con-reg: the regulator's pages
ROUTERS += (source.router,)  # con-reg: the source departments' pages
ROUTERS += (operator_build.router, operator.router, operator_access.router)
ROUTERS += (notices.router,)  # con-reg2: public notices and objections, for every signed-in organisation


def install(app: FastAPI) -> None:
    """Mount the console's pages and its static files (CSS, JS and vendored libraries, served locally)."""
    for router in ROUTERS:
        app.include_router(router)
    app.mount("/console/static", StaticFiles(directory=HERE / "static"), name="console-static")
