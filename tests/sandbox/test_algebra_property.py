"""Property: every aggregate argument from the full grammar is refused, or is multi-affine and never raises.

Expressions are drawn from everything a buyer could write inside sum(): measures, dimensions, the
privacy unit, numbers of every size, strings, arithmetic (+ - * / // %), casts to narrow and wide
types, the scalar functions, CASE and comparisons. Each one the sandbox accepts is evaluated, as the
sandbox rewrote it, by DuckDB on random rows: within the declared bounds, outside them, NaN-free
extremes and NULLs. It must never raise, and along each measure (the others fixed) it must be affine:
f(c) - f(a) = (c - a) / (b - a) * (f(b) - f(a)).
"""

from __future__ import annotations

import math

import duckdb
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sandbox.errors import QueryRefused
from sandbox.policy import ProtectionPolicy
from sandbox.service import plan_query
from sandbox.syntax import to_sql
from sandbox.validator import check
from tests.factories import PEOPLE_POLICY

POLICY = ProtectionPolicy.model_validate(PEOPLE_POLICY)
BOUNDS = {name: (b.min, b.max) for name, b in POLICY.tables["people"].bounds.items()}

leaves = st.sampled_from(
    [
        "amount",
        "trips",
        "month",
        "region",
        "person_id",
        "0",
        "1",
        "57",
        "-3",
        "0.05",
        "2.5e3",
        "1e300",
        "127",
        "2147483647",
        "9223372036854775807",
        "'x'",
        "NULL",
    ]
)


def _extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    binary = st.tuples(inner, st.sampled_from(["+", "-", "*", "/", "//", "%"]), inner).map(
        lambda t: f"({t[0]} {t[1]} {t[2]})"
    )
    cast = st.tuples(
        inner, st.sampled_from(["TINYINT", "UTINYINT", "INTEGER", "BIGINT", "DOUBLE", "DECIMAL(4, 1)", "VARCHAR"])
    ).map(lambda t: f"CAST({t[0]} AS {t[1]})")
    unary = st.tuples(st.sampled_from(["abs", "round", "-", "sqrt", "ln", "TRY"]), inner).map(
        lambda t: f"{t[0]}({t[1]})"
    )
    pair = st.tuples(st.sampled_from(["greatest", "least", "coalesce", "nullif", "pow"]), inner, inner).map(
        lambda t: f"{t[0]}({t[1]}, {t[2]})"
    )
    case = st.tuples(inner, inner, inner).map(lambda t: f"CASE WHEN {t[0]} = 57 THEN {t[1]} ELSE {t[2]} END")
    return binary | cast | unary | pair | case


def _algebra(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """The part of the grammar the algebra accepts, so that many examples are accepted and evaluated."""
    binary = st.tuples(inner, st.sampled_from(["+", "-", "*", "/"]), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})")
    return binary | inner.map(lambda e: f"-{e}") | inner.map(lambda e: f"CAST({e} AS DOUBLE)")


numbers = st.sampled_from(["amount", "trips", "0", "1", "2", "-3", "0.05", "1.5", "100", "1e6"])
full_grammar = st.recursive(leaves, _extend, max_leaves=6)
algebra = st.recursive(numbers, _algebra, max_leaves=5)


def _argument(sql: str) -> str:
    """The aggregate's argument exactly as the sandbox runs it."""
    checked = check(sql, POLICY)
    return to_sql(checked.items[0].this)


def _evaluate(connection: duckdb.DuckDBPyConnection, argument: str, rows: list[tuple[object, object]]) -> list:
    values = ", ".join(f"({'NULL' if a is None else a}, {'NULL' if t is None else t})" for a, t in rows)
    table = f'(VALUES {values}) AS "people"("amount", "trips")'
    return [row[0] for row in connection.execute(f"SELECT {argument} FROM {table}").fetchall()]


@pytest.fixture(scope="module")
def connection():  # type: ignore[no-untyped-def]
    with duckdb.connect() as db:
        yield db


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(expression=full_grammar, data=st.data())
def test_arguments_from_the_full_grammar_are_refused_or_multi_affine(connection, expression: str, data) -> None:
    _refused_or_multi_affine(connection, expression, data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(expression=algebra, data=st.data())
def test_arguments_from_the_algebra_are_refused_or_multi_affine(connection, expression: str, data) -> None:
    _refused_or_multi_affine(connection, expression, data)


def _refused_or_multi_affine(connection: duckdb.DuckDBPyConnection, expression: str, data: st.DataObject) -> None:
    sql = f"SELECT sum({expression}) AS s FROM people"
    try:
        plan_query(sql, POLICY)
    except QueryRefused as refused:
        event(f"refused: {refused.code}")
        return  # refused, with a message: the other allowed outcome
    event("accepted")
    argument = _argument(sql)
    value = st.integers(-(10**6), 10**6)
    extremes = [(None, None), (None, 3), (5, None), (-(10**9), 10**9), (2**31 - 1, -(2**31))]
    rows = [(data.draw(value), data.draw(value)) for _ in range(5)] + extremes
    _evaluate(connection, argument, rows)  # never raises, whatever the values

    for measure in ("amount", "trips"):
        if f'"{measure}"' not in argument:
            continue
        low, high = BOUNDS[measure]
        a, b, c = sorted(data.draw(st.lists(st.integers(int(low), int(high)), min_size=3, max_size=3, unique=True)))
        other = data.draw(st.integers(0, 100))
        points = [(x, other) if measure == "amount" else (other, x) for x in (a, b, c)]
        fa, fb, fc = _evaluate(connection, argument, points)
        if fa is None or fb is None or fc is None:
            assert fa is fb is fc is None  # NULL from the data alone, never for chosen values
            continue
        expected = fa + (c - a) / (b - a) * (fb - fa)
        assert math.isclose(fc, expected, rel_tol=1e-9, abs_tol=1e-6), (expression, argument)


def test_the_property_can_tell_a_non_affine_expression() -> None:
    # The check above must be able to fail: amount * amount (refused by the sandbox) is not affine.
    with duckdb.connect() as db:
        fa, fb, fc = _evaluate(db, '"people"."amount" * "people"."amount"', [(1, 0), (2, 0), (4, 0)])
    assert not math.isclose(fc, fa + (4 - 1) / (2 - 1) * (fb - fa))
