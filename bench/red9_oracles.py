"""Red team red9 (issue 9, session 6): timing oracles beyond "one row against none".

    python -m bench.red9_oracles --runs 30 [--pairs NAME ...] [--ways single folded staged]

Every pair runs the SAME query text on two product versions that differ in ONE hidden fact: the file
with the one 'LEX' flight (A) against a control file where that flight goes to 'ZZZ' (B). Every answer
is the same on both sides (checked: a difference is printed, e.g. `timeout` against `[]`). A and B
alternate, each repeated; the medians of the wall time through one sandbox worker (engine as the
product would run it) and a Mann-Whitney p (bench/stats.py) are printed with the load average.

Pairs:
- `one-row`: the known step (sbx-phantom's), `SELECT dest, count(*) ... WHERE dest = 'LEX' GROUP BY dest`.
- `many-cells`: the same filter with 40 aggregates over a measure that has NULLs (each with its own
  per-cell threshold, a count(DISTINCT unit) FILTER): does the step grow with the number of aggregates?
- `join-fanout`: a second table (`weather`, 300,000 rows, fewer than flights so flights is the join's
  root, unit `station`, 3 origins) joined on an expression that maps every flight but the hidden one
  to a key no weather row has: the one hidden row meets 100,000 weather rows, each then reaching the
  aggregate and its distinct counts. One row's work times the fan-out.
- `join-fanout-groups`: the same, grouped by a weather dimension with 100,000 values: 100,000
  suppressed groups against none.
- `try-date`, `try-date-control`: date_trunc's TRY() slow path on the hidden row (see PAIRS).
- `join-fanout-cells`: the fan-out times 12 aggregates over a measure with NULLs, under the query's own
  budget (sandbox.service.budget_seconds): with the hidden row the answer is `timeout` (408), without
  it the (empty) answer comes in half a second. A status code, from one query.
- `many-cells`, `many-whole`, `many-cells-global`: the first-row step (`one-row`) times 40 aggregates,
  over a measure with NULLs (each its own per-cell count of units) or without.
- `join-bare-filter`, `join-left-kept` (sbx-joinkeys): the key as stored (`f.origin = w.origin`), the
  hidden row picked after the join by WHERE, or by a condition of the kept side in a LEFT JOIN's ON.
  Run with `--weather-rows 300` (100 per origin): every flight meets its origin's rows, so the join costs
  N × F whatever the filter. The `join-fanout*` and `join-range*` pairs are refused now (`disallowed_construct`).
- `join-skew` (sbx-fanout): the key as stored, `f.dest = w.dest`, where a third of weather's rows hold 'LEX'
  (100,000 with the default rows: a skewed key) and the rest values no flight has: the hidden flight's own
  key value meets 100,000 rows, the control's ('ZZZ') none. No filter at all. Refused now (`join_fanout`:
  weather's fan-out on dest is over MARKET_SANDBOX_MAX_JOIN_FANOUT), on both sides.
- `join-range`, `join-range-value`: a range condition instead (`w.hour_id < CASE ... END`); DuckDB
  then sorts both sides whatever the data, which hides the fan-out in a slow baseline.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

from bench.stats import mann_whitney
from products.storage import write_product_parquet
from sandbox.engine import EngineLimits, Execution
from sandbox.errors import QueryFailed, QueryRefused
from sandbox.policy import ProtectionPolicy
from sandbox.pool import Job, WorkerPool
from sandbox.service import budget_seconds, plan_query

POLICY = ProtectionPolicy.model_validate(
    {
        "min_group_size": 10,
        "tables": {
            "flights": {
                "privacy_unit": "tailnum",
                "dimensions": ["month", "day", "dest", "origin"],
                "measures": ["arr_delay", "distance"],
                "bounds": {"arr_delay": {"min": -100, "max": 1000}, "distance": {"min": 0, "max": 5000}},
                "hidden": [],
            },
            "weather": {
                "privacy_unit": "station",
                "dimensions": ["origin", "hour_id", "dest"],
                "measures": ["temp"],
                "bounds": {"temp": {"min": -50, "max": 50}},
                "hidden": [],
            },
        },
    }
)

MANY = ", ".join(f"sum(arr_delay * {1 + i / 1000}) AS s{i}" for i in range(40))
WEATHER_CELLS = ", ".join(f"sum(w.temp * {1 + i / 1000}) AS t{i}" for i in range(12))
MANY_WHOLE = ", ".join(f"sum(distance * {1 + i / 1000}) AS s{i}" for i in range(40))
MOST = ", ".join(f"sum(arr_delay * {1 + i / 1000}) AS s{i}" for i in range(400))
FANOUT_ON = "(CASE WHEN f.dest = 'LEX' THEN f.origin ELSE 'none' END) = w.origin"
RANGE_ON = "w.hour_id < (CASE WHEN f.dest = 'LEX' THEN 1000000000 ELSE -1 END)"
# A hidden VALUE: the one LEX flight is on day 17 (i = rows // 2); the fact side (A) matches `day > 10`,
# the control has no LEX flight. Run with `day > 20` to see the step vanish on the fact side too.
RANGE_VALUE_ON = "w.hour_id < (CASE WHEN f.dest = 'LEX' AND f.day > 10 THEN 1000000000 ELSE -1 END)"

PAIRS: dict[str, str] = {
    "one-row": "SELECT dest, count(*) AS n FROM flights WHERE dest = 'LEX' GROUP BY dest",
    "many-cells": f"SELECT dest, {MANY} FROM flights WHERE dest = 'LEX' GROUP BY dest",
    "many-whole": f"SELECT dest, {MANY_WHOLE} FROM flights WHERE dest = 'LEX' GROUP BY dest",
    "most-cells": f"SELECT dest, {MOST} FROM flights WHERE dest = 'LEX' GROUP BY dest",
    "many-cells-global": f"SELECT {MANY} FROM flights WHERE dest = 'LEX'",
    # date_trunc stays in TRY(); a CASE puts a date beyond the TIMESTAMP range on the hidden row only, so
    # DuckDB recomputes that row's vector row by row. Every row passes (`OR day > 0`): the same answer,
    # no first-row step. `try-date-control` is the same text with an in-range date (no failure).
    "try-date": "SELECT count(*) AS n FROM flights WHERE date_trunc('day', CASE WHEN dest = 'LEX' "
    "THEN DATE '300000-01-01' ELSE DATE '2013-01-01' END) IS NULL OR day > 0",
    "try-date-control": "SELECT count(*) AS n FROM flights WHERE date_trunc('day', CASE WHEN dest = 'LEX' "
    "THEN DATE '2013-01-02' ELSE DATE '2013-01-01' END) IS NULL OR day > 0",
    "join-fanout": f"SELECT count(*) AS n FROM flights f JOIN weather w ON {FANOUT_ON}",
    # sbx-joinkeys: the key as stored, the hidden row picked by a filter on the root (tested after the join):
    # every flight of an origin meets that origin's weather rows, whatever the filter.
    "join-bare-filter": "SELECT w.hour_id, count(*) AS n FROM flights f JOIN weather w ON f.origin = w.origin "
    "WHERE f.dest = 'LEX' GROUP BY w.hour_id",
    # sbx-joinkeys: a one-table condition of the kept side in a LEFT JOIN's ON: the hidden row's candidates
    # become joined rows, every other flight's a NULL row (tested on each candidate match).
    "join-left-kept": "SELECT w.hour_id, count(*) AS n FROM flights f LEFT JOIN weather w ON f.origin = w.origin "
    "AND f.dest = 'LEX' WHERE w.hour_id IS NOT NULL GROUP BY w.hour_id",
    "join-fanout-groups": f"SELECT w.hour_id, count(*) AS n FROM flights f JOIN weather w ON {FANOUT_ON} "
    "GROUP BY w.hour_id",
    # The fan-out times 12 aggregates over a measure with NULLs (a count of units per cell each), under the
    # query's own budget (5 s + 1 s per million rows): a timeout (408) against an answer.
    "join-fanout-cells": f"SELECT w.hour_id, {WEATHER_CELLS} FROM flights f JOIN weather w ON {FANOUT_ON} "
    "GROUP BY w.hour_id",
    # sbx-fanout: a bare key whose value on the hidden row is a skewed one (a third of weather holds 'LEX').
    "join-skew": "SELECT count(*) AS n FROM flights f JOIN weather w ON f.dest = w.dest",
    "join-range": f"SELECT count(*) AS n FROM flights f JOIN weather w ON {RANGE_ON}",
    "join-range-value": f"SELECT count(*) AS n FROM flights f JOIN weather w ON {RANGE_VALUE_ON}",
}


def _outcome(run: Callable[[], object]) -> object:
    """The answer, or the refusal's code (a timeout is an answer too: 408)."""
    try:
        return run()
    except QueryFailed as failed:
        return failed.code


def _refused_or(execution: Execution) -> object:
    """The refusal's code when the worker refused the plan before running it (sbx-fanout), else the answer."""
    return execution.refused[0] if execution.refused is not None else execution


def build(directory: Path, rows: int, hidden: str) -> Path:
    """A flights-like table (statistics-free, as versions are written): one flight to `hidden` ('LEX', or
    'ZZZ' for the control), 3 % of arr_delay NULL (cancelled flights), ~100 destinations, 3 origins."""
    path = directory / f"flights-{hidden}.parquet"
    with duckdb.connect() as connection:
        write_product_parquet(
            connection,
            f"""SELECT (i % 12) + 1 AS month, (i % 31) + 1 AS day,
                CASE WHEN i = {rows // 2} THEN '{hidden}'
                     ELSE 'D' || lpad(((i * 7919) % 100)::VARCHAR, 3, '0') END AS dest,
                ['EWR', 'JFK', 'LGA'][(i % 3) + 1] AS origin,
                'N' || ((i * 13) % 4000)::VARCHAR AS tailnum,
                CASE WHEN i % 33 = 0 THEN NULL ELSE ((i * 31) % 300) - 50 END AS arr_delay,
                (i * 17) % 4000 + 100 AS distance
                FROM range({rows}) t(i) ORDER BY month, day""",
            path,
        )
    return path


def build_weather(directory: Path, rows: int) -> Path:
    path = directory / "weather.parquet"
    with duckdb.connect() as connection:
        write_product_parquet(
            connection,
            f"""SELECT ['EWR', 'JFK', 'LGA'][(i % 3) + 1] AS origin, i // 3 AS hour_id,
                'S' || (i % 300)::VARCHAR AS station,
                CASE WHEN i % 3 = 0 THEN 'LEX' ELSE 'W' || (i % 1000)::VARCHAR END AS dest,
                CASE WHEN i % 10 = 0 THEN NULL ELSE (i % 80) - 30 END AS temp FROM range({rows}) t(i)""",
            path,
        )
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--rows", type=int, default=336_776)
    parser.add_argument("--weather-rows", type=int, default=300_000)
    parser.add_argument("--pairs", nargs="*", default=None)
    parser.add_argument("--ways", nargs="*", default=["single", "folded", "staged"])
    args = parser.parse_args(argv)
    limits = EngineLimits(threads=2, timeout_seconds=60, workers=1)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as directory:
        fact = build(Path(directory), args.rows, "LEX")
        control = build(Path(directory), args.rows, "ZZZ")
        weather = build_weather(Path(directory), args.weather_rows)
        pool = WorkerPool(limits)

        # The version's row counts, as run_query passes them: they choose the root of a join (the table
        # with the most rows is read whole; the other is LEFT JOINed to it).
        sizes = {"flights": args.rows, "weather": args.weather_rows}

        def job(sql: str, path: Path, way: str) -> Callable[[], object]:
            try:
                plan = plan_query(sql, POLICY, sizes if "weather" in sql else None)
            except QueryRefused as refused:  # sbx-joinkeys: refused before anything runs, on both sides
                code = refused.code
                return lambda: code
            tables = [("flights", str(path.resolve()))]
            if "weather" in sql:
                tables.append(("weather", str(weather.resolve())))
            return lambda: _refused_or(
                pool.run(
                    Job(
                        tables=tuple(sorted(tables)),
                        plan=plan,
                        max_rows=100_000,
                        single=way == "single",
                        folded=way == "folded",
                        statistics_free=True,
                        seconds=budget_seconds(sum(sizes[name] for name, _ in tables), limits),
                    )
                )
            )

        print(f"{'pair':20} {'way':7} {'A (fact) ms':>12} {'B ms':>8} {'A/B':>6} {'p':>8}  answer")
        for name, sql in PAIRS.items():
            if args.pairs and name not in args.pairs:
                continue
            for way in args.ways:
                runs = {"A": job(sql, fact, way), "B": job(sql, control, way)}
                answers = {side: _outcome(runs[side]) for side in ("A", "B")}  # warm-up, and the answers
                rows = {side: getattr(answers[side], "rows", answers[side]) for side in answers}
                if rows["A"] != rows["B"]:
                    print(f"{name}/{way}: ANSWERS DIFFER: {str(rows['A'])[:60]} / {str(rows['B'])[:60]}", flush=True)
                times: dict[str, list[float]] = {"A": [], "B": []}
                for i in range(args.runs):
                    for side in ("A", "B") if i % 2 == 0 else ("B", "A"):
                        started = time.perf_counter()
                        _outcome(runs[side])
                        times[side].append((time.perf_counter() - started) * 1000)
                a, b = statistics.median(times["A"]), statistics.median(times["B"])
                p = mann_whitney(times["A"], times["B"]).p
                print(f"{name:20} {way:7} {a:12.2f} {b:8.2f} {a / b:6.2f} {p:8.4f}  {str(rows['A'])[:40]}", flush=True)
        pool.close()
    load = " ".join(f"{v:.2f}" for v in (*load_before, *os.getloadavg()))
    print(f"load average (1, 5, 15 min) before and after: {load}; cores: {os.cpu_count()}")


if __name__ == "__main__":
    main()
