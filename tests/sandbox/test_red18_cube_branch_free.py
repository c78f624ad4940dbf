"""Branch red18: the cube's statement takes no branch per summary row on the buyer's filter (docs/sandbox.md,
"Red team red18").

cube18's statement took each value as `MAX(CASE WHEN "__f" THEN <column> END)`. DuckDB evaluates a CASE whose
condition is FALSE on every row of a chunk by its ELSE alone, and one where some row passes by both branches and a
per-row merge: with the optimizer off, on the demo's flights, one passing combination ('LEX', one flight, its group
suppressed: the same empty answer) cost 17-32 microseconds more per statement than none ('ZZZ'), p < 0.0001 over 300
alternated runs (bench/red18_case_oracle.py); `MAX(<column>) FILTER (WHERE "__f")` showed the same. Now the filter's
verdict is a 0/1 INTEGER and every value is arithmetic on it (a product, MAX or SUM), the same operations on every row
whatever it gives; the answers stay execute_single's (tests/sandbox/test_red18_lean_property.py: random data, keys,
filters on keys and pins, HAVING, ORDER BY, LIMIT).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sandbox.engine import EngineLimits, TableStatistics, execute_cube, execute_single, open_locked, open_summary
from sandbox.service import cube_for, files_of, plan_query, row_counts
from tests.sandbox.test_pre16_summary_property import _policy, _typed
from tests.sandbox.test_rt15_cube_connection import ROWS, _tables

QUERIES = [
    "SELECT g, count(*) AS c, avg(n) AS an, sum(n) AS sn, count(m) AS cm FROM t WHERE d = 'x' GROUP BY g",
    "SELECT g, count(DISTINCT u) AS cu, sum(n) AS sn FROM t WHERE d = 'z' GROUP BY g",
    "SELECT h, count(*) AS c, avg(n) AS an FROM t WHERE g = 'a' GROUP BY h",
    "SELECT count(*) AS c, sum(n) AS sn, avg(n) AS an FROM t WHERE h = 1",
    "SELECT g, h, count(*) AS c FROM t WHERE if(g = 'a', NULL, h > 0) GROUP BY g, h",
]


@pytest.mark.parametrize("sql", QUERIES)
def test_the_cube_reads_the_filter_s_verdict_only_by_arithmetic(tmp_path: Path, sql: str) -> None:
    tables = _tables(tmp_path, ROWS)
    plan = plan_query(sql, _policy(2), row_counts(tables))
    cube = cube_for(plan, tables)
    assert cube, sql
    # No branch per row on the verdict: no CASE or FILTER reads it, no COALESCE, IF or NULLIF around it.
    assert "FILTER" not in cube, cube
    assert not re.search(r'CASE WHEN "__f"|(COALESCE|IF|NULLIF)\("__f"', cube), cube
    outer, inner = cube.split(" FROM (SELECT ", 1)
    # The verdict, once per row of S, as 0 or 1.
    assert len(re.findall(r'CAST\(\(.*\) IS TRUE AS INTEGER\) AS "__f"', inner)) == 1, cube
    # Everywhere else only as a factor of a product, or its MAX for `__kept`.
    uses = re.findall(r'.{0,12}"__f".{0,10}', outer)
    assert uses, cube
    for use in uses:
        assert ' * "__f"' in use or '("__f" * CAST(' in use or 'MAX("__f") = 1' in use, (use, cube)
    files = {name: Path(file) for name, file in files_of(tables)}
    connection = open_locked(files, EngineLimits(threads=1), True)
    lean = open_summary(files, EngineLimits(threads=1), True)
    try:
        statistics = TableStatistics(connection, {}, "v")
        single = execute_single(connection, plan, 100, statistics)
        for _ in range(2):
            answer = execute_cube(connection, plan, 100, statistics, cube, lean)
            assert answer.methods == ["cube"]
            assert _typed(answer.rows) == _typed(single.rows), sql
            assert (answer.groups, answer.suppressed_groups) == (single.groups, single.suppressed_groups), sql
        on_version = execute_cube(connection, plan, 100, statistics, cube)
        assert _typed(on_version.rows) == _typed(single.rows), sql
    finally:
        lean.close()
        connection.close()
