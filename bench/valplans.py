"""Every plan_query output (each Plan field) or refusal code over the validation corpus, as JSON on
stdout: run on two trees and diff, to show a change leaves the statements byte-for-byte the same (val-2ms)."""

import dataclasses
import json
import sys

from bench.sandbox_overhead import POLICY, QUERIES
from sandbox import cache
from sandbox.errors import QueryRefused
from sandbox.policy import ProtectionPolicy
from sandbox.service import plan_query
from tests.sandbox.conftest import TWO_TABLE_POLICY
from tests.sandbox.test_policy_corpus import JOINED, PEOPLE

policy = ProtectionPolicy.model_validate(TWO_TABLE_POLICY)
corpus = [sql for _, sql, _ in PEOPLE + JOINED] + list(QUERIES.values())
out = {}
for sql in corpus:
    cache.plans.clear()
    target = POLICY if sql in QUERIES.values() else policy
    for sizes in (None, {"people": 1000, "shops": 10, "orders": 100, "lineitem": 400}):
        try:
            plan = plan_query(sql, target, sizes)
            out[repr((sql, sizes))] = repr(dataclasses.asdict(plan))
        except QueryRefused as error:
            out[repr((sql, sizes))] = (
                "refused " + error.code + " " + json.dumps(getattr(error, "params", None), sort_keys=True, default=str)
            )
json.dump(out, sys.stdout, indent=0, sort_keys=True)
