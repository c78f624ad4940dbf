"""Row-level `%` costs the same for every value (issue 9; red team red16, bench/red16_value_costs.py).

Arithmetic on data runs in DOUBLE (syntax.guard), and DuckDB computes a DOUBLE `a % b` with C's fmod(), whose time
grows with the exponent of a / b: 23 ns a row for `7.0 % 3.0`, 1,097 ns for `1e300 % 3.0` (48x, one thread). A buyer
moves that window with a constant, `((d - 40) * 1e300) % 3.0` is fast only where d = 40, and repeats it in one
expression, so the time of a query whose filter picks hidden rows said whether one of them held d = 40.

Now a row-level `a % b` runs as `a - b * trunc(a / b)` (the same remainder for every dividend under 2^53 times the
divisor, the sign of the dividend's, as fmod's; NaN for a zero divisor), whose operations cost the same for every
value. The divisor must be a constant (the dividend would be written twice per `%`, so a divisor reading data, or a
`%` of a `%`, could double the statement per level): refused with what to write instead, en and zh-CN.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox.errors import QueryRefused
from tests.conftest import Market
from tests.factories import people_rows, queried_product, query


def _statement_has_no_fmod(sql_run: str) -> bool:
    """No `%` operator or fmod() left in the statement that ran (LIKE patterns aside: the queries here have none)."""
    return "%" not in sql_run and "fmod" not in sql_run.lower()


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT region, count(*) AS c FROM people WHERE ((month - 2) * 1e300) % 3.0 >= -1e300 GROUP BY region",
        "SELECT month % 2 AS r, count(*) AS c FROM people GROUP BY month % 2",
        "SELECT region, sum(amount) AS s FROM people WHERE month % 3 = 1 GROUP BY region",
    ],
)
def test_a_row_level_modulo_runs_without_fmod(run: Any, sql: str) -> None:
    result = run(sql)
    assert result.rows, result
    assert _statement_has_no_fmod(result.sql_run), result.sql_run


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    offset=st.integers(min_value=-(10**9), max_value=10**9),
    divisor=st.integers(min_value=-50, max_value=50).filter(lambda d: d != 0),
)
def test_a_row_level_modulo_answers_the_remainder(run: Any, offset: int, divisor: int) -> None:
    result = run(
        f"SELECT (month + {offset}) % {divisor} AS r, count(*) AS c FROM people GROUP BY (month + {offset}) % {divisor}"
    )
    expected: dict[float, int] = {}
    for row in people_rows():
        key = math.fmod(row["month"] + offset, divisor) + 0.0  # -0.0 leaves as 0.0 (service._jsonable)
        expected[key] = expected.get(key, 0) + 1
    assert {float(r): c for r, c in result.rows} == expected


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT region, count(*) AS c FROM people WHERE 1e300 % month > 0 GROUP BY region",
        "SELECT region, count(*) AS c FROM people WHERE month % (month + 1) > 0 GROUP BY region",
        "SELECT region, count(*) AS c FROM people WHERE (month % 2) % 3 > 0 GROUP BY region",
    ],
)
def test_a_modulo_by_data_or_of_a_modulo_is_refused_with_what_to_write(run: Any, sql: str) -> None:
    with pytest.raises(QueryRefused) as refused:
        run(sql)
    assert refused.value.code == "disallowed_construct", refused.value
    assert "constant" in str(refused.value.params["instead"]), refused.value.params


def test_the_refusal_says_what_to_write_in_en_and_zh(market: Market, tmp_path: Path) -> None:
    rows = (
        "SELECT 'P' || (i % 60) AS person_id, ['north', 'south'][i % 2 + 1] AS region, "
        "CAST(i % 3 + 1 AS INTEGER) AS month, CAST(i % 100 AS INTEGER) AS amount FROM range(300) t(i)"
    )
    policy = {
        "min_group_size": 5,
        "tables": {
            "people": {
                "privacy_unit": "person_id",
                "dimensions": ["region", "month"],
                "measures": ["amount"],
                "hidden": [],
                "bounds": {"amount": {"min": 0, "max": 1000}},
            }
        },
    }
    buyer = queried_product(market, tmp_path, "people", rows, policy)
    sql = "SELECT region, count(*) AS c FROM people WHERE 1e300 % month > 0 GROUP BY region"
    for language, part in (("en", "divide by a constant, e.g. month % 3"), ("zh-CN", "请以常数为除数")):
        response = market.client.post(
            "/v1/queries",
            headers={**buyer.headers, "Accept-Language": language},
            json={"product": "people", "sql": sql},
        )
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "disallowed_construct", response.text
        assert part in response.json()["error"]["message"], response.text
    answered = query(market, buyer, "people", "SELECT month % 2 AS r, count(*) AS c FROM people GROUP BY month % 2")
    assert answered.status_code == 200, answered.text
    assert sorted(answered.json()["rows"]) == [[0.0, 100], [1.0, 200]]
