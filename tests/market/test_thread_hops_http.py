"""Issue 12, "No needless thread hops between sync dependencies", through HTTP (branch tidy15).

FastAPI runs an async dependency on the event loop and hands each sync dependency, and a sync handler, to its
threadpool: one hop each, a worker thread woken and then the loop again (docs/benchmarks.md "perf-api2").
POST /v1/queries is designed for ONE hop: its dependencies (the text guard, the caller from the key cache)
are async and run on the event loop, and it reads the database and the settings from the request's app
(lean13); only its handler, which blocks on the database and the sandbox, runs in a worker thread. The caller
read from the database (a key-cache miss) is the one further hop the design allows (market.deps.get_principal).

With the phases flag (market.phases; MARKET_DEBUG_PHASES=1, set here in-process before the app is built),
every dependency and the handler note the hop they run in. The queries go through HTTP; what each request's
code did is read back from market.phases. Making any of the dependencies sync adds a hop, and fails this.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from market import phases
from market.accounts.models import Role
from metering import endpoints
from tests.conftest import Market, running_market
from tests.factories import grant, listed_product, query

ROUTE = "POST /v1/queries"
QUERIES = [
    "SELECT region, count(*) AS n FROM people GROUP BY region",
    "SELECT month, count(*) AS n FROM people GROUP BY month",
    "SELECT category, count(*) AS n FROM people GROUP BY category",
]


@pytest.fixture(params=[False, True], ids=["fastapi", "fast-path"])
def market(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, database_factory: Any, tmp_path: Path
) -> Iterator[Market]:
    """With the query fast path (market.fast_path, branch asgi15) off, then on."""
    monkeypatch.setattr(phases, "ENABLED", True)  # before the app is built: it adds its phase timer then
    phases.reset()
    with running_market(database_factory, tmp_path / "data", query_fast_path=request.param) as running:
        yield running
    phases.reset()


def _dependencies(market: Market) -> list[str]:
    """Every dependency FastAPI resolves for POST /v1/queries (the app's and the route's), by name."""
    (route,) = [r for r in endpoints.queries_router.routes if isinstance(r, APIRoute) and r.path == "/v1/queries"]
    found = [getattr(d.dependency, "__name__", repr(d)) for d in market.client.app.router.dependencies]

    def walk(dependant: Dependant) -> None:
        for sub in dependant.dependencies:
            found.append(getattr(sub.call, "__name__", repr(sub.call)))
            walk(sub)

    walk(route.dependant)
    return found


def test_a_query_runs_its_dependencies_on_the_event_loop_and_only_its_handler_in_a_worker_thread(
    market: Market,
) -> None:
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="commercial", plan="standard")
    phases.reset()
    for sql in QUERIES:
        answered = query(market, buyer, listed.slug, sql)
        assert answered.status_code == 200, answered.text

    dependencies = _dependencies(market)
    # The text guard and the caller are dependencies; the database and the settings are read from the
    # request's app (branch lean13), so FastAPI solves two fewer per request.
    assert {"get_principal", "reject_unstorable_text"} <= set(dependencies)
    assert not {"_database", "_settings"} & set(dependencies), dependencies
    if market.settings.query_fast_path:
        # The fast path calls get_principal itself and checks the text inline, both on the event loop.
        dependencies = ["query_fast_path", "get_principal"]
    kept = [sites for route, sites in phases.hops() if route == ROUTE]
    assert len(kept) == len(QUERIES), phases.hops()
    hop_counts = []
    for sites in kept:
        by_hop: dict[int, list[str]] = {}
        for site, hop in sites:
            by_hop.setdefault(hop, []).append(site)
        # Every dependency ran once, on the event loop: none cost a hop.
        assert sorted(by_hop.get(0, [])) == sorted(dependencies), sites
        hops = [tuple(by_hop[hop]) for hop in sorted(by_hop) if hop]
        # The handler in one hop of its own; besides it, only the caller's database read (a key-cache miss).
        assert hops.count(("run_query",)) == 1, sites
        assert set(hops) <= {("run_query",), ("_authenticate",)}, sites
        assert len(hops) == 1 + hops.count(("_authenticate",)), sites
        hop_counts.append(len(hops))
    assert 1 in hop_counts, kept  # a caller from the key cache: the handler's hop, and no other
