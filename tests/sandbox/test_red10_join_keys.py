"""Red team red10: outer joins with a one-table condition on the preserved side inside ON.

In a LEFT JOIN, a condition on the left table inside ON does not filter left rows: it decides which of
them meet any right row. `flights f LEFT JOIN weather w ON f.origin = w.origin AND f.dest = 'LEX'` gives the
hidden flight every weather row of its origin and every other flight none: red9's multiplier, with a bare key.
Checked as test_join_keys_property checks accepted joins: refused, or the same operator rows (up to one
flight's share) with the hidden 'LEX' flight and without it.
"""

from __future__ import annotations

import pytest

from sandbox.errors import QueryRefused
from sandbox.service import plan_query
from tests.sandbox.test_join_keys_property import Profiled, assert_work_does_not_route, profiled  # noqa: F401
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
    assert_work_does_not_route(sql, plan, profiled)


def test_is_distinct_from_between_two_bare_columns_is_accepted_and_does_not_route(
    profiled: dict[bool, Profiled],  # noqa: F811
) -> None:
    """`a.x IS DISTINCT FROM b.y` compares two stored columns as `<>` does (NULL-aware): refused before with a
    message telling the buyer to write "one comparison of two columns", which it was (red10)."""
    sql = "SELECT count(*) FROM flights f JOIN weather w ON f.origin = w.origin AND f.day IS DISTINCT FROM w.hour_id"
    plan = plan_query(sql, POLICY, SIZES)
    assert_work_does_not_route(sql, plan, profiled)
