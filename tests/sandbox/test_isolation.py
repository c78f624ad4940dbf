"""Worker isolation: timeouts, memory limits, OS limits and crashes fail one query with a 4xx, nothing more.

These run real pathological queries (a cross join of two million-row tables, a million-group
aggregate) against real limits, and kill real worker processes.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import duckdb
import pytest

from sandbox.engine import SHADOWS, EngineLimits, TableStatistics, locked_connection
from sandbox.errors import QueryFailed
from sandbox.pool import WorkerPool
from sandbox.service import TableFile, run_query
from tests.sandbox.conftest import self_join_policy, self_join_tables

ROWS = 1_000_000
POLICY = self_join_policy(["x", "g"], 1e6)
QUICK = "SELECT a.g, count(*) FROM a WHERE a.g < 3 GROUP BY 1"
CROSS_JOIN = "SELECT sum(a.m + b.m) FROM a CROSS JOIN b"
UNBOUNDED = 1 << 62
"""max_join_fanout for these tests, whose cross join must run to exhaust a limit."""
MILLION_GROUPS = "SELECT a.x, count(*) FROM a GROUP BY a.x"


@pytest.fixture(scope="module")
def big_tables(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TableFile]:
    return self_join_tables(
        tmp_path_factory.mktemp("isolation"), ROWS, "i AS x, i % 100 AS g, 'U' || (i % 5000) AS u, i % 97 AS m"
    )


def _pool(**limits: object) -> Iterator[tuple[WorkerPool, EngineLimits]]:
    # The pathological cross join is the point here: past the join fan-out bound, which these tests raise.
    engine_limits = EngineLimits(workers=1, max_join_fanout=UNBOUNDED, **limits)  # type: ignore[arg-type]
    pool = WorkerPool(engine_limits)
    yield pool, engine_limits
    pool.close()


@pytest.fixture
def fast_timeout() -> Iterator[tuple[WorkerPool, EngineLimits]]:
    yield from _pool(timeout_seconds=1.0)


@pytest.fixture
def small_memory() -> Iterator[tuple[WorkerPool, EngineLimits]]:
    yield from _pool(memory_limit="32MB", max_temp_directory_size="1MB")


@pytest.fixture
def small_address_space() -> Iterator[tuple[WorkerPool, EngineLimits]]:
    yield from _pool(memory_limit="8GB", address_space_mb=800)


@pytest.fixture
def roomy() -> Iterator[tuple[WorkerPool, EngineLimits]]:
    yield from _pool(timeout_seconds=30.0)


def _run(setup: tuple[WorkerPool, EngineLimits], tables: dict[str, TableFile], sql: str):
    pool, limits = setup
    return run_query(sql, POLICY, tables, limits, 10_000, pool)


def test_a_pathological_cross_join_times_out_and_the_pool_recovers(fast_timeout, big_tables) -> None:
    started = time.monotonic()
    with pytest.raises(QueryFailed) as failed:
        _run(fast_timeout, big_tables, CROSS_JOIN)
    assert failed.value.code == "timeout" and failed.value.status_code == 408
    assert time.monotonic() - started < 10
    assert _run(fast_timeout, big_tables, QUICK).rows  # the next query is served


def test_a_query_on_a_small_product_gets_a_small_budget(roomy, big_tables) -> None:
    # The budget comes from the row counts the product declares, not from the 30 s timeout: a
    # product of 200,000 rows gives each query 5 s + 1 s per million rows read, here 5.4 s.
    small = {name: replace(table, row_count=200_000) for name, table in big_tables.items()}
    with pytest.raises(QueryFailed) as failed:
        _run(roomy, small, CROSS_JOIN)
    # One statement with a threshold per cell (small products) may reach the 512 MB memory limit before the
    # 5.4 s budget on a fast machine: either limit stops it, and a timeout names the small budget, never 30 s.
    assert failed.value.code in ("timeout", "resource_limit")
    if failed.value.code == "timeout":
        assert "5.4 seconds" in failed.value.message
    assert _run(roomy, small, QUICK).rows  # the next query is served


def test_duckdb_memory_limit_is_a_resource_limit(small_memory, big_tables) -> None:
    with pytest.raises(QueryFailed) as failed:
        _run(small_memory, big_tables, MILLION_GROUPS)
    assert failed.value.code == "resource_limit" and 400 <= failed.value.status_code < 500
    assert _run(small_memory, big_tables, QUICK).rows


def test_the_os_address_space_limit_is_a_resource_limit(small_address_space, big_tables) -> None:
    with pytest.raises(QueryFailed) as failed:
        _run(small_address_space, big_tables, MILLION_GROUPS)
    assert failed.value.code == "resource_limit"


def test_a_worker_killed_mid_query_fails_only_that_query(roomy, big_tables) -> None:
    pool, _ = roomy
    outcome: list[BaseException] = []

    def slow() -> None:
        try:
            _run(roomy, big_tables, CROSS_JOIN)
        except BaseException as error:
            outcome.append(error)

    thread = threading.Thread(target=slow)
    thread.start()
    deadline = time.monotonic() + 20
    while not pool.worker_pids(busy=True) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # let DuckDB get going
    for pid in pool.worker_pids(busy=True):
        os.kill(pid, signal.SIGKILL)  # what the kernel's OOM killer does
    thread.join(timeout=30)
    assert len(outcome) == 1 and isinstance(outcome[0], QueryFailed)
    assert outcome[0].code == "resource_limit"
    assert _run(roomy, big_tables, QUICK).rows


def test_a_worker_that_died_while_idle_is_replaced_silently(roomy, big_tables) -> None:
    pool, _ = roomy
    assert _run(roomy, big_tables, QUICK).rows
    for pid in pool.worker_pids():
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    assert _run(roomy, big_tables, QUICK).rows


def test_no_state_survives_a_query(roomy, big_tables) -> None:
    # Each query creates its groups table inside a transaction that is rolled back: running the
    # same query twice on the same warm connection would fail if anything were left behind.
    first = _run(roomy, big_tables, QUICK)
    second = _run(roomy, big_tables, QUICK)
    assert sorted(first.rows) == sorted(second.rows)  # no ORDER BY: groups come in any order


def test_the_connection_itself_is_locked(tmp_path: Path, big_tables) -> None:
    """Defence in depth: even SQL that slipped past both validators could not escape the engine."""
    secret = tmp_path / "secret.csv"
    secret.write_text("a\n1\n")
    with locked_connection({"a": big_tables["a"].path}, EngineLimits()) as connection:
        for statement in (
            "SET enable_external_access = true",
            "SET lock_configuration = false",
            "SET memory_limit = '100GB'",
            f"SELECT * FROM read_csv('{secret}')",
            "INSTALL httpfs",
            "LOAD httpfs",
            f"COPY (SELECT 1) TO '{tmp_path / 'out.csv'}'",
            f"ATTACH '{tmp_path / 'x.db'}'",
        ):
            with pytest.raises(duckdb.Error):
                connection.execute(statement)
        assert connection.execute("SELECT count(*) FROM a").fetchone() == (ROWS,)


def test_concurrent_queries_share_the_pool(big_tables) -> None:
    limits = EngineLimits(workers=2, timeout_seconds=30.0)
    pool = WorkerPool(limits)
    results: list[object] = []

    def one() -> None:
        try:
            # Without ORDER BY, DuckDB's parallel aggregate returns groups in any order.
            results.append(sorted(run_query(QUICK, POLICY, big_tables, limits, 10_000, pool).rows))
        except BaseException as error:
            results.append(error)

    threads = [threading.Thread(target=one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    pool.close()
    assert len(results) == 6 and all(r == results[0] and isinstance(r, list) for r in results)


def test_a_worker_keeps_few_typed_copies_of_the_tables(big_tables) -> None:
    # Before: one empty typed copy per product version ever served, never closed, until the worker's
    # address space ran out and a query failed with resource_limit.
    cache: dict[tuple[str, ...], object] = {}
    with locked_connection({"a": big_tables["a"].path}, EngineLimits()) as db:
        copies = [TableStatistics(db, cache, version=f"v{i}").shadow(["a"]) for i in range(SHADOWS + 2)]
        assert copies[-1].execute('SELECT count(*) FROM "a"').fetchone() == (0,)  # typed, empty
        with pytest.raises(duckdb.Error):
            copies[0].execute("SELECT 1")  # the least recently used copies are closed
        assert TableStatistics(db, cache, version=f"v{SHADOWS + 1}").shadow(["a"]) is copies[-1]
