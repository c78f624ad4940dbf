"""Branch every19: the cube's every-group statement against its windowed one, by the number of groups of the set.

    python -m bench.every19_groups [--runs 200] [--groups 100,300,1000,3000]

For each N, a product of one table (the property tests' columns: unit u, dimensions g, h, d, measures m, n) whose
dimension g takes N values over 10 N rows, built as a version is (products.storage.table_statistics: the summary and
its cube), then `SELECT g, count(*), avg(n) FROM t WHERE h = 1 GROUP BY g` (the cube over the set {g, h};
`--query "five pass"` adds `AND g < 'g00005'`, so that five groups pass: the every-group form's worst case) run by
engine.execute_cube on the version's summary connection, one DuckDB thread, in this process: every group returned
and filtered in Python (`groups=1`, forcing the form whatever N) against the windowed statement (`groups=None`),
alternated, after warm-ups. Prints each side's median CPU, their ratio and the answers' agreement, and the load
before and after: where the every-group form stops paying is where engine.EVERY_GROUP_LIMIT belongs. Not a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench.cube13_oracle import alternated_cpu
from sandbox.engine import execute_cube
from sandbox.service import cube_for, cube_groups, plan_query, row_counts, strategy
from tests.sandbox.test_pre16_summary_property import _policy
from tests.sandbox.test_rt15_cube_connection import _tables
from tests.support.cube_connections import cube_connections, with_quality_counts

QUERIES = {
    "all pass": "SELECT g, count(*) AS c, avg(n) AS a FROM t WHERE h = 1 GROUP BY g",
    # Five groups pass: the windowed statement returns 5 rows, the every-group one all N (its worst case).
    "five pass": "SELECT g, count(*) AS c, avg(n) AS a FROM t WHERE h = 1 AND g < 'g00005' GROUP BY g",
}


def measure(n: int, sql: str, runs: int) -> tuple[float, float, bool, int | None]:
    """(every-group median CPU ms, windowed median CPU ms, whether their answers agree, the bound on the groups)."""
    rows = [
        {"u": f"u{i % 97}", "g": f"g{i % n:05d}", "h": i % 3, "d": "xy"[i % 2], "m": float(i % 7), "n": i % 50}
        for i in range(10 * n)
    ]
    with tempfile.TemporaryDirectory() as directory:
        tables = _tables(Path(directory), rows)
        plan = plan_query(sql, _policy(2), row_counts(tables))
        assert strategy(plan, tables) == "cube", n
        cube = cube_for(plan, tables) or ""
        ways = {"A": 1, "B": None}  # A: every group whatever N; B: the windowed statement
        with cube_connections(tables) as (connection, lean, stats):

            def run(side: str) -> Any:
                return execute_cube(connection, plan, 100_000, stats, cube, lean, ways[side])

            a, b = run("A"), run("B")
            same = (a.rows, a.groups, a.suppressed_groups) == (b.rows, b.groups, b.suppressed_groups)
            found = alternated_cpu(run, {"A": "A", "B": "B"}, runs, warmups=5)
        return (
            statistics.median(found["A"]),
            statistics.median(found["B"]),
            same,
            cube_groups(plan, with_quality_counts(tables)),
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--groups", default="100,300,1000,3000")
    parser.add_argument("--query", choices=list(QUERIES), default="all pass")
    args = parser.parse_args(argv)
    print(f"load before {os.getloadavg()}", flush=True)
    for n in (int(v) for v in args.groups.split(",")):
        a, b, same, bound = measure(n, QUERIES[args.query], args.runs)
        print(
            f"{args.query}: groups {n:6} (bound {bound}): every-group {a:.3f} ms  windowed {b:.3f} ms  "
            f"ratio {a / b:.2f}  answers equal {same}",
            flush=True,
        )
    print(f"load after {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
