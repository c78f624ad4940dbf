"""Red team red13 (issue 9, session 9): seeded stage 1 against the unseeded statements.

Seeded stage 1 (rewrite.seeded_stage, branch sbx-flagkey) lets a fixed 1/2048 of the root table's rows
(its `__row & 2047 = 0`) through the buyer's filter, in groups whose `__kept` is FALSE. Those rows must
never reach anything a buyer sees: a row, a cell, a group's threshold, HAVING, ORDER BY, LIMIT or
OFFSET, nor the group counts of the audit log. Here, for random filters (single table and inner / LEFT
joins whose join key misses some seeds), HAVING, ORDER BY, LIMIT and OFFSET, every seeded path
(single, two-level, folded) answers exactly what the same plan answers unseeded (`seeded=None`, main's
statements before sbx-flagkey) and what the staged path answers, and a naive DuckDB reference.
Names: a buyer cannot name or reach `__row` / `__kept` in any spelling (quoted, case, qualified,
alias, USING / NATURAL joins, a subquery, a star, the table as a row value, a column alias).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

from sandbox.engine import execute_folded, execute_plan, execute_single, execute_two_level
from sandbox.errors import QueryRefused
from sandbox.policy import ProtectionPolicy
from sandbox.service import plan_query
from tests.sandbox.conftest import replaying_connection, write_parquet
from tests.sandbox.test_flagkey import T_TYPES

ROWS = 2048 * 16  # 16 seeds: unmasked, their groups would pass k (the test fails with the seeds counted)
K = 4
POLICY = ProtectionPolicy.model_validate(
    {
        "min_group_size": K,
        "tables": {
            "t": {
                "privacy_unit": "uid",
                "dimensions": ["g", "h", "f", "n"],
                "measures": ["m", "q"],
                "bounds": {"m": {"min": 0, "max": 100}, "q": {"min": 0, "max": 100}},
            },
            # s.g covers 0..3 only: the seeds of t whose h is 4, 5 or 6 meet no s row (join on t.h = s.g).
            "s": {
                "privacy_unit": "sid",
                "dimensions": ["g", "c"],
                "measures": ["r"],
                "bounds": {"r": {"min": 0, "max": 9}},
            },
        },
    }
)
SIZES = {"t": ROWS, "s": 48}
SEEDED_PATHS = (execute_single, execute_two_level, execute_folded)


@pytest.fixture(scope="module")
def connection(tmp_path_factory: pytest.TempPathFactory) -> Iterator[duckdb.DuckDBPyConnection]:
    folder = tmp_path_factory.mktemp("red13-seeding")
    # f: the row's own value (f = v picks one row of one unit); n NULL on every 13th row; q NULL but on
    # the first 60 units' rows. 400 units of 30 rows; groups of g (5), h (7) and their pairs straddle k.
    t = [
        {
            "uid": f"u{i % 400}",
            "g": i % 5,
            "h": (i // 3) % 7,
            "f": i,
            "n": i % 11 if i % 13 else None,
            "m": i % 50,
            "q": i % 30 if i % 400 < 60 else None,
        }
        for i in range(ROWS)
    ]
    s = [{"sid": f"s{i % 24}", "g": i % 4, "c": i % 2, "r": i % 10} for i in range(48)]
    files = {
        "t": write_parquet(
            folder / "t.parquet",
            t,
            T_TYPES,
        ),
        "s": write_parquet(folder / "s.parquet", s, {"sid": "VARCHAR", "g": "INTEGER", "c": "INTEGER", "r": "INTEGER"}),
    }
    replay = replaying_connection(files)
    yield replay
    replay.close()


def _atoms(prefix: str) -> st.SearchStrategy[str]:
    value = st.integers(min_value=-3, max_value=ROWS + 3)
    small = st.integers(min_value=-1, max_value=7)
    return st.one_of(
        value.map(lambda v: f"{prefix}f = {v}"),
        value.map(lambda v: f"{prefix}f < {v}"),
        value.map(lambda v: f"{prefix}f >= {v}"),
        st.lists(value, min_size=1, max_size=3).map(lambda vs: f"{prefix}f IN ({', '.join(map(str, vs))})"),
        small.map(lambda v: f"{prefix}g = {v}"),
        small.map(lambda v: f"{prefix}h <> {v}"),
        small.map(lambda v: f"{prefix}n = {v}"),
        small.map(lambda v: f"{prefix}n IS NULL" if v < 0 else f"NOT ({prefix}n > {v})"),
    )


def _filters(prefix: str, joined: bool) -> st.SearchStrategy[str]:
    own = st.recursive(
        _atoms(prefix),
        lambda inner: st.tuples(inner, st.sampled_from(["AND", "OR"]), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        max_leaves=4,
    )
    if not joined:
        return own
    # An OR across tables is refused (join keys: bare columns); a condition on s goes beside t's with AND.
    other = st.sampled_from(["", " AND s.c = 1", " AND s.c <> 0", " AND s.g < 2", " AND s.g IS NULL"])
    return st.tuples(own, other).map(lambda parts: parts[0] + parts[1])


# (group keys, aggregates, FROM) per shape; the aggregates' output names are c1, c2.
ONE_TABLE = [
    ("g", "count(*) AS c1, sum(m) AS c2", "t"),
    ("g, h", "count(*) AS c1, avg(m) AS c2", "t"),
    ("h", "count(*) AS c1, var_samp(m) AS c2", "t"),
    ("", "count(*) AS c1, sum(m) AS c2", "t"),
    ("h", "count(*) AS c1, sum(q) AS c2", "t"),
    ("g + h", "count(*) AS c1, count(DISTINCT uid) AS c2", "t"),
]
JOINED = [
    ("t.g", "count(*) AS c1, sum(t.m) AS c2", "t JOIN s ON t.h = s.g"),
    ("s.c", "count(*) AS c1, sum(t.m) AS c2", "t JOIN s ON t.h = s.g"),
    ("t.g", "count(*) AS c1, sum(s.r) AS c2", "t LEFT JOIN s ON t.h = s.g"),
    ("", "count(*) AS c1, sum(t.m) AS c2", "t JOIN s ON t.h = s.g"),
]


def _tail(keys: str) -> st.SearchStrategy[str]:
    """HAVING, ORDER BY (every output column, so LIMIT / OFFSET pick a defined set), LIMIT, OFFSET."""
    columns = (len(keys.split(",")) if keys else 0) + 2
    having = st.sampled_from(["", " HAVING count(*) > 40", " HAVING count(*) < 900", " HAVING count(*) >= 1"])
    order = st.sampled_from(["", " ORDER BY " + ", ".join(f"{i} DESC" for i in range(columns, 0, -1))])
    limit = st.sampled_from(["", " LIMIT 1", " LIMIT 3", " LIMIT 2 OFFSET 1", " LIMIT 5 OFFSET 4"])
    return st.tuples(having, order, limit).map(lambda parts: parts[0] + (parts[1] + parts[2] if parts[1] else ""))


@st.composite
def queries(draw: st.DrawFn) -> tuple[str, bool]:
    joined = draw(st.booleans())
    keys, aggregates, source = draw(st.sampled_from(JOINED if joined else ONE_TABLE))
    where = draw(_filters("t." if joined else "", joined))
    grouped = f" GROUP BY {keys}" if keys else ""
    tail = draw(_tail(keys))
    select = f"{keys + ', ' if keys else ''}{aggregates}"
    return f"SELECT {select} FROM {source} WHERE {where}{grouped}{tail}", " ORDER BY " in tail


def _canonical(rows: list[tuple[Any, ...]], ordered: bool) -> list[Any]:
    values = [tuple(None if v is None else round(float(v), 6) for v in row) for row in rows]
    return values if ordered else sorted(values, key=repr)


def _run(connection: duckdb.DuckDBPyConnection, execute: Any, plan: Any) -> tuple[Any, ...]:
    execution = execute(connection, plan, 100_000)
    assert execution.refused is None, execution.refused
    return execution.rows, execution.groups, execution.suppressed_groups


# No shrinking: a failing query is printed as drawn (shrinking one through DuckDB took minutes).
@settings(
    max_examples=40,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(query=queries())
def test_seeded_answers_are_the_unseeded_answers(
    query: tuple[str, bool], connection: duckdb.DuckDBPyConnection
) -> None:
    sql, ordered = query
    note(sql)
    plan = plan_query(sql, POLICY, SIZES)
    assert plan.seeded is not None, sql
    unseeded = dataclasses.replace(plan, seeded=None)
    rows, groups, suppressed = _run(connection, execute_single, unseeded)
    expected = _canonical(rows, ordered)
    staged = _run(connection, execute_plan, plan)
    assert _canonical(staged[0], ordered) == expected, ("staged", sql)
    for execute in SEEDED_PATHS:
        seeded_rows, seeded_groups, seeded_suppressed = _run(connection, execute, plan)
        assert _canonical(seeded_rows, ordered) == expected, (execute.__name__, sql)
        # The audit log's counts: the groups of rows that pass the filter, never a seed's group.
        assert (seeded_groups, seeded_suppressed) == (groups, suppressed), (execute.__name__, sql)


def test_the_unseeded_reference_agrees_with_naive_duckdb(connection: duckdb.DuckDBPyConnection) -> None:
    """The reference above is itself right: against plain DuckDB with count(DISTINCT unit) >= k."""
    for where in ("f < 4000", "f = 7", "f = -1", "(g = 1 OR n IS NULL)", "h <> 3 AND f >= 6000"):
        sql = f"SELECT g, count(*) AS c1, sum(m) AS c2 FROM t WHERE {where} GROUP BY g HAVING count(*) > 40"
        plan = dataclasses.replace(plan_query(sql, POLICY, SIZES), seeded=None)
        raw = connection.execute(
            f"SELECT g, count(*), sum(m), count(DISTINCT uid) FROM t WHERE {where} GROUP BY g"
        ).fetchall()
        expected = _canonical([row[:3] for row in raw if row[3] >= K and row[1] > 40], False)
        assert _canonical(_run(connection, execute_single, plan)[0], False) == expected, where


@pytest.mark.parametrize(
    "sql",
    [
        'SELECT count(*) FROM t WHERE "__row" > 0',
        'SELECT count(*) FROM t WHERE "__ROW" > 0',
        "SELECT count(*) FROM t WHERE __Row > 0",
        'SELECT count(*) FROM t x WHERE x."__row" = 0',
        'SELECT count(*) FROM t WHERE main.t."__row" = 0',
        "SELECT count(*) FROM t WHERE __kept",
        'SELECT "__kept", count(*) FROM t GROUP BY 1',
        'SELECT g AS "__kept", count(*) FROM t GROUP BY g',
        'SELECT g, count(*) AS "__row" FROM t GROUP BY g',
        'SELECT count(*) FROM t AS "__row"',
        "SELECT count(*) FROM t WHERE file_row_number > 0",
        "SELECT count(*) FROM t WHERE rowid > 0",
        "SELECT * FROM t",
        "SELECT count(*) FROM t WHERE t.* IS NOT NULL",
        "SELECT count(*) FROM t x WHERE x IS NOT NULL",
        "SELECT count(DISTINCT x) FROM t x",
        "SELECT count(*) FROM t JOIN s USING (__row)",
        "SELECT count(*) FROM t JOIN s USING (g)",
        "SELECT count(*) FROM t NATURAL JOIN s",
        "SELECT count(*) FROM (SELECT * FROM t) x",
        "SELECT count(*) FROM (SELECT g AS r FROM t) x",
        'SELECT count(*) FROM t AS x("__row")',
        "SELECT count(*) FROM t WHERE columns('__.*') > 0",
        "SELECT count(*) FROM t WHERE struct_extract(t, '__row') = 0",
        'SELECT count(*) FROM t WHERE U&"\\005F\\005Frow" = 0',
    ],
)
def test_no_spelling_reaches_the_hidden_row_number(sql: str) -> None:
    with pytest.raises(QueryRefused):
        plan_query(sql, POLICY, SIZES)
