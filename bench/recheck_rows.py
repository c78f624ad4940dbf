"""The staged threshold's recheck: does its time tell whether one hidden row exists? (issue 9, sbx-recheck)

    MARKET_DATA_DIR=/path/with/bench python -m bench.recheck_rows --runs 12

On TPC-H (bench.sandbox_overhead's product, scale 1 by default), through one sandbox worker on the staged
path, two hidden-fact pairs whose answers are the same (every group suppressed):

- join: `l_shipmode, count(*), sum(l_quantity) FROM orders o JOIN lineitem l ... WHERE o.o_orderkey = 7`
  (an order with seven lines) against `= 8` (no such order), grouped by ship mode;
- lineitem: `l_shipmode, count(*) FROM lineitem WHERE l_orderkey = 7` against `= 8`, one table.

Each runs two ways, alternating which goes first: `before`, the recheck's restriction as before branch
sbx-recheck (`HASH(keys, TRUE)`: every row of an undecided group's keys is selected, and the buyer's
filter is then tested on all of them), and `after`, as now (`HASH(keys, (filter))`: only rows that pass
the filter and lie in an undecided group). It prints the median worker CPU time (`cpu_ms`) of A and B
and a two-sided Mann-Whitney p-value of A against B per way, then (with --profile) the recheck's
operators as DuckDB's profiler reports them for one run of each. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import duckdb

from bench.sandbox_overhead import POLICY, build_product
from bench.stats import mann_whitney
from sandbox import cache
from sandbox.engine import DISABLED_OPTIMIZERS, EngineLimits, execute_plan
from sandbox.pool import Job, WorkerPool
from sandbox.rewrite import RESTRICT, Plan
from sandbox.service import _plan, row_counts

PAIRS = {
    "join": (
        "SELECT l.l_shipmode, count(*) AS n, sum(l.l_quantity) AS q FROM orders o JOIN lineitem l "
        "ON o.o_orderkey = l.l_orderkey WHERE o.o_orderkey = {key} GROUP BY 1"
    ),
    "lineitem": "SELECT l_shipmode, count(*) AS n FROM lineitem WHERE l_orderkey = {key} GROUP BY 1",
}
PRESENT, ABSENT = 7, 8


def before(plan: Plan) -> Plan:
    """The plan with the recheck's restriction as it was: the filter's value left out of the hash (TRUE)."""
    head, _, _ = plan.template.rpartition(f" AND {RESTRICT}")
    passed = head.rpartition(" WHERE ")[2]
    marker = f", {passed}) IN "
    assert plan.restriction.count(marker) == 1, plan.restriction
    return replace(plan, restriction=plan.restriction.replace(marker, ", TRUE) IN "))


def _operators(node: dict[str, Any], depth: int, out: list[str]) -> list[str]:
    info = node.get("extra_info") or {}
    detail = info.get("Join Type") or info.get("Expression") or info.get("Function") or ""
    out.append(
        f"{'  ' * depth}{node.get('name')} rows={node.get('intermediate_rows')} "
        f"{float(node.get('timing') or 0) * 1000:.1f} ms {str(detail)[:60]}"
    )
    for child in node.get("children") or []:
        _operators(child, depth + 1, out)
    return out


def profile(tables: dict[str, Path], plan: Plan) -> list[str]:
    """The recheck statement's operators (rows out, time) under the sandbox's settings."""
    with tempfile.TemporaryDirectory() as folder:
        output = Path(folder) / "profile.json"
        connection = duckdb.connect(
            config={"threads": 2, "preserve_insertion_order": False, "disabled_optimizers": DISABLED_OPTIMIZERS}
        )
        connection.execute("SET parquet_use_page_index = false")
        for name, path in tables.items():
            connection.execute(f"CREATE VIEW \"{name}\" AS SELECT * FROM read_parquet('{path}')")
        statements = execute_plan(connection, plan, 1000).statements
        lines: list[str] = []
        connection.execute("BEGIN TRANSACTION")
        for statement in statements:
            recheck = '"__recheck" AS' in statement
            if recheck:
                connection.execute("SET enable_profiling = 'json'")
                connection.execute(f"SET profiling_output = '{output}'")
            connection.execute(statement).fetchall()
            if recheck:
                connection.execute("SET enable_profiling = 'no_output'")
                for node in json.loads(output.read_text()).get("operator") or []:
                    _operators(node, 0, lines)
        connection.execute("ROLLBACK")
        connection.close()
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=12)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--pair", choices=sorted(PAIRS), action="append", help="only these pairs (default: all)")
    args = parser.parse_args(argv)
    cache.configure(0, 0)
    tables = build_product(args.scale)
    sizes = row_counts(tables)
    pairs = {name: sql for name, sql in PAIRS.items() if not args.pair or name in args.pair}
    plans: dict[tuple[str, str, str], Plan] = {}
    for pair, sql in pairs.items():
        for side, key in (("A", PRESENT), ("B", ABSENT)):
            now = _plan(sql.format(key=key), POLICY, sizes)
            plans[(pair, side, "before")] = before(now)
            plans[(pair, side, "after")] = now
    if args.profile:
        paths = {name: t.path.resolve() for name, t in tables.items()}
        for (pair, side, way), plan in plans.items():
            print(f"-- recheck of {pair} {side} ({way})")
            print("\n".join(profile(paths, plan)), flush=True)
    limits = EngineLimits(memory_limit="3GB", threads=2, timeout_seconds=600, address_space_mb=16384, workers=1)
    pool = WorkerPool(limits)
    jobs = tuple(sorted((name, str(t.path.resolve())) for name, t in tables.items()))
    cpu: dict[tuple[str, str, str], list[float]] = {key: [] for key in plans}

    def once(key: tuple[str, str, str]) -> None:
        execution = pool.run(Job(tables=jobs, plan=plans[key], max_rows=1000, single=False))
        assert not execution.rows or all(v is None for row in execution.rows for v in row[1:]), execution.rows
        cpu[key].append(float(execution.cpu_ms))

    print(f"scale {args.scale:g}: lineitem {sizes['lineitem']:,} rows, orders {sizes['orders']:,}", flush=True)
    order = list(plans)
    for key in order:  # warm-up: file cache, worker connection
        pool.run(Job(tables=jobs, plan=plans[key], max_rows=1000, single=False))
    load_before = os.getloadavg()
    for run in range(args.runs):
        for key in order if run % 2 == 0 else reversed(order):
            once(key)
    load_after = os.getloadavg()
    pool.close()
    print(f"{'pair':9} {'way':7} {'A cpu ms':>9} {'B cpu ms':>9} {'A/B':>6} {'p':>8}")
    for pair in pairs:
        for way in ("before", "after"):
            a, b = cpu[(pair, "A", way)], cpu[(pair, "B", way)]
            ma, mb = statistics.median(a), statistics.median(b)
            print(f"{pair:9} {way:7} {ma:9.1f} {mb:9.1f} {ma / max(mb, 1):6.3f} {mann_whitney(a, b).p:8.4f}")
        ratio = statistics.median(cpu[(pair, "B", "after")]) / max(statistics.median(cpu[(pair, "B", "before")]), 1)
        print(f"{pair:9} cost of the change (B after / B before): {ratio:.3f}")
    load = " ".join(f"{v:.2f}" for v in (*load_before, *load_after))
    print(f"load average (1, 5, 15 min) before and after: {load}; cores: {os.cpu_count()}")


if __name__ == "__main__":
    main()
