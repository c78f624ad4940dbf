"""Red team red14 (session 10): bitmaps over HTTP on a version whose units sit at the top of UBIGINT.

A unit's span (its least and greatest value, products.storage.table_statistics) is stored with the version in
the database (JSON) and read back for every query: a span that lost precision on the way (a JSON number as a
double: 2**64 - 41 becomes 2**64) would put every unit outside the bitmap, and BITSTRING_AGG fails on such a
value (a 422 on every query of the product, or a wrong count). The operator uploads Parquet (CSV cannot carry
integers past BIGINT: DuckDB's sniffer reads them as DOUBLE), the regulator lists it, and a buyer's queries
run by bitmaps (the audit's SQL says so) and answer exactly. Held on SQLite and PostgreSQL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from market.accounts.models import Role
from tests.conftest import Market
from tests.factories import grant, listed_product, query
from tests.sandbox.conftest import write_parquet

TOP = 2**64 - 1
POLICY: dict[str, Any] = {
    "min_group_size": 3,
    "tables": {
        "t": {
            "privacy_unit": "u",
            "dimensions": ["g"],
            "measures": ["x"],
            "hidden": [],
            "bounds": {"x": {"min": 0, "max": 100}},
        }
    },
}
# Group 'a': 4 units, the span's two edges among them, one with two rows; 'b': 2 units (under k = 3).
ROWS = [
    {"u": TOP, "g": "a", "x": 1},
    {"u": TOP, "g": "a", "x": 2},
    {"u": TOP - 40, "g": "a", "x": 3},
    {"u": TOP - 7, "g": "a", "x": 4},
    {"u": TOP - 8, "g": "a", "x": 5},
    {"u": TOP - 9, "g": "b", "x": 6},
    {"u": TOP - 10, "g": "b", "x": 7},
    {"u": None, "g": "b", "x": 8},
]


@pytest.mark.parametrize("kind", ["UBIGINT", "BIGINT"])
def test_units_at_the_top_of_their_type_are_counted_by_bitmaps_over_http(
    market: Market, tmp_path: Path, kind: str
) -> None:
    shift = 0 if kind == "UBIGINT" else 2**63  # BIGINT: the same units at the top of BIGINT
    rows = [{**row, "u": None if row["u"] is None else row["u"] - shift} for row in ROWS]
    path = write_parquet(tmp_path / "t.parquet", rows, {"u": kind, "g": "VARCHAR", "x": "INTEGER"})
    listed = listed_product(market, "top-units", tables={"t.parquet": path.read_bytes()}, policy=POLICY)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="commercial", plan="standard")
    answers = {}
    # Shapes the unit summary (branch pre16) does not decide (a key expression, LIKE): the bitmaps count.
    for sql in (
        "SELECT lower(g) AS lg, count(*) AS n, sum(x) AS sx FROM t GROUP BY lower(g)",
        "SELECT count(*) AS n FROM t WHERE g LIKE 'a'",
    ):
        response = query(market, buyer, listed.slug, sql)
        assert response.status_code == 200, response.text
        answers[sql] = response.json()["rows"]
    assert list(answers.values()) == [[["a", 5, 15.0]], [[5]]]
    audit = market.client.get("/v1/audit/queries", headers=listed.regulator.headers, params={"limit": 10})
    assert audit.status_code == 200, audit.text
    runs = [item["sql_run"] for item in audit.json()["items"]]
    assert runs and all("BITSTRING_AGG" in run for run in runs), runs
    assert all(f"{TOP - 40 - shift}, {TOP - shift}" in run for run in runs), runs
