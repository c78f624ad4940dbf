"""The sandbox worker's CPU per query against raw DuckDB's, alternating in one run (issue 12).

Builds the demo (SQLite, a temporary directory), then for each small demo query runs, in turn,
`WorkerPool.run` (the worker process's CPU read from /proc around each job) and raw DuckDB (this
process's CPU around the same SQL on the same Parquet file, one connection with the sandbox's
threads), `--runs` times after warm-ups. Each strategy is measured on its own (`single`, `folded`, `staged`)
and as `sandbox.service` chooses it (`chosen`), so the choice can be judged beside both.

    python -m bench.worker_cpu --runs 30
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import duckdb

from bench.http_throughput import DASHBOARD, SMALL
from market.db import Database, migrate
from market.demo import FLIGHTS_POLICY, FLIGHTS_SLUG, build_demo
from market.settings import Settings
from products import repository as products_repo
from products import service as products
from sandbox import service
from sandbox.engine import EngineLimits
from sandbox.pool import Job, WorkerPool

_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system) of process `pid` so far, from /proc (clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def raw_connection(tables: Mapping[str, service.TableFile], threads: int) -> duckdb.DuckDBPyConnection:
    """Raw DuckDB over the same Parquet files (every optimizer on), with `threads`; prints the load and time."""
    raw = duckdb.connect(":memory:", config={"threads": threads})
    for name, table in tables.items():
        raw.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{table.path}')")
    print(f"load {os.getloadavg()}  {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC", flush=True)
    return raw


def warm_answers(
    pool: WorkerPool, jobs: dict[str, Job], raw: duckdb.DuckDBPyConnection, sql: str
) -> dict[str, list[tuple[Any, ...]]]:
    """Each job's answer (rows sorted), after which every job and the raw SQL run twice more to warm the
    connection, the statistics and the caches."""
    answers = {key: sorted(pool.run(job).rows, key=repr) for key, job in jobs.items()}
    for _ in range(2):
        for job in jobs.values():
            pool.run(job)
        raw.execute(sql).fetchall()
    return answers


def alternated(
    pool: WorkerPool, jobs: dict[str, Job], raw: duckdb.DuckDBPyConnection, sql: str, runs: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """(CPU ms, wall ms) of each job in `pool` and of `sql` on `raw` (key "raw"), `runs` rounds in an
    order that rotates every round; the job's CPU is its worker's (from /proc), raw DuckDB's this process's."""
    keys = [*jobs, "raw"]
    cpu: dict[str, list[float]] = {key: [] for key in keys}
    wall: dict[str, list[float]] = {key: [] for key in keys}
    for run in range(runs):
        for key in keys[run % len(keys) :] + keys[: run % len(keys)]:
            if key == "raw":
                before, started = time.process_time(), time.perf_counter()
                raw.execute(sql).fetchall()
                wall[key].append((time.perf_counter() - started) * 1000)
                cpu[key].append((time.process_time() - before) * 1000)
                continue
            pid = pool.worker_pids()[0]
            before, started = _cpu_of(pid), time.perf_counter()
            pool.run(jobs[key])
            wall[key].append((time.perf_counter() - started) * 1000)
            cpu[key].append((_cpu_of(pid) - before) * 1000)
    return cpu, wall


def _tables(tmp: Path) -> dict[str, service.TableFile]:
    settings = Settings(data_dir=tmp, database_url=f"sqlite:///{tmp / 'bench.db'}", scheduler_enabled=False)
    database = Database.from_settings(settings)
    migrate(database)
    build_demo(database, settings)
    with database.transaction() as session:
        product = products_repo.by_slug(session, FLIGHTS_SLUG)
        assert product is not None and product.listed_version_id is not None
        from products.models import ProductVersion

        version = session.get(ProductVersion, product.listed_version_id)
        assert version is not None
        tables = products.version_tables(settings, version)
    database.dispose()
    return tables


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--all", action="store_true", help="the whole dashboard mix, not only the three small queries")
    parser.add_argument("--tpch", action="store_true", help="TPC-H scale 1, one-table queries")
    args = parser.parse_args(argv)
    limits = EngineLimits(workers=1, threads=Settings().sandbox_threads)
    policy = FLIGHTS_POLICY
    queries = dict(SMALL)
    if args.all:
        queries |= {f"dashboard{i}": sql for i, sql in enumerate(DASHBOARD[len(SMALL) :], start=1)}
    with tempfile.TemporaryDirectory() as tmp:
        if args.tpch:
            from bench import sandbox_overhead

            tables = sandbox_overhead.build_product(1.0)
            policy = sandbox_overhead.POLICY
            queries = {n: q for n, q in sandbox_overhead.QUERIES.items() if not n.startswith("join")}
            limits = EngineLimits(memory_limit="3GB", threads=2, timeout_seconds=600, address_space_mb=16384, workers=1)
        else:
            tables = _tables(Path(tmp))
        pool = WorkerPool(limits)
        raw = duckdb.connect(":memory:", config={"threads": limits.threads})
        for name, table in tables.items():
            raw.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{table.path}')")
        print(f"load {os.getloadavg()}  {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC", flush=True)
        print(f"{'query':22} {'path':7} {'worker ms':>10} {'wall ms':>8} {'raw ms':>7} {'ratio':>6}  chosen")
        for name, sql in queries.items():
            plan = service.plan_query(sql, policy)
            base = Job(
                tables=service._files(tables),
                plan=plan,
                max_rows=10_000,
                seeds=service._seeds(tables),
            )
            # Also runs on a tree without the cost choice (main before this branch): "chosen" is then
            # the exact statement, as the row count chose it there for these small products.
            folds = "folded" in Job.__dataclass_fields__
            chosen = service.strategy(plan, tables) if hasattr(service, "strategy") else "single"
            jobs = {"single": replace(base, single=True), "staged": replace(base, single=False)}
            if folds:
                jobs["folded"] = replace(base, folded=True)
            extra = {"folded": chosen == "folded"} if folds else {}
            if "two_level" in Job.__dataclass_fields__:  # branch sbx-twolevel on
                jobs["two-level"] = replace(base, two_level=True)  # type: ignore[call-arg]
                extra["two_level"] = chosen == "two-level"
            if "threads" in Job.__dataclass_fields__:  # branch perf-uncached on: threads from the row counts
                rows, _ = service.measure_scan(plan, tables)
                extra["threads"] = service.threads_for(rows, limits)  # type: ignore[assignment]
            jobs["chosen"] = replace(base, single=chosen == "single", **extra)  # type: ignore[arg-type]
            for job in jobs.values():  # warm: the connection, the statistics, the caches
                for _ in range(3):
                    pool.run(job)
            for _ in range(3):
                raw.execute(sql).fetchall()
            worker: dict[str, list[float]] = {key: [] for key in [*jobs, "raw"]}
            wall: dict[str, list[float]] = {key: [] for key in jobs}
            for _ in range(args.runs):
                for key, job in jobs.items():
                    pid = pool.worker_pids()[0]
                    before, started = _cpu_of(pid), time.perf_counter()
                    pool.run(job)
                    wall[key].append(time.perf_counter() - started)
                    worker[key].append(_cpu_of(pid) - before)
                    cpu = time.process_time()
                    raw.execute(sql).fetchall()
                    worker["raw"].append(time.process_time() - cpu)
            raw_ms = statistics.mean(worker["raw"]) * 1000
            for key in jobs:
                cpu_ms = statistics.mean(worker[key]) * 1000
                print(
                    f"{name:22} {key:7} {cpu_ms:10.1f} {statistics.median(wall[key]) * 1000:8.1f} "
                    f"{raw_ms:7.1f} {cpu_ms / raw_ms:6.2f}  {chosen}",
                    flush=True,
                )
        print(f"load {os.getloadavg()}", flush=True)
        pool.close()


if __name__ == "__main__":
    main()
