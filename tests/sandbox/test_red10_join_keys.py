"""Red team red10: outer joins with a one-table condition on the preserved side inside ON.

In a LEFT JOIN, a condition on the left table inside ON does not filter left rows: it decides which of
them meet any right row. `flights f LEFT JOIN weather w ON f.origin = w.origin AND f.dest = 'LEX'` gives the
hidden flight every weather row of its origin and every other flight none: red9's multiplier, with a bare key.
Checked as test_join_keys_property checks accepted joins: refused, or the same operator rows (up to one
flight's share) with the hidden 'LEX' flight and without it.
"""

from __future__ import annotations

import pytest

from sandbox.engine import execute_single
from sandbox.errors import QueryRefused
from sandbox.service import plan_query
from tests.sandbox.test_join_keys_property import FLIGHTS, TOLERANCE, Profiled, profiled  # noqa: F401
from tests.sandbox.test_red9_oracles import POLICY, SIZES, folders  # noqa: F401 (a fixture)

KNOWN = pytest.mark.xfail(
    strict=True,
    reason="red10, known open (docs/sandbox.md Join keys, what is left (3)): a kept-side condition in an outer ON "
    "routes the matches; operator rows differ, measured time did not",
)


@pytest.mark.parametrize(
    "sql",
    [
        pytest.param(
            "SELECT count(*), sum(w.temp) FROM flights f LEFT JOIN weather w ON f.origin = w.origin AND f.dest = 'LEX'",
            marks=KNOWN,
        ),
        pytest.param(
            "SELECT count(*) FROM weather w RIGHT JOIN flights f ON f.origin = w.origin AND f.dest = 'LEX'",
            marks=KNOWN,
        ),
        "SELECT count(*) FROM flights f FULL JOIN weather w ON f.origin = w.origin AND f.dest = 'LEX'",
    ],
)
def test_an_outer_join_condition_on_the_kept_side_does_not_route(sql: str, profiled: dict[bool, Profiled]) -> None:  # noqa: F811
    try:
        plan = plan_query(sql, POLICY, SIZES)
    except QueryRefused:
        return
    seen = {}
    for fact, replay in profiled.items():
        execution = execute_single(replay.connection, plan, 100_000)
        assert execution.refused is None, execution.refused
        seen[fact] = replay.operators(execution.statements)
    for with_row, without in zip(seen[True], seen[False], strict=True):
        share = max([*with_row, *without, 0]) / FLIGHTS
        allowed = TOLERANCE + len(with_row) * share
        assert abs(sum(with_row) - sum(without)) <= allowed, (sql, sum(with_row), sum(without), allowed)


def test_is_distinct_from_between_two_bare_columns_is_accepted_and_does_not_route(
    profiled: dict[bool, Profiled],  # noqa: F811
) -> None:
    """`a.x IS DISTINCT FROM b.y` compares two stored columns as `<>` does (NULL-aware): refused before with a
    message telling the buyer to write "one comparison of two columns", which it was (red10)."""
    sql = "SELECT count(*) FROM flights f JOIN weather w ON f.origin = w.origin AND f.day IS DISTINCT FROM w.hour_id"
    plan = plan_query(sql, POLICY, SIZES)
    seen = {}
    for fact, replay in profiled.items():
        execution = execute_single(replay.connection, plan, 100_000)
        assert execution.refused is None, execution.refused
        seen[fact] = replay.operators(execution.statements)
    for with_row, without in zip(seen[True], seen[False], strict=True):
        share = max([*with_row, *without, 0]) / FLIGHTS
        assert abs(sum(with_row) - sum(without)) <= TOLERANCE + len(with_row) * share
