"""Property (branch pre16): the threshold decided from build-time unit counts (engine.execute_summary,
sandbox.summary) answers exactly as the exact statements (execute_single, execute_two_level).

Random small tables whose privacy unit, dimensions and measures are often NULL, a random k (2-5, so groups
of one unit and of k - 1 and k units occur all the time), random queries of the supported shape (0-2 plain
group keys, a WHERE of `dimension = literal` conjuncts, count(*), count(DISTINCT unit), sums, averages and
counts of measures, the variance family, HAVING, ORDER BY / LIMIT) and some of other shapes (a literal of the
other kind, three columns, an expression key, a sum of two measures): the strategy must choose the summary
exactly for the supported ones, from the build's own statistics (products.storage.table_statistics), and
where it does, rows (value and type), counts of groups and of suppressed groups must be identical to both
exact statements'. Checked to fail with each cell read as the group's count (`__units` for `__m<i>` in
sandbox.summary.lookup) and with the filter left out of the lookup (MAX over every combination).

The cube (branch cube13): where every aggregate is one the summary holds per combination (count(*), count(m),
count(DISTINCT u), and sum and avg of `n`, a BIGINT whose declared bounds times the rows stay under 2^53; never of
`m`, a DOUBLE with fractional values and -0.0, nor the variance family, nor with `n`'s bounds drawn wide), the
strategy must choose "cube" exactly there, and engine.execute_cube must answer exactly as execute_single,
execute_two_level and execute_summary.
"""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, note, settings
from hypothesis import strategies as st

from products.storage import summary_path, table_statistics
from sandbox.engine import (
    EngineLimits,
    TableStatistics,
    execute_cube,
    execute_single,
    execute_summary,
    execute_two_level,
    open_locked,
)
from sandbox.errors import QueryRefused
from sandbox.policy import ProtectionPolicy
from sandbox.pool import Job, WorkerPool
from sandbox.service import (
    TableFile,
    cube_for,
    files_of,
    plan_query,
    row_counts,
    run_query,
    strategy,
    summary_for,
)
from tests.sandbox.conftest import write_parquet

TYPES = {"u": "VARCHAR", "g": "VARCHAR", "h": "BIGINT", "d": "VARCHAR", "m": "DOUBLE", "n": "BIGINT"}
ROLES = {"u": "privacy_unit", "g": "dimension", "h": "dimension", "d": "dimension", "m": "measure", "n": "measure"}
DIMENSIONS = ("g", "h", "d")
LITERALS = {"g": ["'a'", "'b'", "'z'"], "h": ["1", "2", "7"], "d": ["'x'", "'y'"]}
OTHER_KIND = {"g": "1", "h": "'1'", "d": "2"}
"""A literal of the other kind: `h = '1'` casts the literal, `g = 1` the column (many values may equal 1)."""
AGGREGATES = [
    "count(*) AS c",
    "count(DISTINCT u) AS units",
    "sum(m) AS sm",
    "avg(n) AS an",
    "count(m) AS cm",
    "sum(n) AS sn",
    "var_samp(n) AS vn",
]


def _policy(k: int) -> ProtectionPolicy:
    return ProtectionPolicy.model_validate(
        {
            "min_group_size": k,
            "tables": {
                "t": {
                    "privacy_unit": "u",
                    "dimensions": list(DIMENSIONS),
                    "measures": ["m", "n"],
                    "hidden": [],
                    "bounds": {"m": {"min": -1000, "max": 1000}, "n": {"min": -1000, "max": 1000}},
                }
            },
        }
    )


rows_strategy = st.lists(
    st.fixed_dictionaries(
        {
            "u": st.one_of(st.none(), st.sampled_from([f"u{i}" for i in range(8)])),
            "g": st.one_of(st.none(), st.sampled_from(["a", "b", "c"])),
            "h": st.one_of(st.none(), st.integers(1, 3)),
            "d": st.sampled_from(["x", "y"]),
            "m": st.one_of(st.none(), st.integers(-20, 20).map(float), st.sampled_from([0.5, -0.0, 0.1, 2.25, -7.75])),
            "n": st.one_of(st.none(), st.integers(-50, 50)),
        }
    ),
    min_size=1,
    max_size=40,
)


@st.composite
def queries(draw: st.DrawFn) -> dict[str, Any]:
    keys = draw(st.lists(st.sampled_from(DIMENSIONS), max_size=2, unique=True))
    filtered = draw(st.lists(st.sampled_from(DIMENSIONS), max_size=2, unique=True))
    pins = []
    for column in filtered:
        literal = draw(st.sampled_from([*LITERALS[column], OTHER_KIND[column]]))
        pins.append((column, literal))
    aggregates = draw(st.lists(st.sampled_from(AGGREGATES), min_size=1, max_size=3, unique=True))
    shape = draw(st.sampled_from(["plain", "plain", "plain", "expression key", "two measures"]))
    return {
        "k": draw(st.integers(2, 5)),
        "keys": keys,
        "pins": pins,
        "aggregates": aggregates,
        "shape": shape,
        "having": draw(st.booleans()),
        "limit": draw(st.one_of(st.none(), st.integers(1, 3))),
        "wide": draw(st.integers(0, 3)) == 0,
    }


def _sql(q: dict[str, Any]) -> str:
    keys = list(q["keys"])
    items = list(keys)
    if q["shape"] == "expression key":
        keys.append("upper(d)")
        items.append("upper(d) AS ud")
    items += q["aggregates"]
    if q["shape"] == "two measures":
        items.append("sum(m + n) AS both_")
    sql = f"SELECT {', '.join(items)} FROM t"
    if q["pins"]:
        sql += " WHERE " + " AND ".join(f"{c} = {v}" for c, v in q["pins"])
    if keys:
        sql += " GROUP BY " + ", ".join(keys)
    if q["having"]:
        sql += " HAVING count(*) > 1"
    if q["limit"] is not None:
        sql += f" ORDER BY {', '.join(str(i + 1) for i in range(len(items)))} LIMIT {q['limit']}"
    return sql


def _supported(q: dict[str, Any], rows: list[dict[str, Any]]) -> bool:
    """Whether the summary decides `q`: a sum of two measures only where neither holds a NULL (its cell is then
    the group itself, engine.whole_cells), an expression key never."""
    columns = set(q["keys"]) | {c for c, _ in q["pins"]}
    whole = all(r["m"] is not None and r["n"] is not None for r in rows)
    return (
        (q["shape"] == "plain" or (q["shape"] == "two measures" and whole))
        and len(columns) <= 2
        and all(literal != OTHER_KIND[column] for column, literal in q["pins"])
    )


CUBE_AGGREGATES = {"count(*) AS c", "count(DISTINCT u) AS units", "count(m) AS cm", "sum(n) AS sn", "avg(n) AS an"}
"""Aggregates the cube holds per combination: counts, and sums and averages of n (a BIGINT, exact under its bounds)."""


def _bounds(q: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """The measures' declared bounds as the build records them: n's drawn wide (2^53) sometimes, so that the rows
    times the bound pass 2^53 and its sums are not held (sandbox.summary.exact_measures)."""
    wide = 2.0**53 if q.get("wide") else 1000.0
    return {"m": (-1000.0, 1000.0), "n": (-wide, wide)}


def _cube(q: dict[str, Any], rows: list[dict[str, Any]]) -> bool:
    """Whether the cube answers `q`: the summary decides it, its shape is plain and every aggregate is held."""
    held = CUBE_AGGREGATES - ({"sum(n) AS sn", "avg(n) AS an"} if q.get("wide") else set())
    return _supported(q, rows) and q["shape"] == "plain" and set(q["aggregates"]) <= held


def _typed(rows: list[tuple[Any, ...]]) -> list[tuple[tuple[str, Any], ...]]:
    return [tuple((type(v).__name__, v) for v in row) for row in rows]


def _check(rows: list[dict[str, Any]], q: dict[str, Any]) -> None:
    sql = _sql(q)
    note(sql)
    with tempfile.TemporaryDirectory() as directory:
        path = write_parquet(Path(directory) / "t.parquet", rows, TYPES)
        stats = table_statistics(path, list(TYPES), ROLES, _bounds(q))
        assert summary_path(path).exists()
        tables = {"t": TableFile(name="t", path=path, row_count=len(rows), statistics=stats)}
        try:
            plan = plan_query(sql, _policy(q["k"]), row_counts(tables))
        except QueryRefused:
            return
        chosen = strategy(plan, tables)
        assert (chosen in ("summary", "cube")) == _supported(q, rows), (chosen, sql)
        assert (chosen == "cube") == _cube(q, rows), (chosen, sql)
        if chosen not in ("summary", "cube"):
            return
        lookup = summary_for(plan, tables)
        assert lookup
        cube = cube_for(plan, tables)
        assert bool(cube) == (chosen == "cube")
        files = {name: Path(file) for name, file in files_of(tables)}
        connection = open_locked(files, EngineLimits(threads=1), stats["statistics_free"])
        try:
            statistics = TableStatistics(connection, {}, "v")
            by_summary = execute_summary(connection, plan, 100, statistics, lookup)
            exact = [
                execute_single(connection, plan, 100, statistics),
                execute_two_level(connection, plan, 100, statistics),
            ]
            if cube:
                exact.append(by_summary)
                by_summary = execute_cube(connection, plan, 100, statistics, cube)
        finally:
            connection.close()
    assert by_summary.methods == ["cube" if cube else "summary"]
    if cube:  # no row of the table read: only the summary
        assert 'FROM "__summary__t"' in by_summary.statements[0] and 'FROM "t"' not in by_summary.statements[0]
    for other in exact:
        assert _typed(by_summary.rows) == _typed(other.rows), sql
        assert (by_summary.groups, by_summary.suppressed_groups) == (other.groups, other.suppressed_groups), sql


EDGE_ROWS = [
    # Group g = 'a': 3 units, of which 2 have m (k = 3: the cell of m is withheld, the group passes).
    *({"u": f"u{i}", "g": "a", "h": 1, "d": "x", "m": (1.0 if i < 2 else None), "n": i} for i in range(3)),
    # Group g = 'b': one unit on four rows, and a NULL unit.
    *({"u": "u7", "g": "b", "h": 2, "d": "y", "m": 2.0, "n": 1} for _ in range(4)),
    {"u": None, "g": "b", "h": 2, "d": "y", "m": 3.0, "n": None},
    # Group g = NULL: 2 units (k - 1).
    {"u": "u3", "g": None, "h": None, "d": "x", "m": 4.0, "n": 2},
    {"u": "u4", "g": None, "h": 3, "d": "x", "m": None, "n": 3},
]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=rows_strategy, q=queries())
@example(
    rows=EDGE_ROWS,
    q={"k": 3, "keys": ["g"], "pins": [], "aggregates": ["count(*) AS c", "sum(m) AS sm"], "shape": "plain",
       "having": False, "limit": None},
)  # fmt: skip
@example(
    rows=EDGE_ROWS,
    q={"k": 2, "keys": ["g"], "pins": [("d", "'x'")], "aggregates": ["avg(n) AS an", "count(m) AS cm"],
       "shape": "plain", "having": False, "limit": None},
)  # fmt: skip
@example(
    rows=EDGE_ROWS,
    q={"k": 2, "keys": [], "pins": [("g", "'b'")], "aggregates": ["count(*) AS c", "sum(m) AS sm"],
       "shape": "plain", "having": False, "limit": None},
)  # fmt: skip
@example(
    rows=EDGE_ROWS,
    q={"k": 2, "keys": [], "pins": [("g", "'z'")], "aggregates": ["count(*) AS c", "sum(n) AS sn", "avg(n) AS an"],
       "shape": "plain", "having": False, "limit": None},
)  # fmt: skip
@example(
    rows=EDGE_ROWS,
    q={"k": 3, "keys": ["h"], "pins": [("d", "'x'")], "aggregates": ["count(*) AS c", "sum(n) AS sn", "count(m) AS cm"],
       "shape": "plain", "having": True, "limit": None},
)  # fmt: skip
@example(
    rows=EDGE_ROWS,
    q={"k": 2, "keys": ["g", "d"], "pins": [], "aggregates": ["count(DISTINCT u) AS units", "avg(n) AS an"],
       "shape": "plain", "having": False, "limit": None},
)  # fmt: skip
@example(
    rows=EDGE_ROWS,
    q={"k": 2, "keys": [], "pins": [], "aggregates": ["count(*) AS c", "sum(n) AS sn"],
       "shape": "plain", "having": False, "limit": None},
)  # fmt: skip
def test_summary_answers_exactly_as_the_exact_statements(rows: list[dict[str, Any]], q: dict[str, Any]) -> None:
    _check(rows, q)


def test_the_summary_holds_every_small_set_and_no_large_one(tmp_path: Path) -> None:
    """Sets of 0-2 dimensions, each under the cap; NULL a value of its own; the counts exact."""
    rows = [
        {"u": f"u{i % 5}", "g": ["a", "b", None][i % 3], "h": i % 4, "d": "x", "m": None, "n": i} for i in range(30)
    ]
    path = write_parquet(tmp_path / "t.parquet", rows, TYPES)
    stats = table_statistics(path, list(TYPES), ROLES)
    described = stats["summary"]
    assert described["file"] == "t.summary.parquet"
    assert sorted(tuple(c) for c, _ in described["sets"]) == sorted(
        c for size in range(3) for c in itertools.combinations(["g", "h", "d"], size)
    )
    assert described["measures"] == ["m", "n"]
    import duckdb

    # A connection of its own: the module's default one may hold another test's unfinished result.
    with duckdb.connect() as connection:
        found = connection.execute(
            f"SELECT g, __units, __m0, __m1 FROM read_parquet('{summary_path(path)}') "
            f"WHERE __set = {dict((tuple(c), i) for c, i in described['sets'])[('g',)]} ORDER BY g NULLS LAST"
        ).fetchall()
    assert found == [("a", 5, 0, 5), ("b", 5, 0, 5), (None, 5, 0, 5)]


def test_a_version_built_before_has_no_summary_and_no_change(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "t.parquet", [{"u": "u1", "g": "a", "h": 1, "d": "x", "m": 1.0, "n": 1}], TYPES)
    stats = table_statistics(path, list(TYPES), ROLES)
    before = {k: v for k, v in stats.items() if k != "summary"}
    plan = plan_query("SELECT g, count(*) AS c FROM t GROUP BY g", _policy(2), {"t": 1})
    tables = {"t": TableFile(name="t", path=path, row_count=1, statistics=before)}
    assert strategy(plan, tables) != "summary"
    assert summary_for(plan, tables) is None
    assert all(not name.startswith("__") for name, _ in files_of(tables))


@pytest.fixture(scope="module")
def one_worker() -> Any:
    pool = WorkerPool(EngineLimits(workers=1, threads=1))
    yield pool
    pool.close()


def test_through_a_worker_the_summary_path_runs_and_answers_as_the_others(
    tmp_path: Path, one_worker: WorkerPool
) -> None:
    rows = [
        {"u": f"u{i % 9}", "g": ["a", "b"][i % 2], "h": i % 3, "d": "x", "m": float(i % 7), "n": (i if i % 4 else None)}
        for i in range(90)
    ]
    path = write_parquet(tmp_path / "t.parquet", rows, TYPES)
    stats = table_statistics(path, list(TYPES), ROLES)
    tables = {"t": TableFile(name="t", path=path, row_count=len(rows), statistics=stats)}
    sql = "SELECT g, count(*) AS c, avg(n) AS an FROM t WHERE h = 1 GROUP BY g"
    plan = plan_query(sql, _policy(4), row_counts(tables))
    assert strategy(plan, tables) == "summary"
    result = run_query(sql, _policy(4), tables, EngineLimits(workers=1, threads=1), 100, one_worker)
    assert "__summary__t" in result.sql_run
    base = Job(tables=files_of(tables), plan=plan, max_rows=100)
    single = one_worker.run(Job(tables=base.tables, plan=plan, max_rows=100, single=True))
    assert [list(r) for r in single.rows] == result.rows


def test_the_worker_s_summary_table_has_statistics_that_say_nothing_of_the_values(tmp_path: Path) -> None:
    """In the worker's connection the summary is a table, whose statistics DuckDB keeps and (over statistics-free
    versions) propagates: its two bounding rows make every column's range its type's, so `g = 'zzz'` (past
    the data's greatest value) or `h = 99` fold no differently from a value present."""
    rows = [{"u": f"u{i}", "g": ["a", "b"][i % 2], "h": i % 3, "d": "x", "m": 1.0, "n": i} for i in range(12)]
    path = write_parquet(tmp_path / "t.parquet", rows, TYPES)
    stats = table_statistics(path, list(TYPES), ROLES)
    tables = {"t": TableFile(name="t", path=path, row_count=len(rows), statistics=stats)}
    files = {name: Path(file) for name, file in files_of(tables)}
    connection = open_locked(files, EngineLimits(threads=1), True)
    try:
        found = connection.execute(
            'SELECT min(g), max(g), min(h), max(h), min("__units"), max("__units"), '
            'count(*) FILTER (WHERE "__set" = -1) FROM "__summary__t"'
        ).fetchone()
        stats_rows = connection.execute(
            "SELECT column_name, stats FROM pragma_storage_info('__summary__t') WHERE column_name IN ('g', 'h')"
        ).fetchall()
    finally:
        connection.close()
    assert found == ("", "\U0010ffff\U0010ffff", -(2**63), 2**63 - 1, -(2**63), 2**63 - 1, 2)
    assert stats_rows  # the table keeps statistics: the bounding rows are what makes them uninformative
