"""Red team red12 (issue 9, session 8): error oracles on suppressed groups and rows, through HTTP on the demo.

Each query is sent twice, once filtered to 'LEX' (one flight of one aircraft in 2013: every group it
touches is suppressed) and once to 'ZZZ' (no flight). The hidden fact is whether that flight exists, so
both answers must be identical: the same status, the same error code, the same rows. Each query tries
to raise a run-time error (overflow of BIGINT, INTERVAL months, TIMESTAMP or DATE range; an INTERVAL
Python cannot hold) only for the hidden row or its suppressed group. All held on main, except the
INTERVAL Python cannot hold, which killed the worker (test_red12_answer_values.py) on both sides alike.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import DemoMarket

SLUG = "nyc-flights-2013"
ORACLES = [
    # Post-aggregate arithmetic in HAVING, ORDER BY and the select list: computed for passing groups only.
    "SELECT origin, count(*) AS n FROM flights WHERE dest = '{d}' GROUP BY origin "
    "HAVING (count(*) + 1) * 9223372036854775807 > 0",
    "SELECT origin, count(*) AS n FROM flights WHERE dest = '{d}' GROUP BY origin "
    "ORDER BY (count(*) + 1) * 9223372036854775807",
    "SELECT origin, (count(*) + 1) * 9223372036854775807 AS n FROM flights WHERE dest = '{d}' GROUP BY origin",
    # A passing group (BOS) beside the suppressed one, the error reached only on the suppressed group's counts.
    "SELECT dest, count(*) AS n FROM flights WHERE dest IN ('{d}', 'BOS') GROUP BY dest "
    "HAVING TIMESTAMP '2013-01-01' + (15508 - count(*)) * INTERVAL 1000000 DAY > TIMESTAMP '2013-01-01'",
    "SELECT dest, count(*) AS n, (count(*) - 15508) * INTERVAL 100000000 YEAR AS i FROM flights "
    "WHERE dest IN ('{d}', 'BOS') GROUP BY dest",
    "SELECT dest, count(*) AS n FROM flights WHERE dest IN ('{d}', 'BOS') GROUP BY dest "
    "ORDER BY 9223372036854775807 // (count(*) - 1)",
    "SELECT dest, count(*) AS n FROM flights WHERE dest IN ('{d}', 'BOS') GROUP BY dest HAVING ln(count(*) - 1) > -1",
    # Row level: a constant that errors or cannot be held, reached only on the hidden row.
    "SELECT origin, count(*) AS n FROM flights "
    "WHERE DATE '2013-01-01' + CASE WHEN dest = '{d}' THEN INTERVAL 100000000 YEAR ELSE INTERVAL 0 DAY END "
    "> DATE '2013-01-01' GROUP BY origin",
    "SELECT origin, count(*) AS n FROM flights "
    "WHERE CASE WHEN dest = '{d}' THEN 2147483647 ELSE 0 END + month > 0 GROUP BY origin",
    "SELECT origin, count(*) AS n FROM flights "
    "WHERE (CASE WHEN dest = '{d}' THEN 2 ELSE 0 END) * INTERVAL 2000000000 MONTH > INTERVAL 0 DAY GROUP BY origin",
    "SELECT origin, count(*) AS n FROM flights GROUP BY origin, "
    "DATE '2013-01-01' + CASE WHEN dest = '{d}' THEN INTERVAL 100000000 YEAR ELSE INTERVAL 0 DAY END",
    # Row level: functions and casts that raise on some values, computed only for the hidden row.
    "SELECT origin, count(*) AS n FROM flights WHERE dest = '{d}' GROUP BY origin, 100 // (month - month)",
    "SELECT origin, count(*) AS n FROM flights WHERE dest = '{d}' GROUP BY origin, CAST(month * 100000 AS SMALLINT)",
    "SELECT origin, count(*) AS n FROM flights WHERE dest = '{d}' AND hour * 9223372036854775807 > 0 GROUP BY origin",
    "SELECT origin, count(*) AS n FROM flights WHERE dest = '{d}' AND log(month - 13) < 0 GROUP BY origin",
]


def _answer(market: DemoMarket, sql: str) -> tuple[Any, ...]:
    response = market.client.post(
        "/v1/queries", headers=market.headers("buyer_commercial"), json={"product": SLUG, "sql": sql}
    )
    assert response.status_code < 500, response.text
    body = response.json()
    if "error" in body:
        return response.status_code, body["error"]["code"]
    # Without ORDER BY the rows come in any order (DuckDB's threads): compared as a sorted list.
    return response.status_code, body["columns"], sorted(map(repr, body["rows"])), body["usage"]


@pytest.mark.parametrize("template", ORACLES)
def test_a_hidden_row_that_exists_or_not_gets_the_same_answer(demo_market: DemoMarket, template: str) -> None:
    assert _answer(demo_market, template.format(d="LEX")) == _answer(demo_market, template.format(d="ZZZ"))
