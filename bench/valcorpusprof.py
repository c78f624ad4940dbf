"""cProfile of plan_query over the accepted validation corpus (val-2ms profiling aid)."""
import cProfile, pstats, sys
from sandbox import cache
from sandbox.errors import QueryRefused
from sandbox.policy import ProtectionPolicy
from sandbox.service import plan_query
from bench.sandbox_overhead import QUERIES, POLICY
from tests.sandbox.conftest import TWO_TABLE_POLICY
from tests.sandbox.test_policy_corpus import JOINED, PEOPLE
policy = ProtectionPolicy.model_validate(TWO_TABLE_POLICY)
corpus = [sql for _, sql, _ in PEOPLE + JOINED] + list(QUERIES.values())
skip_or = "or" in sys.argv
pr = cProfile.Profile()
for r in range(5):
    for sql in corpus:
        if skip_or and "month = 179" in sql:
            continue
        cache.plans.clear()
        target = POLICY if sql in QUERIES.values() else policy
        if r: pr.enable()
        try:
            plan_query(sql, target)
        except QueryRefused:
            pass
        pr.disable()
pstats.Stats(pr).sort_stats(sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] != "or" else "tottime").print_stats(45)
