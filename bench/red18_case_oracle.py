"""red18: does the cube's statement cost more when one combination of S passes the buyer's filter than when none does?

    python -m bench.red18_case_oracle --runs 300                      # this tree
    PYTHONPATH=/tmp/red18-base python bench/red18_case_oracle.py --runs 300   # main's tree, same harness

cube18's statement evaluates `CASE WHEN "__f" THEN <column> END` per aggregate on every row of S. DuckDB's CASE has a
fast path for a chunk where the condition is FALSE on every row (the ELSE, a constant NULL, evaluated once for the
chunk) and a slower one when some row takes the THEN (both branches, then a per-row merge); the aggregates that follow
likewise see a constant NULL vector or a flat one. One combination passing ('LEX': one flight, its group suppressed)
against none ('ZZZ'), with the answers identical, is the timing side channel the docs' *Timing* argument excludes.
Queries wide in aggregates (many CASEs) amplify any per-chunk difference. Times engine.execute_cube in this process
(CPU, one DuckDB thread) on the version's summary connection (engine.open_summary: the path a worker runs; on main
the optimizer is on and the statement uses FILTER) and on the version's connection, A and B alternated; prints
medians, A-B, A/B and a two-sided Mann-Whitney p; `stage1` times the cube's statement alone on the summary
connection; `every-group` (branch every19) execute_cube as a worker runs it now, its groups filtered and counted in
Python where the bound on them allows (engine.EVERY_GROUP_LIMIT); `--control` makes A 'QQQ', absent too (an A/A
control: any step there is not the data's). Not a test.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.cube13_oracle import alternated_medians
from bench.worker_cpu import _tables
from market.demo import FLIGHTS_POLICY
from sandbox import service
from sandbox.engine import EngineLimits, TableStatistics, execute_cube, open_locked, open_summary

WIDE = (
    "count(*) AS f, count(DISTINCT tailnum) AS u, count(arr_delay) AS ca, sum(arr_delay) AS sa, "
    "avg(dep_delay) AS ad, sum(air_time) AS st, avg(distance) AS dd, count(dep_delay) AS cd"
)
PAIRS = {
    "wide, month": f"SELECT month, {WIDE} FROM flights WHERE dest = '{{v}}' GROUP BY month",
    "wide, no keys": f"SELECT {WIDE} FROM flights WHERE dest = '{{v}}'",
    "wide, origin": f"SELECT origin, {WIDE} FROM flights WHERE dest = '{{v}}' GROUP BY origin",
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--control", action="store_true", help="A is 'QQQ' (absent too): an A/A control")
    args = parser.parse_args(argv)
    first = "QQQ" if args.control else "LEX"
    print(f"sandbox from {service.__file__}; load before {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tables = _tables(Path(tmp))
        files = {name: Path(path) for name, path in service.files_of(tables)}
        free = service.statistics_free(tables)
        connection = open_locked(files, EngineLimits(threads=1), free)
        lean = open_summary(files, EngineLimits(threads=1), free)
        stats = TableStatistics(connection, {}, "v")
        for label, template in PAIRS.items():
            plans = {}
            for side, value in (("A", first), ("B", "ZZZ")):
                plan = service.plan_query(template.format(v=value), FLIGHTS_POLICY, service.row_counts(tables))
                assert service.strategy(plan, tables) == "cube", label
                plans[side] = plan
            paths: dict[str, Callable[[Any], Any]] = {
                # Stage 1 alone: the cube's statement on the summary connection (its rows fetched).
                "stage1": lambda p: lean.execute(service.cube_for(p, tables) or "").fetchall(),
                "summary-conn": lambda p: execute_cube(
                    connection, p, 10_000, stats, service.cube_for(p, tables) or "", lean
                ),
                "version-conn": lambda p: execute_cube(connection, p, 10_000, stats, service.cube_for(p, tables) or ""),
                # Branch every19: as a worker runs it now, every group returned and filtered in Python.
                "every-group": lambda p: execute_cube(
                    connection,
                    p,
                    10_000,
                    stats,
                    service.cube_for(p, tables) or "",
                    lean,
                    groups=service.cube_groups(p, tables),
                ),
            }
            for path, run in paths.items():
                answers = {side: run(plan) for side, plan in plans.items()}
                if path != "stage1":
                    assert answers["A"].rows == answers["B"].rows, (label, answers)
                a, b, p = alternated_medians(run, plans, args.runs, warmups=5)
                print(
                    f"{label:14} {path:12} A ({first}) {a:.4f} ms  B (ZZZ) {b:.4f} ms  A-B {a - b:+.4f} ms  "
                    f"A/B {a / b:.3f}  p {p:.4f}",
                    flush=True,
                )
        lean.close()
        connection.close()
    print(f"load after {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
