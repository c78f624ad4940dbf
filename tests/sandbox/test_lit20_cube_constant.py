"""Branch lit20: the cube's statement prepared over its set's rows as a constant (engine.Summaries).

DuckDB 2.0 plans a prepared statement again on every EXECUTE when it scans a table, and keeps the plan of one that
scans none; so the summary connection prepares a cube statement over `unnest(CAST('<the set's rows>' AS
STRUCT(...)[]))` in place of the summary table's rows of that set. These tests hold it to the table's answers:

- over the pre16/cube13 property fixtures (random small tables, random queries of the cube's shapes): rt15's
  property (test_rt15_cube_connection.py) now also requires every statement the summary connection prepared to read
  its set as constants, and the statements recorded to hold none;
- dimension values chosen to break a text round trip (quotes, an attempt to close the string and add a row, braces,
  brackets, commas, `NULL` as a string and as a value, control characters, integers at their types' ends): the same
  answers, from the constant;
- the statements recorded (the audit's `sql_run`) are the table's text, never the constant;
- a set whose text is longer than CONSTANT_BYTES reads the table, with the same answers; the constants held are
  bounded by CONSTANT_BUDGET, evicted statements prepared again answer the same;
- the summary connection plans with statistics_propagation off (a constant's value statistics fold nothing).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sandbox import engine
from sandbox.engine import execute_cube
from sandbox.service import cube_for, files_of, plan_query, row_counts, strategy
from tests.sandbox.test_pre16_summary_property import _policy, _typed
from tests.sandbox.test_rt15_cube_connection import _tables
from tests.support.cube_connections import cube_connections

HOSTILE = [
    "it's",
    "x'}, {'g': 'Z', 'h': 1",
    "'",
    "''",
    "{a}",
    "[b]",
    "a, b",
    "k: v",
    "NULL",
    "null",
    "",
    " padded ",
    "\\",
    "\\'",
    "line\nbreak",
    "tab\there",
    "\x01\x7f",
    "é中文\u2028",
    '"quoted"',
    "}]",
]
"""Dimension values whose text DuckDB must quote and escape for a list of structs to convert back to the same rows."""
EXTREMES = [-(2**63), 2**63 - 1, 0, -1, 2**53 + 1]


def _hostile_rows() -> list[dict[str, Any]]:
    rows = []
    for i, value in enumerate([*HOSTILE, None]):
        for unit in range(3):  # three units each: every group passes k = 2 or 3
            rows.append(
                {
                    "u": f"u{i}-{unit}",
                    "g": value,
                    "h": EXTREMES[i % len(EXTREMES)],
                    "d": ["x", "y"][unit % 2],
                    "m": [0.1, -0.0, 2.5][unit],
                    "n": i - unit,
                }
            )
    return rows


def _compare(tables: Any, sql: str, k: int = 2) -> Any:
    """The cube's answer to `sql` on the summary connection (twice: prepared, then from its plan) against the
    version's connection; the summary connection after."""
    plan = plan_query(sql, _policy(k), row_counts(tables))
    assert strategy(plan, tables) == "cube", sql
    cube = cube_for(plan, tables)
    assert cube
    with cube_connections(tables) as (connection, lean, statistics):
        before = execute_cube(connection, plan, 1000, statistics, cube)
        for _ in range(2):
            after = execute_cube(connection, plan, 1000, statistics, cube, lean)
            assert _typed(after.rows) == _typed(before.rows), sql
            assert (after.groups, after.suppressed_groups) == (before.groups, before.suppressed_groups), sql
            assert after.statements == before.statements, sql
            assert not any("unnest(" in statement for statement in after.statements), sql
        return before, lean.prepared, lean.constants


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT g, count(*) AS c, avg(n) AS an, sum(n) AS sn FROM t GROUP BY g",
        "SELECT g, count(*) AS c FROM t WHERE d = 'x' GROUP BY g ORDER BY g",
        "SELECT h, count(*) AS c, avg(n) AS an FROM t GROUP BY h",
        "SELECT g, h, count(*) AS c FROM t GROUP BY g, h",
        "SELECT count(*) AS c, sum(n) AS sn FROM t WHERE g = 'it''s'",
        "SELECT h, count(*) AS c FROM t WHERE g = 'x''}, {''g'': ''Z'', ''h'': 1' GROUP BY h",
    ],
)
def test_values_that_break_a_text_round_trip_answer_as_the_table(tmp_path: Path, sql: str) -> None:
    before, prepared, constants = _compare(_tables(tmp_path, _hostile_rows()), sql)
    assert before.rows, sql  # every group is held by three units
    assert constants == prepared >= 1


def test_a_set_too_long_for_a_constant_reads_the_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "CONSTANT_BYTES", 64)
    sql = "SELECT g, count(*) AS c, avg(n) AS an FROM t GROUP BY g"
    before, prepared, constants = _compare(_tables(tmp_path, _hostile_rows()), sql)
    assert before.rows
    assert prepared >= 1 and constants == 0


def test_the_constants_held_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ten filters on one set, with room for about three constants: the oldest statements go, the held text stays
    within the budget (but for the newest), and a statement prepared again answers as before."""
    tables = _tables(tmp_path, _hostile_rows())
    pinned = ["{a}", "[b]", "a, b", "k: v", "NULL", "null", "", " padded ", "\\", "}]"]
    sqls = [f"SELECT h, count(*) AS c FROM t WHERE g = '{value}' GROUP BY h" for value in pinned]
    plans = [plan_query(sql, _policy(2), row_counts(tables)) for sql in sqls]
    with cube_connections(tables) as (connection, lean, statistics):
        cube = cube_for(plans[0], tables)
        assert cube
        execute_cube(connection, plans[0], 1000, statistics, cube, lean)
        one = lean.held
        assert one > 0 and lean.constants == lean.prepared
        monkeypatch.setattr(engine, "CONSTANT_BUDGET", 3 * one + one // 2)
        answers = []
        for plan in plans:
            cube = cube_for(plan, tables)
            assert cube
            answers.append(execute_cube(connection, plan, 1000, statistics, cube, lean))
            assert lean.held <= engine.CONSTANT_BUDGET
        assert lean.prepared <= 3 * len(answers[0].statements)
        again = execute_cube(connection, plans[0], 1000, statistics, cube_for(plans[0], tables) or "", lean)
        assert _typed(again.rows) == _typed(answers[0].rows)
        table = execute_cube(connection, plans[-1], 1000, statistics, cube_for(plans[-1], tables) or "")
        assert _typed(answers[-1].rows) == _typed(table.rows)


def test_the_sets_constants_kept_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Six sets, with room for about two sets' constants: the oldest are dropped, and a set read again answers
    from its rebuilt constants as from the table."""
    tables = _tables(tmp_path, _hostile_rows())
    keys = ["g", "h", "d", "g, h", "g, d", "h, d", "g"]
    plans = [plan_query(f"SELECT {k}, count(*) AS c FROM t GROUP BY {k}", _policy(2), row_counts(tables)) for k in keys]
    with cube_connections(tables) as (connection, lean, statistics):
        cube = cube_for(plans[3], tables) or ""
        execute_cube(connection, plans[3], 1000, statistics, cube, lean)
        monkeypatch.setattr(engine, "CONSTANT_BUDGET", 2 * lean.sets_held)
        for plan in plans:
            cube = cube_for(plan, tables) or ""
            answer = execute_cube(connection, plan, 1000, statistics, cube, lean)
            assert lean.sets_held <= engine.CONSTANT_BUDGET
            assert _typed(answer.rows) == _typed(execute_cube(connection, plan, 1000, statistics, cube).rows)
        assert lean.constants == lean.prepared > 0


@pytest.mark.parametrize("free", [True, False])
def test_the_summary_connection_plans_without_value_statistics(tmp_path: Path, free: bool) -> None:
    tables = _tables(tmp_path, _hostile_rows())
    files = {name: Path(file) for name, file in files_of(tables)}
    lean = engine.open_summary(files, engine.EngineLimits(threads=1), free)
    try:
        row = lean.connection.execute("SELECT current_setting('disabled_optimizers')").fetchone()
        assert row is not None and "statistics_propagation" in row[0].split(",")
    finally:
        lean.close()
