"""Validation's p99 and its spread, per query and per collector setting (branch val16).

    python -m bench.valspread                      # this tree, both collector settings alternated in one process
    python -m bench.valspread --side /tmp/x-main   # this tree and another (a `git archive` of main), alternated

One process runs bench.sandbox_overhead's measure (plan_query over the 270 corpus queries, the plan cache emptied
before every call, 11 passes, the first discarded) and adds what its p99 is made of: each query's fastest,
median and slowest run, the queries that hold the calls above the p99, and the garbage collections that ran
during calls. Two collector settings, alternated pass by pass in the same process: CPython's default
thresholds (700, 10, 10), which bench.sandbox_overhead's validation_latency keeps, and the API process's
(market.app.GC_THRESHOLDS, set with gc.freeze() at start-up by market.app._tune_process), which is where
plan_query runs in production.

`--side TREE` runs this file's measurement in a subprocess for each tree (the tree's sandbox and corpus
first on sys.path, the same interpreter), alternating the trees `--runs` times, and prints each cell and
the medians, with the load averages before and after. Report the validating thread's CPU time beside the
wall time: on 2 cores shared past their capacity the wall-clock p99 of single calls measures the scheduler.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_THRESHOLDS = (700, 10, 10)
SERVER_THRESHOLDS = (50_000, 10, 10)
"""market.app.GC_THRESHOLDS when this was written; read from market.app when the tree has it."""


def _server_thresholds() -> tuple[int, int, int]:
    try:
        from market.app import GC_THRESHOLDS

        return tuple(GC_THRESHOLDS)  # type: ignore[return-value]
    except ImportError:
        return SERVER_THRESHOLDS


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def measure(passes: int = 11, settings: tuple[str, ...] = ("default", "server")) -> dict[str, Any]:
    """Per collector setting: p50, p99, each query's fastest-run p99, the thread's CPU p99, collections
    during timed calls, and the queries above the p99 (their fastest, median and slowest runs)."""
    from bench.sandbox_overhead import POLICY, QUERIES
    from sandbox import cache
    from sandbox.errors import QueryRefused
    from sandbox.policy import ProtectionPolicy
    from sandbox.service import plan_query
    from tests.sandbox.conftest import TWO_TABLE_POLICY
    from tests.sandbox.test_policy_corpus import JOINED, PEOPLE

    policy = ProtectionPolicy.model_validate(TWO_TABLE_POLICY)
    corpus = [sql for _, sql, _ in PEOPLE + JOINED] + list(QUERIES.values())
    targets = [POLICY if sql in QUERIES.values() else policy for sql in corpus]
    thresholds = {"default": DEFAULT_THRESHOLDS, "server": _server_thresholds()}
    collections = [0]
    pauses: list[float] = []
    started_pause = [0.0]

    def timer(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections[0] += 1
            started_pause[0] = time.perf_counter()
        else:
            pauses.append((time.perf_counter() - started_pause[0]) * 1000)

    wall: dict[str, list[list[float]]] = {s: [[] for _ in corpus] for s in settings}
    cpu: dict[str, list[float]] = {s: [] for s in settings}
    during: dict[str, list[int]] = {s: [] for s in settings}
    gc_ms: dict[str, float] = {s: 0.0 for s in settings}

    def one_pass(setting: str | None) -> None:
        for i, sql in enumerate(corpus):
            cache.plans.clear()
            before, paused = collections[0], len(pauses)
            started, started_cpu = time.perf_counter(), time.thread_time()
            with contextlib.suppress(QueryRefused):
                plan_query(sql, targets[i])
            spent, spent_cpu = (time.perf_counter() - started) * 1000, (time.thread_time() - started_cpu) * 1000
            if setting is not None:
                wall[setting][i].append(spent)
                cpu[setting].append(spent_cpu)
                during[setting].append(collections[0] - before)
                gc_ms[setting] += sum(pauses[paused:])

    one_pass(None)  # warms caches, as validation_latency's first pass
    gc.collect()
    gc.freeze()
    gc.callbacks.append(timer)
    try:
        for number in range(passes - 1):
            for setting in settings if number % 2 == 0 else settings[::-1]:
                gc.set_threshold(*thresholds[setting])
                one_pass(setting)
    finally:
        gc.callbacks.remove(timer)
        gc.set_threshold(*DEFAULT_THRESHOLDS)
    out: dict[str, Any] = {"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    for setting in settings:
        runs = wall[setting]
        every = [t for per_query in runs for t in per_query]
        p99 = _quantile(every, 0.99)
        above = sorted(((t, i) for i, per_query in enumerate(runs) for t in per_query if t > p99), reverse=True)
        holders: dict[int, int] = {}
        for _, i in above:
            holders[i] = holders.get(i, 0) + 1
        out[setting] = {
            "thresholds": list(thresholds[setting]),
            "p50": _quantile(every, 0.5),
            "p99": p99,
            "fastest_p99": _quantile([min(r) for r in runs], 0.99),
            "cpu_p50": _quantile(cpu[setting], 0.5),
            "cpu_p99": _quantile(cpu[setting], 0.99),
            "calls_with_gc": sum(1 for d in during[setting] if d),
            "collections": sum(during[setting]),
            "gc_ms": gc_ms[setting],
            "above_p99": [
                {
                    "sql": corpus[i][:70],
                    "calls": count,
                    "fastest": min(runs[i]),
                    "median": statistics.median(runs[i]),
                    "slowest": max(runs[i]),
                }
                for i, count in sorted(holders.items(), key=lambda kv: -kv[1])
            ],
        }
    return out


def _print_one(label: str, result: dict[str, Any], detail: bool) -> None:
    for setting, r in result.items():
        if setting == "rss_mb":
            continue
        print(
            f"{label} {setting} {tuple(r['thresholds'])}: p50 {r['p50']:.2f} p99 {r['p99']:.2f} fastest-run p99 "
            f"{r['fastest_p99']:.2f} CPU p50 {r['cpu_p50']:.2f} CPU p99 {r['cpu_p99']:.2f} ms; "
            f"{r['calls_with_gc']} calls met {r['collections']} collections ({r['gc_ms']:.0f} ms)"
        )
        if detail:
            for q in r["above_p99"]:
                print(
                    f"    {q['calls']:2d} calls above p99: fastest {q['fastest']:.2f} median {q['median']:.2f} "
                    f"slowest {q['slowest']:.2f} ms  {q['sql']}"
                )
    print(f"{label} max RSS {result['rss_mb']:.0f} MB")


def _child(tree: Path, passes: int) -> dict[str, Any]:
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); import runpy; "
        "spread = runpy.run_path(sys.argv[2]); print(json.dumps(spread['measure'](int(sys.argv[3]))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tree), __file__, str(passes)],
        cwd=tree,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def side_by_side(other: Path, runs: int, passes: int) -> None:
    here = Path(__file__).resolve().parent.parent
    cells: dict[str, list[dict[str, Any]]] = {"main": [], "branch": []}
    print(f"load before: {os.getloadavg()}")
    for number in range(runs):
        order = [("main", other), ("branch", here)]
        for label, tree in order if number % 2 == 0 else order[::-1]:
            load = os.getloadavg()[0]
            result = _child(tree, passes)
            cells[label].append(result)
            _print_one(f"run {number + 1} {label} (load {load:.1f})", result, detail=False)
    print(f"load after: {os.getloadavg()}")
    for setting in ("default", "server"):
        for key in ("p50", "p99", "fastest_p99", "cpu_p99"):
            a = statistics.median(c[setting][key] for c in cells["main"])
            b = statistics.median(c[setting][key] for c in cells["branch"])
            print(f"median over runs, {setting} collector, {key}: main {a:.2f} -> branch {b:.2f} ms ({b / a:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", type=Path, help="another tree to alternate with this one (e.g. main's archive)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--passes", type=int, default=11)
    args = parser.parse_args()
    if args.side:
        side_by_side(args.side, args.runs, args.passes)
    else:
        print(f"load before: {os.getloadavg()}")
        _print_one("this tree", measure(args.passes), detail=True)
        print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
