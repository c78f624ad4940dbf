"""Red team redx15: does the exact DECIMAL sum (branch tpch15) take time that depends on hidden values?

tpch15 writes a sum of a DECIMAL measure as `CAST(SUM(d) AS DOUBLE)`: one cast per group of a DECIMAL(38, s). DuckDB
2.0.1 casts a DECIMAL of scale > 0 whose unscaled integer is 2^53 or more exactly, and much more slowly (the per-row
form is wide15's finding). A buyer's `SELECT g, sum(p * 100000) AS s FROM t GROUP BY g`, `g` one row a group (every
group hidden: k = 5), over a DECIMAL(15, 2) price bounded by [0, 1e9]: p * 100000 * 100 passes 2^53 once p passes
9e7. Two versions identical but for the prices (`small` about 1e3, `huge` about 1e9, within the same bounds) are
planned (plan_query, then service.exact_plan where the tree has it) and run as the worker runs them
(engine.execute_plan on the locked connection, one thread): thread CPU, medians, ns per group.

Side by side, in one run, alternating the trees every round (a fresh process per tree, the order swapped):

    .venv/bin/python bench/redx15_decimal_cast.py --trees /tmp/redx15-tpch15 . [--rounds 6] [--repeats 9]

`--failing-casts [REPEATS]` (this tree only; open, see docs/sandbox.md "Red team redx15"): a buyer's cast of a
dimension, which the sandbox runs as TRY_CAST, over values that fit the target type against values that do not,
with the same rows selected either way (`coalesce(CAST(b AS INTEGER), 0) >= 0`); engine path, thread CPU, ns/row.

`--signs` (this tree only): does the exact sum's 128-bit accumulator cost more per row when the signs of the
summed values alternate at random than when they are all alike (a branch on the sign)? Data generated at run time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROWS = 200_000
QUERY = "SELECT g, sum(p * 100000) AS s FROM t GROUP BY g"
VALUES = {"small": "12.34", "huge": "999000000.25"}


def _policy() -> object:
    from sandbox.policy import ProtectionPolicy

    return ProtectionPolicy.model_validate(
        {
            "min_group_size": 5,
            "tables": {
                "t": {
                    "privacy_unit": "u",
                    "dimensions": ["g"],
                    "measures": ["p"],
                    "hidden": [],
                    "bounds": {"p": {"min": 0, "max": 1e9}},
                }
            },
        }
    )


def worker(repeats: int) -> None:
    """One tree's ns per group as JSON: {"small engine": .., "huge engine": .., "exact": whether rewritten}."""
    import duckdb

    from products import storage
    from sandbox import engine, service
    from sandbox.engine import EngineLimits, TableStatistics, open_locked
    from sandbox.policy import MeasureBounds
    from sandbox.service import TableFile, files_of, plan_query, row_counts

    exact_plan = getattr(service, "exact_plan", lambda plan, tables: plan)
    prepared = {}
    rewritten = False
    with tempfile.TemporaryDirectory() as temporary:
        directory = Path(temporary)
        for data, value in VALUES.items():
            upload = directory / f"{data}.parquet"
            with duckdb.connect() as connection:
                connection.execute(
                    f"COPY (SELECT 'u' || i AS u, 'g' || i AS g, CAST(CAST('{value}' AS DECIMAL(15, 2)) + (i % 1000) "
                    f"AS DECIMAL(15, 2)) AS p FROM range({ROWS}) r(i)) TO '{upload}' (FORMAT parquet)"
                )
            target = directory / data / "t.parquet"
            stored = storage.write_table(upload, "parquet", upload.name, ["u", "g", "p"], target)
            bounds = {"p": MeasureBounds(min=0, max=1e9)}
            storage.check_bounds(stored, bounds)
            if hasattr(storage, "fast_measures"):
                stored = storage.fast_measures(stored, ["p"], bounds)
            roles = {"u": "privacy_unit", "g": "dimension", "p": "measure"}
            described = stored.describe(roles, {"p": (0.0, 1e9)})
            table = TableFile("t", stored.path, stored.row_count, statistics=described["statistics"])
            tables = {"t": table}
            files = {name: Path(file) for name, file in files_of(tables)}
            connection = open_locked(files, EngineLimits(threads=1), described["statistics"]["statistics_free"])
            plan = plan_query(QUERY, _policy(), row_counts(tables))  # type: ignore[arg-type]
            exact = exact_plan(plan, tables)
            rewritten = exact.template != plan.template
            prepared[data] = (connection, exact, TableStatistics(connection, {}, data))
        timed: dict[str, list[float]] = {d: [] for d in prepared}
        for i in range(repeats):
            for data in ("small", "huge") if i % 2 == 0 else ("huge", "small"):
                connection, plan, table_stats = prepared[data]
                started = time.thread_time()
                engine.execute_plan(connection, plan, 100, table_stats)
                timed[data].append(time.thread_time() - started)
        for connection, *_ in prepared.values():
            connection.close()
    out: dict[str, object] = {f"{d} engine": statistics.median(v) / ROWS * 1e9 for d, v in timed.items()}
    out["exact"] = rewritten
    print(json.dumps(out))


def signs(repeats: int) -> None:
    """Per row: SUM of DECIMAL(15, 2) products `p * r`, r all 1 against r a random +-1 (same operations)."""
    import duckdb

    rows = 4_000_000
    connection = duckdb.connect()
    connection.execute("SET threads = 1")
    connection.execute(
        "CREATE TABLE t AS SELECT CAST(100 + (i * 7919 % 1000) AS DECIMAL(15, 2)) AS p, "
        "CAST(1 AS DECIMAL(15, 2)) AS a, "
        f"CAST(CASE WHEN hash(i) % 2 = 0 THEN 1 ELSE -1 END AS DECIMAL(15, 2)) AS r FROM range({rows}) s(i)"
    )
    forms = {
        "alike": "SELECT CAST(SUM(p * a) AS DOUBLE) FROM t",
        "random": "SELECT CAST(SUM(p * r) AS DOUBLE) FROM t",
        "double alike": "SELECT SUM(CAST(p AS DOUBLE) * CAST(a AS DOUBLE)) FROM t",
        "double random": "SELECT SUM(CAST(p AS DOUBLE) * CAST(r AS DOUBLE)) FROM t",
    }
    timed: dict[str, list[float]] = {name: [] for name in forms}
    for i in range(repeats):
        for name in forms if i % 2 == 0 else list(reversed(forms)):
            started = time.thread_time()
            connection.execute(forms[name]).fetchall()
            timed[name].append(time.thread_time() - started)
    cells = [f"{name} {statistics.median(v) / rows * 1e9:.2f}" for name, v in timed.items()]
    print(f"ns per row over {rows} rows, {repeats} repeats: " + ", ".join(cells))
    print(f"loadavg {Path('/proc/loadavg').read_text().strip()}")


FAILING = {
    # name: (column type, fitting values, failing values, the buyer's filter); every row passes either way
    "BIGINT -> INTEGER": ("BIGINT", "i", "9000000000 + i", "coalesce(CAST(b AS INTEGER), 0) >= 0"),
    "DOUBLE -> INTEGER": ("DOUBLE", "i", "9e9 + i", "coalesce(CAST(b AS INTEGER), 0) >= 0"),
    "DECIMAL(18,2) -> INTEGER": (
        "DECIMAL(18, 2)",
        "i / 100",
        "9000000000 + i / 100",
        "coalesce(CAST(b AS INTEGER), 0) >= 0",
    ),
    "DECIMAL(18,2) -> DECIMAL(9,2)": (
        "DECIMAL(18, 2)",
        "i / 100",
        "9000000000 + i / 100",
        "coalesce(CAST(b AS DECIMAL(9, 2)), 0) >= 0",
    ),
}


def failing_casts(repeats: int) -> None:
    """Per row, a cast that fails (TRY_CAST's NULL) against one that does not, through plan_query and
    engine.execute_plan (the binder's check included: the query is accepted), one thread."""
    import duckdb

    from sandbox import engine
    from sandbox.engine import EngineLimits, TableStatistics, open_locked
    from sandbox.policy import ProtectionPolicy
    from sandbox.service import plan_query

    rows = 400_000
    policy = ProtectionPolicy.model_validate(
        {"min_group_size": 5, "tables": {"t": {"privacy_unit": "u", "dimensions": ["g", "b"], "hidden": []}}}
    )
    with tempfile.TemporaryDirectory() as temporary:
        for case, (kind, fits, fails, condition) in FAILING.items():
            sql = f"SELECT g, count(*) AS c FROM t WHERE {condition} GROUP BY g"
            prepared = {}
            for data, value in (("fits", fits), ("fails", fails)):
                path = Path(temporary) / f"{case.replace(' ', '').replace('>', '')}-{data}.parquet"
                with duckdb.connect() as connection:
                    connection.execute(
                        f"COPY (SELECT 'u' || (i // 4) AS u, 'g' || (i % 20) AS g, CAST({value} AS {kind}) AS b "
                        f"FROM range({rows}) r(i)) TO '{path}' (FORMAT parquet)"
                    )
                connection = open_locked({"t": path}, EngineLimits(threads=1))
                plan = plan_query(sql, policy, {"t": rows})
                prepared[data] = (connection, plan, TableStatistics(connection, {}, data))
            timed: dict[str, list[float]] = {"fits": [], "fails": []}
            answers = {}
            for i in range(repeats):
                for data in ("fits", "fails") if i % 2 == 0 else ("fails", "fits"):
                    connection, plan, table_stats = prepared[data]
                    started = time.thread_time()
                    done = engine.execute_plan(connection, plan, 100, table_stats)
                    timed[data].append(time.thread_time() - started)
                    assert done.refused is None, done.refused
                    answers[data] = sorted(done.rows)
            for connection, *_ in prepared.values():
                connection.close()
            assert answers["fits"] == answers["fails"], "the same rows pass either way: the same answer"
            fit, fail = (statistics.median(timed[d]) / rows * 1e9 for d in ("fits", "fails"))
            print(f"{case:30} {sql}: fits {fit:7.1f} fails {fail:7.1f} ns/row ({fail / fit:5.2f}x), same answer")
    print(f"rows {rows}, repeats {repeats}, loadavg {Path('/proc/loadavg').read_text().strip()}")


def main(trees: list[str], rounds: int, repeats: int) -> None:
    script = Path(__file__).resolve()
    runs: dict[str, list[dict[str, object]]] = {tree: [] for tree in trees}
    loads = []
    for i in range(rounds):
        for tree in trees if i % 2 == 0 else list(reversed(trees)):
            environment = dict(os.environ, PYTHONPATH=str(Path(tree).resolve()))
            done = subprocess.run(
                [sys.executable, str(script), "--worker", str(repeats)],
                env=environment,
                cwd=str(Path(tree).resolve()),
                capture_output=True,
                text=True,
                check=True,
            )
            runs[tree].append(json.loads(done.stdout))
            loads.append(Path("/proc/loadavg").read_text().split()[0])
    print(f"{QUERY}; {ROWS} groups of one row, rounds {rounds} x repeats {repeats}, loads {' '.join(loads)}")
    for tree in trees:
        small = statistics.median(float(r["small engine"]) for r in runs[tree])  # type: ignore[arg-type]
        huge = statistics.median(float(r["huge engine"]) for r in runs[tree])  # type: ignore[arg-type]
        exact = runs[tree][0]["exact"]
        print(f"{tree:24} exact sum {exact!s:5} small {small:8.1f} huge {huge:8.1f} ns/group ({huge / small:5.2f}x)")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(int(sys.argv[2]))
    elif sys.argv[1:2] == ["--failing-casts"]:
        failing_casts(int(sys.argv[2]) if len(sys.argv) > 2 else 9)
    elif sys.argv[1:2] == ["--signs"]:
        signs(int(sys.argv[2]) if len(sys.argv) > 2 else 15)
    else:
        parser = argparse.ArgumentParser(description="redx15: exact DECIMAL sums over small and huge hidden values")
        parser.add_argument("--trees", nargs="+", default=["."], help="source trees, e.g. /tmp/redx15-tpch15 .")
        parser.add_argument("--rounds", type=int, default=6)
        parser.add_argument("--repeats", type=int, default=9)
        options = parser.parse_args()
        main(options.trees, options.rounds, options.repeats)
