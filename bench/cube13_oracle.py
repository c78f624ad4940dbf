"""Branch cube13: does a hidden row show in the cube's time? The demo's one flight to 'LEX' against 'ZZZ'.

    python -m bench.cube13_oracle --runs 40

Builds the demo (SQLite, a temporary directory), plans each pair with sandbox.service.plan_query, asserts the
strategy's own choice is the cube (sandbox.service.cube_for) and that the two answers are identical (the LEX group is
suppressed: one flight), then times in this process the CPU of engine.execute_cube on a warm connection (one DuckDB
thread, as the worker runs the demo), and (`cube-lean`, branch cube18) on the version's summary connection as a worker
runs it (engine.open_summary: prepared, DuckDB's optimizer off), for A (LEX) and B (ZZZ), alternated. The LEX flight
is one combination of (month, dest) in the summary that ZZZ has not: one more of S's rows passes the filter and one
group more is formed and suppressed. docs/sandbox.md, "Answered from the build-time summary (cube13)", *Timing*: the
scan of S's rows and the filter on each are the same for both. Prints the medians of A and B, their difference and a
two-sided Mann-Whitney U p-value; p < 0.01 over >= 30 alternated runs would be a finding.
Not a test: timings belong here.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.stats import mann_whitney
from bench.worker_cpu import _tables
from market.demo import FLIGHTS_POLICY
from sandbox import service
from sandbox.engine import EngineLimits, TableStatistics, execute_cube, execute_summary, open_locked, open_summary

PAIRS = {
    "month, dest = ?": "SELECT month, count(*) AS flights, avg(arr_delay) AS delay FROM flights WHERE dest = '{v}' "
    "GROUP BY month",
    "dest = ? (no keys)": "SELECT count(*) AS flights, sum(distance) AS miles FROM flights WHERE dest = '{v}'",
    "origin, dest = ?": "SELECT origin, count(*) AS flights FROM flights WHERE dest = '{v}' GROUP BY origin",
}


def alternated_cpu(
    run: Callable[[Any], Any], plans: dict[str, Any], runs: int, *, warmups: int
) -> dict[str, list[float]]:
    """This thread's CPU (ms) of `run` on plans "A" and "B", alternated (A first on even rounds, B on odd), `runs`
    times each after `warmups` untimed rounds (also bench.red18_case_oracle)."""
    found: dict[str, list[float]] = {"A": [], "B": []}
    for i in range(runs + warmups):
        for side in ("A", "B") if i % 2 == 0 else ("B", "A"):
            before = time.process_time_ns()
            run(plans[side])
            if i >= warmups:
                found[side].append((time.process_time_ns() - before) / 1e6)
    return found


def pair_plans(tables: dict[str, Any], template: str, first: str, absent: str, label: str) -> dict[str, Any]:
    """One A/B pair of demo cube queries (red19, red20): `template` with `first` (A) and with `absent` (B), planned
    under the demo's policy; each must take the cube."""
    plans = {}
    for side, value in (("A", first), ("B", absent)):
        plan = service.plan_query(template.format(v=value), FLIGHTS_POLICY, service.row_counts(tables))
        assert service.strategy(plan, tables) == "cube", label
        plans[side] = plan
    return plans


def alternated_medians(
    run: Callable[[Any], Any], plans: dict[str, Any], runs: int, *, warmups: int
) -> tuple[float, float, float]:
    """alternated_cpu's median CPU (ms) of A and of B, and the two-sided Mann-Whitney p of A against B (also
    bench.red18_case_oracle and bench.red19_every_oracle)."""
    found = alternated_cpu(run, plans, runs, warmups=warmups)
    return statistics.median(found["A"]), statistics.median(found["B"]), mann_whitney(found["A"], found["B"]).p


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args(argv)
    print(f"load before {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tables = _tables(Path(tmp))
        files = {name: Path(path) for name, path in service.files_of(tables)}
        connection = open_locked(files, EngineLimits(threads=1), service.statistics_free(tables))
        lean = open_summary(files, EngineLimits(threads=1), service.statistics_free(tables))
        stats = TableStatistics(connection, {}, "v")
        for label, template in PAIRS.items():
            plans = {}
            for side, value in (("A", "LEX"), ("B", "ZZZ")):
                plan = service.plan_query(template.format(v=value), FLIGHTS_POLICY, service.row_counts(tables))
                assert service.strategy(plan, tables) == "cube", label
                plans[side] = plan
            # The cube, and pre16's summary path on the same pair (the path it replaces), for comparison.
            paths: dict[str, Callable[[Any], Any]] = {
                "cube": lambda p: execute_cube(connection, p, 10_000, stats, service.cube_for(p, tables) or ""),
                # As a worker runs it: on the version's summary connection, prepared (rt15).
                "cube-lean": lambda p: execute_cube(
                    connection, p, 10_000, stats, service.cube_for(p, tables) or "", lean
                ),
                "summary": lambda p: execute_summary(
                    connection, p, 10_000, stats, service.summary_for(p, tables) or ""
                ),
            }
            for path, run in paths.items():
                answers = {side: run(plan) for side, plan in plans.items()}
                assert answers["A"].rows == answers["B"].rows, (label, answers)
                a, b, p = alternated_medians(run, plans, args.runs, warmups=3)
                print(
                    f"{label:20} {path:9} A (LEX) {a:.3f} ms  B (ZZZ) {b:.3f} ms  A-B {a - b:+.3f} ms  "
                    f"p {p:.3f}  groups A/B {answers['A'].groups}/{answers['B'].groups}",
                    flush=True,
                )
        lean.close()
        connection.close()
    print(f"load after {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
