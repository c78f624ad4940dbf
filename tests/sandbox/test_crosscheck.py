"""The second validator on its own: DuckDB's reading of a statement decides, whatever sqlglot thought.

These feed statements straight to sandbox.crosscheck, as if the first validator or the rewrite had
let something through, and expect DuckDB's parse tree to be refused.
"""

from __future__ import annotations

import pytest

from sandbox import crosscheck
from sandbox.errors import QueryRefused
from sandbox.rewrite import RESTRICT_COLUMN, THRESHOLD_COLUMN
from sandbox.service import plan_query

ALIASES = {"people": "people"}
TAIL = f' AND "{RESTRICT_COLUMN}"'


CLAMPED = (
    'CASE WHEN "people"."amount" IS NULL THEN NULL ELSE '
    'LEAST(GREATEST(TRY_CAST("people"."amount" AS DOUBLE), 0.0e0), 10000.0e0) END'
)
"""A measure as sandbox.algebra.clamp writes it: the only form the second validator accepts in sum()."""
CLAMP_OF_TRIPS = CLAMPED.replace("amount", "trips").replace("10000.0e0", "100.0e0")


def test_a_measure_as_double_or_clamped_passes(policy) -> None:
    _groups(policy, f'sum({CLAMPED} * (1e0 - 0.05e0) / 2e0) AS "__a0"')
    _groups(policy, 'sum(TRY_CAST("people"."amount" AS DOUBLE) * 2e0) AS "__a0"')


def _groups(policy, select_items: str, where: str = "TRUE", source: str = '"people" AS "people"') -> None:
    sql = f'SELECT {select_items}, "{THRESHOLD_COLUMN}" FROM {source} WHERE ({where}){TAIL}'
    crosscheck.check_groups(sql, policy, ALIASES, threshold=THRESHOLD_COLUMN, restrict=RESTRICT_COLUMN)


def test_what_the_rewrite_produces_passes(policy) -> None:
    plan = plan_query("SELECT region, sum(amount) FROM people WHERE month > 1 GROUP BY region", policy)
    crosscheck.check_groups(plan.template, policy, ALIASES, threshold=THRESHOLD_COLUMN, restrict=RESTRICT_COLUMN)


@pytest.mark.parametrize(
    ("reason", "items", "where", "source"),
    [
        ("a refused aggregate", 'max("people"."amount") AS "__a0"', "TRUE", None),
        ("a file read", 'count(*) AS "__a0"', "TRUE", "read_csv('/etc/passwd')"),
        ("a catalogue table", 'count(*) AS "__a0"', "TRUE", "information_schema.tables"),
        ("another table", 'count(*) AS "__a0"', "TRUE", '"secrets" AS "people"'),
        ("the unit as a group key", '"people"."person_id" AS "__g0"', "TRUE", None),
        ("a measure in WHERE", 'count(*) AS "__a0"', '"people"."amount" > 1', None),
        ("a hidden column in a count", 'count("people"."name") AS "__a0"', "TRUE", None),
        ("a subquery", 'count(*) AS "__a0"', '"people"."region" IN (SELECT 1)', None),
        ("a window", 'sum("people"."amount") OVER () AS "__a0"', "TRUE", None),
        ("a plain cast of data", 'CAST("people"."region" AS INTEGER) AS "__g0"', "TRUE", None),
        ("an unknown function", 'count(*) AS "__a0"', "getenv('HOME') = 'x'", None),
        ("a FILTER clause", 'count(*) FILTER (WHERE "people"."month" = 1) AS "__a0"', "TRUE", None),
        ("a CASE inside sum", 'sum(CASE WHEN true THEN "people"."amount" END) AS "__a0"', "TRUE", None),
        ("an unqualified column", 'sum("amount") AS "__a0"', "TRUE", None),
        ("an unclamped measure in sum", 'sum("people"."amount") AS "__a0"', "TRUE", None),
        ("a TRY inside sum", f'sum(TRY({CLAMPED} * 2e0)) AS "__a0"', "TRUE", None),
        ("a narrow cast inside sum", f'sum(CAST({CLAMPED} AS TINYINT)) AS "__a0"', "TRUE", None),
        ("a division by a measure", f'sum(1e0 / {CLAMPED}) AS "__a0"', "TRUE", None),
        ("a clamp that tests another column", f'sum({CLAMPED.replace("amount", "trips", 1)}) AS "__a0"', "TRUE", None),
        ("a clamp of a dimension", f'sum({CLAMPED.replace("amount", "month")}) AS "__a0"', "TRUE", None),
        ("a dimension as double", 'sum(TRY_CAST("people"."month" AS DOUBLE)) AS "__a0"', "TRUE", None),
        ("an expression as double", 'sum(TRY_CAST("people"."amount" * 2 AS DOUBLE)) AS "__a0"', "TRUE", None),
        ("a clamp bound from data", f'sum({CLAMPED.replace("10000.0e0", CLAMP_OF_TRIPS)}) AS "__a0"', "TRUE", None),
    ],
)
def test_duckdbs_reading_is_refused(policy, reason: str, items: str, where: str, source: str | None) -> None:
    with pytest.raises(QueryRefused) as refused:
        _groups(policy, items, where, source or '"people" AS "people"')
    assert refused.value.code == "parser_mismatch"


def test_the_placeholders_must_be_where_the_rewrite_put_them(policy) -> None:
    moved = (
        f'SELECT count(*) AS "__a0", "{THRESHOLD_COLUMN}" FROM "people" AS "people" WHERE "{RESTRICT_COLUMN}" OR TRUE'
    )
    with pytest.raises(QueryRefused):
        crosscheck.check_groups(moved, policy, ALIASES, threshold=THRESHOLD_COLUMN, restrict=RESTRICT_COLUMN)


def test_two_statements_in_one_string_are_refused(policy) -> None:
    with pytest.raises(QueryRefused):
        crosscheck.check_output('SELECT "__a0" FROM "__groups"; SELECT 1', policy, "__groups")
    with pytest.raises(QueryRefused):
        crosscheck.check_output("SELECT * FROM read_csv('/etc/passwd')", policy, "__groups")


@pytest.mark.parametrize("text", ["", "not json", "[1, 2]", '{"statements": []}', '{"error": false'])
def test_an_unreadable_parse_tree_is_refused(text: str) -> None:
    with pytest.raises(QueryRefused) as refused:
        crosscheck._node(text)
    assert refused.value.code == "parser_mismatch"


def test_planning_is_repeatable(policy) -> None:
    sql = (
        "SELECT region, sum(amount) AS total, count(*) AS n FROM people WHERE month > 2 "
        "GROUP BY region HAVING total > 10 ORDER BY total DESC, n LIMIT 5"
    )
    first, second = plan_query(sql, policy), plan_query(sql, policy)
    assert first == second
    assert '"__a0" AS "__c1"' in first.output_sql and 'ORDER BY "__a0" DESC, "__a1"' in first.output_sql
