"""The two connections a worker runs a cube on, for tests and benches that call engine.execute_cube directly."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import duckdb

from sandbox.engine import EngineLimits, Execution, Summaries, TableStatistics, open_locked, open_summary
from sandbox.errors import QueryRefused
from sandbox.policy import ProtectionPolicy
from sandbox.rewrite import Plan
from sandbox.service import TableFile, cube_for, files_of, plan_query, row_counts, statistics_free, strategy


@contextmanager
def cube_connections(
    tables: Mapping[str, TableFile],
) -> Iterator[tuple[duckdb.DuckDBPyConnection, Summaries, TableStatistics]]:
    """The version's locked connection over `tables`, its summary connection (engine.open_summary), one DuckDB
    thread each as a worker runs a small product, and statistics on the first; both closed after."""
    files = {name: Path(file) for name, file in files_of(tables)}
    free = statistics_free(tables)
    connection = open_locked(files, EngineLimits(threads=1), free)
    lean = open_summary(files, EngineLimits(threads=1), free)
    try:
        yield connection, lean, TableStatistics(connection, {}, "v")
    finally:
        lean.close()
        connection.close()


def with_quality_counts(tables: Mapping[str, TableFile]) -> dict[str, TableFile]:
    """`tables` with the quality summary's distinct counts (statistics `distinct`, what buyers see; a version's come
    from products.service._statistics) set to the whole cardinalities, as when every value is held by k units: what
    sandbox.summary.cube_groups reads."""
    return {
        name: replace(
            table, statistics={**table.statistics, "distinct": dict(table.statistics.get("cardinality") or {})}
        )
        for name, table in tables.items()
    }


def cube_plans(
    tables: Mapping[str, TableFile], sqls: Iterable[str], policy: ProtectionPolicy
) -> Iterator[tuple[str, Plan, str]]:
    """(SQL, plan, cube text) of each of `sqls` that `policy` accepts and the cube answers (strategy "cube")."""
    for sql in sqls:
        try:
            plan = plan_query(sql, policy, row_counts(tables))
        except QueryRefused:
            continue
        if strategy(plan, tables) == "cube":
            yield sql, plan, cube_for(plan, tables) or ""


def assert_answers_as(expected: Execution, other: Execution, sql: str) -> None:
    """`other` answers `sql` as `expected` does: the refusal, the rows (value and type), too_many_rows, the groups and
    suppressed groups."""
    assert other.refused == expected.refused, sql
    assert repr(other.rows) == repr(expected.rows), sql
    assert other.too_many_rows == expected.too_many_rows, sql
    assert (other.groups, other.suppressed_groups) == (expected.groups, expected.suppressed_groups), sql
