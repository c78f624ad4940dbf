"""Branch dest16: the small demo queries through one sandbox worker (the hop and the job), this tree against another.

    python -m bench.dest16_hop --baseline /tmp/dest16-main [--rounds 8] [--jobs 60]
    python -m bench.dest16_hop --http 200

`--http N`: where dest_july's extra time over origin comes from, over HTTP. One server of this tree (`market serve
--workers 1`, the result cache off), one buyer, a sequential client sending origin, dest_july, dest_july without
its filter, and origin with dest_july's filter in turn, N rounds after 20 of warm-up: p50 each and the answer's
bytes. (The filter and the number of groups apart.)

Builds the demo once (SQLite, a temporary directory) and keeps its tables' description in a pickle; then, in
`--rounds` rounds alternating which side goes first, starts a fresh process per side (this tree, and the
`--baseline` tree on PYTHONPATH: `git archive main | tar -x -C DIR`) that opens a WorkerPool of one worker, warms
it, and runs `--jobs` jobs of each of http_throughput's small queries (origin, carrier_month, dest_july), in turn,
as sandbox.service builds them (the cube for all three). Per job: the wall time of WorkerPool.run (the API side's
whole hop: send, the worker's job, the reply), and per query the worker's CPU and the voluntary context switches
of the worker's threads (from /proc/<pid>/task/*: schedstat and status; the main thread apart from the others,
such as the job watcher). Prints per side the median over rounds of each round's p50, and this/base; the load
before and after. Not a test: timings belong here.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

QUERIES = ("origin", "carrier_month", "dest_july")


def _threads(pid: int) -> dict[int, tuple[int, int]]:
    """(run time ns, voluntary context switches) of each thread of `pid`."""
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        ran = int((task / "schedstat").read_text().split()[0])
        switches = 0
        for line in (task / "status").read_text().splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                switches = int(line.split()[1])
        found[int(task.name)] = (ran, switches)
    return found


def child(tables_pickle: Path, jobs: int) -> None:
    """One side's round: a fresh pool, warmed, then `jobs` jobs of each query in turn; JSON on stdout."""
    from bench.http_throughput import SMALL
    from market.demo import FLIGHTS_POLICY
    from market.settings import Settings
    from sandbox import service
    from sandbox.engine import EngineLimits
    from sandbox.pool import Job, WorkerPool

    tables = pickle.loads(tables_pickle.read_bytes())
    limits = EngineLimits(workers=1, threads=Settings().sandbox_threads)
    built = {}
    for name in QUERIES:
        plan = service.exact_plan(service.plan_query(SMALL[name], FLIGHTS_POLICY, service.row_counts(tables)), tables)
        assert service.strategy(plan, tables) == "cube", name
        rows, _ = service.measure_scan(plan, tables)
        built[name] = Job(
            tables=service.files_of(tables),
            plan=plan,
            max_rows=10_000,
            seconds=service.budget_seconds(rows, limits),
            cube=service.cube_for(plan, tables) or "",
            statistics_free=service.statistics_free(tables),
            seeds=service._seeds(tables),
            threads=service.threads_for(rows, limits),
        )
    pool = WorkerPool(limits)
    try:
        for job in built.values():
            for _ in range(15):
                pool.run(job)
        (pid,) = pool.worker_pids()
        wall: dict[str, list[float]] = {name: [] for name in QUERIES}
        cpu: dict[str, float] = dict.fromkeys(QUERIES, 0.0)
        main_switches: dict[str, int] = dict.fromkeys(QUERIES, 0)
        other_switches: dict[str, int] = dict.fromkeys(QUERIES, 0)
        answers = {}
        for name, job in built.items():
            before = _threads(pid)
            for _ in range(jobs):
                started = time.perf_counter()
                answers[name] = pool.run(job).rows
                wall[name].append((time.perf_counter() - started) * 1000)
            after = _threads(pid)
            cpu[name] = sum(a[0] - before.get(t, (0, 0))[0] for t, a in after.items()) / 1e6 / jobs
            main_switches[name] = after[pid][1] - before[pid][1]
            other_switches[name] = sum(a[1] - before.get(t, (0, 0))[1] for t, a in after.items() if t != pid)
        print(
            json.dumps(
                {
                    "p50": {name: statistics.median(values) for name, values in wall.items()},
                    "cpu": cpu,
                    "main_switches": {name: main_switches[name] / jobs for name in QUERIES},
                    "other_switches": {name: other_switches[name] / jobs for name in QUERIES},
                    "answers": {name: repr(sorted(rows, key=repr)) for name, rows in answers.items()},
                }
            )
        )
    finally:
        pool.close()


PAIRS = {
    "origin": "SELECT origin, count(*) AS flights, avg(dep_delay) AS delay FROM flights GROUP BY origin",
    "dest_july": (
        "SELECT dest, count(*) AS flights, avg(arr_delay) AS delay FROM flights WHERE month = 7 GROUP BY dest"
    ),
    "dest_all_months": "SELECT dest, count(*) AS flights, avg(arr_delay) AS delay FROM flights GROUP BY dest",
    "origin_july": (
        "SELECT origin, count(*) AS flights, avg(dep_delay) AS delay FROM flights WHERE month = 7 GROUP BY origin"
    ),
}


def http_pairs(rounds: int) -> None:
    """`--http`: the four queries of PAIRS in turn over HTTP, sequentially (see the module's documentation)."""
    import httpx

    from bench import http_throughput
    from market.db import Database, migrate
    from market.demo import FLIGHTS_SLUG, build_demo
    from market.settings import Settings

    print(f"load before {Path('/proc/loadavg').read_text().strip()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), database_url=f"sqlite:///{tmp}/m.db", scheduler_enabled=False)
        database = Database.from_settings(settings)
        migrate(database)
        build_demo(database, settings)
        (key,) = http_throughput._add_buyers(database, 1)
        database.dispose()
        uncached = {"MARKET_SANDBOX_RESULT_CACHE_ENTRIES": "0"}
        with http_throughput._server(settings, 1, uncached) as (base, _), httpx.Client() as client:
            headers = {"Authorization": f"Bearer {key}"}
            took: dict[str, list[float]] = {name: [] for name in PAIRS}
            size = {}
            for round_ in range(rounds + 20):
                for name, sql in PAIRS.items():
                    started = time.perf_counter()
                    answer = client.post(
                        f"{base}/v1/queries", json={"product": FLIGHTS_SLUG, "sql": sql}, headers=headers
                    )
                    elapsed = (time.perf_counter() - started) * 1000
                    assert answer.status_code == 200, answer.text
                    size[name] = len(answer.content)
                    if round_ >= 20:
                        took[name].append(elapsed)
    for name in PAIRS:
        print(f"{name:16} p50 {statistics.median(took[name]):7.2f} ms  answer {size[name]} bytes")
    print(f"load after {Path('/proc/loadavg').read_text().strip()}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, default=None)
    parser.add_argument("--http", type=int, default=0, help="rounds of the HTTP comparison (no baseline needed)")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=60)
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        child(args.child, args.jobs)
        return
    if args.http:
        http_pairs(args.http)
        return
    if args.baseline is None:
        parser.error("--baseline DIR (or --http N)")
    from bench.worker_cpu import _tables

    print(f"load before {Path('/proc/loadavg').read_text().strip()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tables = _tables(Path(tmp))
        described = Path(tmp) / "tables.pickle"
        described.write_bytes(pickle.dumps(tables))
        here = Path(__file__).resolve().parent.parent
        sides = {"this": here, "base": args.baseline.resolve()}
        found: dict[str, list[dict[str, Any]]] = {label: [] for label in sides}
        for round_ in range(args.rounds):
            order = list(sides) if round_ % 2 == 0 else list(sides)[::-1]
            for label in order:
                env = {**os.environ, "PYTHONPATH": str(sides[label])}
                # This file run as a script: the side's tree first on the path for everything it imports.
                command = [sys.executable, __file__, "--baseline", "-", "--jobs", str(args.jobs)]
                done = subprocess.run(
                    [*command, "--child", str(described)], env=env, cwd=sides[label], capture_output=True, text=True
                )
                if done.returncode:
                    raise SystemExit(done.stderr)
                found[label].append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"round {round_ + 1}/{args.rounds} load {Path('/proc/loadavg').read_text().strip()}", flush=True)
    same = all(run["answers"] == found["this"][0]["answers"] for runs in found.values() for run in runs)
    print(f"answers identical on both sides in every round: {same}")
    print(f"{'query':14} {'side':5} {'p50 ms':>8} {'cpu ms':>8} {'main sw/job':>11} {'others sw/job':>13}")
    for name in QUERIES:
        medians = {}
        for label, runs in found.items():
            medians[label] = {
                key: statistics.median(run[key][name] for run in runs)
                for key in ("p50", "cpu", "main_switches", "other_switches")
            }
            m = medians[label]
            print(
                f"{name:14} {label:5} {m['p50']:8.3f} {m['cpu']:8.3f} {m['main_switches']:11.2f} "
                f"{m['other_switches']:13.2f}"
            )
        this, base = medians["this"], medians["base"]
        print(f"{name:14} this/base p50 {this['p50'] / base['p50']:.2f}, cpu {this['cpu'] / base['cpu']:.2f}")
    print(f"load after {Path('/proc/loadavg').read_text().strip()}", flush=True)


if __name__ == "__main__":
    main()
