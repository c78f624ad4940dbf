"""Wide decimals (issue 9, branch wide15): no measure is stored in a type whose cast to DOUBLE is slow for some values.

Inside aggregates a measure is `TRY_CAST(m AS DOUBLE)` (sandbox.algebra). DuckDB 2.0 casts a DECIMAL with a scale
above 0 to DOUBLE about 40 times slower per row when its unscaled integer is above 2^53 than when it is below
(docs/sandbox.md "Wide decimals (wide15)"; bench/wide15_decimal_timing.py), for DECIMAL(38, s) and DECIMAL(18, s)
alike: a sum's time told whether hidden rows hold large values. The build now stores every DECIMAL measure either
in a type no value within its declared bounds reaches 2^52 in (DECIMAL(18, s), exact) or as DOUBLE (the value the
sandbox's cast computed anyway); these tests build products through the public path (an operator uploads a
Parquet file, or a CSV with a recipe typing the column decimal(38, 10)), and a buyer queries them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest

from market.accounts.models import Role
from tests.conftest import Market
from tests.factories import create_product, csv_bytes, grant, listed_product, query, upload_version

FAST_UNSCALED = 2**52

POLICY: dict[str, Any] = {
    "min_group_size": 10,
    "tables": {
        "ledger": {
            "privacy_unit": "person",
            "dimensions": ["region"],
            "measures": ["amount", "fine", "narrow", "small", "counted"],
            "hidden": [],
            "bounds": {
                "amount": {"min": 0, "max": 10_000},  # DECIMAL(38, 2): fits DECIMAL(15, 2) (dim15)
                "fine": {"min": 0, "max": 1e8},  # DECIMAL(38, 10): 1e18 unscaled, stored as DOUBLE
                "narrow": {"min": -1e12, "max": 1e12},  # DECIMAL(18, 6): 1e18 unscaled, stored as DOUBLE
                "small": {"min": 0, "max": 1000},  # DECIMAL(10, 2): never past 2^52, kept
            },
        }
    },
}

LEDGER = """SELECT i % 40 AS person, ['north', 'south', 'east'][i % 3 + 1] AS region,
    CAST((i * 7919 % 1000000) / 100 AS DECIMAL(38, 2)) AS amount,
    CAST(CASE WHEN i % 5 = 0 THEN 98765432.1234567891 ELSE (i % 97) / 7 END AS DECIMAL(38, 10)) AS fine,
    CAST(CASE WHEN i % 4 = 0 THEN -987654321012.345678 ELSE i / 3 END AS DECIMAL(18, 6)) AS narrow,
    CAST((i % 1000) / 4 AS DECIMAL(10, 2)) AS small,
    CAST(CASE WHEN i % 2 = 0 THEN 12345678901234567890123.45 END AS DECIMAL(38, 2)) AS counted
    FROM range(600) t(i)"""


def _parquet(tmp_path: Path, select: str) -> bytes:
    path = tmp_path / "ledger.parquet"
    with duckdb.connect() as connection:
        connection.execute(f"COPY ({select}) TO '{path}' (FORMAT parquet)")
    return path.read_bytes()


def test_a_parquet_upload_with_wide_decimals_is_stored_in_fast_types_and_answers_as_raw_duckdb(
    market: Market, tmp_path: Path
) -> None:
    content = _parquet(tmp_path, LEDGER)
    listed = listed_product(market, "ledger", tables={"ledger.parquet": content}, policy=POLICY)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="commercial", plan="standard")
    detail = market.client.get(f"/v1/products/{listed.slug}", headers=buyer.headers).json()
    types = {c["name"]: c["type"] for c in detail["tables"][0]["columns"]}
    assert types["amount"] == "DECIMAL(15,2)"  # dim15: at most 15 digits
    assert types["fine"] == "DOUBLE" and types["narrow"] == "DOUBLE" and types["counted"] == "DOUBLE"
    assert types["small"] == "DECIMAL(10,2)"
    (stored,) = [p for p in market.settings.products_dir.rglob("v*/ledger.parquet")]
    assert duckdb.connect().execute(  # every stored DECIMAL's unscaled integer stays under 2^52
        f"SELECT max(abs(amount)) * 100 < {FAST_UNSCALED}, max(abs(small)) * 100 < {FAST_UNSCALED} "
        f"FROM read_parquet('{stored}')"
    ).fetchone() == (True, True)

    sql = (
        "SELECT region, sum(amount) AS a, sum(fine) AS f, sum(narrow) AS n, avg(small) AS s, count(counted) AS c "
        "FROM ledger GROUP BY region ORDER BY region"
    )
    response = query(market, buyer, listed.slug, sql)
    assert response.status_code == 200, response.text
    raw = (
        duckdb.connect()
        .execute(
            "SELECT region, sum(CAST(amount AS DOUBLE)), sum(CAST(fine AS DOUBLE)), sum(CAST(narrow AS DOUBLE)), "
            "avg(CAST(small AS DOUBLE)), count(counted) "
            f"FROM ({LEDGER}) GROUP BY region ORDER BY region"
        )
        .fetchall()
    )
    rows = response.json()["rows"]
    assert [r[0] for r in rows] == [r[0] for r in raw] and [r[5] for r in rows] == [r[5] for r in raw]
    for got, expected in zip(rows, raw, strict=True):
        assert got[1:5] == pytest.approx(list(expected[1:5]), rel=1e-12)


def test_a_csv_recipe_typed_decimal_38_10_is_stored_as_double(market: Market) -> None:
    fines = [f"{(98765432 if i % 3 else i)}.1234567891" for i in range(90)]
    rows = [{"person": i % 30, "region": "north", "fine": fine} for i, fine in enumerate(fines)]
    operator = market.actor(Role.OPERATOR)
    assert create_product(market, operator, "fines").status_code == 201
    uploaded = market.client.post("/v1/uploads?filename=fines.csv", headers=operator.headers, content=csv_bytes(rows))
    assert uploaded.status_code == 201, uploaded.text
    recipe = {
        "tables": {
            "fines": {
                "columns": {
                    "person": {"type": "integer"},
                    "region": {"type": "varchar"},
                    "fine": {"type": "decimal(38,10)", "min": 0},
                }
            }
        }
    }
    policy = {
        "min_group_size": 10,
        "tables": {
            "fines": {
                "privacy_unit": "person",
                "dimensions": ["region"],
                "measures": ["fine"],
                "hidden": [],
                "bounds": {"fine": {"min": 0, "max": 1e8}},
            }
        },
    }
    built = market.client.post(
        "/v1/products/fines/builds",
        headers=operator.headers,
        json={"tables": {"fines": uploaded.json()["id"]}, "recipe": recipe, "policy": policy},
    )
    assert built.status_code in (200, 201, 202), built.text
    versions = market.client.get("/v1/products/fines/versions", headers=operator.headers).json()["items"]
    (table,) = versions[0]["tables"]
    assert {c["name"]: c["type"] for c in table["columns"]}["fine"] == "DOUBLE"


def test_out_of_bounds_wide_decimals_are_refused_as_before(market: Market, tmp_path: Path) -> None:
    operator = market.actor(Role.OPERATOR)
    assert create_product(market, operator, "refused").status_code == 201
    for column, value in (("amount", "100000000000000000000"), ("fine", "200000000.5")):
        extra = {"amount": "1", "fine": "1"} | {column: value}
        select = (
            f"{LEDGER} UNION ALL SELECT 1, 'north', CAST('{extra['amount']}' AS DECIMAL(38, 2)), "
            f"CAST('{extra['fine']}' AS DECIMAL(38, 10)), CAST(1 AS DECIMAL(18, 6)), CAST(1 AS DECIMAL(10, 2)), "
            "CAST(NULL AS DECIMAL(38, 2))"
        )
        response = upload_version(
            market, operator, "refused", policy=POLICY, tables={"ledger.parquet": _parquet(tmp_path, select)}
        )
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] == "measure_out_of_bounds" and column in str(error), error
