"""Another checkout's sandbox against this one's on TPC-H, alternating in one run (a loaded machine's
noise then falls on both sides alike).

    python -m bench.side_by_side --other /work/main --other-data /work/main/var --scale 1 --runs 5

Starts two long-lived servers, one per checkout (each imports its own `sandbox` and
`bench.sandbox_overhead`, builds or reuses its own product files, keeps its own worker pool and raw
DuckDB connection), then for each run and each query of bench.sandbox_overhead asks both for the raw
query and the sandboxed one, rotating the order. Prints per query the medians of wall time and of CPU
time (raw: the server process's CPU, DuckDB's threads included; sandbox: the worker's, as the sandbox
measures `cpu_ms`), the sandbox/raw ratio of each side and their medians over queries. CPU time is the
steadier figure on a shared machine; wall time is what `bench.sandbox_overhead` reports.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

SERVER = r"""
import json, os, sys, time
sys.path.insert(0, os.getcwd())
# Answers go to the real stdout; anything else written to fd 1 (DuckDB's progress bar, prints) to stderr.
answers = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
from bench.sandbox_overhead import POLICY, QUERIES, build_product, raw_connection
from sandbox.engine import EngineLimits
from sandbox.pool import WorkerPool
from sandbox import service
from sandbox.service import run_query

# A shared machine past its cores can stretch a join past its budget (5 s + 1 s per million rows, wall
# clock): the bench measures cost, not budgets, so both sides get the bench's own 600 s.
service.BASE_SECONDS = 600.0

tables = build_product(float(sys.argv[1]))
limits = EngineLimits(memory_limit="3GB", threads=2, timeout_seconds=600, address_space_mb=16384, workers=1)
pool = WorkerPool(limits)
raw = raw_connection(tables, limits)
print(json.dumps({"files": sorted(str(t.path) for t in tables.values())}), file=answers, flush=True)
for line in sys.stdin:
    mode, name = json.loads(line)
    sql = QUERIES[name]
    wall, cpu = time.perf_counter(), time.process_time()
    if mode == "raw":
        rows = len(raw.execute(sql).fetchall())
        cpu_ms = (time.process_time() - cpu) * 1000
    else:
        result = run_query(sql, POLICY, tables, limits, 1_000_000, pool)
        rows, cpu_ms = len(result.rows), result.measurements.cpu_ms
    answer = {"wall_ms": (time.perf_counter() - wall) * 1000, "cpu_ms": cpu_ms, "rows": rows}
    print(json.dumps(answer), file=answers, flush=True)
"""


class Side:
    def __init__(self, name: str, checkout: Path, data: Path, scale: float) -> None:
        environment = {**os.environ, "MARKET_DATA_DIR": str(data), "PYTHONPATH": str(checkout)}
        self.name = name
        self.process = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(scale)],
            cwd=checkout,
            env=environment,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.files = json.loads(self.process.stdout.readline())["files"]

    def ask(self, mode: str, query: str) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps([mode, query]) + "\n")
        self.process.stdin.flush()
        answer: dict[str, Any] = json.loads(self.process.stdout.readline())
        return answer

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=60)


def main(argv: list[str] | None = None) -> None:
    from bench.sandbox_overhead import QUERIES, data_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--other", type=Path, required=True, help="the other checkout (e.g. /work/main)")
    parser.add_argument("--other-data", type=Path, required=True, help="its MARKET_DATA_DIR (its TPC-H cache)")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    here = Path(__file__).resolve().parent.parent
    sides = [Side("other", args.other.resolve(), args.other_data.resolve(), args.scale)]
    sides.append(Side("this", here, data_dir().resolve(), args.scale))
    for side in sides:
        print(f"{side.name}: {', '.join(side.files)}", flush=True)
    series = [(side, mode) for side in sides for mode in ("raw", "sandbox")]
    times: dict[str, dict[tuple[str, str], list[dict[str, Any]]]] = {
        q: {(s.name, m): [] for s, m in series} for q in QUERIES
    }
    load_before = os.getloadavg()
    for run in range(args.runs + 1):  # the first run warms caches and the workers' connections
        for query in QUERIES:
            order = series[run % len(series) :] + series[: run % len(series)]
            for side, mode in order:
                answer = side.ask(mode, query)
                if run:
                    times[query][(side.name, mode)].append(answer)
    for side in sides:
        side.close()
    header = f"{'query':24} {'metric':5}" + "".join(f"{s.name + ' ' + m:>14}" for s, m in series)
    print(header + f"{'other/raw':>10}{'this/raw':>10}{'this/other':>11}")
    ratios: dict[str, list[tuple[float, float, float]]] = {"wall": [], "cpu": []}
    for query in QUERIES:
        for metric, key in (("wall", "wall_ms"), ("cpu", "cpu_ms")):
            medians = {k: statistics.median(a[key] for a in v) for k, v in times[query].items()}
            other = medians[("other", "sandbox")] / max(medians[("other", "raw")], 1e-9)
            this = medians[("this", "sandbox")] / max(medians[("this", "raw")], 1e-9)
            versus = medians[("this", "sandbox")] / max(medians[("other", "sandbox")], 1e-9)
            ratios[metric].append((other, this, versus))
            cells = "".join(f"{medians[(s.name, m)]:14.1f}" for s, m in series)
            print(f"{query:24} {metric:5}{cells}{other:10.2f}{this:10.2f}{versus:11.2f}")
    for metric, values in ratios.items():
        other, this, versus = (statistics.median(v[i] for v in values) for i in range(3))
        print(f"median over queries ({metric}): other/raw {other:.2f}, this/raw {this:.2f}, this/other {versus:.2f}")
    load = " ".join(f"{value:.2f}" for value in (*load_before, *os.getloadavg()))
    print(f"load average (1, 5, 15 min) before and after: {load}; cores: {os.cpu_count()}")


if __name__ == "__main__":
    main()
