"""A version built over HTTP carries its build-time unit summary (branch pre16, docs/sandbox.md "Decided from
build-time unit counts (pre16)"), which no one is shown and which decides a buyer's small queries.

The operator uploads a table, the regulator lists it, and:
- the summary is a statistics-free Parquet file beside the table's, recorded in the version's statistics;
- no catalogue answer (the buyer's product list, the operator's product) names it or its counts;
- a buyer's small query runs decided from it (the regulator's audit shows the summary read) and answers as
  the exact statement does: groups of fewer than k units suppressed, a measure's cell withheld when fewer than
  k units hold a value of it, rows of a NULL unit counting for no unit. Held on SQLite and PostgreSQL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
from sqlalchemy import select

from market.accounts.models import Role
from products.models import ProductVersion
from tests.conftest import Market
from tests.factories import grant, listed_product, query
from tests.sandbox.conftest import write_parquet

POLICY: dict[str, Any] = {
    "min_group_size": 3,
    "tables": {
        "t": {
            "privacy_unit": "u",
            "dimensions": ["g", "h"],
            "measures": ["x"],
            "hidden": [],
            "bounds": {"x": {"min": 0, "max": 100}},
        }
    },
}
# g = 'a': 3 units, only 2 with an x (its cell withheld at k = 3); 'b': 2 units and a NULL unit (suppressed);
# 'c': 4 units with x. h splits them: h = 1 holds u1, u2, u4, u5, u6 and the NULL unit.
ROWS = [
    {"u": "u1", "g": "a", "h": 1, "x": 1},
    {"u": "u2", "g": "a", "h": 1, "x": 2},
    {"u": "u3", "g": "a", "h": 2, "x": None},
    {"u": "u4", "g": "b", "h": 1, "x": 4},
    {"u": "u5", "g": "b", "h": 1, "x": 5},
    {"u": None, "g": "b", "h": 1, "x": 6},
    {"u": "u6", "g": "c", "h": 1, "x": 7},
    {"u": "u7", "g": "c", "h": 2, "x": 8},
    {"u": "u8", "g": "c", "h": 2, "x": 9},
    {"u": "u9", "g": "c", "h": 2, "x": 10},
]


def test_a_built_version_is_decided_from_its_summary_and_never_shows_it(market: Market, tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "t.parquet", ROWS, {"u": "VARCHAR", "g": "VARCHAR", "h": "BIGINT", "x": "INTEGER"})
    listed = listed_product(market, "unit-counts", tables={"t.parquet": path.read_bytes()}, policy=POLICY)
    (stored,) = [p for p in market.settings.products_dir.rglob("v*/t.summary.parquet") if "quarantine" not in p.parts]
    statistics = duckdb.execute(
        "SELECT count(*) FILTER (WHERE stats_min IS NOT NULL OR stats_max IS NOT NULL OR stats_min_value IS NOT NULL "
        f"OR stats_max_value IS NOT NULL) FROM parquet_metadata('{stored}')"
    ).fetchone()
    assert statistics == (0,)
    with market.database.transaction() as session:
        (version,) = session.scalars(select(ProductVersion)).all()
        described = version.tables[0]["statistics"]["summary"]
    assert described["file"] == "t.summary.parquet"
    assert sorted(tuple(c) for c, _ in described["sets"]) == [(), ("g",), ("g", "h"), ("h",)]

    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="commercial", plan="standard")
    for shown in (
        market.client.get("/v1/products", headers=buyer.headers),
        market.client.get("/v1/products", headers=listed.operator.headers),
        market.client.get(f"/v1/products/{listed.slug}", headers=listed.operator.headers),
    ):
        assert shown.status_code == 200, shown.text
        assert "summary.parquet" not in shown.text and "__units" not in shown.text, shown.text
        assert '"sets"' not in shown.text and '"summary"' not in shown.text, shown.text

    answers = {}
    for sql in (
        "SELECT g, count(*) AS n, sum(x) AS sx FROM t GROUP BY g",
        "SELECT g, count(*) AS n FROM t WHERE h = 1 GROUP BY g",
        "SELECT count(*) AS n, avg(x) AS ax FROM t WHERE g = 'c'",
    ):
        response = query(market, buyer, listed.slug, sql)
        assert response.status_code == 200, response.text
        answers[sql] = response.json()["rows"]
    assert list(answers.values()) == [
        [["a", 3, None], ["c", 4, 34.0]],  # a: 2 units hold x (withheld); b: 2 units (suppressed)
        [],  # h = 1: a has 2 units, b 2 (and a NULL unit), c 1: every group suppressed
        [[4, 8.5]],
    ]
    audit = market.client.get("/v1/audit/queries", headers=listed.regulator.headers, params={"limit": 10})
    assert audit.status_code == 200, audit.text
    runs = [item["sql_run"] for item in audit.json()["items"]]
    assert len(runs) == 3 and all('"__summary__t"' in run for run in runs), runs
