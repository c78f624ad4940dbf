"""The first-row step, seeded against unseeded, in one interleaved run (branch sbx-flagkey).

    python -m bench.flagkey_oracle --runs 30
    python -m bench.flagkey_oracle --runs 30 --paths staged   # the staged path (branch sbx-seed)

Builds bench.timing_oracle's flights-like product (statistics-free, as versions are written; ONE flight to
'LEX', none to 'LEY'), opens it as the sandbox's workers do (engine.open_locked, with the worker's cached
statistics), and times, in this process, the CPU of each one-statement path (engine.execute_single,
execute_two_level, execute_folded) on pairs of queries whose answers are the same (the LEX group is
suppressed; LEY has none), alternating A (LEX) and B (LEY) and the two variants of each plan:

- `seeded`: the plan as this branch runs it (rewrite.seeded_stage: a fixed 1/2048 of rows always reaches
  stage 1's aggregates);
- `unseeded`: the same plan with `seeded=None`, i.e. main's statements.

CPU time (time.process_time, DuckDB's threads included) is steadier than wall time on a loaded machine.
Prints per pair, path and variant the medians of A and B, a two-sided Mann-Whitney U p-value, and the
seeded/unseeded cost ratio (medians of A and B together). Not a test: timings belong here.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.stats import mann_whitney
from bench.timing_oracle import POLICY, build
from sandbox.engine import (
    EngineLimits,
    Execution,
    TableStatistics,
    execute_folded,
    execute_plan,
    execute_single,
    execute_two_level,
    open_locked,
)
from sandbox.service import plan_query

PAIRS: dict[str, str] = {
    "count": "SELECT count(*) AS n FROM flights WHERE dest = '{dest}'",
    "group-empty": "SELECT dest, count(*) AS n FROM flights WHERE dest = '{dest}' GROUP BY dest",
    "group": "SELECT dest, count(*) AS n FROM flights WHERE dest IN ('{dest}', 'D001', 'D002') GROUP BY dest",
    "variance": "SELECT month, var_samp(arr_delay) AS v FROM flights WHERE dest = '{dest}' GROUP BY month",
}
PATHS: dict[str, Callable[..., Execution]] = {
    "single": execute_single,
    "two-level": execute_two_level,
    "folded": execute_folded,
    "staged": execute_plan,  # large products (engine.execute_plan): seeded since branch sbx-seed
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--rows", type=int, default=336_776)
    parser.add_argument("--pairs", nargs="*", default=None)
    parser.add_argument("--paths", nargs="*", default=None, help=f"of {', '.join(PATHS)} (default: all)")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    limits = EngineLimits(threads=2, timeout_seconds=60)
    with tempfile.TemporaryDirectory() as directory:
        path = build(Path(directory), args.rows)
        connection = open_locked({"flights": path}, limits, statistics_free=True)
        # As a worker: the version's statistics and the refusal verdicts cached (engine.TableStatistics).
        stats = TableStatistics(connection, {}, version="bench")
        print(f"{'pair':12} {'path':9} {'variant':9} {'A LEX ms':>9} {'B LEY ms':>9} {'p-value':>8} {'cost':>6}")
        for name, template in PAIRS.items():
            if args.pairs and name not in args.pairs:
                continue
            plans = {
                dest: plan_query(template.format(dest=dest), POLICY, {"flights": args.rows}) for dest in ("LEX", "LEY")
            }
            variants = {
                "seeded": plans,
                "unseeded": {dest: dataclasses.replace(plan, seeded=None) for dest, plan in plans.items()},
            }
            for path_name, execute in PATHS.items():
                if args.paths and path_name not in args.paths:
                    continue
                times = {(v, d): [] for v in variants for d in ("LEX", "LEY")}
                order = [(v, d) for v in variants for d in ("LEX", "LEY")]
                for key in order:  # warm-up
                    execute(connection, variants[key[0]][key[1]], 1000, stats)
                answers = {}
                for i in range(args.runs):
                    for variant, dest in order if i % 2 == 0 else list(reversed(order)):
                        started = time.process_time()
                        execution = execute(connection, variants[variant][dest], 1000, stats)
                        times[(variant, dest)].append((time.process_time() - started) * 1000)
                        answers[(variant, dest)] = sorted(execution.rows, key=repr)
                assert len({repr(a) for a in answers.values()}) == 1, (name, path_name, answers)
                base = statistics.median(times[("unseeded", "LEX")] + times[("unseeded", "LEY")])
                for variant in variants:
                    a, b = times[(variant, "LEX")], times[(variant, "LEY")]
                    cost = statistics.median(a + b) / base
                    print(
                        f"{name:12} {path_name:9} {variant:9} {statistics.median(a):9.2f} {statistics.median(b):9.2f} "
                        f"{mann_whitney(a, b).p:8.4f} {cost:6.2f}",
                        flush=True,
                    )
        connection.close()
    load = " ".join(f"{v:.2f}" for v in (*load_before, *os.getloadavg()))
    print(f"load average (1, 5, 15 min) before and after: {load}; cores: {os.cpu_count()}")


if __name__ == "__main__":
    main()
