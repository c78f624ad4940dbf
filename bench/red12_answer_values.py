"""Red team red12 (issue 9, session 8): what an answer value Python cannot hold costs, main against this branch.

    python -m bench.red12_answer_values --main /work/main --branch . --rounds 3

Each round runs this module's `--inner` part twice, alternating, once with PYTHONPATH on main's tree and
once on the branch's (the sandbox package each imports; workers inherit it). The inner part, on a
60,000-row Parquet file through a WorkerPool of one worker:
- `bad_ms`: `SELECT region, count(*), INTERVAL 100000000 YEAR ...`: on main the worker dies converting
  the row (OverflowError) and the query fails with `resource_limit`; on the branch `answer_out_of_range`;
- `next_ms`: the ordinary query that follows (main: a fresh worker, cold, with its connection to open);
- `json_us`: rows to JSON values (sandbox.service._jsonable) for a 10,000-row answer of mixed types.
Medians over the runs and the ratios branch/main are printed with the load averages.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from decimal import Decimal
from pathlib import Path


def _inner(runs: int) -> dict[str, float]:
    import duckdb

    from sandbox.engine import EngineLimits
    from sandbox.errors import MarketError
    from sandbox.policy import ProtectionPolicy
    from sandbox.pool import WorkerPool
    from sandbox.service import TableFile, _jsonable, run_query

    folder = Path(tempfile.mkdtemp(prefix="red12-bench-"))
    path = folder / "people.parquet"
    connection = duckdb.connect()
    connection.execute(
        f"COPY (SELECT 'P' || (i % 600) AS person_id, ['n', 's', 'e', 'w'][i % 4 + 1] AS region, "
        f"CAST(i % 1000 AS INTEGER) AS amount FROM range(60000) t(i)) TO '{path}' (FORMAT parquet)"
    )
    policy = ProtectionPolicy.model_validate(
        {
            "min_group_size": 10,
            "tables": {
                "people": {
                    "privacy_unit": "person_id",
                    "dimensions": ["region"],
                    "measures": ["amount"],
                    "bounds": {"amount": {"min": 0, "max": 1000}},
                }
            },
        }
    )
    limits = EngineLimits(timeout_seconds=10, workers=1)
    tables = {"people": TableFile(name="people", path=path, row_count=60000, column_bytes={"amount": 1})}
    pool = WorkerPool(limits)
    good = "SELECT region, count(*) AS n, sum(amount) AS s FROM people GROUP BY region"
    bad = "SELECT region, count(*) AS n, INTERVAL 100000000 YEAR AS i FROM people GROUP BY region"
    run_query(good, policy, tables, limits, 10_000, pool)
    bad_ms, next_ms, codes = [], [], set()
    for i in range(runs):
        started = time.perf_counter()
        try:
            run_query(bad, policy, tables, limits, 10_000, pool)
        except MarketError as error:
            codes.add(error.code)
        bad_ms.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        run_query(f"{good} HAVING count(*) > {i}", policy, tables, limits, 10_000, pool)  # a new text: no cache
        next_ms.append((time.perf_counter() - started) * 1000)
    pool.close()
    row = [12345, 1.5, Decimal("123456789012.345678"), date(2013, 1, 1), "text", None]
    answer = [row] * 10_000
    json_us = []
    for _ in range(runs):
        started = time.perf_counter()
        [[_jsonable(v) for v in r] for r in answer]
        json_us.append((time.perf_counter() - started) * 1e6)
    return {
        "bad_ms": statistics.median(bad_ms),
        "next_ms": statistics.median(next_ms),
        "json_us": statistics.median(json_us),
        "codes": sorted(codes),  # type: ignore[dict-item]
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--main", default="/work/main")
    parser.add_argument("--branch", default=".")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--inner", action="store_true")
    args = parser.parse_args()
    if args.inner:
        print(json.dumps(_inner(args.runs)))
        return
    found: dict[str, list[dict[str, float]]] = {"main": [], "branch": []}
    print("load before:", os.getloadavg())
    for _ in range(args.rounds):
        for side, tree in (("main", args.main), ("branch", args.branch)):
            env = {**os.environ, "PYTHONPATH": str(Path(tree).resolve())}
            out = subprocess.run(
                # By path, from the tree: sys.path[0] is this file's folder, then PYTHONPATH (never the cwd).
                [sys.executable, str(Path(__file__).resolve()), "--inner", "--runs", str(args.runs)],
                env=env,
                cwd=Path(tree).resolve(),
                capture_output=True,
                text=True,
                check=True,
            )
            found[side].append(json.loads(out.stdout.strip().splitlines()[-1]))
    for key in ("bad_ms", "next_ms", "json_us"):
        m = statistics.median(r[key] for r in found["main"])
        b = statistics.median(r[key] for r in found["branch"])
        print(f"{key:8} main {m:10.1f}  branch {b:10.1f}  branch/main {b / m:5.2f}")
    print("codes: main", found["main"][0]["codes"], "branch", found["branch"][0]["codes"])
    print("load after:", os.getloadavg())


if __name__ == "__main__":
    main()
