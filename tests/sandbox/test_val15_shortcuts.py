"""Shortcuts of branch val15 that must not change a verdict.

- cost.check skips its walk when the tree holds no replace() and no concatenation: hypothesis builds row
  expressions of everything else the cost model knows (shrinking and choosing functions, CASE, casts,
  arithmetic, literals as long as the SQL allows) and size() never passes a limit on them.
- crosscheck._children finds the same children, in the same order, as the plain recursive collection it
  replaced, on every node of DuckDB's trees of the statements of every corpus query.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlglot import exp

from bench.sandbox_overhead import POLICY as TPCH_POLICY
from bench.sandbox_overhead import QUERIES
from sandbox import cache, cost, crosscheck, rules
from sandbox.errors import QueryRefused
from sandbox.policy import ProtectionPolicy
from sandbox.service import plan_query
from sandbox.syntax import parse_one_select
from tests.sandbox.conftest import TWO_TABLE_POLICY
from tests.sandbox.test_policy_corpus import JOINED, PEOPLE

POLICY = ProtectionPolicy.model_validate(TWO_TABLE_POLICY)


def _expressions(depth: int) -> st.SearchStrategy[str]:
    leaves = st.one_of(
        st.sampled_from(["region", "category", "month", "1", "2.5", "NULL", "TRUE"]),
        st.integers(0, rules.MAX_SQL_CHARS).map(lambda n: "'" + "x" * n + "'"),
    )
    if depth == 0:
        return leaves
    inner = _expressions(depth - 1)
    return st.one_of(
        leaves,
        inner.map(lambda a: f"lower({a})"),
        inner.map(lambda a: f"upper(trim({a}))"),
        inner.map(lambda a: f"substring({a}, 1, 3)"),
        inner.map(lambda a: f"length({a})"),
        inner.map(lambda a: f"CAST({a} AS VARCHAR)"),
        st.tuples(inner, inner).map(lambda ab: f"coalesce({ab[0]}, {ab[1]})"),
        st.tuples(inner, inner).map(lambda ab: f"CASE WHEN {ab[0]} = {ab[1]} THEN {ab[0]} ELSE {ab[1]} END"),
        st.tuples(inner, inner).map(lambda ab: f"({ab[0]} + {ab[1]})"),
        st.tuples(inner, inner).map(lambda ab: f"if({ab[0]} > 1, {ab[1]}, {ab[0]})"),
    )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_expressions(4), min_size=1, max_size=3))
def test_without_replace_or_concatenation_no_size_passes_the_limits(items: list[str]) -> None:
    sql = f"SELECT {', '.join(items)} FROM people"
    assume(len(sql) <= rules.MAX_SQL_CHARS)  # longer texts are refused before any check
    select = parse_one_select(sql)
    assert select.find(exp.Replace, exp.Concat, exp.DPipe) is None
    for item in select.expressions:
        bound = cost._size(item)  # the walk cost.check now skips, without the limits' refusal
        assert bound.growth <= 1 and bound.constant <= rules.MAX_SQL_CHARS
        assert bound.growth <= cost.MAX_GROWTH and bound.constant <= cost.MAX_CONSTANT
    cost.check(select)


def test_cost_still_walks_a_tree_with_replace() -> None:
    sql = "SELECT " + "replace(" * 4 + "region" + ", 'a', 'aaaa')" * 4 + " FROM people"
    try:
        cost.check(parse_one_select(sql))
    except QueryRefused as refused:
        assert refused.code == "expression_too_costly"
    else:
        raise AssertionError("256 times longer was not refused")


def _reference_children(node: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    def collect(value: Any) -> None:
        if isinstance(value, dict):
            if "class" in value:
                found.append(value)
                return
            values = list(value.values())
        else:
            values = value
        for inner in values:
            if isinstance(inner, dict | list):
                collect(inner)

    for key, value in node.items():
        if key not in ("type_expr", "order_bys") and isinstance(value, dict | list):
            collect(value)
    return found


def _nodes(tree: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    stack = [tree]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            out.append(value)
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return out


def test_children_are_found_as_before_on_every_corpus_tree() -> None:
    statements: list[str] = []
    cases = [(sql, POLICY) for _, sql, code in PEOPLE + JOINED if code is None]
    cases += [(sql, TPCH_POLICY) for sql in QUERIES.values()]
    for sql, policy in cases:
        cache.plans.clear()
        plan = plan_query(sql, policy)
        statements += [s for s in (plan.template, plan.output_sql, plan.constants_sql, plan.seeded) if s]
    cache.plans.clear()
    checked = 0
    for statement in statements:
        tree = crosscheck._serialize(statement)
        for node in _nodes(tree):
            assert crosscheck._children(node) == _reference_children(node)
            checked += 1
    assert checked > 5_000
