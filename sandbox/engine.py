"""The one place that opens DuckDB for buyer queries, locked down before any buyer SQL reaches it.

Configuration goes in at connect time and is then locked: no external access beyond the product
version's own Parquet files, no extension loading, bounded memory, threads and temp space.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb


@dataclass(frozen=True)
class EngineLimits:
    memory_limit: str = "512MB"
    threads: int = 2
    timeout_seconds: float = 20.0
    max_temp_directory_size: str = "1GB"


def _quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@contextmanager
def locked_connection(tables: Mapping[str, Path], limits: EngineLimits) -> Iterator[duckdb.DuckDBPyConnection]:
    """A fresh in-memory DuckDB whose only data are views over `tables`, with its configuration locked."""
    connection = duckdb.connect(
        ":memory:",
        config={
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "threads": limits.threads,
            "memory_limit": limits.memory_limit,
            "max_temp_directory_size": limits.max_temp_directory_size,
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
