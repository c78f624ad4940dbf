"""Red team red20 (session 20): can the text of a set's rows (branch lit20's constant: hidden combinations' keys and
counts included) reach a buyer, the audit's `sql_run` or an error's detail?

- A statement DuckDB cannot bind (a buyer's `d + 1 > DATE '...'`): the constant's PREPARE fails with a message that
  quotes the statement, the constant in it; Summaries drops it and prepares the table's text, whose error is the one
  raised (the same class and text as without the summary connection). Held.
- An EXECUTE of the constant form that fails (forced here: lit20 expects none), and a PREPARE that fails with the
  constant's text in its message (forced): the table's statement runs instead and answers as it does; nothing of
  the constant is raised. Held.
- The statements recorded hold the summary table's text, never `unnest(` (also lit20's own tests). Held.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest

from sandbox import engine
from sandbox.engine import execute_cube
from sandbox.service import cube_for, cube_groups, plan_query, row_counts, strategy
from tests.sandbox.test_red20_constant_bounds import _policy, _rows, _tables
from tests.support.cube_connections import cube_connections

SECRET = "q-SECRET-hidden-key"
"""The key of the one unit alone in its combination (never in an answer at k 2)."""


def _cube(tables: Any, sql: str) -> tuple[Any, str, int | None]:
    plan = plan_query(sql, _policy(), row_counts(tables))
    assert strategy(plan, tables) == "cube", sql
    return plan, cube_for(plan, tables) or "", cube_groups(plan, tables)


def test_a_statement_that_does_not_bind_raises_the_table_s_error(tmp_path: Path) -> None:
    tables = _tables(tmp_path, _rows(SECRET))
    sql = "SELECT h, count(*) AS n FROM t WHERE h + 1 > DATE '2000-01-01' GROUP BY h"
    plan, cube, groups = _cube(tables, sql)
    with cube_connections(tables) as (connection, lean, statistics):
        with pytest.raises(duckdb.Error) as table:
            execute_cube(connection, plan, 100, statistics, cube, None, groups)
        with pytest.raises(duckdb.Error) as constant:
            execute_cube(connection, plan, 100, statistics, cube, lean, groups)
        assert lean.constants == 0
    assert type(constant.value) is type(table.value)
    assert str(constant.value) == str(table.value)
    assert SECRET not in str(constant.value) and "unnest(" not in str(constant.value)


@pytest.mark.parametrize("failing", ["execute", "prepare"])
def test_a_constant_form_that_fails_answers_from_the_table_and_says_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    """The constant form made to fail with the constant's text in DuckDB's message: at EXECUTE (a cast of the
    secret to an integer on every row) or at PREPARE (a syntax error after it)."""
    tables = _tables(tmp_path, _rows(SECRET))
    sql = "SELECT h, count(*) AS n, sum(a) AS sa FROM t WHERE g = 'g3' GROUP BY h"
    plan, cube, groups = _cube(tables, sql)
    built = engine.Summaries._constant_statement

    def broken(self: engine.Summaries, statement: str, cube_text: str) -> tuple[str, int] | None:
        found = built(self, statement, cube_text)
        assert found is not None and SECRET in found[0], "the constant holds the hidden key"
        if failing == "execute":
            failing_row = f" WHERE CAST('{SECRET}' || random() AS INTEGER) IS NOT NULL) AS \"__c\""
            return found[0].replace(') AS "__c"', failing_row, 1), found[1]
        return found[0] + f" '{SECRET}' (", found[1]

    with cube_connections(tables) as (connection, lean, statistics):
        table = execute_cube(connection, plan, 100, statistics, cube, None, groups)
        monkeypatch.setattr(engine.Summaries, "_constant_statement", broken)
        for _ in range(2):
            answer = execute_cube(connection, plan, 100, statistics, cube, lean, groups)
            assert answer.rows == table.rows
            assert (answer.groups, answer.suppressed_groups) == (table.groups, table.suppressed_groups)
            assert answer.statements == table.statements
            assert not any(SECRET in statement or "unnest(" in statement for statement in answer.statements)
        assert lean.constants == (1 if failing == "execute" else 0)
