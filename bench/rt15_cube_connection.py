"""Branch rt15: engine.execute_cube on the version's connection against the summary connection, alternated.

    python -m bench.rt15_cube_connection --runs 300

Builds the demo (SQLite, a temporary directory), opens the version's locked connection (engine.open_locked, one
DuckDB thread, as the worker runs the demo) and its summary connection (engine.open_summary), checks that the
two answer identically for each of http_throughput's small queries (all three take the cube), then times the
wall and the CPU (this thread's clock: no RLIMIT_CPU here) of execute_cube on each, alternated, after warm-ups.
The version's connection is exactly main's path (execute_cube without `summaries`). Prints medians and
`cat /proc/loadavg` before and after. Not a test: timings belong here.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb

from bench.http_throughput import SMALL
from bench.worker_cpu import _tables
from market.demo import FLIGHTS_POLICY
from sandbox import service
from sandbox.engine import EngineLimits, Summaries, TableStatistics, execute_cube, open_locked, open_summary


def demo_connections(
    tmp: Path,
) -> tuple[dict[str, Any], dict[str, Path], bool, duckdb.DuckDBPyConnection, Summaries, TableStatistics]:
    """The demo's tables built in `tmp`, their files, whether they are statistics-free, the version's locked
    connection and its summary connection (one DuckDB thread each, as a worker runs the demo), and the
    version's statistics on the first (also bench.cube18_forms)."""
    tables = _tables(tmp)
    files = {name: Path(path) for name, path in service.files_of(tables)}
    free = service.statistics_free(tables)
    connection = open_locked(files, EngineLimits(threads=1), free)
    lean = open_summary(files, EngineLimits(threads=1), free)
    return tables, files, free, connection, lean, TableStatistics(connection, {}, "v")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args(argv)
    print(f"load before {Path('/proc/loadavg').read_text().strip()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tables, _files, _free, connection, lean, stats = demo_connections(Path(tmp))
        for name, sql in SMALL.items():
            plan = service.plan_query(sql, FLIGHTS_POLICY, service.row_counts(tables))
            assert service.strategy(plan, tables) == "cube", name
            cube = service.cube_for(plan, tables) or ""
            before = execute_cube(connection, plan, 10_000, stats, cube)
            after = execute_cube(connection, plan, 10_000, stats, cube, lean)
            assert (before.rows, before.groups, before.suppressed_groups) == (
                after.rows,
                after.groups,
                after.suppressed_groups,
            )
            wall: dict[str, list[float]] = {"version's": [], "summary": []}
            cpu: dict[str, list[float]] = {"version's": [], "summary": []}
            for i in range(args.runs + 10):
                for side in ("version's", "summary") if i % 2 else ("summary", "version's"):
                    started, used = time.perf_counter(), time.thread_time()
                    execute_cube(connection, plan, 10_000, stats, cube, lean if side == "summary" else None)
                    if i >= 10:
                        wall[side].append((time.perf_counter() - started) * 1000)
                        cpu[side].append((time.thread_time() - used) * 1000)
            a, b = statistics.median(wall["version's"]), statistics.median(wall["summary"])
            ca, cb = statistics.median(cpu["version's"]), statistics.median(cpu["summary"])
            print(
                f"{name:14} version's connection {a:.3f} ms (CPU {ca:.3f})  summary connection {b:.3f} ms "
                f"(CPU {cb:.3f})  ratio {b / a:.2f}",
                flush=True,
            )
        lean.close()
        connection.close()
    print(f"load after {Path('/proc/loadavg').read_text().strip()}", flush=True)


if __name__ == "__main__":
    main()
