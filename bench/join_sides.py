"""Joins with an empty side: the cost of reading every join input whole, and the timing oracle it closes.

    MARKET_DATA_DIR=/path/with/bench python -m bench.join_sides --runs 15

On TPC-H (bench.sandbox_overhead's product, scale 1 by default), through one sandbox worker on the staged
path (as for every product that large), each query runs two ways, alternating which goes first:

- before: the plan as the rewrite made it before branch sbx-join (rewrite.whole_sides left out): the
  buyer's joins as written, so DuckDB stops a join whose build side a filter empties;
- after: the plan as it is now (a root read whole, every other table LEFT JOINed, the match tested after).

Queries: the overhead bench's two joins, and the hidden-fact pair of issue 9 at full scale:
`count(*) ... FROM orders JOIN lineitem ... WHERE o.o_orderkey = 7` (an order with lines) against
`= 8` (no such order: keys are sparse), whose answers are both suppressed. For each it prints the median wall time and
the median worker CPU time (`cpu_ms`, the clock a buyer no longer sees but an operator does), and for
the pair a two-sided Mann–Whitney U p-value of A against B on CPU time (bench.timing_oracle). Not a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from unittest import mock

from bench.sandbox_overhead import POLICY, QUERIES, build_product
from bench.stats import mann_whitney
from sandbox import cache, rewrite
from sandbox.engine import EngineLimits
from sandbox.pool import Job, WorkerPool
from sandbox.rewrite import Plan
from sandbox.service import _plan, row_counts

PAIR = (
    "SELECT count(*) AS n, sum(l.l_quantity) AS q FROM orders o JOIN lineitem l "
    "ON o.o_orderkey = l.l_orderkey WHERE o.o_orderkey = {key}"
)
"""Without GROUP BY, so the threshold's recheck runs over the same rows either way (its one group is
undecided in both: one customer, or none): what differs between A and B is the join alone. Grouped by
a column of lineitem, A's few lines make their groups undecided and the recheck then works over those
groups' rows, B's over none: the threshold's channel, not the join's (docs/sandbox.md, "The recheck's
rows": closed by branch sbx-recheck)."""
PRESENT, ABSENT = 7, 8


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args(argv)
    cache.configure(0, 0)
    tables = build_product(args.scale)
    sizes = row_counts(tables)
    limits = EngineLimits(memory_limit="3GB", threads=2, timeout_seconds=600, address_space_mb=16384, workers=1)
    pool = WorkerPool(limits)
    jobs = tuple(sorted((name, str(t.path.resolve())) for name, t in tables.items()))
    queries = {
        "join_priority_shipmode": QUERIES["join_priority_shipmode"],
        "join_by_order_year": QUERIES["join_by_order_year"],
        "pair A (order exists)": PAIR.format(key=PRESENT),
        "pair B (no such order)": PAIR.format(key=ABSENT),
    }
    plans: dict[str, dict[str, Plan]] = {}
    for name, sql in queries.items():
        with mock.patch.object(rewrite, "whole_sides", lambda *_, **__: None):
            before = _plan(sql, POLICY, sizes)
        plans[name] = {"before": before, "after": _plan(sql, POLICY, sizes)}

    wall: dict[str, dict[str, list[float]]] = {q: {"before": [], "after": []} for q in queries}
    cpu: dict[str, dict[str, list[float]]] = {q: {"before": [], "after": []} for q in queries}

    def once(name: str, way: str) -> None:
        started = time.perf_counter()
        execution = pool.run(Job(tables=jobs, plan=plans[name][way], max_rows=100_000, single=False))
        wall[name][way].append((time.perf_counter() - started) * 1000)
        cpu[name][way].append(float(execution.cpu_ms))

    print(f"scale {args.scale:g}: lineitem {sizes['lineitem']:,} rows, orders {sizes['orders']:,}", flush=True)
    for name in queries:  # warm-up: file cache, worker connection
        for way in ("before", "after"):
            pool.run(Job(tables=jobs, plan=plans[name][way], max_rows=100_000, single=False))
    load_before = os.getloadavg()
    for run in range(args.runs):
        for name in queries:
            for way in ("before", "after") if run % 2 == 0 else ("after", "before"):
                once(name, way)
    load_after = os.getloadavg()
    pool.close()

    print(
        f"{'query':26} {'before ms':>10} {'after ms':>9} {'ratio':>6} {'before cpu':>11} {'after cpu':>10} {'ratio':>6}"
    )
    for name in queries:
        w = {way: statistics.median(wall[name][way]) for way in ("before", "after")}
        c = {way: statistics.median(cpu[name][way]) for way in ("before", "after")}
        print(
            f"{name:26} {w['before']:10.1f} {w['after']:9.1f} {w['after'] / w['before']:6.2f} "
            f"{c['before']:11.1f} {c['after']:10.1f} {c['after'] / max(c['before'], 1):6.2f}"
        )
    a, b = "pair A (order exists)", "pair B (no such order)"
    for way in ("before", "after"):
        p = mann_whitney(cpu[a][way], cpu[b][way]).p
        print(
            f"hidden fact, {way:6}: cpu ms A {statistics.median(cpu[a][way]):.1f} vs B "
            f"{statistics.median(cpu[b][way]):.1f}, p = {p:.4f}"
        )
    load = " ".join(f"{v:.2f}" for v in (*load_before, *load_after))
    print(f"load average (1, 5, 15 min) before and after: {load}; cores: {os.cpu_count()}")


if __name__ == "__main__":
    main()
