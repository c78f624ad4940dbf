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
        # A literal of the other kind on a group key is a predicate on the key (branch cal13): it selects whole
        # groups, whatever values it holds for.
        and all(literal != OTHER_KIND[column] or column in q["keys"] for column, literal in q["pins"])
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
    if by_summary.refused is not None:  # refused before any row is read (`g = 1`: a cast of g that can fail)
        assert all(other.refused == by_summary.refused for other in exact), sql
        return
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


# --- Branch cal13: DATE dimensions, calendar keys, filters on keys, a range that is one calendar period. ---

DATED_TYPES = {"u": "VARCHAR", "g": "VARCHAR", "h": "BIGINT", "w": "DATE", "m": "DOUBLE", "n": "BIGINT"}
DATED_ROLES = {
    "u": "privacy_unit",
    **{c: "dimension" for c in ("g", "h", "w")},
    "m": "measure",
    "n": "measure",  # an integer under bounds: the cube (branch cube13) holds its sums and averages
}
DAYS = ["1994-12-31", "1995-01-01", "1995-01-31", "1995-02-01", "1995-03-15", "1995-12-31", "1996-01-01"]
"""Dates on both sides of every period boundary the queries' ranges and calendar keys draw."""
CALENDAR_KEYS = {
    # key SQL -> (summary dimension, its calendar partition); "w" is the plain date
    "w": ("w", None),
    "year(w)": ("year(w)", "year"),
    "extract(year FROM w)": ("year(w)", "year"),
    "date_trunc('year', w)": ("year(w)", "year"),
    "date_trunc('month', w)": ("month(w)", "month"),
    "month(w)": ("month-of-year(w)", "month-of-year"),
    "extract(month FROM w)": ("month-of-year(w)", "month-of-year"),
}
RANGES = {
    # (low, high) -> the period it is exactly, or None
    ("1995-01-01", "1996-01-01"): "year(w)",
    ("1995-02-01", "1995-03-01"): "month(w)",
    ("1994-12-01", "1995-01-01"): "month(w)",
    ("1995-01-01", "1995-03-01"): None,  # two months
    ("1995-01-02", "1995-02-01"): None,  # not from a period's first day
    ("1995-01-01", "1995-12-31"): None,  # a year less a day
}


def _dated_policy(k: int) -> ProtectionPolicy:
    return ProtectionPolicy.model_validate(
        {
            "min_group_size": k,
            "tables": {
                "t": {
                    "privacy_unit": "u",
                    "dimensions": ["g", "h", "w"],
                    "measures": ["m", "n"],
                    "hidden": [],
                    "bounds": {"m": {"min": -1000, "max": 1000}, "n": {"min": -1000, "max": 1000}},
                }
            },
        }
    )


dated_rows = st.lists(
    st.fixed_dictionaries(
        {
            "u": st.one_of(st.none(), st.sampled_from([f"u{i}" for i in range(8)])),
            "g": st.one_of(st.none(), st.sampled_from(["a", "b"])),
            "h": st.one_of(st.none(), st.integers(1, 3)),
            "w": st.one_of(st.none(), st.sampled_from(DAYS)),
            "m": st.one_of(st.none(), st.integers(-20, 20).map(float)),
            "n": st.one_of(st.none(), st.integers(-50, 50)),
        }
    ),
    min_size=1,
    max_size=40,
)


DATED_AGGREGATES = ["count(*) AS c", "sum(m) AS sm", "count(DISTINCT u) AS units", "sum(n) AS sn", "avg(n) AS an"]


@st.composite
def dated_queries(draw: st.DrawFn) -> dict[str, Any]:
    """A query over `t` with its expected summary dimensions: keys (plain or calendar), and WHERE conjuncts, each
    tagged with what it reads: ("reads", dims) for a predicate (on the keys it selects whole groups), ("pin",
    dim) for `dim = literal` of the dimension's kind, ("range", period or None) for `w >= a AND w < b`."""
    keys = draw(st.lists(st.sampled_from(["g", "h", *CALENDAR_KEYS]), max_size=2, unique=True))
    conjuncts: list[tuple[str, tuple[Any, ...]]] = []
    for _ in range(draw(st.integers(0, 2))):
        kind = draw(st.sampled_from(["pin", "predicate", "calendar predicate", "range", "date pin", "calendar pin"]))
        if kind == "pin":
            column = draw(st.sampled_from(["g", "h"]))
            literal = draw(st.sampled_from(LITERALS[column]))
            conjuncts.append((f"{column} = {literal}", ("pin", column)))
        elif kind == "predicate":
            text, column = draw(
                st.sampled_from(
                    [("g LIKE 'a%' OR g IS NULL", "g"), ("h > 1", "h"), ("NOT h = 2", "h"), ("g <> 'b'", "g")]
                )
            )
            conjuncts.append((text, ("reads", column)))
        elif kind == "calendar predicate":
            text, dim = draw(
                st.sampled_from(
                    [
                        ("w >= DATE '1995-01-01'", "w"),
                        ("w IS NOT NULL", "w"),
                        ("year(w) > 1994", "year(w)"),
                        ("month(w) IN (1, 3)", "month-of-year(w)"),
                        ("date_trunc('month', w) <> DATE '1995-01-01'", "month(w)"),
                    ]
                )
            )
            conjuncts.append((text, ("reads", dim)))
        elif kind == "range" and not any(tag == "range" for _, (tag, _) in conjuncts):  # one range of w at most
            low, high = draw(st.sampled_from(sorted(RANGES)))
            conjuncts.append((f"w >= DATE '{low}' AND w < DATE '{high}'", ("range", RANGES[(low, high)])))
        elif kind == "range":
            continue
        elif kind == "date pin":
            day = draw(st.sampled_from(DAYS))
            conjuncts.append((f"w = DATE '{day}'", ("pin", "w")))
        else:
            text, dim = draw(
                st.sampled_from(
                    [
                        ("year(w) = 1995", "year(w)"),
                        ("month(w) = 1", "month-of-year(w)"),
                        ("year(w) = '1995'", "year(w) cast"),
                    ]
                )
            )
            conjuncts.append((text, ("pin", dim)))
    aggregates = draw(st.lists(st.sampled_from(DATED_AGGREGATES), min_size=1, max_size=2, unique=True))
    return {"k": draw(st.integers(2, 4)), "keys": keys, "conjuncts": conjuncts, "aggregates": aggregates}


def _dated_sql(q: dict[str, Any]) -> str:
    items = [f"{key} AS k{i}" for i, key in enumerate(q["keys"])] + q["aggregates"]
    sql = f"SELECT {', '.join(items)} FROM t"
    if q["conjuncts"]:
        sql += " WHERE " + " AND ".join(f"({text})" for text, _ in q["conjuncts"])
    if q["keys"]:
        sql += " GROUP BY " + ", ".join(str(i + 1) for i in range(len(q["keys"])))
    return sql


def _dated_supported(q: dict[str, Any], rows: list[dict[str, Any]]) -> bool:
    """The model: the summary dimensions S are the keys' plus the pinned ones (a pin on a non-key dimension, a
    range that is one period: its partition), every predicate reads only keys (a calendar expression of a key
    `w` reads the key), |S| <= 2 with at most one of w's dimensions, a calendar partition only when w has a
    value (its cardinality comes from w's extent)."""
    keys = {CALENDAR_KEYS[k][0] if k in CALENDAR_KEYS else k for k in q["keys"]}
    if {"year(w)", "month-of-year(w)"} <= keys:  # `GROUP BY year(w), month(w)`: the months of w
        keys = keys - {"year(w)", "month-of-year(w)"} | {"month(w)"}

    def readable(dim: str) -> bool:
        """A predicate on `dim` is one on the keys: a key, a part of the key w, or of the key month(w)."""
        finer = dim in ("year(w)", "month-of-year(w)") and "month(w)" in keys
        return dim in keys or (dim.endswith("(w)") and "w" in keys) or finer

    chosen = set(keys)
    for _, (tag, dim) in q["conjuncts"]:
        if tag == "reads" and not readable(dim):
            return False
        if tag == "range" and "w" not in keys:
            if dim is None:
                return False
            chosen.add(dim)
        if tag == "pin":
            cast = dim.endswith(" cast")  # `year(w) = '1995'`: a literal of another kind pins no one partition
            dim = dim.removesuffix(" cast")
            if readable(dim):
                continue  # then a predicate on the keys
            if cast:
                return False
            chosen.add(dim)
    dated = [d for d in chosen if d == "w" or d.endswith("(w)")]
    if any(d.endswith("(w)") for d in dated) and all(r["w"] is None for r in rows):
        return False
    return len(chosen) <= 2 and len(dated) <= 1


def _dated_check(rows: list[dict[str, Any]], q: dict[str, Any]) -> None:
    sql = _dated_sql(q)
    note(sql)
    with tempfile.TemporaryDirectory() as directory:
        path = write_parquet(Path(directory) / "t.parquet", rows, DATED_TYPES)
        stats = table_statistics(path, list(DATED_TYPES), DATED_ROLES, {"m": (-1000.0, 1000.0), "n": (-1000.0, 1000.0)})
        tables = {"t": TableFile(name="t", path=path, row_count=len(rows), statistics=stats)}
        try:
            plan = plan_query(sql, _dated_policy(q["k"]), row_counts(tables))
        except QueryRefused:
            return
        chosen = strategy(plan, tables)
        assert (chosen in ("summary", "cube")) == _dated_supported(q, rows), (chosen, sql)
        if chosen not in ("summary", "cube"):
            return
        lookup = summary_for(plan, tables)
        assert lookup
        cube = cube_for(plan, tables)  # branch cube13: the aggregates read from the summary too, where it holds them
        assert bool(cube) == (chosen == "cube")
        files = {name: Path(file) for name, file in files_of(tables)}
        connection = open_locked(files, EngineLimits(threads=1), stats["statistics_free"])
        try:
            statistics = TableStatistics(connection, {}, "v")
            answers = [execute_summary(connection, plan, 100, statistics, lookup)]
            if cube:
                answers.append(execute_cube(connection, plan, 100, statistics, cube))
            exact = [
                execute_single(connection, plan, 100, statistics),
                execute_two_level(connection, plan, 100, statistics),
            ]
        finally:
            connection.close()
    for by_summary in answers:
        if by_summary.refused is not None:
            assert all(other.refused == by_summary.refused for other in exact), sql
            continue
        assert by_summary.methods in (["summary"], ["cube"])
        for other in exact:
            assert _typed(by_summary.rows) == _typed(other.rows), sql
            assert (by_summary.groups, by_summary.suppressed_groups) == (other.groups, other.suppressed_groups), sql


DATED_EDGE = [
    # 1995-01: 3 units on the 1st and the 31st; 1994-12-31: 2 units (k = 3); NULL dates: 3 units.
    *(
        {"u": f"u{i}", "g": "a", "h": 1, "w": "1995-01-01" if i % 2 else "1995-01-31", "m": 1.0, "n": 1}
        for i in range(3)
    ),
    *({"u": f"u{i}", "g": "b", "h": 2, "w": "1994-12-31", "m": None, "n": 2} for i in range(3, 5)),
    *({"u": f"u{i}", "g": "b", "h": None, "w": None, "m": 2.0, "n": None} for i in range(5, 8)),
    {"u": None, "g": "a", "h": 1, "w": "1996-01-01", "m": 3.0, "n": 3},
]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=dated_rows, q=dated_queries())
@example(
    rows=DATED_EDGE,
    q={"k": 3, "keys": ["g"], "conjuncts": [("w >= DATE '1995-01-01' AND w < DATE '1996-01-01'", ("range", "year(w)"))],
       "aggregates": ["count(*) AS c", "sum(m) AS sm"]},
)  # fmt: skip
@example(
    rows=DATED_EDGE,
    q={"k": 3, "keys": ["date_trunc('month', w)"], "conjuncts": [], "aggregates": ["count(*) AS c", "sum(m) AS sm"]},
)  # fmt: skip
@example(
    rows=DATED_EDGE,
    q={"k": 2, "keys": ["w", "g"], "conjuncts": [("w >= DATE '1995-01-01'", ("reads", "w"))],
       "aggregates": ["count(*) AS c"]},
)  # fmt: skip
@example(
    rows=DATED_EDGE,
    q={"k": 3, "keys": ["year(w)", "h"], "conjuncts": [("month(w) = 1", ("pin", "month-of-year(w)"))],
       "aggregates": ["count(*) AS c"]},
)  # fmt: skip
@example(
    rows=[*DATED_EDGE, {"u": "u3", "g": "a", "h": 1, "w": "1996-01-15", "m": 1.0, "n": 1}],
    q={"k": 2, "keys": ["year(w)", "month(w)"], "conjuncts": [("year(w) > 1994", ("reads", "year(w)"))],
       "aggregates": ["count(*) AS c", "avg(n) AS an"]},
)  # fmt: skip
@example(
    rows=DATED_EDGE,
    q={"k": 2, "keys": ["g"], "conjuncts": [("w >= DATE '1995-01-01' AND w < DATE '1995-03-01'", ("range", None))],
       "aggregates": ["count(*) AS c"]},
)  # fmt: skip
@example(
    rows=[*DATED_EDGE, {"u": "u3", "g": "a", "h": 1, "w": "1995-03-15", "m": 1.0, "n": 1}],
    q={"k": 4, "keys": ["year(w)"], "conjuncts": [], "aggregates": ["count(*) AS c"]},
)  # 1995: 3 units in January, a 4th in March: its count is their union, never one month's
def test_dates_calendar_keys_and_filters_on_keys_answer_exactly(rows: list[dict[str, Any]], q: dict[str, Any]) -> None:
    """Branch cal13: the summary decides exactly the modelled shapes, and there answers as both exact statements."""
    _dated_check(rows, q)


def test_calendar_partitions_are_summarised_with_their_cardinalities(tmp_path: Path) -> None:
    """A DATE dimension gets its year, month and month-of-year partitions as derived dimensions, with sets under
    the cap from its extent, never two of one date in a set; the counts per partition exact."""
    rows = [
        {"u": f"u{i % 4}", "g": "a", "h": i % 2, "w": DAYS[i % len(DAYS)] if i % 5 else None, "m": 1.0, "n": 1}
        for i in range(30)
    ]
    path = write_parquet(tmp_path / "t.parquet", rows, DATED_TYPES)
    described = table_statistics(path, list(DATED_TYPES), DATED_ROLES)["summary"]
    assert described["derived"] == {
        "__year__w": ["year", "w"],
        "__month__w": ["month", "w"],
        "__moy__w": ["month-of-year", "w"],
    }
    sets = {tuple(c): i for c, i in described["sets"]}
    assert ("g", "__year__w") in sets and ("__moy__w",) in sets and ("w",) in sets
    assert not any(len([c for c in chosen if "w" in c]) > 1 for chosen in sets)
    import duckdb

    with duckdb.connect() as connection:
        found = connection.execute(
            f"SELECT __year__w, __units FROM read_parquet('{summary_path(path)}') "
            f"WHERE __set = {sets[('__year__w',)]} ORDER BY 1 NULLS LAST"
        ).fetchall()
    expected: dict[Any, set[str]] = {}
    for r in rows:
        year = None if r["w"] is None else f"{r['w'][:4]}"
        expected.setdefault(year, set()).add(r["u"])
    assert [(None if y is None else str(y)[:4], n) for y, n in found] == sorted(
        ((y, len(units)) for y, units in expected.items()), key=lambda p: (p[0] is None, p[0])
    )


def test_the_summary_s_dates_and_partitions_have_statistics_that_say_nothing_of_the_values(tmp_path: Path) -> None:
    """Branch cal13: in the worker's connection the bounding rows span DATE's whole finite range for the date and
    its derived partitions too, so `w = DATE '2999-01-01'` folds no differently from a date present."""
    rows = [{"u": f"u{i}", "g": "a", "h": i % 2, "w": DAYS[i % len(DAYS)], "m": 1.0, "n": 1} for i in range(12)]
    path = write_parquet(tmp_path / "t.parquet", rows, DATED_TYPES)
    stats = table_statistics(path, list(DATED_TYPES), DATED_ROLES)
    tables = {"t": TableFile(name="t", path=path, row_count=len(rows), statistics=stats)}
    files = {name: Path(file) for name, file in files_of(tables)}
    connection = open_locked(files, EngineLimits(threads=1), True)
    try:
        found = connection.execute(
            'SELECT CAST(min(w) AS VARCHAR), CAST(max(w) AS VARCHAR), CAST(min("__year__w") AS VARCHAR), '
            'CAST(max("__moy__w") AS VARCHAR) FROM "__summary__t"'
        ).fetchone()
    finally:
        connection.close()
    assert found == ("5877642-06-25 (BC)", "5881580-07-10", "5877642-06-25 (BC)", "5881580-07-10")
