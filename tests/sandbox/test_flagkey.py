"""Seeded stage 1 (issue 9, branch sbx-flagkey): its cost does not depend on whether any row passes a filter.

Stage 1 of the one-statement paths (engine.execute_single, execute_two_level, execute_folded) reads
`WHERE (COALESCE((<filter>), FALSE) OR ("t"."__row" & 2047) = 0) AND <restrict>` and groups on that flag
too (`__kept`, rewrite.seeded_stage): the first row of every 2,048-row vector of the root table's scan
(a seed) always reaches the aggregates, so no operator gets one row on one side of a pair of queries and
none on the other (the first-row step: `WHERE dest = 'LEX'` against `'LEY'`, p < 0.0001, docs/sandbox.md
"Timing"). Here:

- exactness: for random filters, every path's answer (and its group counts) equals the naive answer;
- the profiler: the rows entering stage 1's aggregate include every seed, whatever the filter (on main a
  filter that keeps no row gives the aggregate no row);
- `__row` is no buyer's: refused by the validator, and the crosscheck accepts it in the seed alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox import crosscheck
from sandbox.engine import TableStatistics, execute_folded, execute_plan, execute_single, execute_two_level
from sandbox.errors import QueryRefused
from sandbox.policy import ProtectionPolicy
from sandbox.rewrite import RESTRICT_COLUMN, THRESHOLD_COLUMN, Plan
from sandbox.service import plan_query
from tests.sandbox.conftest import profile_statements, replaying_connection, write_parquet

ROWS = 10_000
T_TYPES = {"uid": "VARCHAR"} | {c: "INTEGER" for c in ("g", "h", "f", "n", "m", "q")}
"""The fact table's columns: a VARCHAR unit, dimensions g h f n, measures m q (also test_red13_seeding)."""
SEEDS = (ROWS + 2047) // 2048
K = 10
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
            "s": {"privacy_unit": "sid", "dimensions": ["g", "c"], "measures": []},
        },
    }
)
SIZES = {"t": ROWS, "s": 40}
PATHS = (execute_single, execute_two_level, execute_folded)


def execute_staged(connection: duckdb.DuckDBPyConnection, plan: Plan, max_rows: int) -> Any:
    """The staged path (engine.execute_plan, large products) with the rows method (the worker's statistics)."""
    return execute_plan(connection, plan, max_rows, TableStatistics(connection, {}, version="flagkey"))


def execute_staged_buckets(connection: duckdb.DuckDBPyConnection, plan: Plan, max_rows: int) -> Any:
    """The staged path without statistics: the hash-bucket bound, so more groups are rechecked."""
    return execute_plan(connection, plan, max_rows)


ALL_PATHS = (*PATHS, execute_staged, execute_staged_buckets)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("flagkey")
    # f is one row's own value: `f = v` picks one row (of one unit), `f < v` the first v rows.
    # n is NULL on every 13th row (a filter on it is NULL there); q, a measure, is NULL but on the first
    # 40 units' rows (a cell of its own: sum(q) is withheld where those rows hold fewer than k units).
    t = [
        {
            "uid": f"u{i % 300}",
            "g": i % 5,
            "h": i % 7,
            "f": i,
            "n": i % 11 if i % 13 else None,
            "m": i % 50,
            "q": i % 30 if i % 300 < 40 else None,
        }
        for i in range(ROWS)
    ]
    s = [{"sid": f"s{i}", "g": i % 5, "c": i % 2} for i in range(40)]
    return {
        "t": write_parquet(
            folder / "t.parquet",
            t,
            T_TYPES,
        ),
        "s": write_parquet(folder / "s.parquet", s, {"sid": "VARCHAR", "g": "INTEGER", "c": "INTEGER"}),
    }


@pytest.fixture(scope="module")
def connection(files: dict[str, Path]) -> Iterator[duckdb.DuckDBPyConnection]:
    replay = replaying_connection(files)
    yield replay
    replay.close()


# -- exactness ---------------------------------------------------------------------------------------


def _atoms() -> st.SearchStrategy[str]:
    value = st.integers(min_value=-5, max_value=ROWS + 5)
    small = st.integers(min_value=-1, max_value=8)
    return st.one_of(
        value.map(lambda v: f"f = {v}"),
        value.map(lambda v: f"f < {v}"),
        st.lists(value, min_size=1, max_size=4).map(lambda vs: f"f IN ({', '.join(map(str, vs))})"),
        small.map(lambda v: f"g = {v}"),
        small.map(lambda v: f"h <> {v}"),
        st.lists(small, min_size=1, max_size=3).map(lambda vs: f"h IN ({', '.join(map(str, vs))})"),
        small.map(lambda v: f"n = {v}"),
        small.map(lambda v: f"n <> {v}"),
    )


def filters() -> st.SearchStrategy[str]:
    return st.recursive(
        _atoms(),
        lambda inner: st.tuples(inner, st.sampled_from(["AND", "OR"]), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        max_leaves=4,
    )


SHAPES = [
    ("g", "count(*), sum(m)"),
    ("g, h", "count(*), avg(m)"),
    ("h", "count(*), var_samp(m)"),  # the variance family: no two-level, the seeded folded statement
    ("", "count(*), sum(m)"),
    ("g", "count(*), sum(q)"),  # a cell of its own: sum(q) NULL where q's rows hold fewer than k units
]


def _naive(connection: duckdb.DuckDBPyConnection, keys: str, aggregates: str, where: str) -> tuple[list[Any], int, int]:
    """The answer without the sandbox: the groups of k units or more, and (groups, suppressed groups)."""
    grouped = f"GROUP BY {keys}" if keys else ""
    select = f"{keys + ', ' if keys else ''}{aggregates}"
    # sum(q) is shown only where the rows with q hold k units (the sandbox's per-aggregate cell).
    select = select.replace(
        "sum(q)", f"CASE WHEN count(DISTINCT uid) FILTER (WHERE q IS NOT NULL) >= {K} THEN sum(q) END"
    )
    rows = connection.execute(
        f"SELECT {select}, count(DISTINCT uid) AS units FROM t WHERE {where} {grouped}"
    ).fetchall()
    kept = [row[:-1] for row in rows if row[-1] >= K]
    return _canonical(kept), len(rows), len(rows) - len(kept)


def _canonical(rows: list[tuple[Any, ...]]) -> list[Any]:
    return sorted((tuple(None if v is None else round(float(v), 6) for v in row) for row in rows), key=repr)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=filters(), shape=st.sampled_from(SHAPES))
def test_seeded_answers_are_the_naive_answers(
    where: str, shape: tuple[str, str], connection: duckdb.DuckDBPyConnection
) -> None:
    keys, aggregates = shape
    grouped = f" GROUP BY {keys}" if keys else ""
    sql = f"SELECT {keys + ', ' if keys else ''}{aggregates} FROM t WHERE {where}{grouped}"
    plan = plan_query(sql, POLICY, SIZES)
    assert plan.seeded is not None
    expected, groups, suppressed = _naive(connection, keys, aggregates, where)
    for execute in ALL_PATHS:
        execution = execute(connection, plan, 100_000)
        assert execution.refused is None
        assert _canonical(execution.rows) == expected, (execute.__name__, sql)
        assert (execution.groups, execution.suppressed_groups) == (groups, suppressed), (execute.__name__, sql)


def test_a_join_is_seeded_and_exact(connection: duckdb.DuckDBPyConnection) -> None:
    """Joins (no two-level): the seeded single and folded statements, seeds taken from the root table."""
    for where in ("t.f < 4000", "t.f = 7", "t.f = -1", "s.c = 1 AND t.h <> 3"):
        sql = f"SELECT t.g, count(*), sum(t.m) FROM t JOIN s ON t.g = s.g WHERE {where} GROUP BY 1"
        plan = plan_query(sql, POLICY, SIZES)
        assert plan.seeded is not None and '"t"."__row"' in plan.seed
        rows = connection.execute(
            f"SELECT t.g, count(*), sum(t.m), count(DISTINCT t.uid), count(DISTINCT s.sid) "
            f"FROM t JOIN s ON t.g = s.g WHERE {where} GROUP BY 1"
        ).fetchall()
        expected = _canonical([row[:3] for row in rows if row[3] >= K and row[4] >= K])
        for execute in ALL_PATHS:
            execution = execute(connection, plan, 100_000)
            assert _canonical(execution.rows) == expected, (execute.__name__, where)
            assert execution.groups == len(rows), (execute.__name__, where)


# -- the profiler: the seeds always reach stage 1's aggregate ----------------------------------------


def _aggregating(node: dict[str, Any]) -> bool:
    name = str(node.get("name"))
    return "GROUP_BY" in name or "AGGREGATE" in name


def _aggregate_inputs(profile: dict[str, Any]) -> list[int]:
    """Rows into every aggregate of stage 1: a grouping with no grouping below it that reads a Parquet scan,
    or a materialised CTE whose own definition groups nothing (the folded statement's `__first`)."""
    stack = list(profile.get("operator") or [])
    nodes: list[dict[str, Any]] = []
    while stack:
        node = stack.pop()
        nodes.append(node)
        stack.extend(node.get("children") or [])

    def below(node: dict[str, Any]) -> list[dict[str, Any]]:
        found, pending = [], list(node.get("children") or [])
        while pending:
            child = pending.pop()
            found.append(child)
            pending.extend(child.get("children") or [])
        return found

    raw_ctes = {
        str((node.get("extra_info") or {}).get("Table Index"))
        for node in nodes
        if node.get("name") == "CTE" and not any(_aggregating(n) for n in below((node.get("children") or [{}])[0]))
    }

    def reads_rows(node: dict[str, Any]) -> bool:
        info = node.get("extra_info") or {}
        return node.get("name") == "READ_PARQUET" or (
            node.get("name") == "CTE_SCAN" and str(info.get("CTE Index")) in raw_ctes
        )

    inputs = []
    for node in nodes:
        under = below(node)
        if _aggregating(node) and not any(_aggregating(n) for n in under) and any(reads_rows(n) for n in under):
            inputs.append(sum(int(child.get("intermediate_rows") or 0) for child in node.get("children") or []))
    return inputs


def _profile(connection: duckdb.DuckDBPyConnection, statement: str, output: Path) -> dict[str, Any]:
    connection.execute("SET enable_profiling = 'json'")
    connection.execute(f"SET profiling_output = '{output}'")
    try:
        connection.execute(statement).fetchall()
    finally:
        connection.execute("SET enable_profiling = 'no_output'")
    profile: dict[str, Any] = json.loads(output.read_text())
    return profile


PAIRS = [
    ("SELECT count(*) FROM t WHERE f = {v}", 1),
    ("SELECT g, count(*) FROM t WHERE f = {v} GROUP BY g", 1),
    ("SELECT g, h, count(*), sum(m) FROM t WHERE f IN ({v}, -3) GROUP BY g, h", 1),
    ("SELECT h, var_samp(m) FROM t WHERE f = {v} GROUP BY h", 1),
    # the one t row meets the 8 s rows of its g
    ("SELECT t.g, count(*) FROM t JOIN s ON t.g = s.g WHERE t.f = {v} GROUP BY 1", 8),
]


@pytest.mark.parametrize(("template", "rows"), PAIRS)
def test_the_seeds_reach_stage_1_whatever_the_filter(
    template: str, rows: int, connection: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    """A filter that keeps one row (f = 4321) and one that keeps none (f = -1): stage 1's aggregate gets
    every seed on both sides, and the same rows but for those the one row gives."""
    for execute in PATHS:
        seen = []
        for value in (4321, -1):
            plan = plan_query(template.format(v=value), POLICY, SIZES)
            execution = execute(connection, plan, 1000)
            inputs = _aggregate_inputs(_profile(connection, execution.statements[0], tmp_path / "profile.json"))
            assert inputs, (execute.__name__, execution.statements[0])
            assert min(inputs) >= SEEDS, (execute.__name__, template, value, inputs)
            seen.append(inputs)
        present, absent = seen
        assert len(present) == len(absent)
        assert all(0 <= a - b <= rows for a, b in zip(present, absent, strict=True)), (execute.__name__, template, seen)


# -- __row is the sandbox's ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT count(*) FROM t WHERE __row = 0",
        'SELECT count(*) FROM t WHERE "__row" % 2048 = 0',
        "SELECT count(*) FROM t WHERE t.__row < 5",
        "SELECT __row, count(*) FROM t GROUP BY 1",
        "SELECT g, sum(__row) FROM t GROUP BY g",
        'SELECT count(*) FROM t WHERE "__ROW" > 3',
        "SELECT file_row_number, count(*) FROM t GROUP BY 1",
    ],
)
def test_buyers_cannot_name_row(sql: str) -> None:
    with pytest.raises(QueryRefused) as refused:
        plan_query(sql, POLICY, SIZES)
    assert refused.value.code in ("reserved_name", "unknown_column")


def _confirm_seeded(plan: Plan, seeded: str) -> None:
    crosscheck.check_seeded(seeded, POLICY, {"t": "t"}, threshold=THRESHOLD_COLUMN, restrict=RESTRICT_COLUMN)


def test_the_crosscheck_confirms_the_seeded_shape_only() -> None:
    plan = plan_query("SELECT g, count(*) FROM t WHERE f = 3 GROUP BY g", POLICY, SIZES)
    assert plan.seeded is not None
    _confirm_seeded(plan, plan.seeded)
    seed = '("t"."__row" & 2047) = 0'
    tampered = [
        # __row anywhere but the seed: in the filter, a key, an aggregate
        plan.seeded.replace('COALESCE(("t"."f" = 3)', 'COALESCE(("t"."__row" = 3)'),
        plan.seeded.replace('"t"."g" AS "__g0"', '"t"."__row" AS "__g0"'),
        plan.seeded.replace("COUNT(*)", 'SUM("t"."__row")'),
        # another seed, or none
        plan.seeded.replace(seed, '("t"."__row" & 1) = 0'),
        plan.seeded.replace(seed, '("t"."f" & 2047) = 0'),
        plan.seeded.replace(seed, "TRUE"),
        # a __kept that is not the filter, or a group key that is not
        plan.seeded.replace('COALESCE(("t"."f" = 3), FALSE) AS "__kept"', 'COALESCE(("t"."f" = 4), FALSE) AS "__kept"'),
        plan.seeded.replace('GROUP BY "t"."g", COALESCE(("t"."f" = 3), FALSE)', 'GROUP BY "t"."g", "t"."h"'),
        plan.seeded.replace('COALESCE(("t"."f" = 3), FALSE) AS', 'COALESCE(("t"."f" = 3), TRUE) AS'),
        # a WHERE that tests another filter, or more
        plan.seeded.replace('WHERE (("t"."f" = 3) OR', 'WHERE (("t"."f" = 4) OR'),
        plan.seeded.replace('WHERE (("t"."f" = 3) OR', 'WHERE (("t"."f" = 3) OR "t"."g" = 1 OR'),
    ]
    for text in tampered:
        assert text != plan.seeded
        with pytest.raises(QueryRefused) as refused:
            _confirm_seeded(plan, text)
        assert refused.value.code == "parser_mismatch", text


def test_no_filter_no_seed() -> None:
    """Without a filter every row reaches the aggregates already: nothing to seed."""
    assert plan_query("SELECT g, count(*) FROM t GROUP BY g", POLICY, SIZES).seeded is None


# -- the staged path (engine.execute_plan, branch sbx-seed) ------------------------------------------


def _staged_inputs(connection: duckdb.DuckDBPyConnection, statements: list[str], output: Path) -> dict[str, list[int]]:
    """Rows into the aggregates of the staged path's stage 1 (`__groups`) and of its recheck (`__recheck`)."""
    found: dict[str, list[int]] = {}
    for statement, profile in zip(statements, profile_statements(connection, output, statements), strict=True):
        for name in ("__groups", "__recheck"):
            if statement.startswith(f'CREATE OR REPLACE TEMP TABLE "{name}" AS'):
                found[name] = _aggregate_inputs(profile)
    return found


@pytest.mark.parametrize(("template", "rows"), PAIRS)
@pytest.mark.parametrize("execute", [execute_staged, execute_staged_buckets])
def test_the_seeds_reach_the_staged_path_whatever_the_filter(
    template: str, rows: int, execute: Any, connection: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    """The staged path's stage 1 and its recheck (when it has one): every seed reaches their aggregates for a
    filter that keeps one row and for one that keeps none, and the same rows but for the one row's (fails on
    main, whose staged statements are not seeded: no row for `f = -1`)."""
    seen = []
    for value in (4321, -1):
        plan = plan_query(template.format(v=value), POLICY, SIZES)
        execution = execute(connection, plan, 1000)
        assert execution.refused is None
        inputs = _staged_inputs(connection, execution.statements, tmp_path / "profile.json")
        assert inputs.get("__groups"), execution.statements
        if plan.key_columns:
            assert inputs.get("__recheck"), execution.statements
        for name, found in inputs.items():
            assert found and min(found) >= SEEDS, (name, template, value, inputs)
        seen.append(inputs)
    present, absent = seen
    assert present.keys() == absent.keys()
    for name in present:
        assert len(present[name]) == len(absent[name])
        assert all(0 <= a - b <= rows for a, b in zip(present[name], absent[name], strict=True)), (name, seen)


def test_the_staged_path_is_not_seeded_when_timing_is_not_fixed(connection: duckdb.DuckDBPyConnection) -> None:
    """MARKET_SANDBOX_FIXED_TIMING=false: no seeds on the staged path (they only serve fixed timing), the
    same answer."""
    plan = plan_query("SELECT g, count(*), sum(m) FROM t WHERE f < 5000 GROUP BY g", POLICY, SIZES)
    fixed = execute_plan(connection, plan, 1000)
    free = execute_plan(connection, plan, 1000, fixed=False)
    assert any("__row" in statement for statement in fixed.statements)
    assert not any("__row" in statement for statement in free.statements)
    assert _canonical(fixed.rows) == _canonical(free.rows)
    assert (fixed.groups, fixed.suppressed_groups) == (free.groups, free.suppressed_groups)


def test_a_seed_group_that_shares_a_kept_groups_keys_is_never_shown(connection: duckdb.DuckDBPyConnection) -> None:
    """`f > 9000 AND f < 9100`: rows of 100 units... of which the seeds 0, 2048, ... fail; each g has a kept
    group and a seeds-only group with the same keys. Only the kept one may be rechecked and shown."""
    for where in ("f >= 9000 AND f < 9100", "f = 4321", "f < 0", "f >= 2048 AND f < 2058"):
        sql = f"SELECT g, count(*), sum(m) FROM t WHERE {where} GROUP BY g"
        plan = plan_query(sql, POLICY, SIZES)
        expected, groups, suppressed = _naive(connection, "g", "count(*), sum(m)", where)
        for execute in ALL_PATHS:
            execution = execute(connection, plan, 1000)
            assert _canonical(execution.rows) == expected, (execute.__name__, where)
            assert (execution.groups, execution.suppressed_groups) == (groups, suppressed), (execute.__name__, where)


def test_no_path_is_seeded_through_a_worker_when_timing_is_not_fixed(files: dict[str, Path]) -> None:
    """Through the worker (pool._run_job): every path runs the seeds with fixed timing and none without."""
    from dataclasses import replace

    from sandbox.pool import Job, WorkerPool
    from tests.sandbox.conftest import LIMITS

    plan = plan_query("SELECT g, count(*), sum(m) FROM t WHERE f < 5000 GROUP BY g", POLICY, SIZES)
    tables = tuple(sorted((name, str(path.resolve())) for name, path in files.items()))
    shapes = [{}, {"single": True}, {"folded": True}, {"two_level": True}]
    for fixed in (True, False):
        pool = WorkerPool(replace(LIMITS, fixed_timing=fixed, workers=1))
        try:
            for shape in shapes:
                execution = pool.run(Job(tables=tables, plan=plan, max_rows=1000, **shape))
                seeded = any("__row" in statement for statement in execution.statements)
                assert seeded is fixed, (fixed, shape, execution.statements)
                assert len(execution.rows) == 5
        finally:
            pool.close()
