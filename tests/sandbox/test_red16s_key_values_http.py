"""Red team red16s (session 12), on the demo over HTTP: a group key's spelling was its first flight's.

`CASE WHEN carrier = 'UA' THEN INTERVAL 1 DAY ELSE INTERVAL 24 HOUR END` puts every flight of 1 January in one
group (the two intervals are equal), whose key keeps the spelling of the flight DuckDB met first: the year's
first departure (UA 1545 at 05:17, the demo's file being in the source's order). `extract(day FROM <key>)`
answered 1 for UA and 0 for any other carrier: which carrier flew the single earliest flight, as `arg_min`
(refused by name) would say. Failed on main (200, [[1, 842]] for UA, [[0, 842]] for AA). Now refused before
any row is read (sandbox.binding: a key of such a type is shown, compared or ordered, never computed on), the
same refusal for every carrier, never charged; the key shown bare is still answered, alike for all carriers.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import DemoMarket

SLUG = "nyc-flights-2013"


def _key(carrier: str) -> str:
    return f"CASE WHEN carrier = '{carrier}' THEN INTERVAL 1 DAY ELSE INTERVAL 24 HOUR END"


def _post(market: DemoMarket, sql: str) -> Any:
    return market.client.post(
        "/v1/queries", headers=market.headers("buyer_commercial"), json={"product": SLUG, "sql": sql}
    )


@pytest.mark.parametrize(
    "shape",
    [
        "SELECT extract(day FROM {key}) AS first, count(*) AS n FROM flights "
        "WHERE month = 1 AND day = 1 GROUP BY {key}",
        "SELECT CAST({key} AS VARCHAR) AS first, count(*) AS n FROM flights WHERE month = 1 AND day = 1 GROUP BY {key}",
        "SELECT count(*) AS n FROM flights WHERE month = 1 AND day = 1 GROUP BY {key} "
        "HAVING extract(hour FROM {key}) = 24",
    ],
)
def test_the_first_flights_carrier_is_not_told_by_a_key_spelling(demo_market: DemoMarket, shape: str) -> None:
    answers = []
    for carrier in ("UA", "AA"):
        response = _post(demo_market, shape.format(key=_key(carrier)))
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "disallowed_construct"
        error = response.json()["error"]
        answers.append((error["code"], error["message"]))
    assert answers[0] == answers[1]


def test_the_key_shown_compared_or_ordered_is_answered_alike(demo_market: DemoMarket) -> None:
    rows = []
    for carrier in ("UA", "AA"):
        sql = (
            f"SELECT {_key(carrier)} AS k, {_key(carrier)} = INTERVAL 1 DAY AS one_day, count(*) AS n FROM flights "
            f"WHERE month = 1 AND day = 1 GROUP BY {_key(carrier)} ORDER BY {_key(carrier)}"
        )
        response = _post(demo_market, sql)
        assert response.status_code == 200, response.text
        rows.append(response.json()["rows"])
    assert rows[0] == rows[1] == [["P1DT0S", True, 842]]


def test_the_refusal_says_what_to_change_in_the_callers_language(demo_market: DemoMarket) -> None:
    """The refusal's construct and advice are translated (zh-CN first), not English inside a Chinese sentence."""
    sql = (
        f"SELECT extract(day FROM {_key('UA')}) AS first, count(*) AS n FROM flights "
        f"WHERE month = 1 AND day = 1 GROUP BY {_key('UA')}"
    )
    response = demo_market.client.post(
        "/v1/queries",
        headers={**demo_market.headers("buyer_commercial"), "Accept-Language": "zh-CN"},
        json={"product": SLUG, "sql": sql},
    )
    assert response.status_code == 422, response.text
    message = response.json()["error"]["message"]
    assert "分组键" in message and "Computing" not in message and "group by" not in message, message
