"""Per-phase thread CPU of plan_query on the slowest queries (val-2ms profiling aid)."""
import sys, time, cProfile, pstats
from sandbox import cache, crosscheck, service
from sandbox.policy import ProtectionPolicy
from sandbox.rewrite import build_plan
from sandbox.validator import check
from bench.sandbox_overhead import QUERIES, POLICY
from tests.sandbox.conftest import TWO_TABLE_POLICY
from tests.sandbox.test_policy_corpus import JOINED, PEOPLE

policy = ProtectionPolicy.model_validate(TWO_TABLE_POLICY)
pick = {
    "or_chain": next(sql for _, sql, _ in PEOPLE if "month = 179" in sql),
    "q1": next(v for k, v in QUERIES.items() if "returnflag" in v),
    "prio_ship": next(v for k, v in QUERIES.items() if "late_lines" in v),
    "join_amount_rent": "SELECT p.region, sum(p.amount), avg(s.rent) FROM people p JOIN shops s ON p.region = s.region GROUP BY 1",
    "region_in": "SELECT region, count(*) FROM people WHERE month IN (1, 2) AND region <> 'x' GROUP BY region",
}
def phases(sql, pol):
    best = {}
    for _ in range(7):
        t0 = time.thread_time(); key = pol.model_dump_json()
        t1 = time.thread_time(); checked = check(sql, pol)
        t2 = time.thread_time(); plan = build_plan(checked, pol, None)
        t3 = time.thread_time()
        extra = [*([plan.constants_sql] if plan.constants_sql else []), *([plan.seeded] if plan.seeded else [])]
        row = crosscheck._read(sql, [plan.template, plan.output_sql, *extra])
        t4 = time.thread_time()
        service._plan(sql, pol)
        t5 = time.thread_time()
        cur = {"key": t1 - t0, "check": t2 - t1, "build": t3 - t2, "duck_read": t4 - t3, "whole": t5 - t4}
        for k, v in cur.items():
            best[k] = min(best.get(k, 1e9), v * 1000)
    return best
for name, sql in pick.items():
    pol = POLICY if sql in QUERIES.values() else policy
    b = phases(sql, pol)
    print(f"{name:18s} " + " ".join(f"{k}={v:.2f}" for k, v in b.items()), f"walks~{b['whole']-b['check']-b['build']-b['duck_read']:.2f}")
if len(sys.argv) > 1:
    sql = pick[sys.argv[1]]; pol = POLICY if sql in QUERIES.values() else policy
    pr = cProfile.Profile(); pr.enable()
    for _ in range(int(sys.argv[2]) if len(sys.argv) > 2 else 50):
        service._plan(sql, pol)
    pr.disable(); pstats.Stats(pr).sort_stats("tottime").print_stats(35)
