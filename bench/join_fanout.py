"""What the join fan-out bound (sandbox.fanout) costs an ordinary join, in the worker, per query.

    python -m bench.join_fanout [--rounds 2000]

The accepted join queries of the test corpus (tests/sandbox/test_policy_corpus.py, JOINED) are planned
once; then `fanout.refusal` runs over each plan's joins with the worker's statistics (engine.TableStatistics
on a locked connection over the corpus's people and shops files, seeded as a version built now seeds
them: sandbox.service._seeds), as pool._run_job calls it before every threshold query. Prints the median
and p99 of one call in microseconds, and the load average before and after. The planning half of the bound
(fanout.join_steps in rewrite.build_plan) is in `bench.sandbox_overhead --validation-only`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from products.storage import table_statistics
from sandbox import fanout
from sandbox.engine import EngineLimits, TableStatistics, open_locked
from sandbox.errors import QueryRefused
from sandbox.policy import ProtectionPolicy
from sandbox.service import TableFile, _seeds, plan_query
from tests.factories import people_rows
from tests.sandbox.conftest import PEOPLE_TYPES, SHOPS_TYPES, TWO_TABLE_POLICY, shops_rows, write_parquet
from tests.sandbox.test_policy_corpus import JOINED


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    policy = ProtectionPolicy.model_validate(TWO_TABLE_POLICY)
    with tempfile.TemporaryDirectory() as directory:
        folder = Path(directory)
        files = {
            "people": write_parquet(folder / "people.parquet", people_rows(), PEOPLE_TYPES),
            "shops": write_parquet(folder / "shops.parquet", shops_rows(), SHOPS_TYPES),
        }
        tables: dict[str, TableFile] = {}
        for name, path in files.items():
            roles = {c: "dimension" for c in policy.tables[name].dimensions}
            roles[policy.tables[name].privacy_unit] = "privacy_unit"
            columns = list(PEOPLE_TYPES if name == "people" else SHOPS_TYPES)
            rows = len(people_rows()) if name == "people" else len(shops_rows())
            tables[name] = TableFile(name, path, rows, statistics=table_statistics(path, columns, roles))
        sizes = {name: table.row_count for name, table in tables.items()}
        plans = []
        for _, sql, expected in JOINED:
            if expected is not None:
                continue
            try:
                plan = plan_query(sql, policy, sizes)
            except QueryRefused:
                continue
            if plan.joins:
                plans.append(plan)
        connection = open_locked(files, EngineLimits())
        version = "|".join(str(path) for path in files.values())
        cache: dict[tuple[str, ...], Any] = {(version, *key): value for key, value in _seeds(tables)}
        stats = TableStatistics(connection, cache, version=version)
        for plan in plans:  # warm: the column types (DESCRIBE, once per version in a worker)
            fanout.refusal(plan.joins, stats, 1024)
        timings: list[float] = []
        for _ in range(args.rounds):
            for plan in plans:
                started = time.perf_counter()
                fanout.refusal(plan.joins, stats, 1024)
                timings.append((time.perf_counter() - started) * 1e6)
        connection.close()
    timings.sort()
    p99 = timings[int(len(timings) * 0.99)]
    print(f"{len(plans)} corpus joins x {args.rounds}: median {statistics.median(timings):.1f} us, p99 {p99:.1f} us")
    load = " ".join(f"{v:.2f}" for v in (*load_before, *os.getloadavg()))
    print(f"load average (1, 5, 15 min) before and after: {load}; cores: {os.cpu_count()}")


if __name__ == "__main__":
    main()
