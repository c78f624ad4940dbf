"""Issue 9, branch wide15: does a sum's time depend on how large the hidden values of a DECIMAL measure are?

Per case, two product versions built as the build does (products.storage: write_table from an uploaded Parquet
file, check_bounds, and fast_measures where the tree has it, then table_statistics), identical but for the measure's
values: `small` (unscaled integers under 2^53) and `huge` (within the same declared bounds, unscaled above 2^53).
A buyer's `SELECT g, sum(m) ... GROUP BY g` is planned (sandbox.service.plan_query) and run as the worker runs it
(engine.execute_plan on the locked connection, one thread), and the aggregate alone (`sum(TRY_CAST(m AS DOUBLE))`
over the stored file) is timed too: thread CPU time, medians, per row.

Side by side, in one run, alternating the trees every round (each round a fresh process per tree, the order
swapped every round):

    .venv/bin/python bench/wide15_decimal_timing.py --trees /tmp/wide15-main . [--rounds 6] [--repeats 9]

Data are generated at run time. `--build-cost [ROWS]` (this tree only): the build's extra rewrite, against the
write of the upload it follows. `--dimension [REPEATS]` (this tree only): the same question for a DECIMAL
dimension a buyer casts to DOUBLE in WHERE, which wide15 leaves open.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__:
    from bench import timing
else:  # run by path, as the workers are: this file's folder is sys.path[0] (see bench/timing.py)
    import timing  # type: ignore[no-redef]

ROWS = 400_000
CASES = {
    # name: (uploaded type, declared max, small base, huge base); each row adds its number (distinct values), and
    # huge * 10^scale > 2^53 > small * 10^scale
    "decimal(38,6)": ("DECIMAL(38, 6)", 1e11, "12.345678", "12345678901.234567"),
    "decimal(38,10)": ("DECIMAL(38, 10)", 1e8, "12.3456789012", "98765432.1234567891"),
    "decimal(18,6)": ("DECIMAL(18, 6)", 1e11, "12.345678", "12345678901.234567"),
    # MAX_BOUND (1e12) keeps a DECIMAL(38, 2)'s unscaled integers under 1e14 < 2^53: no slow value exists.
    "decimal(38,2)": ("DECIMAL(38, 2)", 1e12, "12.34", "999999000000.99"),
}
QUERY = "SELECT g, sum(m) AS s FROM t GROUP BY g"


def _build(directory: Path, name: str, type_: str, value: str, high: float) -> tuple[object, dict, str]:
    """A version's table built from an uploaded Parquet file whose measure is `value` plus the row's number
    (distinct values: over a dictionary DuckDB would cast each distinct value once)."""
    column = f"CAST(CAST('{value}' AS {type_}) + i AS {type_})"
    upload = timing.write_upload(directory / f"{name}-upload.parquet", ROWS, column, "m")
    roles = {"u": "privacy_unit", "g": "dimension", "m": "measure"}
    table, stats, stored = timing.stored_table(upload, directory / name / "t.parquet", roles, {"m": (0, high)})
    kind = {c.name: c.type for c in stored.columns}["m"]
    return table, stats, kind


def worker(repeats: int) -> None:
    """One tree's times, as JSON on stdout: {case: {"type": stored type, "<data> <way>": ns per row}}."""
    from products import storage
    from sandbox import engine
    from sandbox.engine import TableStatistics
    from sandbox.service import plan_query, row_counts

    print(f"products.storage from {storage.__file__}", file=sys.stderr)
    out: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory() as temporary:
        directory = Path(temporary)
        for case, (type_, high, small, huge) in CASES.items():
            policy = timing.policy(["g"], {"m": (0, high)})
            result: dict[str, object] = {}
            prepared = {}
            for data, value in (("small", small), ("huge", huge)):
                label = f"{case}-{data}".replace("(", "").replace(")", "").replace(",", "-")
                table, stats, kind = _build(directory, label, type_, value, high)
                connection = timing.locked(table, stats)
                plan = plan_query(QUERY, policy, row_counts({"t": table}))
                prepared[data] = (connection, plan, TableStatistics(connection, {}, data), table.path)
                result["type"] = kind
            timed: dict[str, list[float]] = {f"{d} {w}": [] for d in prepared for w in ("engine", "cast")}
            for _, data in timing.alternation(("small", "huge"), repeats):
                connection, plan, table_stats, _ = prepared[data]
                with timing.thread_time_into(timed[f"{data} engine"]):
                    engine.execute_plan(connection, plan, 100, table_stats)
                with timing.thread_time_into(timed[f"{data} cast"]):
                    connection.execute("SELECT g, sum(TRY_CAST(m AS DOUBLE)) FROM t GROUP BY g").fetchall()
            for key, values in timed.items():
                result[key] = timing.ns_per_row(values, ROWS)
            for connection, *_ in prepared.values():
                connection.close()
            out[case] = result
    print(json.dumps(out))


def build_cost(rows: int, rounds: int) -> None:
    """The build's extra cost: write_table + check_bounds of an uploaded Parquet file with a DECIMAL(38, 2) measure
    (and a DECIMAL(38, 6) one, bounds 1e11: DOUBLE), then fast_measures' rewrite; wall seconds, medians."""
    import duckdb

    from products import storage
    from sandbox.policy import MeasureBounds

    timed: dict[str, list[float]] = {"write_table + check_bounds": [], "fast_measures": []}
    with tempfile.TemporaryDirectory() as temporary:
        directory = Path(temporary)
        upload = directory / "upload.parquet"
        with duckdb.connect() as connection:
            connection.execute(
                f"COPY (SELECT 'u' || (i // 4) AS u, 'g' || (i % 20) AS g, CAST(i / 100 AS DECIMAL(38, 2)) AS a, "
                f"CAST(i / 7 AS DECIMAL(38, 6)) AS b FROM range({rows}) r(i)) TO '{upload}' (FORMAT parquet)"
            )
        bounds = {"a": MeasureBounds(min=0, max=1e7), "b": MeasureBounds(min=0, max=1e11)}
        for i in range(rounds):
            started = time.perf_counter()
            stored = storage.write_table(
                upload, "parquet", upload.name, ["u", "g", "a", "b"], directory / f"{i}.parquet"
            )
            storage.check_bounds(stored, bounds)
            timed["write_table + check_bounds"].append(time.perf_counter() - started)
            started = time.perf_counter()
            stored = storage.fast_measures(stored, ["a", "b"], bounds)
            timed["fast_measures"].append(time.perf_counter() - started)
            types = {c.name: c.type for c in stored.columns}
    print(f"rows {rows}, rounds {rounds}, stored a {types['a']} b {types['b']}")
    for name, values in timed.items():
        print(f"{name:28} median {statistics.median(values):.3f} s (min {min(values):.3f})")


def dimension(repeats: int) -> None:
    """Open, not fixed by wide15: a DECIMAL(38, 6) DIMENSION `d` (no bounds; its values are shown, so the build keeps
    its type) read by a buyer's `WHERE CAST(d AS DOUBLE) > 1.5` (the sandbox's TRY_CAST) on every row, hidden ones
    included: small against huge values, as for the measures; engine path, thread CPU, ns per row."""
    from sandbox.engine import TableStatistics
    from sandbox.service import plan_query, row_counts

    policy = timing.policy(["g", "d"])
    sql = "SELECT g, count(*) AS c FROM t WHERE CAST(d AS DOUBLE) > 1.5 GROUP BY g"
    prepared = {}
    with tempfile.TemporaryDirectory() as temporary:
        directory = Path(temporary)
        for data, value in (("small", "12.345678"), ("huge", "12345678901.234567")):
            column = f"CAST(CAST('{value}' AS DECIMAL(38, 6)) + i AS DECIMAL(38, 6))"
            upload = timing.write_upload(directory / f"{data}.parquet", ROWS, column, "d")
            roles = {"u": "privacy_unit", "g": "dimension", "d": "dimension"}
            table, stats, _ = timing.stored_table(upload, directory / data / "t.parquet", roles)
            connection = timing.locked(table, stats)
            plan = plan_query(sql, policy, row_counts({"t": table}))
            prepared[data] = (connection, plan, TableStatistics(connection, {}, data))
        timed = timing.engine_alternated(prepared, repeats)
        for connection, *_ in prepared.values():
            connection.close()
    small, huge = (timing.ns_per_row(timed[d], ROWS) for d in ("small", "huge"))
    print(f"dimension DECIMAL(38,6), {sql}: small {small:.2f} huge {huge:.2f} ns/row ({huge / small:.2f}x)")


def main(trees: list[str], rounds: int, repeats: int) -> None:
    runs = timing.run_trees(trees, rounds, [sys.executable, str(Path(__file__).resolve()), "--worker", str(repeats)])
    print(f"rows {ROWS}, rounds {rounds} x repeats {repeats}, loadavg {timing.loadavg()}")
    for case, tree, results in timing.per_tree(runs, CASES):
        first = results[0]
        cells = []
        for way in ("engine", "cast"):
            small, huge = timing.medians(results, f"small {way}", f"huge {way}")
            cells.append(f"{way} small {small:7.2f} huge {huge:7.2f} ns/row ({huge / small:5.2f}x)")
        print(f"{case:15} {tree:20} stored {first['type']:14} " + "  ".join(cells))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(int(sys.argv[2]))
    elif sys.argv[1:2] == ["--dimension"]:
        dimension(int(sys.argv[2]) if len(sys.argv) > 2 else 21)
    elif sys.argv[1:2] == ["--build-cost"]:
        build_cost(int(sys.argv[2]) if len(sys.argv) > 2 else 2_000_000, 5)
    else:
        parser = argparse.ArgumentParser(description="wide15: sums over small and huge hidden DECIMAL values")
        timing.tree_options(parser, "/tmp/wide15-main .", rounds=6)
        options = parser.parse_args()
        main(options.trees, options.rounds, options.repeats)
