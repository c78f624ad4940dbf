"""DuckDB's parse on a second thread, overlapped with Python's work: does it pay? (branch val13)

    python -m bench.val13_threads [query name, default join_priority_shipmode] [repeats, default 1000]

For one bench query's plan, times three ways of running the two independent steps at the end of validation,
crosscheck._derived_seeded (Python and duckdb.tokenize) and crosscheck._read (DuckDB's extract_statements of
the raw text and json_serialize_sql of the template, stage 2 and the constants), alternated:

- serial: one after the other, as plan_query does;
- duckdb-on-worker: a worker thread runs _read while this thread runs _derived_seeded, then waits;
- python-on-worker: a worker thread runs _derived_seeded while this thread is inside DuckDB, then waits.

Then how much DuckDB work a worker thread gets done while this thread runs Python for 50 ms. Wall time is
what counts: the calling thread's CPU time leaves out the worker's.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from bench.sandbox_overhead import POLICY, QUERIES
from sandbox import crosscheck
from sandbox.rewrite import RESTRICT_COLUMN, THRESHOLD_COLUMN
from sandbox.service import check, plan_query


class _Job:
    def __init__(self, work: Callable[[], Any]) -> None:
        self.work = work
        self.done = threading.Lock()
        self.done.acquire()
        self.result: Any = None


_jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()


def _worker() -> None:
    while True:
        job = _jobs.get()
        job.result = job.work()
        job.done.release()


def _on_worker(work: Callable[[], Any], here: Callable[[], Any]) -> None:
    job = _Job(work)
    _jobs.put(job)
    here()
    job.done.acquire()


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else "join_priority_shipmode"
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    raw = QUERIES[name]
    plan = plan_query(raw, POLICY)
    aliases = {ref.alias: ref.table for ref in check(raw, POLICY).refs}
    statements = [plan.template, plan.output_sql, *([plan.constants_sql] if plan.constants_sql else [])]

    def derived() -> Any:
        if plan.seeded is None:
            return None
        return crosscheck._derived_seeded(
            plan.template, plan.seeded, aliases, threshold=THRESHOLD_COLUMN, restrict=RESTRICT_COLUMN
        )

    def read() -> Any:
        return crosscheck._read(raw, statements)

    threading.Thread(target=_worker, daemon=True).start()
    ways: dict[str, Callable[[], Any]] = {
        "serial": lambda: (derived(), read()),
        "duckdb-on-worker": lambda: _on_worker(read, derived),
        "python-on-worker": lambda: _on_worker(derived, read),
    }
    spent: dict[str, list[tuple[float, float]]] = {way: [] for way in ways}
    print(f"{name}, {repeats} alternated repeats; load before {os.getloadavg()}")
    for repeat in range(repeats):
        order = list(ways) if repeat % 2 == 0 else list(reversed(ways))
        for way in order:
            wall, cpu = time.perf_counter(), time.thread_time()
            ways[way]()
            spent[way].append(((time.perf_counter() - wall) * 1000, (time.thread_time() - cpu) * 1000))
    for way, pairs in spent.items():
        walls = sorted(w for w, _ in pairs)
        cpus = sorted(c for _, c in pairs)
        n = len(walls)
        print(
            f"{way:18s} wall min {walls[0]:.3f} p50 {walls[n // 2]:.3f} p90 {walls[int(n * 0.9)]:.3f} "
            f"p99 {walls[int(n * 0.99)]:.3f} ms; this thread's CPU p50 {cpus[n // 2]:.3f} ms"
        )
    # A worker looping on DuckDB while this thread runs Python: how many calls does it finish?
    calls = [0]
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            read()
            calls[0] += 1

    started = time.perf_counter()
    for _ in range(200):
        read()
    alone = 200 / (time.perf_counter() - started)
    looping = threading.Thread(target=loop)
    looping.start()
    started = time.perf_counter()
    total = 0
    while time.perf_counter() - started < 0.05:
        for i in range(1000):
            total += i
    elapsed = time.perf_counter() - started
    stop.set()
    looping.join()
    print(
        f"DuckDB calls per second: alone {alone:.0f}; on a worker while this thread runs Python for "
        f"{elapsed * 1000:.0f} ms: {calls[0] / elapsed:.0f}"
    )
    print(f"load after {os.getloadavg()}")


if __name__ == "__main__":
    main()
