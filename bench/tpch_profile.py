"""Where the sandbox's time goes on TPC-H, statement by statement (branch perf-tpch).

    MARKET_DATA_DIR=/tmp/perf-tpch-data python -m bench.tpch_profile --runs 5 [--strategy bits]

In one process, on bench.sandbox_overhead's product files and queries: a connection opened as a worker
opens it (engine.open_locked, the version's build-time statistics seeded as sandbox.service does), and
a raw DuckDB connection (bench.sandbox_overhead.raw_connection). Each query runs through the engine
function its strategy picks (sandbox.service.strategy, or `--strategy`), every statement timed in CPU
(time.process_time: DuckDB's threads included) as it executes and fetches; raw is the buyer's SQL as
written. Prints per query the median CPU of each statement, their sum, and the raw CPU.
`--explain` prints DuckDB's EXPLAIN ANALYZE of each statement of one run instead.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any

import duckdb

from bench.sandbox_overhead import POLICY, QUERIES, build_product, raw_connection
from sandbox.engine import (
    EngineLimits,
    TableStatistics,
    execute_bits,
    execute_folded,
    execute_plan,
    execute_single,
    execute_two_level,
    open_locked,
)
from sandbox.service import _seeds, bits_for, plan_query, row_counts, statistics_free, strategy


class _Fetched:
    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self.rows = rows

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self.rows

    def fetchone(self) -> tuple[Any, ...] | None:
        return self.rows[0] if self.rows else None

    def fetchmany(self, size: int) -> list[tuple[Any, ...]]:
        return self.rows[:size]


class Timed:
    """A connection that runs each statement to its last row, timing it in CPU."""

    def __init__(self, connection: duckdb.DuckDBPyConnection, explain: bool = False) -> None:
        self.connection = connection
        self.explain = explain
        self.timings: list[tuple[str, float]] = []

    def execute(self, statement: str) -> _Fetched:
        started = time.process_time()
        rows = self.connection.execute(statement).fetchall() if _returns(statement) else []
        if not _returns(statement):
            self.connection.execute(statement)
        self.timings.append((statement, (time.process_time() - started) * 1000))
        if self.explain and statement.lstrip().upper().startswith(("WITH", "SELECT", "CREATE")):
            target = statement if not statement.startswith("CREATE") else statement.split(" AS ", 1)[1]
            plan = self.connection.execute(f"EXPLAIN ANALYZE {target}").fetchall()
            print(plan[0][1])
        return _Fetched(rows)


def _returns(statement: str) -> bool:
    return statement.lstrip().upper().startswith(("WITH", "SELECT"))


def _label(statement: str) -> str:
    text = statement.lstrip()
    for prefix, name in (
        ('CREATE OR REPLACE TEMP TABLE "__groups"', "stage 1 (bound)"),
        ('CREATE OR REPLACE TEMP TABLE "__undecided"', "list"),
        ('CREATE OR REPLACE TEMP TABLE "__recheck"', "recheck"),
        ("UPDATE", "update"),
        ("BEGIN", "begin"),
        ("ROLLBACK", "rollback"),
    ):
        if text.startswith(prefix):
            return name
    if "__s" in text and "__n" in text and text.startswith("WITH"):
        return "one statement"
    return text.split(" ", 1)[0].lower() + "…"


RUNNERS: dict[str, Callable[..., Any]] = {
    "staged": execute_plan,
    "single": execute_single,
    "two-level": execute_two_level,
    "folded": execute_folded,
    "bits": execute_bits,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--strategy", choices=sorted(RUNNERS), help="force one path for every query")
    parser.add_argument("--query", action="append", help="only these queries")
    parser.add_argument("--explain", action="store_true")
    parser.add_argument(
        "--versus",
        action="store_true",
        help="per query, the path chosen without bitmaps against execute_bits, alternated",
    )
    args = parser.parse_args(argv)
    tables = build_product(args.scale)
    limits = EngineLimits(memory_limit="3GB", threads=2, timeout_seconds=600, address_space_mb=16384, workers=1)
    files = {name: t.path for name, t in tables.items()}
    db = open_locked(files, limits, statistics_free(tables))
    version = "|".join(str(t.path.resolve()) for _, t in sorted(tables.items()))
    cache: dict[tuple[str, ...], Any] = {}
    for key, value in _seeds(tables):
        cache[(version, *key)] = value
    stats = TableStatistics(db, cache, version=version)
    raw = raw_connection(tables, limits)
    names = args.query or list(QUERIES)
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if args.versus:
        _versus(names, tables, db, stats, raw, args.runs)
        names = []
    for name in names:
        sql = QUERIES[name]
        plan = plan_query(sql, POLICY, row_counts(tables))
        chosen = args.strategy or strategy(plan, tables)
        runner = RUNNERS[chosen]
        per: dict[str, list[float]] = {}
        totals: list[float] = []
        raws: list[float] = []
        for run in range(args.runs + 1):
            timed = Timed(db, explain=args.explain and run == 1)
            started = time.process_time()
            if chosen == "bits":
                runner(timed, plan, 1_000_000, stats, bits_for(plan, tables))
            else:
                runner(timed, plan, 1_000_000, stats)
            total = (time.process_time() - started) * 1000
            begun = time.process_time()
            raw.execute(sql).fetchall()
            raw_ms = (time.process_time() - begun) * 1000
            if run:  # the first run warms the caches
                totals.append(total)
                raws.append(raw_ms)
                for i, (statement, ms) in enumerate(timed.timings):
                    per.setdefault(f"{i} {_label(statement)}", []).append(ms)
        total, raw_ms = statistics.median(totals), statistics.median(raws)
        print(f"{name} ({chosen}): total {total:.1f} ms CPU, raw {raw_ms:.1f}, ratio {total / raw_ms:.2f}")
        for label, values in per.items():
            print(f"    {label:24} {statistics.median(values):8.1f}")
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


def _versus(names: list[str], tables: Any, db: Any, stats: Any, raw: Any, runs: int) -> None:
    """Per query: raw, the path chosen without bitmaps, and execute_bits, rotated, CPU medians."""
    plain = {n: replace(t, statistics={**t.statistics, "spans": {}}) for n, t in tables.items()}
    print(f"{'query':24} {'path':>10} {'raw':>8} {'path ms':>8} {'bits ms':>8} {'bits/path':>9} {'bits/raw':>8}")
    for name in names:
        sql = QUERIES[name]
        plan = plan_query(sql, POLICY, row_counts(tables))
        other = strategy(plan, plain)
        spans = bits_for(plan, tables)
        if spans is None:
            print(f"{name:24} {other:>10} (bitmaps do not fit)")
            continue
        modes: dict[str, Callable[[], Any]] = {
            "raw": partial(lambda text: raw.execute(text).fetchall(), sql),
            "path": partial(RUNNERS[other], db, plan, 1_000_000, stats),
            "bits": partial(execute_bits, db, plan, 1_000_000, stats, spans),
        }
        times: dict[str, list[float]] = {m: [] for m in modes}
        order = list(modes)
        for run in range(runs + 1):
            for mode in order[run % 3 :] + order[: run % 3]:
                started = time.process_time()
                modes[mode]()
                if run:
                    times[mode].append((time.process_time() - started) * 1000)
        m = {k: statistics.median(v) for k, v in times.items()}
        print(
            f"{name:24} {other:>10} {m['raw']:8.1f} {m['path']:8.1f} {m['bits']:8.1f} "
            f"{m['bits'] / m['path']:9.2f} {m['bits'] / m['raw']:8.2f}"
        )


if __name__ == "__main__":
    main()
