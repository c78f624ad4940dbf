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
import sys
import tempfile
from pathlib import Path

if __package__:
    from bench import timing
else:  # run by path, as the workers are: this file's folder is sys.path[0] (see bench/timing.py)
    import timing  # type: ignore[no-redef]

ROWS = 200_000
QUERY = "SELECT g, sum(p * 100000) AS s FROM t GROUP BY g"
VALUES = {"small": "12.34", "huge": "999000000.25"}
BOUNDS = {"p": (0, 1e9)}


def worker(repeats: int) -> None:
    """One tree's ns per group as JSON: {"small engine": .., "huge engine": .., "exact": whether rewritten}."""
    from sandbox import service
    from sandbox.engine import TableStatistics
    from sandbox.service import plan_query, row_counts

    exact_plan = getattr(service, "exact_plan", lambda plan, tables: plan)
    prepared = {}
    rewritten = False
    with tempfile.TemporaryDirectory() as temporary:
        directory = Path(temporary)
        for data, value in VALUES.items():
            column = f"CAST(CAST('{value}' AS DECIMAL(15, 2)) + (i % 1000) AS DECIMAL(15, 2))"
            upload = timing.write_upload(
                directory / f"{data}.parquet", ROWS, column, "p", unit="'u' || i", group="'g' || i"
            )
            roles = {"u": "privacy_unit", "g": "dimension", "p": "measure"}
            table, stats, _ = timing.stored_table(upload, directory / data / "t.parquet", roles, BOUNDS)
            tables = {"t": table}
            connection = timing.locked(table, stats)
            plan = plan_query(QUERY, timing.policy(["g"], BOUNDS), row_counts(tables))
            exact = exact_plan(plan, tables)
            rewritten = exact.template != plan.template
            prepared[data] = (connection, exact, TableStatistics(connection, {}, data))
        timed = timing.engine_alternated(prepared, repeats)
        for connection, *_ in prepared.values():
            connection.close()
    out: dict[str, object] = {f"{d} engine": timing.ns_per_row(v, ROWS) for d, v in timed.items()}
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
    timed = timing.alternated(list(forms), repeats, lambda name: connection.execute(forms[name]).fetchall())
    cells = [f"{name} {timing.ns_per_row(v, rows):.2f}" for name, v in timed.items()]
    print(f"ns per row over {rows} rows, {repeats} repeats: " + ", ".join(cells))
    print(f"loadavg {timing.loadavg()}")


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
    from sandbox import engine
    from sandbox.engine import EngineLimits, TableStatistics, open_locked
    from sandbox.service import plan_query

    rows = 400_000
    policy = timing.policy(["g", "b"])
    with tempfile.TemporaryDirectory() as temporary:
        for case, (kind, fits, fails, condition) in FAILING.items():
            sql = f"SELECT g, count(*) AS c FROM t WHERE {condition} GROUP BY g"
            prepared = {}
            for data, value in (("fits", fits), ("fails", fails)):
                path = Path(temporary) / f"{case.replace(' ', '').replace('>', '')}-{data}.parquet"
                timing.write_upload(path, rows, f"CAST({value} AS {kind})", "b")
                connection = open_locked({"t": path}, EngineLimits(threads=1))
                plan = plan_query(sql, policy, {"t": rows})
                prepared[data] = (connection, plan, TableStatistics(connection, {}, data))
            timed: dict[str, list[float]] = {"fits": [], "fails": []}
            answers = {}
            for _, data in timing.alternation(("fits", "fails"), repeats):
                connection, plan, table_stats = prepared[data]
                with timing.thread_time_into(timed[data]):
                    done = engine.execute_plan(connection, plan, 100, table_stats)
                assert done.refused is None, done.refused
                answers[data] = sorted(done.rows)
            for connection, *_ in prepared.values():
                connection.close()
            assert answers["fits"] == answers["fails"], "the same rows pass either way: the same answer"
            fit, fail = (timing.ns_per_row(timed[d], rows) for d in ("fits", "fails"))
            print(f"{case:30} {sql}: fits {fit:7.1f} fails {fail:7.1f} ns/row ({fail / fit:5.2f}x), same answer")
    print(f"rows {rows}, repeats {repeats}, loadavg {timing.loadavg()}")


def main(trees: list[str], rounds: int, repeats: int) -> None:
    loads: list[str] = []
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", str(repeats)]
    runs = timing.run_trees(trees, rounds, command, loads=loads)
    print(f"{QUERY}; {ROWS} groups of one row, rounds {rounds} x repeats {repeats}, loads {' '.join(loads)}")
    for tree in trees:
        small, huge = timing.medians(runs[tree], "small engine", "huge engine")
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
        timing.tree_options(parser, "/tmp/redx15-tpch15 .", rounds=6)
        options = parser.parse_args()
        main(options.trees, options.rounds, options.repeats)
