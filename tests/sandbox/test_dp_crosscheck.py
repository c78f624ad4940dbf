"""DP mode's second validator: DuckDB's parser reads the bounded-statistics statement that will run, and
anything the plan would not write (a table column above the bounded rows, a hidden column, an unclamped
measure, a function outside the statistics) is refused as a parser mismatch."""

from __future__ import annotations

import pytest

from sandbox import crosscheck, dp
from sandbox.errors import QueryRefused
from sandbox.policy import ProtectionPolicy
from tests.factories import PEOPLE_POLICY

ALIASES = {"people": "people"}
SQL = (
    "SELECT category, count(*), sum(amount), avg(amount - trips), count(DISTINCT person_id) "
    "FROM people WHERE month <> 3 GROUP BY category"
)


def _policy() -> ProtectionPolicy:
    raw = {**PEOPLE_POLICY, "mode": "dp", "dp": {"max_groups_per_unit": 2, "max_rows_per_group": 2}}
    return ProtectionPolicy.model_validate(raw)


@pytest.mark.parametrize(
    "sql",
    [
        SQL,
        "SELECT count(*) FROM people",
        "SELECT region, sum(trips) FROM people WHERE region IN ('north', 'south') GROUP BY region",
        "SELECT month, avg(amount) FROM people WHERE category = 'a' OR month > 6 GROUP BY month",
    ],
)
def test_every_planned_dp_statement_passes_duckdbs_reading(sql: str) -> None:
    policy = _policy()
    plan = dp.plan(sql, policy, seed="v1")
    crosscheck.confirm_dp(sql, plan.sql, policy, ALIASES, plan.constants_sql)


def _tampered(old: str, new: str) -> str:
    plan = dp.plan(SQL, _policy(), seed="v1")
    assert old in plan.sql, plan.sql
    return plan.sql.replace(old, new, 1)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        # a product column read above the bounded rows, where no clamp or cap applies
        ('sum(least("__n", 2)) AS "__stat0"', 'sum("people"."amount") AS "__stat0"'),
        # a function other than the statistics' above the bounded rows
        ("hash(\"__g0\", 'v1')", "random()"),
        # a hidden column as a group key
        ('"people"."category" AS "__g0"', '"people"."name" AS "__g0"'),
        # a measure not clamped
        (
            'CASE WHEN "people"."amount" IS NULL THEN NULL ELSE LEAST(GREATEST(TRY_CAST("people"."amount" AS DOUBLE),'
            ' 0.0e0), 10000.0e0) END AS "__v0"',
            'TRY_CAST("people"."amount" AS DOUBLE) AS "__v0"',
        ),
        # another column as the privacy unit
        ('"people"."person_id" AS "__unit"', '"people"."region" AS "__unit"'),
        # a WHERE on a measure
        ('WHERE "people"."month" <> 3', 'WHERE "people"."amount" > 3'),
        # the group cap's filter reading a table column
        ('WHERE "__group" <= 2', 'WHERE "people"."amount" <= 2'),
        # an ORDER BY/LIMIT inside (post-processing belongs to the noisy answer)
        ('GROUP BY "__unit", "__g0"', 'GROUP BY "__unit", "__g0" LIMIT 5'),
    ],
)
def test_a_statement_the_plan_would_not_write_is_refused(old: str, new: str) -> None:
    with pytest.raises(QueryRefused) as refused:
        crosscheck.confirm_dp(SQL, _tampered(old, new), _policy(), ALIASES)
    assert refused.value.code == "parser_mismatch"


def test_the_buyers_text_must_be_one_select_to_duckdb_too() -> None:
    plan = dp.plan(SQL, _policy(), seed="v1")
    with pytest.raises(QueryRefused) as refused:
        crosscheck.confirm_dp(SQL + "; SELECT 1", plan.sql, _policy(), ALIASES)
    assert refused.value.code == "parser_mismatch"
