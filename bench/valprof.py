"""The slowest queries of the validation corpus: each query's best thread CPU time of plan_query over five
uncached runs (the plan cache emptied before each), slowest first (branch val-2ms; from the lead's
/work/briefs/valprof.py). Usage: python -m bench.valprof [how many to print, default 25]"""

from __future__ import annotations

import sys
import time

from bench.sandbox_overhead import POLICY, QUERIES
from sandbox import cache
from sandbox.errors import QueryRefused
from sandbox.policy import ProtectionPolicy
from sandbox.service import plan_query
from tests.sandbox.conftest import TWO_TABLE_POLICY
from tests.sandbox.test_policy_corpus import JOINED, PEOPLE


def main() -> None:
    shown = int(sys.argv[1]) if len(sys.argv) > 1 else 25
    policy = ProtectionPolicy.model_validate(TWO_TABLE_POLICY)
    corpus = [sql for _, sql, _ in PEOPLE + JOINED] + list(QUERIES.values())
    results = []
    for sql in corpus:
        target = POLICY if sql in QUERIES.values() else policy
        times = []
        accepted = True
        for _ in range(6):
            cache.plans.clear()
            started = time.thread_time()
            try:
                plan_query(sql, target)
            except QueryRefused:
                accepted = False
            times.append((time.thread_time() - started) * 1000)
        results.append((min(times[1:]), accepted, sql))  # the first run warms caches
    results.sort(reverse=True)
    for spent, accepted, sql in results[:shown]:
        print(f"{spent:6.2f} {'OK ' if accepted else 'REF'} {sql[:150]}")
    print("accepted", sum(1 for r in results if r[1]), "of", len(results))


if __name__ == "__main__":
    main()
