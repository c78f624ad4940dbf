"""Run one buyer query: validate twice, rewrite, execute in a worker, suppress small groups, measure."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sandbox import cache, crosscheck
from sandbox.engine import EngineLimits
from sandbox.errors import QueryFailed, QueryRefused
from sandbox.policy import ProtectionPolicy
from sandbox.pool import Job, WorkerPool, shared_pool
from sandbox.rewrite import GROUPS_TABLE, RESTRICT_COLUMN, THRESHOLD_COLUMN, Plan, build_plan
from sandbox.rules import MAX_NESTING
from sandbox.validator import check


@dataclass(frozen=True)
class TableFile:
    """One table of a product version, as stored: its Parquet file and what metering needs to know."""

    name: str
    path: Path
    row_count: int
    column_bytes: Mapping[str, int] = field(default_factory=dict)
    """Compressed bytes of each column in the Parquet file: what a scan of that column reads."""
    statistics: Mapping[str, Any] = field(default_factory=dict)
    """Computed when the version was built (products.storage.table_statistics); empty for versions
    built before: the worker then computes them on its first query of the version."""


@dataclass(frozen=True)
class Measurements:
    """What a query consumed, for metering. Quantities are integers.

    rows_scanned and bytes_scanned are computed from the query text and the version's Parquet
    footers, not from timings, so the same query on the same version always measures the same:
    every row of each table the query names, and the compressed bytes of every column it names.
    cpu_ms is what the worker spent; it varies from run to run and is informational only.
    """

    rows_scanned: int
    bytes_scanned: int
    cpu_ms: int
    result_rows: int
    suppressed_groups: int

    def buyer_dict(self) -> dict[str, int]:
        """What a buyer sees: everything but suppressed_groups, whose count depends on rows the policy
        hides, and with cpu_ms 0: the worker's CPU time is a precise clock on the work, which the rows a
        filter selects still move (docs/sandbox.md, "Timing"); the audit log keeps it."""
        return {k: (0 if k == "cpu_ms" else v) for k, v in self.as_dict().items() if k != "suppressed_groups"}

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


def plan_query(sql: str, policy: ProtectionPolicy) -> Plan:
    """Both validators and the rewrite: the statements that will run for `sql`, or QueryRefused.

    Accepted plans are cached per process on (policy, SQL text): validation reads nothing else."""
    key = ("threshold", policy.model_dump_json(), sql)
    found: Plan | None = cache.plans.get(key)
    if found is not None:
        return found
    plan = _plan(sql, policy)
    cache.plans.put(key, plan, len(plan.template) + len(plan.output_sql) + len(sql) + 1024)
    return plan


def _plan(sql: str, policy: ProtectionPolicy) -> Plan:
    checked = check(sql, policy)
    try:
        plan = build_plan(checked, policy)
        crosscheck.confirm(
            sql,
            plan.template,
            plan.output_sql,
            policy,
            {ref.alias: ref.table for ref in checked.refs},
            threshold=THRESHOLD_COLUMN,
            restrict=RESTRICT_COLUMN,
            groups_table=GROUPS_TABLE,
            constants=plan.constants_sql,
        )
    except RecursionError as error:
        raise QueryRefused("sql_too_complex", depth="too many", limit=MAX_NESTING) from error
    return plan


def validate(sql: str, policy: ProtectionPolicy) -> Plan:
    """Alias of plan_query, for callers that only want to know whether `sql` is allowed."""
    return plan_query(sql, policy)


def _iso_duration(value: timedelta) -> str:
    """An INTERVAL as an ISO 8601 duration, e.g. P1DT3600S; exact to the microsecond."""
    micros = value // timedelta(microseconds=1)
    days, rest = divmod(abs(micros), 86_400_000_000)
    seconds, fraction = divmod(rest, 1_000_000)
    text = f"{seconds}.{fraction:06d}".rstrip("0").rstrip(".")
    return f"{'-' if micros < 0 else ''}P{days}DT{text}S"


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value) if value % 1 else int(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return _iso_duration(value)
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None  # NaN and infinities have no JSON form
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)  # any other DuckDB type (UUID, ...) as its text, never a failure after metering


def measure_scan(plan: Plan, tables: Mapping[str, TableFile]) -> tuple[int, int]:
    """Rows and bytes a query scans, from the tables and columns it names: deterministic, for billing."""
    rows = 0
    size = 0
    for name in plan.tables:
        table = tables[name]
        rows += table.row_count
        size += sum(table.column_bytes.get(c, 0) for c in plan.referenced_columns.get(name, []))
    return rows, size


BASE_SECONDS = 5.0
"""Time every query may take, whatever the product's size: ample for a small product's aggregate even
on a loaded machine (the deadline is wall-clock), and a quarter of the default 20 s timeout."""
SECONDS_PER_MILLION_ROWS = 1.0
"""Time added per million rows the query reads: several times what a scan and aggregate of them takes."""


SINGLE_STATEMENT_ROWS = 2_000_000
"""Products whose tables (as the query names them) hold at most this many rows, by the row counts stored
when the version was built, run as one exact statement (engine.execute_single); larger ones staged."""


def budget_seconds(rows_scanned: int, limits: EngineLimits) -> float:
    """A query's time and CPU budget from the size of what it reads, at most the configured timeout.

    It depends only on the tables the query names (their row counts), never on the rows themselves,
    so a timeout says nothing about hidden data; and a heavy query on a small product stops early,
    leaving the workers to others. The configured timeout stays the safety net for large products.
    """
    return min(limits.timeout_seconds, BASE_SECONDS + SECONDS_PER_MILLION_ROWS * rows_scanned / 1_000_000)


def run_query(
    sql: str,
    policy: ProtectionPolicy,
    tables: Mapping[str, TableFile],
    limits: EngineLimits,
    max_rows: int,
    pool: WorkerPool | None = None,
) -> QueryResult:
    """Validate `sql` against `policy` and run it over `tables`; raises QueryRefused or QueryFailed."""
    return execute(plan_query(sql, policy), tables, limits, max_rows, pool)


_resolved: dict[Path, str] = {}


def _resolve(path: Path) -> str:
    """`path` made absolute with its links resolved, remembered: a version's files never move."""
    found = _resolved.get(path)
    if found is None:
        if len(_resolved) > 10_000:
            _resolved.clear()
        found = _resolved[path] = str(path.resolve())
    return found


def _files(tables: Mapping[str, TableFile]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((name, _resolve(t.path)) for name, t in tables.items()))


def _seeds(tables: Mapping[str, TableFile]) -> tuple[tuple[tuple[str, ...], Any], ...]:
    """The build-time statistics of `tables`, as entries of the worker's statistics cache
    (sandbox.engine.TableStatistics' keys, after the version): read there instead of computed."""
    seeds: list[tuple[tuple[str, ...], Any]] = []
    for name, table in tables.items():
        if not table.statistics:
            continue
        for column, (most, nulls) in table.statistics.get("units", {}).items():
            seeds.append(((name, column), (int(most), int(nulls))))
        with_nulls = set(table.statistics.get("nulls", []))
        seeds.extend(((name, column, "\0nulls"), column in with_nulls) for column in table.column_bytes)
    return tuple(seeds)


def statistics_free(tables: Mapping[str, TableFile]) -> bool:
    """Whether every table's file was recorded statistics-free when the version was built
    (products.storage.table_statistics); versions built before record nothing: False."""
    return bool(tables) and all(table.statistics.get("statistics_free") is True for table in tables.values())


def _result_key(plan: Plan, files: tuple[tuple[str, str], ...], max_rows: int) -> tuple[Any, ...]:
    """The version's files, the mode and the exact statements that would run (docs/sandbox.md)."""
    return ("threshold", files, plan.template, plan.decide_sql, plan.output_sql, plan.fast_threshold, max_rows)


def result_key(plan: Plan, tables: Mapping[str, TableFile], max_rows: int) -> tuple[Any, ...]:
    """The result cache's key of `plan` over `tables` (also the key of sandbox.cache.flight)."""
    return _result_key(plan, _files(tables), max_rows)


def cached_result(plan: Plan, tables: Mapping[str, TableFile], max_rows: int) -> QueryResult | None:
    """The answer an identical query on the same version already got in this process, or None.

    The caller still meters, audits and charges it as a query (metering.service); cpu_ms is 0."""
    found: QueryResult | None = cache.results.get(_result_key(plan, _files(tables), max_rows))
    if found is None:
        return None
    return replace(found, measurements=replace(found.measurements, cpu_ms=0))


def execute(
    plan: Plan,
    tables: Mapping[str, TableFile],
    limits: EngineLimits,
    max_rows: int,
    pool: WorkerPool | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> QueryResult:
    """Run a validated `plan` over `tables` in a sandbox worker and measure it; raises QueryFailed
    (`query_cancelled` once `cancelled()` answers True while it runs).

    The answer is kept in this process's result cache (sandbox.cache) for identical queries."""
    files = _files(tables)
    result = _execute(plan, tables, files, limits, max_rows, pool, cancelled)
    cache.results.put(_result_key(plan, files, max_rows), result, cache.size_of(result.rows))
    return result


def _execute(
    plan: Plan,
    tables: Mapping[str, TableFile],
    files: tuple[tuple[str, str], ...],
    limits: EngineLimits,
    max_rows: int,
    pool: WorkerPool | None,
    cancelled: Callable[[], bool] | None = None,
) -> QueryResult:
    rows_scanned, bytes_scanned = measure_scan(plan, tables)
    job = Job(
        tables=files,
        plan=plan,
        max_rows=max_rows,
        seconds=budget_seconds(rows_scanned, limits),
        single=plan.fast_threshold and rows_scanned <= SINGLE_STATEMENT_ROWS,
        statistics_free=statistics_free(tables),
        seeds=_seeds(tables),
    )
    execution = (pool or shared_pool(limits)).run(job, cancelled)
    if execution.refused is not None:
        code, params = execution.refused
        raise QueryRefused(code, **params)
    if execution.too_many_rows:
        raise QueryFailed("too_many_rows", limit=max_rows)
    return QueryResult(
        columns=plan.columns,
        rows=[[_jsonable(v) for v in row] for row in execution.rows],
        sql_run=";\n".join(execution.statements),
        measurements=Measurements(
            rows_scanned=rows_scanned,
            bytes_scanned=bytes_scanned,
            cpu_ms=execution.cpu_ms,
            result_rows=len(execution.rows),
            suppressed_groups=execution.suppressed_groups,
        ),
    )
