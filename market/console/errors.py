"""Errors on console pages: a readable page in the page's language, or the sign-in page when signed out."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response
from fastapi.routing import APIRoute

from market.console.web import error_page, get_read_console, login_redirect
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
    """Whether the request is for a console page (not the JSON API, the docs or a static file).

    A route in the OpenAPI document is part of the API, whatever its path (the public registration
    and disclosure routes answer HTML or JSON): its errors keep the JSON error shape.
    """
    route = request.scope.get("route")
    if isinstance(route, APIRoute) and route.include_in_schema:
        return False
    return not request.url.path.startswith(API_PREFIXES)


def console_error_response(request: Request, error: MarketError) -> Response:
    """The error as a page: a signed-out visitor is sent to sign in, anything else reads the message."""
    if isinstance(error, Unauthenticated) and request.method == "GET":
        return login_redirect(request)
    contexts = get_read_console(request)  # a reader: the failed request's own writer may still hold the lock
    console = next(contexts)
    try:
        response = error_page(console, error)
    finally:
        contexts.close()
    for name, value in error.headers.items():
        response.headers[name] = value
    return response
