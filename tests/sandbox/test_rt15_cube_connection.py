"""Branch rt15: the cube's statement on the version's own summary connection (engine.open_summary, Summaries).

- Answers: for every query the cube answers (the pre16/cube13 property fixtures: random small tables, random
  queries of the cube's shapes), engine.execute_cube on the summary connection gives exactly the rows (value and
  type), groups, suppressed groups and statements it gives on the version's connection; through a worker the
  demo-like cube jobs answer as the single statement does and the worker keeps at most SUMMARY_CONNECTIONS.
- Lockdown: the summary connection refuses what the version's connection refuses (settings, file reads, even of
  the version's own table file, extensions, COPY, ATTACH) and holds the same locked settings.
- Cancel and deadline: the worker's watcher interrupts a statement running on the summary connection.
- The prepared-statement cache is bounded (engine.PREPARED), in DuckDB's own list as in ours.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, note, settings

from products.storage import table_statistics
from sandbox import engine
from sandbox.engine import EngineLimits, execute_cube, open_locked, open_summary
from sandbox.errors import QueryRefused
from sandbox.pool import SUMMARY_CONNECTIONS, Job, WorkerPool, _summary_connection, _Watcher
from sandbox.service import TableFile, cube_for, files_of, plan_query, row_counts, strategy
from tests.sandbox.conftest import write_parquet
from tests.sandbox.test_pre16_summary_property import (
    ROLES,
    TYPES,
    _bounds,
    _policy,
    _sql,
    _typed,
    queries,
    rows_strategy,
)
from tests.support.cube_connections import cube_connections

ROWS = [
    {"u": f"u{i % 9}", "g": ["a", "b", None][i % 3], "h": i % 3, "d": ["x", "y"][i % 2], "m": float(i % 7), "n": i}
    for i in range(90)
]


def _tables(directory: Path, rows: list[dict[str, Any]], q: dict[str, Any] | None = None) -> dict[str, TableFile]:
    path = write_parquet(directory / "t.parquet", rows, TYPES)
    stats = table_statistics(path, list(TYPES), ROLES, _bounds(q or {}))
    return {"t": TableFile(name="t", path=path, row_count=len(rows), statistics=stats)}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=rows_strategy, q=queries())
def test_the_summary_connection_answers_exactly_as_the_version_s(rows: list[dict[str, Any]], q: dict[str, Any]) -> None:
    sql = _sql(q)
    note(sql)
    with tempfile.TemporaryDirectory() as directory:
        tables = _tables(Path(directory), rows, q)
        try:
            plan = plan_query(sql, _policy(q["k"]), row_counts(tables))
        except QueryRefused:
            return
        if strategy(plan, tables) != "cube":
            return
        cube = cube_for(plan, tables)
        assert cube
        with cube_connections(tables) as (connection, lean, statistics):
            before = execute_cube(connection, plan, 100, statistics, cube)
            # Twice: the first prepares the statement, the second runs the plan prepared.
            ran = [execute_cube(connection, plan, 100, statistics, cube, lean) for _ in range(2)]
            assert lean.prepared == len(before.statements) or before.refused is not None
            # Branch lit20: every statement prepared there reads its set's rows as constants (test_lit20_*).
            assert lean.constants == lean.prepared
    for after in ran:
        assert _typed(after.rows) == _typed(before.rows), sql
        assert (after.groups, after.suppressed_groups) == (before.groups, before.suppressed_groups), sql
        assert (after.statements, after.refused, after.methods) == (before.statements, before.refused, before.methods)
        assert not any("unnest(" in statement for statement in after.statements)  # the constants stay in the worker


def test_one_connection_s_prepared_statements_never_answer_another_text(tmp_path: Path) -> None:
    """Two filters, one right after the other on one summary connection: each its own answer (a cache keyed
    by anything less than the exact text would answer the second with the first's plan)."""
    tables = _tables(tmp_path, ROWS)
    with cube_connections(tables) as (connection, lean, statistics):
        for literal in ("'x'", "'y'", "'z'", "'x'"):
            sql = f"SELECT g, count(*) AS c, avg(n) AS an FROM t WHERE d = {literal} GROUP BY g"
            plan = plan_query(sql, _policy(2), row_counts(tables))
            cube = cube_for(plan, tables)
            assert cube
            on_summary = execute_cube(connection, plan, 100, statistics, cube, lean)
            before = execute_cube(connection, plan, 100, statistics, cube)
            assert _typed(on_summary.rows) == _typed(before.rows), sql
            assert (on_summary.groups, on_summary.suppressed_groups) == (before.groups, before.suppressed_groups)


def test_a_statement_the_summary_connection_cannot_prepare_runs_where_it_ran_before(tmp_path: Path) -> None:
    """One naming the version's table (not on the summary connection): Unprepared, then the version's connection
    answers, as it did before rt15; the summary connection holds no plan for it."""
    tables = _tables(tmp_path, ROWS)
    files = {name: Path(file) for name, file in files_of(tables)}
    connection = open_locked(files, EngineLimits(threads=1), True)
    lean = open_summary(files, EngineLimits(threads=1), True)
    try:
        with pytest.raises(engine.Unprepared):
            lean.execute('SELECT count(*) FROM "t"')
        assert engine._OnSummary(lean, connection).execute('SELECT count(*) FROM "t"').fetchone() == (len(ROWS),)
        assert lean.prepared == 0
    finally:
        lean.close()
        connection.close()


LOCKED_SETTINGS = (
    "enable_external_access",
    "lock_configuration",
    "autoload_known_extensions",
    "autoinstall_known_extensions",
    "allow_community_extensions",
    "allow_unsigned_extensions",
    "allow_persistent_secrets",
    "memory_limit",
    "max_temp_directory_size",
    "max_execution_time",
    "enable_progress_bar",
    "parquet_use_page_index",
)


def test_the_summary_connection_is_locked_as_the_version_s(tmp_path: Path) -> None:
    tables = _tables(tmp_path, ROWS)
    files = {name: Path(file) for name, file in files_of(tables)}
    secret = tmp_path / "secret.csv"
    secret.write_text("a\n1\n")
    limits = EngineLimits(memory_limit="300MB", timeout_seconds=7.0)
    connection = open_locked(files, limits, True)
    lean = open_summary(files, limits, True)
    try:
        for statement in (
            "SET enable_external_access = true",
            "SET lock_configuration = false",
            "SET memory_limit = '100GB'",
            "SET disabled_optimizers = ''",
            f"SELECT * FROM read_csv('{secret}')",
            f"SELECT * FROM read_parquet('{tables['t'].path}')",  # the version's own table: not this connection's
            "SELECT * FROM read_text('/etc/passwd')",
            "INSTALL httpfs",
            "LOAD httpfs",
            f"COPY (SELECT 1) TO '{tmp_path / 'out.csv'}'",
            f"ATTACH '{tmp_path / 'x.db'}'",
        ):
            with pytest.raises(duckdb.Error):
                lean.connection.execute(statement)
        # Through the prepared path too: refused, never run (the caller would run it where it ran before).
        with pytest.raises((duckdb.Error, engine.Unprepared)):
            lean.execute(f"SELECT * FROM read_csv('{secret}')").fetchall()
        for name in LOCKED_SETTINGS:
            query = f"SELECT current_setting('{name}')"
            assert lean.connection.execute(query).fetchone() == connection.execute(query).fetchone(), name
        assert lean.connection.execute("SELECT current_setting('threads')").fetchone() == (1,)
        disabled = str(lean.connection.execute("SELECT current_setting('disabled_optimizers')").fetchone())
        for optimizer in engine.disabled_optimizers(limits, True).split(","):
            assert optimizer in disabled
        # It holds the summary only: no view of the table, no other table.
        names = lean.connection.execute("SELECT table_name FROM information_schema.tables").fetchall()
        assert names == [("__summary__t",)]
    finally:
        lean.close()
        connection.close()


SLOW = "SELECT count(*) FROM range(100000000000) AS r(i) WHERE i % 7 = 3"


def _interrupted(watch_seconds: float, cancel_after: float | None) -> tuple[Any, float]:
    cancel = threading.Event()
    watcher = _Watcher(cancel)
    # Its own deadline of 8 s: without the watcher's interrupt the statement ends there, and the test fails on time.
    lean = engine.Summaries(duckdb.connect(":memory:", config={"threads": 1, "max_execution_time": 8000}))
    try:
        if cancel_after is not None:
            threading.Timer(cancel_after, cancel.set).start()
        started = time.monotonic()
        with watcher.watch(None, watch_seconds, lean) as watch, pytest.raises(duckdb.InterruptException):
            lean.execute(SLOW).fetchall()
        return watch, time.monotonic() - started
    finally:
        lean.close()


def test_a_cancel_interrupts_the_summary_connection() -> None:
    watch, took = _interrupted(30.0, 0.2)
    assert watch.cancelled and not watch.timed_out
    assert took < 4


def test_the_deadline_interrupts_the_summary_connection() -> None:
    watch, took = _interrupted(0.3, None)
    assert watch.timed_out and not watch.cancelled
    assert took < 4


def test_the_prepared_statement_cache_is_bounded(tmp_path: Path) -> None:
    tables = _tables(tmp_path, ROWS)
    files = {name: Path(file) for name, file in files_of(tables)}
    lean = open_summary(files, EngineLimits(), True)
    try:
        rows = lean.connection.execute('SELECT count(*) FROM "__summary__t"').fetchone()[0]  # type: ignore[index]
        for i in range(engine.PREPARED + 40):
            assert lean.execute(f'SELECT count(*) + {i} FROM "__summary__t"').fetchone() == (rows + i,)
            held = lean.connection.execute("SELECT count(*) FROM duckdb_prepared_statements()").fetchone()
            assert lean.prepared == held[0] == min(i + 1, engine.PREPARED)  # type: ignore[index]
        # The most recently used are kept: the first ones were deallocated, the last one runs from its plan.
        held_texts = lean.connection.execute("SELECT statement FROM duckdb_prepared_statements()").fetchall()
        assert not any("+ 0)" in str(text) for (text,) in held_texts)
        assert any(f"+ {engine.PREPARED + 39})" in str(text) for (text,) in held_texts)
    finally:
        lean.close()


def test_a_worker_keeps_at_most_a_few_summary_connections(tmp_path: Path) -> None:
    kept: OrderedDict[tuple[Any, ...], engine.Summaries] = OrderedDict()
    opened = []
    for i in range(SUMMARY_CONNECTIONS + 2):
        directory = tmp_path / f"v{i}"
        directory.mkdir()
        tables = _tables(directory, ROWS)
        job = Job(tables=files_of(tables), plan=None, max_rows=10, cube="x")  # type: ignore[arg-type]
        opened.append(_summary_connection(job, EngineLimits(), kept))
        assert _summary_connection(job, EngineLimits(), kept) is opened[-1]
    assert len(kept) == SUMMARY_CONNECTIONS
    with pytest.raises(duckdb.Error):  # the least recently used was closed
        opened[0].connection.execute("SELECT 1")
    for lean in kept.values():
        lean.close()


def test_through_a_worker_cube_jobs_answer_as_the_single_statement(tmp_path: Path) -> None:
    tables = _tables(tmp_path, ROWS)
    pool = WorkerPool(EngineLimits(workers=1, threads=1))
    try:
        for sql in (
            "SELECT g, count(*) AS c, avg(n) AS an FROM t GROUP BY g",
            "SELECT g, h, count(*) AS c FROM t GROUP BY g, h",
            "SELECT g, count(*) AS c, sum(n) AS sn FROM t WHERE d = 'y' GROUP BY g",
            "SELECT count(*) AS c FROM t WHERE h = 7",
        ):
            plan = plan_query(sql, _policy(3), row_counts(tables))
            assert strategy(plan, tables) == "cube", sql
            cube = Job(tables=files_of(tables), plan=plan, max_rows=100, cube=cube_for(plan, tables) or "")
            single = Job(tables=files_of(tables), plan=plan, max_rows=100, single=True)
            for _ in range(2):
                by_cube, by_single = pool.run(cube), pool.run(single)
                assert by_cube.methods == ["cube"]
                assert _typed(by_cube.rows) == _typed(by_single.rows), sql
                assert (by_cube.groups, by_cube.suppressed_groups) == (by_single.groups, by_single.suppressed_groups)
    finally:
        pool.close()


# --- Numbered cancels (rt15): the watcher's wake-up after a job's reply, and a cancel that names a job. ---


def _numbered(asked_number: int, job_number: int, seconds: float) -> tuple[Any, float]:
    """A numbered watch of job `job_number` whose flag is set with `asked` naming `asked_number`."""
    cancel = threading.Event()
    asked = type("Asked", (), {"value": 0})()
    watcher = _Watcher(cancel, asked)
    lean = engine.Summaries(duckdb.connect(":memory:", config={"threads": 1, "max_execution_time": 8000}))
    try:

        def ask() -> None:
            asked.value = asked_number
            cancel.set()

        threading.Timer(0.2, ask).start()
        started = time.monotonic()
        with watcher.watch(None, seconds, lean, number=job_number) as watch, pytest.raises(duckdb.InterruptException):
            lean.execute(SLOW).fetchall()
        return watch, time.monotonic() - started
    finally:
        lean.close()


def test_a_cancel_naming_the_job_interrupts_it() -> None:
    watch, took = _numbered(7, 7, 30.0)
    assert watch.cancelled and not watch.timed_out
    assert took < 4


def test_a_wake_up_naming_another_job_does_not_cancel_this_one() -> None:
    """The last job's wake-up after its reply (rest) or an old request reaches the next job: ignored, and the
    job's deadline still holds."""
    watch, took = _numbered(6, 7, 1.0)
    assert watch.timed_out and not watch.cancelled
    assert 0.9 < took < 4


def test_through_a_worker_a_stale_cancel_reaches_no_later_job(tmp_path: Path) -> None:
    """A request for a job that already ended (the flag set, its number in `asked`) and each job's own wake-up
    after its reply: the next jobs run to their answer. A cancel of the running job still fails it."""
    tables = _tables(tmp_path, ROWS)
    pool = WorkerPool(EngineLimits(workers=1, threads=1))
    try:
        plan = plan_query("SELECT g, count(*) AS c FROM t GROUP BY g", _policy(3), row_counts(tables))
        job = Job(tables=files_of(tables), plan=plan, max_rows=100, cube=cube_for(plan, tables) or "")
        expected = pool.run(job).rows
        (worker,) = pool._idle
        worker.asked.value = worker.sent  # asked for the job that has just ended
        worker.cancel.set()
        for _ in range(30):
            assert pool.run(job).rows == expected
        assert pool.run(job, cancelled=lambda: False).rows == expected
    finally:
        pool.close()


def _worker_cpu_ms(pid: int) -> float:
    """The worker's CPU so far, every thread, from the scheduler's exact run times (/proc/<pid>/task/*/schedstat)."""
    return sum(int(path.read_text().split()[0]) for path in Path(f"/proc/{pid}/task").glob("*/schedstat")) / 1e6


def test_a_worker_s_cpu_ms_covers_the_whole_job(tmp_path: Path) -> None:
    """cpu_ms is the worker's CPU for the whole job (getrusage), rounded. It was the engine call's alone, by
    time.process_time, which once RLIMIT_CPU is set advances only at the scheduler's ticks, truncated: on this
    tiny table's cube job, about a quarter of the worker's CPU (most jobs 0). Now most of it (the rest: waiting
    for the next job, sending the reply, the watcher)."""
    tables = _tables(tmp_path, ROWS)
    pool = WorkerPool(EngineLimits(workers=1, threads=1))
    try:
        plan = plan_query("SELECT g, count(*) AS c FROM t GROUP BY g", _policy(3), row_counts(tables))
        job = Job(tables=files_of(tables), plan=plan, max_rows=100, cube=cube_for(plan, tables) or "")
        for _ in range(5):
            pool.run(job)
        (pid,) = pool.worker_pids()
        before = _worker_cpu_ms(pid)
        reported = sum(pool.run(job).cpu_ms for _ in range(200))
        spent = _worker_cpu_ms(pid) - before
        assert 0.6 * spent <= reported <= 1.1 * spent + 100, (reported, spent)
    finally:
        pool.close()
