"""Each corpus query's best thread CPU of plan_query over N uncached runs, as JSON on stdout (branch val15):
run it from two trees, alternately, and compare the two files with `python -m bench.valbest --compare a b`.
Far less noisy than a p99 of single calls on a loaded machine: a query's best run is what its code costs
when the machine leaves it alone. Usage: python -m bench.valbest [runs, default 8] | --compare A.json B.json"""

from __future__ import annotations

import gc
import json
import statistics
import sys
import time

from bench.stats import mann_whitney


def measure(runs: int) -> dict[str, list[float]]:
    from bench.sandbox_overhead import POLICY, QUERIES
    from sandbox import cache
    from sandbox.errors import QueryRefused
    from sandbox.policy import ProtectionPolicy
    from sandbox.service import plan_query
    from tests.sandbox.conftest import TWO_TABLE_POLICY
    from tests.sandbox.test_policy_corpus import JOINED, PEOPLE

    policy = ProtectionPolicy.model_validate(TWO_TABLE_POLICY)
    corpus = [sql for _, sql, _ in PEOPLE + JOINED] + list(QUERIES.values())
    gc.collect()
    gc.freeze()
    out: dict[str, list[float]] = {}
    for sql in corpus:
        target = POLICY if sql in QUERIES.values() else policy
        times = []
        accepted = 1.0
        for _ in range(runs + 1):
            cache.plans.clear()
            started = time.thread_time()
            try:
                plan_query(sql, target)
            except QueryRefused:
                accepted = 0.0
            times.append((time.thread_time() - started) * 1000)
        out[sql] = [min(times[1:]), accepted]  # the first run warms caches
    return out


def compare(first: str, second: str) -> None:
    with open(first) as a_file, open(second) as b_file:
        a, b = json.load(a_file), json.load(b_file)
    for label, keep in (("accepted", 1.0), ("refused", 0.0)):
        keys = [k for k in a if a[k][1] == keep]
        ratios = sorted(b[k][0] / a[k][0] for k in keys)
        xs, ys = sorted(a[k][0] for k in keys), sorted(b[k][0] for k in keys)
        test = mann_whitney([a[k][0] for k in keys], [b[k][0] for k in keys])
        print(
            f"{label} ({len(keys)}): median {statistics.median(xs):.2f} -> {statistics.median(ys):.2f} ms, "
            f"3rd slowest {xs[-3]:.2f} -> {ys[-3]:.2f} ms, slowest {xs[-1]:.2f} -> {ys[-1]:.2f} ms, "
            f"median ratio {statistics.median(ratios):.2f}, Mann-Whitney p {test.p:.2g}"
        )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--compare":
        compare(sys.argv[2], sys.argv[3])
    else:
        json.dump(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 8), sys.stdout)
