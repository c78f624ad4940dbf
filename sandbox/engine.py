"""The one place that opens DuckDB for buyer queries, locked down before any buyer SQL reaches it.

Configuration goes in at connect time and is then locked: no external access beyond the product
version's own Parquet files, no extension loading, bounded memory, threads, run time and temp
space. This module runs inside a sandbox worker process (sandbox.pool), never in the API process.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from sandbox.rewrite import GROUPS_TABLE, Plan


@dataclass(frozen=True)
class EngineLimits:
    """Per-query limits, enforced by DuckDB's settings and by the worker's OS limits."""

    memory_limit: str = "512MB"
    threads: int = 2
    timeout_seconds: float = 20.0
    max_temp_directory_size: str = "1GB"
    address_space_mb: int = 4096
    """RLIMIT_AS of a worker process: the hard ceiling if DuckDB's own memory_limit is not enough."""
    workers: int = 2


def _quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def open_locked(tables: Mapping[str, Path], limits: EngineLimits) -> duckdb.DuckDBPyConnection:
    """A fresh in-memory DuckDB whose only data are views over `tables`, with its configuration locked."""
    temp_dir = tempfile.mkdtemp(prefix="sandbox-spill-")
    connection = duckdb.connect(
        ":memory:",
        config={
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "allow_community_extensions": False,
            "allow_unsigned_extensions": False,
            "allow_persistent_secrets": False,
            "threads": limits.threads,
            "memory_limit": limits.memory_limit,
            "max_temp_directory_size": limits.max_temp_directory_size,
            "temp_directory": temp_dir,
            "max_execution_time": max(1, int(limits.timeout_seconds * 1000)),
        },
    )
    try:
        paths = [str(path.resolve()) for path in tables.values()]
        connection.execute(f"SET allowed_paths = [{', '.join(_quote_literal(p) for p in paths)}]")
        connection.execute("SET enable_external_access = false")
        for name, path in tables.items():
            connection.execute(
                f"CREATE VIEW {_quote_identifier(name)} AS "
                f"SELECT * FROM read_parquet({_quote_literal(str(path.resolve()))})"
            )
        connection.execute("SET lock_configuration = true")
    except BaseException:
        connection.close()
        raise
    return connection


@contextmanager
def locked_connection(tables: Mapping[str, Path], limits: EngineLimits) -> Iterator[duckdb.DuckDBPyConnection]:
    """`open_locked` as a context manager that closes the connection."""
    connection = open_locked(tables, limits)
    try:
        yield connection
    finally:
        connection.close()


@contextmanager
def deadline(connection: duckdb.DuckDBPyConnection, seconds: float) -> Iterator[threading.Event]:
    """Interrupt the connection's running query after `seconds`; the event tells whether it fired."""
    fired = threading.Event()

    def interrupt() -> None:
        fired.set()
        connection.interrupt()

    timer = threading.Timer(seconds, interrupt)
    timer.daemon = True
    timer.start()
    try:
        yield fired
    finally:
        timer.cancel()


@dataclass
class Execution:
    """What running a plan produced, before the service turns it into a result."""

    rows: list[tuple[Any, ...]]
    groups: int
    suppressed_groups: int
    exact_fallback: bool
    too_many_rows: bool
    cpu_ms: int
    timings: dict[str, float] = field(default_factory=dict)


def execute_plan(connection: duckdb.DuckDBPyConnection, plan: Plan, max_rows: int) -> Execution:
    """Run stage 1, decide every group exactly, run stage 2; leaves no state behind (rolled back)."""
    started = time.process_time()
    connection.execute("BEGIN TRANSACTION")
    try:
        first = plan.groups_sql if plan.fast_threshold else plan.exact_groups_sql
        connection.execute(f"CREATE TEMP TABLE {_quote_identifier(GROUPS_TABLE)} AS {first}")
        decided = connection.execute(plan.decide_sql).fetchone()
        groups, suppressed, undecided = (int(v or 0) for v in (decided or (0, 0, 0)))
        exact = undecided > 0
        if exact:
            # Some group sits between the cheap bounds: count every group's units exactly.
            connection.execute(
                f"CREATE OR REPLACE TEMP TABLE {_quote_identifier(GROUPS_TABLE)} AS {plan.exact_groups_sql}"
            )
            decided = connection.execute(plan.decide_sql).fetchone()
            groups, suppressed, undecided = (int(v or 0) for v in (decided or (0, 0, 0)))
        cursor = connection.execute(plan.output_sql)
        rows = cursor.fetchmany(max_rows + 1)
    finally:
        connection.execute("ROLLBACK")
    return Execution(
        rows=rows[:max_rows],
        groups=groups,
        suppressed_groups=suppressed,
        exact_fallback=exact,
        too_many_rows=len(rows) > max_rows,
        cpu_ms=int((time.process_time() - started) * 1000),
    )
