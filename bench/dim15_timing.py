"""Issue 9, branch dim15: which per-row operations on a wide DECIMAL dimension cost more over huge hidden values?

`--ops` (one tree, the DuckDB the tree uses): a Parquet table of ROWS distinct values of a DECIMAL(38, 6) (and a
DECIMAL(18, 6)) column `d`, either small (unscaled integers under 2^53) or huge (above 2^53), read through a view as
the sandbox reads it, one thread; each operation is one statement over every row (`SELECT count(*) ... WHERE
<predicate>` for comparisons, `SELECT sum(hash(<expression>))` for values, the aggregate itself for min/max/sum);
thread CPU per row, median of REPEATS, small and huge alternated. The baseline `sum(hash(d))` is the read and hash.

`--trees /tmp/dim15-main .`: a buyer's queries on a DECIMAL(38, 6) dimension through the public planning path
(sandbox.service.plan_query, engine.execute_plan on the locked connection, one thread), small against huge values,
each tree in a fresh process, the trees alternated every round: on main `CAST(d AS DOUBLE)` runs (and leaks); on
dim15 it is refused before anything runs.

Data are generated at run time.

    .venv/bin/python bench/dim15_timing.py --ops [--repeats 9]
    .venv/bin/python bench/dim15_timing.py --trees /tmp/dim15-main . [--rounds 4] [--repeats 7]
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

ROWS = 400_000
VALUES = {
    # (type, small base, huge base): each row adds its number; huge * 10^6 > 2^53 > small * 10^6
    "DECIMAL(38, 6)": ("12.345678", "98765432101234.567891"),
    "DECIMAL(18, 6)": ("12.345678", "98765432101.234567"),
}
MAGNITUDES = {
    # --ops: each type at magnitudes of its unscaled integer (2^53 ~ 9.0e15, 2^63 ~ 9.2e18); each row adds its number
    "DECIMAL(38, 6)": {
        "small": "12.345678",
        "2^53..2^63": "5432101234567.891234",
        "over 2^63": "98765432101234567.891234",
    },
    "DECIMAL(18, 6)": {"small": "12.345678", "2^53..2^63": "987654321098.765432"},
    # a reference: an integer's digits (CAST to VARCHAR, %) on a type the sandbox never refused
    "BIGINT": {"small": "12", "2^53..2^63": "5432101234567891234"},
}
OPS = {
    "baseline sum(hash(d))": "SELECT sum(hash(d)) FROM t",
    "CAST(d AS DOUBLE) > 1.5": "SELECT count(*) FROM t WHERE CAST(d AS DOUBLE) > 1.5",
    "CAST(d AS DOUBLE)": "SELECT sum(hash(CAST(d AS DOUBLE))) FROM t",
    "d > 1.5": "SELECT count(*) FROM t WHERE d > 1.5",
    "d = 1.5": "SELECT count(*) FROM t WHERE d = 1.5",
    "d BETWEEN 1.5 AND 2.5": "SELECT count(*) FROM t WHERE d BETWEEN 1.5 AND 2.5",
    "d + 1.5": "SELECT sum(hash(d + 1.5)) FROM t",
    "d - 1.5": "SELECT sum(hash(d - 1.5)) FROM t",
    "d * 2": "SELECT sum(hash(d * 2)) FROM t",
    "d * 1.5": "SELECT sum(hash(d * 1.5)) FROM t",
    "d % 7": "SELECT sum(hash(d % 7)) FROM t",
    "d / 2 (DOUBLE)": "SELECT sum(hash(d / 2)) FROM t",
    "CAST(d AS VARCHAR)": "SELECT sum(hash(CAST(d AS VARCHAR))) FROM t",
    "CAST(d AS DECIMAL(38, 2))": "SELECT sum(hash(CAST(d AS DECIMAL(38, 2)))) FROM t",
    "TRY_CAST(d AS BIGINT)": "SELECT sum(hash(TRY_CAST(d AS BIGINT))) FROM t",
    "round(d, 2)": "SELECT sum(hash(round(d, 2))) FROM t",
    "floor(d)": "SELECT sum(hash(floor(d))) FROM t",
    "ceil(d)": "SELECT sum(hash(ceil(d))) FROM t",
    "abs(d)": "SELECT sum(hash(abs(d))) FROM t",
    "min(d)": "SELECT min(d) FROM t",
    "max(d)": "SELECT max(d) FROM t",
    "sum(d)": "SELECT sum(d) FROM t",
    "GROUP BY d": "SELECT count(*) FROM (SELECT d, count(*) FROM t GROUP BY d)",
}
QUERIES = {
    "CAST(d AS DOUBLE) > 1.5": "SELECT g, count(*) AS c FROM t WHERE CAST(d AS DOUBLE) > 1.5 GROUP BY g",
    "d > 1e0": "SELECT g, count(*) AS c FROM t WHERE d > 1e0 GROUP BY g",
    "d + 1.5 > 3": "SELECT g, count(*) AS c FROM t WHERE d + 1.5 > 3 GROUP BY g",
    "floor(d) > 1": "SELECT g, count(*) AS c FROM t WHERE floor(d) > 1 GROUP BY g",
    "CAST(d AS VARCHAR) LIKE": "SELECT g, count(*) AS c FROM t WHERE CAST(d AS VARCHAR) LIKE '1%' GROUP BY g",
    "d > 1.5": "SELECT g, count(*) AS c FROM t WHERE d > 1.5 GROUP BY g",
    "GROUP BY d": "SELECT d, count(*) AS c FROM t GROUP BY d",
}


def _write(directory: Path, type_: str, value: str, name: str) -> Path:
    return timing.write_upload(
        directory / f"{name}.parquet", ROWS, f"CAST(CAST('{value}' AS {type_}) + i AS {type_})", "d"
    )


def ops(repeats: int) -> None:
    import duckdb

    from products import storage

    print(f"duckdb {duckdb.__version__}, rows {ROWS}, repeats {repeats}, loadavg {timing.loadavg()}")
    with tempfile.TemporaryDirectory() as temporary:
        directory = Path(temporary)
        for type_, magnitudes in MAGNITUDES.items():
            connections = {}
            for data, value in magnitudes.items():
                name = f"{len(connections)}-{type_[8:10]}"
                upload = _write(directory, type_, value, name)
                # Stored as the build stores it (no Parquet statistics: no row group pruned by min/max)
                stored = storage.write_table(
                    upload, "parquet", upload.name, ["u", "g", "d"], directory / name / "t.parquet"
                )
                connection = duckdb.connect(config={"threads": 1})
                connection.execute(f"CREATE VIEW t AS SELECT * FROM read_parquet('{stored.path}')")
                connections[data] = connection
            print(
                f"\n{type_}: ns per row by magnitude of the unscaled integer ({', '.join(magnitudes)}); ratio to small"
            )
            for op, sql in OPS.items():
                timed: dict[str, list[float]] = {data: [] for data in magnitudes}
                failed = ""
                for _, data in timing.alternation(list(magnitudes), repeats):
                    with timing.thread_time_into(timed[data]):
                        try:
                            connections[data].execute(sql).fetchall()
                        except duckdb.Error as error:
                            failed = f"{data}: {str(error).splitlines()[0][:60]}"
                if failed:
                    print(f"  {op:28} error ({failed})")
                    continue
                medians = {data: timing.ns_per_row(v, ROWS) for data, v in timed.items()}
                cells = "  ".join(f"{data} {m:7.1f} ({m / medians['small']:4.2f}x)" for data, m in medians.items())
                print(f"  {op:28} {cells}")
            for connection in connections.values():
                connection.close()


def worker(repeats: int) -> None:
    """One tree: {query: {"small": ns/row, "huge": ns/row} or "refused: code"}, as JSON on stdout."""
    from sandbox import engine
    from sandbox.engine import TableStatistics
    from sandbox.service import plan_query, row_counts

    rules = timing.policy(["g", "d"])
    out: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as temporary:
        directory = Path(temporary)
        prepared = {}
        small, huge = VALUES["DECIMAL(38, 6)"]
        for data, value in (("small", small), ("huge", huge)):
            upload = _write(directory, "DECIMAL(38, 6)", value, f"{data}-upload")
            roles = {"u": "privacy_unit", "g": "dimension", "d": "dimension"}
            table, table_statistics, _ = timing.stored_table(upload, directory / data / "t.parquet", roles)
            prepared[data] = (timing.locked(table, table_statistics), table)
        for name, sql in QUERIES.items():
            timed: dict[str, list[float]] = {"small": [], "huge": []}
            refused = None
            for i, data in timing.alternation(("small", "huge"), repeats):
                connection, table = prepared[data]
                plan = plan_query(sql, rules, row_counts({"t": table}))
                with timing.thread_time_into(timed[data]):
                    result = engine.execute_plan(connection, plan, 100, TableStatistics(connection, {}, f"{data}{i}"))
                refused = result.refused
            if refused is not None:
                out[name] = f"refused: {refused[0]}"
            else:
                out[name] = {d: timing.ns_per_row(v, ROWS) for d, v in timed.items()}
        for connection, _ in prepared.values():
            connection.close()
    print(json.dumps(out))


def main(trees: list[str], rounds: int, repeats: int) -> None:
    print(f"start loadavg {timing.loadavg()}")
    runs = timing.run_trees(trees, rounds, [sys.executable, str(Path(__file__).resolve()), "--worker", str(repeats)])
    print(f"rows {ROWS}, rounds {rounds} x repeats {repeats}, end loadavg {timing.loadavg()}")
    for name, tree, results in timing.per_tree(runs, QUERIES):
        if isinstance(results[0], str):
            print(f"  {name:26} {tree:18} {results[0]}")
            continue
        s, h = timing.medians(results, "small", "huge")
        print(f"  {name:26} {tree:18} small {s:8.1f}  huge {h:8.1f} ns/row  ({h / s:5.2f}x)")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(int(sys.argv[2]))
    else:
        parser = argparse.ArgumentParser(description="dim15: per-row cost of operations on wide DECIMAL dimensions")
        parser.add_argument("--ops", action="store_true", help="raw DuckDB per-operation timing (this tree)")
        timing.tree_options(parser, "/tmp/dim15-main .", rounds=4)
        options = parser.parse_args()
        if options.ops:
            ops(options.repeats)
        else:
            main(options.trees, options.rounds, options.repeats)
