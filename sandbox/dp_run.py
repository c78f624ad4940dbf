"""Run a DP plan's statement in a sandbox worker: the true, bounded statistics per group (sandbox.dp)."""

from __future__ import annotations

from collections.abc import Mapping

from sandbox.dp import DPPlan
from sandbox.engine import EngineLimits, Execution
from sandbox.errors import QueryRefused
from sandbox.pool import Job, WorkerPool, shared_pool
from sandbox.service import TableFile, budget_seconds, files_of, statistics_free, threads_for


def measure_scan(plan: DPPlan, tables: Mapping[str, TableFile]) -> tuple[int, int]:
    """Rows and bytes the query scans, from the table and columns it names (as threshold mode measures)."""
    rows = size = 0
    for name in plan.tables:
        table = tables[name]
        rows += table.row_count
        size += sum(table.column_bytes.get(c, 0) for c in plan.referenced_columns.get(name, []))
    return rows, size


def run(
    plan: DPPlan, tables: Mapping[str, TableFile], limits: EngineLimits, pool: WorkerPool | None = None
) -> tuple[Execution, int, int]:
    """(the worker's execution, rows scanned, bytes scanned); raises QueryRefused or QueryFailed."""
    rows_scanned, bytes_scanned = measure_scan(plan, tables)
    job = Job(
        tables=files_of(tables),
        plan=plan,
        max_rows=0,
        seconds=budget_seconds(rows_scanned, limits),
        statistics_free=statistics_free(tables),
        threads=threads_for(rows_scanned, limits),
    )
    execution = (pool or shared_pool(limits)).run(job)
    if execution.refused is not None:
        code, params = execution.refused
        raise QueryRefused(code, **params)
    return execution, rows_scanned, bytes_scanned
