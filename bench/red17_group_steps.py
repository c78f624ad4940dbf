"""One group more: does DuckDB's hash aggregate take a step at some group count (red17)?

Issue 9: a hidden row that opens a group of its own costs that group's work (docs/sandbox.md, "Seeded stage 1",
*What is left*). If the aggregate's hash table grew (resize) or flushed to partitions at a fixed number of
groups, a buyer who makes a query form exactly that many public groups, with one more group only when a hidden
row passes the filter, would see a step much larger than one group's work. This measures the pair the buyer
would compare, n groups against n + 1 (the same rows read, one row moved from the catch-all group to its own),
alternated, on one DuckDB thread with the sandbox's disabled optimizers, at counts around the boundaries a
power-of-two table with a load factor would have (2^j, 2^j * 2/3, 2^j * 4/5), and a sweep of counts.

    python -m bench.red17_group_steps [--rows 300000] [--runs 41] [--sweep] [--at N ...]

Prints per n: the medians (thread CPU, ms) for n and n + 1 groups, their ratio, and the share of alternated pairs in
which n + 1 was slower. Data generated at run time; nothing read from a product.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import duckdb

from sandbox.engine import DISABLED_OPTIMIZERS


def _statement(groups: int) -> str:
    # Every row is read; the first `groups - 1` rows are a group each and the rest one catch-all group.
    return (
        'SELECT sum("c"), sum("s") FROM (SELECT CASE WHEN k < '
        f"{groups - 1} THEN k ELSE -1 END AS g, count(*) AS c, sum(m) AS s FROM t GROUP BY g)"
    )


def _pair(connection: duckdb.DuckDBPyConnection, groups: int, runs: int) -> tuple[float, float, float]:
    low: list[float] = []
    high: list[float] = []
    for _ in range(runs):
        for times, count in ((low, groups), (high, groups + 1)):
            started = time.thread_time()
            connection.execute(_statement(count)).fetchall()
            times.append(time.thread_time() - started)
    slower = sum(1 for a, b in zip(low, high, strict=True) if b > a) / runs
    return statistics.median(low) * 1000, statistics.median(high) * 1000, slower


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--runs", type=int, default=41)
    parser.add_argument("--sweep", action="store_true", help="also a sweep of counts, 2%% apart")
    parser.add_argument("--at", type=int, nargs="*", help="only these group counts n (n against n + 1)")
    args = parser.parse_args()
    connection = duckdb.connect()
    connection.execute("SET threads = 1")
    connection.execute(f"SET disabled_optimizers = '{DISABLED_OPTIMIZERS}'")
    connection.execute(f"CREATE TABLE t AS SELECT i AS k, i % 7 AS m FROM range({args.rows}) r(i)")
    print(f"load average {os.getloadavg()[0]:.2f}, {args.rows} rows, {args.runs} alternated runs per pair")
    candidates = args.at or sorted({int(2**j * f) for j in range(10, 19) for f in (1.0, 2 / 3, 4 / 5)})
    for groups in candidates:
        if groups + 1 >= args.rows:
            continue
        a, b, slower = _pair(connection, groups, args.runs)
        print(f"n={groups:>7}  {a:8.3f} ms  n+1 {b:8.3f} ms  ratio {b / a:5.3f}  n+1 slower in {slower:4.0%}")
    if args.sweep:
        groups = 1000
        while groups < args.rows:
            a, _, _ = _pair(connection, groups, max(3, args.runs // 8))
            print(f"sweep n={groups:>7}  {a:8.3f} ms  {a / groups * 1e6:7.1f} ns a group")
            groups = int(groups * 1.02) + 1
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
