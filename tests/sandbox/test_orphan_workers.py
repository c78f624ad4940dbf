"""Red team (session 5): a sandbox worker whose API process was killed (`kill -9`) stops at once.

The API process holds the machine-wide worker slot (sandbox/admission.py) and the kernel frees it when
the process dies, so a restarted API may start a new worker at once. Before, the dead process's worker
ran its query on until the query's own time budget (up to the timeout), on top of the workers the slots
count; now it notices that its parent is gone within ORPHAN_CHECK_SECONDS and exits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb

from sandbox.pool import ORPHAN_CHECK_SECONDS

ROWS = 1_000_000

SCRIPT = """
import sys
from pathlib import Path
from sandbox.engine import EngineLimits
from sandbox.policy import ProtectionPolicy
from sandbox.pool import WorkerPool
from sandbox.service import TableFile, run_query

if __name__ == "__main__":  # the workers are spawned: they import this module again
    path = Path(sys.argv[1])
    policy = ProtectionPolicy.model_validate({"min_group_size": 10, "tables": {t: {
        "privacy_unit": "u", "dimensions": ["g"], "measures": ["m"], "bounds": {"m": {"min": 0, "max": 1e6}}}
        for t in ("a", "b")}})
    tables = {t: TableFile(name=t, path=path, row_count=1_000_000) for t in ("a", "b")}
    limits = EngineLimits(workers=1, timeout_seconds=60.0, max_join_fanout=1 << 62)  # a long cross join, allowed
    pool = WorkerPool(limits)
    print("running", flush=True)
    run_query("SELECT sum(a.m + b.m) FROM a CROSS JOIN b", policy, tables, limits, 10, pool)
"""


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _is_worker(pid: int) -> bool:
    try:
        return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _running_a_query(pid: int) -> bool:
    """Whether the worker runs a job: it has opened DuckDB (its threads) and started the job's deadline
    and cancel watcher (one long-lived thread, pool._Watcher), so it has at least 4 threads."""
    try:
        return len(os.listdir(f"/proc/{pid}/task")) >= 4
    except OSError:
        return False


def test_a_worker_left_running_by_a_killed_api_process_exits_soon(tmp_path: Path) -> None:
    path = tmp_path / "big.parquet"
    with duckdb.connect() as connection:
        connection.execute(
            f"COPY (SELECT i % 100 AS g, 'U' || (i % 5000) AS u, i % 97 AS m FROM range({ROWS}) t(i)) "
            f"TO '{path}' (FORMAT parquet)"
        )
    script = tmp_path / "api.py"
    script.write_text(SCRIPT)
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": root}
    api = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE, cwd=root, env=env)
    workers: list[int] = []
    try:
        assert api.stdout is not None and api.stdout.readline().strip() == b"running"
        deadline = time.monotonic() + 60
        while not (workers and _running_a_query(workers[0])):
            assert time.monotonic() < deadline, "the worker never started the query"
            workers = [p for p in _children(api.pid) if _is_worker(p)]
            time.sleep(0.05)
        time.sleep(0.5)
        os.kill(api.pid, signal.SIGKILL)  # the API process dies; its worker is in the middle of a query
        api.wait(timeout=20)
        killed = time.monotonic()
        while _alive(workers[0]):
            # The query's budget is 7 s (2 M rows): a worker that waits for it is still here after 4 s.
            assert time.monotonic() - killed < ORPHAN_CHECK_SECONDS + 3, "the orphaned worker runs on"
            time.sleep(0.05)
    finally:
        if api.poll() is None:
            api.kill()
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
