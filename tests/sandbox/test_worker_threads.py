"""A worker's threads: one long-lived watcher for timeouts and cancels, not threads per query; and the
DuckDB thread count of a job from the version's public row counts (sandbox.service.threads_for)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbox import dp_run
from sandbox.engine import EngineLimits, Execution
from sandbox.errors import QueryFailed
from sandbox.pool import Job, WorkerPool
from sandbox.service import ONE_THREAD_ROWS, TableFile, plan_query, run_query, threads_for
from tests.sandbox.conftest import self_join_policy, self_join_tables

ROWS = 300_000
POLICY = self_join_policy(["g"], 100)
QUICK = "SELECT a.g, count(*) FROM a GROUP BY 1"
CROSS_JOIN = "SELECT sum(a.m + b.m) FROM a CROSS JOIN b"
IDLE_THREADS = 3
"""A worker's Python threads: its main thread, the parent watcher (pool._watch_parent) and the job watcher."""


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TableFile]:
    return self_join_tables(
        tmp_path_factory.mktemp("threads"), ROWS, "i % 10 AS g, 'U' || (i % 5000) AS u, i % 97 AS m"
    )


@pytest.fixture
def pool() -> Iterator[tuple[WorkerPool, EngineLimits]]:
    limits = EngineLimits(workers=1, timeout_seconds=1.0, max_join_fanout=1 << 62)  # the long cross join, allowed
    workers = WorkerPool(limits)
    yield workers, limits
    workers.close()


def test_a_worker_keeps_the_same_threads_over_many_jobs_timeouts_and_cancels(pool, tables) -> None:
    workers, limits = pool
    assert run_query(QUICK, POLICY, tables, limits, 1000, workers).rows
    first = workers.probe()
    assert first <= IDLE_THREADS  # while a job runs: no thread of its own for its deadline or its cancel
    (pid,) = workers.worker_pids()
    for _ in range(40):
        assert run_query(QUICK, POLICY, tables, limits, 1000, workers).rows
    with pytest.raises(QueryFailed) as failed:
        run_query(CROSS_JOIN, POLICY, tables, limits, 1000, workers)  # the 1 s timeout
    assert failed.value.code == "timeout"
    plan = plan_query(CROSS_JOIN, POLICY)
    job = Job(tables=(("a", str(tables["a"].path)), ("b", str(tables["b"].path))), plan=plan, max_rows=10, seconds=5)
    with pytest.raises(QueryFailed) as failed:
        workers.run(job, cancelled=lambda: True)
    assert failed.value.code == "query_cancelled"
    for _ in range(20):
        assert run_query(QUICK, POLICY, tables, limits, 1000, workers).rows
    assert workers.worker_pids() == [pid]  # the same worker throughout: timeouts and cancels did not kill it
    assert workers.probe() == first


@given(st.integers(min_value=0, max_value=10**10), st.integers(min_value=1, max_value=16))
def test_threads_come_from_row_counts_only(rows: int, configured: int) -> None:
    limits = EngineLimits(threads=configured)
    threads = threads_for(rows, limits)
    assert threads == (1 if rows <= ONE_THREAD_ROWS else configured)
    assert threads_for(rows + 1, limits) >= threads  # monotone in the public row count


class _Recording(WorkerPool):
    def __init__(self, limits: EngineLimits) -> None:
        super().__init__(limits)
        self.jobs: list[Any] = []

    def run(self, job: Any, cancelled: Any = None) -> Execution:
        self.jobs.append(job)
        return super().run(job, cancelled)


def test_small_products_run_on_one_duckdb_thread_large_on_the_configured_threads(tables) -> None:
    limits = EngineLimits(workers=1, threads=2)
    recording = _Recording(limits)
    try:
        run_query(QUICK, POLICY, tables, limits, 1000, recording)
        large = {n: TableFile(name=n, path=t.path, row_count=ONE_THREAD_ROWS + 1) for n, t in tables.items()}
        run_query(QUICK, POLICY, large, limits, 1000, recording)
        first, second = recording.jobs
        assert (first.threads, second.threads) == (1, 2)
        assert first.warm_key(limits) != second.warm_key(limits)  # a connection per thread count
        assert first.warm_key(limits)[0] == second.warm_key(limits)[0]
    finally:
        recording.close()


def test_the_dp_path_sets_threads_too(tables, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Job] = []

    class _Fake:
        def run(self, job: Job, cancelled: Any = None) -> Execution:
            seen.append(job)
            return Execution(
                rows=[], groups=0, suppressed_groups=0, methods=[], too_many_rows=False, cpu_ms=0, statements=[]
            )

    class _Plan:
        def __init__(self) -> None:
            self.tables = ["a"]
            self.referenced_columns = {"a": ["m"]}

    dp_run.run(_Plan(), {"a": tables["a"]}, EngineLimits(threads=2), _Fake())  # type: ignore[arg-type]
    large = {"a": TableFile(name="a", path=Path(tables["a"].path), row_count=ONE_THREAD_ROWS * 3)}
    dp_run.run(_Plan(), large, EngineLimits(threads=2), _Fake())  # type: ignore[arg-type]
    assert [job.threads for job in seen] == [1, 2]


def test_a_job_sent_to_a_worker_already_dead_goes_to_a_fresh_one(pool, tables) -> None:
    # Without an acknowledgement message, the shared count of jobs taken tells a worker that died before
    # it took the job (killed while idle, not yet noticed) from one that died running it.
    workers, limits = pool
    assert run_query(QUICK, POLICY, tables, limits, 1000, workers).rows
    (pid,) = workers.worker_pids()
    (worker,) = workers._idle
    os.kill(pid, signal.SIGKILL)
    worker.process.join(5)
    worker.process.is_alive = lambda: True  # type: ignore[method-assign]  # as if the pool had not noticed yet
    assert run_query(QUICK, POLICY, tables, limits, 1000, workers).rows  # not failed: retried once
    assert workers.worker_pids() and workers.worker_pids() != [pid]
