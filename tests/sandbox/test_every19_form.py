"""Branch every19: which cube statements return every group of their set to the worker (engine._every_group_text).

Only a stage 2 that computes nothing (plain columns, an ORDER BY of columns) and only over a set whose groups the
distinct counts buyers see put at engine.EVERY_GROUP_LIMIT or fewer: any expression of the buyer's in stage 2 must still
see only the groups that pass (the windowed statement's WHERE), and so must HAVING and LIMIT. The answers of both
forms are compared on random data by tests/sandbox/test_red18_lean_property.py; here, the choice.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

import pytest

from sandbox.engine import EVERY_GROUP_LIMIT, execute_cube
from sandbox.service import cube_for, cube_groups, plan_query, row_counts, strategy
from tests.sandbox.test_pre16_summary_property import _policy
from tests.sandbox.test_rt15_cube_connection import ROWS, _tables
from tests.support.cube_connections import cube_connections, with_quality_counts


def _statements(sql: str, groups: int | None = None) -> tuple[list[str], int | None]:
    """The statements execute_cube runs for `sql` on the summary connection, given the bound service.cube_groups
    computes (or `groups`), and that bound."""
    with tempfile.TemporaryDirectory() as directory:
        tables = _tables(Path(directory), ROWS)
        plan = plan_query(sql, _policy(2), row_counts(tables))
        assert strategy(plan, tables) == "cube", sql
        bound = cube_groups(plan, with_quality_counts(tables)) if groups is None else groups
        with cube_connections(tables) as (connection, lean, stats):
            execution = execute_cube(connection, plan, 100, stats, cube_for(plan, tables) or "", lean, bound)
    return execution.statements, bound


def _every_group(statements: list[str]) -> bool:
    return len(statements) == 1 and '"__p"' in statements[0] and " OVER " not in statements[0]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT g, count(*) AS c FROM t GROUP BY g",
        "SELECT g, count(*) AS c, sum(n) AS s FROM t WHERE d = 'x' GROUP BY g",
        "SELECT g, h, count(*) AS c FROM t GROUP BY g, h",
        "SELECT g, avg(n) AS a FROM t WHERE h = 1 GROUP BY g ORDER BY 2 DESC NULLS FIRST, 1",
        "SELECT count(*) AS c FROM t WHERE g = 'zzz'",
    ],
)
def test_a_stage_2_that_computes_nothing_gets_every_group(sql: str) -> None:
    statements, bound = _statements(sql)
    assert bound is not None and 0 < bound <= EVERY_GROUP_LIMIT
    assert _every_group(statements), statements
    # Masked by arithmetic, not by a CASE per group, whose time told whether any group was kept (red18's residue).
    assert "CASE" not in statements[0], statements[0]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT g, count(*) * 2 AS c FROM t GROUP BY g",
        "SELECT g, count(*) AS c FROM t GROUP BY g ORDER BY count(*) * 2",
        "SELECT g, count(*) AS c FROM t GROUP BY g HAVING count(*) > 2",
        "SELECT g, count(*) AS c FROM t GROUP BY g ORDER BY 2 LIMIT 1",
        "SELECT g, count(*) AS c FROM t GROUP BY g ORDER BY 2 LIMIT 5 OFFSET 1",
        "SELECT g, count(*) AS c, 'FROM \"__groups\" WHERE' AS x FROM t GROUP BY g",
    ],
)
def test_a_stage_2_that_computes_or_reads_past_the_passing_groups_keeps_the_windows(sql: str) -> None:
    statements, _ = _statements(sql)
    assert not _every_group(statements), statements
    assert " OVER " in statements[0]


def test_a_set_of_more_groups_than_the_limit_keeps_the_windows() -> None:
    statements, _ = _statements("SELECT g, count(*) AS c FROM t GROUP BY g", groups=EVERY_GROUP_LIMIT + 1)
    assert not _every_group(statements) and " OVER " in statements[0]
    statements, _ = _statements("SELECT g, count(*) AS c FROM t GROUP BY g", groups=EVERY_GROUP_LIMIT)
    assert _every_group(statements)


def test_the_bound_is_read_from_the_counts_buyers_see_never_the_whole_cardinalities(tmp_path: Path) -> None:
    """Which statement runs shows in its time: the bound must not tell how many rare values a dimension holds. It is
    the quality summary's distinct count (values at least k units hold), and none without one."""
    tables = _tables(tmp_path, ROWS)
    plan = plan_query("SELECT g, count(*) AS c FROM t GROUP BY g", _policy(2), row_counts(tables))
    assert tables["t"].statistics["cardinality"]["g"] == 3  # 'a', 'b' and NULL
    assert cube_groups(plan, tables) is None  # no quality summary: the windowed statement
    shown = {"t": replace(tables["t"], statistics={**tables["t"].statistics, "distinct": {"g": 2}})}
    assert cube_groups(plan, shown) == 2
    assert cube_groups(plan, with_quality_counts(tables)) == 3
