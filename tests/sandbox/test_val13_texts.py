"""Each SQL text of a plan generated once (branch val13): the same statements, fewer generations.

- The template's filter is generated once (rewrite._template_text writes the filter's text, already generated
  for the restriction and the seeded stage, into the template generated with a one-name hole), not a second
  time inside the template.
- Stage 2 is generated once (rewrite._counted_text writes the two count columns into its text), not a
  second time with them.
- sqlglot's tokenizer and parser are made once per thread (syntax._parse), not twice per query.

Every plan is what generating each tree whole gives, byte for byte, over the corpus and for string constants
that spell the texts these rely on (where each falls back to generating the tree whole).
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlglot import exp

from sandbox import cache, rewrite, syntax
from sandbox.errors import QueryRefused
from sandbox.policy import ProtectionPolicy
from sandbox.service import plan_query
from tests.sandbox.conftest import TWO_TABLE_POLICY
from tests.sandbox.test_policy_corpus import JOINED, PEOPLE

POLICY = ProtectionPolicy.model_validate(TWO_TABLE_POLICY)
ACCEPTED = [sql for _, sql, code in PEOPLE + JOINED if code is None]
SIZES = {"people": 1000, "shops": 20}
FILTER_TEXT = '"people"."month" IN (1, 2) AND "people"."region" <> \'x\''
FILTERED = "SELECT region, count(*) FROM people WHERE month IN (1, 2) AND region <> 'x' GROUP BY region"


def _whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every text generated from its whole tree, as before val13."""
    monkeypatch.setattr(rewrite, "_template_text", lambda stage, *args: rewrite.to_sql(stage))

    def counted(output: exp.Select, output_sql: str) -> str:
        output.set("expressions", [*output.expressions, rewrite._col("__s"), rewrite._col("__n")])
        return rewrite.to_sql(output)

    monkeypatch.setattr(rewrite, "_counted_text", counted)


def _plans(cases: list[tuple[str, dict[str, int] | None]]) -> list[Any]:
    out: list[Any] = []
    for sql, sizes in cases:
        cache.plans.clear()
        try:
            out.append(dataclasses.asdict(plan_query(sql, POLICY, sizes)))
        except QueryRefused as error:
            out.append((error.code, getattr(error, "params", None)))
    cache.plans.clear()
    return out


def _generated(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The texts rewrite generates with to_sql while the test runs."""
    texts: list[str] = []
    to_sql = rewrite.to_sql

    def counted(node: exp.Expr) -> str:
        text = to_sql(node)
        texts.append(text)
        return text

    monkeypatch.setattr(rewrite, "to_sql", counted)
    return texts


def test_the_filter_is_generated_once(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = _generated(monkeypatch)
    cache.plans.clear()
    plan = plan_query(FILTERED, POLICY)
    assert FILTER_TEXT in plan.template and plan.seeded is not None
    assert sum(FILTER_TEXT in text for text in texts) == 1  # the filter's own text, not the template's again


def test_stage_two_is_generated_once(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = _generated(monkeypatch)
    cache.plans.clear()
    plan = plan_query(FILTERED, POLICY)
    assert plan.counted_output_sql != plan.output_sql
    assert sum('FROM "__groups"' in text for text in texts) == 1


def test_one_sqlglot_parser_per_thread() -> None:
    cache.plans.clear()
    plan_query(FILTERED, POLICY)
    first = syntax._parsers.duckdb
    cache.plans.clear()
    plan_query("SELECT category, count(*) FROM people GROUP BY category", POLICY)
    assert syntax._parsers.duckdb is first
    seen: list[Any] = []
    other = threading.Thread(target=lambda: (syntax.parse_one_select(FILTERED), seen.append(syntax._parsers.duckdb)))
    other.start()
    other.join()
    assert seen and seen[0] is not first and seen[0][1] is not first[1]


def test_a_failed_parse_leaves_nothing_for_the_next() -> None:
    with pytest.raises(QueryRefused):
        syntax.parse_one_select("SELECT region, count(* FROM people GROUP BY region")
    with pytest.raises(QueryRefused):
        syntax.parse_one_select("SELECT 1; SELECT 2")
    tree = syntax.parse_one_select(FILTERED)
    fresh = syntax._duckdb_dialect().parse(FILTERED)[0]
    assert tree is not None and fresh is not None
    assert rewrite.to_sql(tree) == rewrite.to_sql(fresh)


def test_the_corpus_plans_are_the_whole_trees(monkeypatch: pytest.MonkeyPatch) -> None:
    cases = [(sql, sizes) for sql in ACCEPTED for sizes in (None, SIZES)]
    written = _plans(cases)
    assert sum(isinstance(p, dict) and p["seeded"] is not None for p in written) > 30
    _whole(monkeypatch)
    assert _plans(cases) == written


SPELLINGS = ['"__filter__"', ' FROM "__groups" WHERE ', ', "__s", "__n"', " AND ", "'", '"', "(", ")"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    pieces=st.lists(st.sampled_from(SPELLINGS) | st.text(alphabet="ab _", max_size=3), min_size=1, max_size=5),
    where=st.booleans(),
    having=st.booleans(),
)
def test_string_constants_that_spell_the_texts(
    monkeypatch: pytest.MonkeyPatch, pieces: list[str], where: bool, having: bool
) -> None:
    """A constant spelling the hole, stage 2's FROM or the count columns: the plan is still the whole trees'."""
    literal = "'" + "".join(pieces).replace("'", "''") + "'"
    sql = (
        f"SELECT region, {literal} AS label, count(*) FROM people"
        + (f" WHERE region <> {literal} OR month = 1" if where else "")
        + " GROUP BY region"
        + (f" HAVING region <> {literal}" if having else "")
    )
    with monkeypatch.context() as patch:
        written = _plans([(sql, None), (sql, SIZES)])
        _whole(patch)
        assert _plans([(sql, None), (sql, SIZES)]) == written
