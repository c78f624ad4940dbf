"""Audit of issue 12 (branch audit9): the result cache holds to its bounds, seen through HTTP.

Issue 12: the result cache must have "bounded memory". sandbox.cache.BoundedCache is bounded by entries and
by an estimate of bytes (`MARKET_SANDBOX_RESULT_CACHE_ENTRIES`, `..._BYTES`), but no test showed it. A hit
needs no sandbox worker, a miss does: with every worker slot taken (as other API processes' queries take
them) and no queue, a cached answer is still 200 and an evicted one is `503 sandbox_busy`.
"""

from __future__ import annotations

from market.accounts.models import Role
from tests.conftest import Actor, Market
from tests.factories import grant, listed_product, query
from tests.support.busy_sandbox import ONE_WORKER_NO_QUEUE, every_worker_taken, market_fixture

QUERIES = [
    "SELECT region, count(*) AS n FROM people GROUP BY region",
    "SELECT month, count(*) AS n FROM people GROUP BY month",
    "SELECT category, count(*) AS n FROM people GROUP BY category",
]


# Estimated sizes (sandbox.cache.size_of: 16 per cell, the text, 256): by region 402, by month 352, by
# category 294. The first two fit in 800; the third evicts the least recently used, as two entries do.
market = market_fixture(
    params=[{"sandbox_result_cache_entries": 2}, {"sandbox_result_cache_bytes": 800}], **ONE_WORKER_NO_QUEUE
)


def _buyer(market: Market) -> tuple[str, Actor]:
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="commercial", plan="standard")
    return listed.slug, buyer


def test_the_result_cache_keeps_the_most_recent_answers_within_its_bounds(market: Market) -> None:
    slug, buyer = _buyer(market)
    for sql in QUERIES:  # the first is the least recently used when the third arrives
        assert query(market, buyer, slug, sql).status_code == 200
    with every_worker_taken(market):
        # No worker for anyone: only cached answers can be served.
        assert query(market, buyer, slug, QUERIES[2]).status_code == 200
        assert query(market, buyer, slug, QUERIES[1]).status_code == 200
        evicted = query(market, buyer, slug, QUERIES[0])
    assert evicted.status_code == 503, evicted.text
    assert evicted.json()["error"]["code"] == "sandbox_busy"
