"""A measure's own NULLs: every aggregate cell covers k units among the rows where its argument is not NULL.

The red team's leak on the demo (issue 9): `sum(arr_delay), sum(dep_delay), sum(air_time)` over
`dest = 'LEX' OR <22 aircraft whose flights were all cancelled>` passed the group's threshold (23
aircraft), but the 22 cancelled flights hold NULL in every measure, so the sums were the LEX
flight's own row. The fixture below is that situation in miniature: one LEX flight, 22 cancelled
aircraft departing JFK at 17:00 on 8 February, and 40 ordinary aircraft.
"""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from market.accounts.models import Role
from tests.conftest import Market
from tests.factories import grant, listed_product, query

K = 10
LEX = {"arr_delay": -22, "dep_delay": -9, "air_time": 90}
MEASURES = ["arr_delay", "dep_delay", "air_time"]

POLICY: dict[str, Any] = {
    "min_group_size": K,
    "tables": {
        "flights": {
            "privacy_unit": "tailnum",
            "dimensions": ["origin", "dest", "month", "day", "hour"],
            "measures": MEASURES,
            "hidden": [],
            "bounds": {m: {"min": -1000, "max": 2000} for m in MEASURES},
        }
    },
}


def flights_rows(lex: dict[str, int] = LEX) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for plane in range(40):  # ordinary flights: every measure known
        for flight in range(3):
            rows.append(
                {
                    "tailnum": f"N{plane:03d}",
                    "origin": "LGA",
                    "dest": "ATL",
                    "month": 1,
                    "day": flight + 1,
                    "hour": 9,
                    "arr_delay": plane - 20 + flight,
                    "dep_delay": plane % 7,
                    "air_time": 100 + plane,
                }
            )
    rows.append({"tailnum": "N900", "origin": "LGA", "dest": "LEX", "month": 3, "day": 1, "hour": 8, **LEX})
    for plane in range(22):  # cancelled: no delay, no air time
        rows.append(
            {
                "tailnum": f"C{plane:03d}",
                "origin": "JFK",
                "dest": "ORD",
                "month": 2,
                "day": 8,
                "hour": 17,
                **dict.fromkeys(MEASURES, ""),
            }
        )
    return rows


def flights_csv(lex: dict[str, int] = LEX) -> bytes:
    rows = flights_rows(lex)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


LEAK = (
    "SELECT count(*) AS n, sum(arr_delay) AS arr, sum(dep_delay) AS dep, sum(air_time) AS air, "
    "count(arr_delay) AS known, avg(arr_delay) AS mean, sum(arr_delay + air_time) AS both "
    "FROM flights WHERE dest = 'LEX' OR (month = 2 AND day = 8 AND hour = 17 AND origin = 'JFK')"
)


def _answer(market: Market, lex: dict[str, int], sql: str, slug: str = "flights") -> Any:
    listed = listed_product(market, slug, tables={"flights.csv": flights_csv(lex)}, policy=POLICY)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="public_welfare", plan="public")
    response = query(market, buyer, listed.slug, sql)
    assert response.status_code == 200, response.text
    return response.json()


def test_sums_over_one_known_row_among_null_rows_are_withheld(market: Market) -> None:
    body = _answer(market, LEX, LEAK)
    # The group passes (23 aircraft), so count(*) is released; every aggregate of a measure covers
    # one aircraft where its argument is not NULL, so each of those cells is NULL.
    assert body["rows"] == [[23, None, None, None, None, None, None]]
    assert str(K) in body["suppression"]["rule"]


def test_the_hidden_row_changes_nothing_a_buyer_sees(market: Market) -> None:
    other = {"arr_delay": 300, "dep_delay": 250, "air_time": 45}
    first = _answer(market, LEX, LEAK, "flights-a")
    second = _answer(market, other, LEAK, "flights-b")
    assert first["rows"] == second["rows"]


def test_cells_with_k_units_of_known_values_are_exact(market: Market) -> None:
    sql = (
        "SELECT origin, count(*) AS n, sum(arr_delay) AS arr, count(air_time) AS known "
        "FROM flights GROUP BY origin ORDER BY origin"
    )
    body = _answer(market, LEX, sql)
    rows = flights_rows()
    lga = [r for r in rows if r["origin"] == "LGA"]
    # JFK: 22 aircraft, none with a known delay: the group is released, its sum and count(air_time) are not.
    assert body["rows"] == [
        ["JFK", 22, None, None],
        ["LGA", len(lga), sum(int(r["arr_delay"]) for r in lga), len(lga)],
    ]


@pytest.mark.parametrize("having", ["sum(arr_delay) IS NULL", "sum(arr_delay) = -22"])
def test_having_sees_the_withheld_cell_as_null(market: Market, having: str) -> None:
    sql = LEAK.split(" FROM")[0].split(",")[0] + " FROM flights WHERE dest = 'LEX' OR origin = 'JFK' HAVING " + having
    body = _answer(market, LEX, sql)
    assert body["rows"] == ([[23]] if "IS NULL" in having else [])
