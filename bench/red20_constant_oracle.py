"""red20: does the cube's statement over its set's rows as a constant (branch lit20) show hidden rows in its time?

    python -m bench.red20_constant_oracle --runs 400
    python -m bench.red20_constant_oracle --runs 400 --control   # A is of B's kind: an A/A control
    python -m bench.red20_constant_oracle --runs 200 --table     # the same pairs with every set read from the table
    python -m bench.red20_constant_oracle --runs 200 --step      # one statement: constant against table
    python -m bench.red20_constant_oracle --memory 255           # a worker's RSS over 255 distinct statements

lit20 prepares the cube's statement over `unnest(CAST('<the set's rows>' AS STRUCT(...)[]))`, and DuckDB keeps its
plan, made once from a constant whose values it could read (statistics_propagation is off on the summary connection
so that it does not). Pairs, on the demo's flights (bench.worker_cpu._tables), with identical answers (asserted):

- a value with hidden rows only (one flight to LEX; hour 1) against one absent from the data but inside the set's
  range of values ('MMM', hour 3);
- a value outside the set's range (dest 'ZZZ' and 'AAA' beyond XNA and before ABQ; hour 99) against one inside it,
  absent: what the constant's value statistics would fold if they were read;

timed as a worker runs them (engine.execute_cube on the version's summary connection, groups from
service.cube_groups), A and B alternated in one process (CPU, one DuckDB thread); prints medians, A-B and a two-sided
Mann-Whitney p. `--control` replaces A by a value of B's kind ('QQQ', hour 2). `--table` runs the same on a summary
connection whose constants are all refused (CONSTANT_BYTES 0: lit20's fallback, main before lit20). `--step` times one
query's statement on a connection with the constant against one without: the step a buyer sees when a set is or is not
read as a constant (docs/sandbox.md, "Red team red20": which turns on the set's text length). `--memory N` runs N
distinct cube statements over the demo's largest set (day by dest, 3,056 rows) through a sandbox worker
(service.execute, one WorkerPool), each reading another subset of the set's columns (255 subsets of eight
aggregates, then again), and prints the worker's RSS as it goes (lit20 remembered every constant built: unbounded).
Not a test.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench.cube13_oracle import alternated_cpu, alternated_medians, pair_plans
from bench.stats import mann_whitney
from bench.worker_cpu import _tables
from market.demo import FLIGHTS_POLICY
from sandbox import engine, service
from sandbox.engine import EngineLimits, Summaries, TableStatistics, execute_cube, open_locked, open_summary

AGGREGATES = "count(*) AS f, avg(arr_delay) AS ad, sum(distance) AS sd"
PAIRS: dict[str, tuple[str, str, str, str]] = {
    # label: (template, A, B, the control's A (B's kind))
    "hidden: month by dest": (
        f"SELECT month, {AGGREGATES} FROM flights WHERE dest = '{{v}}' GROUP BY month",
        "LEX",
        "MMM",
        "QQQ",
    ),
    "hidden: no keys, dest": (f"SELECT {AGGREGATES} FROM flights WHERE dest = '{{v}}'", "LEX", "MMM", "QQQ"),
    "hidden: origin by dest": (
        f"SELECT origin, {AGGREGATES} FROM flights WHERE dest = '{{v}}' GROUP BY origin",
        "LEX",
        "MMM",
        "QQQ",
    ),
    "hidden: dest by hour": (
        f"SELECT dest, {AGGREGATES} FROM flights WHERE hour = {{v}} GROUP BY dest",
        "1",
        "3",
        "2",
    ),
    "range: month by dest > max": (
        f"SELECT month, {AGGREGATES} FROM flights WHERE dest = '{{v}}' GROUP BY month",
        "ZZZ",
        "MMM",
        "QQQ",
    ),
    "range: month by dest < min": (
        f"SELECT month, {AGGREGATES} FROM flights WHERE dest = '{{v}}' GROUP BY month",
        "AAA",
        "MMM",
        "QQQ",
    ),
    "range: dest by hour > max": (
        f"SELECT dest, {AGGREGATES} FROM flights WHERE hour = {{v}} GROUP BY dest",
        "99",
        "3",
        "2",
    ),
}


SUBSET_AGGREGATES = [
    f"{kind}({m})" for kind in ("sum", "count") for m in ("dep_delay", "arr_delay", "air_time", "distance")
]


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def memory(count: int) -> None:
    """`count` distinct statements over one set through a worker; the worker's RSS every 50."""
    from sandbox.pool import WorkerPool

    with tempfile.TemporaryDirectory() as tmp:
        tables = _tables(Path(tmp))
        pool = WorkerPool(EngineLimits(workers=1, threads=1))
        failures = 0
        try:
            for i in range(count):
                subset = i % (2 ** len(SUBSET_AGGREGATES) - 1) + 1
                chosen = [f"{name} AS a{bit}" for bit, name in enumerate(SUBSET_AGGREGATES) if subset >> bit & 1]
                sql = f"SELECT day, count(*) AS f, {', '.join(chosen)} FROM flights WHERE dest = 'LEX' GROUP BY day"
                plan = service.plan_query(sql, FLIGHTS_POLICY, service.row_counts(tables))
                assert service.strategy(plan, tables) == "cube", sql
                try:
                    service.execute(plan, tables, pool.limits, 10_000, pool)
                except Exception as error:  # counted and shown: what a buyer would get
                    failures += 1
                    print(f"{i}: {type(error).__name__}: {str(error)[:120]}", flush=True)
                if i % 50 == 0 or i == count - 1:
                    pid = pool.worker_pids()[0]
                    print(
                        f"{i + 1:5} statements  worker {pid} RSS {_rss_mb(pid):7.1f} MB  failures {failures}",
                        flush=True,
                    )
        finally:
            pool.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--control", action="store_true", help="A is of B's kind: an A/A control")
    parser.add_argument("--table", action="store_true", help="every set read from the table (lit20's fallback)")
    parser.add_argument("--step", action="store_true", help="one statement: constant against table")
    parser.add_argument("--only", default="", help="run only pairs whose label contains this")
    parser.add_argument("--memory", type=int, default=0, help="a worker's RSS over this many distinct statements")
    args = parser.parse_args(argv)
    if args.memory:
        memory(args.memory)
        return
    print(f"sandbox from {service.__file__}; load before {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tables = _tables(Path(tmp))
        files = {name: Path(path) for name, path in service.files_of(tables)}
        free = service.statistics_free(tables)
        connection = open_locked(files, EngineLimits(threads=1), free)
        lean = open_summary(files, EngineLimits(threads=1), free)
        table_lean = open_summary(files, EngineLimits(threads=1), free)
        stats = TableStatistics(connection, {}, "v")
        saved = engine.CONSTANT_BYTES

        def run_on(summaries: Summaries, plan: service.Plan) -> Any:
            if summaries is table_lean:
                engine.CONSTANT_BYTES = 0  # the constants this connection builds are all refused (remembered so)
            try:
                return execute_cube(
                    connection,
                    plan,
                    10_000,
                    stats,
                    service.cube_for(plan, tables) or "",
                    summaries,
                    groups=service.cube_groups(plan, tables),
                )
            finally:
                engine.CONSTANT_BYTES = saved

        for label, (template, hidden, absent, control) in PAIRS.items():
            if args.only not in label:
                continue
            first = control if args.control else hidden
            plans = pair_plans(tables, template, first, absent, label)
            if args.step:
                steps = {"A": (lean, plans["B"]), "B": (table_lean, plans["B"])}
                found = alternated_cpu(lambda pair: run_on(*pair), steps, args.runs, warmups=5)
                a, b = statistics.median(found["A"]), statistics.median(found["B"])
                p = mann_whitney(found["A"], found["B"]).p
                print(
                    f"{label:28} step: constant {a:.4f} ms  table {b:.4f} ms  A-B {a - b:+.4f} ms  "
                    f"A/B {a / b:.3f}  p {p:.4f}  (constants {lean.constants}/{table_lean.constants})",
                    flush=True,
                )
                continue
            summaries = table_lean if args.table else lean
            answers = {side: run_on(summaries, plan) for side, plan in plans.items()}
            a_run, b_run = answers["A"], answers["B"]
            assert repr(a_run.rows) == repr(b_run.rows), (label, a_run.rows, b_run.rows)
            a, b, p = alternated_medians(functools.partial(run_on, summaries), plans, args.runs, warmups=5)
            form = "table" if args.table else f"constant ({summaries.constants}/{summaries.prepared} prepared)"
            print(
                f"{label:28} {form:26} A ({first}) {a:.4f} ms  B ({absent}) {b:.4f} ms  A-B {a - b:+.4f} ms  "
                f"A/B {a / b:.3f}  p {p:.4f}  (groups {a_run.groups}/{b_run.groups}, "
                f"suppressed {a_run.suppressed_groups}/{b_run.suppressed_groups})",
                flush=True,
            )
        lean.close()
        table_lean.close()
        connection.close()
    print(f"load after {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
