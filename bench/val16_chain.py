"""What an OR chain costs validation, per term (branch val16, session 16): each chain's best thread CPU of
plan_query over N uncached runs (the plan cache emptied before each), for 1 to 180 terms of
`month = i OR ...`, and the cost per term past the first. Linear cost shows as a steady ms per term.
Run it from two trees alternately (PYTHONPATH=<tree>) to compare them.
Usage: python -m bench.val16_chain [runs, default 15]"""

from __future__ import annotations

import gc
import sys
import time

from sandbox import cache
from sandbox.policy import ProtectionPolicy
from sandbox.service import plan_query
from tests.sandbox.conftest import TWO_TABLE_POLICY

TERMS = (1, 20, 60, 180)


def chain(terms: int) -> str:
    return "SELECT count(*) FROM people WHERE " + " OR ".join(f"month = {i}" for i in range(terms))


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    policy = ProtectionPolicy.model_validate(TWO_TABLE_POLICY)
    gc.collect()
    gc.freeze()
    best: dict[int, float] = {}
    for _ in range(runs):  # the chains in turn, so that each meets the same load
        for terms in TERMS:
            cache.plans.clear()
            started = time.thread_time()
            plan_query(chain(terms), policy)
            spent = (time.thread_time() - started) * 1000
            best[terms] = min(best.get(terms, spent), spent)
    for terms in TERMS:
        per_term = (best[terms] - best[1]) / (terms - 1) if terms > 1 else 0.0
        print(f"{terms:4d} terms: {best[terms]:6.2f} ms, {per_term:.3f} ms per term past the first")


if __name__ == "__main__":
    main()
