"""Run one buyer query: validate, execute the rewritten statement, suppress small groups, measure."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb

from sandbox.engine import EngineLimits, deadline, locked_connection
from sandbox.errors import QueryFailed
from sandbox.policy import ProtectionPolicy
from sandbox.validator import ValidatedQuery, validate


@dataclass(frozen=True)
class TableFile:
    """One table of a product version, as stored: its Parquet file and what metering needs to know."""

    name: str
    path: Path
    row_count: int
    column_bytes: Mapping[str, int] = field(default_factory=dict)
    """Compressed bytes of each column in the Parquet file: what a scan of that column reads."""


@dataclass(frozen=True)
class Measurements:
    """What a query consumed, for metering. Quantities are integers."""

    rows_scanned: int
    bytes_scanned: int
    cpu_ms: int
    result_rows: int
    suppressed_groups: int

    def as_dict(self) -> dict[str, int]:
        return {
            "rows_scanned": self.rows_scanned,
            "bytes_scanned": self.bytes_scanned,
            "cpu_ms": self.cpu_ms,
            "result_rows": self.result_rows,
            "suppressed_groups": self.suppressed_groups,
        }


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[list[Any]]
    sql_run: str
    measurements: Measurements


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value) if value % 1 else int(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, float) and value != value:  # NaN has no JSON form
        return None
    return value


def _measure_scan(validated: ValidatedQuery, tables: Mapping[str, TableFile]) -> tuple[int, int]:
    rows = 0
    size = 0
    for name in validated.tables:
        table = tables[name]
        rows += table.row_count
        size += sum(table.column_bytes.get(c, 0) for c in validated.referenced_columns.get(name, set()))
    return rows, size


def run_query(
    sql: str, policy: ProtectionPolicy, tables: Mapping[str, TableFile], limits: EngineLimits, max_rows: int
) -> QueryResult:
    """Validate `sql` against `policy` and run it over `tables`; raises QueryRefused or QueryFailed."""
    validated = validate(sql, policy)
    started = time.process_time()
    with (
        locked_connection({name: t.path for name, t in tables.items()}, limits) as connection,
        deadline(connection, limits.timeout_seconds) as timed_out,
    ):
        try:
            fetched = connection.execute(validated.sql).fetchall()
        except duckdb.InterruptException as error:
            raise QueryFailed("timeout", status_code=408, seconds=limits.timeout_seconds) from error
        except duckdb.OutOfMemoryException as error:
            raise QueryFailed("resource_limit", limit=limits.memory_limit) from error
        except duckdb.Error as error:
            if timed_out.is_set():
                raise QueryFailed("timeout", status_code=408, seconds=limits.timeout_seconds) from error
            raise QueryFailed("query_failed", detail=_safe_detail(error)) from error
    cpu_ms = int((time.process_time() - started) * 1000)

    passing = [row[:-1] for row in fetched if row[-1]]
    suppressed = len(fetched) - len(passing)
    end = None if validated.limit is None else validated.offset + validated.limit
    passing = passing[validated.offset : end]
    if len(passing) > max_rows:
        raise QueryFailed("too_many_rows", limit=max_rows)
    rows_scanned, bytes_scanned = _measure_scan(validated, tables)
    return QueryResult(
        columns=validated.columns,
        rows=[[_jsonable(v) for v in row] for row in passing],
        sql_run=validated.sql,
        measurements=Measurements(
            rows_scanned=rows_scanned,
            bytes_scanned=bytes_scanned,
            cpu_ms=cpu_ms,
            result_rows=len(passing),
            suppressed_groups=suppressed,
        ),
    )


def _safe_detail(error: duckdb.Error) -> str:
    """The part of a DuckDB error that is safe to show.

    Binder and catalog errors describe the query, so they help the buyer fix it. Run-time errors
    (conversion, out of range, division) can quote a row's value, which would be an error oracle
    for single records, so only their kind is shown.
    """
    if isinstance(error, duckdb.BinderException | duckdb.CatalogException | duckdb.ParserException):
        return str(error).splitlines()[0][:300]
    return (
        f"{type(error).__name__.removesuffix('Exception')} error while computing the result; check casts and arithmetic"
    )
