"""date_trunc() to a unit that fails on some values is refused (issue 9; found after date17).

DuckDB 2.0 truncates a TIMESTAMP WITH TIME ZONE to `timezone`, `timezone_hour`, `timezone_minute`, `nanosecond` or
`cents` with an error per row, not when it binds the statement (DATE and TIMESTAMP raise at binding, whatever the
rows). The sandbox keeps date_trunc() in TRY(), so such a query answered, and TRY()'s row-by-row slow path ran once
for each vector holding a row that reached it: how long the answer took said whether hidden rows passed a filter
(the slow path costs hundreds of times a success per row: docs/sandbox.md, red16 and date17).

The class is finite: each unit spelling DuckDB knows (and a few it does not) on each dated column type. A unit the
sandbox accepts must truncate every value a version may hold (products.storage.DATE_RANGE, its ends and an ordinary
day) in raw DuckDB without an error, in any time zone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest

from products.storage import DATE_RANGE
from tests.conftest import Market
from tests.factories import queried_product, query

UNITS = [
    "millennium", "millennia", "mil", "mils", "century", "centuries", "c", "cent", "cents", "decade", "decades",
    "dec", "decs", "year", "years", "y", "yr", "yrs", "quarter", "quarters", "month", "months", "mon", "mons",
    "week", "weeks", "w", "day", "days", "d", "dayofmonth", "hour", "hours", "h", "hr", "hrs", "minute",
    "minutes", "m", "min", "mins", "second", "seconds", "s", "sec", "secs", "millisecond", "milliseconds", "ms",
    "msec", "msecs", "microsecond", "microseconds", "us", "usec", "usecs", "isoyear", "epoch", "dow", "dayofweek",
    "weekday", "isodow", "doy", "dayofyear", "yearweek", "era", "timezone", "timezone_hour", "timezone_minute",
    "julian", "nanosecond", "epoch_ns", "foo", "Month", "YEAR",
]  # fmt: skip
low, high = DATE_RANGE
COLUMNS: dict[str, tuple[str, list[str]]] = {
    # column: (its type, literals of the values a version may hold: the range's ends and an ordinary day)
    "c_date": ("DATE", [f"'{low}'", f"'{high}'", "'2024-06-15'"]),
    "c_timestamp": ("TIMESTAMP", [f"'{low} 00:00:00'", f"'{high} 23:59:59.999999'", "'2024-06-15 10:11:12'"]),
    "c_timestamptz": (
        "TIMESTAMP WITH TIME ZONE",
        [f"'{low} 00:00:00+00'", f"'{high} 00:00:00+00'", "'2024-06-15 10:11:12+00'"],
    ),
}
POLICY: dict[str, Any] = {
    "min_group_size": 5,
    "tables": {
        "dated": {
            "privacy_unit": "person",
            "dimensions": ["region", *COLUMNS],
            "measures": ["amount"],
            "hidden": [],
            "bounds": {"amount": {"min": 0, "max": 1000}},
        }
    },
}
ROWS = """SELECT i % 60 AS person, ['north', 'south', 'east'][i % 3 + 1] AS region,
    DATE '2024-01-01' + CAST(i % 7 AS INTEGER) AS c_date,
    TIMESTAMP '2024-01-01 00:00:00' + to_hours(CAST(i % 7 AS INTEGER)) AS c_timestamp,
    CAST(TIMESTAMP '2024-01-01 00:00:00' + to_hours(CAST(i % 7 AS INTEGER)) AS TIMESTAMP WITH TIME ZONE) AS c_timestamptz,
    CAST(i % 100 AS INTEGER) AS amount
    FROM range(600) t(i)"""  # noqa: E501


@pytest.fixture
def dated(market: Market, tmp_path: Path) -> tuple[Market, Any]:
    return market, queried_product(market, tmp_path, "dated", ROWS, POLICY)


def _fails_for_some_value(unit: str, column: str) -> bool:
    kind, values = COLUMNS[column]
    with duckdb.connect() as connection:
        for zone in ("UTC", "Asia/Shanghai", "America/Los_Angeles"):
            connection.execute(f"SET TimeZone = '{zone}'")
            for value in values:
                try:
                    connection.execute(f"SELECT date_trunc('{unit}', CAST({value} AS {kind}))").fetchall()
                except duckdb.Error:
                    return True
    return False


def test_a_unit_the_sandbox_accepts_truncates_every_value_a_version_may_hold(dated: tuple[Market, Any]) -> None:
    market, buyer = dated
    accepted: set[tuple[str, str]] = set()
    for column in COLUMNS:
        for unit in UNITS:
            sql = f"SELECT region, count(*) AS c FROM dated WHERE date_trunc('{unit}', {column}) IS NOT NULL GROUP BY 1"
            response = query(market, buyer, "dated", sql)
            assert response.status_code in (200, 422), (sql, response.text)
            if response.status_code == 200:
                accepted.add((unit, column))
                assert not _fails_for_some_value(unit, column), f"accepted a unit that can fail: {unit} on {column}"
    # The rule refuses what can fail, not everything: the calendar's units answer on every dated type.
    for unit in ("year", "quarter", "month", "week", "day", "hour", "minute", "second", "Month", "YEAR"):
        for column in COLUMNS:
            assert (unit, column) in accepted, (unit, column)


@pytest.mark.parametrize("unit", ["timezone", "timezone_hour", "nanosecond", "cents"])
def test_a_unit_that_fails_per_row_is_refused_with_the_units_to_use_in_en_and_zh(
    dated: tuple[Market, Any], unit: str
) -> None:
    market, buyer = dated
    sql = f"SELECT region, count(*) AS c FROM dated WHERE date_trunc('{unit}', c_timestamptz) IS NULL GROUP BY 1"
    for language, part in (("en", "'month'"), ("zh-CN", "'month'")):
        response = market.client.post(
            "/v1/queries",
            headers={**buyer.headers, "Accept-Language": language},
            json={"product": "dated", "sql": sql},
        )
        assert response.status_code == 422, (sql, response.text)
        error = response.json()["error"]
        assert error["code"] == "disallowed_construct", error
        assert part in error["message"] and unit.upper() in error["message"].upper(), error
