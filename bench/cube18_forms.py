"""Branch cube18: a hidden row in the time of the cube's statement as a worker runs it, both statement forms.

    python -m bench.cube18_forms --runs 150 --base /tmp/cube18-base

On the demo's summary connection as a worker holds it (engine.open_summary: prepared, DuckDB's optimizer off), times
in this process the thread CPU of engine.execute_cube for the pairs of bench/cube13_oracle.py (the demo's one flight
to 'LEX', A, against 'ZZZ', B; alternated), with this tree's statement (`case`: sandbox.summary.cube, the filter once
per row) and with the statement of the tree at `--base` (`filter`: its sandbox/summary.py's cube, one FILTER per
aggregate), and (`main`) main's statement on main's summary connection (the optimizer on). Prints the medians, the
difference and a two-sided Mann-Whitney U p-value per pair and form. Not a test.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.cube13_oracle import PAIRS
from bench.stats import mann_whitney
from bench.worker_cpu import _tables
from market.demo import FLIGHTS_POLICY
from sandbox import service
from sandbox.engine import EngineLimits, TableStatistics, execute_cube, open_locked, open_summary


def _base(base: Path, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"cube18_base_{name}", base / "sandbox" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=150)
    parser.add_argument("--base", type=Path, required=True, help="a copy of main's tree (git archive main)")
    args = parser.parse_args(argv)
    base_cube = _base(args.base, "summary").cube
    base_open_summary = _base(args.base, "engine").open_summary
    print(f"load before {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tables = _tables(Path(tmp))
        files = {name: Path(path) for name, path in service.files_of(tables)}
        free = service.statistics_free(tables)
        connection = open_locked(files, EngineLimits(threads=1), free)
        lean = open_summary(files, EngineLimits(threads=1), free)
        main_lean = base_open_summary(files, EngineLimits(threads=1), free)  # main's: the optimizer on
        stats = TableStatistics(connection, {}, "v")
        for label, template in PAIRS.items():
            plans = {
                side: service.plan_query(template.format(v=value), FLIGHTS_POLICY, service.row_counts(tables))
                for side, value in (("A", "LEX"), ("B", "ZZZ"))
            }
            case = {side: service.cube_for(plan, tables) or "" for side, plan in plans.items()}
            main = {side: base_cube(plan, tables["flights"].statistics) for side, plan in plans.items()}
            forms = {"case": (case, lean), "filter": (main, lean), "main": (main, main_lean)}
            for form, (cubes, on) in forms.items():
                answers = {
                    side: execute_cube(connection, plans[side], 10_000, stats, cubes[side], on) for side in plans
                }
                assert answers["A"].rows == answers["B"].rows, (label, form)
                found: dict[str, list[float]] = {"A": [], "B": []}
                for i in range(args.runs + 5):
                    for side in ("A", "B") if i % 2 == 0 else ("B", "A"):
                        before = time.thread_time_ns()
                        execute_cube(connection, plans[side], 10_000, stats, cubes[side], on)
                        if i >= 5:  # warm-ups
                            found[side].append((time.thread_time_ns() - before) / 1e6)
                a, b = statistics.median(found["A"]), statistics.median(found["B"])
                print(
                    f"{label:20} {form:7} A (LEX) {a:.3f} ms  B (ZZZ) {b:.3f} ms  A-B {a - b:+.3f} ms "
                    f"({(a / b - 1) * 100:+.1f} %)  p {mann_whitney(found['A'], found['B']).p:.3f}",
                    flush=True,
                )
        lean.close()
        main_lean.close()
        connection.close()
    print(f"load after {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
