"""Red team red20 (session 20): the cube's statement over its set's rows as a constant (branch lit20,
engine.Summaries) against the same statement over the summary table and against execute_single, on products whose
dimensions are every summarised type (summary.SUMMARISED_TYPES) at their extremes: every integer type's least and
greatest value, VARCHAR with text that must be quoted and escaped (quotes, an attempt to close the constant's string
and add a row, escapes that look like DuckDB's, NUL, a 20,000-character value), DATEs at the ends of what a version
may hold ('infinity', BC, year 5881580), NULL keys and NULL measures, DECIMAL and BIGINT measures (sum, avg: `dsum`,
`davg` and the exact sums), calendar keys; k 2 and 10, max_rows 1 and 100, empty and one-row tables.

The rows (by `repr`: value and type), groups, suppressed groups, too_many_rows and refusals must be the same on all
three; every statement the summary connection prepared must read its set as a constant (no value of these types
made lit20 fall back to the table); the statements recorded (the audit's `sql_run`) never hold the constant."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from products.storage import table_statistics
from sandbox.engine import execute_cube, execute_single
from sandbox.policy import ProtectionPolicy
from sandbox.service import TableFile, cube_groups
from tests.sandbox.conftest import write_parquet
from tests.support.cube_connections import assert_answers_as, cube_connections, cube_plans

INTEGERS: dict[str, tuple[int, int]] = {
    "TINYINT": (-(2**7), 2**7 - 1),
    "SMALLINT": (-(2**15), 2**15 - 1),
    "INTEGER": (-(2**31), 2**31 - 1),
    "BIGINT": (-(2**63), 2**63 - 1),
    "HUGEINT": (-(2**127), 2**127 - 1),
    "UTINYINT": (0, 2**8 - 1),
    "USMALLINT": (0, 2**16 - 1),
    "UINTEGER": (0, 2**32 - 1),
    "UBIGINT": (0, 2**64 - 1),
}
HOSTILE = [
    "w" * 19_900,
    "it's",
    "x'}, {'s': 'Z', 'i0': 1",
    "'::VARCHAR[]); SELECT 1; --",
    "\\x27\\n\\u0000",
    "\\",
    "NULL",
    "",
    " lead",
    "\x00nul",
    "{}[]:,",
    '"__sum0"',
    "é\u2028",
    "a",
]
"""VARCHAR dimension values: the first (19,900 characters, the longest a query may pin) makes the set's text long
but under CONSTANT_BYTES."""
DATES = ["2024-01-01", "infinity", "-infinity", "0044-03-15 (BC)", "5881580-07-10", "1970-01-01", None]

TYPES: dict[str, str] = {"u": "VARCHAR", "s": "VARCHAR", "d": "DATE", "x": "DECIMAL(18, 2)", "f": "BIGINT"}
TYPES |= {f"i{n}": kind for n, kind in enumerate(INTEGERS)}
DIMENSIONS = ["s", "d", *(f"i{n}" for n in range(len(INTEGERS)))]
CALENDAR = ["2024-01-01", "2024-02-29", "1990-06-01", "2031-12-31", None]
"""DATEs in Python's years, so that the calendar partitions are built: hidden rows in years and months of their own."""
BOUNDS = {"x": (-1e12, 1e12), "f": (-1e12, 1e12)}
ROLES = {"u": "privacy_unit", "x": "measure", "f": "measure"} | dict.fromkeys(DIMENSIONS, "dimension")


def _policy(k: int) -> ProtectionPolicy:
    return ProtectionPolicy.model_validate(
        {
            "min_group_size": k,
            "tables": {
                "t": {
                    "privacy_unit": "u",
                    "dimensions": DIMENSIONS,
                    "measures": ["x", "f"],
                    "hidden": [],
                    "bounds": {m: {"min": lo, "max": hi} for m, (lo, hi) in BOUNDS.items()},
                }
            },
        }
    )


def _integer(kind: str) -> st.SearchStrategy[int | None]:
    low, high = INTEGERS[kind]
    return st.sampled_from([low, high, 0, 1, None] if low < 0 else [low, high, 1, None])


@st.composite
def rows_strategy(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A few patterns of dimension values, each held by 1-12 units (some pass k, some hidden), NULL measures too."""
    patterns = draw(st.integers(0, 6))
    dates = draw(st.sampled_from([DATES, CALENDAR]))
    rows: list[dict[str, Any]] = []
    for p in range(patterns):
        base: dict[str, Any] = {
            "s": draw(st.sampled_from([*HOSTILE, None])),
            "d": draw(st.sampled_from(dates)),
        }
        for n, kind in enumerate(INTEGERS):
            base[f"i{n}"] = draw(_integer(kind))
        for unit in range(draw(st.sampled_from([1, 2, 3, 12]))):
            x = draw(st.sampled_from(["999999999999.99", "-999999999999.99", "0.01", None]))
            f = draw(st.sampled_from([10**12, -(10**12), 0, 7, None]))
            rows.append({**base, "u": f"u{p}-{unit}", "x": x, "f": f})
    return rows


AGGREGATES = ["count(*) AS c", "sum(f) AS sf", "avg(f) AS af", "sum(x) AS sx", "avg(x) AS ax", "count(x) AS nx"]


def _literal(column: str, value: Any) -> str:
    if value is None:
        return f"{column} IS NULL"
    if column == "d":
        return f"d = DATE '{value}'"
    if column == "s":
        return "s = '" + str(value).replace("'", "''") + "'"
    return f"{column} = {value}"


@st.composite
def queries(draw: st.DrawFn, rows: list[dict[str, Any]]) -> str:
    """A cube query's shape: at most two summarised dimensions in all (keys, a calendar key of `d`, a pinned one)."""
    keys = draw(st.lists(st.sampled_from(DIMENSIONS), max_size=2, unique=True))
    calendar = draw(st.sampled_from([None, "year(d)", "month(d)", "date_trunc('month', d)"]))
    items = list(keys)
    group = list(keys)
    if calendar and len(keys) < 2 and "d" not in keys:
        items.append(f"{calendar} AS cal")
        group.append(calendar)
    aggregates = draw(st.lists(st.sampled_from(AGGREGATES), min_size=1, max_size=4, unique=True))
    where = ""
    used = {*keys, *(["d"] if len(group) > len(keys) else [])}
    others = [d for d in DIMENSIONS if d not in used]
    if draw(st.integers(0, 3)) and others and len(used) < 2:
        column = draw(st.sampled_from(others))
        pool = [row[column] for row in rows] or [None]
        where = f" WHERE {_literal(column, draw(st.sampled_from(pool)))}"
    sql = f"SELECT {', '.join(items + aggregates)} FROM t{where}"
    if group:
        sql += f" GROUP BY {', '.join(group)}"
    if draw(st.booleans()):
        sql += f" ORDER BY {len(items) + 1} DESC NULLS FIRST" + ("".join(f", {i + 1}" for i in range(len(items))))
    return sql


def _compare(tables: dict[str, TableFile], sqls: list[str], k: int) -> int:
    """Every cube query of `sqls`: the constant form (prepared, then from its plan) against the table's and
    execute_single; returns how many were cube queries."""
    taken = 0
    with cube_connections(tables) as (connection, lean, statistics):
        for sql, plan, cube in cube_plans(tables, sqls, _policy(k)):
            groups = cube_groups(plan, tables)
            taken += 1
            for max_rows in (1, 100):
                single = execute_single(connection, plan, max_rows, statistics)
                table = execute_cube(connection, plan, max_rows, statistics, cube, None, groups)
                for _ in range(2):
                    constant = execute_cube(connection, plan, max_rows, statistics, cube, lean, groups)
                    for other in (table, constant):
                        assert_answers_as(single, other, sql)
                    assert constant.statements == table.statements, sql
                    assert not any("unnest(" in statement for statement in constant.statements), sql
            if tables["t"].row_count:  # an empty set reads the table (nothing to make a constant of)
                assert lean.constants == lean.prepared, f"a statement read the table: {sql}"
    return taken


def _tables(directory: Path, rows: list[dict[str, Any]]) -> dict[str, TableFile]:
    path = write_parquet(directory / "t.parquet", rows, TYPES)
    stats = table_statistics(path, list(TYPES), ROLES, BOUNDS)
    return {"t": TableFile(name="t", path=path, row_count=len(rows), statistics=stats)}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), rows=rows_strategy(), k=st.sampled_from([2, 10]))
def test_every_summarised_type_at_its_extremes_answers_as_the_table(
    data: st.DataObject, rows: list[dict[str, Any]], k: int
) -> None:
    sqls = [data.draw(queries(rows)) for _ in range(6)]
    note(repr(sqls))
    with tempfile.TemporaryDirectory() as directory:
        _compare(_tables(Path(directory), rows), sqls, k)


FIXED = [
    "SELECT s, count(*) AS c, sum(f) AS sf, avg(x) AS ax FROM t WHERE i0 = 127 GROUP BY s ORDER BY 2 DESC, 1",
    "SELECT d, count(*) AS c, sum(x) AS sx FROM t WHERE i3 = -9223372036854775808 GROUP BY d",
    "SELECT year(d) AS y, count(*) AS c, avg(f) AS af FROM t GROUP BY year(d)",
    "SELECT month(d) AS m, s, count(*) AS c FROM t GROUP BY month(d), s",
    "SELECT date_trunc('month', d) AS m, count(*) AS c, sum(x) AS sx FROM t WHERE i2 IS NULL GROUP BY 1",
    *(f"SELECT i{n}, count(*) AS c, sum(f) AS sf FROM t GROUP BY i{n}" for n in range(len(INTEGERS))),
    "SELECT i3, i8, count(*) AS c, sum(x) AS sx FROM t GROUP BY i3, i8 ORDER BY sx DESC NULLS LAST",
    "SELECT count(*) AS c, sum(f) AS sf FROM t WHERE s = 'x''}, {''s'': ''Z'', ''i0'': 1'",
    "SELECT i8, count(*) AS c FROM t WHERE s = '\\x27\\n\\u0000' GROUP BY i8",
    f"SELECT d, count(*) AS c FROM t WHERE s = '{'w' * 19_900}' GROUP BY d",
    "SELECT s, count(*) AS c FROM t WHERE i8 = 18446744073709551615 GROUP BY s",
    "SELECT s, count(*) AS c, avg(x) AS ax FROM t WHERE d = DATE '5881580-07-10' GROUP BY s",
    "SELECT s, count(*) AS c FROM t WHERE d = DATE '2024-02-29' GROUP BY s",
]


def _fixed_rows(dates: list[Any] = DATES) -> list[dict[str, Any]]:
    """Every hostile string, date and extreme, each pattern once held by 12 units (passes k 2 and 10) and once by
    one unit alone (hidden)."""
    rows = []
    for p in range(len(HOSTILE)):
        base: dict[str, Any] = {"s": HOSTILE[p], "d": dates[p % len(dates)]}
        for n, (low, high) in enumerate(INTEGERS.values()):
            base[f"i{n}"] = [low, high, None][(p + n) % 3]
        for unit in range(12 if p % 2 else 1):
            rows.append({**base, "u": f"u{p}-{unit}", "x": ["0.01", None][unit % 2], "f": [10**12, None][unit % 2]})
    return rows


def test_fixed_extremes_answer_as_the_table() -> None:
    products = {"odd": _fixed_rows(), "calendar": _fixed_rows(CALENDAR), "empty": [], "one row": _fixed_rows()[:1]}
    for name, rows in products.items():
        with tempfile.TemporaryDirectory() as directory:
            for k in (2, 10):
                taken = _compare(_tables(Path(directory), rows), FIXED, k)
                assert taken >= {"odd": 13, "calendar": 15, "one row": 1}.get(name, 0), (name, k, taken)
