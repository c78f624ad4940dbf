"""Red team red13 (session 13): does the summary path's time depend on what the buyer's filter selects?

One version (a DATE dimension d over 1990-1999, a VARCHAR dimension g of 50 values, an integer h of 10, an
integer measure m, one unit per 4 rows), three filters of the same shape on one run: a value no row holds, a
value one row holds, and a value many rows hold; for the year range (`d >= DATE 'Y-01-01' AND d < DATE
'Y+1-01-01'`, cal13's one-period pin) a year outside the data, a year one row holds, and a year many rows hold.
Each is timed as the whole engine call
(execute_summary, or execute_cube where the tree has it: the strategy the service chooses) and as the summary
statement alone (`summary.lookup`, or `summary.cube`), thread CPU time, alternated, medians of REPEATS; ratios
against the many-rows filter. Run from a tree with PYTHONPATH pointing at it (the same venv for every tree):

    PYTHONPATH=<tree> .venv/bin/python -m bench.red13_summary_timing [REPEATS]
    PYTHONPATH=<tree> .venv/bin/python -m bench.red13_summary_timing --pairs 300

`--pairs N`: the filter matching nothing against the one matching one hidden row only (the same empty answer),
N alternated pairs (the order swapped every pair), the cube's whole call and execute_single's (seeded) in each:
medians, their ratio, and the share of pairs where the one-row side was slower (0.5 when nothing tells them apart).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb

from products.storage import table_statistics
from sandbox import summary
from sandbox.engine import EngineLimits, TableStatistics, open_locked
from sandbox.policy import ProtectionPolicy
from sandbox.service import TableFile, files_of, plan_query, row_counts, strategy

ROWS = 200_000
REPEATS = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 41
TYPES = {"u": "VARCHAR", "g": "VARCHAR", "h": "INTEGER", "d": "DATE", "m": "INTEGER"}
ROLES = {"u": "privacy_unit", "g": "dimension", "h": "dimension", "d": "dimension", "m": "measure"}
POLICY = ProtectionPolicy.model_validate(
    {
        "min_group_size": 5,
        "tables": {
            "t": {
                "privacy_unit": "u",
                "dimensions": ["g", "h", "d"],
                "measures": ["m"],
                "hidden": [],
                "bounds": {"m": {"min": 0, "max": 1000}},
            }
        },
    }
)
YEAR = "SELECT g, count(*) AS c, sum(m) AS s FROM t WHERE d >= DATE '{}-01-01' AND d < DATE '{}-01-01' GROUP BY g"
QUERIES = {
    "pin": {
        "none": "SELECT h, count(*) AS c, sum(m) AS s FROM t WHERE g = 'absent' GROUP BY h",
        "one": "SELECT h, count(*) AS c, sum(m) AS s FROM t WHERE g = 'lonely' GROUP BY h",
        "many": "SELECT h, count(*) AS c, sum(m) AS s FROM t WHERE g = 'g7' GROUP BY h",
    },
    "year": {
        "none": YEAR.format(1980, 1981),
        "one": YEAR.format(2005, 2006),
        "many": YEAR.format(1994, 1995),
    },
}


def _write(path: Path) -> None:
    connection = duckdb.connect()
    connection.execute(
        f"""COPY (
            SELECT 'u' || (i // 4) AS u, 'g' || (i % 50) AS g, CAST(i % 10 AS INTEGER) AS h,
                   DATE '1990-01-01' + CAST(i % 3650 AS INTEGER) AS d, CAST(i % 1000 AS INTEGER) AS m
            FROM range({ROWS - 1}) r(i)
            UNION ALL SELECT 'lonely-unit', 'lonely', 3, DATE '2005-06-01', 1
        ) TO '{path}' (FORMAT parquet)"""
    )
    connection.close()


def pairs(count: int) -> None:
    from sandbox import engine

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "t.parquet"
        _write(path)
        stats = table_statistics(path, list(TYPES), ROLES, {"m": (0.0, 1000.0)})
        tables = {"t": TableFile(name="t", path=path, row_count=ROWS, statistics=stats)}
        files = {name: Path(file) for name, file in files_of(tables)}
        connection = open_locked(files, EngineLimits(threads=1), stats["statistics_free"])
        table_stats = TableStatistics(connection, {}, "v")
        for family in ("pin", "year"):
            plans = {n: plan_query(q, POLICY, row_counts(tables)) for n, q in QUERIES[family].items() if n != "many"}
            cubes = {n: summary.cube(p, stats) or "" for n, p in plans.items()}
            timed: dict[tuple[str, str], list[float]] = {(n, way): [] for n in plans for way in ("cube", "single")}
            for i in range(count):
                for n in ("none", "one") if i % 2 == 0 else ("one", "none"):
                    started = time.thread_time()
                    engine.execute_cube(connection, plans[n], 100, table_stats, cubes[n])
                    timed[(n, "cube")].append(time.thread_time() - started)
                    started = time.thread_time()
                    engine.execute_single(connection, plans[n], 100, table_stats)
                    timed[(n, "single")].append(time.thread_time() - started)
            for way in ("cube", "single"):
                none, one = timed[("none", way)], timed[("one", way)]
                slower = sum(1 for a, b in zip(none, one, strict=True) if b > a) / count
                low, high = statistics.median(none), statistics.median(one)
                print(
                    f"{family:5} {way:6} none {low * 1000:.3f} ms one {high * 1000:.3f} ms ratio {high / low:.3f} "
                    f"one slower in {slower:.2f}"
                )
        connection.close()


def main() -> None:
    from sandbox import engine

    cube = getattr(summary, "cube", None)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "t.parquet"
        _write(path)
        stats = table_statistics(path, list(TYPES), ROLES, *([{"m": (0.0, 1000.0)}] if cube else []))
        tables = {"t": TableFile(name="t", path=path, row_count=ROWS, statistics=stats)}
        files = {name: Path(file) for name, file in files_of(tables)}
        connection = open_locked(files, EngineLimits(threads=1), stats["statistics_free"])
        table_stats = TableStatistics(connection, {}, "v")
        for family, queries in QUERIES.items():
            runs: dict[str, list[float]] = {name: [] for name in queries}
            alone: dict[str, list[float]] = {name: [] for name in queries}
            shown: dict[str, tuple[int, int]] = {}
            exact: dict[str, list[float]] = {name: [] for name in queries}
            prepared = {}
            for name, sql in queries.items():
                plan = plan_query(sql, POLICY, row_counts(tables))
                chosen = strategy(plan, tables)
                text = (cube(plan, stats) if chosen == "cube" else summary.lookup(plan, stats)) or ""
                prepared[name] = (plan, chosen, text)
                if not text:
                    print(f"{sql}: strategy {chosen}, no summary statement")
                    break
            else:
                prepared = prepared  # every query of the family takes the summary
            if len(prepared) != len(queries) or not all(t for _, _, t in prepared.values()):
                continue
            for _ in range(REPEATS):
                for name, (plan, chosen, text) in prepared.items():
                    started = time.thread_time()
                    if chosen == "cube":
                        result = engine.execute_cube(connection, plan, 100, table_stats, text)
                    else:
                        result = engine.execute_summary(connection, plan, 100, table_stats, text)
                    runs[name].append(time.thread_time() - started)
                    shown[name] = (result.groups, result.suppressed_groups)
                    started = time.thread_time()
                    engine.execute_single(connection, plan, 100, table_stats)
                    exact[name].append(time.thread_time() - started)
                    started = time.thread_time()
                    connection.execute(text)
                    connection.fetchall()
                    alone[name].append(time.thread_time() - started)
            many_run = statistics.median(runs["many"])
            many_alone = statistics.median(alone["many"])
            none_exact = statistics.median(exact["none"])
            for name, (_, chosen, _) in prepared.items():
                run_ms = statistics.median(runs[name]) * 1000
                alone_ms = statistics.median(alone[name]) * 1000
                exact_ms = statistics.median(exact[name]) * 1000
                print(
                    f"{family:5} {name:5} {chosen:8} call {run_ms:7.3f} ms ({run_ms / 1000 / many_run:5.3f}) "
                    f"single {exact_ms:7.3f} ms (/none {exact_ms / 1000 / none_exact:5.3f}) "
                    f"statement {alone_ms:7.3f} ms ({alone_ms / 1000 / many_alone:5.3f}) "
                    f"groups, suppressed {shown[name]}"
                )
        connection.close()
    sys.stdout.flush()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--pairs"]:
        pairs(int(sys.argv[2]))
    else:
        main()
