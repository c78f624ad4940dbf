"""Red team red14 (session 10): the result cache (sandbox/cache.py, service.cached_result) across policies.

test_result_cache_key covers two policies on the same files that differ in the privacy unit. Here k, the
other part of a policy a threshold answer over the same files depends on (a measure's bounds do not change
it: the build refuses data outside them, and the statements do not clamp), alone and with bounds changed
beside it. For each variant, after the base policy's answer is cached, the variant's lookup is either a
miss or exactly the answer a fresh run under the variant gives. Held: every variant misses (k is in the
statements the key holds).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from sandbox import cache
from sandbox.policy import ProtectionPolicy
from sandbox.pool import WorkerPool
from sandbox.service import TableFile, cached_result, execute, plan_query
from tests.factories import PEOPLE_POLICY
from tests.sandbox.conftest import LIMITS

SQL = "SELECT category, count(*) AS n, sum(amount) AS s FROM people GROUP BY category ORDER BY category"
"""By category: 'common' has 50 people, 'rare' and 'tiny' 5 each (tests.factories.people_rows)."""


def _variant(k: int | None = None, amount: tuple[int, int] | None = None, trips: tuple[int, int] | None = None) -> Any:
    policy = copy.deepcopy(PEOPLE_POLICY)
    if k is not None:
        policy["min_group_size"] = k
    bounds = policy["tables"]["people"]["bounds"]
    if amount is not None:
        bounds["amount"] = {"min": amount[0], "max": amount[1]}
    if trips is not None:
        bounds["trips"] = {"min": trips[0], "max": trips[1]}
    return ProtectionPolicy.model_validate(policy)


VARIANTS = {
    "k 5": _variant(k=5),
    "k 51": _variant(k=51),
    "k 4 and bounds": _variant(k=4, amount=(0, 100), trips=(0, 8)),
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_an_answer_under_one_policy_is_never_served_under_another(
    tables: dict[str, TableFile], pool: WorkerPool, name: str
) -> None:
    people = {"people": tables["people"]}
    base = ProtectionPolicy.model_validate(PEOPLE_POLICY)
    cache.results.clear()
    cached = execute(plan_query(SQL, base), people, LIMITS, 1000, pool)
    variant = plan_query(SQL, VARIANTS[name])
    found = cached_result(variant, people, 1000)
    cache.results.clear()
    fresh = execute(variant, people, LIMITS, 1000, pool)
    assert fresh.rows != cached.rows, "the variant must change the answer for this test to mean anything"
    assert found is None or found.rows == fresh.rows, f"{name}: served {found.rows if found else None}"
