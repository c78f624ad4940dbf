"""Red team red13 (issue 9, session 9): the result cache across buyers, agreements and modes, over HTTP.

The result cache (sandbox/cache.py) keys an answer by the version's files and the statements that run;
a hit must give exactly what a fresh run of THIS query would give. Found: the answer's column names
came from whichever query filled the entry, so a buyer read another buyer's select-list aliases (a
cross-tenant leak of query text) and got columns named for someone else's query.
"""

from __future__ import annotations

from typing import Any

from tests.conftest import DemoMarket

SLUG = "nyc-flights-2013"
DP_SLUG = "nyc-flights-2013-dp"


def _query(market: DemoMarket, role: str, sql: str, **extra: Any) -> dict[str, Any]:
    response = market.client.post(
        "/v1/queries", headers=market.headers(role), json={"product": SLUG, "sql": sql, **extra}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_a_cache_hit_names_its_columns_as_the_query_asked(demo_market: DemoMarket) -> None:
    # Buyer A's query fills the cache; buyer B asks the same statements with other (or no) aliases.
    first = _query(
        demo_market,
        "buyer_commercial",
        "SELECT origin, count(*) AS secret_alias_of_buyer_a FROM flights WHERE month = 3 GROUP BY origin",
    )
    assert first["columns"] == ["origin", "secret_alias_of_buyer_a"]
    for sql, columns in [
        ("SELECT origin, count(*) FROM flights WHERE month = 3 GROUP BY origin", ["origin", "count(*)"]),
        ("SELECT origin AS o, count(*) AS n FROM flights WHERE month = 3 GROUP BY origin", ["o", "n"]),
    ]:
        answer = _query(demo_market, "buyer_public", sql)
        assert answer["columns"] == columns, "a cache hit showed another query's column names"
        assert sorted(answer["rows"]) == sorted(first["rows"])
        # The regulator's audit of buyer B's record: B's columns too, never A's text.
        audit = demo_market.client.get(
            "/v1/audit/queries", headers=demo_market.headers("regulator"), params={"limit": 200}
        )
        assert audit.status_code == 200, audit.text
        (entry,) = [item for item in audit.json()["items"] if item["id"] == answer["query_id"]]
        assert entry["result_columns"] == columns
