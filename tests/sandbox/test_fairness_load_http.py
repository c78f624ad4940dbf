"""One buyer floods a real server (`market serve --workers 2`, on loopback) with 30 heavy queries; another
buyer's small query and /healthz are still answered, ahead of the flood, and nothing is a 5xx.

The heavy query joins two 16,000-row tables on a 4-valued key (64 million joined rows, seconds of
work); the small one counts one table by region (milliseconds). "Not stalled" is an ordering, not a
time limit: the other buyer's answer and /healthz arrive before any admitted heavy query finishes.
Before admission control, the flood held both sandbox workers (and a database connection per
request), so the small query queued behind two heavy ones and /healthz waited for the pool.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from bench.live_server import live_server
from market.accounts.models import Role
from metering.service import sandbox_admission
from tests.conftest import Actor, Market
from tests.factories import JOIN_SQL, JOINED_POLICY, SMALL_SQL, grant, joined_tables, listed_product

ROWS = 16_000
FLOOD = 30
HEAVY = JOIN_SQL
SMALL = SMALL_SQL
POLICY = JOINED_POLICY
REGIONS = ("north", "south", "east", "west")


def _tables() -> dict[str, bytes]:
    return joined_tables(ROWS, REGIONS)


@contextlib.contextmanager
def _server(market: Market) -> Iterator[str]:
    """`market serve --workers 2` on the test's database and data directory, stopped afterwards."""
    limits = {
        "MARKET_SANDBOX_WORKERS": "2",
        "MARKET_SANDBOX_ORG_CONCURRENCY": "1",
        "MARKET_SANDBOX_QUEUE_SIZE": "8",
        "MARKET_SANDBOX_QUEUE_TIMEOUT_SECONDS": "30",
        # The heavy join is heavy by its fan-out (rows / regions per key): allowed here, past the default bound.
        "MARKET_SANDBOX_MAX_JOIN_FANOUT": str(ROWS),
    }
    settings = market.settings
    with live_server(settings.data_dir, settings.effective_database_url, workers=2, env=limits) as base:
        yield base


def _post(base: str, buyer: Actor, sql: str) -> httpx.Response:
    return httpx.post(f"{base}/v1/queries", headers=buyer.headers, json={"product": "joined", "sql": sql}, timeout=120)


def test_one_buyers_flood_stalls_neither_another_buyers_small_query_nor_healthz(market: Market) -> None:
    listed = listed_product(market, "joined", tables=_tables(), policy=POLICY)
    flooder, other = market.actor(Role.BUYER), market.actor(Role.BUYER)
    for buyer in (flooder, other):
        grant(market, listed, buyer, purpose="commercial", plan="standard")
    admission = sandbox_admission(market.settings.model_copy(update={"sandbox_org_concurrency": 1}))

    with _server(market) as base:
        for _ in range(4):  # warm both API processes and their sandbox workers
            assert _post(base, other, SMALL).status_code == 200
        finished: list[tuple[float, str, int]] = []
        lock = threading.Lock()

        def timed(kind: str, call: Any) -> httpx.Response:
            response: httpx.Response = call()
            with lock:
                finished.append((time.monotonic(), kind, response.status_code))
            return response

        with ThreadPoolExecutor(max_workers=FLOOD + 2) as pool:
            flood = [pool.submit(timed, "heavy", lambda: _post(base, flooder, HEAVY)) for _ in range(FLOOD)]
            for _ in range(2000):  # until the flood holds its organisation's slot
                if admission.held(admission.org_slots(flooder.principal.org_id)) or all(f.done() for f in flood):
                    break
                time.sleep(0.005)
            small = pool.submit(timed, "small", lambda: _post(base, other, SMALL))
            health = pool.submit(timed, "healthz", lambda: httpx.get(f"{base}/healthz", timeout=120))
            responses = [f.result() for f in flood]
            small_answer, health_answer = small.result(), health.result()

    statuses = [status for _, _, status in finished]
    assert all(status < 500 for status in statuses), statuses
    assert small_answer.status_code == 200, small_answer.text
    assert small_answer.json()["rows"]
    assert health_answer.status_code == 200
    heavy_statuses = sorted(r.status_code for r in responses)
    assert set(heavy_statuses) <= {200, 408, 429, 503}, heavy_statuses
    assert 429 in heavy_statuses, heavy_statuses  # the organisation's limit turned the rest away...
    assert all(int(r.headers["Retry-After"]) >= 1 for r in responses if r.status_code in (429, 503))
    ran = [at for at, kind, status in finished if kind == "heavy" and status in (200, 408)]
    assert ran, heavy_statuses  # ...while at least one heavy query was admitted and ran
    answered = {kind: at for at, kind, _ in finished if kind != "heavy"}
    assert answered["small"] < min(ran), finished
    assert answered["healthz"] < min(ran), finished
