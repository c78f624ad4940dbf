"""Thread CPU per step of plan_query (inclusive, best of many runs) for one query: val-2ms profiling aid.
Usage: python -m bench.valsplit <bench query name | corpus SQL>"""

import collections
import functools
import importlib
import sys
import time

from bench.sandbox_overhead import POLICY, QUERIES
from sandbox import service
from sandbox.policy import ProtectionPolicy
from tests.sandbox.conftest import TWO_TABLE_POLICY

STEPS = [
    "sandbox.service:build_plan",
    "sandbox.service:check",
    "sandbox.validator:parse_one_select",
    "sandbox.validator:guard",
    "sandbox.rewrite:guard",
    "sandbox.validator:_Checker.refuse_aggregates_not_allowed",
    "sandbox.validator:_Checker.collect_tables",
    "sandbox.validator:_Checker.check",
    "sandbox.rewrite:seeded_stage",
    "sandbox.validator:_Checker.run",
    "sandbox.validator:check",
    "sandbox.syntax:guard",
    "sandbox.cost:check",
    "sandbox.algebra:Argument.check",
    "sandbox.rewrite:build_plan",
    "sandbox.rewrite:whole_sides",
    "sandbox.rewrite:_PostAggregate.__init__",
    "sandbox.rewrite:_PostAggregate.rewrite_items",
    "sandbox.rewrite:_constants",
    "sandbox.rewrite:_decide_sql",
    "sandbox.rewrite:_undecided_sql",
    "sandbox.rewrite:_partials",
    "sandbox.rewrite:_cells",
    "sandbox.rewrite:_shape",
    "sandbox.rewrite:_counts",
    "sandbox.rewrite:join_steps",
    "sandbox.rewrite:post_aggregate",
    "sandbox.rewrite:_seeded_text",
    "sandbox.rewrite:to_sql",
    "sandbox.crosscheck:confirm",
    "sandbox.crosscheck:_read",
    "sandbox.crosscheck:_node",
    "sandbox.crosscheck:_check_groups_node",
    "sandbox.crosscheck:_check_seeded_node",
    "sandbox.crosscheck:_check_output_node",
    "sandbox.crosscheck:_check_constants_node",
    "sandbox.crosscheck:_derived_seeded",
    "sandbox.crosscheck:_plain_groups",
]
spent: collections.Counter[str] = collections.Counter()


def wrap(name: str, fn):
    @functools.wraps(fn)
    def timed(*args, **kwargs):
        started = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[name] += time.thread_time() - started

    return timed


for step in STEPS:
    module_name, _, path = step.partition(":")
    module = importlib.import_module(module_name)
    owner, _, attr = path.rpartition(".")
    target = getattr(module, owner) if owner else module
    if hasattr(target, attr):
        setattr(target, attr, wrap(step, getattr(target, attr)))
arg = sys.argv[1]
sql, policy = (QUERIES[arg], POLICY) if arg in QUERIES else (arg, ProtectionPolicy.model_validate(TWO_TABLE_POLICY))
best: dict[str, float] = {}
for _ in range(60):
    spent.clear()
    started = time.thread_time()
    service._plan(sql, policy)
    spent["whole"] = time.thread_time() - started
    for key, value in spent.items():
        best[key] = min(best.get(key, 1e9), value)
for key, value in sorted(best.items(), key=lambda kv: -kv[1]):
    print(f"{key:40s} {value * 1000:.3f} ms")
