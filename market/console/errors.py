"""Errors on console pages: a readable page in the page's language, or the sign-in page when signed out."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response

from market.console.web import error_page, get_console, login_redirect
from market.errors import MarketError, Unauthenticated

API_PREFIXES = (
    "/v1",
    "/healthz",
    "/docs",
    "/redoc",
    "/openapi.json",
    "/static",
    "/console/static",
)


def is_console_page(request: Request) -> bool:
    """Whether the request is for a console page (not the JSON API, the docs or a static file)."""
    return not request.url.path.startswith(API_PREFIXES)


def console_error_response(request: Request, error: MarketError) -> Response:
    """The error as a page: a signed-out visitor is sent to sign in, anything else reads the message."""
    if isinstance(error, Unauthenticated) and request.method == "GET":
        return login_redirect(request)
    contexts = get_console(request)
    console = next(contexts)
    try:
        response = error_page(console, error)
    finally:
        contexts.close()
    for name, value in error.headers.items():
        response.headers[name] = value
    return response
