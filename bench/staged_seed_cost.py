"""The cost of seeding the staged path on TPC-H, seeded against unseeded in one interleaved run (branch sbx-seed).

    MARKET_DATA_DIR=/tmp/tpch python -m bench.staged_seed_cost --scale 1 --runs 5

Opens bench.sandbox_overhead's TPC-H product (orders, lineitem: 6M rows at scale 1) as a worker does
(engine.open_locked, the version's build-time statistics in engine.TableStatistics) and times, in this
process, the CPU of engine.execute_plan (the staged path, what products over 2 million rows run) for each
filtered query of bench.sandbox_overhead, alternating two variants of the same plan:

- `seeded`: the plan as this branch runs it (rewrite.seeded_stage and rewrite.seeded_recheck);
- `unseeded`: the same plan with `seeded=None`, i.e. main's staged statements.

Queries without a filter have no seed (Plan.seeded is None) and are skipped. CPU time (time.process_time,
DuckDB's threads included) is steadier than wall time on a loaded machine. Prints per query both medians,
their ratio and the answers' equality. Not a test: timings belong here.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time

from bench.sandbox_overhead import POLICY, QUERIES, build_product
from sandbox.engine import EngineLimits, TableStatistics, execute_plan, open_locked
from sandbox.service import _seeds, plan_query, row_counts, statistics_free


def _rounded(rows: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
    return [tuple(float(f"{v:.9g}") if isinstance(v, float) else v for v in row) for row in rows]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    tables = build_product(args.scale)
    limits = EngineLimits(memory_limit="3GB", threads=2, timeout_seconds=600, address_space_mb=16384)
    connection = open_locked({name: t.path for name, t in tables.items()}, limits, statistics_free(tables))
    version = "|".join(str(t.path) for t in tables.values())
    stats = TableStatistics(connection, {(version, *key): value for key, value in _seeds(tables)}, version=version)
    print(f"{'query':24} {'unseeded ms':>11} {'seeded ms':>10} {'seeded/unseeded':>15}  answers")
    ratios = []
    for name, sql in QUERIES.items():
        plan = plan_query(sql, POLICY, row_counts(tables))
        if plan.seeded is None:
            continue
        variants = {"unseeded": dataclasses.replace(plan, seeded=None), "seeded": plan}
        times: dict[str, list[float]] = {v: [] for v in variants}
        answers = {}
        for variant, variant_plan in variants.items():  # warm-up (and the refusal verdicts cached)
            answers[variant] = sorted(execute_plan(connection, variant_plan, 100_000, stats).rows, key=repr)
        for i in range(args.runs):
            for variant in variants if i % 2 == 0 else list(reversed(variants)):
                started = time.process_time()
                execute_plan(connection, variants[variant], 100_000, stats)
                times[variant].append((time.process_time() - started) * 1000)
        unseeded, seeded = statistics.median(times["unseeded"]), statistics.median(times["seeded"])
        ratios.append(seeded / unseeded)
        # DOUBLE sums in parallel differ in their last bits from run to run: compared to 9 significant digits.
        same = "same" if _rounded(answers["seeded"]) == _rounded(answers["unseeded"]) else "DIFFERENT"
        print(f"{name:24} {unseeded:11.1f} {seeded:10.1f} {seeded / unseeded:15.2f}  {same}", flush=True)
    connection.close()
    print(f"median seeded/unseeded over queries: {statistics.median(ratios):.2f}")
    load = " ".join(f"{v:.2f}" for v in (*load_before, *os.getloadavg()))
    print(f"load average (1, 5, 15 min) before and after: {load}; cores: {os.cpu_count()}")


if __name__ == "__main__":
    main()
