"""One-table test products over typed columns, for the tests that check the sandbox type by type (tidy18).

Every such product has 600 rows over 60 people (`person`, the privacy unit), in three regions (`region`, a
dimension), with a measure `amount` (0 to 99, bounded by 0 and 1000), and the columns a test is about. A test file
states only those columns, by type (`typed_rows`, seven ordinary values of the type each) or by SQL over the row
number i (`rows_over`), and what is special in its policy (`policy`); `product_fixture` lists the product and grants
a buyer, as a fixture named after the table.

The typed columns are given as `Columns`, as those tests keep them: each column's DuckDB type, with the SQL literals of
the values the test checks of that type (its extremes, ...), which the product itself does not hold.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.conftest import Market
from tests.factories import queried_product

Columns = Mapping[str, tuple[str, list[str]]]
"""column name: (its DuckDB type, SQL literals of the values a test checks of that type)"""
ROWS = 600
PEOPLE = 60
AMOUNT = {"amount": {"min": 0, "max": 1000}}
"""The measure every product has, and its bounds."""

_ORDINARY = {
    # a column type: SQL of its value in row i (seven values; any other type: CAST(i % 7 AS <type>))
    "DATE": "DATE '2024-01-01' + CAST(i % 7 AS INTEGER)",
    "TIMESTAMP": "TIMESTAMP '2024-01-01 00:00:00' + to_hours(CAST(i % 7 AS INTEGER))",
    "TIMESTAMP WITH TIME ZONE": (
        "CAST(TIMESTAMP '2024-01-01 00:00:00' + to_hours(CAST(i % 7 AS INTEGER)) AS TIMESTAMP WITH TIME ZONE)"
    ),
    "INTERVAL": "to_days(CAST(i % 7 AS INTEGER))",
}


def rows_over(columns: Mapping[str, str]) -> str:
    """The product's rows: `person`, `region`, each of `columns` (name: SQL over the row number i), `amount`."""
    values = "".join(f"{sql} AS {name}, " for name, sql in columns.items())
    return (
        f"SELECT i % {PEOPLE} AS person, ['north', 'south', 'east'][i % 3 + 1] AS region, {values}"
        f"CAST(i % 100 AS INTEGER) AS amount FROM range({ROWS}) t(i)"
    )


def typed_rows(columns: Columns) -> str:
    """The product's rows with each of `columns`, of its type, holding seven ordinary values of the type."""
    return rows_over({name: _ORDINARY.get(kind, f"CAST(i % 7 AS {kind})") for name, (kind, _) in columns.items()})


def schema(columns: Columns) -> str:
    """The column list of `typed_rows(columns)`'s table, for a CREATE TABLE of the same shape."""
    typed = [(name, kind) for name, (kind, _) in columns.items()]
    return ", ".join(
        f'"{name}" {kind}'
        for name, kind in [("person", "BIGINT"), ("region", "VARCHAR"), *typed, ("amount", "INTEGER")]
    )


def fails_for_some_value(columns: Columns, column: str, expression: str, zones: Iterable[str] = ()) -> bool:
    """Whether `expression` (SQL in which `{value}` stands for a value of `column`) raises in raw DuckDB, as a buyer
    could run it, on one of the values `columns` lists for the column (cast to its type), in one of `zones` (time
    zones; none given: DuckDB's default)."""
    kind, values = columns[column]
    settings: list[str | None] = [*zones] or [None]
    with duckdb.connect() as connection:
        for zone in settings:
            if zone is not None:
                connection.execute(f"SET TimeZone = '{zone}'")
            for value in values:
                try:
                    connection.execute("SELECT " + expression.format(value=f"CAST({value} AS {kind})")).fetchall()
                except duckdb.Error:
                    return True
    return False


def policy(
    table: str,
    dimensions: Iterable[str],
    *,
    hidden: Iterable[str] = (),
    measures: Mapping[str, Mapping[str, int]] = AMOUNT,
    min_group_size: int = 5,
) -> dict[str, Any]:
    """The policy of a one-table product: unit `person`, dimensions `region` and `dimensions`, and `measures` with
    their bounds (`amount` unless told)."""
    return {
        "min_group_size": min_group_size,
        "tables": {
            table: {
                "privacy_unit": "person",
                "dimensions": ["region", *dimensions],
                "measures": list(measures),
                "hidden": list(hidden),
                "bounds": {name: dict(bounds) for name, bounds in measures.items()},
            }
        },
    }


def product_fixture(table: str, rows_sql: str, product_policy: dict[str, Any]) -> Any:
    """A fixture named `table`: (the market, a buyer granted commercial access on the standard plan) to the product
    `table` of `rows_sql`'s rows under `product_policy`. In a test module: `typed = product_fixture("typed", ...)`."""

    @pytest.fixture(name=table)
    def product(market: Market, tmp_path: Path) -> tuple[Market, Any]:
        return market, queried_product(market, tmp_path, table, rows_sql, product_policy)

    return product


def refusal(market: Market, buyer: Any, table: str, sql: str, language: str) -> dict[str, Any]:
    """The error of `sql`'s refusal (422) on the product `table`, asked in `language`."""
    response = market.client.post(
        "/v1/queries",
        headers={**buyer.headers, "Accept-Language": language},
        json={"product": table, "sql": sql},
    )
    assert response.status_code == 422, (sql, response.text)
    error: dict[str, Any] = response.json()["error"]
    return error
