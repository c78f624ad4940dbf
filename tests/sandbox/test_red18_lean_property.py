"""Branch red18: the cube's statement on the summary connection (DuckDB's optimizer off, the filter once per row,
branch cube18) against execute_single on the version's connection, on random data and random queries."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, note, settings

from sandbox.engine import EngineLimits, TableStatistics, execute_cube, execute_single, open_locked, open_summary
from sandbox.errors import QueryRefused
from sandbox.service import cube_for, files_of, plan_query, row_counts, strategy
from tests.sandbox.test_pre16_summary_property import _policy, _sql, _typed, queries, rows_strategy
from tests.sandbox.test_rt15_cube_connection import _tables


def _compare(rows: list[dict[str, Any]], sql: str, k: int, q: dict[str, Any] | None = None) -> bool:
    with tempfile.TemporaryDirectory() as directory:
        tables = _tables(Path(directory), rows, q)
        try:
            plan = plan_query(sql, _policy(k), row_counts(tables))
        except QueryRefused:
            return False
        if strategy(plan, tables) != "cube":
            return False
        cube = cube_for(plan, tables)
        assert cube
        files = {name: Path(file) for name, file in files_of(tables)}
        free = tables["t"].statistics["statistics_free"]
        connection = open_locked(files, EngineLimits(threads=1), free)
        lean = open_summary(files, EngineLimits(threads=1), free)
        try:
            statistics = TableStatistics(connection, {}, "v")
            single = execute_single(connection, plan, 100, statistics)
            ran = [execute_cube(connection, plan, 100, statistics, cube, lean) for _ in range(2)]
        finally:
            lean.close()
            connection.close()
    for after in ran:
        if single.refused is not None or after.refused is not None:
            assert after.refused == single.refused, sql
            continue
        assert _typed(after.rows) == _typed(single.rows), sql
        assert (after.groups, after.suppressed_groups) == (single.groups, single.suppressed_groups), sql
    return True


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=rows_strategy, q=queries())
def test_the_lean_cube_answers_as_the_single_statement(rows: list[dict[str, Any]], q: dict[str, Any]) -> None:
    sql = _sql(q)
    note(sql)
    _compare(rows, sql, q["k"], q)
