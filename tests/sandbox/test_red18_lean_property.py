"""Branch red18: the cube's statement on the summary connection (DuckDB's optimizer off, the filter once per row,
branch cube18) against execute_single on the version's connection, on random data and random queries; and
since every19, the cube's every-group form (its groups filtered and counted in the worker) on both connections."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from sandbox.engine import EVERY_GROUP_LIMIT, execute_cube, execute_single
from sandbox.errors import QueryRefused
from sandbox.service import cube_for, cube_groups, plan_query, row_counts, strategy
from tests.sandbox.test_pre16_summary_property import _policy, _sql, _typed, queries, rows_strategy
from tests.sandbox.test_rt15_cube_connection import _tables
from tests.support.cube_connections import cube_connections, with_quality_counts


def _compare(rows: list[dict[str, Any]], sql: str, k: int, q: dict[str, Any] | None = None) -> bool:
    with tempfile.TemporaryDirectory() as directory:
        tables = _tables(Path(directory), rows, q)
        try:
            plan = plan_query(sql, _policy(k), row_counts(tables))
        except QueryRefused:
            return False
        if strategy(plan, tables) != "cube":
            return False
        cube = cube_for(plan, tables)
        assert cube
        with cube_connections(tables) as (connection, lean, statistics):
            single = execute_single(connection, plan, 100, statistics)
            ran = [execute_cube(connection, plan, 100, statistics, cube, lean) for _ in range(2)]
            # Every group to the worker (branch every19), on both connections: filtered and counted in Python.
            groups = cube_groups(plan, with_quality_counts(tables))
            assert groups is not None and 0 < groups <= EVERY_GROUP_LIMIT, sql
            every = [execute_cube(connection, plan, 100, statistics, cube, on, groups) for on in (lean, None)]
            every_group = sum(len(e.statements) == 1 and '"__p"' in e.statements[0] for e in every)
            event(f"every-group form taken by {every_group} of 2")
            ran += every
    for after in ran:
        if single.refused is not None or after.refused is not None:
            assert after.refused == single.refused, sql
            continue
        assert _typed(after.rows) == _typed(single.rows), sql
        assert (after.groups, after.suppressed_groups) == (single.groups, single.suppressed_groups), sql
    return True


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=rows_strategy, q=queries())
def test_the_lean_cube_answers_as_the_single_statement(rows: list[dict[str, Any]], q: dict[str, Any]) -> None:
    sql = _sql(q)
    note(sql)
    event("cube" if _compare(rows, sql, q["k"], q) else "not the cube")


KEY_FILTERS = {
    "g": [
        "g IS NULL",
        "g IS NOT NULL",
        "NOT (g = 'a')",
        "g <> 'b'",
        "g IN ('a', 'c')",
        "coalesce(g, 'q') = 'q'",
        "if(g = 'a', NULL, TRUE)",
        "g = 'a' OR g IS NULL",
        "lower(g) = 'b'",
        "length(g) > 0",
        "CASE WHEN g = 'a' THEN NULL WHEN g = 'b' THEN FALSE ELSE TRUE END",
        "nullif(g, 'c') IS NOT NULL",
        "g > 'a'",
    ],
    "h": [
        "h IS NULL",
        "h > 1",
        "h <> 2",
        "h IN (1, 3)",
        "h / 0 > 1",
        "-h = 0",
        "h - 2 = 0",
        "coalesce(h, 0) < 2",
        "if(h = 1, NULL, h = 3)",
        "greatest(h, 2) = 2",
        "h % 2 = 1",
    ],
    "d": ["d = 'x'", "d <> 'x'", "upper(d) = 'Y'", "d IS NOT NULL AND d = 'y'", "left(d, 1) = 'x'"],
}
PIN_LITERALS = {"g": ["'a'", "'b'", "'z'"], "h": ["1", "2", "7"], "d": ["'x'", "'y'"]}
CUBE_AGGREGATES = ["count(*) AS c", "count(DISTINCT u) AS units", "count(m) AS cm", "sum(n) AS sn", "avg(n) AS an"]


@st.composite
def key_filter_queries(draw: st.DrawFn) -> tuple[str, int]:
    """Queries of the cube's shapes whose filter is any function of the group keys (summary._on_keys), or a pin of
    a non-key dimension, with HAVING, ORDER BY over some columns (ties) and LIMIT."""
    keys = draw(st.lists(st.sampled_from(list(KEY_FILTERS)), min_size=0, max_size=2, unique=True))
    conjuncts = []
    for column in draw(st.lists(st.sampled_from(list(KEY_FILTERS)), max_size=2, unique=True)):
        if column in keys:
            conjuncts.append(f"({draw(st.sampled_from(KEY_FILTERS[column]))})")
        elif len(keys) < 2:
            conjuncts.append(f"{column} = {draw(st.sampled_from(PIN_LITERALS[column]))}")
    aggregates = draw(st.lists(st.sampled_from(CUBE_AGGREGATES), min_size=1, max_size=4, unique=True))
    items = [*keys, *aggregates]
    sql = f"SELECT {', '.join(items)} FROM t"
    if conjuncts:
        sql += " WHERE " + " AND ".join(conjuncts)
    if keys:
        sql += " GROUP BY " + ", ".join(keys)
    having = draw(st.sampled_from([None, "count(*) > 2", "count(*) < 5", "sum(n) IS NULL", "avg(n) > 0"]))
    if having:
        sql += f" HAVING {having}"
    if draw(st.booleans()):
        positions = draw(st.lists(st.integers(1, len(items)), min_size=1, max_size=len(items), unique=True))
        order = ", ".join(f"{p} {draw(st.sampled_from(['', 'DESC', 'NULLS FIRST']))}".strip() for p in positions)
        sql += f" ORDER BY {order}"
        if draw(st.booleans()):
            sql += f" LIMIT {draw(st.integers(0, 3))}"
    return sql, draw(st.integers(2, 4))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=rows_strategy, query=key_filter_queries())
def test_the_lean_cube_answers_key_filters_as_the_single_statement(
    rows: list[dict[str, Any]], query: tuple[str, int]
) -> None:
    sql, k = query
    note(sql)
    event("cube" if _compare(rows, sql, k) else "not the cube")
