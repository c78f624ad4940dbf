"""Validation's CPU time in two trees, alternated pass by pass between two long-lived processes (branch val18).

    python -m bench.val18_alternate /tmp/val18-base [rounds]

On a machine loaded past its cores (load 8-20 on 2 cores while this branch was measured), runs of a whole
bench.valspread child minutes apart saw different loads; here each tree's process runs one pass over the
corpus of bench.valspread (plan_query over 270 queries, the plan cache emptied before each call, the API's
collector thresholds and gc.freeze()) in turn, so both see the same minutes. Per tree: the p99 of every
call's thread CPU time, the p99 of each query's fastest run, and the fastest run of the slowest queries.

Two processes of the same tree differed by up to 17% here unless PYTHONHASHSEED was set (the children inherit
the environment): run it as `PYTHONHASHSEED=0 python -m bench.val18_alternate ...` (docs/benchmarks.md, "val18").
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import gc, json, sys, time, contextlib
sys.path.insert(0, sys.argv[1])
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
def one_pass():
    out = []
    for sql, target in zip(corpus, targets):
        cache.plans.clear()
        started, cpu = time.perf_counter(), time.thread_time()
        with contextlib.suppress(QueryRefused):
            plan_query(sql, target)
        out.append(((time.thread_time() - cpu) * 1000, (time.perf_counter() - started) * 1000))
    return out
one_pass()
gc.collect(); gc.freeze(); gc.set_threshold(50_000, 10, 10)
print(json.dumps([sql[:60] for sql in corpus]), flush=True)
for line in sys.stdin:
    print(json.dumps(one_pass()), flush=True)
"""


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def main() -> None:
    other = Path(sys.argv[1]).resolve()
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    here = Path(__file__).resolve().parent.parent
    trees = {"main": other, "branch": here}
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    procs = {
        label: subprocess.Popen(
            [sys.executable, "-c", CHILD, str(tree)],
            cwd=tree,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        for label, tree in trees.items()
    }
    names = {label: json.loads(proc.stdout.readline()) for label, proc in procs.items()}  # type: ignore[union-attr]
    assert names["main"] == names["branch"]
    samples: dict[str, list[list[tuple[float, float]]]] = {label: [] for label in trees}
    print(f"load before: {os.getloadavg()}")
    for number in range(rounds):
        order = list(trees) if number % 2 == 0 else list(trees)[::-1]
        for label in order:
            proc = procs[label]
            proc.stdin.write("go\n")  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]
            samples[label].append(json.loads(proc.stdout.readline()))  # type: ignore[union-attr]
    print(f"load after: {os.getloadavg()}")
    for proc in procs.values():
        proc.stdin.close()  # type: ignore[union-attr]
        proc.wait()
    queries = len(names["main"])
    summary: dict[str, dict[str, float]] = {}
    for label, runs in samples.items():
        cpu = [run[i][0] for run in runs for i in range(queries)]
        wall = [run[i][1] for run in runs for i in range(queries)]
        fastest = [min(run[i][0] for run in runs) for i in range(queries)]
        summary[label] = {
            "cpu_p99": _quantile(cpu, 0.99),
            "wall_p99": _quantile(wall, 0.99),
            "fastest_cpu_p99": _quantile(fastest, 0.99),
            "cpu_p50": _quantile(cpu, 0.5),
        }
        print(f"{label}: " + ", ".join(f"{k} {v:.3f}" for k, v in summary[label].items()) + " ms")
    slowest = sorted(range(queries), key=lambda i: -min(run[i][0] for run in samples["main"]))[:6]
    for i in slowest:
        a = [run[i][0] for run in samples["main"]]
        b = [run[i][0] for run in samples["branch"]]
        print(
            f"  fastest {min(a):.3f} -> {min(b):.3f} ms ({min(b) / min(a):.2f}), median {statistics.median(a):.3f} -> "
            f"{statistics.median(b):.3f} ms  {names['main'][i]}"
        )


if __name__ == "__main__":
    main()
