"""Oracle tests over HTTP: two queries that differ only in a hidden fact about a small group get the same answer.

In the people product, category 'rare' holds 5 people (suppressed at k=10) and 'nobody' none. Before,
`suppressed_groups` told them apart (4 groups against 0), and so did errors raised on their rows.
(Differencing two answered groups, e.g. `category = 'rare' OR region = 'north'` against `region = 'north'`,
is exact in threshold mode and not covered here: that is what DP mode is for; see docs/sandbox.md.)
"""

from __future__ import annotations

from typing import Any

import pytest

from market.accounts.models import Role
from tests.conftest import Market
from tests.factories import grant, listed_product, query

PAIRS = [
    "SELECT region, count(*) AS n, sum(amount) AS s FROM people WHERE category = '{c}' GROUP BY region",
    "SELECT count(*) AS n FROM people WHERE category = '{c}'",
    "SELECT count(*) AS n FROM people WHERE CASE WHEN category = '{c}' THEN CAST('x' AS INTEGER) = 1 ELSE true END",
    "SELECT count(*) AS n FROM people WHERE CASE WHEN category = '{c}' THEN region = 5 ELSE true END",
]


def _seen(response: Any) -> tuple[int, Any]:
    body = response.json()
    if response.status_code != 200:
        return response.status_code, body["error"]["code"]
    usage = {k: v for k, v in body["usage"].items() if k != "cpu_ms"}
    return 200, (body["columns"], body["rows"], usage, body["suppression"])


@pytest.mark.parametrize("template", PAIRS)
def test_a_hidden_fact_changes_nothing_a_buyer_sees(market: Market, template: str) -> None:
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="public_welfare", plan="public")
    rare = query(market, buyer, listed.slug, template.format(c="rare"))
    nobody = query(market, buyer, listed.slug, template.format(c="nobody"))
    assert _seen(rare) == _seen(nobody)
    items = market.client.get("/v1/usage", headers=buyer.headers).json()["items"]
    assert items and all("suppressed_groups" not in item for item in items)
