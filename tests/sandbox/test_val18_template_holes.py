"""The template's aggregates generated once (branch val18).

- The template's aggregates are written in from the texts the rewrite generated when it found them
  (rewrite._template_text's holes), not generated a second time; the template is byte for byte the whole
  tree's, also when a string constant spells a hole's name (then the stage is generated whole).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlglot import exp

from sandbox import cache, rewrite
from sandbox.errors import QueryRefused
from sandbox.policy import ProtectionPolicy
from sandbox.service import plan_query
from tests.sandbox.conftest import TWO_TABLE_POLICY
from tests.sandbox.test_policy_corpus import JOINED, PEOPLE

POLICY = ProtectionPolicy.model_validate(TWO_TABLE_POLICY)
CORPUS = [sql for _, sql, _ in PEOPLE + JOINED]
SIZES = {"people": 1000, "shops": 20}
AGGREGATES = "SELECT region, sum(amount) AS s, avg(amount * 2) AS a, count(*) FROM people WHERE month > 2 GROUP BY 1"


def _plans(cases: list[tuple[str, dict[str, int] | None]]) -> list[Any]:
    out: list[Any] = []
    for sql, sizes in cases:
        cache.plans.clear()
        try:
            out.append(dataclasses.asdict(plan_query(sql, POLICY, sizes)))
        except QueryRefused as error:
            out.append((error.code, str(getattr(error, "params", None))))
    cache.plans.clear()
    return out


def test_each_aggregate_is_generated_once(monkeypatch: pytest.MonkeyPatch) -> None:
    texts: list[str] = []
    to_sql = rewrite.to_sql

    def counted(node: exp.Expr) -> str:
        text = to_sql(node)
        texts.append(text)
        return text

    monkeypatch.setattr(rewrite, "to_sql", counted)
    cache.plans.clear()
    plan = plan_query(AGGREGATES, POLICY)
    assert 'SUM(TRY_CAST("people"."amount" AS DOUBLE)) AS "__a0"' in plan.template
    assert sum(text.startswith("SUM(") or "SUM(TRY_CAST" in text for text in texts) == 1
    assert sum(text.startswith("AVG(") or "AVG(TRY_CAST" in text for text in texts) == 1


def _whole(patch: pytest.MonkeyPatch) -> None:
    patch.setattr(rewrite, "_template_text", lambda stage, *args: rewrite.to_sql(stage))


def test_the_corpus_templates_are_the_whole_trees(monkeypatch: pytest.MonkeyPatch) -> None:
    cases = [(sql, sizes) for sql in [*CORPUS, AGGREGATES] for sizes in (None, SIZES)]
    written = _plans(cases)
    with monkeypatch.context() as patch:
        _whole(patch)
        assert _plans(cases) == written


HOLES = ['"__shown0__"', '"__shown1__"', '"__filter__"', " AS ", "'", '"', "(", ")"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=st.lists(st.sampled_from(HOLES) | st.text(alphabet="ab _", max_size=3), min_size=1, max_size=4))
def test_string_constants_that_spell_a_hole(monkeypatch: pytest.MonkeyPatch, pieces: list[str]) -> None:
    literal = "'" + "".join(pieces).replace("'", "''") + "'"
    sql = (  # the key's text is generated with the holes (the filter's is written in)
        f"SELECT region || {literal} AS label, sum(amount), count(*) FROM people "
        f"WHERE region <> {literal} OR month = 1 GROUP BY 1"
    )
    written = _plans([(sql, None)])
    assert isinstance(written[0], dict)
    with monkeypatch.context() as patch:
        _whole(patch)
        assert _plans([(sql, None)]) == written
