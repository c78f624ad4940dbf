"""The two connections a worker runs a cube on, for tests and benches that call engine.execute_cube directly."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import duckdb

from sandbox.engine import EngineLimits, Summaries, TableStatistics, open_locked, open_summary
from sandbox.service import TableFile, files_of, statistics_free


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
