"""Property: whether any row of one joined table matches a filter changes no scan (issue 9, branch sbx-join).

DuckDB stops a join that cannot produce a row: an inner (or RIGHT, or flipped LEFT) hash join whose build
side is empty after its filters, a piecewise-merge or nested-loop join, a cross product. It then skips the
other side's scan: `orders JOIN lineitem ON ... WHERE o_custkey = X` read 4,096 lineitem rows instead of
6,001,215 when customer X had no order, one bit a buyer chooses per joining query.

For join queries the grammar accepts over two tables (every join kind, either table first, conditions in
ON or WHERE, a hidden fact on either table), run with the hidden fact true and false, the statements that
run are the same but for the filter's value, and replayed with DuckDB's profiler under the sandbox's own
settings every Parquet scan of every statement reads the same number of rows: the whole table. Both
execution paths (the staged statements and the single statement) and the worker pool are covered. And
the rewrite changes no answer: stage 1 groups exactly as the buyer's query does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox.engine import EngineLimits, execute_plan, execute_single, open_locked
from sandbox.policy import ProtectionPolicy
from sandbox.pool import WorkerPool
from sandbox.rewrite import PLACEHOLDER, RESTRICT
from sandbox.service import TableFile, plan_query, run_query
from tests.sandbox.conftest import profile_statements, replaying_connection, write_parquet

BIG_ROWS = 6_000
SMALL_ROWS = 400

POLICY = ProtectionPolicy.model_validate(
    {
        "min_group_size": 10,
        "tables": {
            "big": {
                "privacy_unit": "uid",
                "dimensions": ["k", "d"],
                "measures": ["m"],
                "bounds": {"m": {"min": 0, "max": 100}},
            },
            "small": {
                "privacy_unit": "sid",
                "dimensions": ["k", "c"],
                "measures": ["r"],
                "bounds": {"r": {"min": 0, "max": 100}},
            },
            "mid": {"privacy_unit": "mid", "dimensions": ["c", "e"], "measures": []},
        },
    }
)
MID_ROWS = 1_000
SIZES = {"big": BIG_ROWS, "small": SMALL_ROWS, "mid": MID_ROWS}
WHOLE = {"big.parquet": BIG_ROWS, "small.parquet": SMALL_ROWS, "mid.parquet": MID_ROWS}

FACTS = {
    # (table alias, column): (a value some rows hold, a value none holds)
    ("s", "c"): (17, 977),
    ("b", "d"): (4, 994),
}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("joins")
    big = [{"uid": f"u{i % 300}", "k": i % 600, "d": i % 7, "m": i % 50} for i in range(BIG_ROWS)]
    small = [{"sid": f"s{i % 50}", "k": i, "c": i % 40, "r": i % 30} for i in range(SMALL_ROWS)]
    mid = [{"mid": f"m{i % 80}", "c": i % 40, "e": i % 9} for i in range(MID_ROWS)]
    return {
        "mid": write_parquet(folder / "mid.parquet", mid, {"mid": "VARCHAR", "c": "INTEGER", "e": "INTEGER"}),
        "big": write_parquet(
            folder / "big.parquet", big, {"uid": "VARCHAR", "k": "INTEGER", "d": "INTEGER", "m": "INTEGER"}
        ),
        "small": write_parquet(
            folder / "small.parquet", small, {"sid": "VARCHAR", "k": "INTEGER", "c": "INTEGER", "r": "INTEGER"}
        ),
    }


class Profiler:
    """A connection configured as engine.open_locked configures the sandbox's (checked below), not locked,
    with DuckDB's profiler on: replays statements and reports, per statement, each Parquet scan's rows."""

    def __init__(self, files: dict[str, Path], folder: Path) -> None:
        self.output = folder / "profile.json"
        self.connection = replaying_connection(files)

    def settings(self) -> dict[str, Any]:
        return dict(
            self.connection.execute(
                "SELECT name, value FROM duckdb_settings() WHERE name IN "
                "('disabled_optimizers', 'parquet_use_page_index', 'threads', 'preserve_insertion_order')"
            ).fetchall()
        )

    def scans(self, statements: list[str]) -> list[list[tuple[str, int]]]:
        """Per statement: (file, rows scanned) of every Parquet scan, in plan order."""
        return [_parquet_scans(profile) for profile in profile_statements(self.connection, self.output, statements)]


def _reads_parquet(node: dict[str, Any]) -> bool:
    info = node.get("extra_info") or {}
    if node.get("name") == "READ_PARQUET" or info.get("Function") == "READ_PARQUET":
        return True
    return any(_reads_parquet(child) for child in node.get("children") or [])


def _is_join(node: dict[str, Any]) -> bool:
    return "JOIN" in str(node.get("name")) or "PRODUCT" in str(node.get("name"))


def _parquet_scans(profile: dict[str, Any]) -> list[tuple[str, int]]:
    """(file, rows scanned) of every Parquet scan, and ("build", rows) of every join's build side that
    reads a product table: an empty build side lets DuckDB skip the other side's scan, or its hashing."""
    scans: list[tuple[str, int]] = []
    stack = list(profile.get("operator") or profile.get("children") or [])
    while stack:
        node = stack.pop(0)
        info = node.get("extra_info") or {}
        children = node.get("children") or []
        if node.get("name") == "READ_PARQUET" or info.get("Function") == "READ_PARQUET":
            scans.append((Path(str(info.get("Filename(s)", "?"))).name, int(node.get("rows_scanned") or 0)))
        elif _is_join(node) and len(children) == 2 and _reads_parquet(children[1]):
            scans.append(("build of " + str(node.get("name")), int(children[1].get("intermediate_rows") or 0)))
        stack.extend(children)
    return sorted(scans)


@pytest.fixture(scope="module")
def profiler(files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Profiler]:
    replay = Profiler(files, tmp_path_factory.mktemp("profile"))
    yield replay
    replay.connection.close()


def test_the_profiler_runs_with_the_sandbox_settings(files: dict[str, Path], profiler: Profiler) -> None:
    locked = open_locked(files, EngineLimits(threads=2))
    try:
        mine = profiler.settings()
        theirs = dict(
            locked.execute(
                "SELECT name, value FROM duckdb_settings() WHERE name IN "
                "('disabled_optimizers', 'parquet_use_page_index', 'threads', 'preserve_insertion_order')"
            ).fetchall()
        )
    finally:
        locked.close()
    assert mine == theirs


@st.composite
def join_queries(draw: st.DrawFn) -> tuple[str, tuple[str, str]]:
    """A join query over big (b) and small (s) with one `{fact}` placeholder: a filter on one table."""
    fact = draw(st.sampled_from(sorted(FACTS)))
    fact_sql = f"{fact[0]}.{fact[1]} = {{fact}}"
    first, second = draw(st.sampled_from([("big b", "small s"), ("small s", "big b")]))
    kind = draw(st.sampled_from(["JOIN", "LEFT JOIN", "RIGHT JOIN", "FULL JOIN", "CROSS JOIN", ","]))
    condition = draw(st.sampled_from(["b.k = s.k", "s.k = b.k", "b.k < s.k", "b.k = s.k AND b.d <> 6"]))
    extra = draw(st.sampled_from([None, "b.d <> 5", "s.c > 2", "b.d <> s.c"]))
    where = [extra] if extra else []
    on = [condition]
    if kind in ("CROSS JOIN", ","):
        where = [*([condition] if draw(st.booleans()) else []), *where]
        on = []
    # The fact in ON (of the other table's join) or in WHERE.
    if on and draw(st.booleans()):
        on.append(fact_sql)
    else:
        where.append(fact_sql)
    joined = f"FROM {first} {kind} {second}" if kind != "," else f"FROM {first}, {second}"
    if on:
        joined += " ON " + " AND ".join(on)
    if where:
        joined += " WHERE " + " AND ".join(where)
    group = draw(st.sampled_from([None, "b.d", "s.c"]))
    aggregates = draw(st.sampled_from(["count(*)", "count(*), sum(b.m)", "sum(s.r), avg(b.m)"]))
    if group:
        return f"SELECT {group}, {aggregates} {joined} GROUP BY 1", fact
    return f"SELECT {aggregates} {joined}", fact


def _both(sql: str, fact: tuple[str, str]) -> tuple[str, str]:
    present, absent = FACTS[fact]
    return sql.format(fact=present), sql.format(fact=absent)


def _neutral(statements: list[str], fact: tuple[str, str], value: int) -> list[str]:
    return [s.replace(f"= {value}", "= <fact>") for s in statements]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=join_queries())
def test_a_hidden_fact_changes_no_scan(query: tuple[str, tuple[str, str]], profiler: Profiler) -> None:
    sql, fact = query
    present_sql, absent_sql = _both(sql, fact)
    present_plan, absent_plan = plan_query(present_sql, POLICY, SIZES), plan_query(absent_sql, POLICY, SIZES)
    values = FACTS[fact]
    for execute in (execute_plan, execute_single):
        runs = []
        for plan, value in ((present_plan, values[0]), (absent_plan, values[1])):
            execution = execute(profiler.connection, plan, 10_000)
            assert execution.refused is None
            runs.append((_neutral(execution.statements, fact, value), profiler.scans(execution.statements)))
        (present_statements, present_scans), (absent_statements, absent_scans) = runs
        # The single statement adds a second one (the audit counts) when the answer has no row, which the
        # buyer sees anyway (engine.execute_single); the staged path always runs the same statements.
        compared = 1 if execute is execute_single else len(present_statements)
        assert present_statements[:compared] == absent_statements[:compared], sql
        assert present_scans[:compared] == absent_scans[:compared], (execute.__name__, sql, present_statements)
        # Every Parquet scan of every statement reads its whole table.
        whole = WHOLE
        for scans in (*present_scans, *absent_scans):
            assert all(rows == whole[name] for name, rows in scans if name in whole), (execute.__name__, sql, scans)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=join_queries(), present=st.booleans())
def test_the_rewrite_changes_no_answer(query: tuple[str, tuple[str, str]], present: bool, profiler: Profiler) -> None:
    """Stage 1 (with its threshold columns replaced by nothing) groups exactly as the buyer's query."""
    sql, fact = query
    text = _both(sql, fact)[0 if present else 1]
    plan = plan_query(text, POLICY, SIZES)
    stage = plan.template.replace(", " + PLACEHOLDER, "").replace(RESTRICT, "TRUE")
    raw = profiler.connection.execute(text).fetchall()
    rewritten = profiler.connection.execute(stage).fetchall()

    def canonical(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        return sorted((tuple(None if v is None else round(float(v), 6) for v in row) for row in rows), key=repr)

    assert canonical(rewritten) == canonical(raw), (text, plan.template)


def test_through_the_worker_pool(files: dict[str, Path], profiler: Profiler) -> None:
    """The issue's case, as a buyer sends it: the statements the pool ran, replayed, read both tables whole."""
    tables = {name: TableFile(name=name, path=path, row_count=SIZES[name]) for name, path in files.items()}
    sql = "SELECT b.d, count(*), sum(b.m) FROM small s JOIN big b ON s.k = b.k WHERE s.c = {fact} GROUP BY 1"
    pool = WorkerPool(EngineLimits(timeout_seconds=10, workers=1))
    try:
        seen = []
        for value in FACTS[("s", "c")]:
            result = run_query(sql.format(fact=value), POLICY, tables, EngineLimits(timeout_seconds=10), 1000, pool)
            statements = result.sql_run.split(";\n")
            seen.append(([s.replace(f"= {value}", "= <fact>") for s in statements], profiler.scans(statements)))
    finally:
        pool.close()
    assert seen[0][0] == seen[1][0]
    assert seen[0][1] == seen[1][1]
    whole = WHOLE
    assert all(rows == whole[name] for scans in seen[1][1] for name, rows in scans if name in whole)
    # The join's build side (small, whole) is never empty: no probe row skipped.
    assert any(name.startswith("build of") and rows == SMALL_ROWS for scans in seen[1][1] for name, rows in scans)


THREE_TABLES = [
    "SELECT b.d, count(*) FROM small s JOIN big b ON s.k = b.k JOIN mid x ON x.c = s.c WHERE x.e = {v} GROUP BY 1",
    "SELECT count(*) FROM big b JOIN small s ON s.k = b.k LEFT JOIN mid x ON x.c = s.c AND x.e = {v}",
    "SELECT count(*) FROM big b LEFT JOIN small s ON s.k = b.k JOIN mid x ON x.c = s.c WHERE s.c = {v}",
    "SELECT count(*) FROM mid x, small s, big b WHERE x.c = s.c AND s.k = b.k AND s.c = {v}",
    "SELECT count(*) FROM mid x CROSS JOIN small s JOIN big b ON s.k = b.k WHERE x.e = {v}",
]


@pytest.mark.parametrize("template", THREE_TABLES)
def test_three_tables(template: str, profiler: Profiler) -> None:
    """The chain of LEFT JOINs from the root, with inner, LEFT, comma and CROSS joins mixed."""
    seen = []
    for value in (3, 993):  # 3 is a value of mid.e and small.c; 993 of neither
        sql = template.format(v=value)
        plan = plan_query(sql, POLICY, SIZES)
        execution = execute_plan(profiler.connection, plan, 10_000)
        scans = profiler.scans(execution.statements)
        assert all(rows == WHOLE[name] for statement in scans for name, rows in statement if name in WHOLE)
        stage = plan.template.replace(", " + PLACEHOLDER, "").replace(RESTRICT, "TRUE")
        assert sorted(profiler.connection.execute(stage).fetchall()) == sorted(
            profiler.connection.execute(sql).fetchall()
        )
        seen.append(([s.replace(f"= {value}", "= <v>") for s in execution.statements], scans))
    assert seen[0] == seen[1]


def test_right_and_full_joins_of_more_tables_are_refused() -> None:
    from sandbox.errors import QueryRefused

    for kind in ("RIGHT", "FULL"):
        with pytest.raises(QueryRefused) as refused:
            plan_query(f"SELECT count(*) FROM big b JOIN small s ON s.k = b.k {kind} JOIN mid x ON x.c = s.c", POLICY)
        assert refused.value.code == "disallowed_construct"


def _mark_builds(profile: dict[str, Any]) -> list[int]:
    """Rows into the build side of every MARK join (the recheck's `IN (SELECT "__h" ...)`)."""
    found: list[int] = []
    stack = list(profile.get("operator") or [])
    while stack:
        node = stack.pop()
        children = node.get("children") or []
        if "MARK" in str((node.get("extra_info") or {}).get("Join Type", "")) and len(children) == 2:
            found.append(int(children[1].get("intermediate_rows") or 0))
        stack.extend(children)
    return found


def test_an_ungrouped_query_counts_exactly_and_is_never_rechecked(profiler: Profiler) -> None:
    """Without group keys the one group's recheck would filter every row or none as the bound passed it
    (one bit): such a query counts exactly in its one pass, the same statements whatever the filter."""
    ran = []
    for value in (5, 9999):
        execution = execute_plan(
            profiler.connection, plan_query(f"SELECT count(*) FROM big b WHERE b.k = {value}", POLICY), 100
        )
        assert not [s for s in execution.statements if '"__recheck" AS' in s], execution.statements
        ran.append([s.replace(f"= {value}", "= <v>") for s in execution.statements])
    assert ran[0] == ran[1]


@pytest.mark.parametrize("grouped", [True])
def test_the_recheck_list_is_never_empty(grouped: bool, profiler: Profiler) -> None:
    """The recheck's IN is a mark join: with an empty list DuckDB marks every row FALSE without hashing
    it, so whether any group was undecided showed in the time. The list always holds engine.SENTINEL."""
    from sandbox.engine import SENTINEL

    assert SENTINEL not in profiler.connection.execute("SELECT hash(TRUE, TRUE), hash(FALSE, TRUE)").fetchone()
    builds = []
    for value in (5, 9999):  # k = 5 is one unit's rows (its group is undecided); 9999 no row at all
        sql = f"SELECT {'b.d, ' if grouped else ''}count(*) FROM big b WHERE b.k = {value}"
        execution = execute_plan(profiler.connection, plan_query(sql + (" GROUP BY 1" if grouped else ""), POLICY), 100)
        recheck = [s for s in execution.statements if '"__recheck" AS' in s]
        profiler.connection.execute("BEGIN TRANSACTION")
        try:
            for statement in execution.statements:
                if statement is recheck[0]:
                    profiler.connection.execute("SET enable_profiling = 'json'")
                    profiler.connection.execute(f"SET profiling_output = '{profiler.output}'")
                profiler.connection.execute(statement).fetchall()
                if statement is recheck[0]:
                    profiler.connection.execute("SET enable_profiling = 'no_output'")
                    builds.append(_mark_builds(json.loads(profiler.output.read_text())))
        finally:
            profiler.connection.execute("ROLLBACK")
    assert all(rows and all(n >= 1 for n in rows) for rows in builds), builds
