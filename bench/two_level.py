"""The two-level exact statement against main's choice of strategy, side by side in one run (sbx-twolevel).

Builds the demo (or, with --tpch, TPC-H scale 1 from bench.sandbox_overhead's cache), then per query
runs, in an order that rotates every round, in the same worker pool: the job as main chooses it
(sandbox.service.strategy without the two-level statement: the exact statement, folded or staged),
the two-level statement (engine.execute_two_level), the branch's choice when it is neither, and raw
DuckDB in this process on the same Parquet file with the sandbox's threads. Reports per query the
mean of the worker's CPU (from /proc, in clock ticks of 10 ms: a median would be a multiple of 10),
the median wall time around `WorkerPool.run`, raw DuckDB's, the ratios, and the Mann-Whitney p of
each path against main's (worker CPU), with the load average before and after.

    python -m bench.two_level --runs 30
    python -m bench.two_level --runs 7 --tpch
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.http_throughput import SMALL
from bench.stats import mann_whitney
from bench.worker_cpu import _tables, alternated, raw_connection, warm_answers
from market.demo import FLIGHTS_POLICY
from market.settings import Settings
from sandbox import service
from sandbox.engine import EngineLimits
from sandbox.pool import Job, WorkerPool

FLAGS = {"single": {"single": True}, "folded": {"folded": True}, "staged": {}, "two-level": {"two_level": True}}


def _agreement(answers: list[list[tuple[Any, ...]]]) -> str:
    """ "identical", or the largest relative difference of two answers' numbers (DOUBLE sums of
    fractional values depend on the order DuckDB adds them in, on every path), or "DIFFERENT"."""
    first = answers[0]
    if all(repr(other) == repr(first) for other in answers[1:]):
        return "identical"
    worst = 0.0
    for other in answers[1:]:
        if len(other) != len(first):
            return "DIFFERENT"
        for row, again in zip(first, other, strict=True):
            for a, b in zip(row, again, strict=True):
                if isinstance(a, float) and isinstance(b, float):
                    worst = max(worst, abs(a - b) / max(abs(a), abs(b), 1e-300))
                elif a != b:
                    return "DIFFERENT"
    return f"equal but for rounding (largest relative difference {worst:.1e})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--tpch", action="store_true", help="TPC-H scale 1, one-table queries")
    parser.add_argument("--queries", default="", help="comma-separated query names (default: all)")
    args = parser.parse_args(argv)
    limits = EngineLimits(workers=1, threads=Settings().sandbox_threads)
    policy = FLIGHTS_POLICY
    queries = dict(SMALL)
    with tempfile.TemporaryDirectory() as tmp:
        if args.tpch:
            from bench import sandbox_overhead

            tables = sandbox_overhead.build_product(1.0)
            policy = sandbox_overhead.POLICY
            queries = {n: q for n, q in sandbox_overhead.QUERIES.items() if not n.startswith("join")}
            limits = EngineLimits(memory_limit="3GB", threads=2, timeout_seconds=600, address_space_mb=16384, workers=1)
        else:
            tables = _tables(Path(tmp))
        if args.queries:
            queries = {n: q for n, q in queries.items() if n in args.queries.split(",")}
        pool = WorkerPool(limits)
        raw = raw_connection(tables, limits.threads)
        print(
            f"{'query':22} {'path':9} {'cpu ms':>7} {'wall ms':>8} {'raw ms':>7} {'wall/raw':>8} "
            f"{'cpu vs main':>11} {'p':>8}"
        )
        for name, sql in queries.items():
            plan = service.plan_query(sql, policy, service.row_counts(tables))
            base = Job(
                tables=service._files(tables),
                plan=plan,
                max_rows=1_000_000,
                seeds=service._seeds(tables),
                statistics_free=service.statistics_free(tables),
            )
            ours = service.strategy(plan, tables)
            theirs = service.strategy(replace(plan, partials=None), tables)  # main: no two-level statement
            jobs = {f"main:{theirs}": replace(base, **FLAGS[theirs]), "two-level": replace(base, two_level=True)}  # type: ignore[arg-type]
            if ours not in (theirs, "two-level"):
                jobs[f"ours:{ours}"] = replace(base, **FLAGS[ours])  # type: ignore[arg-type]
            answers = warm_answers(pool, jobs, raw, sql)
            keys = [*jobs, "raw"]
            cpu, wall = alternated(pool, jobs, raw, sql, args.runs)
            raw_ms = statistics.median(wall["raw"])
            main_key = f"main:{theirs}"
            for key in keys:
                cpu_ms, wall_ms = statistics.mean(cpu[key]), statistics.median(wall[key])
                versus = cpu_ms / statistics.mean(cpu[main_key]) if key != "raw" else float("nan")
                p = mann_whitney(cpu[key], cpu[main_key]).p if key not in ("raw", main_key) else float("nan")
                print(
                    f"{name:22} {key:9} {cpu_ms:7.1f} {wall_ms:8.1f} {raw_ms:7.1f} {wall_ms / raw_ms:8.2f} "
                    f"{versus:11.2f} {p:8.4f}",
                    flush=True,
                )
            print(
                f"{name:22} chosen: {ours} (main: {theirs}); answers: {_agreement(list(answers.values()))}", flush=True
            )
        print(f"load {os.getloadavg()}", flush=True)
        pool.close()


if __name__ == "__main__":
    main()
