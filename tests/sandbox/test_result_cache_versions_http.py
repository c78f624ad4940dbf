"""Issue 12, "Bounded memory, invalidated by new versions": a new version's query never meets an old answer.

The result cache (sandbox/cache.py) keys an answer by the version's Parquet files, among the statements that
run. Over HTTP: a buyer's query on version 1 is answered and cached (with every sandbox worker taken, it is
still served: only a cached answer can be); the operator publishes version 2 with other data (one month
fewer) and, as the product's rules require (an agreement is pinned to the version it was made on), the buyer
asks for access again and gets an agreement on version 2. The same SQL then answers from version 2's data,
and never with the cached version-1 answer: with every worker taken it is `503 sandbox_busy`, not a hit.
Version 1's agreement still gets version 1's answer, from the cache.
"""

from __future__ import annotations

from typing import Any

from market.accounts.models import Role
from tests.conftest import Market
from tests.factories import UNITS, grant, listed_product, people_csv, query, upload_version
from tests.support.busy_sandbox import ONE_WORKER_NO_QUEUE, every_worker_taken, market_fixture

SQL = "SELECT region, count(*) AS n, sum(trips) AS t FROM people GROUP BY region"


market = market_fixture(**ONE_WORKER_NO_QUEUE)


def _two_months() -> bytes:
    """people.csv without month 3: every region keeps its 15 people, with two rows each instead of three."""
    lines = people_csv().decode().splitlines()
    return ("\n".join([lines[0]] + [line for line in lines[1:] if line.split(",")[4] != "3"]) + "\n").encode()


def _rows(response: Any) -> list[list[Any]]:
    assert response.status_code == 200, response.text
    return sorted(response.json()["rows"])


def _query(market: Market, buyer: Any, slug: str, agreement: str | None = None) -> Any:
    body: dict[str, Any] = {"product": slug, "sql": SQL}
    if agreement is not None:
        body["agreement"] = agreement
    return market.client.post("/v1/queries", headers=buyer.headers, json=body)


def test_a_new_versions_query_answers_from_its_own_data_never_from_the_cached_old_answer(market: Market) -> None:
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="commercial", plan="standard")
    first = query(market, buyer, listed.slug, SQL)
    v1_rows = _rows(first)
    v1_agreement = first.json()["agreement_id"]
    assert sum(row[1] for row in v1_rows) == UNITS * 3
    with every_worker_taken(market):  # no worker: only a cached answer can be served
        assert _rows(query(market, buyer, listed.slug, SQL)) == v1_rows

    # Version 2, other data, reviewed and listed; the buyer's agreement stays on version 1 until it asks again.
    operator, regulator = listed.operator, listed.regulator
    assert upload_version(market, operator, listed.slug, content=_two_months()).status_code == 201
    assert market.client.post(f"/v1/products/{listed.slug}/submit", headers=operator.headers).status_code == 200
    approved = market.client.post(
        f"/v1/products/{listed.slug}/review", headers=regulator.headers, json={"decision": "approve"}
    )
    assert approved.status_code == 200 and approved.json()["version"] == 2, approved.text
    assert _rows(query(market, buyer, listed.slug, SQL)) == v1_rows  # still version 1's agreement
    grant(market, listed, buyer, purpose="commercial", plan="standard")  # an agreement on version 2

    with every_worker_taken(market):
        # The same SQL under the version-2 agreement: not in the cache (its files are version 2's), so it
        # needs a worker and, with none free, is refused; the cached version-1 answer is never served for it.
        missed = query(market, buyer, listed.slug, SQL)
        assert missed.status_code == 503, missed.text
        assert missed.json()["error"]["code"] == "sandbox_busy"
    second = query(market, buyer, listed.slug, SQL)
    v2_rows = _rows(second)
    assert second.json()["agreement_id"] != v1_agreement
    assert sum(row[1] for row in v2_rows) == UNITS * 2 and v2_rows != v1_rows
    with every_worker_taken(market):
        # Both answers are cached now, each for its own version.
        assert _rows(query(market, buyer, listed.slug, SQL)) == v2_rows
        assert _rows(_query(market, buyer, listed.slug, v1_agreement)) == v1_rows
