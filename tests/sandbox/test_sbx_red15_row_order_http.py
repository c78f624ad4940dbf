"""Red team sbx-red15 (issue 9, session 11): on the demo over HTTP, an answer's row order is its values' order.

The demo's flights are stored in the source's order (by date and departure time; `time_hour` and the minute
are not a buyer's). Before the fix, `SELECT carrier, count(*) ... WHERE month = 1 AND day = 1 GROUP BY carrier`
listed the carriers in the order of each one's first flight that day (UA first: the year's first departure,
UA 1545 at 05:17), and `LIMIT 1` without ORDER BY returned that carrier alone: which carrier flew the single
earliest flight, a fact about one row that `arg_min` (refused by name) would give. With hour filters the
same reads the relative minutes of single flights. Now every grouped query ends its ORDER BY with each output
column (validator.py), so the rows come in the order of their values, and LIMIT keeps the least. Failed
before the fix (the carriers in first-departure order, UA first).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import DemoMarket

SLUG = "nyc-flights-2013"
QUERIES = [
    "SELECT carrier, count(*) AS n FROM flights WHERE month = 1 AND day = 1 GROUP BY carrier",
    "SELECT origin, dest, count(*) AS n FROM flights WHERE month = 1 AND day = 2 GROUP BY origin, dest",
    "SELECT carrier, origin, count(*) AS n FROM flights WHERE month = 3 AND hour = 6 GROUP BY carrier, origin",
]


def _rows(market: DemoMarket, sql: str) -> list[list[Any]]:
    response = market.client.post(
        "/v1/queries", headers=market.headers("buyer_commercial"), json={"product": SLUG, "sql": sql}
    )
    assert response.status_code == 200, response.text
    rows: list[list[Any]] = response.json()["rows"]
    return rows


@pytest.mark.parametrize("sql", QUERIES)
def test_rows_come_in_the_order_of_their_values_not_of_the_flights(demo_market: DemoMarket, sql: str) -> None:
    rows = _rows(demo_market, sql)
    assert len(rows) >= 3, rows  # several groups pass k, so their order could say something
    assert rows == sorted(rows), rows
    # LIMIT without ORDER BY keeps the least row by value, never the group of the earliest flight.
    assert _rows(demo_market, sql + " LIMIT 1") == rows[:1]
    assert _rows(demo_market, sql + " LIMIT 2 OFFSET 1") == rows[1:3]


def test_a_structured_query_and_a_dp_answer_come_in_value_order_too(demo_market: DemoMarket) -> None:
    """The structured query compiles to SQL the validator orders; DP mode orders its noisy rows by the keys,
    then by the ORDER BY (now every output column), never by the worker's order."""
    structured = {
        "table": "flights",
        "dimensions": ["carrier"],
        "measures": [{"aggregate": "count", "as": "n"}],
        "filters": [{"column": "month", "op": "=", "value": 1}, {"column": "day", "op": "=", "value": 1}],
        "limit": 1,
    }
    response = demo_market.client.post(
        "/v1/queries", headers=demo_market.headers("buyer_commercial"), json={"product": SLUG, "query": structured}
    )
    assert response.status_code == 200, response.text
    everything = _rows(demo_market, QUERIES[0])
    assert response.json()["rows"] == everything[:1]  # '9E', not UA (the year's first flight)
    response = demo_market.client.post(
        "/v1/queries",
        headers=demo_market.headers("buyer_commercial"),
        json={"product": "nyc-flights-2013-dp", "sql": "SELECT origin, count(*) AS n FROM flights GROUP BY origin",
              "epsilon": 0.05},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    keys = [row[0] for row in response.json()["rows"]]
    assert keys == sorted(keys) and keys, keys
