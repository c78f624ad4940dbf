"""Red team red13 (session 13): the cube's work must not depend on whether a filter matches a hidden row.

The exact paths seed stage 1 (`__kept` groups of seed rows: docs/sandbox.md, "Seeded stage 1") so that the
masking, the windows and stage 2 never see zero groups on one side of a pair of queries and one on the other.
The cube (branch cube13, sandbox.summary.cube) read no row and carried no seed: its stage 1 kept a key tuple
only when the filter passed one of its combinations (HAVING), so `WHERE g = 'absent'` gave stage 1 no group
and `WHERE g = 'lonely'` (one hidden row, its group suppressed: the same empty answer) gave one. Measured in
one run (bench/red13_summary_timing.py, docs/benchmarks.md "red13"): the whole call 3.6 % slower for the one
row, slower in 66-71 % of 300 alternated pairs, where the seeded exact statement showed no difference (49-51 %).

Now the cube's stage 1 is every key tuple of the set's combinations, a number fixed per version and set, with
`__kept` (some combination passes the filter), read by the seeded form of the exact statement (engine
._exact_statement(seeded=True)): the filter only flips `__kept`. Checked here structurally (never a timing): the
cube's stage 1 has the same rows, with the same keys, for a filter matching nothing, one row and many; and the
answers, groups and suppressed groups stay execute_single's.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from products.storage import table_statistics
from sandbox import summary
from sandbox.engine import EngineLimits, TableStatistics, execute_cube, execute_single, open_locked
from sandbox.policy import ProtectionPolicy
from sandbox.service import TableFile, files_of, plan_query, row_counts, strategy
from tests.sandbox.conftest import write_parquet

TYPES = {"u": "VARCHAR", "g": "VARCHAR", "h": "INTEGER", "d": "DATE", "m": "INTEGER"}
ROLES = {"u": "privacy_unit", "g": "dimension", "h": "dimension", "d": "dimension", "m": "measure"}
BOUNDS = {"m": (0.0, 100.0)}
POLICY = ProtectionPolicy.model_validate(
    {
        "min_group_size": 3,
        "tables": {
            "t": {
                "privacy_unit": "u",
                "dimensions": ["g", "h", "d"],
                "measures": ["m"],
                "hidden": [],
                "bounds": {"m": {"min": 0, "max": 100}},
            }
        },
    }
)
ROWS: list[dict[str, Any]] = [
    {"u": f"u{i % 40}", "g": f"g{i % 5}", "h": i % 4, "d": dt.date(1994 + i % 3, 1 + i % 12, 1), "m": i % 100}
    for i in range(240)
] + [{"u": "lonely", "g": "lonely", "h": 2, "d": dt.date(2001, 6, 1), "m": 7}]
FAMILIES = {
    "pin, keyed": [
        "SELECT h, count(*) AS c, sum(m) AS s FROM t WHERE g = '{}' GROUP BY h",
        ["absent", "lonely", "g1"],
    ],
    "pin, a calendar key": [
        "SELECT year(d) AS y, count(*) AS c, avg(m) AS a, count(DISTINCT u) AS n FROM t WHERE g = '{}' "
        "GROUP BY year(d)",
        ["absent", "lonely", "g1"],
    ],
    "one year": [
        "SELECT g, count(*) AS c, sum(m) AS s FROM t WHERE d >= DATE '{}-01-01' AND d < DATE '{}-01-01' GROUP BY g",
        [("1980", "1981"), ("2001", "2002"), ("1995", "1996")],
    ],
    "predicate on the key": [
        "SELECT g, count(*) AS c, count(m) AS cm FROM t WHERE g LIKE '{}' GROUP BY g",
        ["zz%", "lon%", "g%"],
    ],
}


@pytest.fixture(scope="module")
def version() -> Iterator[tuple[dict[str, TableFile], dict[str, Any], duckdb.DuckDBPyConnection]]:
    with tempfile.TemporaryDirectory() as directory:
        path = write_parquet(Path(directory) / "t.parquet", ROWS, TYPES)
        stats = table_statistics(path, list(TYPES), ROLES, BOUNDS)
        tables = {"t": TableFile(name="t", path=path, row_count=len(ROWS), statistics=stats)}
        files = {name: Path(file) for name, file in files_of(tables)}
        connection = open_locked(files, EngineLimits(threads=1), stats["statistics_free"])
        try:
            yield tables, stats, connection
        finally:
            connection.close()


def _sql(template: str, value: Any) -> str:
    return template.format(*value) if isinstance(value, tuple) else template.format(value)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_cube_stage_has_the_same_groups_whatever_the_filter_selects(
    version: tuple[dict[str, TableFile], dict[str, Any], duckdb.DuckDBPyConnection], family: str
) -> None:
    tables, stats, connection = version
    template, values = FAMILIES[family]
    seen = []
    for value in values:
        sql = _sql(template, value)
        plan = plan_query(sql, POLICY, row_counts(tables))
        assert strategy(plan, tables) == "cube", sql
        stage = summary.cube(plan, stats)
        assert stage is not None
        keys = ", ".join(f'"{c}"' for c in plan.key_columns) or "1"
        connection.execute(f"SELECT {keys} FROM ({stage}) ORDER BY ALL")
        seen.append(connection.fetchall())
    assert seen[0] == seen[1] == seen[2], family


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_cube_answers_as_the_exact_statement(
    version: tuple[dict[str, TableFile], dict[str, Any], duckdb.DuckDBPyConnection], family: str
) -> None:
    tables, stats, connection = version
    template, values = FAMILIES[family]
    for value in values:
        sql = _sql(template, value)
        plan = plan_query(sql, POLICY, row_counts(tables))
        statistics = TableStatistics(connection, {}, "v")
        by_cube = execute_cube(connection, plan, 100, statistics, summary.cube(plan, stats) or "")
        exact = execute_single(connection, plan, 100, statistics)
        assert by_cube.methods == ["cube"], sql
        assert by_cube.rows == exact.rows, sql
        assert [type(v) for r in by_cube.rows for v in r] == [type(v) for r in exact.rows for v in r], sql
        assert (by_cube.groups, by_cube.suppressed_groups) == (exact.groups, exact.suppressed_groups), sql
