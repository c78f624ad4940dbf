import time, contextlib, gc
from sandbox import cache
from sandbox.errors import QueryRefused
from sandbox.policy import ProtectionPolicy
from sandbox.service import plan_query
from bench.sandbox_overhead import QUERIES, POLICY
from tests.sandbox.conftest import TWO_TABLE_POLICY
from tests.sandbox.test_policy_corpus import JOINED, PEOPLE
policy = ProtectionPolicy.model_validate(TWO_TABLE_POLICY)
corpus = [sql for _, sql, _ in PEOPLE + JOINED] + list(QUERIES.values())
res = []
for i, sql in enumerate(corpus):
    target = POLICY if sql in QUERIES.values() else policy
    ts = []
    for r in range(6):
        cache.plans.clear()
        t = time.thread_time()
        ok = True
        try:
            plan_query(sql, target)
        except QueryRefused:
            ok = False
        ts.append((time.thread_time() - t) * 1000)
    res.append((min(ts[1:]), ok, sql))
res.sort(reverse=True)
for t, ok, sql in res[:25]:
    print(f"{t:6.2f} {'OK ' if ok else 'REF'} {sql[:150]}")
print("accepted", sum(1 for r in res if r[1]), "of", len(res))
