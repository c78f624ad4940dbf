# ruff: noqa: E501
"""Per-row cost of what the sandbox still allows, over cheap against expensive values of the same type (red16).

Issue 9: nothing a buyer sees, response times included, may depend on hidden rows. sandbox.binding refuses every
cast that can fail (unsafe_cast); this measures whether an ALLOWED cast or function costs DuckDB more per row for
some values than for others of the same type. Each case is one expression over a column `x` of one type, and two
tables of N rows: every row the "cheap" value, or every row the "expensive" one. Timed on one DuckDB thread, in
Parquet files read as the sandbox reads them (its disabled optimizers, no page index), best of R runs,
alternating the two tables; the scan's own cost (`sum(CAST((x IS NOT NULL) AS BIGINT))`) is subtracted to give the expression's per-row cost. Data generated at run time.

    python -m bench.red16_value_costs [--rows 2000000] [--repeats 5] [--only NAME]
    python -m bench.red16_value_costs --end-to-end TREE [TREE ...] [--rows 200000] [--repeats 7]

`--end-to-end`: buyers' filters that pick a value out by time, planned by each source tree's own sandbox
(plan_query, the binder's check included) and run as the worker runs them (engine.execute_plan on the locked
connection, one thread), over a column holding the cheap value on every row or the expensive one; each tree in
its own process, trees alternated. Prints ns per row for both and the ratio, or the refusal.

Prints one line per case: ns per row cheap, expensive, and the ratio (expensive / cheap) net of the scan.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import duckdb

from sandbox.engine import DISABLED_OPTIMIZERS

if __package__:
    from bench import timing
else:  # run by path: this file's folder is sys.path[0] (see bench/timing.py)
    import timing  # type: ignore[no-redef]

# name: (column type, cheap value SQL, expensive value SQL, expression over x whose result is consumed)
# fmt: off
CASES: dict[str, tuple[str, str, str, str]] = {
    "DOUBLE to VARCHAR (1.0 / 0.1234567890123457)": ("DOUBLE", "1.0", "0.1234567890123457", "length(CAST(x AS VARCHAR))"),
    "DOUBLE to VARCHAR (1.0 / 1.7e308)": ("DOUBLE", "1.0", "1.7e308", "length(CAST(x AS VARCHAR))"),
    "DOUBLE to VARCHAR (1.0 / 5e-324)": ("DOUBLE", "1.0", "5e-324", "length(CAST(x AS VARCHAR))"),
    "FLOAT to VARCHAR (1.0 / 0.12345678)": ("FLOAT", "1.0", "0.12345678", "length(CAST(x AS VARCHAR))"),
    "BIGINT to VARCHAR (1 / 9e18)": ("BIGINT", "1", "9000000000000000007", "length(CAST(x AS VARCHAR))"),
    "INTEGER to VARCHAR (1 / -2147483647)": ("INTEGER", "1", "-2147483647", "length(CAST(x AS VARCHAR))"),
    "UBIGINT to VARCHAR (1 / 1.8e19)": ("UBIGINT", "1", "18000000000000000007", "length(CAST(x AS VARCHAR))"),
    "DECIMAL(18,2) to VARCHAR (1.00 / 9999999999999999.99)": (
        "DECIMAL(18,2)", "1.00", "9999999999999999.99", "length(CAST(x AS VARCHAR))"
    ),
    "DECIMAL(9,2) to VARCHAR (1.00 / 9999999.99)": ("DECIMAL(9,2)", "1.00", "9999999.99", "length(CAST(x AS VARCHAR))"),
    "DECIMAL(9,2) to DOUBLE (1.00 / 9999999.99)": ("DECIMAL(9,2)", "1.00", "9999999.99", "CAST(x AS DOUBLE) > 0"),
    "BIGINT to DOUBLE (1 / 9e18+7)": ("BIGINT", "1", "9000000000000000007", "CAST(x AS DOUBLE) > 0"),
    "DATE to VARCHAR (2024-01-01 / 5881580-07-10)": (
        "DATE", "DATE '2024-01-01'", "DATE '5881580-07-10'", "length(CAST(x AS VARCHAR))"
    ),
    "DATE to VARCHAR (2024-01-01 / 1000-01-01 BC)": (
        "DATE", "DATE '2024-01-01'", "DATE '1000-01-01 (BC)'", "length(CAST(x AS VARCHAR))"
    ),
    "DATE to VARCHAR (2024-01-01 / infinity)": ("DATE", "DATE '2024-01-01'", "DATE 'infinity'", "length(CAST(x AS VARCHAR))"),
    "TIMESTAMP to VARCHAR (midnight / .123456)": (
        "TIMESTAMP", "TIMESTAMP '2024-01-01'", "TIMESTAMP '2024-01-01 12:34:56.123456'", "length(CAST(x AS VARCHAR))"
    ),
    "TIMESTAMP to VARCHAR (2024 / 294246 AD)": (
        "TIMESTAMP", "TIMESTAMP '2024-01-01'", "TIMESTAMP '294246-01-01 12:34:56.123456'", "length(CAST(x AS VARCHAR))"
    ),
    "TIMESTAMP to DATE (2024 / 294246 AD)": (
        "TIMESTAMP", "TIMESTAMP '2024-01-01'", "TIMESTAMP '294246-01-01 12:34:56.123456'", "year(CAST(x AS DATE))"
    ),
    "INTERVAL to VARCHAR (1 day / mixed)": (
        "INTERVAL", "INTERVAL 1 DAY", "INTERVAL '123 years 11 months 27 days 12:34:56.123456'", "length(CAST(x AS VARCHAR))"
    ),
    "BOOLEAN to VARCHAR (true / false)": ("BOOLEAN", "true", "false", "length(CAST(x AS VARCHAR))"),
    "lower (8 ASCII / 8 non-ASCII chars)": ("VARCHAR", "'abcdefgh'", "'ÀÉÎÕÜÇÑÅ'", "length(lower(x))"),
    "upper (8 ASCII / 8 non-ASCII chars)": ("VARCHAR", "'abcdefgh'", "'àéîõüçñå'", "length(upper(x))"),
    "lower (8 / 200 ASCII chars)": ("VARCHAR", "'abcdefgh'", "repeat('abcdefgh', 25)", "length(lower(x))"),
    "length (8 / 200 ASCII chars)": ("VARCHAR", "'abcdefgh'", "repeat('abcdefgh', 25)", "length(x) > 0"),
    "length (8 ASCII / 8 non-ASCII chars)": ("VARCHAR", "'abcdefgh'", "'àéîõüçñå'", "length(x) > 0"),
    "replace (8 / 200 chars)": ("VARCHAR", "'abcdefgh'", "repeat('abcdefgh', 25)", "length(replace(x, 'a', 'b'))"),
    "LIKE '%z%' (8 / 200 chars)": ("VARCHAR", "'abcdefgh'", "repeat('abcdefgh', 25)", "x LIKE '%z%'"),
    "LIKE '%a%a%a%z' (8 / 200 chars)": ("VARCHAR", "'abcdefgh'", "repeat('abcdefgh', 25)", "x LIKE '%a%a%a%z'"),
    "ILIKE '%Z%' (8 ASCII / 8 non-ASCII)": ("VARCHAR", "'abcdefgh'", "'àéîõüçñå'", "x ILIKE '%Z%'"),
    "= 'abcdefgh' (short / 200 chars)": ("VARCHAR", "'abcdefgh'", "repeat('abcdefgh', 25)", "x = 'abcdefgh'"),
    "substring (8 / 200 non-ASCII)": ("VARCHAR", "'abcdefgh'", "repeat('àéîõüçñå', 25)", "length(substring(x, 150, 3))"),
    "concat (8 / 200 chars)": ("VARCHAR", "'abcdefgh'", "repeat('abcdefgh', 25)", "length(x || 'z')"),
    "trim (8 / 200 spaces)": ("VARCHAR", "'abcdefgh'", "'a' || repeat(' ', 199)", "length(trim(x))"),
    "date_trunc month DATE (2024 / 5881580 AD)": (
        "DATE", "DATE '2024-01-01'", "DATE '5881580-07-10'", "year(TRY(date_trunc('month', x)))"
    ),
    "date_trunc month DATE (2024 / 294246 AD)": (
        "DATE", "DATE '2024-01-01'", "DATE '294246-01-01'", "year(TRY(date_trunc('month', x)))"
    ),
    "date_trunc month DATE (2024 / infinity)": (
        "DATE", "DATE '2024-01-01'", "DATE 'infinity'", "year(TRY(date_trunc('month', x)))"
    ),
    "date_trunc month TIMESTAMP (2024 / 294246 AD)": (
        "TIMESTAMP", "TIMESTAMP '2024-01-01'", "TIMESTAMP '294246-01-01'", "year(TRY(date_trunc('month', x)))"
    ),
    "extract year DATE (2024 / 5881580 AD)": ("DATE", "DATE '2024-01-01'", "DATE '5881580-07-10'", "extract(year FROM x) > 0"),
    "extract epoch DATE (2024 / 5881580 AD)": ("DATE", "DATE '2024-01-01'", "DATE '5881580-07-10'", "extract(epoch FROM x) > 0"),
    "dayofweek DATE (2024 / infinity)": ("DATE", "DATE '2024-01-01'", "DATE 'infinity'", "dayofweek(x)"),
    "DOUBLE multiply (1.0 / subnormal 1e-310)": ("DOUBLE", "1.0", "1e-310", "x * 0.5 > 0"),
    "DOUBLE multiply (1.0 / 1e-160, product subnormal)": ("DOUBLE", "1.0", "1e-160", "x * 1e-160 > 0"),
    "sqrt (1.0 / subnormal)": ("DOUBLE", "2.0", "1e-310", "sqrt(x) > 0"),
    "ln (2.0 / subnormal)": ("DOUBLE", "2.0", "1e-310", "ln(x) < 1e300"),
    "pow (2.0 / 1.0000001)": ("DOUBLE", "2.0", "1.0000001", "pow(x, 1.5) > 0"),
    "round(x, 2) (1.0 / 1e300)": ("DOUBLE", "1.0", "1e300", "round(x, 2) > 0"),
    "round(x, 2) (1.0 / 0.123456789)": ("DOUBLE", "1.0", "0.123456789", "round(x, 2) > 0"),
    "floor (1.0 / 1e300)": ("DOUBLE", "1.5", "1e300", "floor(x) > 0"),
    "DOUBLE / (1.0 / subnormal)": ("DOUBLE", "1.0", "1e-310", "x / 3.0 > 0"),
    "DOUBLE % (7.0 / 1e300)": ("DOUBLE", "7.0", "1e300", "x % 3.0 >= 0"),
    "the sandbox's x - 3 * trunc(x / 3) (7.0 / 1e300)": ("DOUBLE", "7.0", "1e300", "x - 3.0 * trunc(x / 3.0) >= 0"),
}
# fmt: on


def _vary(kind: str, value: str) -> str:
    """`value`, different on (nearly) every row `i` but of the same class (the same length, magnitude and number of
    digits), so that no vector is one value (and the files are written without dictionaries, DICTIONARY_SIZE_LIMIT 1:
    DuckDB computes an expression over a dictionary-encoded page once per dictionary entry, not per row)."""
    if kind == "VARCHAR":  # the last 7 characters replaced by the row's number (non-ASCII kept non-ASCII)
        return f"left({value}, length({value}) - 7) || lpad(CAST(i % 9999999 AS VARCHAR), 7, right({value}, 1))"
    if kind == "DATE":
        return f"{value} - CAST(i % 20 AS INTEGER)" if "infinity" not in value else value
    if kind == "TIMESTAMP":
        return f"{value} - to_days(CAST(i % 20 AS INTEGER))"
    if kind == "INTERVAL":
        return f"{value} + to_microseconds(i % 1000)" if "12:34" in value else f"{value} + to_days(i % 1000)"
    if kind == "BOOLEAN":
        return value
    small = abs(float(value)) < 1000
    if kind in ("DOUBLE", "FLOAT"):  # small values: whole numbers; others: a change in the last bits
        if small and float(value) == int(float(value)):
            return f"CAST({value} AS DOUBLE) + i % 1000"
        return f"CAST({value} AS DOUBLE) * (1 + (i % 1000) * 2.220446049250313e-16)"
    # integers and decimals: small values up, large ones down (towards zero) by the row's number
    step = f"CAST(i % 7 AS {kind})"
    return f"CAST({value} AS {kind}) + {step}" if small else f"CAST({value} AS {kind}) - {step} * sign({value})"


def _table(connection: duckdb.DuckDBPyConnection, path: str, kind: str, value: str, rows: int) -> None:
    connection.execute(
        f"COPY (SELECT CAST({_vary(kind, value)} AS {kind}) AS x FROM range({rows}) t(i)) "
        f"TO '{path}' (FORMAT parquet, DICTIONARY_SIZE_LIMIT 1)"
    )


def _time(connection: duckdb.DuckDBPyConnection, sql: str) -> float:
    start = time.perf_counter()
    connection.execute(sql).fetchall()
    return time.perf_counter() - start


def measure(name: str, rows: int, repeats: int) -> tuple[float, float, float]:
    kind, cheap, expensive, expression = CASES[name]
    directory = tempfile.mkdtemp(prefix="red16-")
    writer = duckdb.connect(":memory:")
    for table, value in (("cheap", cheap), ("expensive", expensive)):
        _table(writer, os.path.join(directory, f"{table}.parquet"), kind, value, rows)
    writer.close()
    # As the sandbox's locked connection: the optimizers that read statistics off, no page index, one thread.
    connection = duckdb.connect(":memory:", config={"threads": 1, "disabled_optimizers": DISABLED_OPTIMIZERS})
    connection.execute("SET parquet_use_page_index = false")
    for table in ("cheap", "expensive"):
        connection.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{directory}/{table}.parquet')")
    best: dict[str, float] = {}
    for _ in range(repeats):
        for table in ("cheap", "expensive"):  # alternated
            for label, sql in (
                ("scan", f"SELECT sum(CAST((x IS NOT NULL) AS BIGINT)) FROM {table}"),
                ("expr", f"SELECT sum(CAST(({expression}) AS BIGINT)) FROM {table}"),
            ):
                key = f"{table}/{label}"
                best[key] = min(best.get(key, float("inf")), _time(connection, sql))
    connection.close()
    shutil.rmtree(directory)
    cheap_ns = (best["cheap/expr"] - best["cheap/scan"]) / rows * 1e9
    expensive_ns = (best["expensive/expr"] - best["expensive/scan"]) / rows * 1e9
    return cheap_ns, expensive_ns, expensive_ns / max(cheap_ns, 0.05)


# name: (column type, cheap value, expensive value, the buyer's filter over dimension d)
END_TO_END: dict[str, tuple[str, str, str, str]] = {
    "% of a huge product (red16)": ("DOUBLE", "40.0", "41.0", "((d - 40) * 1e300) % 3.0 >= -1e300"),
    "% of a huge product, INTEGER d": ("INTEGER", "40", "41", "((d - 40) * 1e300) % 3 >= -1e300"),
    "redx15 BIGINT to INTEGER": ("BIGINT", "7", "9000000000", "coalesce(CAST(d AS INTEGER), 0) >= 0"),
    "redx15 DOUBLE to INTEGER": ("DOUBLE", "7", "9e12", "coalesce(CAST(d AS INTEGER), 0) >= 0"),
    "redx15 DECIMAL(18,2) to INTEGER": ("DECIMAL(18,2)", "7", "9e12", "coalesce(TRY_CAST(d AS INTEGER), 0) >= 0"),
    "redx15 DECIMAL(18,2) to DECIMAL(9,2)": (
        "DECIMAL(18,2)",
        "7",
        "9e12",
        "coalesce(CAST(d AS DECIMAL(9, 2)), 0) >= 0",
    ),
    "redx15 arithmetic to INTEGER": ("INTEGER", "40", "41", "coalesce(CAST((d - 40) * 1e7 AS INTEGER), 0) >= 0"),
}


def end_to_end_worker(rows: int, repeats: int) -> None:
    """One tree (the current PYTHONPATH): JSON {case: [cheap ns/row, expensive ns/row] or "refused: code"}."""
    import json

    from sandbox import engine
    from sandbox.engine import EngineLimits, TableStatistics, open_locked
    from sandbox.errors import QueryRefused
    from sandbox.service import plan_query

    policy = timing.policy(["g", "d"])
    found: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as temporary:
        for case, (kind, cheap, expensive, condition) in END_TO_END.items():
            sql = f"SELECT g, count(*) AS c FROM t WHERE {condition} GROUP BY g"
            try:
                plan = plan_query(sql, policy, {"t": rows})
            except QueryRefused as refused:
                found[case] = f"refused: {refused.code}"
                continue
            prepared = {}
            for data, value in (("cheap", cheap), ("expensive", expensive)):
                path = os.path.join(temporary, f"{len(found)}-{data}.parquet")
                column = f"CAST({value} AS {kind})"
                timing.write_upload(Path(path), rows, column, "d", options="FORMAT parquet, DICTIONARY_SIZE_LIMIT 1")
                connection = open_locked({"t": Path(path)}, EngineLimits(threads=1))
                prepared[data] = (connection, TableStatistics(connection, {}, data))
            timed: dict[str, list[float]] = {"cheap": [], "expensive": []}
            answers = {}
            for _, data in timing.alternation(("cheap", "expensive"), repeats):
                connection, table_stats = prepared[data]
                with timing.thread_time_into(timed[data]):
                    done = engine.execute_plan(connection, plan, 100, table_stats)
                answers[data] = sorted(done.rows) if done.refused is None else done.refused
            for connection, _ in prepared.values():
                connection.close()
            assert answers["cheap"] == answers["expensive"], (case, answers)
            if isinstance(answers["cheap"], tuple):  # refused by the binder's check (engine.execute_plan)
                found[case] = f"refused: {answers['cheap'][0]}"
                continue
            found[case] = [timing.ns_per_row(timed[d], rows) for d in ("cheap", "expensive")]
    print(json.dumps(found))


def end_to_end(trees: list[str], rows: int, repeats: int, rounds: int = 3) -> None:
    import sys

    print(f"load before: {timing.loadavg().split()[:3]}; {rows} rows, {rounds} rounds x {repeats} runs a tree")
    command = [sys.executable, "-m", "bench.red16_value_costs", "--end-to-end-worker", str(rows), str(repeats)]

    def cwd(tree: str) -> str:  # the tree's own copy of this bench where it has one (`-m`: the cwd is sys.path[0])
        return os.path.abspath(tree) if os.path.exists(os.path.join(tree, "bench", "red16_value_costs.py")) else "."

    runs = timing.run_trees(trees, rounds, command, cwd=cwd)
    for case, tree, results in timing.per_tree(runs, END_TO_END):
        if isinstance(results[0], str):
            print(f"{case:40} {tree:28} {results[0]}")
            continue
        cheap, expensive = timing.medians(results, 0, 1)
        print(f"{case:40} {tree:28} cheap {cheap:8.1f} expensive {expensive:8.1f} ns/row ({expensive / cheap:5.2f}x)")
    print(f"load after: {timing.loadavg().split()[:3]}")


def main() -> None:
    import sys

    if sys.argv[1:2] == ["--end-to-end-worker"]:
        end_to_end_worker(int(sys.argv[2]), int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", default="", help="run only the cases whose name contains this")
    parser.add_argument("--end-to-end", nargs="+", metavar="TREE", help="source trees, e.g. /tmp/red16-main .")
    args = parser.parse_args()
    if args.end_to_end:
        end_to_end(args.end_to_end, args.rows if args.rows != 2_000_000 else 200_000, args.repeats)
        return
    print(f"load before: {timing.loadavg().split()[:3]}  duckdb {duckdb.__version__}, 1 thread, {args.rows} rows")
    print(f"{'case':58} {'cheap ns':>9} {'exp. ns':>9} {'ratio':>7}")
    for name in CASES:
        if args.only and args.only not in name:
            continue
        cheap_ns, expensive_ns, ratio = measure(name, args.rows, args.repeats)
        flag = "  <-- above 1.3x" if ratio > 1.3 else ""
        print(f"{name:58} {cheap_ns:9.2f} {expensive_ns:9.2f} {ratio:7.2f}{flag}", flush=True)
    print(f"load after: {timing.loadavg().split()[:3]}")


if __name__ == "__main__":
    main()
