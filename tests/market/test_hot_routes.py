"""The query route is the first one a request is compared against (branch pg-dash).

Starlette finds a request's route by trying the app's routes in order. `POST /v1/queries` used to come after
the accounts and products routers: every query, the busiest request by far (the dashboard mix is nothing
else), was first compared against ~60 other routes, 0.1-0.2 ms of CPU a request on this machine
(docs/benchmarks.md "pg-dash"). It now sits in a router of its own, included first (market.app.HOT_ROUTERS).
That is safe only if no other route could answer any request it answers, or the reverse: then the order
of the two changes nothing a client can see. Both are checked here, for every route of the app.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.routing import Match

from market.accounts.models import Role
from market.app import HOT_ROUTERS
from tests.conftest import Market

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def _scope(method: str, path: str) -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "root_path": "", "headers": [], "query_string": b""}


def _sample(path: str) -> str:
    """A request path for a route's template: every parameter `{name}` (or `{name:path}`) filled in."""
    return re.sub(r"\{[^}]+\}", "x", path)


def test_a_query_is_compared_against_no_other_route_first(market: Market) -> None:
    routes = market.client.app.router.routes  # type: ignore[attr-defined]
    tried: list[Any] = []
    originals = {id(route): route.matches for route in routes}
    for route in routes:
        original = originals[id(route)]

        def counting(scope: Any, route: Any = route, original: Any = original) -> Any:
            tried.append(route)
            return original(scope)

        route.matches = counting
    try:
        buyer = market.actor(Role.BUYER)
        body = {"product": "nothing-here", "sql": "SELECT 1"}
        response = market.client.post("/v1/queries", headers=buyer.headers, json=body)
    finally:
        for route in routes:
            route.matches = originals[id(route)]
    assert response.status_code == 404, response.text  # answered by the query route: no such product
    # FastAPI's own /openapi.json route is added first, by FastAPI itself; then ours.
    names = [getattr(route, "path", type(route).__name__) for route in tried]
    assert len(tried) <= 2, names


def _leaves(routes: list[Any]) -> list[Any]:
    """The app's routes with every included router replaced by its own routes (each with its full path)."""
    found: list[Any] = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        found.extend(_leaves(inner.routes) if inner is not None else [route])
    return found


def test_the_hot_routes_share_no_request_with_any_other_route(market: Market) -> None:
    """For every other route's sample path and every method, no hot route matches, fully or by path only
    (which would change a 405's answer); and no other route matches a hot route's path."""
    app = market.client.app  # type: ignore[attr-defined]
    hot = [route for router in HOT_ROUTERS for route in router.routes]
    assert hot
    others = [route for route in _leaves(app.routes) if route not in hot and hasattr(route, "path")]
    assert len(others) > 50
    for route in others:
        path = route.path
        for method in METHODS:
            for candidate in hot:
                match, _ = candidate.matches(_scope(method, _sample(path)))
                assert match == Match.NONE, (method, path, candidate.path)
    for candidate in hot:
        for method in METHODS:
            scope = _scope(method, _sample(candidate.path))
            for route in others:
                match, _ = route.matches(scope)
                assert match == Match.NONE, (method, candidate.path, route.path)
