"""Timing oracles: do two queries that differ only in a hidden fact take measurably different times?

    python -m bench.timing_oracle --runs 40

Builds a flights-like product (500,000 rows in 5 row groups of 122,880, sorted by date as real extracts are,
about 100 destinations and ONE flight to 'LEX', the hidden fact) and times pairs of queries whose
answers are identical (the 'LEX' group is suppressed either way), alternating A and B:

- pruning: `count(*) WHERE dest = 'LEX'` (present) against `'LEY'` (absent, inside the min-max range);
- threshold: `dest IN ('LEX', 'D001', 'D002') GROUP BY dest` against `'LEY'` (the staged path's recheck);
- range: `count(*) WHERE month = 12 AND day > 28` (dates exist) against `day > 31` (none).

Red-team pairs (session 5) add `having`, `order-limit` (a suppressed group present or not under
HAVING and ORDER BY ... LIMIT), `empty-group`, `empty-global` (both answers empty) and `value` (a
hidden dimension of the one row). Red-team ways (`--ways` picks ways, `--pairs` pairs): `single` (the
worker's one statement, engine.execute_single, as on small products), `staged-data` and `single-data`
(the pair's A text on the file with the 'LEX' flight against the same text on a control file where
that flight goes to 'ZZZ': only the hidden fact differs).

The file is written as product versions are (statistics-free: products.storage.write_product_parquet).
Each pair runs three ways: `sandbox` (the full path through a worker, staged strategy as on large
products; wall time, so IPC noise included), `raw` (plain DuckDB, default optimizers: with filter
pushdown the scan still skips pages by the dictionary and the other columns where no row passes) and
`raw-sf` (plain DuckDB with engine.STATISTICS_FREE_DISABLED_OPTIMIZERS: the scans as the sandbox runs
them over a statistics-free version, without the noise of the worker round trip). Before branch
sbx-files the file had DuckDB's statistics and the third way was `raw-off` (engine.DISABLED_OPTIMIZERS).
For each it prints the medians and a two-sided
Mann–Whitney U p-value (normal approximation with tie correction). A small p-value (< 0.01) on the
sandbox rows means a buyer could tell the hidden fact from time alone; on a shared machine, read the
medians too. Not a test: timings belong here, not in the suite.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

from bench.stats import mann_whitney
from products.storage import write_product_parquet
from sandbox.engine import STATISTICS_FREE_DISABLED_OPTIMIZERS, EngineLimits
from sandbox.policy import ProtectionPolicy
from sandbox.pool import Job, WorkerPool
from sandbox.service import TableFile, plan_query

POLICY = ProtectionPolicy.model_validate(
    {
        "min_group_size": 10,
        "tables": {
            "flights": {
                "privacy_unit": "tailnum",
                "dimensions": ["month", "day", "dest"],
                "measures": ["arr_delay"],
                "bounds": {"arr_delay": {"min": -100, "max": 1000}},
                "hidden": [],
            }
        },
    }
)

PAIRS: dict[str, tuple[str, str]] = {
    "pruning": (
        "SELECT count(*) AS n FROM flights WHERE dest = 'LEX'",
        "SELECT count(*) AS n FROM flights WHERE dest = 'LEY'",
    ),
    "threshold": (
        "SELECT dest, count(*) AS n FROM flights WHERE dest IN ('LEX', 'D001', 'D002') GROUP BY dest",
        "SELECT dest, count(*) AS n FROM flights WHERE dest IN ('LEY', 'D001', 'D002') GROUP BY dest",
    ),
    "range": (
        "SELECT count(*) AS n FROM flights WHERE month = 12 AND day > 28",
        "SELECT count(*) AS n FROM flights WHERE month = 12 AND day > 31",
    ),
    # Red team (session 5): pairs aimed at the single statement (execute_single) and at stage 2.
    "having": (
        "SELECT dest, count(*) AS n FROM flights WHERE dest IN ('LEX', 'D001', 'D002') GROUP BY dest "
        "HAVING sum(arr_delay) > -1000000",
        "SELECT dest, count(*) AS n FROM flights WHERE dest IN ('LEY', 'D001', 'D002') GROUP BY dest "
        "HAVING sum(arr_delay) > -1000000",
    ),
    "order-limit": (
        "SELECT dest, count(*) AS n FROM flights WHERE dest IN ('LEX', 'D001', 'D002') GROUP BY dest "
        "ORDER BY n, dest LIMIT 1",
        "SELECT dest, count(*) AS n FROM flights WHERE dest IN ('LEY', 'D001', 'D002') GROUP BY dest "
        "ORDER BY n, dest LIMIT 1",
    ),
    # Both answers are empty (the one group is suppressed, or there is none): execute_single then runs a
    # second statement for the audit counts, in both cases.
    "empty-group": (
        "SELECT dest, count(*) AS n FROM flights WHERE dest = 'LEX' GROUP BY dest",
        "SELECT dest, count(*) AS n FROM flights WHERE dest = 'LEY' GROUP BY dest",
    ),
    # A hidden VALUE, not only presence: the LEX flight is on day 17 (passes `day > 10`, not `day > 20`);
    # both answers are empty. Halving the constant's interval reads the value.
    "value": (
        "SELECT dest, count(*) AS n FROM flights WHERE dest = 'LEX' AND day > 10 GROUP BY dest",
        "SELECT dest, count(*) AS n FROM flights WHERE dest = 'LEX' AND day > 20 GROUP BY dest",
    ),
    "empty-global": (
        "SELECT count(*) AS n, sum(arr_delay) AS s FROM flights WHERE dest = 'LEX'",
        "SELECT count(*) AS n, sum(arr_delay) AS s FROM flights WHERE dest = 'LEY'",
    ),
}


def build(directory: Path, rows: int, hidden: str = "LEX") -> Path:
    """The product file, written as versions are (products.storage.write_product_parquet: statistics-free);
    `hidden` is the one flight's destination ('ZZZ' for the control file: the same rows but that value)."""
    path = directory / f"flights-{hidden}.parquet"
    with duckdb.connect() as connection:
        write_product_parquet(
            connection,
            f"""SELECT (i % 12) + 1 AS month, (i % 31) + 1 AS day,
                CASE WHEN i = {rows // 2} THEN '{hidden}'
                     ELSE 'D' || lpad(((i * 7919) % 100)::VARCHAR, 3, '0') END AS dest,
                'N' || ((i * 13) % 4000)::VARCHAR AS tailnum, ((i * 31) % 300) - 50 AS arr_delay
                FROM range({rows}) t(i) ORDER BY month, day""",
            path,
        )
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--pairs", nargs="*", default=None, help="only these pairs (default: all)")
    parser.add_argument("--ways", nargs="*", default=None, help="only these ways (default: all)")
    args = parser.parse_args(argv)
    limits = EngineLimits(threads=2, timeout_seconds=60, workers=1)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as directory:
        path = build(Path(directory), args.rows)
        control = build(Path(directory), args.rows, hidden="ZZZ")
        table = TableFile(name="flights", path=path, row_count=args.rows, column_bytes={})
        pool = WorkerPool(limits)
        raw = duckdb.connect(config={"threads": limits.threads})
        locked = duckdb.connect(
            config={"threads": limits.threads, "disabled_optimizers": STATISTICS_FREE_DISABLED_OPTIMIZERS}
        )
        for connection in (raw, locked):
            connection.execute(f"CREATE VIEW flights AS SELECT * FROM read_parquet('{path}')")
        jobs = tuple(sorted([("flights", str(table.path.resolve()))]))
        control_jobs = (("flights", str(control.resolve())),)

        def sandbox(sql: str) -> Callable[[], object]:
            plan = plan_query(sql, POLICY)
            return lambda: pool.run(Job(tables=jobs, plan=plan, max_rows=1000, single=False, statistics_free=True))

        def single(sql: str) -> Callable[[], object]:
            plan = plan_query(sql, POLICY)
            return lambda: pool.run(Job(tables=jobs, plan=plan, max_rows=1000, single=True, statistics_free=True))

        def data(single: bool) -> Callable[[str, bool], Callable[[], object]]:
            """The SAME text (pair's A) on the file with the 'LEX' flight (A) and on the control file
            without it (B): any difference is the hidden fact's alone, not the texts'."""

            def make(sql: str, fact: bool) -> Callable[[], object]:
                plan = plan_query(sql, POLICY)
                files = jobs if fact else control_jobs
                return lambda: pool.run(
                    Job(tables=files, plan=plan, max_rows=1000, single=single, statistics_free=True)
                )

            return make

        def plain(sql: str) -> Callable[[], object]:
            return lambda: raw.execute(sql).fetchall()

        def optimizers_off(sql: str) -> Callable[[], object]:
            return lambda: locked.execute(sql).fetchall()

        print(f"{'pair':10} {'way':8} {'A (hidden fact) ms':>19} {'B ms':>8} {'p-value':>9}")
        for name, (a_sql, b_sql) in PAIRS.items():
            if args.pairs and name not in args.pairs:
                continue
            ways: list[tuple[str, Callable[..., Callable[[], object]]]] = [
                ("sandbox", sandbox),
                ("raw", plain),
                ("raw-sf", optimizers_off),
                ("single", single),
                ("staged-data", data(False)),
                ("single-data", data(True)),
            ]
            for way, make in [w for w in ways if not args.ways or w[0] in args.ways]:
                if way.endswith("-data"):
                    runs = {"A": make(a_sql, True), "B": make(a_sql, False)}
                else:
                    runs = {"A": make(a_sql), "B": make(b_sql)}
                times: dict[str, list[float]] = {"A": [], "B": []}
                for side in ("A", "B"):  # warm-up
                    runs[side]()
                for i in range(args.runs):
                    for side in ("A", "B") if i % 2 == 0 else ("B", "A"):
                        started = time.perf_counter()
                        runs[side]()
                        times[side].append((time.perf_counter() - started) * 1000)
                p = mann_whitney(times["A"], times["B"]).p
                print(
                    f"{name:10} {way:8} {statistics.median(times['A']):19.2f} "
                    f"{statistics.median(times['B']):8.2f} {p:9.4f}",
                    flush=True,
                )
        pool.close()
        raw.close()
        locked.close()
    load = " ".join(f"{v:.2f}" for v in (*load_before, *os.getloadavg()))
    print(f"load average (1, 5, 15 min) before and after: {load}; cores: {os.cpu_count()}")


if __name__ == "__main__":
    main()
