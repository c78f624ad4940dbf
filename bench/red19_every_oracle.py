"""red19: does the every-group form (branch every19) cost more when a hidden group is kept than when none is?

    python -m bench.red19_every_oracle --runs 300
    python -m bench.red19_every_oracle --runs 300 --control   # A is absent too: an A/A control

The every-group statement returns every group of the set to the worker, passing or not, and sorts them all in
DuckDB before the worker drops the ones that do not pass. Pairs that stress what reaches the worker or the sort
from a group that does not pass: an ORDER BY of an aggregate (the suppressed group's exact aggregates sorted with
the others), many groups (day x hour: about 700, every one returned), string keys. A pins a value with hidden rows
only (a suppressed group kept), B a value absent from the data; the answers are asserted identical. Times
engine.execute_cube as a worker runs it (summary connection, groups from service.cube_groups), A and B alternated
in one process (CPU, one DuckDB thread); prints medians, A-B and a two-sided Mann-Whitney p. `--show` prints the
every-group statement's fetched rows that do not pass for A; `--windowed` times the windowed form (groups=None) on
the same pairs. Not a test.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from bench.cube13_oracle import alternated_medians, pair_plans
from bench.worker_cpu import _tables
from sandbox import service
from sandbox.engine import EngineLimits, TableStatistics, execute_cube, open_locked, open_summary

AGGREGATES = "count(*) AS f, sum(arr_delay) AS sa, avg(dep_delay) AS ad, sum(air_time) AS st, avg(distance) AS dd"
PAIRS: dict[str, tuple[str, str, str, str]] = {
    # label: (template, A's value (hidden rows only), B's (absent), the control's A (absent too))
    "order agg, month": (
        f"SELECT month, {AGGREGATES} FROM flights WHERE dest = '{{v}}' GROUP BY month ORDER BY sa DESC, st, f",
        "LEX",
        "ZZZ",
        "QQQ",
    ),
    "order agg, carrier": (
        f"SELECT carrier, {AGGREGATES} FROM flights WHERE dest = '{{v}}' GROUP BY carrier ORDER BY f DESC, sa",
        "LEX",
        "ZZZ",
        "QQQ",
    ),
    "25 hidden, day by carrier": (
        f"SELECT day, {AGGREGATES} FROM flights WHERE carrier = '{{v}}' GROUP BY day ORDER BY f DESC, sa",
        "OO",
        "ZZ",
        "QQ",
    ),
    "15 hidden, day by dest": (
        f"SELECT day, {AGGREGATES} FROM flights WHERE dest = '{{v}}' GROUP BY day",
        "PSP",
        "ZZZ",
        "QQQ",
    ),
    "many, day x hour": (
        f"SELECT day, hour, {AGGREGATES} FROM flights WHERE hour = {{v}} GROUP BY day, hour ORDER BY sa, f",
        "1",
        "3",
        "4",
    ),
    "many, day x hour, keys": (
        f"SELECT day, hour, {AGGREGATES} FROM flights WHERE hour = {{v}} GROUP BY day, hour",
        "1",
        "3",
        "4",
    ),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--control", action="store_true", help="A is absent too: an A/A control")
    parser.add_argument("--show", action="store_true", help="print A's fetched groups that do not pass")
    parser.add_argument("--windowed", action="store_true", help="the windowed form (groups=None), for comparison")
    parser.add_argument("--only", default="", help="run only pairs whose label contains this")
    args = parser.parse_args(argv)
    print(f"sandbox from {service.__file__}; load before {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tables = _tables(Path(tmp))
        files = {name: Path(path) for name, path in service.files_of(tables)}
        free = service.statistics_free(tables)
        connection = open_locked(files, EngineLimits(threads=1), free)
        lean = open_summary(files, EngineLimits(threads=1), free)
        stats = TableStatistics(connection, {}, "v")
        for label, (template, hidden, absent, control) in PAIRS.items():
            if args.only not in label:
                continue
            first = control if args.control else hidden
            plans = pair_plans(tables, template, first, absent, label)

            def run(plan: service.Plan) -> object:
                return execute_cube(
                    connection,
                    plan,
                    10_000,
                    stats,
                    service.cube_for(plan, tables) or "",
                    lean,
                    groups=None if args.windowed else service.cube_groups(plan, tables),
                )

            answers = {side: run(plan) for side, plan in plans.items()}
            a_run, b_run = answers["A"], answers["B"]
            assert a_run.rows == b_run.rows, (label, a_run.rows, b_run.rows)
            form = "every-group" if " OVER " not in a_run.statements[0] else "windowed"
            if args.show:
                fetched = lean.execute(a_run.statements[0]).fetchall()
                print(label, form, len(fetched), "groups;", [r for r in fetched if r[-1] and not r[-2]][:5])
            a, b, p = alternated_medians(run, plans, args.runs, warmups=5)
            print(
                f"{label:24} {form:11} A ({first}) {a:.4f} ms  B ({absent}) {b:.4f} ms  A-B {a - b:+.4f} ms  "
                f"A/B {a / b:.3f}  p {p:.4f}  (groups {a_run.groups}/{b_run.groups}, "
                f"suppressed {a_run.suppressed_groups}/{b_run.suppressed_groups})",
                flush=True,
            )
        lean.close()
        connection.close()
    print(f"load after {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
