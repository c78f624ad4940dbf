"""Red team (session 5): the result cache never gives one policy's answer to a query under another.

Its key held the version's files, the mode and three statements (stage 1's template, the decision,
stage 2). The privacy unit is not in them: the worker fills stage 1's threshold columns in from the
plan's units. Two policies on the same files that differ only in the unit column gave the same key,
so a query under the second got the first's answer, with groups the second suppresses. (No route
makes two such policies today, a version's policy being fixed; the key must not rely on that.)
"""

from __future__ import annotations

import copy

from sandbox import cache
from sandbox.policy import ProtectionPolicy
from sandbox.pool import WorkerPool
from sandbox.service import TableFile, cached_result, execute, plan_query
from tests.factories import PEOPLE_POLICY
from tests.sandbox.conftest import LIMITS

SQL = "SELECT region, count(*) AS n FROM people GROUP BY region ORDER BY region"


def test_an_answer_under_one_privacy_unit_is_not_served_under_another(
    tables: dict[str, TableFile], pool: WorkerPool
) -> None:
    by_person = ProtectionPolicy.model_validate(PEOPLE_POLICY)
    by_category = copy.deepcopy(PEOPLE_POLICY)
    people = by_category["tables"]["people"]
    people["privacy_unit"], people["dimensions"] = "category", ["region", "month", "person_id"]
    by_category_policy = ProtectionPolicy.model_validate(by_category)
    people_only = {"people": tables["people"]}
    cache.results.clear()

    first = execute(plan_query(SQL, by_person), people_only, LIMITS, 1000, pool)
    assert len(first.rows) == 4  # 15 people in every region

    under_category = plan_query(SQL, by_category_policy)
    assert cached_result(under_category, people_only, 1000) is None
    fresh = execute(under_category, people_only, LIMITS, 1000, pool)
    assert fresh.rows == []  # at most 3 categories in a region: every group under k
    assert cached_result(plan_query(SQL, by_person), people_only, 1000) is not None
