"""Sandbox workers' DuckDB spill directories do not outlive them: not after a pool runs queries and shuts
down, not after a worker is killed with SIGKILL (by the pool or by the pool's next start)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import tempfile
import time
from pathlib import Path

import duckdb
import pytest

from sandbox.engine import EngineLimits
from sandbox.policy import ProtectionPolicy
from sandbox.pool import WorkerPool
from sandbox.service import TableFile, run_query

POLICY = ProtectionPolicy.model_validate(
    {
        "min_group_size": 2,
        "tables": {
            "t": {"privacy_unit": "u", "dimensions": ["g"], "measures": ["m"], "bounds": {"m": {"min": 0, "max": 100}}}
        },
    }
)
SQL = "SELECT g, count(*) AS n FROM t GROUP BY g"
OTHER_SQL = "SELECT g, sum(m) AS total FROM t GROUP BY g"


@pytest.fixture
def spill_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary directory of its own, for this process and the workers it spawns."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setenv("TMPDIR", str(root))
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


@pytest.fixture
def tables(tmp_path: Path) -> dict[str, TableFile]:
    path = tmp_path / "t.parquet"
    with duckdb.connect() as connection:
        connection.execute(
            "COPY (SELECT i % 3 AS g, 'U' || (i % 40) AS u, i % 50 AS m FROM range(400) r(i)) "
            f"TO '{path}' (FORMAT parquet)"
        )
    return {"t": TableFile(name="t", path=path, row_count=400)}


def _spill(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith("sandbox-spill-"))


def _wait_dead(pid: int) -> None:
    """Until the killed child is reaped (as init reaps the workers of an API process that died)."""
    deadline = time.monotonic() + 10
    while pid in {p.pid for p in multiprocessing.active_children()} and time.monotonic() < deadline:
        time.sleep(0.05)


def test_a_pool_that_ran_queries_and_closed_leaves_no_spill_directory(spill_root: Path, tables) -> None:
    limits = EngineLimits(workers=2)
    pool = WorkerPool(limits)
    try:
        for sql in (SQL, OTHER_SQL, SQL):
            assert run_query(sql, POLICY, tables, limits, 100, pool).rows
        assert _spill(spill_root)  # the workers' connections are open: their directories exist
    finally:
        pool.close()
    assert _spill(spill_root) == []


def test_a_killed_workers_spill_directory_goes_with_the_pool_or_its_next_start(spill_root: Path, tables) -> None:
    limits = EngineLimits(workers=1)
    pool = WorkerPool(limits)
    assert run_query(SQL, POLICY, tables, limits, 100, pool).rows
    (pid,) = pool.worker_pids()
    assert any(name.startswith(f"sandbox-spill-{pid}-") for name in _spill(spill_root))
    os.kill(pid, signal.SIGKILL)
    _wait_dead(pid)
    assert run_query(SQL, POLICY, tables, limits, 100, pool).rows  # the pool replaces the dead worker
    assert not any(name.startswith(f"sandbox-spill-{pid}-") for name in _spill(spill_root))

    # The pool's own process dies with its workers (no close): the next pool to start sweeps theirs.
    for other in pool.worker_pids():
        os.kill(other, signal.SIGKILL)
        _wait_dead(other)
    assert _spill(spill_root)
    restarted = WorkerPool(limits)
    try:
        assert _spill(spill_root) == []
        assert run_query(SQL, POLICY, tables, limits, 100, restarted).rows
    finally:
        restarted.close()
        pool.close()
    assert _spill(spill_root) == []
