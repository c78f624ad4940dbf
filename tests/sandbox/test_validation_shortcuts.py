"""The shortcuts that keep validation fast (branch val-2ms) change no statement and skip no check.

- The seeded stage 1 is written into the template's text (rewrite._seeded_text) instead of generated from
  a copy of the stage's tree (rewrite.seeded_stage): the same text for every corpus query.
- DuckDB's tree of the seeded stage 1 is walked again only where it differs from the template's tree the
  groups check already accepted (crosscheck._unseeded_is): a seeded statement that says anything the
  template does not is still walked, and refused.
- Text positions are dropped from DuckDB's JSON before two expressions are compared, never from inside a
  string constant.
"""

from __future__ import annotations

from typing import Any

import pytest

from sandbox import cache, crosscheck, rewrite
from sandbox.errors import QueryRefused
from sandbox.policy import ProtectionPolicy
from sandbox.rewrite import GROUPS_TABLE, RESTRICT_COLUMN, THRESHOLD_COLUMN, Plan
from sandbox.service import plan_query
from tests.sandbox.conftest import TWO_TABLE_POLICY
from tests.sandbox.test_policy_corpus import JOINED, PEOPLE

POLICY = ProtectionPolicy.model_validate(TWO_TABLE_POLICY)
ACCEPTED = [sql for _, sql, code in PEOPLE + JOINED if code is None]
SIZES = {"people": 1000, "shops": 20}
"""Row counts: an inner join then reads the smaller table whole (rewrite.whole_sides), a second shape."""
FILTERED = "SELECT region, count(*) FROM people WHERE month IN (1, 2) AND region <> 'x' GROUP BY region"


def _confirm(plan: Plan, seeded: str, raw_sql: str = FILTERED) -> None:
    """crosscheck.confirm as service._plan calls it, with `seeded` as the seeded stage 1."""
    crosscheck.confirm(
        raw_sql,
        plan.template,
        plan.output_sql,
        POLICY,
        {"people": "people"},
        threshold=THRESHOLD_COLUMN,
        restrict=RESTRICT_COLUMN,
        groups_table=GROUPS_TABLE,
        constants=plan.constants_sql,
        seeded=seeded,
    )


def test_the_seeded_text_is_the_one_the_tree_gives(monkeypatch: pytest.MonkeyPatch) -> None:
    cases = [(sql, sizes) for sql in ACCEPTED for sizes in (None, SIZES)]
    cache.plans.clear()
    written = [plan_query(sql, POLICY, sizes).seeded for sql, sizes in cases]
    assert sum(text is not None for text in written) > 30
    monkeypatch.setattr(rewrite, "_seeded_text", lambda *args: None)  # seeded_stage's tree, every time
    cache.plans.clear()
    for (sql, sizes), text in zip(cases, written, strict=True):
        assert plan_query(sql, POLICY, sizes).seeded == text, sql
    cache.plans.clear()


def test_the_seeded_tree_equal_to_the_template_is_walked_once(monkeypatch: pytest.MonkeyPatch) -> None:
    walks: list[int] = []
    walk = crosscheck._check_groups_node

    def counted(*args: Any, **kwargs: Any) -> None:
        walks.append(1)
        walk(*args, **kwargs)

    monkeypatch.setattr(crosscheck, "_check_groups_node", counted)
    cache.plans.clear()
    assert plan_query(FILTERED, POLICY).seeded is not None
    assert len(walks) == 1  # the template's; the seeded statement's rest is that same tree


def test_a_seeded_statement_that_differs_from_the_template_is_walked_and_refused() -> None:
    plan = plan_query(FILTERED, POLICY)
    assert plan.seeded is not None
    _confirm(plan, plan.seeded)
    tampered = [
        # what only the groups walk refuses: a protected column, an aggregate of the unit, a table function
        plan.seeded.replace('"people"."region" AS "__g0"', '"people"."person_id" AS "__g0"'),
        plan.seeded.replace("COUNT(*)", 'COUNT("people"."person_id")'),
        plan.seeded.replace('"people" AS "people"', "read_csv('x') AS \"people\""),
        # the restriction placeholder moved, or gone
        plan.seeded.replace(f'AND "{RESTRICT_COLUMN}"', "AND TRUE"),
    ]
    for text in tampered:
        assert text != plan.seeded
        with pytest.raises(QueryRefused) as refused:
            _confirm(plan, text)
        assert refused.value.code == "parser_mismatch", text


def test_a_seeded_statement_grouping_differently_is_walked() -> None:
    """An extra group key the groups walk allows (a dimension) is a different tree: walked, and accepted
    only because the walk accepts it, not because it was taken for the template."""
    plan = plan_query(FILTERED, POLICY)
    assert plan.seeded is not None
    text = plan.seeded.replace('GROUP BY "people"."region",', 'GROUP BY "people"."region", "people"."month",')
    assert text != plan.seeded
    _confirm(plan, text)
    bad = plan.seeded.replace('GROUP BY "people"."region",', 'GROUP BY "people"."region", "people"."amount",')
    with pytest.raises(QueryRefused) as refused:
        _confirm(plan, bad)
    assert refused.value.code == "parser_mismatch"


def test_positions_are_dropped_outside_string_constants_only() -> None:
    inside = ',"query_location":7,"query_location_length":25'
    sql = f'SELECT \'{inside}\' AS "x" FROM "people" AS "people"'
    row = crosscheck._connection().execute("SELECT json_serialize_sql(?)", [sql]).fetchone()
    assert row is not None
    node = crosscheck._node(row[0], compared=True)
    assert node["select_list"][0]["value" if "value" in node["select_list"][0] else "literal"]["text"] == inside
    assert "query_location" not in str({k: v for k, v in node["select_list"][0].items() if k != "literal"})
