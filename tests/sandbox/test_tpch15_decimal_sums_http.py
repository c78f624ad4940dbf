"""Exact sums of DECIMAL measures over HTTP (branch tpch15): a version uploaded as Parquet with a DECIMAL(15, 2)
price answers the exact sum as the same kind of JSON number (a DOUBLE), not the DOUBLE sum's rounding.

Ten rows of 0.10 per region: added in DOUBLE, one after another, they make 0.9999999999999999; their exact sum is
1.0. Before the change the answer was the former (checked: failed); the average likewise 0.09999999999999999
against 1.0 / 10 = 0.1."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import duckdb

from market.accounts.models import Role
from tests.conftest import Market
from tests.factories import grant, listed_product, query

K = 5
POLICY: dict[str, Any] = {
    "min_group_size": K,
    "tables": {
        "sales": {
            "privacy_unit": "shop",
            "dimensions": ["region"],
            "measures": ["price"],
            "hidden": [],
            "bounds": {"price": {"min": 0, "max": 1000}},
        }
    },
}


def sales_parquet() -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "sales.parquet"
        with duckdb.connect() as connection:
            connection.execute(
                "COPY (SELECT 's' || (i % 10) AS shop, ['north', 'south'][1 + i // 10] AS region, "
                f"CAST(0.10 AS DECIMAL(15, 2)) AS price FROM range(20) AS r(i)) TO '{path}' (FORMAT parquet)"
            )
        return path.read_bytes()


def test_a_decimal_measure_is_summed_exactly_and_answered_as_a_number(market: Market) -> None:
    listed = listed_product(market, "decimal-sales", tables={"sales.parquet": sales_parquet()}, policy=POLICY)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="public_welfare", plan="public")
    response = query(
        market,
        buyer,
        listed.slug,
        "SELECT region, sum(price) AS total, avg(price) AS mean, count(*) AS n FROM sales GROUP BY region "
        "ORDER BY region",
    )
    assert response.status_code == 200, response.text
    rows = response.json()["rows"]
    assert rows == [["north", 1.0, 0.1, 10], ["south", 1.0, 0.1, 10]]
    assert all(isinstance(row[1], float) and isinstance(row[2], float) for row in rows)
