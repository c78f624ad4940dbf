"""Branch cube18: the cube's statement, leaner (docs/sandbox.md, "The cube's statement without DuckDB's optimizer").

- The summary connection plans WITH DuckDB's optimizer (`enable_optimizer` true), and the setting is locked with the
  rest: no statement on it can turn the optimizer off. (cube18 turned it off; TPC-H's by_ship_date_and_mode, 2,555
  groups, then took 2,025 ms against 21 ms: the lead turned it back on in session 18, and this test was inverted.)
- The cube's statement (main's text, unchanged) reads only the summary, and its answers, on the summary
  connection, are exactly execute_single's over the version's table (rows with their
  types, groups, suppressed groups) for filters that keep some, one, none or NULL-valued combinations, with and
  without group keys. (The property tests of pre16, sbx-red15 and rt15 cover the random shapes.)
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from sandbox.engine import EngineLimits, TableStatistics, execute_cube, execute_single, open_locked, open_summary
from sandbox.service import cube_for, files_of, plan_query, row_counts
from tests.sandbox.test_pre16_summary_property import _policy, _typed
from tests.sandbox.test_rt15_cube_connection import ROWS, _tables

QUERIES = [
    "SELECT g, count(*) AS c, avg(n) AS an FROM t WHERE d = 'x' GROUP BY g",
    "SELECT g, count(*) AS c, sum(n) AS sn, count(n) AS cn FROM t WHERE d = 'z' GROUP BY g",
    "SELECT d, count(*) AS c FROM t WHERE g = 'a' GROUP BY d",
    "SELECT d, h, count(*) AS c FROM t GROUP BY d, h",
    "SELECT count(*) AS c, sum(n) AS sn FROM t WHERE h = 1",
    "SELECT count(*) AS c FROM t WHERE h = 7",
    "SELECT h, count(*) AS c, count(DISTINCT u) AS cu FROM t WHERE g = 'b' GROUP BY h ORDER BY c DESC",
]


def test_the_summary_connection_plans_with_the_optimizer_and_keeps_it_on(tmp_path: Path) -> None:
    tables = _tables(tmp_path, ROWS)
    files = {name: Path(file) for name, file in files_of(tables)}
    lean = open_summary(files, EngineLimits(threads=1), True)
    try:
        assert lean.connection.execute("SELECT current_setting('enable_optimizer')").fetchone() == (True,)
        for statement in ("SET enable_optimizer = false", "PRAGMA disable_optimizer", "RESET enable_optimizer"):
            with pytest.raises(duckdb.Error):
                lean.connection.execute(statement)
        assert lean.connection.execute("SELECT current_setting('enable_optimizer')").fetchone() == (True,)
    finally:
        lean.close()


@pytest.mark.parametrize("sql", QUERIES)
def test_the_cube_on_the_summary_connection_answers_as_the_single_statement(tmp_path: Path, sql: str) -> None:
    tables = _tables(tmp_path, ROWS)
    plan = plan_query(sql, _policy(2), row_counts(tables))
    cube = cube_for(plan, tables)
    assert cube, sql
    assert 'FROM "__summary__t"' in cube and 'FROM "t"' not in cube, cube
    files = {name: Path(file) for name, file in files_of(tables)}
    connection = open_locked(files, EngineLimits(threads=1), True)
    lean = open_summary(files, EngineLimits(threads=1), True)
    try:
        statistics = TableStatistics(connection, {}, "v")
        single = execute_single(connection, plan, 100, statistics)
        for _ in range(2):  # the first run prepares the statement, the second runs it prepared
            answer = execute_cube(connection, plan, 100, statistics, cube, lean)
            assert answer.methods == ["cube"]
            assert _typed(answer.rows) == _typed(single.rows), sql
            assert (answer.groups, answer.suppressed_groups) == (single.groups, single.suppressed_groups), sql
    finally:
        lean.close()
        connection.close()
