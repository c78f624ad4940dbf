"""The small demo queries decided from build-time unit counts (branch pre16, issue 12): main's path against the
summary path, raw DuckDB beside them, alternated in one run; and where the worker's CPU goes.

Builds the demo (SQLite, a temporary directory; or `--data DIR`, a demo already built by this tree), then:

Branch cube13: "main" is now pre16's summary path (the version's statistics with the summary's `cube` left out,
so strategy chooses "summary"), "this" the cube where it applies (stage 1 read from the summary alone).

1. Per query, in one worker pool (one worker, the service's DuckDB threads), in an order that rotates every
   round: the job as main chooses it (sandbox.service.strategy over the version's statistics without the
   summary's cube), the job as this tree chooses it (the cube), and
   raw DuckDB in this process on the same Parquet file (one thread, every optimizer). The worker's CPU (from
   /proc, clock ticks of 10 ms: means), wall medians, ratios to raw, and whether the answers agree.
2. `--breakdown`: in this process, where a warm worker's CPU goes for one job (means of `--runs`): the
   whole job (sandbox.pool._run_job on a warm connection), the engine call alone (execute_*), the statement
   alone (its text run and fetched), raw DuckDB; and once, what opening the connection costs (open_locked:
   configuration, views, the summary read into memory, lock).

    python -m bench.pre16_small --runs 30 [--breakdown] [--data DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.http_throughput import DASHBOARD, SMALL
from bench.worker_cpu import _tables, alternated, raw_connection, warm_answers
from market.demo import FLIGHTS_POLICY
from market.settings import Settings
from sandbox import dp, engine, pool, service
from sandbox.engine import EngineLimits, TableStatistics, open_locked
from sandbox.pool import Job, WorkerPool

FLAGS: dict[str, dict[str, Any]] = {
    "single": {"single": True},
    "folded": {"folded": True},
    "staged": {},
    "two-level": {"two_level": True},
}


def _without_cube(tables: dict[str, service.TableFile]) -> dict[str, service.TableFile]:
    """The tables as main (pre16) reads them: the summary's description without `cube`, so its queries take the
    summary path (branch cube13). The summary file is this tree's, with the cube's columns beside pre16's: the
    lookup reads only its own columns of the in-memory table."""
    found = {}
    for name, t in tables.items():
        described = {k: v for k, v in t.statistics.get("summary", {}).items() if k != "cube"}
        found[name] = replace(t, statistics={**t.statistics, "summary": described})
    return found


def _queries() -> dict[str, str]:
    return dict(SMALL) | {f"dashboard{i}": sql for i, sql in enumerate(DASHBOARD[len(SMALL) :], start=1)}


def _job(plan: Any, tables: dict[str, service.TableFile], limits: EngineLimits, chosen: str) -> Job:
    rows, _ = service.measure_scan(plan, tables)
    base = Job(
        tables=service.files_of(tables),
        plan=plan,
        max_rows=10_000,
        seeds=service._seeds(tables),
        statistics_free=service.statistics_free(tables),
        threads=service.threads_for(rows, limits),
    )
    if chosen == "summary":
        return replace(base, summary=service.summary_for(plan, tables) or "")
    if chosen == "cube":
        return replace(base, cube=service.cube_for(plan, tables) or "")
    return replace(base, **FLAGS[chosen])


def _mean_ms(run: Callable[[], Any], runs: int) -> float:
    """Mean CPU ms of `runs` calls (the process clock here ticks in steps of ~4 ms: a median would be a step)."""
    found = []
    for _ in range(runs):
        before = time.process_time()
        run()
        found.append((time.process_time() - before) * 1000)
    return statistics.mean(found)


def breakdown(tables: dict[str, service.TableFile], limits: EngineLimits, runs: int) -> None:
    """Where a warm worker's CPU goes for each query, in this process (section 2 of the docstring)."""
    raw = raw_connection(tables, 1)
    cancel = threading.Event()  # the pool's cancel flag: set by the worker at each job's end, cleared before the next
    watcher = pool._Watcher(cancel)

    def run_job(job: Job, warm: Any, stats: dict[tuple[str, ...], Any]) -> None:
        cancel.clear()
        pool._run_job(job, limits, warm, stats, watcher)

    print(f"{'query':12} {'side':14} {'job':>6} {'engine':>7} {'stmt':>6} {'raw':>6}  (CPU ms, means)")
    for label, sides in (("main", _without_cube(tables)), ("this", tables)):
        files = {name: Path(path) for name, path in service.files_of(sides)}
        opened = _mean_ms(lambda files=files: open_locked(files, replace(limits, threads=1), True).close(), 9)
        print(f"open_locked ({label}): {opened:.2f} ms CPU (once per worker and version: the connection stays warm)")
    for name, sql in _queries().items():
        for label, sides in (("main", _without_cube(tables)), ("this", tables)):
            plan = service.plan_query(sql, FLIGHTS_POLICY, service.row_counts(sides))
            chosen = service.strategy(plan, sides)
            job = _job(plan, sides, limits, chosen)
            whole, in_engine, alone = _one(job, chosen, run_job, runs)
            raw_ms = _mean_ms(lambda sql=sql: raw.execute(sql).fetchall(), runs)
            print(f"{name:12} {label + ':' + chosen:14} {whole:6.2f} {in_engine:7.2f} {alone:6.2f} {raw_ms:6.2f}")
    print(f"load {os.getloadavg()}", flush=True)


def _one(job: Job, chosen: str, run_job: Callable[..., None], runs: int) -> tuple[float, float, float]:
    """(the whole job, the engine call, the statement alone): mean CPU ms on a warm connection."""
    warm: OrderedDict[Any, Any] = OrderedDict()
    stats: dict[tuple[str, ...], Any] = {}
    run_job(job, warm, stats)
    db = next(iter(warm.values()))
    statistics_ = TableStatistics(db, stats, version="|".join(path for _, path in job.tables))
    plan = job.plan
    assert not isinstance(plan, dp.DPPlan)
    run_engine: Callable[[], Any] = {
        "summary": lambda: engine.execute_summary(db, plan, 10_000, statistics_, job.summary),
        "cube": lambda: engine.execute_cube(db, plan, 10_000, statistics_, job.cube),
        "two-level": lambda: engine.execute_two_level(db, plan, 10_000, statistics_),
        "single": lambda: engine.execute_single(db, plan, 10_000, statistics_),
        "folded": lambda: engine.execute_folded(db, plan, 10_000, statistics_),
        "staged": lambda: engine.execute_plan(db, plan, 10_000, statistics_),
    }[chosen]
    statement = run_engine().statements[0]
    found = (
        _mean_ms(lambda: run_job(job, warm, stats), runs),
        _mean_ms(run_engine, runs),
        _mean_ms(lambda: db.execute(statement).fetchall(), runs),
    )
    for connection in warm.values():
        connection.close()
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--breakdown", action="store_true")
    parser.add_argument("--data", default="", help="a data directory holding a demo built by this tree")
    args = parser.parse_args(argv)
    limits = EngineLimits(workers=1, threads=Settings().sandbox_threads)
    with tempfile.TemporaryDirectory() as tmp:
        tables = _tables(Path(args.data or tmp))
        assert tables["flights"].statistics.get("summary"), "a demo built before pre16: no summary"
        if args.breakdown:
            breakdown(tables, limits, args.runs)
            return
        before = _without_cube(tables)
        workers = WorkerPool(limits)
        raw = raw_connection(tables, 1)
        print(
            f"{'query':12} {'side':16} {'cpu ms':>7} {'wall ms':>8} {'raw cpu':>8} {'raw wall':>8} "
            f"{'cpu/raw':>7} {'wall/raw':>8} {'vs main':>7}"
        )
        for name, sql in _queries().items():
            plan = service.plan_query(sql, FLIGHTS_POLICY, service.row_counts(tables))
            theirs, ours = service.strategy(plan, before), service.strategy(plan, tables)
            jobs = {
                f"main:{theirs}": _job(plan, before, limits, theirs),
                f"this:{ours}": _job(plan, tables, limits, ours),
            }
            answers = warm_answers(workers, jobs, raw, sql)
            cpu, wall = alternated(workers, jobs, raw, sql, args.runs)
            raw_cpu, raw_wall = statistics.median(cpu["raw"]), statistics.median(wall["raw"])
            main_cpu = statistics.mean(cpu[next(iter(jobs))])
            for key in jobs:
                cpu_ms, wall_ms = statistics.mean(cpu[key]), statistics.median(wall[key])
                print(
                    f"{name:12} {key:16} {cpu_ms:7.1f} {wall_ms:8.1f} {raw_cpu:8.1f} {raw_wall:8.1f} "
                    f"{cpu_ms / raw_cpu:7.2f} {wall_ms / raw_wall:8.2f} {cpu_ms / main_cpu:7.2f}",
                    flush=True,
                )
            first, *others = answers.values()
            agree = "identical" if all(repr(a) == repr(first) for a in others) else "DIFFERENT"
            print(f"{name:12} answers: {agree}", flush=True)
        print(f"load {os.getloadavg()}", flush=True)
        workers.close()


if __name__ == "__main__":
    main()
