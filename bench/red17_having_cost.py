"""Is a costly HAVING evaluated on suppressed groups (red17)?

Stage 2 reads `__groups WHERE <every bound >= k> AND (<HAVING>)`. If DuckDB evaluated the HAVING conjunct on every
group (a reordered filter, or an adaptive one moving it first), a HAVING whose cost depends on a group's values
(the text of its sum, grown by replace(), which cost.py bounds at 64x) would time the values of suppressed groups.
Here 1,000 units form one passing group and 199,000 units a suppressed group each; two HAVINGs, one cheap and one
costly per group, run alternated on one DuckDB thread with the sandbox's optimizers off, on the single statement and
the staged path. If the costly one ran on every suppressed group, it would cost ~199,000 times its per-group work
(about 1 us), i.e. hundreds of ms more.

    python -m bench.red17_having_cost [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import duckdb

from sandbox.engine import STATISTICS_FREE_DISABLED_OPTIMIZERS, execute_plan, execute_single
from sandbox.policy import ProtectionPolicy
from sandbox.service import plan_query

ROWS = 200_000
POLICY = ProtectionPolicy.model_validate(
    {
        "min_group_size": 5,
        "tables": {
            "t": {
                "privacy_unit": "uid",
                "dimensions": ["g"],
                "measures": ["m"],
                "bounds": {"m": {"min": 0, "max": 1000}},
            }
        },
    }
)
QUERIES = {
    "cheap": "SELECT g, sum(m) AS s FROM t GROUP BY g HAVING sum(m) > -1",
    "costly": "SELECT g, sum(m) AS s FROM t GROUP BY g HAVING length(replace(replace(replace(CAST(sum(m) AS VARCHAR), "
    "'1', '11111111'), '2', '22222222'), '3', '33333333')) > 0",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    connection = duckdb.connect()
    connection.execute("SET threads = 1")
    connection.execute(f"SET disabled_optimizers = '{STATISTICS_FREE_DISABLED_OPTIMIZERS}'")
    connection.execute(
        "CREATE TABLE t AS SELECT i AS uid, CASE WHEN i < 1000 THEN -1 ELSE i END AS g, (i * 7919) % 1000 AS m "
        f"FROM range({ROWS}) r(i)"
    )
    plans = {name: plan_query(sql, POLICY, {"t": ROWS}) for name, sql in QUERIES.items()}
    print(f"load average {os.getloadavg()[0]:.2f}; {ROWS - 1000} suppressed groups, 1 passing")
    for path, run in (("single", execute_single), ("staged", execute_plan)):
        times: dict[str, list[float]] = {name: [] for name in plans}
        for _ in range(args.runs):
            for name, plan in plans.items():
                started = time.thread_time()
                execution = run(connection, plan, 100)
                times[name].append(time.thread_time() - started)
                assert execution.rows and execution.refused is None, (name, execution.refused)
        medians = {name: statistics.median(values) * 1000 for name, values in times.items()}
        print(
            f"{path:7} cheap {medians['cheap']:8.2f} ms  costly {medians['costly']:8.2f} ms  "
            f"ratio {medians['costly'] / medians['cheap']:.3f}"
        )
    # Calibration: the costly HAVING's expression evaluated once per suppressed group's kind of value.
    connection.execute(
        f"CREATE TABLE v AS SELECT CAST((i * 7919) % 1000 AS DOUBLE) AS s FROM range({ROWS - 1000}) r(i)"
    )
    having = QUERIES["costly"].split("HAVING ", 1)[1].replace("sum(m)", "s")
    spent = []
    for _ in range(args.runs):
        started = time.thread_time()
        connection.execute(f"SELECT sum(CAST(({having}) AS INT)) FROM v").fetchall()
        spent.append(time.thread_time() - started)
    print(f"the costly HAVING over {ROWS - 1000} values alone: {statistics.median(spent) * 1000:.2f} ms")
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
