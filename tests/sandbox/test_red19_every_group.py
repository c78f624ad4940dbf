"""Red team red19 (session 19): the cube's every-group form (branch every19) against the windowed form and
execute_single, on a product whose hidden groups hold what the windowed statement never let out of DuckDB: DATE
keys outside Python's years (year 20000, BC, 'infinity'), NULL keys, long string keys, BIGINT measures at
their bounds (the cube holds exact sums only: summary.exact_measures keeps DOUBLEs, inf, NaN and
wide decimals out). The every-group statement fetches and converts every group of the set, passing or not: no
such group may change the answer, the error, the counts or too_many_rows (docs/sandbox.md, "Red team red19")."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest

from products.storage import table_statistics
from sandbox.engine import EVERY_GROUP_LIMIT, execute_cube, execute_single
from sandbox.policy import ProtectionPolicy
from sandbox.service import TableFile, cube_groups
from tests.sandbox.conftest import write_parquet
from tests.support.cube_connections import assert_answers_as, cube_connections, cube_plans

TYPES = {"u": "VARCHAR", "d": "DATE", "g": "BIGINT", "s": "VARCHAR", "x": "DECIMAL(18, 2)", "f": "BIGINT"}
ROLES = {"u": "privacy_unit", "d": "dimension", "g": "dimension", "s": "dimension", "x": "measure", "f": "measure"}
BOUNDS = {"x": (-1e12, 1e12), "f": (-1e12, 1e12)}
ODD_DATES = ["20000-01-01", "infinity", "-infinity", "0044-03-15 (BC)", "5881580-07-10"]


def _rows(dates: list[str] = ODD_DATES) -> list[dict[str, Any]]:
    """60 rows over 12 units (groups that pass at k up to 12), then one unit's rows alone in groups of their own:
    the odd dates, a NULL key, a long string key, the extreme measures."""
    rows = [
        {
            "u": f"u{i % 12}",
            "d": f"2024-01-0{1 + i % 3}",
            "g": i % 4,
            "s": ["a", "bb"][i % 2],
            "x": f"{i}.25",
            "f": i,
        }
        for i in range(60)
    ]
    extremes = ["999999999999.99", "-999999999999.99", "0.01"]
    doubles = [10**12, -(10**12), 0]
    for j, date in enumerate(dates):
        rows.append(
            {"u": "hidden", "d": date, "g": None, "s": "x" * (50 + j), "x": extremes[j % 3], "f": doubles[j % 3]}
        )
    rows.append({"u": "hidden", "d": None, "g": 1_000 + 7, "s": None, "x": extremes[0], "f": doubles[2]})
    return rows


def _policy(k: int) -> ProtectionPolicy:
    return ProtectionPolicy.model_validate(
        {
            "min_group_size": k,
            "tables": {
                "t": {
                    "privacy_unit": "u",
                    "dimensions": ["d", "g", "s"],
                    "measures": ["x", "f"],
                    "hidden": [],
                    "bounds": {m: {"min": lo, "max": hi} for m, (lo, hi) in BOUNDS.items()},
                }
            },
        }
    )


CALENDAR_DATES = ["1990-06-01", "2023-12-31", "2024-02-29", "2031-01-01", "2024-01-02"]
"""In Python's years, so that the extent parses and the calendar partitions are built: hidden rows in years and
months of their own."""


QUERIES = [
    "SELECT d, count(*) AS c FROM t GROUP BY d",
    "SELECT d, count(*) AS c, sum(f) AS sf, avg(f) AS af FROM t GROUP BY d ORDER BY sf DESC",
    "SELECT g, count(*) AS c, sum(f) AS sf FROM t GROUP BY g ORDER BY sf, c DESC",
    "SELECT s, count(*) AS c, avg(f) AS af FROM t GROUP BY s ORDER BY 3 NULLS FIRST",
    "SELECT d, g, count(*) AS c, sum(f) AS sf FROM t GROUP BY d, g",
    "SELECT d, s, count(*) AS c, sum(f) AS sf FROM t GROUP BY d, s ORDER BY sf DESC NULLS LAST, c",
    "SELECT g, count(*) AS c, sum(f) AS sf FROM t WHERE s = 'xxxxx' GROUP BY g",
    "SELECT count(*) AS c, sum(f) AS sf, avg(f) AS af FROM t WHERE g = 1007",
    "SELECT count(*) AS c, sum(f) AS sf FROM t WHERE d = DATE '2024-01-02'",
    "SELECT d, count(*) AS c FROM t WHERE g = 1007 GROUP BY d",
    "SELECT g, count(*) AS c, sum(f) AS sf FROM t WHERE d = DATE '2024-01-09' GROUP BY g",
    "SELECT s, count(*) AS c, avg(f) AS af FROM t WHERE g IS NULL GROUP BY s ORDER BY af DESC",
    "SELECT year(d) AS y, count(*) AS c, sum(f) AS sf FROM t GROUP BY year(d) ORDER BY sf",
    "SELECT date_trunc('month', d) AS m, count(*) AS c FROM t GROUP BY date_trunc('month', d)",
    "SELECT month(d) AS m, g, count(*) AS c, avg(f) AS af FROM t GROUP BY month(d), g ORDER BY af DESC, c",
    "SELECT year(d) AS y, count(*) AS c FROM t WHERE g = 1007 GROUP BY year(d)",
]


NULL_ROW = {"u": None, "d": None, "g": None, "s": None, "x": None, "f": None}
PRODUCTS = {
    "odd": lambda: _rows(ODD_DATES),
    "calendar": lambda: _rows(CALENDAR_DATES),
    "empty": lambda: [],
    "one NULL row": lambda: [NULL_ROW],
}


@pytest.mark.parametrize("product", list(PRODUCTS))
@pytest.mark.parametrize("k", [2, 10])
def test_hidden_groups_of_odd_values_change_nothing_in_the_every_group_form(product: str, k: int) -> None:
    taken = 0
    rows: list[dict[str, Any]] = PRODUCTS[product]()
    with tempfile.TemporaryDirectory() as directory:
        path = write_parquet(Path(directory) / "t.parquet", rows, TYPES)
        stats = table_statistics(path, list(TYPES), ROLES, BOUNDS)
        tables = {"t": TableFile(name="t", path=path, row_count=len(rows), statistics=stats)}
        with cube_connections(tables) as (connection, lean, statistics):
            for sql, plan, cube in cube_plans(tables, QUERIES, _policy(k)):
                # The form whatever the bound (the calendar keys' bounds pass the limit here): the answers are
                # what this checks; which form a bound takes is test_every19_form's.
                forced = max(1, min(cube_groups(plan, tables) or EVERY_GROUP_LIMIT, EVERY_GROUP_LIMIT))
                for max_rows in (1, 2, 100):
                    single = execute_single(connection, plan, max_rows, statistics)
                    windowed = execute_cube(connection, plan, max_rows, statistics, cube, lean)
                    every = execute_cube(connection, plan, max_rows, statistics, cube, lean, forced)
                    taken += '"__p"' in every.statements[0]
                    for other in (windowed, every):
                        assert_answers_as(single, other, sql)
    assert taken >= 15
