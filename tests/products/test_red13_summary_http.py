"""Red team red13 (session 13) over HTTP: the build-time summary's date shapes (branch cal13) on a listed
product with a DATE dimension. docs/sandbox.md, "red13: the summary answers attacked (session 13)".

- A range whose date literal holds a digit Python reads as one but DuckDB does not (`'²994-01-01'`: `str.isdigit`
  is true for superscripts, `int()` refuses them) crashed the shape reader (`summary._period`: ValueError) inside
  the strategy choice: a 500 for a query every exact path refuses as `constant_error`. Now the literal is read
  as ASCII digits only, the query falls to the exact path and gets its refusal.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from market.accounts.models import Role
from tests.conftest import Market
from tests.factories import grant, listed_product, query
from tests.sandbox.conftest import write_parquet

POLICY: dict[str, Any] = {
    "min_group_size": 2,
    "tables": {
        "t": {
            "privacy_unit": "u",
            "dimensions": ["g", "d"],
            "measures": ["x"],
            "hidden": [],
            "bounds": {"x": {"min": 0, "max": 100}},
        }
    },
}
ROWS = [{"u": f"u{i}", "g": "ab"[i % 2], "d": dt.date(1994, 1 + i % 12, 1 + i % 27), "x": i % 100} for i in range(48)]


@pytest.mark.parametrize(
    "low, high",
    [
        ("²994-01-01", "1995-01-01"),
        ("1994-01-01", "1995-01-0²"),
        ("1994-0³-01", "1994-04-01"),
    ],
)
def test_a_period_with_non_ascii_digits_is_refused_as_every_path_does(
    market: Market, tmp_path: Path, low: str, high: str
) -> None:
    path = write_parquet(tmp_path / "t.parquet", ROWS, {"u": "VARCHAR", "g": "VARCHAR", "d": "DATE", "x": "INTEGER"})
    listed = listed_product(market, "red13-dates", tables={"t.parquet": path.read_bytes()}, policy=POLICY)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="commercial", plan="standard")
    answered = query(market, buyer, listed.slug, "SELECT g, count(*) AS n FROM t GROUP BY g")
    assert answered.status_code == 200, answered.text
    response = query(
        market,
        buyer,
        listed.slug,
        f"SELECT g, count(*) AS n FROM t WHERE d >= DATE '{low}' AND d < DATE '{high}' GROUP BY g",
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "constant_error", response.text
