"""The small demo queries in the sandbox worker, as main chooses their strategy and as this tree does,
against raw DuckDB, alternated in one run (branch perf-small, issue 12).

Builds the demo (SQLite, a temporary directory), then per query runs in one worker pool, in an order
that rotates every round: the job as main chooses it (sandbox.service.strategy over the version's
statistics without `unit_counts`, the build statistic this branch adds: the folded statement where the
groups are large), the job as this tree chooses it (with them), each with the DuckDB threads the service
gives it (threads_for), and raw DuckDB in this process on the same Parquet file (one thread, as the
worker's). Reports per query the mean of the worker's CPU (from /proc, clock ticks of 10 ms), the median
wall time around `WorkerPool.run`, raw DuckDB's CPU and wall time, the ratios, the Mann-Whitney p of the
worker CPU (this tree against main's choice), whether the answers agree, and the load average.

    python -m bench.small_query --runs 30 [--all] [--queries origin,carrier_month]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path

from bench.http_throughput import DASHBOARD, SMALL
from bench.stats import mann_whitney
from bench.worker_cpu import _tables, alternated, raw_connection, warm_answers
from market.demo import FLIGHTS_POLICY
from market.settings import Settings
from sandbox import service
from sandbox.engine import EngineLimits
from sandbox.pool import Job, WorkerPool

FLAGS = {"single": {"single": True}, "folded": {"folded": True}, "staged": {}, "two-level": {"two_level": True}}


def _without_unit_counts(tables: dict[str, service.TableFile]) -> dict[str, service.TableFile]:
    """The tables as main reads them: no `unit_counts` (products.storage.table_statistics before this branch)."""
    return {
        name: replace(t, statistics={k: v for k, v in t.statistics.items() if k != "unit_counts"})
        for name, t in tables.items()
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--all", action="store_true", help="the whole dashboard mix, not only the three small queries")
    parser.add_argument("--queries", default="", help="comma-separated query names (default: all)")
    args = parser.parse_args(argv)
    limits = EngineLimits(workers=1, threads=Settings().sandbox_threads)
    queries = dict(SMALL)
    if args.all:
        queries |= {f"dashboard{i}": sql for i, sql in enumerate(DASHBOARD[len(SMALL) :], start=1)}
    if args.queries:
        queries = {n: q for n, q in queries.items() if n in args.queries.split(",")}
    with tempfile.TemporaryDirectory() as tmp:
        tables = _tables(Path(tmp))
        before = _without_unit_counts(tables)
        pool = WorkerPool(limits)
        raw = raw_connection(tables, 1)
        print(
            f"{'query':16} {'side':18} {'cpu ms':>7} {'wall ms':>8} {'raw cpu':>8} {'raw wall':>8} "
            f"{'cpu/raw':>7} {'wall/raw':>8} {'vs main':>7} {'p':>7}"
        )
        for name, sql in queries.items():
            plan = service.plan_query(sql, FLIGHTS_POLICY, service.row_counts(tables))
            rows, _ = service.measure_scan(plan, tables)
            base = Job(
                tables=service.files_of(tables),
                plan=plan,
                max_rows=10_000,
                seeds=service._seeds(tables),
                statistics_free=service.statistics_free(tables),
                threads=service.threads_for(rows, limits),
            )
            theirs, ours = service.strategy(plan, before), service.strategy(plan, tables)
            jobs = {f"main:{theirs}": replace(base, **FLAGS[theirs]), f"this:{ours}": replace(base, **FLAGS[ours])}  # type: ignore[arg-type]
            answers = warm_answers(pool, jobs, raw, sql)
            keys = [*jobs, "raw"]
            cpu, wall = alternated(pool, jobs, raw, sql, args.runs)
            raw_cpu, raw_wall = statistics.median(cpu["raw"]), statistics.median(wall["raw"])
            main_key = keys[0]
            for key in jobs:
                cpu_ms, wall_ms = statistics.mean(cpu[key]), statistics.median(wall[key])
                versus = cpu_ms / statistics.mean(cpu[main_key])
                p = mann_whitney(cpu[key], cpu[main_key]).p if key != main_key else float("nan")
                print(
                    f"{name:16} {key:18} {cpu_ms:7.1f} {wall_ms:8.1f} {raw_cpu:8.1f} {raw_wall:8.1f} "
                    f"{cpu_ms / raw_cpu:7.2f} {wall_ms / raw_wall:8.2f} {versus:7.2f} {p:7.4f}",
                    flush=True,
                )
            first, *others = answers.values()
            agree = "identical" if all(repr(a) == repr(first) for a in others) else "DIFFERENT"
            print(f"{name:16} answers: {agree}", flush=True)
        print(f"load {os.getloadavg()}", flush=True)
        pool.close()


if __name__ == "__main__":
    main()
