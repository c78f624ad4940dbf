"""The quality report's exact distinct counts against the HyperLogLog estimates they replaced.

    .venv/bin/python -m bench.quality_distinct [--rows 5000000]

Generates a Parquet table (a person-like id with many values, a district with few, a day, an amount),
then times `products.pipeline.run.stats` (one scan: nulls, count(DISTINCT), min, max per column) beside
the same scan with approx_count_distinct, alternating runs in one process. Prints both times, their
ratio, and how far the estimates were off.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import duckdb

from products.pipeline.recipe import lit, q
from products.pipeline.run import connect, stats


def _approx(connection: duckdb.DuckDBPyConnection, path: Path) -> dict[str, int]:
    """The scan `stats` ran before: the same aggregates, with approx_count_distinct."""
    source = f"read_parquet({lit(str(path))})"
    names = [str(r[0]) for r in connection.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()]
    parts = ["count(*)"]
    for name in names:
        parts += [f"count({q(name)})", f"approx_count_distinct({q(name)})", f"min({q(name)})::VARCHAR"]
        parts.append(f"max({q(name)})::VARCHAR")
    row = connection.execute(f"SELECT {', '.join(parts)} FROM {source}").fetchone() or ()
    return {name: int(row[2 + 4 * i]) for i, name in enumerate(names)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "people.parquet"
        with connect(Path(tmp) / "work") as connection:
            connection.execute(
                f"COPY (SELECT 'P' || (i * 7919 % {args.rows // 3}) AS person, 'D' || (i % 16) AS district, "
                f"DATE '2025-01-01' + (i % 365)::INTEGER AS day, (i % 1000) / 10.0 AS amount "
                f"FROM range({args.rows}) t(i)) TO {lit(str(path))} (FORMAT parquet)"
            )
            exact_times, approx_times = [], []
            for _ in range(args.repeat):
                started = time.perf_counter()
                exact = {c["name"]: c["distinct"] for c in stats(connection, path)}
                exact_times.append(time.perf_counter() - started)
                started = time.perf_counter()
                approx = _approx(connection, path)
                approx_times.append(time.perf_counter() - started)
    exact_s, approx_s = min(exact_times), min(approx_times)
    print(f"rows: {args.rows:,}")
    print(f"stats scan with exact count(DISTINCT): {exact_s:.3f} s (best of {args.repeat})")
    print(f"the same scan with approx_count_distinct: {approx_s:.3f} s")
    print(f"ratio exact / approx: {exact_s / approx_s:.2f}")
    for name, value in exact.items():
        error = (approx[name] - value) / value if value else 0.0
        print(f"  {name}: exact {value:,}, estimate {approx[name]:,} ({error:+.2%})")


if __name__ == "__main__":
    main()
