"""Red team red14: does a hidden row that opens a group of its own show in the bits path's time?

    python -m bench.red14_bits_oracle --runs 30

The bits path (engine.execute_bits, sandbox/bits.py) allocates, zeroes, merges and counts one bitmap of
`span / 8` bytes per group (and per cell with NULLs), where the other one-statement paths pay a hash table's
entry: docs/sandbox.md "Bitmaps", *Timing*, says the per-group step is larger here by the span, bounded by
the memory bound. This measures it at the widest span the bound lets through.

Builds a flights-like product (statistics-free, as versions are written) whose privacy unit `tail` is a
BIGINT over a wide span (`--span`), with ONE flight to 'LEX' and none to 'LEY'; reads its build statistics
with products.storage.table_statistics, plans each pair with sandbox.service.plan_query and takes the spans
sandbox.service.bits_for gives (the strategy's own choice), then times in this process the CPU of
engine.execute_bits on the LEX and LEY queries (whose answers are identical: the LEX group is suppressed),
alternated, and the same on execute_two_level (the path it replaces) for comparison. The LEX flight opens
one group the LEY query does not have (a month, or a month with its cells). The bits path's answer is
asserted equal to the two-level path's (exactness at a span near the memory bound).

CPU time (time.process_time, DuckDB's threads included). Prints per pair and path the medians of A (LEX)
and B (LEY), their difference, and a two-sided Mann-Whitney U p-value; p < 0.01 over >= 30 alternated runs
would be a finding. Not a test: timings belong here.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import duckdb

from bench.stats import mann_whitney
from products.storage import table_statistics, write_product_parquet
from sandbox.engine import EngineLimits, TableStatistics, execute_bits, execute_two_level, open_locked
from sandbox.policy import ProtectionPolicy
from sandbox.service import TableFile, bits_for, plan_query, strategy, threads_for

POLICY = ProtectionPolicy.model_validate(
    {
        "min_group_size": 10,
        "tables": {
            "flights": {
                "privacy_unit": "tail",
                "dimensions": ["month", "day", "dest"],
                "measures": ["arr_delay"],
                "bounds": {"arr_delay": {"min": -100, "max": 1000}},
                "hidden": [],
            }
        },
    }
)
ROLES = {"tail": "privacy_unit", "month": "dimension", "day": "dimension", "dest": "dimension", "arr_delay": "measure"}
PAIRS: dict[str, str] = {
    "month": "SELECT month, count(*) AS n FROM flights WHERE dest = '{dest}' GROUP BY month",
    "month-cells": "SELECT month, count(*) AS n, sum(arr_delay) AS s FROM flights WHERE dest = '{dest}' GROUP BY month",
    "day": "SELECT day, count(*) AS n FROM flights WHERE dest = '{dest}' GROUP BY day",
}


def build(directory: Path, rows: int, span: int) -> Path:
    """`rows` flights, units spread over [0, span) (the last unit at span - 1: the span is the build's), one
    flight to LEX (arr_delay NULL on every 7th row: the sum's cell has its own bitmaps)."""
    path = directory / "flights.parquet"
    with duckdb.connect() as connection:
        write_product_parquet(
            connection,
            f"""SELECT (i % 12) + 1 AS month, (i % 31) + 1 AS day,
                CASE WHEN i = {rows // 2} THEN 'LEX' ELSE 'D' || lpad(((i * 7919) % 100)::VARCHAR, 3, '0') END AS dest,
                CASE WHEN i = {rows} - 1 THEN {span} - 1 ELSE (i * 7919) % {span} END::BIGINT AS tail,
                CASE WHEN i % 7 = 0 THEN NULL ELSE ((i * 31) % 300) - 50 END AS arr_delay
                FROM range({rows}) t(i) ORDER BY month, day""",
            path,
        )
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--span", type=int, default=200_000)
    parser.add_argument("--pairs", nargs="*", default=None)
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as directory:
        path = build(Path(directory), args.rows, args.span)
        stats_built = table_statistics(path, list(ROLES), ROLES)
        tables = {"flights": TableFile("flights", path, args.rows, statistics=stats_built)}
        limits = EngineLimits(threads=threads_for(args.rows, EngineLimits()), timeout_seconds=120)
        connection = open_locked({"flights": path}, limits, statistics_free=True)
        stats = TableStatistics(connection, {}, version="bench")
        print(f"rows {args.rows}, span {stats_built['spans'].get('tail')}, DuckDB threads {limits.threads}")
        print(f"{'pair':12} {'path':9} {'A LEX ms':>9} {'B LEY ms':>9} {'A-B ms':>7} {'p-value':>8}")
        for name, template in PAIRS.items():
            if args.pairs and name not in args.pairs:
                continue
            plans = {d: plan_query(template.format(dest=d), POLICY, {"flights": args.rows}) for d in ("LEX", "LEY")}
            spans = bits_for(plans["LEX"], tables)
            if spans is None or strategy(plans["LEX"], tables) != "bits":
                print(f"{name:12} not on the bits path (strategy {strategy(plans['LEX'], tables)})")
                continue
            runners = {
                "bits": lambda p, spans=spans: execute_bits(connection, p, 1000, stats, spans),
                "two-level": lambda p: execute_two_level(connection, p, 1000, stats),
            }
            by_path = {name: sorted(run(plans["LEX"]).rows, key=repr) for name, run in runners.items()}
            assert by_path["bits"] == by_path["two-level"], (name, by_path)  # exact at this span too
            for path_name, run in runners.items():
                for dest in ("LEX", "LEY", "LEX", "LEY"):  # warm-up
                    run(plans[dest])
                times: dict[str, list[float]] = {"LEX": [], "LEY": []}
                answers = {}
                for i in range(args.runs):
                    for dest in ("LEX", "LEY") if i % 2 == 0 else ("LEY", "LEX"):
                        started = time.process_time()
                        execution = run(plans[dest])
                        times[dest].append((time.process_time() - started) * 1000)
                        answers[dest] = sorted(execution.rows, key=repr)
                assert answers["LEX"] == answers["LEY"], (name, path_name, answers)
                a, b = times["LEX"], times["LEY"]
                print(
                    f"{name:12} {path_name:9} {statistics.median(a):9.2f} {statistics.median(b):9.2f} "
                    f"{statistics.median(a) - statistics.median(b):7.2f} {mann_whitney(a, b).p:8.4f}",
                    flush=True,
                )
        connection.close()
    load = " ".join(f"{v:.2f}" for v in (*load_before, *os.getloadavg()))
    print(f"load average (1, 5, 15 min) before and after: {load}; cores: {os.cpu_count()}")


if __name__ == "__main__":
    main()
