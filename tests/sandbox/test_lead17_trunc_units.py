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

from typing import Any

import pytest

from tests.conftest import Market
from tests.factories import query
from tests.sandbox.test_lead17_trunc_units_grid import COLUMNS, POLICY, _sql
from tests.support.typed_product import product_fixture, refusal, typed_rows

dated = product_fixture("dated", typed_rows(COLUMNS), POLICY)


def test_the_service_agrees_on_a_sample(dated: tuple[Market, Any]) -> None:
    market, buyer = dated
    for unit, column, status in (
        ("month", "c_timestamptz", 200),
        ("YEAR", "c_date", 200),
        ("week", "c_timestamp", 200),
        ("cents", "c_timestamptz", 422),
        ("epoch", "c_date", 422),
        ("foo", "c_timestamp", 422),
    ):
        response = query(market, buyer, "dated", _sql(unit, column))
        assert response.status_code == status, (unit, column, response.text)


@pytest.mark.parametrize("unit", ["timezone", "timezone_hour", "nanosecond", "cents"])
def test_a_unit_that_fails_per_row_is_refused_with_the_units_to_use_in_en_and_zh(
    dated: tuple[Market, Any], unit: str
) -> None:
    market, buyer = dated
    sql = f"SELECT region, count(*) AS c FROM dated WHERE date_trunc('{unit}', c_timestamptz) IS NULL GROUP BY 1"
    for language, part in (("en", "'month'"), ("zh-CN", "'month'")):
        error = refusal(market, buyer, "dated", sql, language)
        assert error["code"] == "disallowed_construct", error
        assert part in error["message"] and unit.upper() in error["message"].upper(), error
